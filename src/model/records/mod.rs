//! Log shippers' JSON records (`POST /api/v1/records`): Vector, Fluent Bit,
//! Logstash and syslog-style flat objects, turned into packets.
//!
//! A body is cut into records without parsing them ([`scan`]: a JSON
//! array, objects one after another, one object, or NDJSON lines); each
//! record is parsed and mapped on its own by the [`RecordRules`]
//! ([`fields`]), so that a bad record spoils none of its neighbours; the
//! mapped records go into packets in order ([`pack`]). A record that cannot
//! be mapped is an [`InvalidRecord`], kept with its text and the reason.
//!
//! What a request may take is bounded by the queue it must fit in
//! ([`QueueBounds`]): mapping stops at the first packet or byte past it, so
//! a body of millions of tiny records costs no more than the queue holds.

mod fields;
mod pack;
mod scan;
#[cfg(test)]
mod tests;
mod time;

pub use scan::{pieces, Framing, Piece};

use super::{EncodedPacket, LargerThanQueue, Level, Limits, LogMessage, LogPacket, QueueBounds};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Messages in a packet of records when `records.max_messages_per_packet`
/// is unset (and `limits.max_messages_per_packet` allows as many).
pub const DEFAULT_MESSAGES_PER_PACKET: usize = 100;

/// What happens to records that cannot be mapped.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum InvalidRecords {
    /// Kept in the dead letter, each with its reason; the request's valid
    /// records are accepted (200).
    #[default]
    DeadLetter,
    /// The whole request is refused (400) naming the first invalid record;
    /// nothing is kept.
    Refuse,
}

/// How records map to messages, and how they are packed (the `records`
/// section of the configuration).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordRules {
    /// Where the message text is, first match wins.
    pub message_fields: Vec<String>,
    /// Where the timestamp is: RFC 3339 text or a number since the epoch.
    pub timestamp_fields: Vec<String>,
    /// Where the level is: a name or alias, or a syslog or pino number.
    pub level_fields: Vec<String>,
    /// Where the source is: a non-empty string.
    pub source_fields: Vec<String>,
    /// The level of a record without one.
    pub default_level: Level,
    /// The source of a record without one.
    pub default_source: String,
    /// Most messages in a packet made of records; unset:
    /// [`DEFAULT_MESSAGES_PER_PACKET`], or `limits.max_messages_per_packet`
    /// when that is lower (see [`RecordRules::messages_per_packet`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages_per_packet: Option<usize>,
    /// What happens to a record that cannot be mapped.
    pub invalid: InvalidRecords,
}

impl Default for RecordRules {
    fn default() -> Self {
        let names = |names: &[&str]| names.iter().map(|name| name.to_string()).collect();
        RecordRules {
            message_fields: names(&["message", "log", "msg"]),
            timestamp_fields: names(&["timestamp", "@timestamp", "time", "date"]),
            level_fields: names(&["level", "severity", "lvl"]),
            source_fields: names(&[
                "source",
                "service",
                "service.name",
                "host",
                "host.name",
                "kubernetes.container_name",
            ]),
            default_level: Level::Info,
            default_source: "unknown".into(),
            max_messages_per_packet: None,
            invalid: InvalidRecords::DeadLetter,
        }
    }
}

impl RecordRules {
    /// Every rule the types cannot say; an error names the key (under
    /// `records.`) and the reason.
    pub fn check(&self, limits: &Limits) -> Result<(), String> {
        if self.message_fields.is_empty() {
            return Err("message_fields: name at least one field".into());
        }
        for (key, names) in [
            ("message_fields", &self.message_fields),
            ("timestamp_fields", &self.timestamp_fields),
            ("level_fields", &self.level_fields),
            ("source_fields", &self.source_fields),
        ] {
            if let Some(bad) = names.iter().find(|name| name.split('.').any(str::is_empty)) {
                return Err(format!(
                    "{key}: {bad:?} is not a field name or a dotted path such as host.name"
                ));
            }
        }
        if self.default_source.trim().is_empty() {
            return Err("default_source: must not be empty".into());
        }
        match self.max_messages_per_packet {
            Some(max) if !(1..=limits.max_messages_per_packet).contains(&max) => Err(format!(
                "max_messages_per_packet: {max} is out of range 1..={} (limits.max_messages_per_packet)",
                limits.max_messages_per_packet
            )),
            _ => Ok(()),
        }
    }

    /// The most messages a packet of records holds: the configured number,
    /// or when none is, the default within `limits.max_messages_per_packet`.
    pub fn messages_per_packet(&self, limits: &Limits) -> usize {
        self.max_messages_per_packet
            .unwrap_or(DEFAULT_MESSAGES_PER_PACKET)
            .min(limits.max_messages_per_packet)
    }
}

/// Why a whole body of records was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("request holds no record: send at least 1")]
    Empty,
    #[error("body holds no JSON: record 0: {first}")]
    NotJson { first: String },
    /// The records, as packets and dead letters, would not fit in the
    /// whole queue.
    #[error("the records make {0}")]
    LargerThanQueue(#[from] LargerThanQueue),
}

/// A record that could not be mapped: where it was, why, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidRecord {
    /// Position in the request (0-based).
    pub index: usize,
    pub reason: String,
    /// The record as it was sent (bytes that are not UTF-8 replaced).
    pub text: String,
}

/// Room a dead-letter entry takes besides the record's text and reason.
const DEAD_LETTER_ENTRY_BYTES: usize = 320;

impl InvalidRecord {
    /// `final_error` of its dead-letter entry.
    pub fn final_error(&self) -> String {
        format!("invalid record {}: {}", self.index, self.reason)
    }

    /// The packet its dead-letter entry keeps: one message whose text is
    /// the record as it was sent, with the reason and position in metadata
    /// (`invalid_record`), the default level and source, received `now`.
    pub fn dead_letter_packet(&self, rules: &RecordRules, now: DateTime<Utc>) -> LogPacket {
        let metadata = json!({"invalid_record": {"index": self.index, "error": self.reason}});
        LogPacket {
            id: uuid::Uuid::new_v4().to_string(),
            messages: vec![LogMessage {
                level: rules.default_level,
                message: self.text.clone(),
                source: rules.default_source.clone(),
                timestamp: now,
                metadata: metadata.as_object().cloned(),
            }],
            retry_count: 0,
        }
    }

    fn bytes(&self) -> usize {
        self.text.len() + self.reason.len() + DEAD_LETTER_ENTRY_BYTES
    }
}

/// A body's records as packets, and the records that could not be.
#[derive(Debug)]
pub struct Packed {
    /// Records in the body.
    pub total: usize,
    /// Records in `packets`.
    pub accepted: usize,
    pub packets: Vec<EncodedPacket>,
    /// In the body's order.
    pub invalid: Vec<InvalidRecord>,
}

/// Maps every record of `body` and packs the valid ones, in order, within
/// `bounds` (the invalid records' dead-letter entries count as bytes);
/// `now` stands in for missing timestamps.
pub fn pack(
    body: &[u8],
    framing: Framing,
    rules: &RecordRules,
    limits: &Limits,
    bounds: QueueBounds,
    now: DateTime<Utc>,
) -> Result<Packed, RecordsError> {
    let mut packer = pack::Packer::new(rules.messages_per_packet(limits), limits.max_packet_bytes);
    let mut invalid = Vec::new();
    let mut invalid_bytes = 0;
    let (mut total, mut accepted, mut json_values) = (0, 0, 0);
    for (index, piece) in pieces(body, framing).enumerate() {
        total += 1;
        let (text, refused) = match piece {
            Piece::Record(text) => {
                let mapped = fields::map(rules, limits.max_message_bytes, text, now);
                if !matches!(mapped, Err(fields::Refusal::NotJson(_))) {
                    json_values += 1;
                }
                match mapped
                    .map_err(fields::Refusal::reason)
                    .and_then(|m| packer.push(&m))
                {
                    Ok(()) => {
                        accepted += 1;
                        (text, None)
                    }
                    Err(reason) => (text, Some(reason)),
                }
            }
            Piece::Broken { text, reason } => (text, Some(reason.to_string())),
        };
        if let Some(reason) = refused {
            let record = InvalidRecord {
                index,
                reason,
                text: String::from_utf8_lossy(text).into_owned(),
            };
            invalid_bytes += record.bytes();
            invalid.push(record);
        }
        bounds.check(packer.packet_count(), packer.bytes() + invalid_bytes)?;
    }
    if total == 0 {
        return Err(RecordsError::Empty);
    }
    if json_values == 0 {
        return Err(RecordsError::NotJson {
            first: invalid.swap_remove(0).reason,
        });
    }
    Ok(Packed {
        total,
        accepted,
        packets: packer.finish(),
        invalid,
    })
}

/// What kind of JSON value `value` is, for errors.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
