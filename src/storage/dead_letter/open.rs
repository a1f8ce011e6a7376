//! Opening the file: reading our layout into the offset index (a torn
//! tail cut, lines that are not entries quarantined alone), and bringing a
//! file in another layout into ours (see the invariants in [`super`]).

use super::{rewrite, DeadLetterEntry, FileRange, Inner, CLOSE, EMPTY, OPEN};
use crate::storage::atomic_file::{self, sync_dir_of};
use chrono::Utc;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Reads the file in our layout: cuts a torn tail, quarantines lines that
/// are not entries (and anything after the closing `]`); `None` when the
/// file is not in our layout at all.
pub(super) fn index(path: &Path) -> io::Result<Option<Inner>> {
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
    Ok(Some(Inner {
        file,
        starts,
        end,
        tail_unknown: false,
    }))
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

pub(super) fn quarantine_path(path: &Path) -> PathBuf {
    path.with_extension("quarantine.jsonl")
}

/// Rewrites a valid JSON array in another layout into ours, quarantining
/// each element that is not an entry; moves anything that is not a JSON
/// array aside.
pub(super) fn convert_foreign(path: &Path) -> io::Result<()> {
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
