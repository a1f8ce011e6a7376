//! Distributor configurations for the tests, written as YAML section by
//! section: analyzers simulated in-process or reached over HTTP, and the
//! timings that keep tests fast and deterministic.

use std::path::{Path, PathBuf};

/// One analyzer: simulated in-process, or reached over HTTP at `endpoint`.
#[derive(Clone, Debug)]
pub(crate) struct AnalyzerSpec {
    pub id: String,
    /// The display name; the id when `None`.
    pub name: Option<String>,
    pub weight: i64,
    pub processing_ms: u64,
    pub failure_rate: f64,
    /// A real analyzer's URL; when set, the simulated settings are unused.
    pub endpoint: Option<String>,
    /// More keys of the analyzer's YAML flow mapping (`tls: {...}, auth: {...}`).
    pub keys: Option<String>,
}

pub(crate) fn analyzer(id: &str, weight: i64) -> AnalyzerSpec {
    AnalyzerSpec {
        id: id.into(),
        name: None,
        weight,
        processing_ms: 0,
        failure_rate: 0.0,
        endpoint: None,
        keys: None,
    }
}

/// An analyzer reached over HTTP at `endpoint` (`http://127.0.0.1:PORT/`).
pub(crate) fn remote(id: &str, weight: i64, endpoint: &str) -> AnalyzerSpec {
    AnalyzerSpec {
        endpoint: Some(endpoint.into()),
        ..analyzer(id, weight)
    }
}

impl AnalyzerSpec {
    pub(crate) fn processing(mut self, ms: u64) -> Self {
        self.processing_ms = ms;
        self
    }

    pub(crate) fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    pub(crate) fn failing(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// Adds keys to the analyzer's YAML: `with("auth: {token_file: /t}")`.
    pub(crate) fn with(mut self, yaml: &str) -> Self {
        self.keys = Some(match self.keys.take() {
            Some(keys) => format!("{keys}, {yaml}"),
            None => yaml.to_string(),
        });
        self
    }
}

/// A configuration file, section by section. The defaults keep tests fast
/// and deterministic: millisecond retries, probes out of the way (health
/// probes never fail, and the next one is an hour away), a short drain.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub analyzers: Vec<AnalyzerSpec>,
    pub retry: String,
    pub health: String,
    pub shutdown: String,
    pub checkpoint: String,
    pub queue: Option<String>,
    pub limits: Option<String>,
    pub http: Option<String>,
    /// Further top-level sections, as `name: yaml` lines (auth, server, tls...).
    pub extra: Vec<String>,
}

impl Config {
    pub(crate) fn new(analyzers: Vec<AnalyzerSpec>) -> Config {
        Config {
            analyzers,
            retry: "{base_delay: 20ms, factor: 2, max_retries: 3}".into(),
            health: "{interval: 1h, ejection_threshold: 0}".into(),
            shutdown: "{drain_timeout: 100ms}".into(),
            checkpoint: "{interval: 1h}".into(),
            queue: None,
            limits: None,
            http: None,
            extra: Vec::new(),
        }
    }

    /// The original four analyzers, 40/30/20/10, never failing.
    pub(crate) fn four(processing_ms: u64) -> Config {
        Config::new(
            [
                ("analyzer-a1", "Analyzer A", 40),
                ("analyzer-a2", "Analyzer B", 30),
                ("analyzer-a3", "Analyzer C", 20),
                ("analyzer-a4", "Analyzer D", 10),
            ]
            .into_iter()
            .map(|(id, name, w)| analyzer(id, w).named(name).processing(processing_ms))
            .collect(),
        )
    }

    pub(crate) fn retry(mut self, yaml: &str) -> Self {
        self.retry = yaml.into();
        self
    }

    pub(crate) fn health(mut self, yaml: &str) -> Self {
        self.health = yaml.into();
        self
    }

    pub(crate) fn shutdown(mut self, yaml: &str) -> Self {
        self.shutdown = yaml.into();
        self
    }

    pub(crate) fn queue(mut self, yaml: &str) -> Self {
        self.queue = Some(yaml.into());
        self
    }

    pub(crate) fn limits(mut self, yaml: &str) -> Self {
        self.limits = Some(yaml.into());
        self
    }

    /// The `http` section (the transport of analyzers with an endpoint).
    pub(crate) fn http(mut self, yaml: &str) -> Self {
        self.http = Some(yaml.into());
        self
    }

    /// Any other top-level section: `section("auth", "{protect_reads: true}")`.
    pub(crate) fn section(mut self, name: &str, yaml: &str) -> Self {
        self.extra.push(format!("{name}: {yaml}"));
        self
    }

    pub(crate) fn yaml(&self) -> String {
        let mut text = String::from("analyzers:\n");
        for a in &self.analyzers {
            let keys = a
                .keys
                .as_deref()
                .map(|keys| format!(", {keys}"))
                .unwrap_or_default();
            if let Some(endpoint) = &a.endpoint {
                text.push_str(&format!(
                    "  - {{id: {}, name: {}, weight: {}, endpoint: {:?}{keys}}}\n",
                    a.id,
                    a.name.as_deref().unwrap_or(&a.id),
                    a.weight,
                    endpoint,
                ));
                continue;
            }
            text.push_str(&format!(
                "  - {{id: {}, name: {}, weight: {}, simulated: {{processing_time_ms: {}, failure_rate: {:?}, health_failure_rate: 0.0}}{keys}}}\n",
                a.id,
                a.name.as_deref().unwrap_or(&a.id),
                a.weight,
                a.processing_ms,
                a.failure_rate
            ));
        }
        text.push_str(&format!("retry: {}\n", self.retry));
        text.push_str(&format!("health: {}\n", self.health));
        text.push_str(&format!("shutdown: {}\n", self.shutdown));
        text.push_str(&format!("checkpoint: {}\n", self.checkpoint));
        if let Some(queue) = &self.queue {
            text.push_str(&format!("queue: {queue}\n"));
        }
        if let Some(limits) = &self.limits {
            text.push_str(&format!("limits: {limits}\n"));
        }
        if let Some(http) = &self.http {
            text.push_str(&format!("http: {http}\n"));
        }
        for line in &self.extra {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// Writes `config` to `dir/name` and answers the path.
pub(crate) fn write_config(dir: &Path, name: &str, config: &Config) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, config.yaml()).expect("write config");
    path
}
