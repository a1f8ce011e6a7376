//! The `ndjson` delivery body: one line per message, a flat JSON object,
//! the mirror of what `POST /api/v1/records` takes in. What Vector's
//! `http_server` source, Logstash's `http` input (with the `json_lines`
//! codec) and other NDJSON receivers take.
//!
//! Each line holds, in this order: `message`, `timestamp` (RFC 3339),
//! `level`, `source`, `packet_id` (the packet's id, so that a receiver can
//! drop what it sees again), `retry_count`, then the message's metadata
//! keys at the top level, in the order they were kept (sorted by name). A
//! metadata key named like one of those fields (or `metadata`) stays under
//! a `metadata` object at the end of the line, so that no field is ever
//! written twice.

use super::messages::for_each_message;
use crate::dispatch::job::Job;
use crate::model::write_retry_count;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The names of a line's own fields: a metadata key among them stays
/// under `metadata`.
const LINE_FIELDS: [&str; 7] = [
    "message",
    "timestamp",
    "level",
    "source",
    "packet_id",
    "retry_count",
    "metadata",
];

/// One message as the encoder wrote it, its values left as JSON text.
#[derive(Deserialize)]
struct MessageText<'a> {
    #[serde(borrow)]
    level: &'a RawValue,
    #[serde(borrow)]
    message: &'a RawValue,
    #[serde(borrow)]
    source: &'a RawValue,
    #[serde(borrow)]
    timestamp: &'a RawValue,
    #[serde(default, borrow)]
    metadata: Option<Entries<'a>>,
}

/// An object's entries in their order, values as JSON text.
struct Entries<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> Visitor<'de> for InOrder<'a> {
            type Value = Entries<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }

            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Entries<'a>, M::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some((key, value)) = map.next_entry::<Cow<'de, str>, &'de RawValue>()? {
                    entries.push((key, value));
                }
                Ok(Entries(entries))
            }
        }

        deserializer.deserialize_map(InOrder(std::marker::PhantomData))
    }
}

/// The body of one delivery of `batch`: every message of every packet, in
/// order, one line each.
pub(super) fn body(batch: &[Job]) -> Vec<u8> {
    let size: usize = batch.iter().map(|job| job.packet.json_bytes() * 2).sum();
    let mut out = Vec::with_capacity(size);
    let mut packet_id = Vec::new();
    for job in batch {
        packet_id.clear();
        serde_json::to_writer(&mut packet_id, job.packet.id()).expect("a string always serialises");
        for_each_message(&job.packet, |message: MessageText| {
            write_line(&message, &packet_id, job.retries, &mut out)
        });
    }
    out
}

fn write_line(message: &MessageText<'_>, packet_id: &[u8], retry_count: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"message\":");
    out.extend_from_slice(message.message.get().as_bytes());
    out.extend_from_slice(b",\"timestamp\":");
    out.extend_from_slice(message.timestamp.get().as_bytes());
    out.extend_from_slice(b",\"level\":");
    out.extend_from_slice(message.level.get().as_bytes());
    out.extend_from_slice(b",\"source\":");
    out.extend_from_slice(message.source.get().as_bytes());
    out.extend_from_slice(b",\"packet_id\":");
    out.extend_from_slice(packet_id);
    write_retry_count(retry_count, out);
    let mut kept_apart = Vec::new();
    for (key, value) in message.metadata.iter().flat_map(|entries| &entries.0) {
        if LINE_FIELDS.contains(&key.as_ref()) {
            kept_apart.push((key, value));
            continue;
        }
        out.push(b',');
        write_entry(key, value, out);
    }
    if !kept_apart.is_empty() {
        out.extend_from_slice(b",\"metadata\":{");
        for (n, (key, value)) in kept_apart.into_iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            write_entry(key, value, out);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b"}\n");
}

fn write_entry(key: &str, value: &RawValue, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, key).expect("a string always serialises");
    out.push(b':');
    out.extend_from_slice(value.get().as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EncodedPacket, Level, LogMessage, LogPacket};
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn job(packet: &LogPacket, retries: u32) -> Job {
        Job::new(0, Arc::new(EncodedPacket::new(packet)), retries)
    }

    fn message(text: &str, metadata: Value) -> LogMessage {
        LogMessage {
            level: Level::Warning,
            message: text.into(),
            source: "api".into(),
            timestamp: "2024-12-05T09:13:20.123Z".parse().unwrap(),
            metadata: metadata.as_object().cloned(),
        }
    }

    fn lines(body: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(body).unwrap();
        assert!(text.ends_with('\n'), "every line ends with a newline");
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    #[test]
    fn each_message_is_a_flat_line_with_its_packet_id() {
        let first = LogPacket {
            id: "p-1".into(),
            messages: vec![
                message(
                    "line \"one\"\nwith a newline",
                    json!({"user": "u1", "http": {"status": 500}}),
                ),
                message("two", Value::Null),
            ],
            retry_count: 0,
        };
        let second = LogPacket {
            id: "p-\u{e9}".into(),
            messages: vec![message("three", json!({"n": 1.5}))],
            retry_count: 0,
        };
        let body = body(&[job(&first, 2), job(&second, 0)]);
        assert_eq!(
            body.iter().filter(|&&b| b == b'\n').count(),
            3,
            "one line per message"
        );
        assert_eq!(
            lines(&body),
            [
                json!({"message": "line \"one\"\nwith a newline", "timestamp": "2024-12-05T09:13:20.123Z",
                       "level": "WARNING", "source": "api", "packet_id": "p-1", "retry_count": 2,
                       "user": "u1", "http": {"status": 500}}),
                json!({"message": "two", "timestamp": "2024-12-05T09:13:20.123Z", "level": "WARNING",
                       "source": "api", "packet_id": "p-1", "retry_count": 2}),
                json!({"message": "three", "timestamp": "2024-12-05T09:13:20.123Z", "level": "WARNING",
                       "source": "api", "packet_id": "p-\u{e9}", "retry_count": 0, "n": 1.5}),
            ]
        );
        let first_line = std::str::from_utf8(&body).unwrap().lines().next().unwrap();
        assert!(
            first_line.starts_with(
                r#"{"message":"line \"one\"\nwith a newline","timestamp":"2024-12-05T09:13:20.123Z","level":"WARNING","source":"api","packet_id":"p-1","retry_count":2,"#
            ),
            "the fields in their documented order: {first_line}"
        );
    }

    #[test]
    fn metadata_keys_named_like_a_field_stay_under_metadata() {
        let packet = LogPacket {
            id: "p".into(),
            messages: vec![message(
                "m",
                json!({"level": "custom", "packet_id": "theirs", "metadata": {"x": 1}, "zone": "eu"}),
            )],
            retry_count: 0,
        };
        let line = lines(&body(&[job(&packet, 0)])).remove(0);
        assert_eq!(line["level"], "WARNING");
        assert_eq!(line["packet_id"], "p");
        assert_eq!(line["zone"], "eu");
        assert_eq!(
            line["metadata"],
            json!({"level": "custom", "packet_id": "theirs", "metadata": {"x": 1}})
        );
    }
}
