//! What the distributor and the reference analyzers leave on disk, read
//! back: the checkpoint, the dead letter, the analyzers' record files.

use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// Reads `state.json.gz` as JSON.
pub(crate) fn read_checkpoint(data_dir: &Path) -> Value {
    let file = std::fs::File::open(data_dir.join("state.json.gz")).expect("state.json.gz exists");
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("state.json.gz is gzip");
    serde_json::from_str(&text).expect("state.json.gz holds JSON")
}

/// The entries of `failed_packets.json`, which must parse as a JSON array
/// whenever it exists; no file is no entries.
pub(crate) fn read_dead_letter_file(path: &Path) -> Result<Vec<Value>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_slice::<Vec<Value>>(&bytes).map_err(|e| {
        let text = String::from_utf8_lossy(&bytes);
        format!(
            "{} is not a JSON array: {e}; its last bytes: {:?}",
            path.display(),
            &text[text.len().saturating_sub(300)..]
        )
    })
}

/// The packet ids of dead-letter entries.
pub(crate) fn dead_letter_ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            e["packet"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("dead-letter entry without packet.id: {e}"))
                .to_string()
        })
        .collect()
}

/// The packets of a reference analyzer's record file written with
/// `--record-messages` (`{"id": ..., "messages": [...]}` a line), in the
/// order received; no file is no packets.
pub(crate) fn read_recorded_packets(path: &Path) -> Vec<Value> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    text.lines()
        .map(|line| {
            let packet: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: {line:?} is not JSON: {e}", path.display()));
            assert!(
                packet["messages"].is_array(),
                "{}: {line:?} has no messages (was --record-messages given?)",
                path.display()
            );
            packet
        })
        .collect()
}

/// The ids of a reference analyzer's record file, one JSON line
/// `{"id": ...}` each, in the order received; no file is no ids. A line
/// that is not such an object fails the test.
pub(crate) fn read_records(path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    text.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: {line:?} is not JSON: {e}", path.display()));
            value["id"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: {line:?} has no string id", path.display()))
                .to_string()
        })
        .collect()
}
