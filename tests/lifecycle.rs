//! The real binary: restart on the same data directory, SIGTERM drain,
//! configuration errors, `--help`, environment variables.

mod common;

use common::{
    analyzer, command, packets, processed, read_checkpoint, run_to_end, write_config, Config, Process,
    DEADLINE,
};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Sum of the delivered counters in a checkpoint.
fn delivered_in(checkpoint: &Value) -> u64 {
    checkpoint["counters"]["analyzers"]
        .as_object()
        .expect("counters.analyzers")
        .values()
        .map(|a| a["delivered"].as_u64().unwrap())
        .sum()
}

async fn wait_not_ready(process: &Process) {
    common::eventually("/readyz to turn 503", DEADLINE, || async {
        let reply = process.get("/readyz").await;
        if reply.status == 503 {
            Ok(())
        } else {
            Err(reply.text)
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_on_the_same_data_dir_delivers_what_was_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let slow = write_config(
        dir.path(),
        "slow.yaml",
        &Config::four(3000).shutdown("{drain_timeout: 200ms}"),
    );
    let fast = write_config(dir.path(), "fast.yaml", &Config::four(0));
    let n = 40;

    let mut first = Process::start(&slow, &data, dir.path()).await;
    let reply = first.post_logs(&packets("survivor", n)).await;
    reply.expect(202);
    let sent: BTreeSet<String> = reply.ids().into_iter().collect();
    assert_eq!(first.stats().await["in_flight"], n);
    first.sigterm();
    let status = first.wait_exit(DEADLINE).await;
    assert_eq!(status.code(), Some(0), "exit status; stderr:\n{}", first.stderr());

    // The drain timed out: everything is in the checkpoint.
    let checkpoint = read_checkpoint(&data);
    let saved: BTreeSet<String> = checkpoint["in_flight"]
        .as_array()
        .expect("in_flight")
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(saved, sent);
    assert_eq!(checkpoint["counters"]["packets_received"], n);
    assert_eq!(delivered_in(&checkpoint), 0);

    // Restarted with fast analyzers: all of them are delivered, once.
    let mut second = Process::start(&fast, &data, dir.path()).await;
    let stats = second.drained().await;
    assert_eq!(processed(&stats).values().sum::<u64>(), n as u64, "{stats}");
    assert_eq!(
        stats["total_packets_received"], n,
        "carried over, not counted again"
    );
    assert_eq!(stats["total_dead_lettered"], 0);
    second.sigterm();
    let status = second.wait_exit(DEADLINE).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", second.stderr());
    let checkpoint = read_checkpoint(&data);
    assert_eq!(checkpoint["in_flight"], serde_json::json!([]));
    assert_eq!(delivered_in(&checkpoint), n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_refuses_new_packets_and_drains_the_in_flight_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let processing = Duration::from_millis(1500);
    let slow = write_config(
        dir.path(),
        "slow.yaml",
        &Config::four(processing.as_millis() as u64).shutdown("{drain_timeout: 20s}"),
    );
    let n = 30;

    let mut process = Process::start(&slow, &data, dir.path()).await;
    process.post_logs(&packets("drained", n)).await.expect(202);
    let sent = Instant::now();
    process.sigterm();
    wait_not_ready(&process).await;

    let reply = process.post_logs(&packets("too-late", 2)).await;
    reply.expect(503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert!(reply.error().contains("shutting down"), "{}", reply.text);
    let stats = process.stats().await;
    assert_eq!(stats["in_flight"], n, "still draining when refused");
    assert_eq!(stats["total_packets_received"], n);

    let status = process.wait_exit(DEADLINE).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", process.stderr());
    assert!(
        sent.elapsed() >= processing,
        "exited after {:?}, before the packets could finish",
        sent.elapsed()
    );
    let checkpoint = read_checkpoint(&data);
    assert_eq!(
        checkpoint["in_flight"],
        serde_json::json!([]),
        "nothing left over"
    );
    assert_eq!(delivered_in(&checkpoint), n as u64, "every packet delivered");
    assert_eq!(checkpoint["counters"]["packets_received"], n);

    // A restart finds nothing to redo.
    let fast = write_config(dir.path(), "fast.yaml", &Config::four(0));
    let mut again = Process::start(&fast, &data, dir.path()).await;
    let stats = again.stats().await;
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(processed(&stats).values().sum::<u64>(), n as u64);
    again.sigterm();
    assert_eq!(again.wait_exit(DEADLINE).await.code(), Some(0));
}

#[test]
fn bad_configurations_stop_the_binary_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let one = "analyzers:\n  - {id: a, weight: 10, simulated: {processing_time_ms: 0}}\n";
    let cases = [
        (format!("{one}colour: red\n"), "colour"),
        (
            "analyzers:\n  - {id: a, weight: 5000, simulated: {}}\n".to_string(),
            "analyzers[0].weight",
        ),
        (
            "analyzers:\n  - {id: a, weight: -1, simulated: {}}\n".to_string(),
            "analyzers[0].weight",
        ),
        (
            "analyzers:\n  - {id: a, weight: 1, simulated: {}}\n  - {id: a, weight: 2, simulated: {}}\n"
                .to_string(),
            "analyzers[1].id",
        ),
        ("analyzers: []\n".to_string(), "analyzers"),
        (
            "analyzers:\n  - {id: a, weight: 0, simulated: {}}\n  - {id: b, weight: 0, simulated: {}}\n"
                .to_string(),
            "total weight is 0",
        ),
        (
            "analyzers:\n  - {id: a, weight: 1, simulated: {failure_rate: 1.5}}\n".to_string(),
            "analyzers[0].simulated.failure_rate",
        ),
        (format!("{one}retry: {{factor: 0.5}}\n"), "retry.factor"),
        (format!("{one}health: {{interval: 0s}}\n"), "health.interval"),
        (
            format!("{one}queue: {{max_in_flight: 0}}\n"),
            "queue.max_in_flight",
        ),
        (format!("{one}listen: nowhere\n"), "listen"),
    ];
    for (i, (yaml, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        let (status, _, stderr) = run_to_end(
            command()
                .arg("--config")
                .arg(&path)
                .arg("--data-dir")
                .arg(dir.path().join("data")),
        );
        assert!(!status.success(), "{yaml:?} was accepted");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{yaml:?}: stderr is not one line:\n{stderr}"
        );
        assert!(stderr.contains(key), "{yaml:?}: {stderr:?} does not name {key:?}");
    }

    // A missing file, and a flag that is not an address.
    let (status, _, stderr) = run_to_end(command().arg("--config").arg(dir.path().join("missing.yaml")));
    assert!(!status.success());
    assert!(stderr.contains("missing.yaml"), "{stderr}");
    let (status, _, stderr) = run_to_end(command().args(["--listen", "not-an-address"]));
    assert!(!status.success());
    assert!(stderr.contains("listen"), "{stderr}");
    assert!(
        !dir.path().join("data").exists(),
        "a refused configuration touched the data dir"
    );
}

/// Values that parse, but that the running service could not use (a zero
/// interval for a timer, a wait past what the timers hold, a packet larger
/// than a log record): the binary refuses them at start-up, in one line
/// naming the key, instead of starting and breaking later.
#[test]
fn settings_that_would_break_later_stop_the_binary_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let one = "analyzers:\n  - {id: a, weight: 10, simulated: {processing_time_ms: 0}}\n";
    let cases = [
        (
            "kubernetes: {status_interval: 0s}\n",
            "kubernetes.status_interval",
        ),
        ("retry: {max_delay: 3years}\n", "retry.max_delay"),
        (
            "limits: {max_packet_bytes: 68157440}\n",
            "limits.max_packet_bytes",
        ),
        (
            "shutdown: {drain_timeout: 400000000000years}\n",
            "shutdown.drain_timeout",
        ),
    ];
    for (i, (rest, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("late-{i}.yaml"));
        std::fs::write(&path, format!("{one}{rest}")).unwrap();
        let (status, _, stderr) = run_to_end(
            command()
                .args(["--listen", "127.0.0.1:0", "--config"])
                .arg(&path)
                .arg("--data-dir")
                .arg(dir.path().join("data")),
        );
        assert!(!status.success(), "{rest:?} was accepted");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{rest:?}: stderr is not one line:\n{stderr}"
        );
        let expected = format!("configuration: {}: {key}: ", path.display());
        assert!(
            stderr.contains(&expected),
            "{rest:?}: {stderr:?} does not name {key:?}"
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "a refused configuration touched the data dir"
    );
}

#[test]
fn help_lists_every_flag_and_environment_variable() {
    let (status, stdout, _) = run_to_end(command().arg("--help"));
    assert!(status.success());
    for text in [
        "--listen",
        "--data-dir",
        "--config",
        "--log-format",
        "LD_LISTEN",
        "LD_DATA_DIR",
        "LD_CONFIG",
        "LD_LOG_FORMAT",
        "print-config",
    ] {
        assert!(stdout.contains(text), "--help lacks {text}:\n{stdout}");
    }
    // The tests clear every variable the binary reads from the processes they
    // start (common::ENV_VARS); one missing there would leak in from the caller.
    for named in stdout.split("[env: ").skip(1) {
        let variable = named.split(['=', ']']).next().unwrap_or_default();
        assert!(
            common::ENV_VARS.contains(&variable),
            "{variable} (in --help) is not in tests/common ENV_VARS"
        );
    }
    let (status, stdout, _) = run_to_end(command().arg("--version"));
    assert!(status.success());
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

#[test]
fn print_config_shows_the_effective_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(vec![analyzer("only-one", 7).processing(12)]).queue("{max_in_flight: 42}");
    let path = write_config(dir.path(), "c.yaml", &config);
    let (status, stdout, stderr) = run_to_end(
        command()
            .arg("print-config")
            .arg("--config")
            .arg(&path)
            .arg("--listen")
            .arg("127.0.0.1:9999"),
    );
    assert!(status.success(), "{stderr}");
    for text in ["only-one", "weight: 7", "max_in_flight: 42", "127.0.0.1:9999"] {
        assert!(stdout.contains(text), "print-config lacks {text:?}:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_variables_stand_in_for_flags() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("env-data");
    let two = Config::new(vec![analyzer("env-a", 1), analyzer("env-b", 2)]);
    let config = write_config(dir.path(), "env.yaml", &two);
    let mut process = Process::start_with(dir.path(), |command, port| {
        command
            .env("LD_LISTEN", format!("127.0.0.1:{port}"))
            .env("LD_DATA_DIR", &data)
            .env("LD_CONFIG", &config)
            .env("LD_LOG_FORMAT", "json");
    })
    .await;
    let health = process.get("/api/v1/health").await;
    assert_eq!(health.json["total_analyzers"], 2, "LD_CONFIG was not used");
    assert!(
        data.join("failed_packets.json").exists(),
        "LD_DATA_DIR was not used"
    );
    process.sigterm();
    assert_eq!(process.wait_exit(DEADLINE).await.code(), Some(0));
    let logs = process.stderr();
    let first = logs.lines().next().expect("a log line");
    assert!(
        serde_json::from_str::<Value>(first).is_ok(),
        "LD_LOG_FORMAT=json, yet: {first}"
    );
}
