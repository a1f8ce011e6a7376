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
        let magic = SEGMENT_MAGIC.len() as u64;
        let room = room.max(magic);
        let durable = file
            .write_all_at(&SEGMENT_MAGIC, 0)
            .and_then(|()| room::zero_fill(&file, magic, room))
            .and_then(|()| File::open(dir)?.sync_all());
        if let Err(e) = durable {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(Segment::opened(number, file, room))
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
        let spares = Spares::new(dir, options.segment_bytes);
        Ok(Writer {
            dir: dir.to_path_buf(),
            pending,
            segment: Segment::create(dir, first_segment, first_room(dir, &options))?,
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
        if self.rotation_due() {
            if let Err(e) = self.rotate() {
                tracing::error!(error = %e, "cannot start a new write-ahead log segment");
            }
        }
    }

    /// Whether the segment is full, or has used its zeroed room and a
    /// spare is ready; asks for a spare once half the room is used, while
    /// fdatasyncs are small (see `room`).
    fn rotation_due(&mut self) -> bool {
        let segment = &self.segment;
        if segment.len >= self.options.segment_bytes {
            return true;
        }
        let groups = segment.len - SEGMENT_MAGIC.len() as u64;
        let small_syncs = groups <= segment.syncs.saturating_mul(room::SMALL_SYNC_BYTES);
        if segment.len >= segment.room / 2 && small_syncs {
            self.spares.request();
        }
        self.segment.len >= self.segment.room && self.spares.is_ready()
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
        let spare = self
            .spares
            .take()
            .map(|spare| Segment::from_spare(&self.dir, number, spare));
        let next = match spare {
            Some(Ok(segment)) => segment,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "cannot rename the zeroed spare into a write-ahead log segment");
                Segment::create(&self.dir, number, first_room(&self.dir, &self.options))?
            }
            None => Segment::create(&self.dir, number, first_room(&self.dir, &self.options))?,
        };
        self.segment = next;
        self.unsynced = false;
        Ok(self.segment.number)
    }
}

/// The room a new segment gets zeroed at its creation: [`room::FIRST_ROOM`]
/// (at most a segment), where zeroing is worth it.
fn first_room(dir: &Path, options: &WalOptions) -> u64 {
    let room = room::FIRST_ROOM.min(options.segment_bytes);
    if room::worth_zeroing(dir, room) {
        room
    } else {
        0
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
mod tests {
    use super::super::format::decode_group;
    use super::super::tests::options;
    use super::*;
    use crate::model::{EncodedPacket, Level, LogMessage, LogPacket};

    /// An Accept record of about `bytes` bytes.
    fn accept(seq: u64, bytes: usize) -> Record {
        let packet = EncodedPacket::new(&LogPacket {
            id: format!("p{seq}"),
            messages: vec![LogMessage {
                level: Level::Info,
                message: "m".repeat(bytes),
                source: "s".into(),
                timestamp: chrono::Utc::now(),
                metadata: None,
            }],
            retry_count: 0,
        });
        Record::Accept {
            seq,
            packet: Arc::new(packet),
            retries: 0,
        }
    }

    /// A writer on segment 1 of `dir`, fsync always, with segments of
    /// `segment_bytes`.
    fn writer_with_segments(dir: &Path, segment_bytes: u64) -> Writer {
        let options = WalOptions {
            segment_bytes,
            ..options(FsyncMode::Always)
        };
        Writer::open(dir, 1, options, Arc::default()).unwrap()
    }

    /// A writer that does not rotate within one batch of a few MiB.
    fn unrotated_writer(dir: &Path) -> Writer {
        writer_with_segments(dir, 64 << 20)
    }

    /// Appends `records` and waits for the answer.
    fn append(writer: &mut Writer, records: Vec<Record>) {
        let (done, mut answer) = oneshot::channel();
        writer.commit(vec![Command::Append { records, done }]);
        answer.try_recv().unwrap().unwrap();
    }

    /// Asserts that `dir` is not on a memory file system, where segments
    /// get no zeroed room.
    fn on_disk(dir: &Path) {
        assert!(
            room::worth_zeroing(dir, 64 << 20),
            "{} must be on a disk file system with room to spare",
            dir.display()
        );
    }

    /// The segment's length in the file, and the blocks it holds.
    fn extent(path: &Path) -> (u64, u64) {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).unwrap();
        (meta.len(), meta.blocks())
    }

    #[test]
    fn appends_overwrite_the_zeroed_room_without_growing_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        on_disk(dir.path());
        let mut writer = unrotated_writer(dir.path());
        let path = super::super::segment_path(dir.path(), 1);
        let before = extent(&path);
        assert_eq!(before.0, room::FIRST_ROOM, "the first room is zeroed at creation");
        for seq in 0..100 {
            append(&mut writer, vec![accept(seq, 1000)]);
        }
        assert!(writer.segment.len > 100_000);
        assert_eq!(extent(&path), before, "the appends grew the segment");
    }

    /// A MiB per fdatasync (a hundred packets per request, many requests
    /// per group): zeroing a spare would write more than it saves.
    #[test]
    fn large_fdatasyncs_get_no_spare_and_the_segment_grows_past_its_room() {
        let dir = tempfile::tempdir().unwrap();
        on_disk(dir.path());
        let mut writer = writer_with_segments(dir.path(), 16 << 20);
        for batch in 0..4 {
            let first = batch * 1000;
            append(
                &mut writer,
                (first..first + 1000).map(|seq| accept(seq, 1000)).collect(),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(writer.segment.number, 1, "rotated into a spare");
        assert!(writer.segment.len > 2 * room::FIRST_ROOM);
        assert!(!dir.path().join(room::SPARE_NAME).exists(), "a spare was zeroed");
    }

    #[test]
    fn a_used_up_room_moves_the_writer_into_a_zeroed_spare_and_the_old_segment_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        on_disk(dir.path());
        let segment_bytes = 4 << 20;
        let mut writer = writer_with_segments(dir.path(), segment_bytes);
        let spare = dir.path().join(room::SPARE_NAME);
        let mut seq = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        while writer.segment.number == 1 {
            assert!(Instant::now() < deadline, "no rotation into a spare");
            append(
                &mut writer,
                (seq..seq + 10).map(|seq| accept(seq, 1000)).collect(),
            );
            seq += 10;
            if writer.segment.len >= room::FIRST_ROOM {
                // Past its room the segment grows; the spare comes soon.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        // The old segment ends at its last group; the new one is the spare,
        // a whole segment long, renamed into place.
        let old = std::fs::read(super::super::segment_path(dir.path(), 1)).unwrap();
        let mut at = SEGMENT_MAGIC.len();
        while at < old.len() {
            let (_, body) = decode_group(&old[at..]).unwrap();
            at += GROUP_HEADER_BYTES + body.len();
        }
        assert_eq!(at, old.len());
        assert!(
            (old.len() as u64) < segment_bytes,
            "rotated for its room, not its size"
        );
        let new = super::super::segment_path(dir.path(), 2);
        assert_eq!(extent(&new).0, segment_bytes);
        assert!(std::fs::read(&new).unwrap().starts_with(&SEGMENT_MAGIC));
        assert!(!spare.exists(), "the spare was renamed, not copied");
        // Writing on keeps the spare's length.
        let before = extent(&new);
        append(&mut writer, vec![accept(seq, 1000)]);
        assert_eq!(extent(&new), before);
        drop(writer);
        let recovered =
            super::super::tests::recover_all(dir.path(), super::super::RecoverMode::Strict).unwrap();
        assert_eq!(recovered.in_flight.len() as u64, seq + 1);
        assert_eq!(recovered.torn_tail_bytes, 0);
    }

    /// Bytes of `path` in the page cache, as util-linux's `fincore` reads them.
    #[cfg(target_os = "linux")]
    fn resident_bytes(path: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--bytes", "--noheadings", "--raw", "--output", "RES"])
            .arg(path)
            .output()
            .expect("fincore (util-linux) runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_synced_log_leaves_the_page_cache_once_its_appenders_are_answered() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = unrotated_writer(dir.path());
        let (done, mut answer) = oneshot::channel();
        let records = (0..2000).map(|seq| accept(seq, 1000)).collect();
        writer.commit(vec![Command::Append { records, done }]);
        answer.try_recv().unwrap().unwrap();

        let path = super::super::segment_path(dir.path(), 1);
        let written = std::fs::metadata(&path).unwrap().len();
        assert!(written > 2_000_000, "{written} bytes written");
        // At most the page the synced end falls in stays behind.
        let resident = resident_bytes(&path);
        assert!(
            resident <= 64 * 1024,
            "{resident} of {written} bytes still cached"
        );
    }

    #[test]
    fn a_batch_is_written_in_groups_of_about_group_bytes_each_append_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = unrotated_writer(dir.path());
        // 60 appends of 40 records of about 1 KB: 2.4 MB in one batch.
        let (appends, per_append) = (60u64, 40u64);
        let mut answers = Vec::new();
        let batch = (0..appends)
            .map(|append| {
                let (done, answer) = oneshot::channel();
                answers.push(answer);
                let first = append * per_append;
                let records = (first..first + per_append).map(|seq| accept(seq, 1000)).collect();
                Command::Append { records, done }
            })
            .collect();
        writer.commit(batch);
        for mut answer in answers {
            answer.try_recv().unwrap().unwrap();
        }

        let segment = std::fs::read(super::super::segment_path(dir.path(), 1)).unwrap();
        let mut at = SEGMENT_MAGIC.len();
        let (mut groups, mut next_seq) = (0, 0);
        while at < segment.len() {
            let (header, body) = decode_group(&segment[at..]).unwrap();
            let seqs: Vec<u64> = super::super::format::decode_body(body)
                .unwrap()
                .iter()
                .map(|record| match record {
                    Record::Accept { seq, .. } => *seq,
                    other => panic!("{other:?}"),
                })
                .collect();
            // In order, whole appends only, at most one append past GROUP_BYTES.
            assert_eq!(seqs[0], next_seq);
            assert!(seqs.windows(2).all(|pair| pair[1] == pair[0] + 1));
            assert_eq!(seqs.len() as u64 % per_append, 0, "an append split across groups");
            assert!(
                body.len() < GROUP_BYTES + 50 * 1024,
                "a group of {} bytes",
                body.len()
            );
            // All written before the batch's one fdatasync.
            assert_eq!(header.synced, SEGMENT_MAGIC.len() as u64);
            next_seq += seqs.len() as u64;
            groups += 1;
            at += GROUP_HEADER_BYTES + body.len();
        }
        assert_eq!(next_seq, appends * per_append);
        assert!(groups >= 3, "{groups} groups");
        assert_eq!(writer.segment.synced, segment.len() as u64);
    }
}
