//! Start-up replay of the write-ahead log, and what it does with bytes it
//! cannot read.
//!
//! What a crash or a power loss can tear is the write of the commit groups
//! after the last completed fdatasync, and only in the newest segment that
//! holds any (every older one was fdatasynced whole before the next was
//! created). With `fsync: always` that is the groups of the last write
//! (about a MiB each, written one after another before one fdatasync),
//! none acknowledged; with `interval` or `never`, the groups of the window
//! those modes may lose. Such a write can end early, or leave pages of
//! zeros (allocated, never written) before pages that were written.
//!
//! So damage at byte N of a segment is a **torn tail** when the segment is
//! the newest that holds groups, the damaged group's checksum does not hold
//! (a group whose checksum holds but that cannot be read is never a torn
//! write), and no later group says bytes past N were already durable when
//! it was written (its `synced`). Version 1 segments say nothing of the
//! kind: there, damage is a torn tail only when no whole record follows it.
//! A torn tail is copied to `<segment>.torn-at-N` (kept, never deleted),
//! then cut off the segment.
//!
//! A segment can end in **zeroed room**: zeros the writer wrote ahead of
//! its groups (see `room`), never used, or not cut off before a crash.
//! Where every byte from a group's start to the segment's end is zero,
//! nothing was written there; recovery cuts that room off, in any segment.
//! A torn write into room leaves its written part, then zeros: a torn tail
//! whose copy ends at its last written byte.
//!
//! Anything else is **corruption**: [`RecoverMode::Strict`] refuses to
//! start, naming the segment and byte; [`RecoverMode::SkipCorrupt`] copies
//! the damaged bytes to `<segment>.skipped-at-N`, logs an error and goes on
//! with the next whole commit group (record, in version 1).

use super::format::{
    decode_body, decode_group, DecodeError, GroupHeader, Record, GROUP_HEADER_BYTES, SEGMENT_MAGIC,
};
use super::{list_segments, RecoverMode, WalError};
use crate::storage::atomic_file;
use crate::storage::Unfinished;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Packets without an End record, by seq, with their retry counts.
    pub in_flight: BTreeMap<u64, Unfinished>,
    /// The seq after the largest one seen.
    pub next_seq: u64,
    pub records: u64,
    /// Bytes cut off the newest segment as a torn tail.
    pub torn_tail_bytes: u64,
    /// Damage skipped under [`RecoverMode::SkipCorrupt`].
    pub skipped: Vec<Skipped>,
}

/// A damaged part of a segment that [`RecoverMode::SkipCorrupt`] skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub segment: PathBuf,
    pub offset: u64,
    pub bytes: u64,
    pub reason: String,
    /// The copy of the skipped bytes.
    pub kept_at: PathBuf,
}

/// The newest segment's number (0 when there is none): the one being
/// written when the process stopped.
pub fn newest_segment(dir: &Path) -> io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    Ok(list_segments(dir)?.last().map_or(0, |(n, _)| *n))
}

/// Replays every segment numbered `from` to `tail` on top of `state`;
/// `tail` is [`newest_segment`] before the log was reopened.
pub fn recover(
    dir: &Path,
    from: u64,
    tail: u64,
    state: BTreeMap<u64, Unfinished>,
    next_seq: u64,
    mode: RecoverMode,
) -> Result<Recovered, WalError> {
    std::fs::create_dir_all(dir)?;
    let segments = list_segments(dir)?;
    // A crash during start-up can leave newer segments with nothing but
    // their magic: the one that can be torn is the newest holding a group.
    let tail = segments
        .iter()
        .filter(|(n, _)| *n <= tail)
        .rev()
        .find(|(_, path)| holds_groups(path).unwrap_or(true))
        .map_or(tail, |(n, _)| *n);
    let mut replay = Replay {
        report: Recovered {
            in_flight: state,
            next_seq,
            ..Recovered::default()
        },
        mode,
    };
    for (number, path) in segments.iter().filter(|(n, _)| (from..=tail).contains(n)) {
        let bytes = std::fs::read(path)?;
        replay.segment(path, &bytes, *number == tail)?;
        if *number == tail {
            // Durable before anything is written to a newer segment, also
            // when the last run wrote it without fsync.
            File::open(path)?.sync_all()?;
        }
    }
    Ok(replay.report)
}

/// Whether a segment holds anything besides its magic (or a part of it)
/// and zeroed room.
fn holds_groups(path: &Path) -> io::Result<bool> {
    let mut file = File::open(path)?;
    let mut start = Vec::with_capacity(SEGMENT_MAGIC.len() + 1);
    (&mut file)
        .take(SEGMENT_MAGIC.len() as u64 + 1)
        .read_to_end(&mut start)?;
    match layout(&start) {
        None => Ok(false),
        Some((Layout::V1, first)) => Ok(first < start.len()),
        Some((Layout::V2, first)) => {
            if start[first..].iter().any(|b| *b != 0) {
                return Ok(true);
            }
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let read = file.read(&mut chunk)?;
                if read == 0 {
                    return Ok(false);
                }
                if chunk[..read].iter().any(|b| *b != 0) {
                    return Ok(true);
                }
            }
        }
    }
}

/// Where the bytes of a segment end once its zeroed room (all zeros to
/// its end) is left out.
fn written_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |last| last + 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Records, each with its own checksum; no magic.
    V1,
    /// The magic, then commit groups.
    V2,
}

/// The segment's layout and where its first group or record starts; `None`
/// when it holds nothing, or a magic cut short by a crash in its creation.
fn layout(bytes: &[u8]) -> Option<(Layout, usize)> {
    if bytes.starts_with(&SEGMENT_MAGIC) {
        Some((Layout::V2, SEGMENT_MAGIC.len()))
    } else if SEGMENT_MAGIC.starts_with(bytes) {
        None
    } else {
        Some((Layout::V1, 0))
    }
}

/// Why the group or record at some offset cannot be read.
struct Damage {
    reason: String,
    /// Its checksum holds: a whole write that cannot be read, never torn.
    whole: bool,
}

/// The group (V2) or record (V1) at `offset`: its records and the offset
/// after it.
fn read_unit(bytes: &[u8], offset: usize, layout: Layout) -> Result<(Vec<Record>, usize), Damage> {
    let rest = &bytes[offset..];
    match layout {
        Layout::V2 => {
            let (_, body) = decode_group(rest).map_err(|reason| Damage { reason, whole: false })?;
            let records = decode_body(body).map_err(|reason| Damage {
                reason: format!("a commit group whose checksum holds cannot be read: {reason}"),
                whole: true,
            })?;
            Ok((records, offset + GROUP_HEADER_BYTES + body.len()))
        }
        Layout::V1 => match Record::decode_v1(rest) {
            Ok((record, used)) => Ok((vec![record], offset + used)),
            Err(DecodeError::Truncated) => Err(Damage {
                reason: "the segment ends inside a record".into(),
                whole: false,
            }),
            Err(DecodeError::Corrupt(reason)) => Err(Damage { reason, whole: false }),
            Err(DecodeError::Unreadable(reason)) => Err(Damage { reason, whole: true }),
        },
    }
}

/// What the bytes after damage at `at` say about it.
#[derive(Debug, Default)]
struct After {
    /// Where a later write shows the damaged bytes were already durable:
    /// a group whose `synced` is past `at` (or, in version 1, any whole
    /// record).
    durable_witness: Option<usize>,
    /// Where the next whole group (record, in version 1) starts.
    next_whole: Option<usize>,
}

/// Looks at every offset past `at` before `written` (no group or record
/// starts in zeroed room: each starts with a length above zero).
fn look_after(bytes: &[u8], at: usize, written: usize, layout: Layout) -> After {
    let mut after = After::default();
    for offset in at + 1..written {
        if after.durable_witness.is_none() {
            let claims_durable = GroupHeader::decode(&bytes[offset..])
                .is_some_and(|header| header.synced > at as u64 && header.synced <= offset as u64);
            if claims_durable {
                after.durable_witness = Some(offset);
            }
        }
        if after.next_whole.is_none() && read_unit(bytes, offset, layout).is_ok() {
            after.next_whole = Some(offset);
            if layout == Layout::V1 {
                after.durable_witness.get_or_insert(offset);
            }
        }
        if after.durable_witness.is_some() && after.next_whole.is_some() {
            break;
        }
    }
    after
}

struct Replay {
    report: Recovered,
    mode: RecoverMode,
}

impl Replay {
    fn segment(&mut self, path: &Path, bytes: &[u8], is_tail: bool) -> Result<(), WalError> {
        let Some((layout, mut offset)) = layout(bytes) else {
            return Ok(());
        };
        let written = written_end(bytes);
        while offset < bytes.len() {
            let damage = match read_unit(bytes, offset, layout) {
                Ok((records, next)) => {
                    for record in records {
                        self.apply(record);
                    }
                    offset = next;
                    continue;
                }
                Err(damage) => damage,
            };
            if offset >= written {
                return cut_zeroed_room(path, offset);
            }
            let after = look_after(bytes, offset, written, layout);
            if is_tail && !damage.whole && after.durable_witness.is_none() {
                return self.cut_torn_tail(path, &bytes[..written], offset, &damage.reason);
            }
            let reason = match (damage.whole, after.durable_witness) {
                (true, _) => damage.reason,
                (false, Some(witness)) => format!(
                    "{}; what follows at byte {witness} was written after this part was on disk, \
                     so it is damage, not a torn write",
                    damage.reason
                ),
                (false, None) => format!(
                    "{}; this is not the newest segment, and only the newest can end in a torn write",
                    damage.reason
                ),
            };
            let segment = path.display().to_string();
            if self.mode == RecoverMode::Strict {
                return Err(WalError::Corrupt {
                    segment,
                    offset: offset as u64,
                    reason,
                });
            }
            let end = after.next_whole.unwrap_or(bytes.len());
            let kept_at = keep_aside(path, "skipped-at", offset, &bytes[offset..end])?;
            tracing::error!(%segment, offset, bytes = end - offset, kept_at = %kept_at.display(), %reason,
                "skipped a corrupt part of the write-ahead log: the packets recorded in it are lost");
            self.report.skipped.push(Skipped {
                segment: path.to_path_buf(),
                offset: offset as u64,
                bytes: (end - offset) as u64,
                reason,
                kept_at,
            });
            offset = end;
        }
        Ok(())
    }

    /// Copies the bytes from `offset` on next to the segment (`bytes` ends
    /// where its zeroed room starts), then cuts them and the room off it.
    fn cut_torn_tail(
        &mut self,
        path: &Path,
        bytes: &[u8],
        offset: usize,
        reason: &str,
    ) -> Result<(), WalError> {
        let kept_at = keep_aside(path, "torn-at", offset, &bytes[offset..])?;
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(offset as u64)?;
        file.sync_all()?;
        let torn = (bytes.len() - offset) as u64;
        self.report.torn_tail_bytes += torn;
        tracing::warn!(segment = %path.display(), offset, bytes = torn, kept_at = %kept_at.display(), %reason,
            "write-ahead log had a torn tail (a crash while writing what was not yet on disk); \
             cut it off and kept a copy");
        Ok(())
    }

    fn apply(&mut self, record: Record) {
        let report = &mut self.report;
        report.records += 1;
        match record {
            Record::Accept { seq, packet, retries } => {
                report.next_seq = report.next_seq.max(seq + 1);
                report.in_flight.insert(seq, Unfinished { packet, retries });
            }
            Record::Retry { seq, retries } => {
                if let Some(unfinished) = report.in_flight.get_mut(&seq) {
                    unfinished.retries = retries;
                }
            }
            Record::End { seq } => {
                report.in_flight.remove(&seq);
            }
        }
    }
}

/// Cuts the zeroed room at the end of a segment (from `offset` on, room
/// the writer never used) off it. Losing the cut in a crash is harmless:
/// the next recovery reads the same room.
fn cut_zeroed_room(path: &Path, offset: usize) -> Result<(), WalError> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(offset as u64)?;
    Ok(())
}

/// Writes `bytes` durably to `<segment>.<what>-<offset>`, next to the
/// segment; answers the path.
fn keep_aside(segment: &Path, what: &str, offset: usize, bytes: &[u8]) -> io::Result<PathBuf> {
    let mut name = segment.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{what}-{offset}"));
    let path = segment.with_file_name(name);
    atomic_file::write(&path, bytes)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::wal::format::tests::{packet, v1_bytes};
    use crate::storage::wal::tests::{options, recover_all};
    use crate::storage::wal::{segment_path, FsyncMode, Wal};
    use std::ops::Range;

    fn accept(seq: u64) -> Record {
        Record::Accept {
            seq,
            packet: packet(&format!("p{seq}")),
            retries: 0,
        }
    }

    /// Writes one commit group per entry of `groups` (its records' seqs)
    /// with the real writer, then stops it; answers segment 1's path and the
    /// byte range of each group. The segment is left as long as its groups
    /// (no zeroed room), as a segment that could not be zeroed ahead is.
    async fn written(dir: &Path, fsync: FsyncMode, groups: &[&[u64]]) -> (PathBuf, Vec<Range<usize>>) {
        let (path, ranges) = written_with_room(dir, fsync, groups).await;
        let end = ranges.last().map_or(SEGMENT_MAGIC.len(), |last| last.end);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(end as u64)
            .unwrap();
        (path, ranges)
    }

    /// [`written`], with the zeroed room the writer left after the groups.
    async fn written_with_room(
        dir: &Path,
        fsync: FsyncMode,
        groups: &[&[u64]],
    ) -> (PathBuf, Vec<Range<usize>>) {
        let wal = Wal::open(dir, 0, options(fsync)).unwrap();
        for seqs in groups {
            let records: Vec<Record> = seqs.iter().map(|seq| accept(*seq)).collect();
            wal.append_durable(&records).await.unwrap();
        }
        drop(wal);
        let path = segment_path(dir, 1);
        let bytes = std::fs::read(&path).unwrap();
        let mut ranges = Vec::new();
        let mut at = SEGMENT_MAGIC.len();
        while ranges.len() < groups.len() {
            let (_, body) = decode_group(&bytes[at..]).unwrap();
            let end = at + GROUP_HEADER_BYTES + body.len();
            ranges.push(at..end);
            at = end;
        }
        assert!(
            bytes[at..].iter().all(|b| *b == 0),
            "one group per append, then room"
        );
        (path, ranges)
    }

    /// Zeros added to the end of `path` up to `len` bytes, as the writer
    /// leaves room ahead of its groups.
    fn with_room(path: &Path, len: u64) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        assert!(file.metadata().unwrap().len() <= len);
        file.set_len(len).unwrap();
    }

    fn seqs(recovered: &Recovered) -> Vec<u64> {
        recovered.in_flight.keys().copied().collect()
    }

    /// The files next to the segments.
    fn kept(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_none_or(|e| e != "wal"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[tokio::test]
    async fn a_last_group_cut_short_is_cut_off_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2], &[3, 4]]).await;
        let whole = std::fs::read(&path).unwrap();
        let torn = &whole[..whole.len() - 10];
        std::fs::write(&path, torn).unwrap();

        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1, 2], "the torn group is dropped whole");
        assert_eq!(recovered.torn_tail_bytes, (torn.len() - groups[2].start) as u64);
        assert_eq!(std::fs::read(&path).unwrap(), &whole[..groups[2].start]);
        let name = format!("00000000000000000001.wal.torn-at-{}", groups[2].start);
        assert_eq!(kept(dir.path()), [(name, torn[groups[2].start..].to_vec())]);
    }

    /// A power loss during the last group's write: the file grew, but a
    /// page of it (or its end) was never written and reads as zeros, while
    /// pages after it were. Zeros past it, to the end, are room.
    #[tokio::test]
    async fn zeros_in_the_last_group_are_a_torn_write() {
        for zeros in ["a page inside it", "its end", "a page past it"] {
            let dir = tempfile::tempdir().unwrap();
            let seqs_of_last: Vec<u64> = (3..200).collect();
            let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2], &seqs_of_last]).await;
            let mut bytes = std::fs::read(&path).unwrap();
            let last = groups[2].clone();
            assert!(last.len() > 3 * 4096, "the last group spans pages");
            match zeros {
                "a page inside it" => bytes[last.start + 4096..last.start + 8192].fill(0),
                "its end" => bytes[last.end - 4096..].fill(0),
                _ => bytes.extend([0; 4096]),
            }
            std::fs::write(&path, &bytes).unwrap();
            let recovered = recover_all(dir.path(), RecoverMode::Strict)
                .unwrap_or_else(|e| panic!("zeros at {zeros}: {e}"));
            if zeros == "a page past it" {
                // Zeros to the end: read as room, every group whole.
                assert_eq!(seqs(&recovered), (1..200).collect::<Vec<u64>>());
                assert_eq!(recovered.torn_tail_bytes, 0);
            } else {
                assert_eq!(seqs(&recovered), [1, 2], "zeros at {zeros}");
                assert!(recovered.torn_tail_bytes > 0, "zeros at {zeros}");
            }
        }
    }

    #[tokio::test]
    async fn a_damaged_length_before_synced_groups_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2, 3], &[4], &[5]]).await;
        let whole = std::fs::read(&path).unwrap();
        // The length field of the second record of the second group: the
        // group's own length and every record's are under its checksums.
        let body = groups[1].start + GROUP_HEADER_BYTES;
        let (_, first) = Record::decode(&whole[body..]).unwrap();
        let mut damaged = whole.clone();
        damaged[body + first..body + first + 4].copy_from_slice(&0x00f0_0000u32.to_le_bytes());
        std::fs::write(&path, &damaged).unwrap();

        let error = recover_all(dir.path(), RecoverMode::Strict)
            .unwrap_err()
            .to_string();
        assert!(error.contains("00000000000000000001.wal"), "{error}");
        assert!(error.contains(&format!("at byte {}", groups[1].start)), "{error}");
        assert!(
            error.contains(&format!("at byte {} was written after", groups[2].start)),
            "{error}"
        );
        assert!(error.contains("--wal-recover=skip-corrupt"), "{error}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            damaged,
            "a refusal changes nothing"
        );
        assert!(kept(dir.path()).is_empty());

        let skipped = recover_all(dir.path(), RecoverMode::SkipCorrupt).unwrap();
        assert_eq!(seqs(&skipped), [1, 4, 5], "only the damaged group is lost");
        assert_eq!(skipped.torn_tail_bytes, 0);
        let name = format!("00000000000000000001.wal.skipped-at-{}", groups[1].start);
        assert_eq!(kept(dir.path()), [(name, damaged[groups[1].clone()].to_vec())]);
        assert_eq!(
            skipped
                .skipped
                .iter()
                .map(|s| (s.offset, s.bytes))
                .collect::<Vec<_>>(),
            [(groups[1].start as u64, groups[1].len() as u64)]
        );
    }

    /// With `fsync: interval` or `never` the groups after the last fdatasync
    /// can all be torn: damage in one of them, with only such groups after
    /// it, is the window those modes may lose.
    #[tokio::test]
    async fn damage_with_only_unsynced_groups_after_it_is_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let (path, groups) = written(dir.path(), FsyncMode::Never, &[&[1], &[2], &[3]]).await;
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[groups[1].start + GROUP_HEADER_BYTES + 20] ^= 0x55;
        std::fs::write(&path, &bytes).unwrap();
        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1]);
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..groups[1].start]);
    }

    #[tokio::test]
    async fn damage_in_an_older_segment_is_corruption_even_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = written(dir.path(), FsyncMode::Always, &[&[1], &[2]]).await;
        let wal = Wal::open(dir.path(), 1, options(FsyncMode::Always)).unwrap();
        wal.append_durable(&[accept(3)]).await.unwrap();
        drop(wal);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let error = recover_all(dir.path(), RecoverMode::Strict)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("00000000000000000001.wal") && error.contains("not the newest"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_whole_group_that_cannot_be_read_is_refused_even_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = written(dir.path(), FsyncMode::Always, &[&[1]]).await;
        let mut record = vec![0, 0, 0, 0, 1];
        record.extend_from_slice(&2u64.to_le_bytes());
        record.extend_from_slice(b"{not json");
        let len = (record.len() - 4) as u32;
        record[..4].copy_from_slice(&len.to_le_bytes());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend(GroupHeader::for_body(&record, bytes.len() as u64).encode());
        bytes.extend(&record);
        std::fs::write(&path, &bytes).unwrap();
        let error = recover_all(dir.path(), RecoverMode::Strict)
            .unwrap_err()
            .to_string();
        assert!(error.contains("cannot be read"), "{error}");
    }

    #[tokio::test]
    async fn a_newer_segment_with_only_its_magic_leaves_the_torn_tail_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2]]).await;
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        // Two start-ups that crashed before recovering: one segment with
        // its magic, one with part of it.
        std::fs::write(segment_path(dir.path(), 2), SEGMENT_MAGIC).unwrap();
        std::fs::write(segment_path(dir.path(), 3), &SEGMENT_MAGIC[..3]).unwrap();
        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), groups[1].start as u64);
    }

    #[tokio::test]
    async fn zeroed_room_after_the_last_group_is_cut_off_as_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2], &[3, 4]]).await;
        with_room(&path, 1 << 20);

        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1, 2, 3, 4]);
        assert_eq!(recovered.torn_tail_bytes, 0, "room is no torn write");
        assert_eq!(kept(dir.path()), [], "nothing kept aside");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), groups[2].end as u64);
    }

    #[tokio::test]
    async fn the_writer_leaves_its_room_and_recovery_reads_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, groups) = written_with_room(dir.path(), FsyncMode::Always, &[&[1], &[2, 3]]).await;
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            1 << 20,
            "the first room, zeroed ahead"
        );
        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1, 2, 3]);
        assert_eq!(recovered.torn_tail_bytes, 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), groups[1].end as u64);
    }

    /// A crash in the last group's write into room: its first part on
    /// disk, the rest still the zeros written ahead.
    #[tokio::test]
    async fn a_torn_group_in_zeroed_room_is_cut_and_its_copy_ends_at_its_last_written_byte() {
        let dir = tempfile::tempdir().unwrap();
        let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2], &[3, 4]]).await;
        let last = groups[2].clone();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[last.end - 10..].fill(0);
        bytes.resize(1 << 20, 0);
        std::fs::write(&path, &bytes).unwrap();

        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1, 2], "the torn group is dropped whole");
        assert_eq!(recovered.torn_tail_bytes, (last.len() - 10) as u64);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), last.start as u64);
        let name = format!("00000000000000000001.wal.torn-at-{}", last.start);
        assert_eq!(
            kept(dir.path()),
            [(name, bytes[last.start..last.end - 10].to_vec())]
        );
    }

    /// The writer cuts a segment's unused room off when it rotates; a
    /// crash can keep that cut from reaching the disk.
    #[tokio::test]
    async fn zeroed_room_left_in_an_older_segment_is_no_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = written(dir.path(), FsyncMode::Always, &[&[1], &[2]]).await;
        with_room(&path, 256 * 1024);
        let next = Wal::open(dir.path(), 1, options(FsyncMode::Always)).unwrap();
        next.append_durable(&[accept(3)]).await.unwrap();
        drop(next);

        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1, 2, 3]);
        assert_eq!(recovered.torn_tail_bytes, 0);
        assert_eq!(kept(dir.path()), []);
    }

    /// A spare renamed into place as the next segment, then a crash before
    /// anything was written to it: its magic and zeros hold no group, so
    /// the torn tail is still the older segment's.
    #[tokio::test]
    async fn a_newer_segment_of_magic_and_zeros_leaves_the_torn_tail_where_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let (path, groups) = written(dir.path(), FsyncMode::Always, &[&[1], &[2]]).await;
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let mut spare = SEGMENT_MAGIC.to_vec();
        spare.resize(256 * 1024, 0);
        std::fs::write(segment_path(dir.path(), 2), spare).unwrap();

        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), groups[1].start as u64);
    }

    /// Segments written before the commit-group format: records with their
    /// own checksums, no magic.
    #[test]
    fn version_1_segments_are_read_and_their_damage_judged() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        let records = [
            accept(1),
            Record::Retry { seq: 1, retries: 2 },
            accept(2),
            Record::End { seq: 2 },
            accept(3),
        ];
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for record in &records {
            starts.push(bytes.len());
            bytes.extend(v1_bytes(record));
        }
        std::fs::write(&path, &bytes).unwrap();
        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1, 3]);
        assert_eq!(recovered.in_flight[&1].retries, 2);
        assert_eq!((recovered.records, recovered.next_seq), (5, 4));

        // A damaged length in the middle, whole records after it.
        let mut damaged = bytes.clone();
        damaged[starts[2]..starts[2] + 4].copy_from_slice(&0x00f0_0000u32.to_le_bytes());
        std::fs::write(&path, &damaged).unwrap();
        let error = recover_all(dir.path(), RecoverMode::Strict)
            .unwrap_err()
            .to_string();
        assert!(error.contains(&format!("at byte {}", starts[2])), "{error}");
        let skipped = recover_all(dir.path(), RecoverMode::SkipCorrupt).unwrap();
        assert_eq!(
            seqs(&skipped),
            [1, 3],
            "the record with the damaged length is skipped, and End 2 with no Accept"
        );
        assert_eq!(skipped.skipped[0].bytes as usize, starts[3] - starts[2]);

        // The last record cut short: a torn tail, cut and kept.
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let recovered = recover_all(dir.path(), RecoverMode::Strict).unwrap();
        assert_eq!(seqs(&recovered), [1]);
        assert_eq!(std::fs::read(&path).unwrap(), &bytes[..starts[4]]);
        let torn = format!("00000000000000000001.wal.torn-at-{}", starts[4]);
        assert!(kept(dir.path())
            .iter()
            .any(|(name, copy)| *name == torn && copy[..] == bytes[starts[4]..bytes.len() - 4]));
    }
}
