//! The encoder: a validated packet written once as JSON, byte for byte
//! what serde_json writes for the same [`LogPacket`], and kept in flight
//! as that text ([`EncodedPacket`]).

use super::rfc3339;
use super::wire::{Level, LogMessage, LogPacket};
use chrono::{DateTime, Utc};

impl LogMessage {
    fn fields(&self) -> MessageFields<'_> {
        MessageFields {
            level: self.level,
            message: &self.message,
            source: &self.source,
            timestamp: self.timestamp,
            metadata: self.metadata.as_ref().map(Metadata::Map),
            plain: false,
        }
    }
}

/// A message's metadata: a map, or the JSON text serde_json would write
/// for one (see `model::canonical`), copied as it is.
#[derive(Clone, Copy)]
pub(crate) enum Metadata<'a> {
    Map(&'a serde_json::Map<String, serde_json::Value>),
    Json(&'a str),
}

/// A valid message's fields, wherever their text lives (a [`LogMessage`],
/// or the request body itself while it is validated).
pub(super) struct MessageFields<'a> {
    pub(super) level: Level,
    pub(super) message: &'a str,
    pub(super) source: &'a str,
    pub(super) timestamp: DateTime<Utc>,
    pub(super) metadata: Option<Metadata<'a>>,
    /// Whether `message` and `source` are known to hold nothing JSON
    /// escapes (strings read from JSON without an escape): they are then
    /// copied without a look.
    pub(super) plain: bool,
}

impl MessageFields<'_> {
    /// Appends the message as JSON, byte for byte what serde_json writes
    /// for the same [`LogMessage`].
    fn write_json(&self, out: &mut Vec<u8>) {
        let write_text = if self.plain { write_plain } else { write_str };
        write_head(
            self.level,
            [self.message, self.source],
            write_text,
            self.timestamp,
            out,
        );
        match self.metadata {
            None => {}
            Some(Metadata::Map(map)) => {
                out.extend_from_slice(b",\"metadata\":");
                serde_json::to_writer(&mut *out, map).expect("metadata always serialises");
            }
            Some(Metadata::Json(json)) => {
                out.extend_from_slice(b",\"metadata\":");
                out.extend_from_slice(json.as_bytes());
            }
        }
        out.push(b'}');
    }
}

/// Appends a message's JSON up to its metadata, as serde_json writes a
/// [`LogMessage`]: `{"level":…,"message":…,"source":…,"timestamp":…`,
/// without the closing brace. What follows is `,"metadata":{…}` (keys in
/// byte order, as serde_json writes a map) or nothing, then `}`.
pub(crate) fn write_message_head(
    level: Level,
    message: &str,
    source: &str,
    timestamp: DateTime<Utc>,
    out: &mut Vec<u8>,
) {
    write_head(level, [message, source], write_str, timestamp, out);
}

/// [`write_message_head`], its `message` and `source` written by `write_text`.
fn write_head(
    level: Level,
    [message, source]: [&str; 2],
    write_text: fn(&str, &mut Vec<u8>),
    timestamp: DateTime<Utc>,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"level\":\"");
    out.extend_from_slice(level.name().as_bytes());
    out.extend_from_slice(b"\",\"message\":");
    write_text(message, out);
    out.extend_from_slice(b",\"source\":");
    write_text(source, out);
    out.extend_from_slice(b",\"timestamp\":");
    let mut text = [0u8; 30];
    match rfc3339::write(&timestamp, &mut text) {
        Some(len) => {
            out.push(b'"');
            out.extend_from_slice(&text[..len]);
            out.push(b'"');
        }
        None => serde_json::to_writer(&mut *out, &timestamp).expect("a timestamp always serialises"),
    }
}

/// Appends `text` as a JSON string, as serde_json writes it: copied when
/// nothing in it needs escaping (the usual case), otherwise escaped by
/// serde_json.
pub(crate) fn write_str(text: &str, out: &mut Vec<u8>) {
    if is_plain(text.as_bytes()) {
        write_plain(text, out);
    } else {
        serde_json::to_writer(&mut *out, text).expect("a string always serialises");
    }
}

/// Appends `text`, which holds nothing JSON escapes, as a JSON string.
fn write_plain(text: &str, out: &mut Vec<u8>) {
    debug_assert!(is_plain(text.as_bytes()), "{text:?} needs escapes");
    out.push(b'"');
    out.extend_from_slice(text.as_bytes());
    out.push(b'"');
}

/// Whether `text` holds no byte that JSON escapes (control characters,
/// `"` and `\\`).
fn is_plain(text: &[u8]) -> bool {
    find_special(text).is_none()
}

/// Where the first byte of `bytes` that ends a JSON string's run of plain
/// text is: `"`, `\` or a control character. Each block of 16 bytes is
/// checked whole (the compiler makes that a few vector instructions); the
/// block that holds one is searched eight bytes at a time.
// Always inlined into the reader, which calls it for every string (about
// thirty a packet): as calls they took about 4% of the CPU at 100 packets
// per request.
#[inline(always)]
pub(super) fn find_special(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 16;
    let special = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut blocks = bytes.chunks_exact(BLOCK);
    let mut at = 0;
    for block in &mut blocks {
        if block.iter().fold(false, |found, &b| found | special(b)) {
            let (low, high) = block.split_at(8);
            let first = match special_bytes(low) {
                0 => 8 + special_bytes(high).trailing_zeros() / 8,
                found => found.trailing_zeros() / 8,
            };
            return Some(at + first as usize);
        }
        at += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&b| special(b))
        .map(|i| at + i)
}

/// The high bit set in each byte of an eight-byte `word` that is `"`, `\`
/// or a control character, the first (lowest) one at least; bytes after it
/// may be marked too (a borrow carried up), so only the first mark counts.
fn special_bytes(word: &[u8]) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let word = u64::from_le_bytes(word.try_into().expect("eight bytes"));
    // The bytes of `word` below `n` (at most 0x80).
    let below = |word: u64, n: u64| word.wrapping_sub(ONES * n) & !word & HIGHS;
    below(word, 0x20) | below(word ^ (ONES * u64::from(b'"')), 1) | below(word ^ (ONES * u64::from(b'\\')), 1)
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
    /// which changes in flight and is written after them. Its spare
    /// capacity is at most an eighth of its length (see
    /// [`PacketEncoder::finish`]).
    fields: Vec<u8>,
}

/// The longest `,"timestamp":…` the encoder writes for a time of this era.
pub(super) const TIMESTAMP_BYTES: usize = r#","timestamp":"2026-01-01T00:00:00.000000000Z""#.len();

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

    /// The packet's messages: the JSON array they were encoded to (text,
    /// so that a reader does not check each of its strings for UTF-8 again).
    pub fn messages_json(&self) -> &str {
        let id = if is_plain(self.id.as_bytes()) {
            self.id.len() + 2
        } else {
            let mut id = Vec::with_capacity(self.id.len() + 8);
            write_str(&self.id, &mut id);
            id.len()
        };
        let start = b"\"id\":".len() + id + b",\"messages\":".len();
        std::str::from_utf8(&self.fields[start..]).expect("an encoded packet is UTF-8")
    }

    /// Appends the packet's fields and `"retry_count"`, without braces, so
    /// that a caller can add fields of its own.
    pub fn write_fields(&self, retry_count: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.fields);
        write_retry_count(retry_count, out);
    }

    /// The packet's fields but its retry count, without braces: what
    /// [`EncodedPacket::write_fields`] writes before `"retry_count"`, for a
    /// caller that sends the packet without copying it.
    pub fn fields_json(&self) -> &[u8] {
        &self.fields
    }

    /// Appends the packet as a JSON object, exactly as `LogPacket` with
    /// that `retry_count` serialises.
    pub fn write_json(&self, retry_count: u32, out: &mut Vec<u8>) {
        out.push(b'{');
        self.write_fields(retry_count, out);
        out.push(b'}');
    }

    /// The packet again, with `retry_count`: its messages read from where
    /// they are, not from a copy of the whole packet.
    pub fn decode(&self, retry_count: u32) -> LogPacket {
        LogPacket {
            id: self.id.clone(),
            messages: serde_json::from_str(self.messages_json()).expect("an encoded packet always decodes"),
            retry_count,
        }
    }
}

/// Appends `,"retry_count":N`: what follows a packet's fields.
pub fn write_retry_count(retry_count: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(b",\"retry_count\":");
    out.extend_from_slice(itoa::Buffer::new().format(retry_count).as_bytes());
}

/// Writes an [`EncodedPacket`] message by message.
pub(crate) struct PacketEncoder {
    id: String,
    messages: usize,
    out: Vec<u8>,
}

impl PacketEncoder {
    /// `text_bytes`: about how long the messages will be, to size the buffer.
    pub(crate) fn new(id: String, text_bytes: usize) -> PacketEncoder {
        let mut out = Vec::with_capacity(id.len() + text_bytes + 32);
        out.extend_from_slice(b"\"id\":");
        write_str(&id, &mut out);
        out.extend_from_slice(b",\"messages\":[");
        PacketEncoder { id, messages: 0, out }
    }

    pub(super) fn push(&mut self, message: &MessageFields<'_>) {
        if self.messages > 0 {
            self.out.push(b',');
        }
        message.write_json(&mut self.out);
        self.messages += 1;
    }

    /// Pushes `message` if the packet stays within `max_bytes` (its
    /// [`EncodedPacket::json_bytes`] once finished); otherwise leaves the
    /// packet as it was and answers the bytes it would have taken.
    pub(super) fn push_within(&mut self, message: &MessageFields<'_>, max_bytes: usize) -> Result<(), usize> {
        let before = self.out.len();
        self.push(message);
        let bytes = self.json_bytes();
        if bytes > max_bytes {
            self.out.truncate(before);
            self.messages -= 1;
            return Err(bytes);
        }
        Ok(())
    }

    /// Appends a message already written as JSON: [`write_message_head`],
    /// then its metadata if any, then `}`.
    pub(crate) fn push_json(&mut self, message: &[u8]) {
        if self.messages > 0 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(message);
        self.messages += 1;
    }

    pub(crate) fn message_count(&self) -> usize {
        self.messages
    }

    /// What [`EncodedPacket::json_bytes`] will be once finished.
    pub(crate) fn json_bytes(&self) -> usize {
        self.out.len() + 1 + RETRY_COUNT_BYTES
    }

    /// The packet. Its buffer keeps a little spare room rather than be
    /// moved to a smaller one: shrinking across the allocator's size
    /// classes copies it, and that copy was a few percent of the CPU.
    pub(crate) fn finish(mut self) -> EncodedPacket {
        self.out.push(b']');
        if self.out.capacity() - self.out.len() > self.out.len() / 8 {
            self.out.shrink_to_fit();
        }
        EncodedPacket {
            id: self.id,
            messages: self.messages,
            fields: self.out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Limits;
    use serde_json::value::RawValue;

    /// Spare room in an encoded packet's buffer counts against memory but
    /// not against the queue's byte limit: it stays within an eighth.
    #[test]
    fn an_encoded_packet_keeps_at_most_an_eighth_of_spare_room() {
        let spaced =
            r#"{ "id" : "a",   "messages" : [ { "level" : "INFO" , "message" : "m" , "source" : "s" } ] }"#;
        let pretty = serde_json::to_string_pretty(&serde_json::json!({
            "messages": [{"level": "WARN", "message": "x".repeat(300), "source": "api", "metadata": {"k": [1, 2, {"d": null}]}}],
        }))
        .unwrap();
        let usual = r#"{"id":"b","messages":[{"level":"INFO","message":"served","source":"web","timestamp":"2026-01-01T00:00:00Z"}]}"#;
        for text in [spaced, &pretty, usual] {
            let raw = RawValue::from_string(text.to_owned()).unwrap();
            let encoded = Limits::default()
                .validate(0, raw.as_ref().into(), chrono::Utc::now())
                .unwrap();
            let (length, capacity) = (encoded.fields.len(), encoded.fields.capacity());
            assert!(
                capacity - length <= length / 8,
                "{capacity} bytes held for {length} of {text}"
            );
        }
    }
}
