//! The dead letter's tests: appends, pages, selections, removals, and
//! every kind of damage the file can come back with.

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
