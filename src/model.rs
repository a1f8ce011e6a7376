//! Log packets and messages: the wire shapes clients send, the validated
//! shapes the distributor keeps, and the validation rules with their limits.
//!
//! A request body is parsed in two steps so that one bad packet does not
//! spoil its neighbours: the body is split into raw packets
//! ([`split_json_array`], [`split_ndjson`]), then each raw packet is parsed
//! and validated on its own ([`Limits::validate`]), giving either an
//! [`EncodedPacket`] (written straight from the request's text) or a
//! [`PacketError`] naming the field at fault.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::io::Write as _;
use std::str::FromStr;

/// Severity of a log message: the RFC 5424 severities plus `TRACE`.
///
/// Parsing is case-insensitive and takes the common aliases
/// (`WARN`, `ERR`, `FATAL`, `CRIT`, `EMERG`, `PANIC`, `INFORMATIONAL`, ...);
/// the canonical upper-case name is what analyzers receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Info,
    Debug,
    Trace,
}

impl Level {
    /// The canonical name: what analyzers receive.
    pub fn name(self) -> &'static str {
        match self {
            Level::Emergency => "EMERGENCY",
            Level::Alert => "ALERT",
            Level::Critical => "CRITICAL",
            Level::Error => "ERROR",
            Level::Warning => "WARNING",
            Level::Notice => "NOTICE",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let level = match s.trim().to_ascii_lowercase().as_str() {
            "emergency" | "emerg" | "panic" => Level::Emergency,
            "alert" => Level::Alert,
            "critical" | "crit" | "fatal" => Level::Critical,
            "error" | "err" => Level::Error,
            "warning" | "warn" => Level::Warning,
            "notice" => Level::Notice,
            "info" | "informational" | "information" => Level::Info,
            "debug" => Level::Debug,
            "trace" => Level::Trace,
            _ => {
                return Err(format!(
                    "unknown level {s:?}: expected one of EMERGENCY, ALERT, CRITICAL, ERROR, \
                     WARNING, NOTICE, INFO, DEBUG, TRACE (case-insensitive; aliases such as \
                     WARN, ERR, FATAL are accepted)"
                ))
            }
        };
        Ok(level)
    }
}

/// Read as ingest reads it (any case, aliases): what the distributor wrote
/// is canonical, and a dead letter written by hand or by the original
/// service may hold an alias.
impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// One log line as the distributor keeps it and analyzers receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMessage {
    pub level: Level,
    pub message: String,
    pub source: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

impl LogMessage {
    fn fields(&self) -> MessageFields<'_> {
        MessageFields {
            level: self.level,
            message: &self.message,
            source: &self.source,
            timestamp: self.timestamp,
            metadata: self.metadata.as_ref(),
        }
    }
}

/// A valid message's fields, wherever their text lives (a [`LogMessage`],
/// or the request body itself while it is validated).
struct MessageFields<'a> {
    level: Level,
    message: &'a str,
    source: &'a str,
    timestamp: DateTime<Utc>,
    metadata: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

impl MessageFields<'_> {
    /// Appends the message as JSON, byte for byte what serde_json writes
    /// for the same [`LogMessage`].
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"level\":\"");
        out.extend_from_slice(self.level.name().as_bytes());
        out.extend_from_slice(b"\",\"message\":");
        write_str(self.message, out);
        out.extend_from_slice(b",\"source\":");
        write_str(self.source, out);
        out.extend_from_slice(b",\"timestamp\":");
        let mut text = [0u8; 30];
        match rfc3339::write(&self.timestamp, &mut text) {
            Some(len) => {
                out.push(b'"');
                out.extend_from_slice(&text[..len]);
                out.push(b'"');
            }
            None => serde_json::to_writer(&mut *out, &self.timestamp).expect("a timestamp always serialises"),
        }
        if let Some(metadata) = self.metadata {
            out.extend_from_slice(b",\"metadata\":");
            serde_json::to_writer(&mut *out, metadata).expect("metadata always serialises");
        }
        out.push(b'}');
    }
}

/// Appends `text` as a JSON string: copied when nothing in it needs
/// escaping (the usual case), otherwise escaped by serde_json.
fn write_str(text: &str, out: &mut Vec<u8>) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, text).expect("a string always serialises");
    }
}

/// Timestamps written exactly as chrono's serde writes them (RFC 3339,
/// 0, 3, 6 or 9 fraction digits, `Z`), without going through `core::fmt`:
/// they were the costliest part of encoding a packet.
mod rfc3339 {
    use chrono::{DateTime, Datelike, Timelike, Utc};
    use serde::{Serialize, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        let mut text = [0u8; 30];
        match write(time, &mut text) {
            Some(len) => {
                serializer.serialize_str(std::str::from_utf8(&text[..len]).expect("digits and ASCII"))
            }
            // Years past 9999 or before 0, and leap seconds: chrono's way.
            None => time.serialize(serializer),
        }
    }

    /// Writes `time` into `out`, answering the length; `None` for what
    /// only chrono writes.
    pub(super) fn write(time: &DateTime<Utc>, out: &mut [u8; 30]) -> Option<usize> {
        let year = time.year();
        let nano = time.nanosecond();
        if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
            return None;
        }
        let mut text = Text { out, len: 0 };
        text.digits(year as u32, 4);
        text.byte(b'-');
        text.digits(time.month(), 2);
        text.byte(b'-');
        text.digits(time.day(), 2);
        text.byte(b'T');
        text.digits(time.hour(), 2);
        text.byte(b':');
        text.digits(time.minute(), 2);
        text.byte(b':');
        text.digits(time.second(), 2);
        if nano != 0 {
            text.byte(b'.');
            if nano % 1_000_000 == 0 {
                text.digits(nano / 1_000_000, 3);
            } else if nano % 1_000 == 0 {
                text.digits(nano / 1_000, 6);
            } else {
                text.digits(nano, 9);
            }
        }
        text.byte(b'Z');
        Some(text.len)
    }

    struct Text<'a> {
        out: &'a mut [u8; 30],
        len: usize,
    }

    impl Text<'_> {
        fn byte(&mut self, byte: u8) {
            self.out[self.len] = byte;
            self.len += 1;
        }

        /// `value` in exactly `width` decimal digits, zero-padded.
        fn digits(&mut self, value: u32, width: usize) {
            let mut rest = value;
            for at in (self.len..self.len + width).rev() {
                self.out[at] = b'0' + (rest % 10) as u8;
                rest /= 10;
            }
            self.len += width;
        }
    }
}

/// A batch of log lines handed to exactly one analyzer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPacket {
    pub id: String,
    pub messages: Vec<LogMessage>,
    #[serde(default)]
    pub retry_count: u32,
}

/// A validated packet, encoded once as JSON when it is accepted: the text
/// the write-ahead log stores, analyzers receive and checkpoints save. In
/// flight this is all the distributor keeps of a packet (its id, its
/// message count and one buffer); the full [`LogPacket`] is decoded again
/// only on the rare paths (dead letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPacket {
    id: String,
    messages: usize,
    /// `"id":…,"messages":[…]`: the packet's fields but its retry count,
    /// which changes in flight and is written after them.
    fields: Box<[u8]>,
}

/// Room for `,"retry_count":4294967295` and the braces.
const RETRY_COUNT_BYTES: usize = 27;

impl EncodedPacket {
    /// Encodes the packet's fields exactly as serde_json writes them, by
    /// hand: plain strings are copied rather than escaped byte by byte.
    pub fn new(packet: &LogPacket) -> EncodedPacket {
        let text: usize = packet
            .messages
            .iter()
            .map(|m| m.message.len() + m.source.len() + 96)
            .sum();
        let mut encoder = PacketEncoder::new(packet.id.clone(), text);
        for message in &packet.messages {
            encoder.push(&message.fields());
        }
        encoder.finish()
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn message_count(&self) -> usize {
        self.messages
    }

    /// The most bytes [`EncodedPacket::write_json`] writes: its share of
    /// batch and memory limits.
    pub fn json_bytes(&self) -> usize {
        self.fields.len() + RETRY_COUNT_BYTES
    }

    /// Appends the packet's fields and `"retry_count"`, without braces, so
    /// that a caller can add fields of its own.
    pub fn write_fields(&self, retry_count: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.fields);
        out.extend_from_slice(b",\"retry_count\":");
        write!(out, "{retry_count}").expect("writing to a Vec cannot fail");
    }

    /// Appends the packet as a JSON object, exactly as `LogPacket` with
    /// that `retry_count` serialises.
    pub fn write_json(&self, retry_count: u32, out: &mut Vec<u8>) {
        out.push(b'{');
        self.write_fields(retry_count, out);
        out.push(b'}');
    }

    /// The packet again, with `retry_count`.
    pub fn decode(&self, retry_count: u32) -> LogPacket {
        let mut json = Vec::with_capacity(self.json_bytes());
        self.write_json(retry_count, &mut json);
        serde_json::from_slice(&json).expect("an encoded packet always decodes")
    }
}

/// Writes an [`EncodedPacket`] message by message.
struct PacketEncoder {
    id: String,
    messages: usize,
    out: Vec<u8>,
}

impl PacketEncoder {
    /// `text_bytes`: about how long the messages will be, to size the buffer.
    fn new(id: String, text_bytes: usize) -> PacketEncoder {
        let mut out = Vec::with_capacity(id.len() + text_bytes + 32);
        out.extend_from_slice(b"\"id\":");
        write_str(&id, &mut out);
        out.extend_from_slice(b",\"messages\":[");
        PacketEncoder { id, messages: 0, out }
    }

    fn push(&mut self, message: &MessageFields<'_>) {
        if self.messages > 0 {
            self.out.push(b',');
        }
        message.write_json(&mut self.out);
        self.messages += 1;
    }

    fn finish(mut self) -> EncodedPacket {
        self.out.push(b']');
        EncodedPacket {
            id: self.id,
            messages: self.messages,
            fields: self.out.into_boxed_slice(),
        }
    }
}

/// A message exactly as a client may send it: level is free text until
/// validated, timestamp optional. Strings without escapes are borrowed
/// from the request, not copied.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingMessage<'a> {
    #[serde(borrow)]
    level: Cow<'a, str>,
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(default)]
    timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A packet exactly as a client may send it. `retry_count` is accepted so
/// that one distributor can be another's analyzer, but is reset to zero.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IncomingPacket<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    /// Parsed one by one, so that an error names the message.
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
    #[serde(default, rename = "retry_count")]
    _retry_count: Option<u32>,
}

/// A well-formed packet, parsed in one pass (see [`Limits::validate`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WholePacket<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    messages: Vec<IncomingMessage<'a>>,
    #[serde(default, rename = "retry_count")]
    _retry_count: Option<u32>,
}

/// Why one packet of a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketError {
    /// Position of the packet in the request (0-based).
    pub index: usize,
    /// The packet's id, when the client gave one that could be read.
    pub id: Option<String>,
    pub reason: String,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "packet {}: {}", self.index, self.reason)
    }
}

/// Validation limits; the defaults are the documented ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, after decompression.
    pub max_body_bytes: usize,
    pub max_packets_per_request: usize,
    pub max_messages_per_packet: usize,
    /// Largest `message` text, in bytes.
    pub max_message_bytes: usize,
    /// Largest packet, as its JSON text in the request.
    pub max_packet_bytes: usize,
    /// Longest client-chosen packet id, in bytes.
    pub max_id_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 * 1024 * 1024,
            max_packets_per_request: 1000,
            max_messages_per_packet: 1000,
            max_message_bytes: 10_000,
            max_packet_bytes: 1024 * 1024,
            max_id_bytes: 256,
        }
    }
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

impl Limits {
    /// Parses and validates one raw packet and encodes it (retry count 0);
    /// `now` fills missing timestamps and a fresh UUIDv4 fills a missing id.
    pub fn validate(
        &self,
        index: usize,
        raw: &RawValue,
        now: DateTime<Utc>,
    ) -> Result<EncodedPacket, PacketError> {
        let fail = |id: Option<String>, reason: String| PacketError { index, id, reason };
        let text = raw.get();
        if text.len() > self.max_packet_bytes {
            return Err(fail(
                None,
                format!(
                    "packet is {} bytes: at most {} are allowed",
                    text.len(),
                    self.max_packet_bytes
                ),
            ));
        }
        if !text.starts_with('{') {
            return Err(fail(None, "a packet must be a JSON object".into()));
        }
        if let Ok(whole) = serde_json::from_str::<WholePacket>(text) {
            // Well-formed (the usual case): parsed in one pass, and encoded
            // straight from the request's text.
            let id = whole.id.as_deref();
            let refuse = |reason: String| fail(id.map(str::to_owned), reason);
            self.check_head(id, whole.messages.len()).map_err(refuse)?;
            let mut encoder = PacketEncoder::new(id_or_new(id), text.len());
            for (i, message) in whole.messages.iter().enumerate() {
                let fields = self
                    .validate_message(message, now)
                    .map_err(|r| refuse(format!("messages[{i}].{r}")))?;
                encoder.push(&fields);
            }
            return Ok(encoder.finish());
        }
        // Malformed somewhere: message by message, to name the field at fault.
        let incoming: IncomingPacket = parse(text).map_err(|e| fail(peek_id(text), at(None, e)))?;
        let id = incoming.id.as_deref();
        let refuse = |reason: String| fail(id.map(str::to_owned), reason);
        self.check_head(id, incoming.messages.len()).map_err(refuse)?;
        let mut encoder = PacketEncoder::new(id_or_new(id), text.len());
        for (i, raw) in incoming.messages.iter().enumerate() {
            if !raw.get().starts_with('{') {
                return Err(refuse(format!("messages[{i}]: a message must be a JSON object")));
            }
            let message: IncomingMessage =
                parse(raw.get()).map_err(|e| refuse(at(Some(&format!("messages[{i}]")), e)))?;
            let fields = self
                .validate_message(&message, now)
                .map_err(|r| refuse(format!("messages[{i}].{r}")))?;
            encoder.push(&fields);
        }
        Ok(encoder.finish())
    }

    /// The checks before the messages: the id, when given, and how many
    /// messages there are.
    fn check_head(&self, id: Option<&str>, messages: usize) -> Result<(), String> {
        if let Some(id) = id {
            self.check_id(id)?;
        }
        self.check_message_count(messages)
    }

    fn check_id(&self, id: &str) -> Result<(), String> {
        if id.trim().is_empty() {
            return Err("id: must not be empty (leave it out to get a generated one)".into());
        }
        if id.len() > self.max_id_bytes {
            return Err(format!(
                "id: {} bytes long: at most {} are allowed",
                id.len(),
                self.max_id_bytes
            ));
        }
        if id.chars().any(char::is_control) {
            return Err("id: must not contain control characters".into());
        }
        Ok(())
    }

    fn check_message_count(&self, count: usize) -> Result<(), String> {
        if count == 0 {
            return Err("messages: must hold at least 1 message".into());
        }
        if count > self.max_messages_per_packet {
            return Err(format!(
                "messages: holds {count} messages: at most {} are allowed per packet",
                self.max_messages_per_packet
            ));
        }
        Ok(())
    }

    fn validate_message<'m>(
        &self,
        m: &'m IncomingMessage<'_>,
        now: DateTime<Utc>,
    ) -> Result<MessageFields<'m>, String> {
        if let Some(metadata) = &m.metadata {
            let depth = metadata.values().map(nesting).max().unwrap_or(0) + 1;
            if depth > MAX_METADATA_DEPTH {
                return Err(format!(
                    "metadata: nested {depth} levels deep: at most {MAX_METADATA_DEPTH} are allowed"
                ));
            }
        }
        let level = m.level.parse::<Level>().map_err(|r| format!("level: {r}"))?;
        if m.message.len() > self.max_message_bytes {
            return Err(format!(
                "message: {} bytes long: at most {} are allowed",
                m.message.len(),
                self.max_message_bytes
            ));
        }
        if m.source.trim().is_empty() {
            return Err("source: must not be empty".into());
        }
        Ok(MessageFields {
            level,
            message: &m.message,
            source: &m.source,
            timestamp: m.timestamp.unwrap_or(now),
            metadata: m.metadata.as_ref(),
        })
    }
}

/// The client's id, or a fresh UUIDv4 when it gave none.
fn id_or_new(id: Option<&str>) -> String {
    id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Deepest nesting of `metadata`: stored packets are re-read inside
/// wrappers (log records, dead-letter entries, checkpoints), which must stay
/// well under serde_json's recursion limit of 128.
pub const MAX_METADATA_DEPTH: usize = 32;

/// Levels of arrays and objects in `value` (a scalar is 0).
fn nesting(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(nesting).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(nesting).max().unwrap_or(0),
        _ => 0,
    }
}

/// Parses `text`; a failure names the field at fault (`level`, or none
/// when the object itself is wrong) and the reason.
fn parse<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, (Option<String>, String)> {
    // The fast path for good input; only a failure pays for tracking the
    // path again, to name the field at fault.
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != "." && !path.is_empty()).then(|| shorten(path));
        (field, describe_serde_error(e.inner()))
    })
}

/// A field path cut to a readable length (deep nesting makes long ones).
fn shorten(path: String) -> String {
    const MAX_PATH_CHARS: usize = 80;
    match path.char_indices().nth(MAX_PATH_CHARS) {
        Some((cut, _)) => format!("{}...", &path[..cut]),
        None => path,
    }
}

/// `prefix.field: reason`, or `prefix: reason` without a field.
fn at(prefix: Option<&str>, (field, reason): (Option<String>, String)) -> String {
    match (prefix, field) {
        (Some(prefix), Some(field)) => format!("{prefix}.{field}: {reason}"),
        (Some(prefix), None) => format!("{prefix}: {reason}"),
        (None, Some(field)) => format!("{field}: {reason}"),
        (None, None) => reason,
    }
}

/// Best effort: the `id` of a packet that failed to parse, for the error.
fn peek_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(text).ok().and_then(|p| p.id)
}

/// serde's messages name the field ("missing field `messages`"); drop the
/// position, which is relative to the packet and confuses more than helps.
fn describe_serde_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(pos) => text[..pos].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2025-01-25T20:30:45Z".parse().unwrap()
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    fn check(text: &str) -> Result<LogPacket, PacketError> {
        Limits::default()
            .validate(0, &raw(text), now())
            .map(|p| p.decode(0))
    }

    const GOOD: &str =
        r#"{"messages":[{"level":"ERROR","message":"Database connection failed","source":"api-service"}]}"#;

    mod timestamps {
        use super::super::rfc3339;
        use chrono::{DateTime, SecondsFormat, Utc};
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn are_written_as_chrono_writes_them(
                seconds in -62_135_596_800i64..253_402_300_799i64,
                nanos in prop_oneof![
                    Just(0u32),
                    (0u32..1000).prop_map(|ms| ms * 1_000_000),
                    (0u32..1_000_000).prop_map(|us| us * 1_000),
                    0u32..1_000_000_000,
                ],
            ) {
                let time = DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap();
                let mut text = [0u8; 30];
                let len = rfc3339::write(&time, &mut text).expect("years 0 to 9999 are written");
                let chrono = time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                prop_assert_eq!(std::str::from_utf8(&text[..len]).unwrap(), chrono.as_str());
            }
        }
    }

    #[test]
    fn timestamps_only_chrono_can_write_fall_back_to_it() {
        let far = DateTime::<Utc>::from_timestamp(300_000_000_000, 0).unwrap();
        assert_eq!(rfc3339::write(&far, &mut [0; 30]), None);
        let message = LogMessage {
            level: Level::Info,
            message: "m".into(),
            source: "s".into(),
            timestamp: far,
            metadata: None,
        };
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["timestamp"], serde_json::to_value(far).unwrap());
    }

    #[test]
    fn level_names_are_their_serde_names() {
        for level in [
            Level::Emergency,
            Level::Alert,
            Level::Critical,
            Level::Error,
            Level::Warning,
            Level::Notice,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            assert_eq!(serde_json::to_value(level).unwrap(), level.name());
        }
    }

    #[test]
    fn encoded_packets_write_what_serde_writes_and_decode_back() {
        let plain = r#"{"id":"p-1","messages":[{"level":"INFO","message":"plain text","source":"api",
            "timestamp":"2024-01-01T10:00:15.250Z"},{"level":"debug","message":"two","source":"b"}]}"#;
        let escaped = r#"{"id":"a,\"b\" é","messages":[{"level":"warn","message":"x\ny \\ \"q\" \u0041\/","source":"s\t",
               "metadata":{"n":1.5,"deep":{"list":[1,null,"z"]}}}]}"#;
        for text in [plain, escaped] {
            // Encoded as it is validated, from the request's own text.
            let validated = Limits::default().validate(0, &raw(text), now()).unwrap();
            let packet = validated.decode(0);
            assert_eq!(
                EncodedPacket::new(&packet),
                validated,
                "both ways of encoding agree"
            );
            encoded_packet_matches_serde(&validated, &packet);
        }
    }

    fn encoded_packet_matches_serde(encoded: &EncodedPacket, packet: &LogPacket) {
        assert_eq!(encoded.id(), packet.id);
        assert_eq!(encoded.message_count(), packet.messages.len());
        for retries in [0, 7, u32::MAX] {
            let mut json = Vec::new();
            encoded.write_json(retries, &mut json);
            let expected = serde_json::to_vec(&LogPacket {
                retry_count: retries,
                ..packet.clone()
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(json.clone()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            assert!(json.len() <= encoded.json_bytes());
            assert_eq!(
                encoded.decode(retries),
                LogPacket {
                    retry_count: retries,
                    ..packet.clone()
                }
            );
        }
    }

    #[test]
    fn a_minimal_packet_gets_an_id_and_the_receive_time() {
        let p = check(GOOD).unwrap();
        assert!(uuid::Uuid::parse_str(&p.id).is_ok());
        assert_eq!(p.messages[0].timestamp, now());
        assert_eq!(p.messages[0].level, Level::Error);
        assert_eq!(p.retry_count, 0);
    }

    #[test]
    fn client_ids_timestamps_and_metadata_are_kept() {
        let p = check(
            r#"{"id":"abc-123","retry_count":2,"messages":[{"level":"warn","message":"m","source":"s",
               "timestamp":"2024-01-01T10:00:15Z","metadata":{"attempt_count":5}}]}"#,
        )
        .unwrap();
        assert_eq!(p.id, "abc-123");
        assert_eq!(p.retry_count, 0, "a client's retry_count is reset");
        assert_eq!(p.messages[0].level, Level::Warning);
        assert_eq!(p.messages[0].timestamp.to_rfc3339(), "2024-01-01T10:00:15+00:00");
        assert_eq!(p.messages[0].metadata.as_ref().unwrap()["attempt_count"], 5);
    }

    #[test]
    fn levels_accept_rfc5424_names_and_aliases_in_any_case() {
        for (text, level) in [
            ("EMERG", Level::Emergency),
            ("panic", Level::Emergency),
            ("Alert", Level::Alert),
            ("crit", Level::Critical),
            ("FATAL", Level::Critical),
            ("err", Level::Error),
            ("Warning", Level::Warning),
            ("notice", Level::Notice),
            ("informational", Level::Info),
            ("INFO", Level::Info),
            ("debug", Level::Debug),
            ("trace", Level::Trace),
        ] {
            assert_eq!(text.parse::<Level>(), Ok(level), "{text}");
        }
        assert!("verbose".parse::<Level>().is_err());
    }

    #[test]
    fn each_rule_names_the_field() {
        let cases = [
            (r#"{}"#, "missing field `messages`"),
            (r#"{"messages":[]}"#, "messages: must hold at least 1"),
            (r#"{"messages":"x"}"#, "invalid type"),
            (
                r#"{"messages":[{"level":"nope","message":"m","source":"s"}]}"#,
                "messages[0].level: unknown level",
            ),
            (
                r#"{"messages":[{"level":"info","message":"m","source":" "}]}"#,
                "messages[0].source: must not be empty",
            ),
            (
                r#"{"messages":[{"level":"info","message":"m"}]}"#,
                "missing field `source`",
            ),
            (
                r#"{"id":"","messages":[{"level":"info","message":"m","source":"s"}]}"#,
                "id: must not be empty",
            ),
            (
                r#"{"id":"a\u0000b","messages":[{"level":"info","message":"m","source":"s"}]}"#,
                "control characters",
            ),
            (
                r#"{"messages":[{"level":"info","message":"m","source":"s","timestamp":"yesterday"}]}"#,
                "input contains invalid characters",
            ),
            (
                r#"{"messages":[{"level":"info","message":"m","source":"s","colour":"red"}]}"#,
                "unknown field `colour`",
            ),
        ];
        for (text, expected) in cases {
            let err = check(text).unwrap_err();
            assert!(err.reason.contains(expected), "{text}: got {:?}", err.reason);
        }
    }

    #[test]
    fn message_text_is_limited_to_10000_bytes() {
        let at_limit = format!(
            r#"{{"messages":[{{"level":"info","message":"{}","source":"s"}}]}}"#,
            "x".repeat(10_000)
        );
        assert!(check(&at_limit).is_ok());
        let over = at_limit.replace(&"x".repeat(10_000), &"x".repeat(10_001));
        let err = check(&over).unwrap_err();
        assert!(
            err.reason.contains("messages[0].message: 10001 bytes"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn messages_per_packet_are_limited() {
        let msg = r#"{"level":"info","message":"m","source":"s"}"#;
        let packet = |n: usize| format!(r#"{{"messages":[{}]}}"#, vec![msg; n].join(","));
        assert!(check(&packet(1000)).is_ok());
        assert!(check(&packet(1001)).unwrap_err().reason.contains("1001 messages"));
    }

    #[test]
    fn packets_are_limited_to_one_mebibyte() {
        let limits = Limits {
            max_packet_bytes: 50,
            ..Limits::default()
        };
        let err = limits.validate(3, &raw(GOOD), now()).unwrap_err();
        assert_eq!(err.index, 3);
        assert!(err.reason.contains("at most 50"), "{}", err.reason);
    }

    #[test]
    fn a_failed_packet_reports_its_id_when_readable() {
        let err = check(r#"{"id":"p-7","messages":[]}"#).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("p-7"));
        let err = check(r#"{"id":"p-8"}"#).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("p-8"));
        let err = check(r#"{"messages":[{"level":"nope","message":"m","source":"s"}]}"#).unwrap_err();
        assert_eq!(err.id, None, "no id is made up for a refused packet");
    }

    #[test]
    fn bodies_split_into_raw_packets() {
        let body = format!("[{GOOD}, 5, {GOOD}]");
        assert_eq!(split_json_array(body.as_bytes(), 1000).unwrap().len(), 3);
        assert_eq!(
            split_json_array(b"{}", 1000).unwrap_err(),
            BodyError::NotAnArray("an object")
        );
        assert!(matches!(
            split_json_array(b"[{", 1000),
            Err(BodyError::InvalidJson(_))
        ));
        assert!(matches!(
            split_json_array(b"[5] x", 1000),
            Err(BodyError::InvalidJson(_))
        ));
        let ndjson = format!("{GOOD}\n\n{GOOD}\r\n");
        assert_eq!(split_ndjson(ndjson.as_bytes(), 1000).unwrap().len(), 2);
        let bad = format!("{GOOD}\n{{oops\n");
        assert!(matches!(
            split_ndjson(bad.as_bytes(), 1000),
            Err(BodyError::InvalidNdjsonLine { line: 2, .. })
        ));
    }

    #[test]
    fn request_counts_are_limited_as_the_body_is_split() {
        assert_eq!(split_json_array(b" [ ] ", 3).unwrap_err(), BodyError::Empty);
        assert_eq!(split_ndjson(b"\n \r\n", 3).unwrap_err(), BodyError::Empty);
        assert_eq!(split_json_array(b"[1,2,3]", 3).unwrap().len(), 3);
        assert_eq!(split_ndjson(b"1\n2\n3\n", 3).unwrap().len(), 3);
        let too_many = BodyError::TooManyPackets { max: 3 };
        assert_eq!(split_json_array(b"[1,2,3,4]", 3).unwrap_err(), too_many);
        assert_eq!(split_ndjson(b"1\n2\n3\n4", 3).unwrap_err(), too_many);
        // Counting stops at the first packet too many: what follows it is
        // not read.
        assert_eq!(split_json_array(b"[1,2,3,4,oops", 3).unwrap_err(), too_many);
        assert_eq!(split_ndjson(b"1\n2\n3\n4\n{oops", 3).unwrap_err(), too_many);
        assert_eq!(
            too_many.to_string(),
            "request holds more than 3 packets: at most 3 are allowed per request"
        );
    }

    #[test]
    fn long_numbers_in_metadata_survive_a_round_trip() {
        // Found by the ingest fuzzer: without float_roundtrip, 2.4e61 came
        // back one step off after being written and read again.
        let p = check(
            r#"{"messages":[{"level":"info","message":"m","source":"s",
               "metadata":{"attempt":24000000000000000000000000000000000000000000000000000000000000,"tiny":2.0000000000000002e-19}}]}"#,
        )
        .unwrap();
        let back: LogPacket = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn packets_round_trip_in_the_analyzer_shape() {
        let p = check(GOOD).unwrap();
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""level":"ERROR""#));
        assert!(text.contains(r#""retry_count":0"#));
        let back: LogPacket = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
    }
}
