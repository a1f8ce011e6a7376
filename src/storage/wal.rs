//! The write-ahead log: every accepted packet is on disk before its 202.
//!
//! ```text
//! <data-dir>/wal/00000000000000000007.wal      segments, numbered, oldest first
//!
//! segment = record*
//! record  = len:u32 LE | crc32c:u32 LE | kind:u8 | body          (len = 1 + body length)
//!   kind 1 Accept  body = seq:u64 LE | packet as JSON (with retry_count)
//!   kind 2 Retry   body = seq:u64 LE | retries:u32 LE
//!   kind 3 End     body = seq:u64 LE             (delivered or dead-lettered)
//! crc32c covers kind and body.
//! ```
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
//! - Only the tail of the newest segment can be torn (a crash mid-write): it
//!   is cut off. A bad record anywhere else is corruption: recovery refuses
//!   to start unless told to skip it ([`RecoverMode::SkipCorrupt`]).
//! - Group commit: one writer thread takes every append waiting, writes
//!   them in one `writev`, then (with [`FsyncMode::Always`]) one `fdatasync`
//!   before any of them is acknowledged. A failed write is cut back off the
//!   segment, so a disk that fills up leaves no half record behind.

use super::Unfinished;
use crate::model::{EncodedPacket, LogPacket};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{self, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const HEADER_BYTES: usize = 8;
const KIND_ACCEPT: u8 = 1;
const KIND_RETRY: u8 = 2;
const KIND_END: u8 = 3;
/// No single record is larger: a packet is at most a few MiB of JSON.
const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// The largest packet (its JSON, `retry_count` included) an Accept record holds.
pub const MAX_PACKET_JSON_BYTES: usize = MAX_RECORD_BYTES - 9;
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

/// What recovery does with a bad record that is not a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoverMode {
    /// Refuse to start, naming the segment and offset.
    #[default]
    Strict,
    /// Skip the rest of the damaged segment, report it, go on.
    SkipCorrupt,
}

/// One entry of the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A packet taken in, with the retries it had already spent.
    Accept {
        seq: u64,
        packet: Arc<EncodedPacket>,
        retries: u32,
    },
    Retry {
        seq: u64,
        retries: u32,
    },
    End {
        seq: u64,
    },
}

impl Record {
    /// The most bytes [`Record::encode`] appends.
    pub fn max_encoded_bytes(&self) -> usize {
        let body = match self {
            Record::Accept { packet, .. } => 9 + packet.json_bytes(),
            Record::Retry { .. } => 13,
            Record::End { .. } => 9,
        };
        HEADER_BYTES + body
    }

    /// Appends the record's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; HEADER_BYTES]);
        match self {
            Record::Accept { seq, packet, retries } => {
                out.push(KIND_ACCEPT);
                out.extend_from_slice(&seq.to_le_bytes());
                packet.write_json(*retries, out);
            }
            Record::Retry { seq, retries } => {
                out.push(KIND_RETRY);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&retries.to_le_bytes());
            }
            Record::End { seq } => {
                out.push(KIND_END);
                out.extend_from_slice(&seq.to_le_bytes());
            }
        }
        let body = &out[start + HEADER_BYTES..];
        let len = u32::try_from(body.len()).expect("records are far below 4 GiB");
        let crc = crc32c::crc32c(body);
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes one record from the front of `bytes`: the record and its
    /// length, or why it cannot be read.
    pub fn decode(bytes: &[u8]) -> Result<(Record, usize), DecodeError> {
        if bytes.len() < HEADER_BYTES {
            return Err(DecodeError::Truncated);
        }
        let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD_BYTES {
            return Err(DecodeError::Corrupt(format!("impossible record length {len}")));
        }
        let Some(body) = bytes.get(HEADER_BYTES..HEADER_BYTES + len) else {
            return Err(DecodeError::Truncated);
        };
        if crc32c::crc32c(body) != crc {
            return Err(DecodeError::Corrupt("checksum mismatch".into()));
        }
        let seq = |b: &[u8]| -> Result<u64, DecodeError> {
            b.get(1..9)
                .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
                .ok_or_else(|| DecodeError::Corrupt("record too short for its kind".into()))
        };
        let record = match body[0] {
            KIND_ACCEPT => {
                let packet: LogPacket = serde_json::from_slice(&body[9..])
                    .map_err(|e| DecodeError::Unreadable(format!("accept record holds no packet: {e}")))?;
                Record::Accept {
                    seq: seq(body)?,
                    packet: Arc::new(EncodedPacket::new(&packet)),
                    retries: packet.retry_count,
                }
            }
            KIND_RETRY => Record::Retry {
                seq: seq(body)?,
                retries: body
                    .get(9..13)
                    .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
                    .ok_or_else(|| DecodeError::Corrupt("retry record too short".into()))?,
            },
            KIND_END => Record::End { seq: seq(body)? },
            kind => return Err(DecodeError::Corrupt(format!("unknown record kind {kind}"))),
        };
        Ok((record, HEADER_BYTES + len))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end inside the record.
    Truncated,
    /// The record is damaged.
    Corrupt(String),
    /// The record is whole (its checksum holds) but cannot be read: never
    /// a torn write, always refused.
    Unreadable(String),
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

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Packets without an End record, by seq, with their retry counts.
    pub in_flight: BTreeMap<u64, Unfinished>,
    /// The seq after the largest one seen.
    pub next_seq: u64,
    pub records: u64,
    pub torn_tail_bytes: u64,
    /// Damaged parts skipped under `SkipCorrupt`: segment, offset, reason.
    pub skipped: Vec<(String, u64, String)>,
}

/// The newest segment's number (0 when there is none): the one being
/// written when the process stopped, the only one whose tail may be torn.
pub fn newest_segment(dir: &Path) -> io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    Ok(list_segments(dir)?.last().map_or(0, |(n, _)| *n))
}

/// Replays every segment numbered `from` to `tail` on top of `state`;
/// `tail` is the segment whose end may be torn ([`newest_segment`] before
/// the log was reopened).
pub fn recover(
    dir: &Path,
    from: u64,
    tail: u64,
    mut state: BTreeMap<u64, Unfinished>,
    mut next_seq: u64,
    mode: RecoverMode,
) -> Result<Recovered, WalError> {
    std::fs::create_dir_all(dir)?;
    let segments = list_segments(dir)?;
    // A crash during start-up can leave an empty newer segment behind the
    // torn one: the tail is the newest segment that holds anything.
    let tail = segments
        .iter()
        .filter(|(n, _)| *n <= tail)
        .rev()
        .find(|(_, path)| std::fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false))
        .map_or(tail, |(n, _)| *n);
    let mut report = Recovered::default();
    for (number, path) in segments.iter().filter(|(n, _)| (from..=tail).contains(n)) {
        let mut bytes = Vec::new();
        File::open(path)?.read_to_end(&mut bytes)?;
        let mut offset = 0usize;
        while offset < bytes.len() {
            match Record::decode(&bytes[offset..]) {
                Ok((record, used)) => {
                    report.records += 1;
                    apply(&mut state, &mut next_seq, record);
                    offset += used;
                }
                Err(error) => {
                    let is_tail = *number == tail && is_torn_tail(&bytes, offset, &error);
                    let name = path.display().to_string();
                    if is_tail {
                        report.torn_tail_bytes = (bytes.len() - offset) as u64;
                        OpenOptions::new()
                            .write(true)
                            .open(path)?
                            .set_len(offset as u64)?;
                        tracing::warn!(segment = %name, offset, bytes = report.torn_tail_bytes,
                            "write-ahead log had a torn tail (a crash mid-write); cut it off");
                        break;
                    }
                    let reason = match error {
                        DecodeError::Truncated => "the segment ends inside a record".to_string(),
                        DecodeError::Corrupt(reason) | DecodeError::Unreadable(reason) => reason,
                    };
                    if mode == RecoverMode::Strict {
                        return Err(WalError::Corrupt {
                            segment: name,
                            offset: offset as u64,
                            reason,
                        });
                    }
                    tracing::error!(segment = %name, offset, %reason, "skipping a corrupt part of the write-ahead log");
                    report.skipped.push((name, offset as u64, reason));
                    break;
                }
            }
        }
    }
    report.in_flight = state;
    report.next_seq = next_seq;
    Ok(report)
}

fn apply(state: &mut BTreeMap<u64, Unfinished>, next_seq: &mut u64, record: Record) {
    match record {
        Record::Accept { seq, packet, retries } => {
            *next_seq = (*next_seq).max(seq + 1);
            state.insert(seq, Unfinished { packet, retries });
        }
        Record::Retry { seq, retries } => {
            if let Some(unfinished) = state.get_mut(&seq) {
                unfinished.retries = retries;
            }
        }
        Record::End { seq } => {
            state.remove(&seq);
        }
    }
}

/// Whether the bad record at `offset` is a torn tail (a crash mid-write)
/// rather than damage in the middle: it runs past the end of the file,
/// ends exactly at it, or only zeros follow (space allocated, never written).
fn is_torn_tail(bytes: &[u8], offset: usize, error: &DecodeError) -> bool {
    let rest = &bytes[offset..];
    if matches!(error, DecodeError::Unreadable(_)) {
        return false;
    }
    if *error == DecodeError::Truncated || rest.iter().all(|b| *b == 0) {
        return true;
    }
    let declared = u32::from_le_bytes(rest[0..4].try_into().expect("a header was read")) as usize;
    HEADER_BYTES + declared == rest.len()
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

enum Command {
    Append {
        bytes: Vec<u8>,
        done: Option<oneshot::Sender<io::Result<()>>>,
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
        let segment = Segment::create(dir, last_segment + 1)?;
        let (commands, incoming) = std_mpsc::channel();
        let pending = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer {
            dir: dir.to_path_buf(),
            pending: pending.clone(),
            segment,
            options,
            unsynced: false,
            last_sync: Instant::now(),
            concurrent: false,
        };
        std::thread::Builder::new()
            .name("wal-writer".into())
            .spawn(move || writer.run(incoming))?;
        Ok(Wal {
            commands,
            dir: dir.to_path_buf(),
            pending,
        })
    }

    /// Appends records and waits until they are as durable as the fsync
    /// mode promises.
    pub async fn append_durable(&self, records: &[Record]) -> Result<(), WalError> {
        self.send_durable(records)?.await
    }

    /// Hands records to the writer: they are written whether or not the
    /// answer is awaited.
    pub fn send_durable(&self, records: &[Record]) -> Result<DurableAppend, WalError> {
        let mut bytes = Vec::with_capacity(records.iter().map(Record::max_encoded_bytes).sum());
        for record in records {
            record.encode(&mut bytes);
        }
        let (done, answer) = oneshot::channel();
        self.commands
            .send(Command::Append {
                bytes,
                done: Some(done),
            })
            .map_err(|_| WalError::Stopped)?;
        Ok(DurableAppend(answer))
    }

    /// Appends records without waiting (Retry and End: losing one costs a
    /// duplicate delivery after a crash, never a packet).
    pub fn append(&self, records: &[Record]) {
        let was_empty = {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
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

struct Segment {
    number: u64,
    file: File,
    len: u64,
}

impl Segment {
    fn create(dir: &Path, number: u64) -> io::Result<Segment> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, number))?;
        let len = file.metadata()?.len();
        File::open(dir)?.sync_all()?;
        Ok(Segment { number, file, len })
    }
}

struct Writer {
    dir: PathBuf,
    pending: Arc<Mutex<Vec<u8>>>,
    segment: Segment,
    options: WalOptions,
    unsynced: bool,
    last_sync: Instant,
    /// Whether the last group held more than one durable append.
    concurrent: bool,
}

impl Writer {
    fn run(mut self, incoming: std_mpsc::Receiver<Command>) {
        loop {
            let first = match self.next_wait() {
                Some(wait) => match incoming.recv_timeout(wait) {
                    Ok(command) => command,
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {
                        self.sync_if_due();
                        continue;
                    }
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match incoming.recv() {
                    Ok(command) => command,
                    Err(_) => break,
                },
            };
            let mut group = vec![first];
            group.extend(incoming.try_iter());
            let appends = group
                .iter()
                .filter(|c| matches!(c, Command::Append { .. }))
                .count();
            if self.concurrent
                && self.options.fsync == FsyncMode::Always
                && !self.options.commit_delay.is_zero()
            {
                // Appends arrive concurrently: one sleep lets more of them
                // share the fdatasync (PostgreSQL's commit_delay, with its
                // commit_siblings in `concurrent`).
                std::thread::sleep(self.options.commit_delay);
                group.extend(incoming.try_iter());
            }
            self.concurrent = appends > 1;
            self.commit(group);
        }
        let rest = self.take_pending();
        self.write_group(vec![rest], Vec::new());
        let _ = self.sync();
    }

    /// fdatasync of the current segment, timed when a histogram is set.
    fn sync(&self) -> io::Result<()> {
        let started = Instant::now();
        let result = self.segment.file.sync_data();
        if let Some(histogram) = &self.options.fsync_duration {
            histogram.observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// How long to wait for work before an interval fsync is due.
    fn next_wait(&self) -> Option<Duration> {
        match self.options.fsync {
            FsyncMode::Interval(every) if self.unsynced => {
                Some(every.saturating_sub(self.last_sync.elapsed()))
            }
            _ => None,
        }
    }

    fn sync_if_due(&mut self) {
        if let FsyncMode::Interval(every) = self.options.fsync {
            if self.unsynced && self.last_sync.elapsed() >= every {
                if let Err(e) = self.sync() {
                    tracing::error!(error = %e, "write-ahead log fsync failed");
                }
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
        }
    }

    /// Writes a group of appends at once and answers each; rotations in the
    /// group split it so that order is kept.
    fn commit(&mut self, group: Vec<Command>) {
        let mut chunks = vec![self.take_pending()];
        let mut waiting = Vec::new();
        for command in group {
            match command {
                Command::Append { bytes, done } => {
                    chunks.push(bytes);
                    waiting.extend(done);
                }
                Command::Flush => {}
                Command::Rotate { done } => {
                    chunks.push(self.take_pending());
                    self.write_group(std::mem::take(&mut chunks), std::mem::take(&mut waiting));
                    let _ = done.send(self.rotate_if_written());
                }
            }
        }
        chunks.push(self.take_pending());
        self.write_group(chunks, waiting);
    }

    fn take_pending(&self) -> Vec<u8> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Writes `chunks` in order as one group (one `writev` where the
    /// kernel allows, one fdatasync) and answers everyone waiting on it.
    fn write_group(&mut self, chunks: Vec<Vec<u8>>, waiting: Vec<oneshot::Sender<io::Result<()>>>) {
        if chunks.iter().all(Vec::is_empty) {
            for done in waiting {
                let _ = done.send(Ok(()));
            }
            return;
        }
        let result = self.write_durably(&chunks);
        for done in waiting {
            let _ = done.send(
                result
                    .as_ref()
                    .map(|_| ())
                    .map_err(|e| io::Error::new(e.kind(), e.to_string())),
            );
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "write-ahead log write failed; answering 503 until it works again");
        }
        if self.segment.len >= self.options.segment_bytes {
            if let Err(e) = self.rotate() {
                tracing::error!(error = %e, "cannot start a new write-ahead log segment");
            }
        }
    }

    fn write_durably(&mut self, chunks: &[Vec<u8>]) -> io::Result<()> {
        let before = self.segment.len;
        let written = write_chunks(&mut self.segment.file, chunks).and_then(|()| match self.options.fsync {
            FsyncMode::Always => self.sync(),
            FsyncMode::Interval(_) | FsyncMode::Never => Ok(()),
        });
        match written {
            Ok(()) => {
                self.segment.len += chunks.iter().map(|c| c.len() as u64).sum::<u64>();
                if matches!(self.options.fsync, FsyncMode::Interval(_)) {
                    self.unsynced = true;
                    self.sync_if_due();
                }
                Ok(())
            }
            Err(e) => {
                // Leave no half record behind: cut the segment back.
                if let Err(cut) = self.segment.file.set_len(before) {
                    tracing::error!(error = %cut, "cannot cut a failed write off the write-ahead log");
                }
                Err(e)
            }
        }
    }

    /// Starts the next segment unless nothing was written to this one (a
    /// checkpoint while idle): everything appended is in older segments
    /// either way. Answers the current segment's number.
    fn rotate_if_written(&mut self) -> io::Result<u64> {
        if self.segment.len == 0 {
            return Ok(self.segment.number);
        }
        self.rotate()
    }

    fn rotate(&mut self) -> io::Result<u64> {
        self.sync()?;
        let next = Segment::create(&self.dir, self.segment.number + 1)?;
        self.segment = next;
        self.unsynced = false;
        Ok(self.segment.number)
    }
}

/// Writes every chunk, in order, without copying them into one buffer.
fn write_chunks(file: &mut File, chunks: &[Vec<u8>]) -> io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = chunks
        .iter()
        .filter(|chunk| !chunk.is_empty())
        .map(|chunk| IoSlice::new(chunk))
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut rest, written),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, LogMessage};

    fn packet(id: &str) -> Arc<EncodedPacket> {
        Arc::new(EncodedPacket::new(&LogPacket {
            id: id.into(),
            messages: vec![LogMessage {
                level: Level::Info,
                message: "m".into(),
                source: "s".into(),
                timestamp: chrono::Utc::now(),
                metadata: None,
            }],
            retry_count: 0,
        }))
    }

    /// Replays every segment of `dir` from scratch.
    fn recover_all(dir: &Path, mode: RecoverMode) -> Result<Recovered, WalError> {
        recover(dir, 0, newest_segment(dir).unwrap(), BTreeMap::new(), 0, mode)
    }

    fn options(fsync: FsyncMode) -> WalOptions {
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
    fn records_round_trip_and_damage_is_caught() {
        let records = [
            Record::Accept {
                seq: 7,
                packet: packet("a"),
                retries: u32::MAX,
            },
            Record::Retry { seq: 7, retries: 2 },
            Record::End { seq: 7 },
        ];
        let mut bytes = Vec::new();
        for r in &records {
            r.encode(&mut bytes);
        }
        let mut offset = 0;
        for expected in &records {
            let (record, used) = Record::decode(&bytes[offset..]).unwrap();
            assert_eq!(&record, expected);
            assert!(used <= expected.max_encoded_bytes(), "{expected:?}: {used} bytes");
            offset += used;
        }
        assert_eq!(Record::decode(&bytes[..5]), Err(DecodeError::Truncated));
        let mut flipped = bytes.clone();
        flipped[12] ^= 0xff;
        assert!(matches!(Record::decode(&flipped), Err(DecodeError::Corrupt(_))));
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
    async fn a_torn_tail_is_cut_and_damage_in_the_middle_refused() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), 0, options(FsyncMode::Always)).unwrap();
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
        let path = segment_path(dir.path(), 1);
        let whole = std::fs::read(&path).unwrap();

        // Torn tail: the last record half written.
        std::fs::write(&path, &whole[..whole.len() - 10]).unwrap();
        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(recovered.in_flight.len(), 2);
        assert!(recovered.torn_tail_bytes > 0);
        assert!(
            std::fs::read(&path).unwrap().len() < whole.len() - 10,
            "the tail is cut off the file"
        );

        // Damage in the middle: a flipped byte in the first record.
        let mut damaged = whole.clone();
        damaged[HEADER_BYTES + 3] ^= 0x55;
        std::fs::write(&path, &damaged).unwrap();
        let err = recover_all(dir.path(), RecoverMode::Strict).unwrap_err();
        assert!(err.to_string().contains("at byte 0"), "{err}");
        assert!(err.to_string().contains("--wal-recover=skip-corrupt"), "{err}");
        let skipped = recover_all(dir.path(), RecoverMode::SkipCorrupt).unwrap();
        assert_eq!(skipped.skipped.len(), 1);
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

    #[test]
    fn a_group_of_more_chunks_than_one_writev_takes_lands_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chunks");
        let mut file = File::create(&path).unwrap();
        // Past IOV_MAX (1024 on Linux), with empty chunks and sizes that
        // make a short write end inside a chunk.
        let chunks: Vec<Vec<u8>> = (0..3000u32)
            .map(|n| vec![(n % 251) as u8; (n % 7) as usize * 3])
            .collect();
        write_chunks(&mut file, &chunks).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), chunks.concat());
    }
}
