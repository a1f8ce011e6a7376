//! The distributor binary as a process of a test: started on a port of its
//! own and waited for, or started, SIGKILLed and started again on one port
//! as often as a test likes. Killed when dropped, also when a test panics.
//! Each start's stderr goes to its own file.

use crate::support::http::{get, Api};
use crate::support::poll::eventually_every;
use crate::support::ports::free_port;
use crate::support::processes::{command, signal, tail};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// How long a start may take until `/readyz` answers 200.
pub(crate) const START_DEADLINE: Duration = Duration::from_secs(20);

/// The binary, serving on 127.0.0.1:`port` (or not running right now).
pub(crate) struct Distributor {
    child: Option<Child>,
    pub api: Api,
    pub port: u16,
    log_dir: PathBuf,
    /// The stderr file of every start, in order.
    logs: Vec<PathBuf>,
    /// When the current (or last) start was spawned.
    pub spawned_at: SystemTime,
}

/// Adds `--listen 127.0.0.1:PORT --data-dir DIR --config FILE EXTRA...`.
fn serve_flags(command: &mut Command, port: u16, config: &Path, data_dir: &Path, extra: &[&str]) {
    command
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--config")
        .arg(config)
        .args(extra);
}

impl Distributor {
    /// Starts `logs-distributor --listen 127.0.0.1:PORT --data-dir DIR
    /// --config FILE` on a free port and waits for `/readyz`; its stderr
    /// goes to a file in `log_dir`.
    pub(crate) async fn start(config: &Path, data_dir: &Path, log_dir: &Path) -> Distributor {
        Distributor::start_with(log_dir, |command, port| {
            serve_flags(command, port, config, data_dir, &[]);
        })
        .await
    }

    /// Starts the binary on a free port, letting `setup` add the arguments
    /// or variables for that port, and waits for `/readyz`. A port taken
    /// between choosing and binding is retried with another.
    pub(crate) async fn start_with(log_dir: &Path, setup: impl Fn(&mut Command, u16)) -> Distributor {
        let mut last = String::new();
        for _ in 0..3 {
            let mut distributor = Distributor::stopped(free_port(), log_dir);
            distributor.spawn_with(|command, port| setup(command, port));
            match distributor.wait_ready().await {
                Ok(()) => return distributor,
                Err(e) => last = e,
            }
        }
        panic!("the binary did not become ready: {last}");
    }

    /// Not started yet: to be started (and killed, and started again) on `port`.
    pub(crate) fn stopped(port: u16, log_dir: &Path) -> Distributor {
        std::fs::create_dir_all(log_dir).expect("log dir");
        Distributor {
            child: None,
            api: Api::new(([127, 0, 0, 1], port).into()),
            port,
            log_dir: log_dir.to_path_buf(),
            logs: Vec::new(),
            spawned_at: SystemTime::now(),
        }
    }

    /// Spawns `--listen 127.0.0.1:PORT --data-dir DIR --config FILE EXTRA...`
    /// on this port without waiting for it.
    pub(crate) fn spawn(&mut self, config: &Path, data_dir: &Path, extra: &[&str]) {
        self.spawn_with(|command, port| serve_flags(command, port, config, data_dir, extra));
    }

    /// Spawns the binary with what `setup` adds for this port, without
    /// waiting for it.
    pub(crate) fn spawn_with(&mut self, setup: impl FnOnce(&mut Command, u16)) {
        assert!(self.child.is_none(), "the distributor is already running");
        let log = self
            .log_dir
            .join(format!("distributor-{}-{:03}.log", self.port, self.logs.len()));
        let stderr = std::fs::File::create(&log).expect("distributor log file");
        self.logs.push(log);
        let mut command = command();
        setup(&mut command, self.port);
        self.spawned_at = SystemTime::now();
        let child = command
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn the distributor");
        self.child = Some(child);
    }

    /// Waits for `/readyz` to answer 200; an exit during start-up is an error
    /// that carries the end of the process's stderr.
    pub(crate) async fn wait_ready(&mut self) -> Result<(), String> {
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
            if let Ok(reply) = get(&self.api.http, &self.api.url("/readyz")).await {
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

    /// Spawns on this port and waits until ready. A port still held by
    /// someone else (a client's connection attempt can briefly take it while
    /// the distributor is down) is waited out for a few seconds; anything
    /// else fails the test.
    pub(crate) async fn launch(&mut self, config: &Path, data_dir: &Path, extra: &[&str]) {
        for attempt in 0.. {
            self.spawn(config, data_dir, extra);
            match self.wait_ready().await {
                Ok(()) => return,
                Err(e) if attempt < 25 && e.contains("cannot listen") => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("start #{}: {e}", self.logs.len()),
            }
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("the distributor is running").id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`...) to the running process.
    pub(crate) fn signal(&self, name: &str) {
        signal(self.pid(), name);
    }

    pub(crate) fn sigterm(&self) {
        self.signal("TERM");
    }

    /// SIGKILL, as a crash would; answers whether it was still running.
    pub(crate) fn kill9(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return false;
        };
        let was_running = matches!(child.try_wait(), Ok(None));
        if was_running {
            let _ = child.kill();
        }
        let _ = child.wait();
        was_running
    }

    /// Whether the process is still running (it did not crash).
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits for the process to exit on its own (then it may be launched again).
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("the distributor was started");
            if let Some(status) = child.try_wait().expect("try_wait") {
                // Exited: it may be launched again.
                self.child = None;
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

    /// Sends SIGTERM and waits (at most `timeout`) for a clean exit;
    /// answers the run's stderr.
    pub(crate) async fn stop_cleanly(&mut self, timeout: Duration) -> String {
        self.sigterm();
        let status = self.wait_exit(timeout).await;
        let log = self.stderr();
        assert!(status.success(), "exited with {status}:\n{log}");
        log
    }

    /// The stderr of the current (or last) start.
    pub(crate) fn stderr(&self) -> String {
        self.logs
            .last()
            .map(|log| std::fs::read_to_string(log).unwrap_or_default())
            .unwrap_or_default()
    }

    /// Every start's stderr, in order.
    pub(crate) fn all_stderr(&self) -> Vec<String> {
        self.logs
            .iter()
            .map(|log| std::fs::read_to_string(log).unwrap_or_default())
            .collect()
    }

    /// Waits until nothing is in flight, for at most `within`; answers the
    /// stats then. A timeout shows the end of the process's stderr.
    pub(crate) async fn drained_within(&self, within: Duration) -> Value {
        eventually_every("nothing in flight", within, Duration::from_millis(50), || async {
            let stats = self.api.stats().await;
            if stats["in_flight"] == 0 {
                Ok(stats)
            } else {
                Err(format!(
                    "{} packets in flight; stats: {stats}\nstderr:\n{}",
                    stats["in_flight"],
                    tail(&self.stderr(), 30)
                ))
            }
        })
        .await
    }
}

impl std::ops::Deref for Distributor {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Distributor {
    fn drop(&mut self) {
        self.kill9();
    }
}
