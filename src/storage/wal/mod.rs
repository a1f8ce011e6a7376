//! The write-ahead log: every accepted packet is on disk before its 202.
//!
//! ```text
//! <data-dir>/wal/00000000000000000007.wal              segments, numbered, oldest first
//! <data-dir>/wal/00000000000000000007.wal.torn-at-N    bytes recovery cut off a torn tail
//! <data-dir>/wal/00000000000000000007.wal.skipped-at-N bytes skip-corrupt recovery skipped
//! <data-dir>/wal/next-segment.spare                   the next segment, being zeroed ahead
//! ```
//!
//! The bytes of a segment (commit groups of records, each group with
//! checksums over every length it holds) are in [`format`]; what start-up
//! does with them is in [`recovery`]; the thread that writes them, group
//! by group, in `writer`, which lets go of the page cache of what it has
//! synced (`page_cache`) and writes into room zeroed ahead (`room`).
//!
//! Invariants:
//! - A packet is put in the in-flight registry *before* its Accept is
//!   appended, and taken out *before* its End is appended. So when the
//!   checkpointer rotates to a new segment and then snapshots the registry,
//!   every record in the older segments is already reflected in the
//!   snapshot, and those segments can be deleted (compaction).
//! - Replay = checkpoint, then every segment from the checkpoint's
//!   `wal_segment` on, applying Accept (insert), Retry (update) and End
//!   (remove) by `seq`. A packet without an End is re-queued.
//! - Group commit: one writer thread takes every append waiting, encodes
//!   and writes them as commit groups of about [`GROUP_BYTES`] (an append
//!   never split), then (with [`FsyncMode::Always`]) one `fdatasync`
//!   before any of them is acknowledged. An append waiting for the writer
//!   holds its records, which refer to the packets the registry holds, not
//!   a copy of their bytes. A failed write is cut back off the segment,
//!   with the groups written before it in the same go, so a disk that
//!   fills up leaves no half group behind.
//! - Each group records how much of its segment was durable when it was
//!   written, so only groups written after the last completed fdatasync
//!   can be torn, and recovery can tell them from damage to durable ones.
//!   A segment's magic is fdatasynced when the segment is created, and a
//!   segment is fdatasynced whole before the next one is created.
//! - A segment's file can be longer than its groups: zeros written and
//!   synced ahead (`room`), so that an fdatasync flushes data, not the
//!   file system's journal. The writer writes each group at its offset,
//!   cuts the unused room off when it rotates, and renames a spare zeroed
//!   in the background into place as the next segment.

pub mod format;
mod page_cache;
pub mod recovery;
mod room;
mod writer;

pub use format::{DecodeError, Record, MAX_PACKET_JSON_BYTES};
pub use recovery::{newest_segment, recover, Recovered, Skipped};

use crate::sync::LockUnpoisoned;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::oneshot;

const SEGMENT_SUFFIX: &str = ".wal";

/// When appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// fdatasync before acknowledging (group commit): no acknowledged packet
    /// is lost, even on power loss.
    Always,
    /// fdatasync at most this often; acknowledged packets of the last window
    /// can be lost on power loss (not on a process crash).
    Interval(Duration),
    /// Never fdatasync; the OS writes back when it likes. Survives a
    /// process crash, not a power loss.
    Never,
}

impl FromStr for FsyncMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncMode::Always),
            "never" => Ok(FsyncMode::Never),
            other => match other.strip_prefix("interval:") {
                Some(ms) => ms
                    .parse::<u64>()
                    .ok()
                    .filter(|ms| *ms > 0)
                    .map(|ms| FsyncMode::Interval(Duration::from_millis(ms)))
                    .ok_or_else(|| {
                        format!("{other:?}: the interval must be a number of milliseconds above 0")
                    }),
                None => Err(format!("{other:?}: expected always, interval:<ms> or never")),
            },
        }
    }
}

impl fmt::Display for FsyncMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncMode::Always => write!(f, "always"),
            FsyncMode::Interval(every) => write!(f, "interval:{}", every.as_millis()),
            FsyncMode::Never => write!(f, "never"),
        }
    }
}

/// What recovery does with damage that is not a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoverMode {
    /// Refuse to start, naming the segment and offset.
    #[default]
    Strict,
    /// Skip the damaged part (a copy of it kept next to the segment),
    /// report it, go on with the next whole commit group.
    SkipCorrupt,
}

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log: {0}")]
    Io(#[from] io::Error),
    #[error(
        "write-ahead log is corrupt in {segment} at byte {offset}: {reason}; \
         start with --wal-recover=skip-corrupt to skip the damaged part (its packets are lost)"
    )]
    Corrupt {
        segment: String,
        offset: u64,
        reason: String,
    },
    #[error("write-ahead log writer has stopped")]
    Stopped,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}{SEGMENT_SUFFIX}"))
}

fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(SEGMENT_SUFFIX))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(number) = number {
            segments.push((number, path));
        }
    }
    segments.sort();
    Ok(segments)
}

/// About the most a commit group holds: the writer encodes appends into
/// one group until it holds this much, writes it, and goes on with the next.
const GROUP_BYTES: usize = 1 << 20;

enum Command {
    /// Records the writer encodes as it writes them, and who waits for
    /// them to be durable.
    Append {
        records: Vec<Record>,
        done: oneshot::Sender<io::Result<()>>,
    },
    Rotate {
        done: oneshot::Sender<io::Result<u64>>,
    },
    /// Records are waiting in the shared buffer.
    Flush,
}

/// The log's writing end. Cheap to share; the writer thread stops when the
/// last `Wal` is dropped.
#[derive(Clone)]
pub struct Wal {
    commands: std_mpsc::Sender<Command>,
    dir: PathBuf,
    /// Records appended without waiting (Retry, End), gathered here so
    /// that thousands of them cost one wake-up of the writer, not one each.
    pending: Arc<Mutex<Vec<u8>>>,
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WalOptions {
    pub fsync: FsyncMode,
    pub segment_bytes: u64,
    /// With [`FsyncMode::Always`], how long a commit waits for more
    /// appends while they arrive concurrently.
    pub commit_delay: Duration,
    /// Observes how long each fdatasync takes, when set.
    pub fsync_duration: Option<prometheus::Histogram>,
}

impl Wal {
    /// Starts a new segment after `last_segment` and the writer thread.
    pub fn open(dir: &Path, last_segment: u64, options: WalOptions) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let (commands, incoming) = std_mpsc::channel();
        let pending = Arc::new(Mutex::new(Vec::new()));
        writer::spawn(dir, last_segment + 1, options, pending.clone(), incoming)?;
        Ok(Wal {
            commands,
            dir: dir.to_path_buf(),
            pending,
        })
    }

    /// Appends records and waits until they are as durable as the fsync
    /// mode promises.
    pub async fn append_durable(&self, records: &[Record]) -> Result<(), WalError> {
        self.send_durable(records.to_vec())?.await
    }

    /// Hands records to the writer: they are written whether or not the
    /// answer is awaited.
    pub fn send_durable(&self, records: Vec<Record>) -> Result<DurableAppend, WalError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Append { records, done })
            .map_err(|_| WalError::Stopped)?;
        Ok(DurableAppend(answer))
    }

    /// Appends records without waiting (Retry and End: losing one costs a
    /// duplicate delivery after a crash, never a packet).
    pub fn append(&self, records: &[Record]) {
        let was_empty = {
            let mut pending = self.pending.lock_unpoisoned();
            let was_empty = pending.is_empty();
            for record in records {
                record.encode(&mut pending);
            }
            was_empty
        };
        if was_empty && self.commands.send(Command::Flush).is_err() {
            tracing::error!("write-ahead log writer has stopped; a record was not written");
        }
    }

    /// Closes the current segment and starts the next; answers the new
    /// segment's number. Everything appended before is in older segments.
    pub async fn rotate(&self) -> Result<u64, WalError> {
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Rotate { done })
            .map_err(|_| WalError::Stopped)?;
        answer.await.map_err(|_| WalError::Stopped)?.map_err(WalError::Io)
    }

    /// Deletes the segments numbered below `keep_from` (already in a checkpoint).
    pub fn delete_before(&self, keep_from: u64) -> io::Result<usize> {
        let mut deleted = 0;
        for (number, path) in list_segments(&self.dir)? {
            if number < keep_from {
                std::fs::remove_file(path)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Bytes in all segments now.
    pub fn size_bytes(&self) -> u64 {
        list_segments(&self.dir)
            .map(|segments| {
                segments
                    .iter()
                    .filter_map(|(_, p)| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// Records on their way to the disk: resolves once they are as durable as
/// the fsync mode promises, or the write failed.
pub struct DurableAppend(oneshot::Receiver<io::Result<()>>);

impl Future for DurableAppend {
    type Output = Result<(), WalError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|answer| answer.map_err(|_| WalError::Stopped)?.map_err(WalError::Io))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use format::tests::packet;
    use format::{GROUP_HEADER_BYTES, SEGMENT_MAGIC};
    use std::collections::BTreeMap;

    /// Replays every segment of `dir` from scratch.
    pub(crate) fn recover_all(dir: &Path, mode: RecoverMode) -> Result<Recovered, WalError> {
        recover(dir, 0, newest_segment(dir).unwrap(), BTreeMap::new(), 0, mode)
    }

    pub(crate) fn options(fsync: FsyncMode) -> WalOptions {
        WalOptions {
            fsync,
            segment_bytes: 1 << 20,
            commit_delay: Duration::ZERO,
            fsync_duration: None,
        }
    }

    #[tokio::test]
    async fn each_fsync_is_timed() {
        let dir = tempfile::tempdir().unwrap();
        let histogram =
            prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("fsync_seconds", "t")).unwrap();
        let wal = Wal::open(
            dir.path(),
            0,
            WalOptions {
                fsync_duration: Some(histogram.clone()),
                ..options(FsyncMode::Always)
            },
        )
        .unwrap();
        for seq in 1..=2 {
            wal.append_durable(&[Record::Accept {
                seq,
                packet: packet("a"),
                retries: 0,
            }])
            .await
            .unwrap();
        }
        assert!(histogram.get_sample_count() >= 2);
    }

    #[test]
    fn fsync_modes_parse() {
        assert_eq!("always".parse(), Ok(FsyncMode::Always));
        assert_eq!("never".parse(), Ok(FsyncMode::Never));
        assert_eq!(
            "interval:10".parse(),
            Ok(FsyncMode::Interval(Duration::from_millis(10)))
        );
        assert!("interval:0".parse::<FsyncMode>().is_err());
        assert!("sometimes".parse::<FsyncMode>().is_err());
        assert_eq!(
            FsyncMode::Interval(Duration::from_millis(10)).to_string(),
            "interval:10"
        );
    }

    #[tokio::test]
    async fn replay_keeps_what_has_no_end_with_its_retry_count() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 0, options(FsyncMode::Always)).unwrap();
        wal.append_durable(&[
            Record::Accept {
                seq: 1,
                packet: packet("a"),
                retries: 0,
            },
            Record::Accept {
                seq: 2,
                packet: packet("b"),
                retries: 0,
            },
        ])
        .await
        .unwrap();
        wal.append(&[Record::Retry { seq: 2, retries: 2 }, Record::End { seq: 1 }]);
        wal.append_durable(&[Record::Accept {
            seq: 3,
            packet: packet("c"),
            retries: 0,
        }])
        .await
        .unwrap();
        drop(wal);
        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        let ids: Vec<_> = recovered
            .in_flight
            .values()
            .map(|p| (p.packet.id(), p.retries))
            .collect();
        assert_eq!(ids, [("b", 2), ("c", 0)]);
        assert_eq!(recovered.next_seq, 4);
        assert_eq!(recovered.records, 5);
    }

    #[tokio::test]
    async fn rotation_splits_segments_and_old_ones_can_go() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 0, options(FsyncMode::Never)).unwrap();
        wal.append_durable(&[Record::Accept {
            seq: 1,
            packet: packet("a"),
            retries: 0,
        }])
        .await
        .unwrap();
        let next = wal.rotate().await.unwrap();
        assert_eq!(next, 2);
        wal.append_durable(&[Record::Accept {
            seq: 2,
            packet: packet("b"),
            retries: 0,
        }])
        .await
        .unwrap();
        assert_eq!(wal.delete_before(next).unwrap(), 1);
        assert_eq!(newest_segment(dir.path()).unwrap(), 2);
        let recovered = recover(dir.path(), next, 2, BTreeMap::new(), 0, RecoverMode::Strict).unwrap();
        assert_eq!(recovered.in_flight.len(), 1);
    }

    #[tokio::test]
    async fn concurrent_appends_share_fsyncs_and_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 0, options(FsyncMode::Always)).unwrap();
        let tasks: Vec<_> = (0..200u64)
            .map(|seq| {
                let wal = wal.clone();
                tokio::spawn(async move {
                    wal.append_durable(&[Record::Accept {
                        seq,
                        packet: packet("x"),
                        retries: 0,
                    }])
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        drop(wal);
        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(recovered.in_flight.len(), 200);
    }

    #[tokio::test]
    async fn a_rotation_with_nothing_written_keeps_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 4, options(FsyncMode::Always)).unwrap();
        assert_eq!(wal.rotate().await.unwrap(), 5);
        wal.append(&[Record::End { seq: 1 }]);
        assert_eq!(wal.rotate().await.unwrap(), 6);
        assert_eq!(wal.rotate().await.unwrap(), 6);
        assert_eq!(list_segments(dir.path()).unwrap().len(), 2);
    }

    #[tokio::test]
    async fn segments_whose_synced_pages_were_let_go_of_recover_whole() {
        let fsyncs = [FsyncMode::Always, FsyncMode::Interval(Duration::from_millis(1))];
        for fsync in fsyncs {
            let dir = tempfile::tempdir().unwrap();
            let small_segments = WalOptions {
                segment_bytes: 64 << 10,
                ..options(fsync)
            };
            let wal = Wal::open(dir.path(), 0, small_segments).unwrap();
            // About 1 KB a record: many pages a segment, several segments.
            let id = |seq: u64| format!("{seq:04}-{}", "x".repeat(1000));
            for seq in 1..=300 {
                wal.append_durable(&[Record::Accept {
                    seq,
                    packet: packet(&id(seq)),
                    retries: 0,
                }])
                .await
                .unwrap();
                if seq % 3 == 0 {
                    wal.append(&[Record::Retry { seq, retries: 1 }]);
                }
            }
            drop(wal);
            assert!(list_segments(dir.path()).unwrap().len() >= 4, "{fsync}");
            let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
            assert_eq!(recovered.torn_tail_bytes, 0, "{fsync}");
            let found: Vec<_> = recovered
                .in_flight
                .iter()
                .map(|(seq, p)| (*seq, p.packet.id().to_string(), p.retries))
                .collect();
            let expected: Vec<_> = (1..=300)
                .map(|seq| (seq, id(seq), u32::from(seq % 3 == 0)))
                .collect();
            assert_eq!(found, expected, "{fsync}");
        }
    }

    /// The `synced` of each commit group in a segment, in order.
    fn synced_of_groups(segment: &[u8]) -> Vec<u64> {
        let mut at = SEGMENT_MAGIC.len();
        let mut synced = Vec::new();
        while segment[at..].iter().any(|b| *b != 0) {
            let (header, body) = format::decode_group(&segment[at..]).unwrap();
            synced.push(header.synced);
            at += GROUP_HEADER_BYTES + body.len();
        }
        synced
    }

    #[tokio::test]
    async fn each_group_says_how_much_of_the_segment_was_synced_before_it() {
        for fsync in [FsyncMode::Always, FsyncMode::Never] {
            let dir = tempfile::tempdir().unwrap();
            let wal = Wal::open(dir.path(), 0, options(fsync)).unwrap();
            for seq in 1..=3 {
                wal.append_durable(&[Record::Accept {
                    seq,
                    packet: packet("p"),
                    retries: 0,
                }])
                .await
                .unwrap();
            }
            drop(wal);
            let segment = std::fs::read(segment_path(dir.path(), 1)).unwrap();
            assert!(segment.starts_with(&SEGMENT_MAGIC));
            let magic = SEGMENT_MAGIC.len() as u64;
            let written = segment.iter().rposition(|b| *b != 0).unwrap() as u64 + 1;
            let group = (written - magic) / 3;
            let expected = match fsync {
                // Each group written after the one before it was synced.
                FsyncMode::Always => vec![magic, magic + group, magic + 2 * group],
                // Only the magic ever was.
                _ => vec![magic; 3],
            };
            assert_eq!(synced_of_groups(&segment), expected, "{fsync}");
        }
    }
}
