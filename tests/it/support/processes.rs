//! Running programs: the distributor binary with a clean environment, any
//! command to completion within a deadline, signals, and the tail of a log.

use crate::support::poll::DEADLINE;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_logs-distributor");

/// Every environment variable the binary reads, removed from every child so
/// that the caller's environment cannot change what a test sees
/// (`lifecycle` checks the list against `--help`); the last is the
/// allocator's.
pub(crate) const ENV_VARS: [&str; 22] = [
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
    "LD_ANALYZER_SELECTOR",
    "LD_LEASE_NAME",
    "LD_HANDOFF_ON_STOP",
    "LD_STATEFULSET",
    "LD_INGEST_TOKEN",
    "LD_ADMIN_TOKEN",
    "LD_INGEST_TOKEN_FILE",
    "LD_ADMIN_TOKEN_FILE",
    "LD_TLS_CERT",
    "LD_TLS_KEY",
    "_RJEM_MALLOC_CONF",
];

/// The binary with a clean environment.
pub(crate) fn command() -> Command {
    let mut command = Command::new(BINARY);
    for var in ENV_VARS {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}

/// What a command that ran to completion said.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Fails the test unless the command succeeded; answers stdout. (Only
    /// the Kubernetes tests, compiled with `test-control-plane`, need it.)
    #[cfg(feature = "test-control-plane")]
    pub(crate) fn ok(&self, what: &str) -> &str {
        assert!(
            self.status.success(),
            "{what} failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

/// Runs `command` to completion (at most `DEADLINE`).
pub(crate) fn run_to_end(command: &mut Command) -> Finished {
    run(command, None, DEADLINE)
}

/// Runs `command` to completion with `stdin`, killing it (and failing the
/// test) after `deadline`.
pub(crate) fn run(command: &mut Command, stdin: Option<&str>, deadline: Duration) -> Finished {
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
    Finished {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
    }
}

/// Sends a signal by name (`TERM`, `KILL`, `STOP`, `CONT`...) to `pid`.
pub(crate) fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
