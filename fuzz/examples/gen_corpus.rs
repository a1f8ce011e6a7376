//! Writes the seed corpus of the `wal_decode` target: a few encoded records
//! (one of each kind, and `segment.bin`: a commit group's body holding all
//! three). Run from `fuzz/`:
//! `cargo run --example gen_corpus`.

use chrono::{TimeZone, Utc};
use logs_distributor::model::{split_json_array, Limits};
use logs_distributor::storage::wal::Record;
use std::sync::Arc;

fn main() -> std::io::Result<()> {
    let dir = std::path::Path::new("corpus/wal_decode");
    std::fs::create_dir_all(dir)?;
    let body = br#"[{"id": "seed-1", "messages": [{"level": "INFO", "message": "User login successful",
        "source": "auth-service", "timestamp": "2025-01-25T20:30:00Z", "metadata": {"user_id": "user_12345", "n": 1.5, "tags": ["a", {"b": null}]}}]}]"#;
    let now = Utc.timestamp_opt(1_750_000_000, 0).unwrap();
    let raw = split_json_array(body, 1).expect("seed body is an array");
    let packet = Arc::new(
        Limits::default()
            .validate(0, raw[0], now)
            .expect("seed packet is valid"),
    );
    let records = [
        (
            "accept",
            Record::Accept {
                seq: 1,
                packet: packet.clone(),
                retries: 0,
            },
        ),
        ("retry", Record::Retry { seq: 2, retries: 3 }),
        ("end", Record::End { seq: 1 }),
    ];
    let mut segment = Vec::new();
    for (name, record) in &records {
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        std::fs::write(dir.join(format!("{name}.bin")), &bytes)?;
        record.encode(&mut segment);
    }
    std::fs::write(dir.join("segment.bin"), &segment)?;
    Ok(())
}
