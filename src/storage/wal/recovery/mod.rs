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
mod tests;
