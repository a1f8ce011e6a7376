//! NDJSON request bodies: split into lines (by hand, as serde_json splits them), then validate
//! every packet.
//! Must never panic; a packet that validates must survive the service's own
//! encoding (`EncodedPacket`) unchanged, see `roundtrip.rs`.
#![no_main]

mod roundtrip;

use libfuzzer_sys::fuzz_target;
use logs_distributor::config::QueueConfig;
use logs_distributor::model::{read_ndjson, split_ndjson};

fuzz_target!(|body: &[u8]| {
    let max = QueueConfig::default().max_in_flight;
    let read = read_ndjson(body, max);
    roundtrip::same_split(&read, split_ndjson(body, max));
    if let Ok(packets) = read {
        roundtrip::validate_all(packets);
    }
});
