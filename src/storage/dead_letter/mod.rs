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

use super::atomic_file::{self, sync_dir_of, AtomicFile};
use crate::model::LogPacket;
use crate::sync::LockUnpoisoned;
use chrono::{DateTime, Utc};
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
}

impl Inner {
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
        inner.file.write_all_at(&chunk, inner.end)?;
        inner.file.sync_data()?;
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
    Ok(Some(Inner { file, starts, end }))
}

/// Reads the file in our layout: cuts a torn tail, quarantines lines that
/// are not entries (and anything after the closing `]`); `None` when the
/// file is not in our layout at all.
fn index(path: &Path) -> io::Result<Option<Inner>> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let length = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(
        64 * 1024,
        FileRange {
            file: &file,
            position: 0,
            end: length,
        },
    );
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line != OPEN {
        return Ok(None);
    }
    let mut position = OPEN.len() as u64;
    // Each entry's line: where it starts and how long it is (no separator).
    let mut spans: Vec<(u64, u64)> = Vec::new();
    let mut end = position;
    // Lines that are not entries: (offset, text, reason); the last one is a
    // torn tail when nothing but blanks follows it and the array is open.
    let mut bad: Vec<(u64, Vec<u8>, String)> = Vec::new();
    let mut closed = false;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text == b"]" {
            closed = true;
            let mut rest = Vec::new();
            reader.read_to_end(&mut rest)?;
            if !rest.iter().all(u8::is_ascii_whitespace) {
                bad.push((position + read as u64, rest, "text after the closing ]".into()));
            }
            break;
        }
        let entry = text.strip_suffix(b",").unwrap_or(text);
        if !entry.iter().all(u8::is_ascii_whitespace) {
            match serde_json::from_slice::<DeadLetterEntry>(entry) {
                Ok(_) => {
                    spans.push((position, entry.len() as u64));
                    end = position + entry.len() as u64;
                }
                Err(e) => bad.push((position, entry.to_vec(), e.to_string())),
            }
        }
        position += read as u64;
    }
    drop(reader);
    let torn = !closed && bad.last().is_some_and(|(offset, _, _)| *offset >= end);
    let torn_tail = if torn { bad.pop() } else { None };
    // Lines that are not entries in a file that is a whole JSON array: it
    // is in another layout (pretty-printed, say), read element by element.
    if !bad.is_empty() && is_json_array(path)? {
        return Ok(None);
    }
    if let Some((offset, _, reason)) = &torn_tail {
        tracing::warn!(file = %path.display(), entries = spans.len(), offset, %reason,
            "dead letter had a torn tail (an append cut by a crash); cut back to the last whole entry");
    }
    quarantine(
        path,
        torn_tail
            .iter()
            .chain(&bad)
            .map(|(_, text, reason)| (text.as_slice(), reason.as_str())),
    )?;
    if !bad.is_empty() {
        tracing::error!(file = %path.display(), lines = bad.len(), kept = spans.len(),
            quarantine = %quarantine_path(path).display(),
            "dead-letter lines that are not entries were quarantined; every other entry is kept");
    }
    // Entries one `,\n` apart, as appends leave them, are indexed in place;
    // anything else (a line quarantined between them, blank lines) is
    // written anew.
    let in_place = spans
        .windows(2)
        .all(|pair| pair[1].0 == pair[0].0 + pair[0].1 + 2);
    if !bad.is_empty() || !in_place {
        let mut buffer = Vec::new();
        return rewrite(path, |keep| {
            for &(start, length) in &spans {
                buffer.resize(length as usize, 0);
                file.read_exact_at(&mut buffer, start)?;
                keep(&buffer)?;
            }
            Ok(true)
        });
    }
    let starts: Vec<u64> = spans.iter().map(|&(start, _)| start).collect();
    // Re-close the array right after the last whole entry; this also drops
    // a stray comma and a cut tail.
    let tail: &[u8] = if starts.is_empty() { b"]\n" } else { CLOSE };
    if starts.is_empty() {
        end = OPEN.len() as u64;
    }
    if length != end + tail.len() as u64 {
        file.set_len(end)?;
        file.write_all_at(tail, end)?;
        file.sync_all()?;
    }
    Ok(Some(Inner { file, starts, end }))
}

/// Appends what cannot be read as an entry to the quarantine file, durably,
/// each as `{"quarantined_at", "reason", "text"}` on its own line.
fn quarantine<'a>(path: &Path, pieces: impl Iterator<Item = (&'a [u8], &'a str)>) -> io::Result<()> {
    let now = Utc::now();
    let mut text = Vec::new();
    for (piece, reason) in pieces {
        let line = serde_json::json!({
            "quarantined_at": now,
            "reason": reason,
            "text": String::from_utf8_lossy(piece),
        });
        serde_json::to_writer(&mut text, &line).map_err(io::Error::other)?;
        text.push(b'\n');
    }
    if text.is_empty() {
        return Ok(());
    }
    let target = quarantine_path(path);
    let mut file = OpenOptions::new().create(true).append(true).open(&target)?;
    file.write_all(&text)?;
    file.sync_all()?;
    sync_dir_of(&target)
}

fn quarantine_path(path: &Path) -> PathBuf {
    path.with_extension("quarantine.jsonl")
}

/// Rewrites a valid JSON array in another layout into ours, quarantining
/// each element that is not an entry; moves anything that is not a JSON
/// array aside.
fn convert_foreign(path: &Path) -> io::Result<()> {
    let mut text = Vec::new();
    File::open(path)?.read_to_end(&mut text)?;
    match serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&text) {
        Ok(elements) => {
            let mut bad = Vec::new();
            let mut entries = Vec::new();
            for element in elements {
                match serde_json::from_str::<DeadLetterEntry>(element.get()) {
                    Ok(entry) => entries.push(serde_json::to_vec(&entry).map_err(io::Error::other)?),
                    Err(e) => bad.push((compact(element.get()), e.to_string())),
                }
            }
            if !bad.is_empty() {
                tracing::error!(file = %path.display(), elements = bad.len(), kept = entries.len(),
                    quarantine = %quarantine_path(path).display(),
                    "dead-letter elements that are not entries were quarantined; every other entry is kept");
            }
            quarantine(
                path,
                bad.iter()
                    .map(|(text, reason)| (text.as_slice(), reason.as_str())),
            )?;
            rewrite(path, |keep| {
                for entry in &entries {
                    keep(entry)?;
                }
                Ok(true)
            })
            .map(drop)
        }
        Err(e) => {
            let aside = path.with_extension(format!("json.corrupt-{}", Utc::now().format("%Y%m%dT%H%M%SZ")));
            tracing::error!(file = %path.display(), moved_to = %aside.display(), error = %e,
                "dead letter is not a JSON array; moved aside and started a new one");
            std::fs::rename(path, &aside)?;
            atomic_file::write(path, EMPTY)
        }
    }
}

fn is_json_array(path: &Path) -> io::Result<bool> {
    let text = std::fs::read(path)?;
    Ok(serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(&text).is_ok())
}

/// A JSON text on one line (a pretty-printed element of a foreign file).
fn compact(text: &str) -> Vec<u8> {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|value| serde_json::to_vec(&value))
        .unwrap_or_else(|_| text.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, LogMessage};

    fn failed(id: &str) -> (LogPacket, String) {
        let e = entry(id);
        (e.packet, e.final_error)
    }

    fn entry(id: &str) -> DeadLetterEntry {
        DeadLetterEntry {
            packet: LogPacket {
                id: id.into(),
                messages: vec![LogMessage {
                    level: Level::Error,
                    message: "line one\nline two".into(),
                    source: "api".into(),
                    timestamp: Utc::now(),
                    metadata: None,
                }],
                retry_count: 3,
            },
            final_error: "analyzer crashed during processing".into(),
            failed_at: Utc::now(),
        }
    }

    fn ids(entries: &[DeadLetterEntry]) -> Vec<String> {
        entries.iter().map(|e| e.packet.id.clone()).collect()
    }

    impl DeadLetter {
        fn read_all(&self) -> io::Result<Vec<DeadLetterEntry>> {
            let room = Room {
                packets: usize::MAX,
                bytes: usize::MAX,
            };
            match self.select(None, room)? {
                Selection::Chosen(entries) => Ok(entries),
                Selection::NoRoom { .. } => unreachable!("unbounded room"),
            }
        }
    }

    /// A page without a byte bound, parsed.
    fn page(dl: &DeadLetter, offset: Option<usize>, limit: usize) -> Vec<DeadLetterEntry> {
        let page = dl
            .page(Window {
                offset,
                limit,
                max_bytes: usize::MAX,
            })
            .unwrap();
        let entries: Vec<DeadLetterEntry> = serde_json::from_str(&page.json).unwrap();
        assert_eq!(entries.len(), page.count);
        entries
    }

    fn keys(entries: &[DeadLetterEntry]) -> HashSet<EntryKey> {
        entries.iter().map(DeadLetterEntry::key).collect()
    }

    fn parse(path: &Path) -> Vec<DeadLetterEntry> {
        serde_json::from_slice(&std::fs::read(path).unwrap()).expect("the file is always a valid JSON array")
    }

    #[test]
    fn appends_keep_the_file_a_valid_array() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        let dl = DeadLetter::open(&path).unwrap();
        assert!(parse(&path).is_empty());
        dl.append(vec![failed("a")]).unwrap();
        assert_eq!(ids(&parse(&path)), ["a"]);
        dl.append(vec![failed("b"), failed("c")]).unwrap();
        assert_eq!(ids(&parse(&path)), ["a", "b", "c"]);
        assert_eq!(ids(&page(&dl, Some(1), 5)), ["b", "c"]);
        assert_eq!(ids(&page(&dl, Some(0), 1)), ["a"]);
        assert_eq!(ids(&page(&dl, None, 2)), ["b", "c"]);
        assert!(page(&dl, Some(7), 1).is_empty());
        assert_eq!(parse(&path)[0].packet.retry_count, 3);
    }

    #[test]
    fn an_append_writes_only_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        let dl = DeadLetter::open(&path).unwrap();
        for i in 0..200 {
            dl.append(vec![failed(&format!("p{i}"))]).unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        dl.append(vec![failed("last")]).unwrap();
        let after = std::fs::read(&path).unwrap();
        let tail = CLOSE.len();
        assert_eq!(
            &after[..before.len() - tail],
            &before[..before.len() - tail],
            "earlier bytes untouched"
        );
    }

    #[test]
    fn reopening_keeps_every_entry_and_repairs_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        DeadLetter::open(&path)
            .unwrap()
            .append(vec![failed("a"), failed("b")])
            .unwrap();
        assert_eq!(DeadLetter::open(&path).unwrap().len(), 2);
        // Simulate power loss in the middle of appending "c".
        let mut text = std::fs::read(&path).unwrap();
        text.truncate(text.len() - CLOSE.len());
        text.extend_from_slice(b",\n{\"packet\":{\"id\":\"c\",\"mess");
        std::fs::write(&path, &text).unwrap();
        let dl = DeadLetter::open(&path).unwrap();
        assert_eq!(ids(&parse(&path)), ["a", "b"]);
        dl.append(vec![failed("d")]).unwrap();
        assert_eq!(ids(&parse(&path)), ["a", "b", "d"]);
    }

    #[test]
    fn a_pretty_printed_array_is_converted_and_garbage_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        std::fs::write(&path, serde_json::to_string_pretty(&vec![entry("x")]).unwrap()).unwrap();
        let dl = DeadLetter::open(&path).unwrap();
        assert_eq!(ids(&dl.read_all().unwrap()), ["x"]);
        drop(dl);
        std::fs::write(&path, "not json").unwrap();
        let dl = DeadLetter::open(&path).unwrap();
        assert!(dl.is_empty());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read_to_string(aside[0].path()).unwrap(), "not json");
    }

    #[test]
    fn removing_entries_rewrites_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        let dl = DeadLetter::open(&path).unwrap();
        let written = dl.append(vec![failed("a"), failed("b"), failed("c")]).unwrap();
        let removed = dl
            .remove(&keys(&[written[0].clone(), written[2].clone()]))
            .unwrap();
        assert_eq!(removed, 2);
        assert_eq!(ids(&parse(&path)), ["b"]);
        dl.append(vec![failed("d")]).unwrap();
        assert_eq!(ids(&parse(&path)), ["b", "d"]);
        assert_eq!(dl.remove(&keys(&dl.read_all().unwrap())).unwrap(), 2);
        assert!(parse(&path).is_empty());
        dl.append(vec![failed("e")]).unwrap();
        assert_eq!(ids(&parse(&path)), ["e"]);
        assert_eq!(ids(&DeadLetter::open(&path).unwrap().read_all().unwrap()), ["e"]);
    }

    #[test]
    fn a_removal_keeps_what_was_appended_after_the_selection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        let dl = DeadLetter::open(&path).unwrap();
        dl.append(vec![failed("a"), failed("b")]).unwrap();
        let Selection::Chosen(chosen) = dl
            .select(
                None,
                Room {
                    packets: 10,
                    bytes: 1 << 20,
                },
            )
            .unwrap()
        else {
            panic!("room for two");
        };
        // The same id failing again meanwhile is a new entry: it stays.
        dl.append(vec![failed("a"), failed("c")]).unwrap();
        assert_eq!(dl.remove(&keys(&chosen)).unwrap(), 2);
        assert_eq!(ids(&parse(&path)), ["a", "c"]);
        assert_eq!(dl.len(), 2);
    }

    #[test]
    fn a_selection_by_id_stops_past_its_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        let dl = DeadLetter::open(&path).unwrap();
        dl.append((0..5).map(|i| failed(&format!("p{i}"))).collect())
            .unwrap();
        let wanted: HashSet<String> = ["p1", "p3", "ghost"].iter().map(|s| s.to_string()).collect();
        let room = Room {
            packets: 2,
            bytes: 1 << 20,
        };
        let Selection::Chosen(chosen) = dl.select(Some(&wanted), room).unwrap() else {
            panic!("two fit");
        };
        assert_eq!(ids(&chosen), ["p1", "p3"]);
        let room = Room {
            packets: 1,
            bytes: 1 << 20,
        };
        assert!(matches!(
            dl.select(Some(&wanted), room).unwrap(),
            Selection::NoRoom { matched: 2 }
        ));
        let room = Room {
            packets: 5,
            bytes: 10,
        };
        assert!(matches!(
            dl.select(None, room).unwrap(),
            Selection::NoRoom { matched: 1 }
        ));
    }

    #[test]
    fn a_page_stops_at_its_byte_bound_with_one_entry_at_least() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        let dl = DeadLetter::open(&path).unwrap();
        dl.append((0..10).map(|i| failed(&format!("p{i}"))).collect())
            .unwrap();
        let one = serde_json::to_vec(&dl.read_all().unwrap()[0]).unwrap().len();
        let bounded = |offset, max_bytes| {
            let page = dl
                .page(Window {
                    offset,
                    limit: 10,
                    max_bytes,
                })
                .unwrap();
            let entries: Vec<DeadLetterEntry> = serde_json::from_str(&page.json).unwrap();
            (page.offset, ids(&entries))
        };
        assert_eq!(
            bounded(Some(2), one * 3 + 4),
            (2, vec!["p2".into(), "p3".into(), "p4".into()])
        );
        assert_eq!(bounded(None, one * 2 + 2), (8, vec!["p8".into(), "p9".into()]));
        assert_eq!(bounded(Some(0), 1), (0, vec!["p0".into()]));
        assert_eq!(bounded(None, 1), (9, vec!["p9".into()]));
    }

    #[test]
    fn a_bad_line_is_quarantined_alone_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        DeadLetter::open(&path)
            .unwrap()
            .append(vec![failed("a"), failed("b"), failed("c")])
            .unwrap();
        let text = String::from_utf8(std::fs::read(&path).unwrap()).unwrap();
        let damaged: Vec<String> = text
            .lines()
            .map(|line| {
                if line.contains("\"b\"") {
                    "{\"packet\": \"damaged\"},".to_string()
                } else {
                    line.to_string()
                }
            })
            .collect();
        std::fs::write(&path, damaged.join("\n") + "\n").unwrap();
        let dl = DeadLetter::open(&path).unwrap();
        assert_eq!(ids(&dl.read_all().unwrap()), ["a", "c"]);
        assert_eq!(ids(&parse(&path)), ["a", "c"]);
        let quarantined = std::fs::read_to_string(dl.quarantine_path()).unwrap();
        assert_eq!(quarantined.lines().count(), 1);
        assert!(quarantined.contains("damaged"));
        dl.append(vec![failed("d")]).unwrap();
        assert_eq!(ids(&parse(&path)), ["a", "c", "d"]);
    }

    #[test]
    fn level_aliases_in_a_foreign_file_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("failed_packets.json");
        let mut entry = serde_json::to_value(entry("w")).unwrap();
        entry["packet"]["messages"][0]["level"] = "warn".into();
        std::fs::write(&path, serde_json::to_string_pretty(&vec![entry]).unwrap()).unwrap();
        let dl = DeadLetter::open(&path).unwrap();
        assert_eq!(dl.read_all().unwrap()[0].packet.messages[0].level, Level::Warning);
        assert!(!dl.quarantine_path().exists());
    }
}
