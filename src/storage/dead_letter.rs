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
//! - On open, a torn tail is cut back to the last whole entry and the
//!   array closed again; a file that is not in this
//!   layout but is a valid array (written by hand, or by the original) is
//!   rewritten into it; anything else is moved aside, never deleted.
//! - Removing entries (replay) rewrites the file: temp file, fsync, rename.

use crate::model::LogPacket;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
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

impl DeadLetter {
    /// Opens (or creates) the file, repairing a torn tail.
    pub fn open(path: &Path) -> io::Result<DeadLetter> {
        if !path.exists() {
            write_atomically(path, EMPTY)?;
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

    /// Entries `[offset, offset + limit)` in file order (oldest first).
    pub fn read(&self, offset: usize, limit: usize) -> io::Result<Vec<DeadLetterEntry>> {
        let inner = self.lock();
        let count = inner.starts.len();
        let from = offset.min(count);
        let to = offset.saturating_add(limit).min(count);
        if from == to {
            return Ok(Vec::new());
        }
        let start = inner.starts[from];
        let stop = if to < count { inner.starts[to] } else { inner.end };
        let mut bytes = vec![0; (stop - start) as usize];
        inner.file.read_exact_at(&mut bytes, start)?;
        bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = line.strip_suffix(b",").unwrap_or(line);
                serde_json::from_slice(line).map_err(io::Error::other)
            })
            .collect()
    }

    /// Every entry, oldest first.
    pub fn read_all(&self) -> io::Result<Vec<DeadLetterEntry>> {
        self.read(0, usize::MAX)
    }

    /// Removes the entries `keep` refuses, rewriting the file atomically;
    /// returns the removed ones.
    pub fn remove_where(
        &self,
        remove: impl Fn(&DeadLetterEntry) -> bool,
    ) -> io::Result<Vec<DeadLetterEntry>> {
        let all = self.read_all()?;
        let (removed, kept): (Vec<_>, Vec<_>) = all.into_iter().partition(|e| remove(e));
        if removed.is_empty() {
            return Ok(removed);
        }
        let mut inner = self.lock();
        write_atomically(&self.path, &render(&kept)?)?;
        *inner = index(&self.path)?.ok_or_else(|| io::Error::other("rewritten dead letter is unreadable"))?;
        Ok(removed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads the file in our layout, cutting a torn tail; `None` when the file
/// is not in our layout at all.
fn index(path: &Path) -> io::Result<Option<Inner>> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut reader = BufReader::new(&mut file);
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line)?;
    if line != OPEN {
        return Ok(None);
    }
    let mut position = OPEN.len() as u64;
    let mut starts = Vec::new();
    let mut end = position;
    let mut closed = false;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line)?;
        if read == 0 {
            break;
        }
        let body = line.strip_suffix(b"\n");
        match body {
            Some(b"]") => {
                closed = true;
                if !rest_is_blank(&mut reader)? {
                    return Ok(None);
                }
                break;
            }
            Some(text) => {
                let entry = text.strip_suffix(b",").unwrap_or(text);
                if serde_json::from_slice::<DeadLetterEntry>(entry).is_err() {
                    // Only the last line can be torn; a bad line with more
                    // after it means the file is in another layout.
                    if !rest_is_blank(&mut reader)? {
                        return Ok(None);
                    }
                    break;
                }
                starts.push(position);
                end = position + entry.len() as u64;
                position += read as u64;
            }
            None => break,
        }
    }
    drop(reader);
    if !closed {
        tracing::warn!(file = %path.display(), entries = starts.len(), "dead letter had a torn tail; cut back to the last whole entry");
    }
    // Re-close the array right after the last whole entry; this also drops
    // anything after a "]" line and a stray comma.
    let tail: &[u8] = if starts.is_empty() { b"]\n" } else { CLOSE };
    if starts.is_empty() {
        end = OPEN.len() as u64;
    }
    file.set_len(end)?;
    file.seek(SeekFrom::Start(end))?;
    file.write_all(tail)?;
    file.sync_all()?;
    Ok(Some(Inner { file, starts, end }))
}

fn rest_is_blank(reader: &mut impl BufRead) -> io::Result<bool> {
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest)?;
    Ok(rest.iter().all(u8::is_ascii_whitespace))
}

/// The whole file in our layout, for rewrites.
fn render(entries: &[DeadLetterEntry]) -> io::Result<Vec<u8>> {
    let mut text = OPEN.to_vec();
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            text.extend_from_slice(b",\n");
        }
        text.extend(serde_json::to_vec(entry).map_err(io::Error::other)?);
    }
    text.extend_from_slice(if entries.is_empty() { b"]\n" } else { CLOSE });
    Ok(text)
}

/// Rewrites a valid JSON array of entries in another layout into ours; moves
/// anything unreadable aside.
fn convert_foreign(path: &Path) -> io::Result<()> {
    let mut text = Vec::new();
    File::open(path)?.read_to_end(&mut text)?;
    match serde_json::from_slice::<Vec<DeadLetterEntry>>(&text) {
        Ok(entries) => write_atomically(path, &render(&entries)?),
        Err(e) => {
            let aside = path.with_extension(format!("json.corrupt-{}", Utc::now().format("%Y%m%dT%H%M%SZ")));
            tracing::error!(file = %path.display(), moved_to = %aside.display(), error = %e,
                "dead letter is not a JSON array of entries; moved aside and started a new one");
            std::fs::rename(path, &aside)?;
            write_atomically(path, EMPTY)
        }
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new
/// one: temp file, fsync, rename, fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let temp = super::temp_file::unique_path(path);
    {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
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
        assert_eq!(ids(&dl.read(1, 5).unwrap()), ["b", "c"]);
        assert_eq!(ids(&dl.read(0, 1).unwrap()), ["a"]);
        assert!(dl.read(7, 1).unwrap().is_empty());
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
        dl.append(vec![failed("a"), failed("b"), failed("c")]).unwrap();
        let removed = dl.remove_where(|e| e.packet.id != "b").unwrap();
        assert_eq!(ids(&removed), ["a", "c"]);
        assert_eq!(ids(&parse(&path)), ["b"]);
        dl.append(vec![failed("d")]).unwrap();
        assert_eq!(ids(&parse(&path)), ["b", "d"]);
        dl.remove_where(|_| true).unwrap();
        assert!(parse(&path).is_empty());
        dl.append(vec![failed("e")]).unwrap();
        assert_eq!(ids(&parse(&path)), ["e"]);
    }
}
