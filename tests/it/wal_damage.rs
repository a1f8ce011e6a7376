//! Damage to the write-ahead log on disk, found by the real binary at
//! start-up:
//!
//! - A damaged length field in the middle of a segment, with acknowledged
//!   records after it, is corruption: a strict start refuses, naming the
//!   segment and the byte, and leaves the segment as it is; a start with
//!   `--wal-recover skip-corrupt` skips the damaged commit group (keeping a
//!   copy of its bytes next to the segment) and delivers everything else.
//! - A torn tail (the last commit group cut short, as a crash mid-write
//!   leaves it) is cut off at start-up, its bytes kept in a file next to
//!   the segment that outlives the segment itself.
//!
//! The tests find records by walking the segment layout documented in
//! `src/storage/wal/format.rs` (version 2, and version 1 for segments that
//! start without the magic).

use crate::support::analyzers::AnalyzerProcess as Analyzer;
use crate::support::distributor::Distributor;
use crate::support::files::read_records;
use crate::support::http::post;
use crate::support::packets::sized_packets;
use crate::support::ports::free_port;
use crate::support::processes::tail;
use reqwest::StatusCode;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The first bytes of a version 2 segment.
const MAGIC: &[u8; 8] = b"LDWAL\x00\x00\x02";
/// A commit group's header: length u64, synced u64, body crc u32, header crc u32.
const GROUP_HEADER: usize = 24;

/// A configuration delivering to `endpoint`, with probes, retries and
/// checkpoints out of the way for the length of a test.
fn write_config(dir: &Path, name: &str, endpoint: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "analyzers:\n  - {{id: analyzer, weight: 1, endpoint: \"{endpoint}\"}}\n\
             checkpoint: {{interval: 1h}}\n\
             health: {{interval: 1h, ejection_threshold: 0}}\n\
             retry: {{base_delay: 1h, max_delay: 1h, max_retries: 3}}\n\
             http: {{timeout: 2s}}\n"
        ),
    )
    .expect("write config");
    path
}

/// Where the record holding `needle` sits: the offset of its length
/// field, and the start and end of what its checksum covers (its commit
/// group in version 2, the record itself in version 1).
struct Located {
    length_field: usize,
    unit: std::ops::Range<usize>,
}

fn locate(segment: &[u8], needle: &str) -> Located {
    let holds = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    let u32_at = |at: usize| u32::from_le_bytes(segment[at..at + 4].try_into().unwrap()) as usize;
    if segment.starts_with(MAGIC) {
        let mut group = MAGIC.len();
        while group < groups_end(segment) {
            let len = u64::from_le_bytes(segment[group..group + 8].try_into().unwrap()) as usize;
            let body = group + GROUP_HEADER..group + GROUP_HEADER + len;
            let mut record = body.start;
            while record < body.end {
                let end = record + 4 + u32_at(record);
                if holds(&segment[record..end]) {
                    return Located {
                        length_field: record,
                        unit: group..body.end,
                    };
                }
                record = end;
            }
            group = body.end;
        }
    } else {
        let mut record = 0;
        while record < segment.len() {
            let end = record + 8 + u32_at(record);
            if holds(&segment[record..end]) {
                return Located {
                    length_field: record,
                    unit: record..end,
                };
            }
            record = end;
        }
    }
    panic!("{needle:?} is in no record of the segment");
}

/// Where the commit groups of a version 2 segment end: the zeroed room
/// the writer leaves ahead of them, if any, starts there.
fn groups_end(segment: &[u8]) -> usize {
    let mut group = MAGIC.len();
    while group + GROUP_HEADER <= segment.len() {
        let len = u64::from_le_bytes(segment[group..group + 8].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        group += GROUP_HEADER + len;
    }
    group
}

/// The newest segment that holds more than its header.
fn newest_segment(data_dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("wal entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .filter(|p| {
            std::fs::read(p)
                .map(|bytes| groups_end(&bytes) > MAGIC.len())
                .unwrap_or(false)
        })
        .collect();
    segments.sort();
    segments.pop().expect("a segment with records")
}

fn ids(request: usize) -> Vec<String> {
    (0..3).map(|i| format!("req{request}-{i}")).collect()
}

/// Starts the distributor on `data_dir`, posts `requests` requests of
/// three packets one after another (each its own commit group, fsynced
/// before its 202), and kills it; the analyzer is down meanwhile, so every
/// packet is still in flight in the log.
async fn acknowledged_then_killed(dir: &Path, data_dir: &Path, requests: usize) -> Distributor {
    let down = write_config(dir, "down.yaml", &format!("http://127.0.0.1:{}/", free_port()));
    let mut distributor = Distributor::stopped(free_port(), &dir.join("logs"));
    distributor.launch(&down, data_dir, &["--fsync", "always"]).await;
    for request in 0..requests {
        let reply = post(
            &distributor.http,
            &distributor.url("/api/v1/logs"),
            &sized_packets(&ids(request), 100),
        )
        .await
        .expect("POST /api/v1/logs");
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.text);
    }
    assert!(distributor.kill9(), "the distributor died early");
    distributor
}

/// Files in the wal directory other than segments.
fn kept_aside(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("wal"))
        .expect("wal dir")
        .map(|e| e.expect("wal entry").path())
        .filter(|p| p.extension().is_none_or(|e| e != "wal"))
        .collect();
    files.sort();
    files
}

async fn delivered(analyzer: &Analyzer, distributor: &Distributor) -> BTreeSet<String> {
    distributor.drained_within(Duration::from_secs(10)).await;
    read_records(&analyzer.record).into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_length_in_the_middle_stops_a_strict_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let mut distributor = acknowledged_then_killed(dir.path(), &data_dir, 5).await;

    // The length field of a record of the third request, of five.
    let segment = newest_segment(&data_dir);
    let whole = std::fs::read(&segment).expect("read the segment");
    let hit = locate(&whole, "\"req2-1\"");
    let mut damaged = whole.clone();
    damaged[hit.length_field..hit.length_field + 4].copy_from_slice(&0x00f0_0000u32.to_le_bytes());
    std::fs::write(&segment, &damaged).expect("damage the segment");

    let analyzer = Analyzer::start(dir.path(), "analyzer", &[]).await;
    let up = write_config(dir.path(), "up.yaml", &analyzer.endpoint());
    distributor.spawn(&up, &data_dir, &["--fsync", "always"]);
    let refused = distributor.wait_ready().await.expect_err(
        "a strict start went ahead over a damaged length field with acknowledged records after it",
    );
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert!(!refused.contains("exit status: 0"), "{refused}");
    assert!(
        refused.contains("corrupt")
            && refused.contains(&name)
            && refused.contains(&format!("at byte {}", hit.unit.start)),
        "the refusal names neither the segment {name} nor byte {}:\n{refused}",
        hit.unit.start
    );
    assert!(
        std::fs::read(&segment).expect("the segment is still there") == damaged,
        "a refused start changed the damaged segment"
    );
    assert!(
        read_records(&analyzer.record).is_empty(),
        "delivered before refusing"
    );

    // Skipping the damage loses that commit group only, and keeps its bytes.
    distributor
        .launch(
            &up,
            &data_dir,
            &["--fsync", "always", "--wal-recover", "skip-corrupt"],
        )
        .await;
    let got = delivered(&analyzer, &distributor).await;
    let expected: BTreeSet<String> = [0, 1, 3, 4].into_iter().flat_map(ids).collect();
    assert_eq!(got, expected, "stderr:\n{}", tail(&distributor.stderr(), 20));
    let stderr = distributor.stderr();
    assert!(
        stderr.lines().any(|l| l.contains("ERROR") && l.contains(&name)),
        "the skipped damage is logged as an error naming {name}:\n{}",
        tail(&stderr, 20)
    );
    let aside = kept_aside(&data_dir);
    assert_eq!(aside.len(), 1, "one copy of the skipped bytes: {aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).expect("read the copy"),
        damaged[hit.unit.clone()],
        "{} holds the skipped bytes",
        aside[0].display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_and_its_bytes_kept_aside() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let mut distributor = acknowledged_then_killed(dir.path(), &data_dir, 3).await;

    // The last commit group cut short, as a crash in its write leaves it:
    // its last bytes never written, zeros (room zeroed ahead, or pages
    // allocated and never written) where they belong.
    let segment = newest_segment(&data_dir);
    let whole = std::fs::read(&segment).expect("read the segment");
    let last = locate(&whole, "\"req2-2\"");
    let end = groups_end(&whole);
    assert_eq!(last.unit.end, end, "req2 is in the last group");
    let mut torn = whole[..end - 10].to_vec();
    torn.resize(whole.len().max(end), 0);
    std::fs::write(&segment, &torn).expect("tear the segment");

    let analyzer = Analyzer::start(dir.path(), "analyzer", &[]).await;
    let up = write_config(dir.path(), "up.yaml", &analyzer.endpoint());
    distributor.launch(&up, &data_dir, &["--fsync", "always"]).await;
    let got = delivered(&analyzer, &distributor).await;
    let expected: BTreeSet<String> = [0, 1].into_iter().flat_map(ids).collect();
    assert_eq!(got, expected, "stderr:\n{}", tail(&distributor.stderr(), 20));

    let aside = kept_aside(&data_dir);
    assert_eq!(aside.len(), 1, "one copy of the cut bytes: {aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).expect("read the copy"),
        &torn[last.unit.start..end - 10],
        "{} holds the cut bytes, up to the last one written",
        aside[0].display()
    );
    assert!(
        distributor
            .stderr()
            .contains(&*aside[0].file_name().unwrap().to_string_lossy()),
        "the log names the copy:\n{}",
        tail(&distributor.stderr(), 20)
    );
    // Compaction after recovery deleted the segment; the copy stays.
    assert!(
        !segment.exists(),
        "the segment outlived the checkpoint after recovery"
    );
}
