//! Every rule of the settings the types cannot say: each refusal names
//! the key at fault and the reason, in one line.

use super::{AnalyzerConfig, ConfigError, Settings, Source, MAX_DURATION, MAX_SLOTS, MAX_WEIGHT};
use crate::storage::wal::MAX_PACKET_JSON_BYTES;
use crate::transport::endpoint::Endpoint;
use std::collections::HashSet;
use std::time::Duration;

impl Settings {
    /// Every rule the types cannot say.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.source == Source::Config {
            self.check_analyzers()?;
        }
        self.check_the_rest()
    }

    fn check_analyzers(&self) -> Result<(), ConfigError> {
        let bad = |key: String, why: String| Err(ConfigError(format!("{key}: {why}")));
        if self.analyzers.is_empty() {
            return bad("analyzers".into(), "at least one analyzer is required".into());
        }
        let mut ids = HashSet::new();
        for (i, a) in self.analyzers.iter().enumerate() {
            let key = |field: &str| format!("analyzers[{i}].{field}");
            if a.id.trim().is_empty() || a.id.len() > 253 || a.id.contains('/') {
                return bad(
                    key("id"),
                    format!("{:?} must be 1 to 253 characters without '/'", a.id),
                );
            }
            if let Some(concurrency) = a.concurrency {
                if !(1..=MAX_SLOTS).contains(&concurrency) {
                    return bad(
                        key("concurrency"),
                        format!("{concurrency} is out of range 1..={MAX_SLOTS}"),
                    );
                }
            }
            if a.max_batch_packets == Some(0) {
                return bad(
                    key("max_batch_packets"),
                    "0 is below 1 (1: one packet per request)".into(),
                );
            }
            if let Some(own) = &a.health_check {
                for (field, value) in [("interval", own.interval), ("timeout", own.timeout)] {
                    if let Some(value) = value {
                        check_duration(&key(&format!("health_check.{field}")), value, Bound::AboveZero)?;
                    }
                }
            }
            if a.health_check.as_ref().is_some_and(|own| own.passive) && self.health.ejection_threshold == 0 {
                return bad(
                    key("health_check.passive"),
                    "a passive analyzer leaves the rotation only on failed deliveries: health.ejection_threshold must be above 0".into(),
                );
            }
            if !ids.insert(a.id.as_str()) {
                return bad(key("id"), format!("duplicate id {:?}", a.id));
            }
            if !(0..=MAX_WEIGHT).contains(&a.weight) {
                return bad(
                    key("weight"),
                    format!("{} is out of range 0..={MAX_WEIGHT}", a.weight),
                );
            }
            match (&a.simulated, &a.endpoint) {
                (Some(_), None) if a.tls.is_some() || a.auth.is_some() || !a.headers.is_empty() => {
                    return bad(
                        key("simulated"),
                        "tls, auth and headers are for an analyzer with an `endpoint`".into(),
                    )
                }
                (Some(sim), None) => {
                    for (field, rate) in [
                        ("failure_rate", sim.failure_rate),
                        ("health_failure_rate", sim.health_failure_rate),
                    ] {
                        if !(0.0..=1.0).contains(&rate) {
                            return bad(
                                key(&format!("simulated.{field}")),
                                format!("{rate} is not between 0 and 1"),
                            );
                        }
                    }
                }
                (None, Some(endpoint)) => {
                    check_reach(a, endpoint).map_err(|why| ConfigError(format!("analyzers[{i}].{why}")))?;
                }
                (Some(_), Some(_)) => {
                    return bad(
                        key("endpoint"),
                        "give either `endpoint` or `simulated`, not both".into(),
                    )
                }
                (None, None) => {
                    return bad(
                        key("endpoint"),
                        "an analyzer needs an `endpoint` URL or `simulated` settings".into(),
                    )
                }
            }
        }
        if self.analyzers.iter().all(|a| a.weight == 0) {
            return bad(
                "analyzers".into(),
                "total weight is 0: at least one analyzer needs a weight above 0".into(),
            );
        }
        Ok(())
    }

    fn check_the_rest(&self) -> Result<(), ConfigError> {
        let bad = |key: String, why: String| Err(ConfigError(format!("{key}: {why}")));
        if self.kubernetes.lease_duration < Duration::from_secs(3) {
            return bad("kubernetes.lease_duration".into(), "must be at least 3s".into());
        }
        if !is_object_name(&self.kubernetes.lease_name) {
            return bad(
                "kubernetes.lease_name".into(),
                "must be a Kubernetes object name (lower-case letters, digits, '-' and '.', at most 253)"
                    .into(),
            );
        }
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return bad(
                "listen".into(),
                format!("{:?} is not an address such as 0.0.0.0:8080", self.listen),
            );
        }
        if self.retry.factor < 1.0 || !self.retry.factor.is_finite() {
            return bad(
                "retry.factor".into(),
                format!("{} must be at least 1", self.retry.factor),
            );
        }
        if let Some(percent) = self.retry.budget_percent {
            if !(percent > 0.0 && percent <= 100.0) {
                return bad(
                    "retry.budget_percent".into(),
                    format!("{percent} must be above 0 and at most 100"),
                );
            }
        }
        if self.retry.base_delay.is_zero() && self.retry.max_retries > 0 {
            return bad("retry.base_delay".into(), "must be above 0".into());
        }
        for (key, value, bound) in [
            ("health.interval", self.health.interval, Bound::AboveZero),
            ("health.timeout", self.health.timeout, Bound::AboveZero),
            ("http.timeout", self.http.timeout, Bound::AboveZero),
            ("checkpoint.interval", self.checkpoint.interval, Bound::AboveZero),
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
                Bound::AboveZero,
            ),
            (
                "server.request_timeout",
                self.server.request_timeout,
                Bound::AboveZero,
            ),
            ("tls.reload_interval", self.tls.reload_interval, Bound::AboveZero),
            (
                "kubernetes.status_interval",
                self.kubernetes.status_interval,
                Bound::AboveZero,
            ),
            (
                "kubernetes.stale_replica_after",
                self.kubernetes.stale_replica_after,
                Bound::AboveZero,
            ),
            (
                "kubernetes.lease_duration",
                self.kubernetes.lease_duration,
                Bound::AboveZero,
            ),
            ("retry.base_delay", self.retry.base_delay, Bound::ZeroAllowed),
            ("retry.max_delay", self.retry.max_delay, Bound::ZeroAllowed),
            ("health.slow_start", self.health.slow_start, Bound::ZeroAllowed),
            ("batch.linger", self.batch.linger, Bound::ZeroAllowed),
            ("wal.commit_delay", self.wal.commit_delay, Bound::ZeroAllowed),
            ("queue.full_wait", self.full_wait(), Bound::ZeroAllowed),
            (
                "shutdown.drain_timeout",
                self.shutdown.drain_timeout,
                Bound::ZeroAllowed,
            ),
        ] {
            check_duration(key, value, bound)?;
        }
        if self.retry.max_delay < self.retry.base_delay {
            return bad(
                "retry.max_delay".into(),
                format!(
                    "{} is below retry.base_delay ({})",
                    humantime::format_duration(self.retry.max_delay),
                    humantime::format_duration(self.retry.base_delay)
                ),
            );
        }
        for (key, value) in [
            (
                "health.unhealthy_threshold",
                self.health.unhealthy_threshold as usize,
            ),
            ("health.healthy_threshold", self.health.healthy_threshold as usize),
            ("queue.max_in_flight", self.queue.max_in_flight),
            ("queue.max_in_flight_bytes", self.queue.max_in_flight_bytes),
            ("wal.segment_bytes", self.wal.segment_bytes as usize),
            ("queue.analyzer_concurrency", self.queue.analyzer_concurrency),
            ("limits.max_body_bytes", self.limits.max_body_bytes),
            (
                "limits.max_packets_per_request",
                self.limits.max_packets_per_request.unwrap_or(1),
            ),
            (
                "limits.max_messages_per_packet",
                self.limits.max_messages_per_packet,
            ),
            ("limits.max_packet_bytes", self.limits.max_packet_bytes),
            ("batch.max_packets", self.batch.max_packets),
            ("batch.max_bytes", self.batch.max_bytes),
            ("server.max_connections", self.server.max_connections),
            ("server.worker_threads", self.server.worker_threads.unwrap_or(1)),
        ] {
            if value == 0 {
                return bad(key.into(), "must be at least 1".into());
            }
        }
        for (key, value) in [
            ("queue.analyzer_concurrency", self.queue.analyzer_concurrency),
            ("server.max_connections", self.server.max_connections),
        ] {
            if value > MAX_SLOTS {
                return bad(
                    key.into(),
                    format!("{value} is above the most there can be, {MAX_SLOTS}"),
                );
            }
        }
        if self.limits.max_packet_bytes > MAX_PACKET_JSON_BYTES {
            return bad(
                "limits.max_packet_bytes".into(),
                format!(
                    "{} is above {MAX_PACKET_JSON_BYTES}, the largest packet a write-ahead log record holds",
                    self.limits.max_packet_bytes
                ),
            );
        }
        if self.queue.max_in_flight_bytes < self.limits.max_body_bytes {
            return bad(
                "queue.max_in_flight_bytes".into(),
                format!(
                    "{} is below limits.max_body_bytes ({}): a request the body limit lets in could never fit in the queue",
                    self.queue.max_in_flight_bytes, self.limits.max_body_bytes
                ),
            );
        }
        if self.full_wait() >= self.server.request_timeout {
            return bad(
                "queue.full_wait".into(),
                format!(
                    "{} must be below server.request_timeout ({}): a request waiting for room would time out first",
                    humantime::format_duration(self.full_wait()),
                    humantime::format_duration(self.server.request_timeout)
                ),
            );
        }
        if let Err(why) = self.records.check(&self.limits) {
            return Err(ConfigError(format!("records.{why}")));
        }
        if let Some(memory) = self.server.max_body_memory {
            if memory / 3 < self.limits.max_body_bytes {
                return bad(
                    "server.max_body_memory".into(),
                    format!(
                        "{memory} must be at least 3 x limits.max_body_bytes ({}): a gzip body, what it inflates to, and a buffer growing",
                        self.limits.max_body_bytes
                    ),
                );
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("tls".into(), "give both `cert` and `key`, or neither".into());
        }
        if self.auth.ingest_token_file.is_some() && self.auth.ingest_token.is_some() {
            return bad(
                "auth.ingest_token_file".into(),
                "give the ingestion token as a file or as LD_INGEST_TOKEN, not both".into(),
            );
        }
        if self.auth.admin_token_file.is_some() && self.auth.admin_token.is_some() {
            return bad(
                "auth.admin_token_file".into(),
                "give the admin token as a file or as LD_ADMIN_TOKEN, not both".into(),
            );
        }
        self.handoff.check()?;
        check_duration("handoff.timeout", self.handoff.timeout, Bound::AboveZero)?;
        if self.auth.protect_reads && !self.auth.any_token() {
            return bad(
                "auth.protect_reads".into(),
                "needs an ingestion or admin token to check reads against".into(),
            );
        }
        Ok(())
    }
}

/// The rules of an analyzer reached at `endpoint`: its URLs, TLS settings,
/// credentials and headers. The error starts with the key, below the
/// analyzer's (`endpoint: ...`, `tls.server_name: ...`).
fn check_reach(a: &AnalyzerConfig, endpoint: &str) -> Result<(), String> {
    let parsed = Endpoint::parse(endpoint).map_err(|why| format!("endpoint: {why}"))?;
    let own = a.health_check.clone().unwrap_or_default();
    if own.url.is_some() && a.health_path != "/health" {
        return Err("health_check.url: give health_check.url or health_path, not both".into());
    }
    parsed.health(&a.health_path, own.url.as_deref())?;
    if let Some(tls) = &a.tls {
        if !parsed.is_https() {
            return Err(format!(
                "tls: {} is an http:// endpoint; TLS settings need https://",
                parsed.url
            ));
        }
        tls.check()?;
    }
    if let Some(auth) = &a.auth {
        auth.check()?;
    }
    a.headers.check()
}

/// What a duration setting may be besides at most [`MAX_DURATION`].
#[derive(Clone, Copy)]
enum Bound {
    /// 0 means "off" or "at once".
    ZeroAllowed,
    /// An interval or timeout: 0 would spin or fail at once.
    AboveZero,
}

fn check_duration(key: &str, value: Duration, bound: Bound) -> Result<(), ConfigError> {
    if matches!(bound, Bound::AboveZero) && value.is_zero() {
        return Err(ConfigError(format!("{key}: must be above 0")));
    }
    if value > MAX_DURATION {
        return Err(ConfigError(format!(
            "{key}: {} is longer than the longest allowed, {}",
            humantime::format_duration(value),
            humantime::format_duration(MAX_DURATION)
        )));
    }
    Ok(())
}

/// A DNS subdomain, as Kubernetes names most objects (a Lease among them).
fn is_object_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    name.len() <= 253
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}
