//! The writer thread: takes every append waiting, writes them as one
//! commit group, fsyncs as the mode says, answers the appenders, then lets
//! go of the synced pages (see `page_cache`) and rotates segments
//! (see the invariants in [`super`]).

use super::format::{GroupHeader, Record, GROUP_HEADER_BYTES, SEGMENT_MAGIC};
use super::page_cache::PageCache;
use super::room::{self, Spare, Spares};
use super::{segment_path, Command, FsyncMode, WalOptions, GROUP_BYTES};
use crate::sync::LockUnpoisoned;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Creates segment `first_segment` and starts the writer thread on it:
/// it takes `incoming` commands and the records waiting in `pending`, and
/// stops when the last sender is dropped.
pub(super) fn spawn(
    dir: &Path,
    first_segment: u64,
    options: WalOptions,
    pending: Arc<Mutex<Vec<u8>>>,
    incoming: std_mpsc::Receiver<Command>,
) -> io::Result<()> {
    let writer = Writer::open(dir, first_segment, options, pending)?;
    std::thread::Builder::new()
        .name("wal-writer".into())
        .spawn(move || writer.run(incoming))?;
    Ok(())
}

struct Segment {
    number: u64,
    file: File,
    /// Bytes of commit groups (and the magic) written.
    len: u64,
    /// Bytes made durable by the last completed fdatasync.
    synced: u64,
    /// fdatasyncs that made groups of it durable.
    syncs: u64,
    /// The file's length: past `len`, room zeroed ahead (see `room`).
    room: u64,
    /// The synced pages let go of.
    page_cache: PageCache,
}

impl Segment {
    /// Creates the segment with its magic and `room` bytes zeroed (at
    /// least the magic), durable (file and directory) before anything is
    /// written to it. A creation that fails (a full disk) leaves no file
    /// behind, so it can be tried again.
    fn create(dir: &Path, number: u64, room: u64) -> io::Result<Segment> {
        let path = segment_path(dir, number);
        let file = OpenOptions::new().create_new(true).write(true).open(&path)?;
        let durable = room::write_magic_and_room(&file, room)
            .and_then(|room| File::open(dir)?.sync_all().map(|()| room));
        match durable {
            Ok(room) => Ok(Segment::opened(number, file, room)),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// A new segment with [`room::FIRST_ROOM`] (at most a segment) zeroed
    /// where that is worth it; without room when zeroing it fails (a disk
    /// filling up between the check and the writes).
    fn with_first_room(dir: &Path, number: u64, options: &WalOptions) -> io::Result<Segment> {
        let room = room::first_room(options.segment_bytes);
        if room::worth_zeroing(dir, room) {
            match Segment::create(dir, number, room) {
                Ok(segment) => return Ok(segment),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot zero a new write-ahead log segment ahead; appending instead")
                }
            }
        }
        Segment::create(dir, number, 0)
    }

    /// Renames a zeroed spare into place as the segment.
    fn from_spare(dir: &Path, number: u64, spare: Spare) -> io::Result<Segment> {
        let (file, room) = spare.install(dir, &segment_path(dir, number))?;
        Ok(Segment::opened(number, file, room))
    }

    /// A segment holding its magic, durable, and `room` bytes in all.
    fn opened(number: u64, file: File, room: u64) -> Segment {
        let len = SEGMENT_MAGIC.len() as u64;
        Segment {
            number,
            file,
            len,
            synced: len,
            syncs: 0,
            room,
            page_cache: PageCache::new(),
        }
    }

    /// Whether any commit group was written to it.
    fn has_groups(&self) -> bool {
        self.len > SEGMENT_MAGIC.len() as u64
    }

    /// Cuts the unused room off the file.
    fn cut_to_len(&mut self) -> io::Result<()> {
        if self.room != self.len {
            self.file.set_len(self.len)?;
            self.room = self.len;
        }
        Ok(())
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
    /// The commit group being encoded, its header's room first.
    group: Vec<u8>,
    /// Segments zeroed ahead, to rotate into.
    spares: Spares,
}

impl Writer {
    /// A writer on a new segment `first_segment`.
    fn open(
        dir: &Path,
        first_segment: u64,
        options: WalOptions,
        pending: Arc<Mutex<Vec<u8>>>,
    ) -> io::Result<Writer> {
        let spares = Spares::new(dir);
        Ok(Writer {
            dir: dir.to_path_buf(),
            pending,
            segment: Segment::with_first_room(dir, first_segment, &options)?,
            options,
            unsynced: false,
            last_sync: Instant::now(),
            concurrent: false,
            group: Vec::new(),
            spares,
        })
    }

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
        self.write_batch(vec![Part::Encoded(rest)], Vec::new());
        let _ = self.sync();
    }

    /// fdatasync of the current segment, timed when a histogram is set.
    fn sync(&mut self) -> io::Result<()> {
        let started = Instant::now();
        let result = self.segment.file.sync_data();
        if let Some(histogram) = &self.options.fsync_duration {
            histogram.observe(started.elapsed().as_secs_f64());
        }
        if result.is_ok() && self.segment.synced < self.segment.len {
            self.segment.synced = self.segment.len;
            self.segment.syncs += 1;
        }
        result
    }

    /// Lets go of the pages the last fdatasync made durable (see
    /// `page_cache`): housekeeping, done once the appenders have their
    /// answers.
    fn release_synced_pages(&mut self) {
        let segment = &mut self.segment;
        segment.page_cache.after_sync(&segment.file, segment.synced);
    }

    /// With `fsync: never`, starts the writeback of what was written since
    /// the last start (see `page_cache`), so that the fdatasync sealing the
    /// segment at rotation finds little to write.
    fn start_writeback_of_unsynced_pages(&mut self) {
        if self.options.fsync == FsyncMode::Never {
            let segment = &mut self.segment;
            segment
                .page_cache
                .after_unsynced_write(&segment.file, segment.len);
        }
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
                self.release_synced_pages();
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
        }
    }

    /// Writes a group of appends at once and answers each; rotations in the
    /// group split it so that order is kept.
    fn commit(&mut self, group: Vec<Command>) {
        let mut parts = vec![Part::Encoded(self.take_pending())];
        let mut waiting = Vec::new();
        for command in group {
            match command {
                Command::Append { records, done } => {
                    parts.push(Part::Records(records));
                    waiting.push(done);
                }
                Command::Flush => {}
                Command::Rotate { done } => {
                    parts.push(Part::Encoded(self.take_pending()));
                    self.write_batch(std::mem::take(&mut parts), std::mem::take(&mut waiting));
                    let _ = done.send(self.rotate_if_written());
                }
            }
        }
        parts.push(Part::Encoded(self.take_pending()));
        self.write_batch(parts, waiting);
    }

    fn take_pending(&self) -> Vec<u8> {
        std::mem::take(&mut *self.pending.lock_unpoisoned())
    }

    /// Writes `parts` in order (commit groups, one fdatasync) and answers
    /// everyone waiting on them.
    fn write_batch(&mut self, parts: Vec<Part>, waiting: Vec<oneshot::Sender<io::Result<()>>>) {
        if parts.iter().all(Part::is_empty) {
            for done in waiting {
                let _ = done.send(Ok(()));
            }
            return;
        }
        let result = self.write_durably(parts);
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
        self.release_synced_pages();
        self.start_writeback_of_unsynced_pages();
        if self.rotation_due() {
            if let Err(e) = self.rotate() {
                tracing::error!(error = %e, "cannot start a new write-ahead log segment");
            }
        }
    }

    /// Whether the segment is full, or has used its zeroed room and a
    /// whole segment's spare is ready. Asks for a whole spare once half the
    /// room is used while fdatasyncs are small, and otherwise for one of the
    /// first room once half the segment is written (see `room`).
    fn rotation_due(&mut self) -> bool {
        let segment = &self.segment;
        let whole = self.options.segment_bytes;
        if segment.len >= whole {
            return true;
        }
        let groups = segment.len - SEGMENT_MAGIC.len() as u64;
        let small_syncs = groups <= segment.syncs.saturating_mul(room::SMALL_SYNC_BYTES);
        if segment.len >= segment.room / 2 && small_syncs {
            self.spares.request(whole);
        } else if segment.len >= whole / 2 {
            self.spares.request(room::first_room(whole));
        }
        self.segment.len >= self.segment.room && self.spares.ready_bytes() == Some(whole)
    }

    /// Writes `parts` as commit groups, then fdatasyncs as the mode says;
    /// on failure, cuts the segment back to where it was.
    fn write_durably(&mut self, parts: Vec<Part>) -> io::Result<()> {
        let before = self.segment.len;
        let mut written = self.write_groups(parts);
        if written.is_ok() && self.options.fsync == FsyncMode::Always {
            written = self.sync();
        }
        match written {
            Ok(()) => {
                if matches!(self.options.fsync, FsyncMode::Interval(_)) {
                    self.unsynced = true;
                    self.sync_if_due();
                }
                Ok(())
            }
            Err(e) => {
                // Leave no half group behind: cut the segment back (its
                // room ahead with it).
                self.segment.len = before;
                self.segment.room = before;
                if let Err(cut) = self.segment.file.set_len(before) {
                    tracing::error!(error = %cut, "cannot cut a failed write off the write-ahead log");
                }
                Err(e)
            }
        }
    }

    /// Encodes `parts` into commit groups of about [`GROUP_BYTES`] (a part
    /// whole in one group) and writes each, one `write` per group, into a
    /// buffer kept from one batch to the next.
    fn write_groups(&mut self, parts: Vec<Part>) -> io::Result<()> {
        // Empty here: each batch leaves it so.
        let mut group = std::mem::take(&mut self.group);
        group.resize(GROUP_HEADER_BYTES, 0);
        let mut written = Ok(());
        for part in parts {
            part.encode(&mut group);
            if group.len() >= GROUP_BYTES {
                written = self.write_group(&mut group);
                if written.is_err() {
                    break;
                }
            }
        }
        if written.is_ok() && group.len() > GROUP_HEADER_BYTES {
            written = self.write_group(&mut group);
        }
        // One large append does not keep its size for good.
        group.clear();
        group.shrink_to(GROUP_BYTES);
        self.group = group;
        written
    }

    /// Writes `group` (its header's room, then its body) as one commit
    /// group and empties its body.
    fn write_group(&mut self, group: &mut Vec<u8>) -> io::Result<()> {
        let header = GroupHeader::for_body(&group[GROUP_HEADER_BYTES..], self.segment.synced);
        group[..GROUP_HEADER_BYTES].copy_from_slice(&header.encode());
        let segment = &mut self.segment;
        segment.file.write_all_at(group, segment.len)?;
        segment.len += group.len() as u64;
        segment.room = segment.room.max(segment.len);
        group.truncate(GROUP_HEADER_BYTES);
        Ok(())
    }

    /// Starts the next segment unless nothing was written to this one (a
    /// checkpoint while idle): everything appended is in older segments
    /// either way. Answers the current segment's number.
    fn rotate_if_written(&mut self) -> io::Result<u64> {
        if !self.segment.has_groups() {
            return Ok(self.segment.number);
        }
        self.rotate()
    }

    /// Syncs the segment, cuts off its unused room, and goes on in the
    /// next: the ready spare, or a new segment with its first room.
    fn rotate(&mut self) -> io::Result<u64> {
        self.sync()?;
        self.release_synced_pages();
        if let Err(e) = self.segment.cut_to_len() {
            // Recovery reads the zeros left as room never written.
            tracing::warn!(error = %e, "cannot cut the unused room off a write-ahead log segment");
        }
        let number = self.segment.number + 1;
        let from_spare = self.spares.take().and_then(|spare| {
            Segment::from_spare(&self.dir, number, spare)
                .inspect_err(|e| {
                    tracing::warn!(error = %e, "cannot rename the zeroed spare into a write-ahead log segment")
                })
                .ok()
        });
        let next = match from_spare {
            Some(segment) => segment,
            None => Segment::with_first_room(&self.dir, number, &self.options)?,
        };
        self.segment = next;
        self.unsynced = false;
        Ok(self.segment.number)
    }
}

/// What a batch writes, in order.
enum Part {
    /// Records appended without waiting, already encoded.
    Encoded(Vec<u8>),
    /// An append's records, encoded as they are written.
    Records(Vec<Record>),
}

impl Part {
    fn is_empty(&self) -> bool {
        match self {
            Part::Encoded(bytes) => bytes.is_empty(),
            Part::Records(records) => records.is_empty(),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Part::Encoded(bytes) => out.extend_from_slice(bytes),
            Part::Records(records) => {
                out.reserve(records.iter().map(Record::max_encoded_bytes).sum());
                for record in records {
                    record.encode(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
