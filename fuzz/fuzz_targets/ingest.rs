//! JSON-array request bodies: split, then validate every packet. Must never
//! panic; a packet that validates must survive the service's own encoding
//! (`EncodedPacket`) unchanged, see `roundtrip.rs`.
#![no_main]

mod roundtrip;

use libfuzzer_sys::fuzz_target;
use logs_distributor::config::QueueConfig;
use logs_distributor::model::split_json_array;

fuzz_target!(|body: &[u8]| {
    if let Ok(packets) = split_json_array(body, QueueConfig::default().max_in_flight) {
        roundtrip::validate_all(&packets);
    }
});
