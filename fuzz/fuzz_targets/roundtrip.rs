//! The round-trip check shared by the `ingest` and `ndjson` targets (each
//! pulls it in with `mod roundtrip;`; it is not a fuzz target of its own).
//!
//! A packet the validator accepts is encoded the way the service's hot path
//! encodes it, with the hand-written [`EncodedPacket`] rather than serde,
//! and must come back unchanged. For its own retry count and for the widest
//! one (`u32::MAX`):
//!
//! - `decode(retries)` gives the accepted packet with that retry count;
//! - the JSON `write_json(retries)` writes fits in `json_bytes()` and is
//!   byte for byte what serde writes for that packet, so the hand-written
//!   encoder cannot drift from serde unnoticed.

use logs_distributor::model::{EncodedPacket, LogPacket};

/// Panics unless `packet` survives an [`EncodedPacket`] round trip.
pub fn check(packet: &LogPacket) {
    let encoded = EncodedPacket::new(packet);
    assert_eq!(encoded.id(), packet.id, "EncodedPacket::id");
    assert_eq!(
        encoded.message_count(),
        packet.messages.len(),
        "EncodedPacket::message_count"
    );
    check_retries(&encoded, packet);
    if packet.retry_count != u32::MAX {
        let retried = LogPacket {
            retry_count: u32::MAX,
            ..packet.clone()
        };
        check_retries(&encoded, &retried);
    }
}

/// Checks `encoded` written and decoded with `expected.retry_count`.
fn check_retries(encoded: &EncodedPacket, expected: &LogPacket) {
    let retries = expected.retry_count;
    let mut json = Vec::with_capacity(encoded.json_bytes());
    encoded.write_json(retries, &mut json);
    let text = String::from_utf8_lossy(&json);
    assert!(
        json.len() <= encoded.json_bytes(),
        "write_json wrote {} bytes, json_bytes() promised at most {}: {text}",
        json.len(),
        encoded.json_bytes()
    );
    let serde = serde_json::to_vec(expected).expect("a valid packet serialises");
    assert!(
        json == serde,
        "EncodedPacket and serde disagree (retry_count {retries}):\n  ours:  {text}\n  serde: {}",
        String::from_utf8_lossy(&serde)
    );
    let decoded = encoded.decode(retries);
    assert_eq!(
        &decoded, expected,
        "EncodedPacket round trip changed the packet (retry_count {retries}): {text}"
    );
}
