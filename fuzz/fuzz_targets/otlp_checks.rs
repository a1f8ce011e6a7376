//! The checks shared by the `otlp_protobuf` and `otlp_json` targets (each
//! pulls them in with `mod otlp_checks;`; not a target of its own): limits
//! small enough that short inputs reach every rule (a packet split by count
//! and by bytes, a record rejected), and what a mapping must hold.

use chrono::{TimeZone, Utc};
use logs_distributor::model::{Limits, QueueBounds};
use logs_distributor::otlp::{Mapped, RequestError};

/// Small limits, so that short inputs split packets and reject records.
pub fn limits() -> Limits {
    Limits {
        max_messages_per_packet: 3,
        max_message_bytes: 64,
        max_packet_bytes: 2048,
        ..Limits::default()
    }
}

/// The most one request's packets may make: small enough that long inputs
/// reach it.
pub const BOUNDS: QueueBounds = QueueBounds {
    max_packets: 64,
    max_bytes: 1 << 20,
};

pub fn now() -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000, 0).unwrap()
}

/// What any answer must hold: every packet within the limits and encoded
/// as serde writes it (`roundtrip::check`); every record of the request
/// (`records`, when it could be counted apart) accepted or rejected.
pub fn check(result: &Result<Mapped, RequestError>, records: Option<usize>) {
    let Ok(mapped) = result else {
        return;
    };
    let limits = limits();
    let mut messages = 0;
    let mut bytes = 0;
    for packet in &mapped.packets {
        assert!(packet.message_count() >= 1);
        assert!(packet.message_count() <= limits.max_messages_per_packet);
        assert!(
            packet.json_bytes() <= limits.max_packet_bytes,
            "{}",
            packet.json_bytes()
        );
        crate::roundtrip::check(packet);
        messages += packet.message_count();
        bytes += packet.json_bytes();
    }
    assert!(BOUNDS.check(mapped.packets.len(), bytes).is_ok());
    assert_eq!(messages, mapped.accepted_records);
    assert_eq!(mapped.rejected_records > 0, mapped.rejection_message().is_some());
    if let Some(records) = records {
        assert_eq!(
            mapped.accepted_records + mapped.rejected_records,
            records,
            "every record is accepted or rejected"
        );
    }
}
