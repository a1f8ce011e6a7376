//! Helpers shared by the fault tests (`tests/crash.rs`, `tests/disk_faults.rs`):
//! the distributor binary as a real process, started and SIGKILLed as often
//! as a test likes (and when dropped, also when a test panics), a plain
//! HTTP client, and readers for the dead letter. Reference analyzers, the
//! clean command line and record files come from `tests/common`, which
//! each of those test binaries declares next to this module.
//!
//! Each test binary compiles this module on its own and uses only part of
//! it, hence the `dead_code` allowance (scoped to this module).
#![allow(dead_code)]

use crate::support::common::command;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process may take to start.
pub const START_DEADLINE: Duration = Duration::from_secs(20);

/// An HTTP client for tests: short timeouts, no connection reuse surprises.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client")
}

/// SIGKILLs a child and reaps it; answers how it ended.
fn kill_child(child: &mut Child) -> Option<ExitStatus> {
    match child.try_wait() {
        Ok(Some(status)) => Some(status),
        _ => {
            let _ = child.kill();
            child.wait().ok()
        }
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------- HTTP

/// A whole answer: status, headers, text, and the text as JSON (`Null` when not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// Reads the whole answer; an error while reading the body is an error
    /// of the request (the answer was not received).
    pub async fn read(response: reqwest::Response) -> Result<Reply, reqwest::Error> {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            text,
            json,
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `processed_packets` of an ingest answer.
    pub fn ids(&self) -> Vec<String> {
        self.json["processed_packets"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| id.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }
}

pub async fn get(client: &reqwest::Client, url: &str) -> Result<Reply, reqwest::Error> {
    Reply::read(client.get(url).send().await?).await
}

pub async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Result<Reply, reqwest::Error> {
    Reply::read(client.post(url).json(body).send().await?).await
}

// ---------------------------------------------------------------- packets

/// A valid one-message packet with `id` and a message of about `bytes` bytes.
pub fn packet(id: &str, bytes: usize) -> Value {
    let filler = "x".repeat(bytes.saturating_sub(id.len() + 1));
    json!({
        "id": id,
        "messages": [{"level": "INFO", "message": format!("{id} {filler}"), "source": "fault-tests"}],
    })
}

/// A request body of one packet per id.
pub fn body(ids: &[String], bytes: usize) -> Value {
    Value::Array(ids.iter().map(|id| packet(id, bytes)).collect())
}

// ---------------------------------------------------------------- records

/// The entries of `failed_packets.json`, which must parse as a JSON array
/// whenever it exists; no file is no entries.
pub fn read_dead_letter_file(path: &Path) -> Result<Vec<Value>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_slice::<Vec<Value>>(&bytes).map_err(|e| {
        let text = String::from_utf8_lossy(&bytes);
        format!(
            "{} is not a JSON array: {e}; its last bytes: {:?}",
            path.display(),
            &text[text.len().saturating_sub(300)..]
        )
    })
}

/// The packet ids of dead-letter entries.
pub fn dead_letter_ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e["packet"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("dead-letter entry without packet.id: {e}"))
                .to_string()
        })
        .collect()
}

// ---------------------------------------------------------------- distributor

/// The distributor binary on a fixed port and data directory, started and
/// SIGKILLed as often as a test likes; SIGKILLed when dropped. Each start's
/// stderr goes to its own file in `log_dir`.
pub struct Distributor {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
    log_dir: PathBuf,
    /// Starts so far; also names the log files.
    pub starts: u32,
    log: PathBuf,
    /// When the current (or last) start was spawned.
    pub spawned_at: std::time::SystemTime,
    pub http: reqwest::Client,
}

impl Distributor {
    /// Not started yet.
    pub fn new(port: u16, data_dir: &Path, log_dir: &Path) -> Distributor {
        std::fs::create_dir_all(log_dir).expect("log dir");
        Distributor {
            child: None,
            port,
            data_dir: data_dir.to_path_buf(),
            log_dir: log_dir.to_path_buf(),
            starts: 0,
            log: PathBuf::new(),
            spawned_at: std::time::SystemTime::now(),
            http: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Spawns `--listen 127.0.0.1:PORT --data-dir DIR --config FILE EXTRA...`
    /// without waiting for it.
    pub fn spawn(&mut self, config: &Path, extra: &[&str]) {
        assert!(self.child.is_none(), "the distributor is already running");
        self.log = self.log_dir.join(format!("distributor-{:03}.log", self.starts));
        self.starts += 1;
        let stderr = std::fs::File::create(&self.log).expect("distributor log file");
        self.spawned_at = std::time::SystemTime::now();
        let child = command()
            .stdout(Stdio::null())
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--config")
            .arg(config)
            .args(extra)
            .stderr(stderr)
            .spawn()
            .expect("spawn the distributor");
        self.child = Some(child);
    }

    /// Waits for `/readyz` to answer 200; an exit during start-up is an error
    /// that carries the process's stderr.
    pub async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let child = self.child.as_mut().ok_or("the distributor is not running")?;
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Err(format!(
                    "the distributor exited with {status} during start-up; its stderr:\n{}",
                    tail(&self.stderr(), 40)
                ));
            }
            if let Ok(reply) = get(&self.http, &self.url("/readyz")).await {
                if reply.status == StatusCode::OK {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the distributor was not ready after {START_DEADLINE:?}; its stderr:\n{}",
                    tail(&self.stderr(), 40)
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Spawns and waits until ready; a port still held by someone else (a
    /// client's connection attempt can briefly take it while the distributor
    /// is down) is waited out for a few seconds, anything else fails the test.
    pub async fn start(&mut self, config: &Path, extra: &[&str]) {
        for attempt in 0.. {
            self.spawn(config, extra);
            match self.wait_ready().await {
                Ok(()) => return,
                Err(e) if attempt < 25 && e.contains("cannot listen") => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("start #{}: {e}", self.starts),
            }
        }
    }

    /// SIGKILL, as a crash would; answers whether it was still running.
    pub fn kill9(&mut self) -> bool {
        match self.child.take() {
            Some(mut child) => {
                let was_running = matches!(child.try_wait(), Ok(None));
                kill_child(&mut child);
                was_running
            }
            None => false,
        }
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`...) to the running process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("the distributor is running").id();
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Whether the process is still running (it did not crash).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The stderr of the current (or last) start.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every start's stderr, in order.
    pub fn all_stderr(&self) -> Vec<String> {
        (0..self.starts)
            .map(|n| {
                std::fs::read_to_string(self.log_dir.join(format!("distributor-{n:03}.log")))
                    .unwrap_or_default()
            })
            .collect()
    }

    pub async fn stats(&self) -> Value {
        let reply = get(&self.http, &self.url("/api/v1/stats"))
            .await
            .expect("GET /api/v1/stats");
        assert_eq!(reply.status, StatusCode::OK, "/api/v1/stats: {}", reply.text);
        reply.json
    }

    /// Waits until nothing is in flight; answers the stats then.
    pub async fn drained(&self, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let stats = self.stats().await;
            if stats["in_flight"] == 0 {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "still {} packets in flight after {within:?}; stats: {stats}\nstderr:\n{}",
                stats["in_flight"],
                tail(&self.stderr(), 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every dead-letter entry, through `GET /api/v1/dead-letter`, page by page.
    pub async fn dead_letter(&self) -> Vec<Value> {
        let mut entries = Vec::new();
        loop {
            let url = self.url(&format!(
                "/api/v1/dead-letter?limit=10000&offset={}",
                entries.len()
            ));
            let reply = get(&self.http, &url).await.expect("GET /api/v1/dead-letter");
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "/api/v1/dead-letter: {}",
                reply.text
            );
            let page = reply.json["packets"]
                .as_array()
                .expect("dead-letter packets")
                .clone();
            let total = reply.json["total"].as_u64().expect("dead-letter total") as usize;
            let empty = page.is_empty();
            entries.extend(page);
            if entries.len() >= total || empty {
                return entries;
            }
        }
    }

    /// The value of one metric series in `/metrics` (`name{labels}` as printed), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let reply = get(&self.http, &self.url("/metrics"))
            .await
            .expect("GET /metrics");
        reply
            .text
            .lines()
            .filter_map(|line| line.strip_prefix(series))
            .filter_map(|rest| rest.strip_prefix(' '))
            .find_map(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Distributor {
    fn drop(&mut self) {
        self.kill9();
    }
}
