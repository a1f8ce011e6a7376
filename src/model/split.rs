//! Request bodies split into raw packets, JSON array or NDJSON, counted
//! while they are split so that the packet limit bounds the work.

use serde_json::value::RawValue;
use std::fmt;

/// Why a whole request body was refused before looking at its packets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("body must be a JSON array of packets, got {0}")]
    NotAnArray(&'static str),
    #[error("line {line}: not valid JSON: {reason}")]
    InvalidNdjsonLine { line: usize, reason: String },
    #[error("request holds no packet: send at least 1")]
    Empty,
    #[error("request holds more than {max} packets: at most {max} are allowed per request")]
    TooManyPackets { max: usize },
}

/// Splits a JSON array body into its raw packets without parsing them: at
/// least one, at most `max_packets`. Counting stops at the first packet
/// past `max_packets`, so a body of millions of tiny packets costs no more
/// than one of `max_packets`.
pub fn split_json_array(body: &[u8], max_packets: usize) -> Result<Vec<&RawValue>, BodyError> {
    let invalid = |e: serde_json::Error| BodyError::InvalidJson(e.to_string());
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        let value: &RawValue = serde_json::from_slice(body).map_err(invalid)?;
        return Err(BodyError::NotAnArray(match value.get().as_bytes().first() {
            Some(b'{') => "an object",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        }));
    }
    let overflowed = std::cell::Cell::new(false);
    let mut parser = serde_json::Deserializer::from_slice(body);
    let split = serde::Deserializer::deserialize_seq(
        &mut parser,
        BoundedPackets {
            max: max_packets,
            overflowed: &overflowed,
        },
    )
    .and_then(|packets| parser.end().map(|()| packets));
    match split {
        _ if overflowed.get() => Err(BodyError::TooManyPackets { max: max_packets }),
        Err(e) => Err(invalid(e)),
        Ok(packets) if packets.is_empty() => Err(BodyError::Empty),
        Ok(packets) => Ok(packets),
    }
}

/// The elements of a JSON array as raw values, refusing (and saying so in
/// `overflowed`) the first one past `max`.
struct BoundedPackets<'a> {
    max: usize,
    overflowed: &'a std::cell::Cell<bool>,
}

impl<'de> serde::de::Visitor<'de> for BoundedPackets<'_> {
    type Value = Vec<&'de RawValue>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of at most {} packets", self.max)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut packets = Vec::new();
        while let Some(packet) = seq.next_element::<&'de RawValue>()? {
            if packets.len() == self.max {
                self.overflowed.set(true);
                return Err(serde::de::Error::custom("too many packets"));
            }
            packets.push(packet);
        }
        Ok(packets)
    }
}

/// Splits an NDJSON body (one packet per line, blank lines ignored) into raw
/// packets: at least one, at most `max_packets` (counting stops at the
/// first line past them). A line that is not JSON at all fails the whole
/// body, naming it.
pub fn split_ndjson(body: &[u8], max_packets: usize) -> Result<Vec<&RawValue>, BodyError> {
    let mut packets = Vec::new();
    for (number, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if packets.len() == max_packets {
            return Err(BodyError::TooManyPackets { max: max_packets });
        }
        let raw: &RawValue = serde_json::from_slice(line).map_err(|e| BodyError::InvalidNdjsonLine {
            line: number + 1,
            reason: e.to_string(),
        })?;
        packets.push(raw);
    }
    if packets.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(packets)
}
