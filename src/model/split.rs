//! Request bodies split into raw packets, JSON array or NDJSON, counted
//! while they are split so that the packet limit bounds the work.
//!
//! A body whose packets all have the usual shape is split and read in one
//! pass by hand ([`read_json_array`], [`read_ndjson`]): the reader checks
//! every byte as JSON does, so no other pass is needed to know the body is
//! valid. Any other body (one unusual packet, or anything wrong) is split
//! by serde_json ([`split_json_array`], [`split_ndjson`]), whose answer,
//! and refusal, stands.

use super::packet_reader::{self, skip_whitespace, ReadPacket};
use serde_json::value::RawValue;
use std::fmt;

/// One packet of a request body: its JSON text and, where the body was read
/// by hand, what was read of it (see [`Limits::validate`](super::Limits::validate)).
#[derive(Debug)]
pub struct RawPacket<'a> {
    text: &'a str,
    read: Option<ReadPacket<'a>>,
}

impl<'a> RawPacket<'a> {
    /// The packet's JSON text, as it stands in the request.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Drops what was read of the packet, keeping its text (which
    /// validation then reads again): for a packet held a while, as what was
    /// read of it takes about half the room its text does.
    pub fn forget_reading(&mut self) {
        self.read = None;
    }

    pub(super) fn into_parts(self) -> (&'a str, Option<ReadPacket<'a>>) {
        (self.text, self.read)
    }
}

impl<'a> From<&'a RawValue> for RawPacket<'a> {
    fn from(raw: &'a RawValue) -> Self {
        RawPacket {
            text: raw.get(),
            read: None,
        }
    }
}

/// [`split_json_array`]'s answer, the packets read as the body is split
/// when they all have the usual shape.
pub fn read_json_array(body: &[u8], max_packets: usize) -> Result<Vec<RawPacket<'_>>, BodyError> {
    read_else_split(read_array_by_hand(body, max_packets), || {
        split_json_array(body, max_packets)
    })
}

/// [`split_ndjson`]'s answer, the packets read as the body is split when
/// they all have the usual shape.
pub fn read_ndjson(body: &[u8], max_packets: usize) -> Result<Vec<RawPacket<'_>>, BodyError> {
    read_else_split(read_lines_by_hand(body, max_packets), || {
        split_ndjson(body, max_packets)
    })
}

/// The packets read by hand, or else serde_json's split of the body.
fn read_else_split<'a>(
    read: Option<Vec<RawPacket<'a>>>,
    split: impl FnOnce() -> Result<Vec<&'a RawValue>, BodyError>,
) -> Result<Vec<RawPacket<'a>>, BodyError> {
    match read {
        Some(packets) => Ok(packets),
        None => Ok(split()?.into_iter().map(RawPacket::from).collect()),
    }
}

/// A JSON array body of at least one and at most `max_packets` packets,
/// each of the usual shape (see `packet_reader::read_valid`), split and
/// read; `None` for any other body.
fn read_array_by_hand(body: &[u8], max_packets: usize) -> Option<Vec<RawPacket<'_>>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut at = skip_whitespace(text, 0);
    if text.as_bytes().get(at) != Some(&b'[') {
        return None;
    }
    let mut packets = Vec::new();
    loop {
        if packets.len() == max_packets {
            return None;
        }
        let (packet, end) = read_at(text, skip_whitespace(text, at + 1))?;
        packets.push(packet);
        at = skip_whitespace(text, end);
        match text.as_bytes().get(at)? {
            b',' => {}
            b']' => break,
            _ => return None,
        }
    }
    (skip_whitespace(text, at + 1) == text.len()).then_some(packets)
}

/// An NDJSON body as [`read_array_by_hand`] takes a JSON array.
fn read_lines_by_hand(body: &[u8], max_packets: usize) -> Option<Vec<RawPacket<'_>>> {
    let mut packets = Vec::new();
    for (_, line) in packet_lines(body) {
        if packets.len() == max_packets {
            return None;
        }
        let line = std::str::from_utf8(line).ok()?;
        let (packet, end) = read_at(line, skip_whitespace(line, 0))?;
        (skip_whitespace(line, end) == line.len()).then_some(())?;
        packets.push(packet);
    }
    (!packets.is_empty()).then_some(packets)
}

/// The packet of the usual shape that starts at `at`, and where it ends.
fn read_at(text: &str, at: usize) -> Option<(RawPacket<'_>, usize)> {
    let (read, end) = packet_reader::read_valid(text, at)?;
    let packet = RawPacket {
        text: &text[at..end],
        read: Some(read),
    };
    Some((packet, end))
}

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
    for (number, line) in packet_lines(body) {
        if packets.len() == max_packets {
            return Err(BodyError::TooManyPackets { max: max_packets });
        }
        let raw: &RawValue = serde_json::from_slice(line).map_err(|e| BodyError::InvalidNdjsonLine {
            line: number,
            reason: e.to_string(),
        })?;
        packets.push(raw);
    }
    if packets.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(packets)
}

/// The lines of an NDJSON body that are not blank, each with its number
/// (from 1) and without its `\r\n` or `\n`.
fn packet_lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    body.split(|&b| b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .enumerate()
        .map(|(index, line)| (index + 1, line))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
}
