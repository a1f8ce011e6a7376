//! `failed_packets.json`: the packets that could not be delivered.
//!
//! The file is one JSON array, in the original service's shape, with one
//! entry per line so that an append costs the entry, not the file:
//!
//! ```text
//! [\n
//! {"packet":{...},"final_error":"...","failed_at":"..."},\n
//! {"packet":{...},"final_error":"...","failed_at":"..."}\n
//! ]\n
//! ```
//!
//! Invariants:
//! - Every entry is compact JSON on its own line (JSON escapes newlines in
//!   strings, so an entry never spans lines); entries are oldest first.
//! - The file ends with `\n]\n`. An append is one positioned write that
//!   replaces that tail with `,\n<entry>\n]\n` (or `<entry>\n]\n` when empty)
//!   followed by an fsync. A write that stays within one page is whole or
//!   absent whatever stops the process; a longer one can be cut between
//!   two pages by SIGKILL (Linux stops a write between pages for a fatal
//!   signal) or by power loss, leaving a torn last line. Its packets are
//!   still in the write-ahead log (their End records follow the append),
//!   so the next start dead-letters them again.
//! - Every read and write of the file holds one lock from its first byte
//!   to its last: a removal (replay) reads and rewrites the file under it,
//!   so an entry appended meanwhile is never lost to a rewrite from an
//!   older read. Reads go through the index of entry offsets and parse
//!   only what they answer: a page is the file's own text, bounded in
//!   bytes; a selection by id parses each line's id and `failed_at` and
//!   only the chosen entries in full.
//! - On open, a torn tail is cut back to the last whole entry and the
//!   array closed again. A line that is not an entry, anywhere else, is
//!   quarantined alone (appended, with the reason, to
//!   `failed_packets.quarantine.jsonl`) and the other entries are kept. A
//!   file in another layout that is a JSON array (written by hand, or by
//!   the original, pretty-printed) is rewritten into this one, its entries
//!   read leniently (a level alias such as `WARN` is taken) and each
//!   element that is not an entry quarantined alone; a file that is not a
//!   JSON array at all is moved aside whole, never deleted.
//! - Removing entries (replay) rewrites the file: temp file, fsync, rename.

mod open;
#[cfg(test)]
mod tests;

use super::atomic_file::{self, AtomicFile};
use crate::model::LogPacket;
use crate::sync::LockUnpoisoned;
use chrono::{DateTime, Utc};
use open::{convert_foreign, index, quarantine_path};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const OPEN: &[u8] = b"[\n";
const CLOSE: &[u8] = b"\n]\n";
const EMPTY: &[u8] = b"[\n]\n";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterEntry {
    pub packet: LogPacket,
    pub final_error: String,
    pub failed_at: DateTime<Utc>,
}

impl DeadLetterEntry {
    pub fn key(&self) -> EntryKey {
        EntryKey {
            id: self.packet.id.clone(),
            failed_at: self.failed_at,
        }
    }
}

/// What names one entry: its packet's id and when it failed (a packet that
/// fails again after a replay comes back as a new entry, with a new time).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntryKey {
    pub id: String,
    pub failed_at: DateTime<Utc>,
}

/// The part of an entry's line that names it, parsed without the messages.
#[derive(Deserialize)]
struct KeyView<'a> {
    #[serde(borrow)]
    packet: IdView<'a>,
    failed_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct IdView<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// A page of entries as the file holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Entries in the file.
    pub total: usize,
    /// Index of the first entry of the page.
    pub offset: usize,
    /// Entries in the page.
    pub count: usize,
    /// The page as a JSON array: the entries' own text, joined.
    pub json: String,
}

/// Where a page's window lies: `limit` entries from `offset`, or the
/// newest `limit` when there is no offset.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub offset: Option<usize>,
    pub limit: usize,
    /// The page's text stops before it would pass this many bytes (it holds
    /// one entry at least): from its end when the window starts at
    /// `offset`, from its start when it ends with the newest entry.
    pub max_bytes: usize,
}

/// How much a selection may take: the room in flight for it.
#[derive(Debug, Clone, Copy)]
pub struct Room {
    pub packets: usize,
    /// Bytes of the entries' text.
    pub bytes: usize,
}

/// The entries a selection chose, oldest first, or that there was no room.
#[derive(Debug)]
pub enum Selection {
    Chosen(Vec<DeadLetterEntry>),
    /// More entries matched than the room allows (counted up to the first
    /// one past it).
    NoRoom {
        matched: usize,
    },
}

/// The dead-letter file and an index of where each entry starts.
pub struct DeadLetter {
    path: PathBuf,
    /// Appends, reads and rewrites are short and need one order: a std
    /// Mutex, taken inside `spawn_blocking` by async callers.
    inner: Mutex<Inner>,
}

struct Inner {
    file: File,
    /// Byte offset of each entry's line, oldest first.
    starts: Vec<u64>,
    /// Byte offset just after the last entry (where `\n]\n` begins), or of
    /// the `]` line when there is none.
    end: u64,
    /// A failed append left bytes past `end` that could not be cut back
    /// yet; the next append that succeeds cuts the file after its tail.
    tail_unknown: bool,
}

impl Inner {
    /// After a failed append (a full disk, an I/O error), puts the tail
    /// back at `end` and cuts what the write left past it, so the file is
    /// the same array as before; when even that fails, the next append
    /// that succeeds does it.
    fn restore_tail(&mut self) {
        let tail: &[u8] = if self.starts.is_empty() { b"]\n" } else { CLOSE };
        let restored = self
            .file
            .write_all_at(tail, self.end)
            .and_then(|()| self.file.set_len(self.end + tail.len() as u64))
            .and_then(|()| self.file.sync_data());
        if let Err(error) = restored {
            tracing::warn!(%error, "the dead letter's tail could not be restored after a failed append; the next append restores it");
            self.tail_unknown = true;
        }
    }

    /// Where entry `i`'s text ends (before its separator or the tail).
    fn entry_end(&self, i: usize) -> u64 {
        match self.starts.get(i + 1) {
            Some(next) => next - 2,
            None => self.end,
        }
    }

    /// Reads entries `[from, to)` line by line.
    fn lines(&self, from: usize, to: usize) -> Lines<'_> {
        let (start, stop) = if from < to {
            (self.starts[from], self.entry_end(to - 1))
        } else {
            (0, 0)
        };
        Lines {
            reader: BufReader::with_capacity(
                64 * 1024,
                FileRange {
                    file: &self.file,
                    position: start,
                    end: stop,
                },
            ),
            line: Vec::new(),
        }
    }
}

/// A byte range of a file, read with positioned reads.
struct FileRange<'a> {
    file: &'a File,
    position: u64,
    end: u64,
}

impl Read for FileRange<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = (self.end - self.position).min(buf.len() as u64) as usize;
        if left == 0 {
            return Ok(0);
        }
        let read = self.file.read_at(&mut buf[..left], self.position)?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "dead letter shorter than its index",
            ));
        }
        self.position += read as u64;
        Ok(read)
    }
}

/// The entries' lines of a range, without newline and separator.
struct Lines<'a> {
    reader: BufReader<FileRange<'a>>,
    line: Vec<u8>,
}

impl Lines<'_> {
    fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Ok(None);
        }
        let text = self.line.strip_suffix(b"\n").unwrap_or(&self.line);
        Ok(Some(text.strip_suffix(b",").unwrap_or(text)))
    }
}

impl DeadLetter {
    /// Opens (or creates) the file, repairing a torn tail and quarantining
    /// what is not an entry.
    pub fn open(path: &Path) -> io::Result<DeadLetter> {
        if !path.exists() {
            atomic_file::write(path, EMPTY)?;
        }
        let inner = match index(path)? {
            Some(inner) => inner,
            None => {
                convert_foreign(path)?;
                index(path)?.ok_or_else(|| io::Error::other("cannot read the rewritten dead letter"))?
            }
        };
        Ok(DeadLetter {
            path: path.to_path_buf(),
            inner: Mutex::new(inner),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where entries that cannot be read are kept, one JSON object a line.
    pub fn quarantine_path(&self) -> PathBuf {
        quarantine_path(&self.path)
    }

    pub fn len(&self) -> usize {
        self.lock().starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends packets that failed for good, durably, in one write; each is
    /// stamped `failed_at` under the file's lock, so the file stays in
    /// `failed_at` order. Answers the entries as written.
    pub fn append(&self, failed: Vec<(LogPacket, String)>) -> io::Result<Vec<DeadLetterEntry>> {
        if failed.is_empty() {
            return Ok(Vec::new());
        }
        let mut inner = self.lock();
        let failed_at = Utc::now();
        let entries: Vec<DeadLetterEntry> = failed
            .into_iter()
            .map(|(packet, final_error)| DeadLetterEntry {
                packet,
                final_error,
                failed_at,
            })
            .collect();
        let mut chunk = Vec::new();
        let mut starts = Vec::with_capacity(entries.len());
        let mut position = inner.end;
        for entry in &entries {
            let separator: &[u8] = if inner.starts.is_empty() && starts.is_empty() {
                b""
            } else {
                b",\n"
            };
            chunk.extend_from_slice(separator);
            position += separator.len() as u64;
            starts.push(position);
            let line = serde_json::to_vec(entry).map_err(io::Error::other)?;
            position += line.len() as u64;
            chunk.extend_from_slice(&line);
        }
        let new_end = position;
        chunk.extend_from_slice(CLOSE);
        // One positioned write over the old "]" tail (see the module doc for
        // what a kill in the middle of it leaves).
        let written = inner.file.write_all_at(&chunk, inner.end).and_then(|()| {
            if inner.tail_unknown {
                inner.file.set_len(new_end + CLOSE.len() as u64)?;
            }
            inner.file.sync_data()
        });
        if let Err(error) = written {
            inner.restore_tail();
            return Err(error);
        }
        inner.tail_unknown = false;
        inner.end = new_end;
        inner.starts.extend(starts);
        Ok(entries)
    }

    /// A page of entries (oldest first), as the file's own text.
    pub fn page(&self, window: Window) -> io::Result<Page> {
        let inner = self.lock();
        let total = inner.starts.len();
        let size = |from: usize, to: usize| -> u64 {
            if from >= to {
                0
            } else {
                inner.entry_end(to - 1) - inner.starts[from]
            }
        };
        let budget = window.max_bytes as u64;
        let (from, to) = match window.offset {
            Some(offset) => {
                let from = offset.min(total);
                let mut to = offset.saturating_add(window.limit).min(total);
                while to > from + 1 && size(from, to) > budget {
                    to -= 1;
                }
                (from, to)
            }
            None => {
                let mut from = total.saturating_sub(window.limit);
                while from + 1 < total && size(from, total) > budget {
                    from += 1;
                }
                (from, total)
            }
        };
        let mut json = String::from("[");
        let mut lines = inner.lines(from, to);
        let mut count = 0;
        while let Some(line) = lines.next_line()? {
            if count > 0 {
                json.push(',');
            }
            json.push_str(std::str::from_utf8(line).map_err(io::Error::other)?);
            count += 1;
        }
        json.push(']');
        Ok(Page {
            total,
            offset: from,
            count,
            json,
        })
    }

    /// The entries whose packet id is in `ids` (every entry when `None`),
    /// oldest first, unless more match than `room` holds: then it stops
    /// reading at the first one past it.
    pub fn select(&self, ids: Option<&HashSet<String>>, room: Room) -> io::Result<Selection> {
        let inner = self.lock();
        let mut chosen = Vec::new();
        let mut bytes = 0;
        let mut lines = inner.lines(0, inner.starts.len());
        while let Some(line) = lines.next_line()? {
            if let Some(ids) = ids {
                let key: KeyView = serde_json::from_slice(line).map_err(io::Error::other)?;
                if !ids.contains(key.packet.id.as_ref()) {
                    continue;
                }
            }
            bytes += line.len();
            if chosen.len() == room.packets || bytes > room.bytes {
                return Ok(Selection::NoRoom {
                    matched: chosen.len() + 1,
                });
            }
            chosen.push(serde_json::from_slice(line).map_err(io::Error::other)?);
        }
        Ok(Selection::Chosen(chosen))
    }

    /// Takes the entries named by `keys` out of the file, rewriting it
    /// atomically from its current text; answers how many left.
    pub fn remove(&self, keys: &HashSet<EntryKey>) -> io::Result<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut inner = self.lock();
        let mut removed = 0;
        let rewritten = {
            let mut lines = inner.lines(0, inner.starts.len());
            rewrite(&self.path, |keep| {
                while let Some(line) = lines.next_line()? {
                    let key: KeyView = serde_json::from_slice(line).map_err(io::Error::other)?;
                    let named = EntryKey {
                        id: key.packet.id.into_owned(),
                        failed_at: key.failed_at,
                    };
                    if keys.contains(&named) {
                        removed += 1;
                    } else {
                        keep(line)?;
                    }
                }
                Ok(removed > 0)
            })?
        };
        if let Some(rewritten) = rewritten {
            *inner = rewritten;
        }
        Ok(removed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock_unpoisoned()
    }
}

/// Writes a new file in our layout from the lines `fill` hands to `keep`,
/// and renames it over `path` when `fill` answers true (otherwise the new
/// file is dropped); answers the new file's index when it replaced the old.
fn rewrite(
    path: &Path,
    fill: impl FnOnce(&mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<bool>,
) -> io::Result<Option<Inner>> {
    let mut out = AtomicFile::create(path)?;
    out.write_all(OPEN)?;
    let mut position = OPEN.len() as u64;
    let mut starts = Vec::new();
    let mut keep = |line: &[u8]| -> io::Result<()> {
        if !starts.is_empty() {
            out.write_all(b",\n")?;
            position += 2;
        }
        starts.push(position);
        out.write_all(line)?;
        position += line.len() as u64;
        Ok(())
    };
    // Not replaced: the new file is dropped, and with it its temp file.
    if !fill(&mut keep)? {
        return Ok(None);
    }
    out.write_all(if starts.is_empty() { b"]\n" } else { CLOSE })?;
    let end = if starts.is_empty() {
        OPEN.len() as u64
    } else {
        position
    };
    out.commit()?;
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    Ok(Some(Inner {
        file,
        starts,
        end,
        tail_unknown: false,
    }))
}
