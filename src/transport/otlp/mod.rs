//! The `otlp` delivery format: a batch of packets as one OTLP/HTTP
//! `ExportLogsServiceRequest` (protobuf), the answers of an OTLP receiver
//! ([`answer`]), and natural JSON back to OTLP values ([`value`]).
//!
//! Each message becomes one `LogRecord`. Consecutive messages with the same
//! resource share one `ResourceLogs`; within it, consecutive messages with
//! the same scope share one `ScopeLogs`: a batch keeps its order.
//!
//! A message that came in over OTLP keeps its OTLP fields in its metadata
//! (`resource`, `scope`, `attributes`, `severity_number`, `trace_id`, ...);
//! it is recognised by any of `resource`, `scope`, `attributes`,
//! `time_unix_nano` or `observed_time_unix_nano`, and goes out with those
//! fields where they were. Every other message's metadata goes out as the
//! record's attributes, with `service.name` = its source as the resource.
//! Whatever a field of the record cannot hold (a `trace_id` that is not 32
//! hex digits, an unknown key) goes out as an attribute too: nothing in a
//! message is left behind. Every record also carries the attribute
//! `logs_distributor.packet_id`, its packet's id, by which a receiver can
//! drop the duplicates at-least-once delivery may bring.

pub(crate) mod answer;
mod value;

use crate::dispatch::job::Job;
use crate::model::{Level, LogMessage, LogPacket};
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use serde_json::{Map, Value as Json};

/// The attribute naming a record's packet.
pub(crate) const PACKET_ID_ATTRIBUTE: &str = "logs_distributor.packet_id";
/// The resource attribute a message's source becomes.
const SERVICE_NAME: &str = "service.name";
/// The metadata keys that mark a message as one that came in over OTLP.
const OTLP_MARKERS: [&str; 5] = [
    "resource",
    "scope",
    "attributes",
    "time_unix_nano",
    "observed_time_unix_nano",
];

/// The body of one delivery of `batch`: an `ExportLogsServiceRequest`.
pub(crate) fn write_body(batch: &[Job]) -> Vec<u8> {
    request(batch.iter().map(|job| job.packet.decode(job.retries))).encode_to_vec()
}

/// The request that carries `packets`, in order.
fn request(packets: impl IntoIterator<Item = LogPacket>) -> ExportLogsServiceRequest {
    let mut request = ExportLogsServiceRequest::default();
    for packet in packets {
        for message in packet.messages {
            push(&mut request, &packet.id, message);
        }
    }
    request
}

/// Appends the record of `message` to the request, in the last
/// `ResourceLogs` and `ScopeLogs` when it shares them.
fn push(request: &mut ExportLogsServiceRequest, packet_id: &str, message: LogMessage) {
    let mut mapped = MappedMessage::new(packet_id, message);
    let same_resource = request.resource_logs.last().is_some_and(|last| {
        last.resource.as_ref() == Some(&mapped.resource) && last.schema_url == mapped.resource_schema_url
    });
    if !same_resource {
        request.resource_logs.push(ResourceLogs {
            resource: Some(std::mem::take(&mut mapped.resource)),
            scope_logs: Vec::new(),
            schema_url: std::mem::take(&mut mapped.resource_schema_url),
        });
    }
    let resource_logs = request
        .resource_logs
        .last_mut()
        .expect("a ResourceLogs was just found or pushed");
    let same_scope = resource_logs
        .scope_logs
        .last()
        .is_some_and(|last| last.scope == mapped.scope && last.schema_url == mapped.scope_schema_url);
    if !same_scope {
        resource_logs.scope_logs.push(ScopeLogs {
            scope: mapped.scope.take(),
            log_records: Vec::new(),
            schema_url: std::mem::take(&mut mapped.scope_schema_url),
        });
    }
    resource_logs
        .scope_logs
        .last_mut()
        .expect("a ScopeLogs was just found or pushed")
        .log_records
        .push(mapped.record);
}

/// One message as OTLP: its record and where the record belongs.
struct MappedMessage {
    resource: Resource,
    resource_schema_url: String,
    scope: Option<InstrumentationScope>,
    scope_schema_url: String,
    record: LogRecord,
}

impl MappedMessage {
    fn new(packet_id: &str, message: LogMessage) -> MappedMessage {
        let mut metadata = message.metadata.unwrap_or_default();
        let from_otlp = OTLP_MARKERS.iter().any(|key| metadata.contains_key(*key));
        let time = unix_nanos(message.timestamp);
        let mut record = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            severity_number: severity_number(message.level),
            severity_text: message.level.name().to_owned(),
            ..LogRecord::default()
        };
        let mut resource = Resource::default();
        let (mut scope, mut resource_schema_url, mut scope_schema_url) = (None, String::new(), String::new());
        let (mut resource_attributes, mut body, mut attributes) = (None, None, Vec::new());
        if from_otlp {
            resource_attributes = take_object(&mut metadata, "resource").map(value::key_values);
            resource.dropped_attributes_count =
                take_u32(&mut metadata, "resource_dropped_attributes_count").unwrap_or(0);
            resource_schema_url = take_string(&mut metadata, "resource_schema_url").unwrap_or_default();
            scope = take_scope(&mut metadata);
            scope_schema_url = take_string(&mut metadata, "scope_schema_url").unwrap_or_default();
            if let Some(fields) = take_object(&mut metadata, "attributes") {
                attributes = value::key_values(fields);
            }
            take_record_fields(&mut metadata, &mut record);
            body = metadata.remove("body").map(value::any_value);
        }
        resource.attributes = resource_attributes
            .unwrap_or_else(|| vec![value::key_value(SERVICE_NAME, Json::String(message.source))]);
        // What no field of the record took.
        attributes.extend(value::key_values(metadata));
        attributes.retain(|kv| kv.key != PACKET_ID_ATTRIBUTE);
        attributes.push(value::key_value(
            PACKET_ID_ATTRIBUTE,
            Json::String(packet_id.to_owned()),
        ));
        record.attributes = attributes;
        record.body = Some(body.unwrap_or_else(|| value::any_value(Json::String(message.message))));
        MappedMessage {
            resource,
            resource_schema_url,
            scope,
            scope_schema_url,
            record,
        }
    }
}

/// The record's own fields that an OTLP message keeps in its metadata;
/// each taken out only when its value fits the field.
fn take_record_fields(metadata: &mut Map<String, Json>, record: &mut LogRecord) {
    // The record's times as they came (the message's timestamp is the same
    // instant when the record had one).
    if let Some(nanos) = take_nanos(metadata, "time_unix_nano") {
        record.time_unix_nano = nanos;
    }
    if let Some(nanos) = take_nanos(metadata, "observed_time_unix_nano") {
        record.observed_time_unix_nano = nanos;
    }
    if let Some(number) = take_if(metadata, "severity_number", |json| {
        json.as_i64().and_then(|n| i32::try_from(n).ok())
    }) {
        record.severity_number = number;
    }
    if let Some(text) = take_string(metadata, "severity_text") {
        record.severity_text = text;
    }
    if let Some(id) = take_if(metadata, "trace_id", |json| hex_bytes(json, 16)) {
        record.trace_id = id;
    }
    if let Some(id) = take_if(metadata, "span_id", |json| hex_bytes(json, 8)) {
        record.span_id = id;
    }
    if let Some(flags) = take_u32(metadata, "flags") {
        record.flags = flags;
    }
    if let Some(count) = take_u32(metadata, "dropped_attributes_count") {
        record.dropped_attributes_count = count;
    }
    if let Some(name) = take_string(metadata, "event_name") {
        record.event_name = name;
    }
}

/// The scope of an OTLP message: `{name, version, attributes,
/// dropped_attributes_count}`, each key optional; left in the metadata
/// (and so sent as an attribute) when it is not that shape.
fn take_scope(metadata: &mut Map<String, Json>) -> Option<InstrumentationScope> {
    take_if(metadata, "scope", |json| {
        let fields = json.as_object()?;
        let text = |key: &str| match fields.get(key) {
            None => Some(String::new()),
            Some(json) => json.as_str().map(str::to_owned),
        };
        let attributes = match fields.get("attributes") {
            None => Vec::new(),
            Some(json) => value::key_values(json.as_object()?.clone()),
        };
        let dropped_attributes_count = match fields.get("dropped_attributes_count") {
            None => 0,
            Some(json) => json.as_u64().and_then(|n| u32::try_from(n).ok())?,
        };
        let known = ["name", "version", "attributes", "dropped_attributes_count"];
        if fields.keys().any(|key| !known.contains(&key.as_str())) {
            return None;
        }
        Some(InstrumentationScope {
            name: text("name")?,
            version: text("version")?,
            attributes,
            dropped_attributes_count,
        })
    })
}

/// Removes `key` from the metadata when its value is an object.
fn take_object(metadata: &mut Map<String, Json>, key: &str) -> Option<Map<String, Json>> {
    if !metadata.get(key)?.is_object() {
        return None;
    }
    match metadata.remove(key) {
        Some(Json::Object(fields)) => Some(fields),
        _ => None,
    }
}

/// Removes `key` from the metadata when `read` takes its value.
fn take_if<T>(
    metadata: &mut Map<String, Json>,
    key: &str,
    read: impl FnOnce(&Json) -> Option<T>,
) -> Option<T> {
    let taken = read(metadata.get(key)?)?;
    metadata.remove(key);
    Some(taken)
}

fn take_string(metadata: &mut Map<String, Json>, key: &str) -> Option<String> {
    take_if(metadata, key, |json| json.as_str().map(str::to_owned))
}

fn take_u32(metadata: &mut Map<String, Json>, key: &str) -> Option<u32> {
    take_if(metadata, key, |json| {
        json.as_u64().and_then(|n| u32::try_from(n).ok())
    })
}

/// Nanoseconds since the epoch, written as OTLP/JSON writes an int64 (a
/// decimal string) or as a JSON integer.
fn take_nanos(metadata: &mut Map<String, Json>, key: &str) -> Option<u64> {
    take_if(metadata, key, |json| match json {
        Json::String(text) => text.parse().ok(),
        other => other.as_u64(),
    })
}

/// The bytes of a string of exactly `len` bytes in hex (either case).
fn hex_bytes(json: &Json, len: usize) -> Option<Vec<u8>> {
    let text = json.as_str()?.as_bytes();
    if text.len() != 2 * len {
        return None;
    }
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    text.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// Nanoseconds since the epoch; 0 (unknown to OTLP) before 1970.
fn unix_nanos(time: DateTime<Utc>) -> u64 {
    let nanos = i128::from(time.timestamp()) * 1_000_000_000 + i128::from(time.timestamp_subsec_nanos());
    u64::try_from(nanos).unwrap_or(if nanos < 0 { 0 } else { u64::MAX })
}

/// The OTLP severity number of a level: the first of its range, and the
/// RFC 5424 levels between them spread over the ranges' steps.
fn severity_number(level: Level) -> i32 {
    match level {
        Level::Trace => 1,
        Level::Debug => 5,
        Level::Info => 9,
        Level::Notice => 10,
        Level::Warning => 13,
        Level::Error => 17,
        Level::Critical => 21,
        Level::Alert => 22,
        Level::Emergency => 23,
    }
}

#[cfg(test)]
mod tests;
