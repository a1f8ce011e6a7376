//! JSON-array request bodies: split, then validate every packet. Must never
//! panic; a packet that validates must survive a JSON round trip unchanged.
#![no_main]

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use logs_distributor::model::{split_json_array, Limits, LogPacket};

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    let Ok(packets) = split_json_array(body) else {
        return;
    };
    let _ = limits.check_count(packets.len());
    let now = Utc.timestamp_opt(1_750_000_000, 0).unwrap();
    for (index, raw) in packets.iter().enumerate() {
        match limits.validate(index, raw, now) {
            Ok(packet) => {
                let json = serde_json::to_vec(&packet).expect("a valid packet serialises");
                let back: LogPacket = serde_json::from_slice(&json).expect("a serialised packet decodes");
                assert_eq!(
                    back,
                    packet,
                    "JSON round trip changed the packet: {}",
                    String::from_utf8_lossy(&json)
                );
            }
            Err(error) => assert_eq!(error.index, index),
        }
    }
});
