//! Shippers' record bodies (`POST /api/v1/records`): scanned into records
//! in both framings (JSON and NDJSON lines), each record mapped, the valid
//! ones packed. Must never panic, and:
//!
//! - every record is either in a packet or invalid, never both or neither;
//! - every packet stays within `limits.max_packet_bytes` and
//!   `records.max_messages_per_packet`, and survives the service's own
//!   encoding unchanged (see `roundtrip.rs`);
//! - every invalid record makes a dead-letter entry that keeps its text.
#![no_main]

// Only `check` is used here; `validate_all` is for the packet targets.
#[allow(dead_code)]
mod roundtrip;

use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use logs_distributor::config::QueueConfig;
use logs_distributor::model::records::{pack, Framing, RecordRules};
use logs_distributor::model::{Limits, QueueBounds};

fuzz_target!(|body: &[u8]| {
    let rules = RecordRules::default();
    let limits = Limits::default();
    let queue = QueueConfig::default();
    let bounds = QueueBounds {
        max_packets: queue.max_in_flight,
        max_bytes: queue.max_in_flight_bytes,
    };
    let now = Utc.timestamp_opt(1_750_000_000, 0).unwrap();
    for framing in [Framing::Json, Framing::Lines] {
        let Ok(packed) = pack(body, framing, &rules, &limits, bounds, now) else {
            continue;
        };
        assert_eq!(packed.accepted + packed.invalid.len(), packed.total);
        let messages: usize = packed.packets.iter().map(|p| p.message_count()).sum();
        assert_eq!(messages, packed.accepted);
        for packet in &packed.packets {
            assert!(packet.json_bytes() <= limits.max_packet_bytes);
            assert!((1..=rules.messages_per_packet(&limits)).contains(&packet.message_count()));
            roundtrip::check(packet);
        }
        for invalid in &packed.invalid {
            let entry = invalid.dead_letter_packet(&rules, now);
            assert_eq!(entry.messages[0].message, invalid.text);
        }
    }
});
