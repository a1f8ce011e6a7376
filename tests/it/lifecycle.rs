//! The real binary: restart on the same data directory, SIGTERM drain,
//! configuration errors, `--help`, environment variables, the allocator's
//! options.

use crate::support::config::{analyzer, write_config, Config};
use crate::support::distributor::Distributor;
use crate::support::files::read_checkpoint;
use crate::support::fixtures;
use crate::support::http::processed;
use crate::support::packets::packets;
use crate::support::poll::{eventually, DEADLINE};
use crate::support::ports::free_port;
use crate::support::processes::{command, run_to_end, Finished, ENV_VARS};
use crate::support::serial::beside_others;
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

async fn wait_not_ready(process: &Distributor) {
    eventually("/readyz to turn 503", DEADLINE, || async {
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

    let mut first = Distributor::start(&slow, &data, dir.path()).await;
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
    let mut second = Distributor::start(&fast, &data, dir.path()).await;
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

    let mut process = Distributor::start(&slow, &data, dir.path()).await;
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
    let mut again = Distributor::start(&fast, &data, dir.path()).await;
    let stats = again.stats().await;
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(processed(&stats).values().sum::<u64>(), n as u64);
    again.sigterm();
    assert_eq!(again.wait_exit(DEADLINE).await.code(), Some(0));
}

/// A configuration the binary refuses, and what its one line of error
/// names (the cases of `tests/fixtures/config/`).
#[derive(serde::Deserialize)]
struct RefusedConfig {
    config: String,
    names: String,
}

#[test]
fn bad_configurations_stop_the_binary_with_one_line_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<RefusedConfig> = fixtures::yaml("config/invalid.yaml");
    for (i, RefusedConfig { config, names }) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad-{i}.yaml"));
        std::fs::write(&path, config).unwrap();
        let Finished { status, stderr, .. } = run_to_end(
            command()
                .arg("--config")
                .arg(&path)
                .arg("--data-dir")
                .arg(dir.path().join("data")),
        );
        assert!(!status.success(), "{config:?} was accepted");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{config:?}: stderr is not one line:\n{stderr}"
        );
        assert!(
            stderr.contains(names.as_str()),
            "{config:?}: {stderr:?} does not name {names:?}"
        );
    }

    // A missing file, and a flag that is not an address.
    let Finished { status, stderr, .. } =
        run_to_end(command().arg("--config").arg(dir.path().join("missing.yaml")));
    assert!(!status.success());
    assert!(stderr.contains("missing.yaml"), "{stderr}");
    let Finished { status, stderr, .. } = run_to_end(command().args(["--listen", "not-an-address"]));
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
    let cases: Vec<RefusedConfig> = fixtures::yaml("config/unusable.yaml");
    for (i, RefusedConfig { config, names }) in cases.iter().enumerate() {
        let path = dir.path().join(format!("late-{i}.yaml"));
        std::fs::write(&path, config).unwrap();
        let Finished { status, stderr, .. } = run_to_end(
            command()
                .args(["--listen", "127.0.0.1:0", "--config"])
                .arg(&path)
                .arg("--data-dir")
                .arg(dir.path().join("data")),
        );
        assert!(!status.success(), "{config:?} was accepted");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{config:?}: stderr is not one line:\n{stderr}"
        );
        let expected = format!("configuration: {}: {names}: ", path.display());
        assert!(
            stderr.contains(&expected),
            "{config:?}: {stderr:?} does not name {names:?}"
        );
    }
    assert!(
        !dir.path().join("data").exists(),
        "a refused configuration touched the data dir"
    );
}

#[test]
fn help_lists_every_flag_and_environment_variable() {
    let Finished { status, stdout, .. } = run_to_end(command().arg("--help"));
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
    // start (ENV_VARS); one missing there would leak in from the caller.
    for named in stdout.split("[env: ").skip(1) {
        let variable = named.split(['=', ']']).next().unwrap_or_default();
        assert!(
            ENV_VARS.contains(&variable),
            "{variable} (in --help) is not in support::processes::ENV_VARS"
        );
    }
    let Finished { status, stdout, .. } = run_to_end(command().arg("--version"));
    assert!(status.success());
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "{stdout}");
}

/// jemalloc's options as it reports them at exit (`stats_print`), for a
/// run of the binary with `_RJEM_MALLOC_CONF` set to `conf`.
fn allocator_options(conf: &str) -> String {
    let Finished { status, stderr, .. } = run_to_end(command().arg("crd").env("_RJEM_MALLOC_CONF", conf));
    assert!(status.success(), "{stderr}");
    stderr
}

#[test]
fn the_allocator_runs_one_arena_with_a_one_second_decay_unless_the_environment_says_otherwise() {
    let built_in = allocator_options("stats_print:true");
    for option in ["opt.narenas: 1\n", "opt.dirty_decay_ms: 1000 "] {
        assert!(built_in.contains(option), "no {option:?} in:\n{built_in}");
    }
    let overridden = allocator_options("stats_print:true,narenas:3,dirty_decay_ms:5000");
    for option in ["opt.narenas: 3\n", "opt.dirty_decay_ms: 5000 "] {
        assert!(overridden.contains(option), "no {option:?} in:\n{overridden}");
    }
}

#[test]
fn print_config_shows_the_effective_settings() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(vec![analyzer("only-one", 7).processing(12)]).queue("{max_in_flight: 42}");
    let path = write_config(dir.path(), "c.yaml", &config);
    let Finished {
        status,
        stdout,
        stderr,
    } = run_to_end(
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
    let mut process = Distributor::start_with(dir.path(), |command, port| {
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

/// One dead-letter entry on its own line, as the distributor writes them.
fn dead_letter_line(id: &str, message_bytes: usize) -> String {
    serde_json::json!({
        "packet": {
            "id": id,
            "messages": [{"level": "ERROR", "message": "x".repeat(message_bytes), "source": "tests",
                          "timestamp": "2025-01-01T00:00:00Z"}],
            "retry_count": 3
        },
        "final_error": "analyzer crashed during processing",
        "failed_at": "2025-01-01T00:00:01Z"
    })
    .to_string()
}

/// A dead-letter file in the distributor's layout.
fn write_dead_letter(data: &std::path::Path, lines: &[String]) {
    std::fs::create_dir_all(data).unwrap();
    let body = if lines.is_empty() {
        "[\n]\n".to_string()
    } else {
        format!("[\n{}\n]\n", lines.join(",\n"))
    };
    std::fs::write(data.join("failed_packets.json"), body).unwrap();
}

/// The peak resident set of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// A replay or a health override served while the log is still being
/// replayed could reuse the seq of a recovered packet: both answer 503
/// until /readyz does 200, and the replay then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_changing_routes_answer_503_until_recovery_has_finished() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        "config.yaml",
        &Config::new(vec![analyzer("only", 1)])
            .queue("{max_in_flight: 100000, max_in_flight_bytes: 268435456}"),
    );
    // A backlog for the next start to recover: the analyzer forced out, then kill -9.
    let first = Distributor::start(&config, &data, dir.path()).await;
    first
        .set_health("only", serde_json::json!({"healthy": false}))
        .await
        .expect(200);
    let requests = 400;
    for batch in 0..requests {
        first
            .post_logs(&packets(&format!("backlog-{batch}"), 100))
            .await
            .expect(202);
    }
    drop(first);
    write_dead_letter(&data, &[dead_letter_line("dl-0", 10)]);

    let mut second = Distributor::stopped(free_port(), dir.path());
    second.spawn(&config, &data, &[]);
    let api = second.api.clone();
    let started = Instant::now();
    let mut before_ready = Vec::new();
    loop {
        assert!(started.elapsed() < DEADLINE * 3, "not ready in time");
        let replay = api
            .http
            .post(api.url("/api/v1/dead-letter/replay"))
            .json(&serde_json::json!({"ids": ["dl-0"]}))
            .send()
            .await;
        let health = api
            .http
            .post(api.url("/api/v1/analyzers/only/health"))
            .json(&serde_json::json!({"healthy": true}))
            .send()
            .await;
        let (Ok(replay), Ok(health)) = (replay, health) else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        let ready = api.get("/readyz").await.status == 200;
        if ready {
            break;
        }
        before_ready.push((replay.status().as_u16(), health.status().as_u16()));
    }
    assert!(
        !before_ready.is_empty(),
        "start-up recovery finished before any request could be served"
    );
    assert!(
        before_ready.iter().all(|&answers| answers == (503, 503)),
        "answers while recovering (replay, health): {before_ready:?}"
    );
    // The last replay may have been served just after recovery.
    let reply = api
        .post(
            "/api/v1/dead-letter/replay",
            &serde_json::json!({"ids": ["dl-0"]}),
        )
        .await;
    assert!([202, 404].contains(&reply.status.as_u16()), "{}", reply.text);
    let expected = requests * 100 + 1;
    eventually("every packet delivered", DEADLINE * 3, || async {
        let stats = api.stats().await;
        let delivered = processed(&stats).values().sum::<u64>();
        if delivered >= expected && stats["in_flight"] == 0 {
            Ok(())
        } else {
            Err(format!("delivered {delivered}, in flight {}", stats["in_flight"]))
        }
    })
    .await;
    let stats = api.stats().await;
    assert_eq!(
        processed(&stats).values().sum::<u64>(),
        expected,
        "every recovered packet and the replayed one delivered once: {stats}"
    );
    assert_eq!(api.get("/api/v1/dead-letter").await.json["total"], 0);
}

/// Reading the dead letter costs the page, not the file: a page stops at
/// 4 MiB, and a replay of an id that is not there parses ids, not entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_reads_are_bounded_whatever_the_file_size() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let entries = 6_000;
    let lines: Vec<String> = (0..entries)
        .map(|i| dead_letter_line(&format!("big-{i}"), 9_000))
        .collect();
    write_dead_letter(&data, &lines);
    let config = write_config(dir.path(), "config.yaml", &Config::new(vec![analyzer("only", 1)]));
    let process = Distributor::start(&config, &data, dir.path()).await;
    let before = peak_rss(process.pid());

    let page = process.get("/api/v1/dead-letter?offset=0&limit=10000").await;
    page.expect(200);
    let count = page.json["count"].as_u64().unwrap();
    assert_eq!(page.json["total"], entries);
    assert!(
        count > 100 && count < 500,
        "a 4 MiB page of 9 KB entries: {count}"
    );
    assert_eq!(page.json["packets"].as_array().unwrap().len() as u64, count);
    assert_eq!(page.json["packets"][0]["packet"]["id"], "big-0");
    let newest = process.get("/api/v1/dead-letter?limit=10000").await;
    newest.expect(200);
    let last = newest.json["packets"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["packet"]["id"],
        format!("big-{}", entries - 1),
        "the default page ends with the newest"
    );

    let reply = process
        .post(
            "/api/v1/dead-letter/replay",
            &serde_json::json!({"ids": ["ghost"]}),
        )
        .await;
    reply.expect(404);
    let grown = peak_rss(process.pid()).saturating_sub(before);
    assert!(
        grown < 40 << 20,
        "peak RSS grew by {} MiB reading a {} MiB dead letter",
        grown >> 20,
        std::fs::metadata(data.join("failed_packets.json")).unwrap().len() >> 20
    );
}

/// A dead letter written by the original service (a pretty-printed array)
/// with a level alias in one entry and one element that is not an entry:
/// every entry is kept, the bad element alone goes to the quarantine file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_dead_letter_keeps_every_readable_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(
        fixtures::path("dead-letter/original-service.json"),
        data.join("failed_packets.json"),
    )
    .unwrap();
    let config = write_config(dir.path(), "config.yaml", &Config::new(vec![analyzer("only", 1)]));
    let process = Distributor::start(&config, &data, dir.path()).await;
    let page = process.get("/api/v1/dead-letter").await;
    page.expect(200);
    let ids: Vec<&str> = page.json["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["packet"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["abc-123", "abc-124", "abc-125"]);
    assert_eq!(
        page.json["packets"][1]["packet"]["messages"][0]["level"],
        "WARNING"
    );
    let quarantined = std::fs::read_to_string(data.join("failed_packets.quarantine.jsonl")).unwrap();
    let lines: Vec<Value> = quarantined
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{quarantined}");
    assert!(lines[0]["text"].as_str().unwrap().contains("not a packet"));
}
