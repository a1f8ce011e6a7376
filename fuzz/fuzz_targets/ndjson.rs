//! NDJSON request bodies: split into lines, then validate every packet.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use logs_distributor::model::{split_ndjson, Limits, LogPacket};

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    let Ok(packets) = split_ndjson(body) else {
        return;
    };
    let _ = limits.check_count(packets.len());
    let now = Utc.timestamp_opt(1_750_000_000, 0).unwrap();
    for (index, raw) in packets.iter().enumerate() {
        if let Ok(packet) = limits.validate(index, raw, now) {
            let json = serde_json::to_vec(&packet).expect("a valid packet serialises");
            let back: LogPacket = serde_json::from_slice(&json).expect("a serialised packet decodes");
            assert_eq!(
                back,
                packet,
                "JSON round trip changed the packet: {}",
                String::from_utf8_lossy(&json)
            );
        }
    }
});
