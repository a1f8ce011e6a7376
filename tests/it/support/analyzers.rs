//! Reference analyzers (`logs-distributor analyzer`), each its own process
//! on 127.0.0.1 (or another address of this machine), recording every
//! packet it receives in a file.

use crate::support::files::{read_recorded_packets, read_records};
use crate::support::poll::DEADLINE;
use crate::support::ports::free_port;
use crate::support::processes::command;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A reference analyzer (`logs-distributor analyzer`) running as its own
/// process on 127.0.0.1 (or `host`), recording what it receives in `record`. Killed
/// when dropped, so that a failing test leaves nothing behind.
pub(crate) struct AnalyzerProcess {
    child: Option<Child>,
    pub name: String,
    /// The address it listens on.
    pub host: IpAddr,
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
    pub(crate) async fn start(dir: &Path, name: &str, extra: &[&str]) -> AnalyzerProcess {
        Self::start_on(dir, name, IpAddr::V4(Ipv4Addr::LOCALHOST), extra).await
    }

    /// [`AnalyzerProcess::start`] listening on `host`, an address of this
    /// machine.
    pub(crate) async fn start_on(dir: &Path, name: &str, host: IpAddr, extra: &[&str]) -> AnalyzerProcess {
        let mut analyzer = AnalyzerProcess {
            child: None,
            name: name.into(),
            host,
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
    pub(crate) fn endpoint(&self) -> String {
        self.url("/")
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address())
    }

    /// `host:port`.
    pub(crate) fn address(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// Spawns the process on `self.port` and waits until `/health` answers.
    async fn launch(&mut self, dir: &Path) -> Result<(), String> {
        self.log = dir.join(format!("{}-{}-{}.log", self.name, self.port, self.restarts));
        self.restarts += 1;
        let stderr = std::fs::File::create(&self.log).expect("analyzer log file");
        let child = command()
            .arg("analyzer")
            .arg("--listen")
            .arg(self.address().to_string())
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
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same record file (appended to).
    pub(crate) async fn restart(&mut self) {
        self.kill();
        let dir = self.record.parent().expect("record dir").to_path_buf();
        let mut last = String::new();
        // No other test of this binary is handed the port (see `ports`); a
        // start that fails is tried twice more, then fails the test.
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
    pub(crate) async fn stats(&self) -> Value {
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
    pub(crate) async fn set_health(&self, healthy: bool) {
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
    pub(crate) fn records(&self) -> Vec<String> {
        read_records(&self.record)
    }

    /// The packets in its record file, messages included (started with
    /// `--record-messages`), in the order received.
    pub(crate) fn recorded_packets(&self) -> Vec<Value> {
        read_recorded_packets(&self.record)
    }

    /// What the process wrote to stderr so far (the current run).
    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AnalyzerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
