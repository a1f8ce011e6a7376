//! The checks shared by the `ingest`, `ndjson` and `records` targets (each pulls them
//! in with `mod roundtrip;`; this is not a fuzz target of its own): a body
//! read by hand splits as serde_json splits it ([`same_split`]), every
//! packet of a split body is validated, to the same verdict as serde's
//! split packet gets ([`validate_all`]), and each one that validates must
//! survive a round trip ([`check`]).
//!
//! The validator encodes an accepted packet by hand, straight from the
//! request's text, as the service's hot path does. The encoding must be
//! what serde writes for the packet it stands for, so that the
//! hand-written encoder cannot drift from serde unnoticed. With `packet`
//! what the encoding decodes to:
//!
//! - `EncodedPacket::new(&packet)` (the other way in, from a `LogPacket`)
//!   gives the same encoding;
//! - for retry count 0 and for the widest one (`u32::MAX`), the JSON
//!   `write_json(retries)` writes fits in `json_bytes()`, is byte for byte
//!   what serde writes for `packet` with that retry count, and decodes
//!   back to it.

use chrono::{TimeZone, Utc};
use logs_distributor::model::{BodyError, EncodedPacket, Limits, LogPacket, RawPacket};
use serde_json::value::RawValue;

/// Panics unless the body read by hand (`read_json_array`, `read_ndjson`)
/// was split into the packets serde_json split it into, or refused alike.
pub fn same_split(read: &Result<Vec<RawPacket<'_>>, BodyError>, split: Result<Vec<&RawValue>, BodyError>) {
    let read = match read {
        Ok(packets) => Ok(packets.iter().map(RawPacket::text).collect::<Vec<_>>()),
        Err(e) => Err(e.clone()),
    };
    let split = split.map(|raws| raws.into_iter().map(RawValue::get).collect::<Vec<_>>());
    assert_eq!(read, split, "read by hand and split by serde_json differ");
}

/// Validates every packet of a split body as the ingest handler does: must
/// never panic; a refusal names the packet's own index, and is the one
/// the packet split by serde_json gets; what validates goes through
/// [`check`] and is what the packet split by serde_json validates to.
pub fn validate_all(packets: Vec<RawPacket<'_>>) {
    let limits = Limits::default();
    let now = Utc.timestamp_opt(1_750_000_000, 0).unwrap();
    for (index, packet) in packets.into_iter().enumerate() {
        let raw = RawValue::from_string(packet.text().to_owned()).expect("a split packet is JSON");
        let by_serde = limits.validate(index, raw.as_ref().into(), now);
        match (limits.validate(index, packet, now), by_serde) {
            (Ok(packet), Ok(by_serde)) => {
                check(&packet);
                assert_eq!(packet.messages_json(), by_serde.messages_json());
            }
            (Err(error), Err(by_serde)) => {
                assert_eq!(error.index, index);
                assert_eq!(error.reason, by_serde.reason);
            }
            (read, by_serde) => panic!("read by hand: {read:?}, by serde_json: {by_serde:?}"),
        }
    }
}

/// Panics unless the validator's encoding survives a round trip.
pub fn check(encoded: &EncodedPacket) {
    let packet = encoded.decode(0);
    assert_eq!(encoded.id(), packet.id, "EncodedPacket::id");
    assert_eq!(
        encoded.message_count(),
        packet.messages.len(),
        "EncodedPacket::message_count"
    );
    assert!(
        EncodedPacket::new(&packet) == *encoded,
        "encoding the decoded packet again gives other bytes: {packet:?}"
    );
    for retry_count in [0, u32::MAX] {
        check_retries(
            encoded,
            &LogPacket {
                retry_count,
                ..packet.clone()
            },
        );
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
