//! Helpers shared by the black-box tests: a YAML configuration builder, a
//! distributor started in-process or as the real binary, an HTTP client
//! that answers status + headers + JSON, and polling with a deadline.
//!
//! Every test binary compiles this module on its own and uses only part of
//! it, hence the `dead_code` allowance below (scoped to this module).
#![allow(dead_code)]

use logs_distributor::config::Settings;
use logs_distributor::service::{self, Running};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long any condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- config

/// One analyzer: simulated in-process, or reached over HTTP at `endpoint`.
#[derive(Clone, Debug)]
pub struct AnalyzerSpec {
    pub id: String,
    /// The display name; the id when `None`.
    pub name: Option<String>,
    pub weight: i64,
    pub processing_ms: u64,
    pub failure_rate: f64,
    /// A real analyzer's URL; when set, the simulated settings are unused.
    pub endpoint: Option<String>,
}

pub fn analyzer(id: &str, weight: i64) -> AnalyzerSpec {
    AnalyzerSpec {
        id: id.into(),
        name: None,
        weight,
        processing_ms: 0,
        failure_rate: 0.0,
        endpoint: None,
    }
}

/// An analyzer reached over HTTP at `endpoint` (`http://127.0.0.1:PORT/`).
pub fn remote(id: &str, weight: i64, endpoint: &str) -> AnalyzerSpec {
    AnalyzerSpec {
        endpoint: Some(endpoint.into()),
        ..analyzer(id, weight)
    }
}

impl AnalyzerSpec {
    pub fn processing(mut self, ms: u64) -> Self {
        self.processing_ms = ms;
        self
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn failing(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }
}

/// A configuration file, section by section. The defaults keep tests fast
/// and deterministic: millisecond retries, probes out of the way (health
/// probes never fail, and the next one is an hour away), a short drain.
#[derive(Clone, Debug)]
pub struct Config {
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
    pub fn new(analyzers: Vec<AnalyzerSpec>) -> Config {
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
    pub fn four(processing_ms: u64) -> Config {
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

    pub fn retry(mut self, yaml: &str) -> Self {
        self.retry = yaml.into();
        self
    }

    pub fn health(mut self, yaml: &str) -> Self {
        self.health = yaml.into();
        self
    }

    pub fn shutdown(mut self, yaml: &str) -> Self {
        self.shutdown = yaml.into();
        self
    }

    pub fn queue(mut self, yaml: &str) -> Self {
        self.queue = Some(yaml.into());
        self
    }

    pub fn limits(mut self, yaml: &str) -> Self {
        self.limits = Some(yaml.into());
        self
    }

    /// The `http` section (the transport of analyzers with an endpoint).
    pub fn http(mut self, yaml: &str) -> Self {
        self.http = Some(yaml.into());
        self
    }

    /// Any other top-level section: `section("auth", "{protect_reads: true}")`.
    pub fn section(mut self, name: &str, yaml: &str) -> Self {
        self.extra.push(format!("{name}: {yaml}"));
        self
    }

    pub fn yaml(&self) -> String {
        let mut text = String::from("analyzers:\n");
        for a in &self.analyzers {
            if let Some(endpoint) = &a.endpoint {
                text.push_str(&format!(
                    "  - {{id: {}, name: {}, weight: {}, endpoint: {:?}}}\n",
                    a.id,
                    a.name.as_deref().unwrap_or(&a.id),
                    a.weight,
                    endpoint
                ));
                continue;
            }
            text.push_str(&format!(
                "  - {{id: {}, name: {}, weight: {}, simulated: {{processing_time_ms: {}, failure_rate: {:?}, health_failure_rate: 0.0}}}}\n",
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

// ---------------------------------------------------------------- packets

/// A valid packet with `messages` INFO messages; `id` left out when `None`.
pub fn packet(id: Option<&str>, messages: usize) -> Value {
    let messages: Vec<Value> = (0..messages)
        .map(|i| json!({"level": "INFO", "message": format!("message {i}"), "source": "tests"}))
        .collect();
    match id {
        Some(id) => json!({"id": id, "messages": messages}),
        None => json!({"messages": messages}),
    }
}

/// `count` valid one-message packets with ids `{prefix}-0`, `{prefix}-1`, ...
pub fn packets(prefix: &str, count: usize) -> Value {
    Value::Array(
        (0..count)
            .map(|i| packet(Some(&format!("{prefix}-{i}")), 1))
            .collect(),
    )
}

// ---------------------------------------------------------------- HTTP

/// An answer: status, headers, raw text and the text parsed as JSON
/// (`Value::Null` when it is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("response body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status, showing the body when it differs.
    pub fn expect(&self, status: u16) -> &Reply {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts the shape every error shares: a JSON object with an `error`
    /// string; answers that string.
    pub fn error(&self) -> &str {
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "error with content type {content_type:?}: {}",
            self.text
        );
        self.json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("error body without an `error` string: {}", self.text))
    }

    /// The `processed_packets` of an ingest answer.
    pub fn ids(&self) -> Vec<String> {
        self.json["processed_packets"]
            .as_array()
            .unwrap_or_else(|| panic!("no processed_packets in {}", self.text))
            .iter()
            .map(|id| id.as_str().expect("ids are strings").to_string())
            .collect()
    }
}

/// A client bound to one distributor.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(addr: std::net::SocketAddr) -> Api {
        Api {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            base: format!("http://{addr}"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        Reply::read(
            self.http
                .post(self.url(path))
                .json(body)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    /// POSTs raw bytes with the given headers.
    pub async fn post_raw(&self, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
        let mut request = self.http.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await.expect("POST")).await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::read(request.send().await.expect("request")).await
    }

    pub async fn post_logs(&self, packets: &Value) -> Reply {
        self.post("/api/v1/logs", packets).await
    }

    pub async fn stats(&self) -> Value {
        let reply = self.get("/api/v1/stats").await;
        reply.expect(200);
        reply.json
    }

    /// Forces an analyzer in or out, or back to auto: `{"healthy": false}`...
    pub async fn set_health(&self, id: &str, body: Value) -> Reply {
        self.post(&format!("/api/v1/analyzers/{id}/health"), &body).await
    }

    /// Waits until nothing is in flight; answers the stats then.
    pub async fn drained(&self) -> Value {
        eventually("nothing in flight", DEADLINE, || async {
            let stats = self.stats().await;
            if stats["in_flight"] == 0 {
                Ok(stats)
            } else {
                Err(format!("in_flight = {}", stats["in_flight"]))
            }
        })
        .await
    }
}

/// `processed_count` of each analyzer, by id.
pub fn processed(stats: &Value) -> std::collections::BTreeMap<String, u64> {
    counter(stats, "processed_count")
}

/// One per-analyzer counter of the stats, by id.
pub fn counter(stats: &Value, field: &str) -> std::collections::BTreeMap<String, u64> {
    stats["analyzers"]
        .as_object()
        .expect("stats.analyzers")
        .iter()
        .map(|(id, a)| (id.clone(), a[field].as_u64().expect("a count")))
        .collect()
}

/// Polls `probe` every 10 ms until it answers `Ok`; fails the test with
/// the last `Err` once `timeout` has passed.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out after {timeout:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

// ---------------------------------------------------------------- in-process

/// A distributor started in this process on 127.0.0.1:0 with its own data
/// directory.
pub struct Server {
    running: Option<Running>,
    pub api: Api,
    pub dir: TempDir,
}

impl Server {
    pub async fn start(config: &Config) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::from_yaml(&config.yaml())
            .unwrap_or_else(|e| panic!("test configuration refused: {e}\n{}", config.yaml()));
        settings.listen = "127.0.0.1:0".into();
        settings.data_dir = dir.path().to_path_buf();
        let running = service::start(settings).await.expect("distributor starts");
        let api = Api::new(running.addr());
        Server {
            running: Some(running),
            api,
            dir,
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("not shut down yet")
    }

    /// The orderly shutdown; fails the test if it fails.
    pub async fn shutdown(mut self) {
        if let Some(running) = self.running.take() {
            tokio::time::timeout(DEADLINE, running.shutdown())
                .await
                .expect("shutdown finishes in time")
                .expect("shutdown succeeds");
        }
    }
}

impl std::ops::Deref for Server {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

// ---------------------------------------------------------------- the binary

pub const BINARY: &str = env!("CARGO_BIN_EXE_logs-distributor");

/// Every environment variable the binary reads, removed from every child so
/// that the caller's environment cannot change what a test sees
/// (`tests/lifecycle.rs` checks the list against `--help`).
pub const ENV_VARS: [&str; 17] = [
    "LD_LISTEN",
    "LD_DATA_DIR",
    "LD_CONFIG",
    "LD_LOG_FORMAT",
    "LD_LOG",
    "LD_FSYNC",
    "LD_WAL_RECOVER",
    "LD_SOURCE",
    "LD_NAMESPACE",
    "LD_ALL_NAMESPACES",
    "LD_IDENTITY",
    "LD_INGEST_TOKEN",
    "LD_ADMIN_TOKEN",
    "LD_INGEST_TOKEN_FILE",
    "LD_ADMIN_TOKEN_FILE",
    "LD_TLS_CERT",
    "LD_TLS_KEY",
];

/// The binary with a clean environment.
pub fn command() -> Command {
    let mut command = Command::new(BINARY);
    for var in ENV_VARS {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Writes `config` to `dir/name` and answers the path.
pub fn write_config(dir: &Path, name: &str, config: &Config) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, config.yaml()).expect("write config");
    path
}

/// The real binary, serving; killed if the test ends while it runs.
pub struct Process {
    child: Child,
    pub api: Api,
    pub port: u16,
    log: PathBuf,
}

impl Process {
    /// Starts `logs-distributor --listen 127.0.0.1:PORT --data-dir DIR
    /// --config FILE` and waits for `/readyz`; its stderr goes to a file in
    /// `log_dir`. A port taken between choosing and binding is retried.
    pub async fn start(config: &Path, data_dir: &Path, log_dir: &Path) -> Process {
        Process::start_with(log_dir, |command, port| {
            command
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--data-dir")
                .arg(data_dir)
                .arg("--config")
                .arg(config);
        })
        .await
    }

    /// Starts the binary, letting `setup` add arguments or variables for the
    /// chosen port, and waits for `/readyz` on it.
    pub async fn start_with(log_dir: &Path, setup: impl Fn(&mut Command, u16)) -> Process {
        let mut last = String::new();
        for attempt in 0..3 {
            let port = free_port();
            let log = log_dir.join(format!("stderr-{port}-{attempt}.log"));
            let stderr = std::fs::File::create(&log).expect("log file");
            let mut command = command();
            setup(&mut command, port);
            let child = command
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("spawn the binary");
            let mut process = Process {
                child,
                api: Api::new(([127, 0, 0, 1], port).into()),
                port,
                log,
            };
            match process.wait_ready().await {
                Ok(()) => return process,
                Err(e) => last = e,
            }
        }
        panic!("the binary did not become ready: {last}");
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Err(format!(
                    "exited with {status} during start-up:\n{}",
                    self.stderr()
                ));
            }
            if let Ok(response) = self.api.http.get(self.api.url("/readyz")).send().await {
                if response.status() == StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {DEADLINE:?}:\n{}", self.stderr()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits for the process to exit on its own.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the binary did not exit within {timeout:?}:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl std::ops::Deref for Process {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the binary with `args` to completion (at most `DEADLINE`): exit
/// status, stdout, stderr.
pub fn run_to_end(command: &mut Command) -> (ExitStatus, String, String) {
    run_bounded(command, None, DEADLINE)
}

/// Runs `command` to completion with `stdin`, killing it (and failing the
/// test) after `deadline`: exit status, stdout, stderr.
pub fn run_bounded(
    command: &mut Command,
    stdin: Option<&str>,
    deadline: Duration,
) -> (ExitStatus, String, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out_path = dir.path().join("stdout");
    let err_path = dir.path().join("stderr");
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    let description = format!("{command:?}");
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {description}: {e}"));
    if let Some(text) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(text.as_bytes()).expect("write stdin");
    }
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{description} still running after {deadline:?}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    (status, read(&out_path), read(&err_path))
}

/// Reads `state.json.gz` as JSON.
pub fn read_checkpoint(data_dir: &Path) -> Value {
    use std::io::Read;
    let file = std::fs::File::open(data_dir.join("state.json.gz")).expect("state.json.gz exists");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("state.json.gz is gzip");
    serde_json::from_str(&text).expect("state.json.gz holds JSON")
}

// ---------------------------------------------------------------- reference analyzers

/// A reference analyzer (`logs-distributor analyzer`) running as its own
/// process on 127.0.0.1, recording what it receives in `record`. Killed
/// when dropped, so that a failing test leaves nothing behind.
pub struct AnalyzerProcess {
    child: Option<Child>,
    pub name: String,
    pub port: u16,
    /// One JSON line `{"id": ...}` per packet received.
    pub record: PathBuf,
    /// `--latency-ms`, `--fail-first`... as given to `start`.
    extra: Vec<String>,
    log: PathBuf,
    restarts: u32,
    http: reqwest::Client,
}

impl AnalyzerProcess {
    /// Starts `logs-distributor analyzer --listen 127.0.0.1:PORT --name NAME
    /// --record DIR/NAME.jsonl EXTRA...` on a free port and waits for its
    /// `/health` to answer 200; a port taken between choosing and binding is
    /// retried with another.
    pub async fn start(dir: &Path, name: &str, extra: &[&str]) -> AnalyzerProcess {
        let mut analyzer = AnalyzerProcess {
            child: None,
            name: name.into(),
            port: 0,
            record: dir.join(format!("{name}.jsonl")),
            extra: extra.iter().map(|arg| arg.to_string()).collect(),
            log: PathBuf::new(),
            restarts: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
        };
        let mut last = String::new();
        for _ in 0..3 {
            analyzer.port = free_port();
            match analyzer.launch(dir).await {
                Ok(()) => return analyzer,
                Err(e) => last = e,
            }
        }
        panic!("analyzer {name} did not start: {last}");
    }

    /// The URL the distributor delivers to.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Spawns the process on `self.port` and waits until `/health` answers.
    async fn launch(&mut self, dir: &Path) -> Result<(), String> {
        self.log = dir.join(format!("{}-{}-{}.log", self.name, self.port, self.restarts));
        self.restarts += 1;
        let stderr = std::fs::File::create(&self.log).expect("analyzer log file");
        let child = command()
            .arg("analyzer")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--name")
            .arg(&self.name)
            .arg("--record")
            .arg(&self.record)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the analyzer");
        self.child = Some(child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("try_wait")) {
                self.child = None;
                return Err(format!(
                    "exited with {status} during start-up:\n{}",
                    self.stderr()
                ));
            }
            if let Ok(response) = self.http.get(self.url("/health")).send().await {
                if response.status() == StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(format!("/health not 200 after {DEADLINE:?}:\n{}", self.stderr()));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same record file (appended to).
    pub async fn restart(&mut self) {
        self.kill();
        let dir = self.record.parent().expect("record dir").to_path_buf();
        let mut last = String::new();
        // The port was just released; another test could grab it in between,
        // which is unlikely enough to fail the test rather than hide.
        for _ in 0..3 {
            match self.launch(&dir).await {
                Ok(()) => return,
                Err(e) => {
                    last = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!(
            "analyzer {} did not restart on port {}: {last}",
            self.name, self.port
        );
    }

    /// Its `GET /stats`.
    pub async fn stats(&self) -> Value {
        let response = self
            .http
            .get(self.url("/stats"))
            .send()
            .await
            .expect("analyzer /stats");
        assert_eq!(response.status(), StatusCode::OK, "analyzer {} /stats", self.name);
        response.json().await.expect("analyzer /stats is JSON")
    }

    /// Switches its own health (`POST /admin/health`).
    pub async fn set_health(&self, healthy: bool) {
        let response = self
            .http
            .post(self.url("/admin/health"))
            .json(&json!({"healthy": healthy}))
            .send()
            .await
            .expect("analyzer /admin/health");
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "analyzer {} /admin/health",
            self.name
        );
        let probe = self
            .http
            .get(self.url("/health"))
            .send()
            .await
            .expect("analyzer /health");
        let expected = if healthy { 200 } else { 503 };
        assert_eq!(
            probe.status().as_u16(),
            expected,
            "analyzer {} /health after the switch",
            self.name
        );
    }

    /// The ids in its record file, in the order received.
    pub fn records(&self) -> Vec<String> {
        read_records(&self.record)
    }

    /// What the process wrote to stderr so far (the current run).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AnalyzerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The ids of a record file, one JSON line `{"id": ...}` each; no file is
/// no ids. A line that is not such an object fails the test.
pub fn read_records(path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: {line:?} is not JSON: {e}", path.display()));
            value["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: {line:?} has no string id", path.display()))
                .to_string()
        })
        .collect()
}

/// Every entry of the distributor's dead letter, through the API.
pub async fn dead_letter_entries(api: &Api) -> Vec<Value> {
    let reply = api.get("/api/v1/dead-letter?limit=10000").await;
    reply.expect(200);
    let entries = reply.json["packets"]
        .as_array()
        .expect("dead-letter packets")
        .clone();
    assert_eq!(
        reply.json["total"].as_u64(),
        Some(entries.len() as u64),
        "the page holds the whole dead letter"
    );
    entries
}

/// `count` one-message packets with ids `{prefix}-000000`, `{prefix}-000001`...
/// starting at `from`, and those ids.
pub fn numbered_packets(prefix: &str, from: usize, count: usize) -> (Value, Vec<String>) {
    let ids: Vec<String> = (from..from + count).map(|i| format!("{prefix}-{i:06}")).collect();
    let body = Value::Array(ids.iter().map(|id| packet(Some(id), 1)).collect());
    (body, ids)
}
