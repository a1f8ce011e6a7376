//! Validation: one raw packet parsed, checked against the [`Limits`] and
//! encoded, or refused with a [`PacketError`] naming the field at fault.

use super::encode::{EncodedPacket, MessageFields, Metadata, PacketEncoder, TIMESTAMP_BYTES};
use super::incoming::{IncomingMessage, IncomingPacket, MetadataText, WholePacket, MAX_METADATA_DEPTH};
use super::object::Object;
use super::packet_reader::{self, ReadPacket};
use super::rfc3339::Timestamp;
use super::split::RawPacket;
use super::wire::Level;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

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
    /// Most packets in one request; unset: as many as `queue.max_in_flight`
    /// holds (a request is bounded by its bytes, not by a count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_packets_per_request: Option<usize>,
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
            max_packets_per_request: None,
            max_messages_per_packet: 1000,
            max_message_bytes: 10_000,
            max_packet_bytes: 1024 * 1024,
            max_id_bytes: 256,
        }
    }
}

impl Limits {
    /// Parses and validates one raw packet and encodes it (retry count 0);
    /// `now` fills missing timestamps and a fresh UUIDv4 fills a missing id.
    /// A packet read already as the body was split is not read again.
    pub fn validate(
        &self,
        index: usize,
        packet: RawPacket<'_>,
        now: DateTime<Utc>,
    ) -> Result<EncodedPacket, PacketError> {
        let fail = |id: Option<String>, reason: String| PacketError { index, id, reason };
        let (text, read) = packet.into_parts();
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
        if let Some(validated) = self.validate_whole(text, read, now) {
            return validated.map_err(|(id, reason)| fail(id, reason));
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
            let metadata = message.metadata.as_ref().map(Metadata::Map);
            let fields = self
                .validate_message(&message, metadata, now)
                .map_err(|r| refuse(format!("messages[{i}].{r}")))?;
            encoder.push(&fields);
        }
        Ok(encoder.finish())
    }

    /// A well-formed packet (the usual case), read in one pass (by hand
    /// when it has the usual shape, see `packet_reader`, else by serde_json)
    /// unless `read` already, and encoded straight from the request's text:
    /// its metadata copied as it is when canonical, else read into a map
    /// and written again. `None` when it is not well-formed, or its
    /// metadata is too deep: the caller then goes message by message to
    /// name the field at fault.
    fn validate_whole(
        &self,
        text: &str,
        read: Option<ReadPacket<'_>>,
        now: DateTime<Utc>,
    ) -> Option<Result<EncodedPacket, (Option<String>, String)>> {
        if let Some(packet) = read.or_else(|| packet_reader::read(text)) {
            let messages = packet.messages.iter().map(|m| (m, m.metadata));
            return self.encode_whole(text.len(), packet.id.as_deref(), messages, now);
        }
        let whole = serde_json::from_str::<WholePacket>(text).ok()?;
        let messages = whole
            .messages
            .iter()
            .map(|Object(m)| (m, m.metadata.map(|raw| MetadataText::of(raw.get()))));
        self.encode_whole(text.len(), whole.id.as_deref(), messages, now)
    }

    /// [`Limits::validate_whole`] once the packet is read: its messages
    /// each with their metadata's text.
    fn encode_whole<'m, M: 'm>(
        &self,
        text_bytes: usize,
        id: Option<&str>,
        messages: impl ExactSizeIterator<Item = (&'m IncomingMessage<'m, M>, Option<MetadataText<'m>>)>,
        now: DateTime<Utc>,
    ) -> Option<Result<EncodedPacket, (Option<String>, String)>> {
        let refuse = |reason: String| Some(Err((id.map(str::to_owned), reason)));
        if let Err(reason) = self.check_head(id, messages.len()) {
            return refuse(reason);
        }
        // Room for the timestamps the encoder writes where the client gave
        // none, so that the buffer is not grown (copied) midway.
        let room = text_bytes + messages.len() * TIMESTAMP_BYTES;
        let mut encoder = PacketEncoder::new(id_or_new(id), room);
        for (i, (message, metadata)) in messages.enumerate() {
            let parsed;
            let metadata = match metadata {
                None => None,
                Some(MetadataText::Canonical(json)) => Some(Metadata::Json(json)),
                Some(MetadataText::Other(json)) => {
                    parsed = serde_json::from_str(json).ok()?;
                    if map_depth(&parsed) > MAX_METADATA_DEPTH {
                        return None;
                    }
                    Some(Metadata::Map(&parsed))
                }
            };
            match self.validate_message(message, metadata, now) {
                Ok(fields) => encoder.push(&fields),
                Err(reason) => return refuse(format!("messages[{i}].{reason}")),
            }
        }
        Some(Ok(encoder.finish()))
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
        if is_blank(id) {
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

    /// Checks a message whose `metadata` is read already (and, as JSON
    /// text, within [`MAX_METADATA_DEPTH`]).
    fn validate_message<'m, M>(
        &self,
        m: &'m IncomingMessage<'_, M>,
        metadata: Option<Metadata<'m>>,
        now: DateTime<Utc>,
    ) -> Result<MessageFields<'m>, String> {
        if let Some(Metadata::Map(map)) = metadata {
            let depth = map_depth(map);
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
        if is_blank(&m.source) {
            return Err("source: must not be empty".into());
        }
        Ok(MessageFields {
            level,
            message: &m.message,
            source: &m.source,
            timestamp: m.timestamp.map_or(now, |Timestamp(time)| time),
            metadata,
            plain: matches!((&m.message, &m.source), (Cow::Borrowed(_), Cow::Borrowed(_))),
        })
    }
}

/// Whether `text` is empty or all whitespace. A printable ASCII first byte
/// (the usual case) answers without looking further.
fn is_blank(text: &str) -> bool {
    match text.as_bytes().first() {
        Some(first) if first.is_ascii_graphic() => false,
        _ => text.trim().is_empty(),
    }
}

/// The client's id, or a fresh UUIDv4 when it gave none.
fn id_or_new(id: Option<&str>) -> String {
    id.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// Levels of arrays and objects in a metadata map (1 when it holds only
/// scalars).
fn map_depth(map: &serde_json::Map<String, serde_json::Value>) -> usize {
    map.values().map(nesting).max().unwrap_or(0) + 1
}

/// Levels of arrays and objects in `value` (a scalar is 0).
pub(super) fn nesting(value: &serde_json::Value) -> usize {
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
