//! NDJSON request bodies: split into lines, then validate every packet.
//! Must never panic; a packet that validates must survive the service's own
//! encoding (`EncodedPacket`) unchanged, see `roundtrip.rs`.
#![no_main]

mod roundtrip;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use logs_distributor::model::{split_ndjson, Limits};

fuzz_target!(|body: &[u8]| {
    let limits = Limits::default();
    let Ok(packets) = split_ndjson(body) else {
        return;
    };
    let _ = limits.check_count(packets.len());
    let now = Utc.timestamp_opt(1_750_000_000, 0).unwrap();
    for (index, raw) in packets.iter().enumerate() {
        match limits.validate(index, raw, now) {
            Ok(packet) => roundtrip::check(&packet),
            Err(error) => assert_eq!(error.index, index),
        }
    }
});
