//! One record mapped to a message by the [`RecordRules`]: message,
//! timestamp, level and source from the first of their fields that holds
//! one, every other field (nested objects included) into metadata.
//!
//! A field the mapping takes from the top level of the record leaves it;
//! one found by a dotted path (`host.name`) is copied, and its object stays
//! whole in metadata. A level that is not a known level, or a source that
//! is not a non-empty string, is passed over (it stays in metadata) and the
//! next field, then the default, is tried. A timestamp that is there but
//! does not parse makes the record invalid, as does a missing message.

use super::{kind, time, RecordRules};
use crate::model::encode::{MessageFields, Metadata};
use crate::model::validate::nesting;
use crate::model::Level;
use crate::model::MAX_METADATA_DEPTH;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// A record as a message, ready to be encoded.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Mapped {
    pub(super) level: Level,
    pub(super) message: String,
    pub(super) source: String,
    pub(super) timestamp: DateTime<Utc>,
    /// Every field the mapping did not take.
    pub(super) metadata: Map<String, Value>,
}

impl Mapped {
    pub(super) fn fields(&self) -> MessageFields<'_> {
        MessageFields {
            level: self.level,
            message: &self.message,
            source: &self.source,
            timestamp: self.timestamp,
            metadata: (!self.metadata.is_empty()).then_some(Metadata::Map(&self.metadata)),
            plain: false,
        }
    }
}

/// Why a record was not mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Not JSON at all.
    NotJson(String),
    /// JSON, but not a record the rules can map.
    Invalid(String),
}

impl Refusal {
    pub(super) fn reason(self) -> String {
        match self {
            Refusal::NotJson(reason) | Refusal::Invalid(reason) => reason,
        }
    }
}

/// Parses one record's text and maps it; `now` stands in for a missing
/// timestamp.
pub(super) fn map(
    rules: &RecordRules,
    max_message_bytes: usize,
    text: &[u8],
    now: DateTime<Utc>,
) -> Result<Mapped, Refusal> {
    let value: Value =
        serde_json::from_slice(text).map_err(|e| Refusal::NotJson(format!("not valid JSON: {e}")))?;
    let Value::Object(mut record) = value else {
        return Err(Refusal::Invalid(format!(
            "a record must be a JSON object, got {}",
            kind(&value)
        )));
    };
    let invalid = Refusal::Invalid;
    let (message_field, message) = take(&mut record, &rules.message_fields, |v| match v {
        Value::Null => None,
        Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    })
    .ok_or_else(|| {
        invalid(format!(
            "no message field: looked for {}",
            rules.message_fields.join(", ")
        ))
    })?;
    if message.len() > max_message_bytes {
        return Err(invalid(format!(
            "message (field `{message_field}`): {} bytes long: at most {max_message_bytes} are allowed",
            message.len()
        )));
    }
    let timestamp = match take(&mut record, &rules.timestamp_fields, |v| {
        (!v.is_null()).then(|| time::parse(v))
    }) {
        None => now,
        Some((_, Ok(time))) => time,
        Some((field, Err(e))) => return Err(invalid(format!("timestamp (field `{field}`): {e}"))),
    };
    let level = take(&mut record, &rules.level_fields, level_of).map_or(rules.default_level, |(_, l)| l);
    let source = take(&mut record, &rules.source_fields, |v| match v {
        Value::String(text) if !text.trim().is_empty() => Some(text.clone()),
        _ => None,
    })
    .map_or_else(|| rules.default_source.clone(), |(_, s)| s);
    let depth = record.values().map(nesting).max().unwrap_or(0) + 1;
    if depth > MAX_METADATA_DEPTH {
        return Err(invalid(format!(
            "nested {depth} levels deep: at most {MAX_METADATA_DEPTH} are allowed"
        )));
    }
    Ok(Mapped {
        level,
        message,
        source,
        timestamp,
        metadata: record,
    })
}

/// The first of `names` whose value `accept` takes, with that name: a
/// top-level field leaves the record, a dotted path into nested objects is
/// read where it is.
fn take<T>(
    record: &mut Map<String, Value>,
    names: &[String],
    accept: impl Fn(&Value) -> Option<T>,
) -> Option<(String, T)> {
    for name in names {
        if let Some(value) = record.get(name) {
            if let Some(taken) = accept(value) {
                record.remove(name);
                return Some((name.clone(), taken));
            }
            continue;
        }
        if name.contains('.') {
            if let Some(taken) = nested(record, name).and_then(&accept) {
                return Some((name.clone(), taken));
            }
        }
    }
    None
}

/// The value at a dotted path (`kubernetes.container_name`).
fn nested<'r>(record: &'r Map<String, Value>, path: &str) -> Option<&'r Value> {
    let mut steps = path.split('.');
    let mut value = record.get(steps.next()?)?;
    for step in steps {
        value = value.as_object()?.get(step)?;
    }
    Some(value)
}

/// A level by name (the model's names and aliases, any case), or by number:
/// syslog severities 0 to 7, and the 10 to 60 of pino and bunyan.
fn level_of(value: &Value) -> Option<Level> {
    match value {
        Value::String(name) => name.parse().ok(),
        Value::Number(number) => Some(match number.as_u64()? {
            0 => Level::Emergency,
            1 => Level::Alert,
            2 => Level::Critical,
            3 => Level::Error,
            4 => Level::Warning,
            5 => Level::Notice,
            6 => Level::Info,
            7 => Level::Debug,
            10 => Level::Trace,
            20 => Level::Debug,
            30 => Level::Info,
            40 => Level::Warning,
            50 => Level::Error,
            60 => Level::Critical,
            _ => return None,
        }),
        _ => None,
    }
}
