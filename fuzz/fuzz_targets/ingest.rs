//! JSON-array request bodies: split (by hand, as serde_json splits them),
//! then validate every packet. Must never
//! panic; a packet that validates must survive the service's own encoding
//! (`EncodedPacket`) unchanged, see `roundtrip.rs`.
#![no_main]

mod roundtrip;

use libfuzzer_sys::fuzz_target;
use logs_distributor::config::QueueConfig;
use logs_distributor::model::{read_json_array, split_json_array};

fuzz_target!(|body: &[u8]| {
    let max = QueueConfig::default().max_in_flight;
    let read = read_json_array(body, max);
    roundtrip::same_split(&read, split_json_array(body, max));
    if let Ok(packets) = read {
        roundtrip::validate_all(packets);
    }
});
