//! A full disk under the data directory. The data directory is a small tmpfs
//! (mounted by the test, so it needs root, as CI runs), filled up with a
//! filler file while the distributor runs:
//!
//! - Write-ahead log appends fail with ENOSPC: `POST /api/v1/logs` answers
//!   503 `storage unavailable` with `Retry-After`, keeps nothing (no half
//!   record in the log, nothing delivered later, not even after a restart),
//!   and the process stays up and healthy.
//! - Once the filler is deleted the service takes packets again by itself.
//! - Checkpoints fail meanwhile; each failure is logged and counted in
//!   `logs_distributor_checkpoint_failures_total`, and checkpoints resume
//!   once there is room.
//! - With just enough room for a checkpoint but not for a request, a
//!   checkpoint taken while a refused request waits for its failing append
//!   must not bring those packets back after a crash.
//! - `POST /api/v1/records` with room for its valid records in the log but
//!   not for its invalid one in the dead letter answers 500 saying so; the
//!   valid records are delivered, and the invalid one is kept once there
//!   is room; `failed_packets.json` stays one JSON array throughout (the
//!   half-written entry is cut back).

use crate::support::analyzers::AnalyzerProcess as Analyzer;
use crate::support::distributor::Distributor;
use crate::support::files::read_records;
use crate::support::http::{client, get, post, Api};
use crate::support::packets::sized_packets;
use crate::support::ports::free_port;
use crate::support::processes::tail;
use crate::support::serial::beside_others;
use reqwest::StatusCode;
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Size of the tmpfs: room for the data files, little enough to fill fast.
const TMPFS_SIZE: &str = "2m";
/// Messages big enough that a request needs new pages of the tmpfs,
/// whatever slack the last page of the log segment has.
const BIG_PACKET: usize = 6000;

/// A tmpfs mounted for the test; unmounted (lazily) when dropped, also when
/// the test panics.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path) -> Tmpfs {
        std::fs::create_dir_all(path).expect("mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={TMPFS_SIZE}"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs root and the `mount` command: cannot run mount: {e}")
            });
        assert!(
            output.status.success(),
            "this test needs root: it mounts a {TMPFS_SIZE} tmpfs at {} as the data directory \
             (run it as root, as CI does); mount said: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Tmpfs {
            path: path.to_path_buf(),
        }
    }

    /// Fills the file system with `name`, up to the last byte; answers its size.
    fn fill(&self, name: &str) -> u64 {
        let mut file = std::fs::File::create(self.path.join(name)).expect("create the filler");
        let chunk = vec![0u8; 64 * 1024];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Even one more page does not fit.
        let probe = self.path.join("probe");
        let room = std::fs::write(&probe, [1u8; 4096]);
        let _ = std::fs::remove_file(&probe);
        let error = room.expect_err("the tmpfs still has room after filling it");
        assert_eq!(error.kind(), std::io::ErrorKind::StorageFull, "{error}");
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// The distributor's configuration: one reference analyzer, probes and
/// ejection out of the way, and the checkpoint interval given.
fn write_config(dir: &Path, analyzer: &Analyzer, checkpoint: &str) -> PathBuf {
    let path = dir.join("distributor.yaml");
    std::fs::write(
        &path,
        format!(
            "analyzers:\n  - {{id: {}, weight: 1, endpoint: \"{}\"}}\n\
             checkpoint: {{interval: {checkpoint}}}\n\
             health: {{interval: 1h, ejection_threshold: 0}}\n\
             retry: {{base_delay: 20ms, factor: 2, max_retries: 3}}\n\
             http: {{timeout: 2s}}\n",
            analyzer.name,
            analyzer.endpoint()
        ),
    )
    .expect("write config");
    path
}

/// Every byte of the log's segments.
fn wal_bytes(data_dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data_dir.join("wal")).expect("wal dir") {
        bytes.extend(std::fs::read(entry.expect("wal entry").path()).expect("read a segment"));
    }
    bytes
}

fn ids(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i:03}")).collect()
}

/// Posts `ids` and expects them all accepted.
async fn post_accepted(distributor: &Distributor, ids: &[String], bytes: usize) {
    let reply = post(
        &distributor.http,
        &distributor.url("/api/v1/logs"),
        &sized_packets(ids, bytes),
    )
    .await
    .expect("POST /api/v1/logs");
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    assert_eq!(reply.ids(), ids);
}

/// The value of one series in `/metrics` (`name{labels}` as printed), 0 when absent.
async fn metric(api: &Api, series: &str) -> f64 {
    api.get("/metrics")
        .await
        .text
        .lines()
        .filter_map(|line| line.strip_prefix(series))
        .filter_map(|rest| rest.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The process is up, `/api/v1/health` says healthy, `/healthz` answers.
async fn assert_alive_and_healthy(distributor: &mut Distributor) {
    assert!(
        distributor.is_running(),
        "the distributor exited; its stderr:\n{}",
        tail(&distributor.stderr(), 40)
    );
    let health = get(&distributor.http, &distributor.url("/api/v1/health"))
        .await
        .expect("GET /api/v1/health");
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    assert_eq!(health.json["status"], "healthy", "{}", health.text);
    let alive = get(&distributor.http, &distributor.url("/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(alive.status, StatusCode::OK, "{}", alive.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_503_keeps_nothing_and_recovers_by_itself() {
    let dir = tempfile::Builder::new()
        .prefix("disk-full-")
        .tempdir()
        .expect("temp dir");
    let tmpfs = Tmpfs::mount(&dir.path().join("data"));
    let analyzer = Analyzer::start(dir.path(), "analyzer", &[]).await;
    let config = write_config(dir.path(), &analyzer, "1h");
    let fsync = ["--fsync", "always"];
    let mut distributor = Distributor::stopped(free_port(), &dir.path().join("logs"));
    distributor.launch(&config, &tmpfs.path, &fsync).await;

    // Room on the disk: taken and delivered.
    let before = ids("before", 5);
    post_accepted(&distributor, &before, 200).await;
    distributor.drained_within(Duration::from_secs(10)).await;

    // No room: every request refused, whole, with a reason and a wait.
    let filled = tmpfs.fill("filler");
    assert!(filled > 0, "the filler took no space");
    let mut refused = Vec::new();
    for request in 0..5 {
        let batch = ids(&format!("full{request}"), 3);
        let reply = post(
            &distributor.http,
            &distributor.url("/api/v1/logs"),
            &sized_packets(&batch, BIG_PACKET),
        )
        .await
        .expect("POST /api/v1/logs");
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{}", reply.text);
        assert!(
            reply
                .header("content-type")
                .unwrap_or_default()
                .starts_with("application/json"),
            "{:?}",
            reply.headers
        );
        let error = reply.json["error"].as_str().unwrap_or_default();
        assert!(error.contains("storage unavailable"), "{}", reply.text);
        let retry_after: u64 = reply
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no Retry-After in seconds: {:?}", reply.headers));
        assert!(retry_after >= 1, "Retry-After: {retry_after}");
        refused.extend(batch);
    }
    assert_alive_and_healthy(&mut distributor).await;
    let stats = distributor.stats().await;
    assert_eq!(stats["in_flight"], 0, "refused packets still hold room: {stats}");
    let log = wal_bytes(&tmpfs.path);
    for id in &refused {
        assert!(
            !log.windows(id.len()).any(|w| w == id.as_bytes()),
            "{id} was refused but is in the write-ahead log"
        );
    }
    let rejected = metric(
        &distributor,
        "logs_distributor_packets_rejected_total{reason=\"storage_unavailable\"}",
    )
    .await;
    assert_eq!(rejected, refused.len() as f64, "rejected packets counted");
    let ready = get(&client(), &distributor.url("/readyz"))
        .await
        .expect("GET /readyz");
    let storage = ready.json["storage"].as_str().unwrap_or_default();
    assert!(
        storage.starts_with("unavailable"),
        "/readyz reports the failing disk: {}",
        ready.text
    );

    // Room again: taken again at once, without a restart.
    std::fs::remove_file(tmpfs.path.join("filler")).expect("delete the filler");
    let after = ids("after", 5);
    post_accepted(&distributor, &after, BIG_PACKET).await;
    distributor.drained_within(Duration::from_secs(10)).await;
    assert_alive_and_healthy(&mut distributor).await;

    let check = |when: &str| {
        let received: HashSet<String> = read_records(&analyzer.record).into_iter().collect();
        let missing: Vec<&String> = before
            .iter()
            .chain(&after)
            .filter(|id| !received.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "{when}: accepted but not delivered: {missing:?}"
        );
        let kept: Vec<&String> = refused.iter().filter(|id| received.contains(*id)).collect();
        assert!(
            kept.is_empty(),
            "{when}: refused with 503 but delivered: {kept:?}"
        );
    };
    check("after the disk had room again");
    let ready = get(&client(), &distributor.url("/readyz"))
        .await
        .expect("GET /readyz");
    assert_eq!(ready.json["storage"], "ok", "{}", ready.text);

    // A crash and a replay of the log bring none of the refused packets back.
    distributor.kill9();
    distributor.launch(&config, &tmpfs.path, &fsync).await;
    distributor.drained_within(Duration::from_secs(10)).await;
    check("after kill -9 and a restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_on_a_full_disk_fail_are_counted_and_resume() {
    let dir = tempfile::Builder::new()
        .prefix("disk-full-cp-")
        .tempdir()
        .expect("temp dir");
    let tmpfs = Tmpfs::mount(&dir.path().join("data"));
    let analyzer = Analyzer::start(dir.path(), "analyzer", &[]).await;
    let config = write_config(dir.path(), &analyzer, "100ms");
    let mut distributor = Distributor::stopped(free_port(), &dir.path().join("logs"));
    distributor
        .launch(&config, &tmpfs.path, &["--fsync", "always"])
        .await;
    let failures = "logs_distributor_checkpoint_failures_total";
    assert_eq!(metric(&distributor, failures).await, 0.0);

    tmpfs.fill("filler");
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&distributor, failures).await < 3.0 {
        assert!(
            Instant::now() < deadline,
            "no checkpoint failure counted on a full disk; stderr:\n{}",
            tail(&distributor.stderr(), 20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_alive_and_healthy(&mut distributor).await;
    assert!(
        distributor.stderr().contains("cannot write checkpoint"),
        "checkpoint failures are logged; stderr:\n{}",
        tail(&distributor.stderr(), 20)
    );

    // Room again: checkpoints succeed again (the counter stops), and packets flow.
    std::fs::remove_file(tmpfs.path.join("filler")).expect("delete the filler");
    let checkpoint = tmpfs.path.join("state.json.gz");
    let freed = std::time::SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let written = std::fs::metadata(&checkpoint).and_then(|m| m.modified());
        if written.is_ok_and(|t| t > freed) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint written after the disk had room again; stderr:\n{}",
            tail(&distributor.stderr(), 20)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let settled = metric(&distributor, failures).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        metric(&distributor, failures).await,
        settled,
        "checkpoints still failing with room on the disk"
    );
    let packets = ids("after", 3);
    post_accepted(&distributor, &packets, 200).await;
    distributor.drained_within(Duration::from_secs(10)).await;
    let received: HashSet<String> = analyzer.records().into_iter().collect();
    assert!(packets.iter().all(|id| received.contains(id)), "{received:?}");
    assert_alive_and_healthy(&mut distributor).await;
}

/// The ids of the packets in flight in `state.json.gz`; none while it is
/// missing or being replaced.
fn checkpoint_ids(path: &Path) -> Vec<String> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut text = String::new();
    if std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(file), &mut text).is_err() {
        return Vec::new();
    }
    let checkpoint: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    checkpoint["in_flight"]
        .as_array()
        .map(|packets| {
            packets
                .iter()
                .filter_map(|p| p["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Appends fail for want of room while checkpoints, much smaller, still fit.
/// A packet is in the in-flight registry from before its append until the
/// append fails, so a checkpoint taken meanwhile may list it; the client is
/// answered 503 ("nothing from this request was kept"). A crash before the
/// next checkpoint must not bring such a packet back: nothing refused is
/// ever delivered.
///
/// The kill is aimed: it lands while the checkpoint on disk lists a packet
/// already answered 503 (or after a few seconds if that never happens, as
/// it should not).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_checkpoint_never_brings_back_packets_refused_for_a_full_disk() {
    let _gate = beside_others().await;
    let dir = tempfile::Builder::new()
        .prefix("disk-full-race-")
        .tempdir()
        .expect("temp dir");
    let tmpfs = Tmpfs::mount(&dir.path().join("data"));
    let analyzer = Analyzer::start(dir.path(), "analyzer", &[]).await;
    let config = write_config(dir.path(), &analyzer, "10ms");
    let fsync = ["--fsync", "always"];
    let mut distributor = Distributor::stopped(free_port(), &dir.path().join("logs"));
    distributor.launch(&config, &tmpfs.path, &fsync).await;

    // Full but for 16 KiB: a checkpoint (well under a page of gzip) fits, a
    // request of three 9000-byte packets never does.
    tmpfs.fill("filler");
    let filler = std::fs::OpenOptions::new()
        .write(true)
        .open(tmpfs.path.join("filler"))
        .expect("open the filler");
    let size = filler.metadata().expect("filler size").len();
    filler.set_len(size - 16 * 1024).expect("make 16 KiB of room");
    drop(filler);

    let refused = Arc::new(Mutex::new(HashSet::<String>::new()));
    let accepted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (refused, accepted, stop) = (refused.clone(), accepted.clone(), stop.clone());
            let url = distributor.url("/api/v1/logs");
            tokio::spawn(async move {
                let http = client();
                let mut n = 0;
                while !stop.load(Ordering::Acquire) {
                    n += 1;
                    let batch = ids(&format!("c{c}-{n:05}"), 3);
                    let Ok(reply) = post(&http, &url, &sized_packets(&batch, 9000)).await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    match reply.status {
                        StatusCode::SERVICE_UNAVAILABLE => refused.lock().unwrap().extend(batch),
                        StatusCode::ACCEPTED => accepted.lock().unwrap().extend(batch),
                        other => panic!("unexpected answer {other}: {}", reply.text),
                    }
                }
            })
        })
        .collect();

    // Aim: when the checkpoint lists a refused packet, freeze the process
    // (SIGSTOP), so that no newer checkpoint can replace it, look again,
    // and kill it if it still does.
    let checkpoint = tmpfs.path.join("state.json.gz");
    let lists_refused = || {
        let listed = checkpoint_ids(&checkpoint);
        let refused = refused.lock().unwrap();
        listed.iter().any(|id| refused.contains(id))
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut caught = false;
    while !caught && Instant::now() < deadline {
        if lists_refused() {
            distributor.signal("STOP");
            caught = lists_refused();
            if !caught {
                distributor.signal("CONT");
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        distributor.kill9(),
        "the distributor died under a full disk; stderr:\n{}",
        tail(&distributor.stderr(), 30)
    );
    stop.store(true, Ordering::Release);
    for client in clients {
        client.await.expect("client task");
    }
    let refused = refused.lock().unwrap().clone();
    assert!(!refused.is_empty(), "no request was refused for want of room");
    let listed: Vec<String> = checkpoint_ids(&checkpoint)
        .into_iter()
        .filter(|id| refused.contains(id))
        .collect();

    // Room again; the restart replays the checkpoint and the log.
    std::fs::remove_file(tmpfs.path.join("filler")).expect("delete the filler");
    distributor.launch(&config, &tmpfs.path, &fsync).await;
    distributor.drained_within(Duration::from_secs(10)).await;
    let received: HashSet<String> = analyzer.records().into_iter().collect();
    let mut kept: Vec<&String> = refused.iter().filter(|id| received.contains(*id)).collect();
    kept.sort();
    assert!(
        kept.is_empty(),
        "{} packets answered 503 (storage unavailable) were delivered after a crash and restart: {kept:?}; \
         a checkpoint listed them (refused ids in the checkpoint at the kill: {listed:?}; \
         kill aimed at such a checkpoint: {caught}); {} packets were accepted meanwhile",
        kept.len(),
        accepted.lock().unwrap().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_whose_invalid_ones_cannot_be_dead_lettered_answer_500_and_the_valid_ones_are_delivered() {
    let _gate = beside_others().await;
    let dir = tempfile::Builder::new()
        .prefix("disk-full-records-")
        .tempdir()
        .expect("temp dir");
    let tmpfs = Tmpfs::mount(&dir.path().join("data"));
    let analyzer = Analyzer::start(dir.path(), "analyzer", &[]).await;
    let config = write_config(dir.path(), &analyzer, "1h");
    let mut distributor = Distributor::stopped(free_port(), &dir.path().join("logs"));
    distributor
        .launch(&config, &tmpfs.path, &["--fsync", "always"])
        .await;

    // 256 KiB left: room for a small packet in the log, not for a dead
    // letter of 600 KB.
    std::fs::write(tmpfs.path.join("spare"), vec![0u8; 256 * 1024]).expect("write the spare");
    tmpfs.fill("filler");
    std::fs::remove_file(tmpfs.path.join("spare")).expect("delete the spare");
    let records = serde_json::json!([{"msg": "fits", "host": "h"}, {"log": "x".repeat(600_000)}]);
    let reply = post(&distributor.http, &distributor.url("/api/v1/records"), &records)
        .await
        .expect("POST /api/v1/records");
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", reply.text);
    let error = reply.json["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with(
            "the valid records were accepted and will be delivered, but the invalid records (1) could not be written to the dead letter: "
        ) && error.ends_with("sending the request again delivers the valid ones again"),
        "{error}"
    );
    let stats = distributor.drained_within(Duration::from_secs(10)).await;
    assert_eq!(stats["total_messages_received"], 1, "{stats}");
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    assert_eq!(
        read_records(&analyzer.record).len(),
        1,
        "the valid record was delivered"
    );
    let dead = get(&distributor.http, &distributor.url("/api/v1/dead-letter"))
        .await
        .expect("GET /api/v1/dead-letter");
    assert_eq!(dead.json["total"], 0, "{}", dead.text);
    assert_eq!(
        dead_letter_on_disk(&tmpfs.path).len(),
        0,
        "the failed append left the file as it was"
    );

    // Room again: the same request is taken whole.
    std::fs::remove_file(tmpfs.path.join("filler")).expect("delete the filler");
    let reply = post(&distributor.http, &distributor.url("/api/v1/records"), &records)
        .await
        .expect("POST /api/v1/records");
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json["dead_lettered"], 1, "{}", reply.text);
    let dead = get(&distributor.http, &distributor.url("/api/v1/dead-letter"))
        .await
        .expect("GET /api/v1/dead-letter");
    assert_eq!(dead.json["total"], 1, "{}", dead.text);
    assert_eq!(
        dead.json["packets"][0]["packet"]["messages"][0]["message"],
        records[1].to_string()
    );
    assert_eq!(dead_letter_on_disk(&tmpfs.path).len(), 1);
    assert_alive_and_healthy(&mut distributor).await;
}

/// `failed_packets.json` as a reader of the file sees it: one JSON array.
fn dead_letter_on_disk(data_dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read(data_dir.join("failed_packets.json")).expect("read failed_packets.json");
    serde_json::from_slice(&text).unwrap_or_else(|e| {
        panic!(
            "failed_packets.json is not a JSON array ({e}); it ends with {:?}",
            String::from_utf8_lossy(&text[text.len().saturating_sub(80)..])
        )
    })
}
