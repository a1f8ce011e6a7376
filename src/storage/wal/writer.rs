//! The writer thread: takes every append waiting, writes them as one
//! commit group, fsyncs as the mode says (then lets go of the synced
//! pages, see `page_cache`), answers the appenders, and rotates segments
//! (see the invariants in [`super`]).

use super::format::{GroupHeader, SEGMENT_MAGIC};
use super::page_cache::PageCache;
use super::{segment_path, Command, FsyncMode, WalOptions};
use crate::sync::LockUnpoisoned;
use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Write};
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
    let segment = Segment::create(dir, first_segment)?;
    let writer = Writer {
        dir: dir.to_path_buf(),
        pending,
        segment,
        options,
        unsynced: false,
        last_sync: Instant::now(),
        concurrent: false,
    };
    std::thread::Builder::new()
        .name("wal-writer".into())
        .spawn(move || writer.run(incoming))?;
    Ok(())
}

struct Segment {
    number: u64,
    file: File,
    len: u64,
    /// Bytes made durable by the last completed fdatasync.
    synced: u64,
    /// The synced pages let go of.
    page_cache: PageCache,
}

impl Segment {
    /// Creates the segment with its magic, durable (file and directory)
    /// before anything is written to it. A creation that fails (a full
    /// disk) leaves no file behind, so it can be tried again.
    fn create(dir: &Path, number: u64) -> io::Result<Segment> {
        let path = segment_path(dir, number);
        let mut file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        let durable = file
            .write_all(&SEGMENT_MAGIC)
            .and_then(|()| file.sync_data())
            .and_then(|()| File::open(dir)?.sync_all());
        if let Err(e) = durable {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let len = SEGMENT_MAGIC.len() as u64;
        Ok(Segment {
            number,
            file,
            len,
            synced: len,
            page_cache: PageCache::new(),
        })
    }

    /// Whether any commit group was written to it.
    fn has_groups(&self) -> bool {
        self.len > SEGMENT_MAGIC.len() as u64
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
    fn sync(&mut self) -> io::Result<()> {
        let started = Instant::now();
        let result = self.segment.file.sync_data();
        if let Some(histogram) = &self.options.fsync_duration {
            histogram.observe(started.elapsed().as_secs_f64());
        }
        if result.is_ok() {
            self.segment.synced = self.segment.len;
            let segment = &mut self.segment;
            segment.page_cache.after_sync(&segment.file, segment.synced);
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
        std::mem::take(&mut *self.pending.lock_unpoisoned())
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
        let result = self.write_durably(chunks);
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

    /// Writes `body` as one commit group, behind its header.
    fn write_durably(&mut self, mut body: Vec<Vec<u8>>) -> io::Result<()> {
        let before = self.segment.len;
        let header = GroupHeader::for_body(&body, self.segment.synced);
        body.insert(0, header.encode().to_vec());
        let mut written = write_chunks(&mut self.segment.file, &body);
        if written.is_ok() {
            self.segment.len += body.iter().map(|c| c.len() as u64).sum::<u64>();
            if self.options.fsync == FsyncMode::Always {
                written = self.sync();
            }
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
                // Leave no half group behind: cut the segment back.
                self.segment.len = before;
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
        if !self.segment.has_groups() {
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
pub(super) fn write_chunks(file: &mut File, chunks: &[Vec<u8>]) -> io::Result<()> {
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
