//! A real client: the OpenTelemetry Python SDK (PyPI, pinned in
//! `scripts/fixtures/otel-python-sdk.txt`, installed once into a venv by
//! `scripts/otel-python-sdk.sh`) exporting with its OTLP/HTTP exporter
//! (protobuf) through a `BatchLogRecordProcessor` to the distributor
//! binary, configured only by the SDK's standard environment variables
//! (`scripts/otel_sdk_client.py`). Every record must reach the reference
//! analyzers once, with `service.name` as the source and its attributes,
//! typed, in metadata.
//!
//! Compiled with the cargo feature `test-otel-sdk` (it needs python3 and
//! PyPI; `make test` turns it on).

use crate::support::otlp::OtlpSetup;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// How long one run of the client may take (the SDK retries a refused
/// export with backoff; none is expected here).
const CLIENT_DEADLINE: Duration = Duration::from_secs(90);

/// The venv's python, installed by the script when missing.
fn python() -> PathBuf {
    let output = Command::new(Path::new(ROOT).join("scripts/otel-python-sdk.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/otel-python-sdk.sh");
    assert!(output.status.success(), "scripts/otel-python-sdk.sh failed");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// Runs the client for `count` records of run `run`, with the `OTEL_*`
/// variables given (and no others); answers its one line of output.
async fn run_client(python: &Path, run: &str, count: usize, variables: &[(&str, String)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut command = Command::new(python);
    command
        .arg(Path::new(ROOT).join("scripts/otel_sdk_client.py"))
        .args(["--count", &count.to_string(), "--run", run])
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap());
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("OTEL_")) {
        command.env_remove(name);
    }
    for (name, value) in variables {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start the SDK client");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > CLIENT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the SDK client ran longer than {CLIENT_DEADLINE:?}; its stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let errors = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(status.success(), "the SDK client failed ({status}):\n{errors}");
    // The exporter logs every export it could not make (a refusal, a
    // connection error) to stderr: there must be none.
    assert!(errors.trim().is_empty(), "the SDK client complained:\n{errors}");
    let line = std::fs::read_to_string(&stdout).unwrap();
    serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{line:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_s_records_reach_the_analyzers_with_their_attributes() {
    let python = python();
    let setup = OtlpSetup::start(|config, dir| {
        let token = dir.join("ingest.token");
        std::fs::write(&token, "sdk-token\n").unwrap();
        config.section("auth", &format!("{{ingest_token_file: {token:?}}}"))
    })
    .await;
    let base = setup.api().base.clone();
    // The signal's own endpoint (a full URL), as the README shows it.
    let plain = run_client(
        &python,
        "plain",
        1200,
        &[
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", format!("{base}/v1/logs")),
            (
                "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
                "Authorization=Bearer%20sdk-token".into(),
            ),
            ("OTEL_SERVICE_NAME", "sdk-checkout".into()),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=it".into()),
        ],
    )
    .await;
    assert_eq!(plain, json!({"emitted": 1200, "flushed": true}));
    // The base endpoint (the SDK adds /v1/logs), the headers of every
    // signal, gzip.
    let gzip = run_client(
        &python,
        "gzip",
        300,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", base.clone()),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20sdk-token".into(),
            ),
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "gzip".into()),
            ("OTEL_SERVICE_NAME", "sdk-checkout".into()),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=it".into()),
        ],
    )
    .await;
    assert_eq!(gzip, json!({"emitted": 300, "flushed": true}));

    let messages = setup.delivered(1500).await;
    let mut seen = BTreeSet::new();
    for message in &messages {
        let metadata = &message["metadata"];
        let attributes = &metadata["attributes"];
        let run = attributes["run"].as_str().expect("run");
        let index = attributes["index"].as_i64().expect("index, an integer");
        assert!(seen.insert((run.to_owned(), index)), "{run} {index} twice");
        assert_eq!(message["source"], "sdk-checkout", "{message}");
        assert_eq!(message["message"], format!("record {index} of {run}"));
        let odd = index % 2 == 1;
        assert_eq!(message["level"], if odd { "WARNING" } else { "INFO" });
        assert_eq!(metadata["severity_number"], if odd { 13 } else { 9 });
        assert_eq!(metadata["severity_text"], if odd { "WARN" } else { "INFO" });
        let mut expected = json!({"run": run, "index": index, "even": !odd, "ratio": index as f64 / 4.0});
        if index % 3 == 0 {
            expected["tags"] = json!(["a", "b"]);
        }
        assert_eq!(attributes, &expected, "{message}");
        assert_eq!(metadata["resource"]["service.name"], "sdk-checkout");
        assert_eq!(metadata["resource"]["deployment.environment"], "it");
        assert_eq!(metadata["resource"]["telemetry.sdk.language"], "python");
        assert_eq!(
            metadata["scope"],
            json!({"name": "logs-distributor.sdk-client", "version": "1.0.0"})
        );
        assert!(metadata["time_unix_nano"].is_string() || metadata["observed_time_unix_nano"].is_string());
    }
    assert_eq!(seen.len(), 1500);
}
