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
mod encode;
mod metadata;
mod value;

use super::messages::for_each_message;
use crate::dispatch::job::Job;
use crate::model::{EncodedPacket, Level, Timestamp};
use chrono::{DateTime, Utc};
use metadata::{Field, Metadata};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The attribute naming a record's packet.
pub(crate) const PACKET_ID_ATTRIBUTE: &str = "logs_distributor.packet_id";
/// The resource attribute a message's source becomes.
const SERVICE_NAME: &str = "service.name";

/// The body of one delivery of `batch`: an `ExportLogsServiceRequest`.
pub(crate) fn write_body(batch: &[Job]) -> Vec<u8> {
    encode::encode(&request(batch.iter().map(|job| &*job.packet)))
}

/// The request that carries `packets`, in order, each message read from
/// the packet's encoded text where it is.
fn request<'a>(packets: impl IntoIterator<Item = &'a EncodedPacket>) -> ExportLogsServiceRequest {
    let mut builder = RequestBuilder::default();
    for packet in packets {
        for_each_message(packet, |message| builder.push(packet.id(), message));
    }
    builder.request
}

/// A message of an encoded packet, its strings and metadata values
/// borrowed from the packet's text: the fields of `LogMessage`.
#[derive(Deserialize)]
struct EncodedMessage<'a> {
    level: Level,
    #[serde(borrow)]
    message: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    timestamp: Timestamp,
    #[serde(default, borrow)]
    metadata: Option<Metadata<'a>>,
}

/// What a message's resource is made of: two messages made of the same
/// have the same resource, without building it.
#[derive(PartialEq)]
struct ResourceSource<'a> {
    attributes: ResourceAttributes<'a>,
    dropped_attributes_count: u32,
    schema_url: String,
}

/// Where a resource's attributes come from.
enum ResourceAttributes<'a> {
    /// The message's `resource` object.
    Object(&'a RawValue),
    /// The message's source, as `service.name`, when it had none.
    Source(Cow<'a, str>),
}

impl PartialEq for ResourceAttributes<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Object(a), Self::Object(b)) => a.get() == b.get(),
            (Self::Source(a), Self::Source(b)) => a == b,
            _ => false,
        }
    }
}

impl ResourceSource<'_> {
    fn resource(&self) -> Resource {
        let attributes = match &self.attributes {
            ResourceAttributes::Object(json) => value::key_values(json).expect("a resource is an object"),
            ResourceAttributes::Source(source) => vec![value::key_value(
                SERVICE_NAME,
                value::string_value(source.as_ref()),
            )],
        };
        Resource {
            attributes,
            dropped_attributes_count: self.dropped_attributes_count,
            ..Resource::default()
        }
    }
}

/// Builds a request message by message.
#[derive(Default)]
struct RequestBuilder<'a> {
    request: ExportLogsServiceRequest,
    /// What the last `ResourceLogs`' resource was made of.
    last_resource: Option<ResourceSource<'a>>,
    /// The text of the last `ScopeLogs`' scope (`None` for no scope).
    last_scope: Option<&'a str>,
    scopes: ScopeMemo<'a>,
}

/// The last scope text read and the scope it reads as (`None`: not a
/// scope's shape): the messages of a batch mostly share one, read once.
#[derive(Default)]
struct ScopeMemo<'a> {
    last: Option<(&'a str, Option<InstrumentationScope>)>,
}

impl<'a> ScopeMemo<'a> {
    /// `json` when it reads as a scope.
    fn check(&mut self, json: &'a RawValue) -> Option<&'a RawValue> {
        self.read(json).is_some().then_some(json)
    }

    /// The scope `json` reads as.
    fn read(&mut self, json: &'a RawValue) -> Option<&InstrumentationScope> {
        if self.last.as_ref().is_none_or(|(text, _)| *text != json.get()) {
            self.last = Some((json.get(), scope_of(json)));
        }
        self.last.as_ref().and_then(|(_, scope)| scope.as_ref())
    }
}

impl<'a> RequestBuilder<'a> {
    /// Appends the record of `message`, in the last `ResourceLogs` and
    /// `ScopeLogs` when it shares them.
    fn push(&mut self, packet_id: &str, message: EncodedMessage<'a>) {
        let mapped = MappedMessage::new(packet_id, message, &mut self.scopes);
        if self.last_resource.as_ref() != Some(&mapped.resource) {
            let resource = mapped.resource.resource();
            let same_resource = self.request.resource_logs.last().is_some_and(|last| {
                last.resource.as_ref() == Some(&resource) && last.schema_url == mapped.resource.schema_url
            });
            if !same_resource {
                self.request.resource_logs.push(ResourceLogs {
                    resource: Some(resource),
                    scope_logs: Vec::new(),
                    schema_url: mapped.resource.schema_url.clone(),
                });
            }
            self.last_resource = Some(mapped.resource);
        }
        let resource_logs = self
            .request
            .resource_logs
            .last_mut()
            .expect("a ResourceLogs was just found or pushed");
        let scope_text = mapped.scope.map(RawValue::get);
        let same_scope = resource_logs.scope_logs.last().is_some_and(|last| {
            last.schema_url == mapped.scope_schema_url
                && (self.last_scope == scope_text
                    || last.scope.as_ref() == mapped.scope.and_then(|json| self.scopes.read(json)))
        });
        if !same_scope {
            resource_logs.scope_logs.push(ScopeLogs {
                scope: mapped.scope.and_then(|json| self.scopes.read(json).cloned()),
                log_records: Vec::new(),
                schema_url: mapped.scope_schema_url,
            });
        }
        self.last_scope = scope_text;
        resource_logs
            .scope_logs
            .last_mut()
            .expect("a ScopeLogs was just found or pushed")
            .log_records
            .push(mapped.record);
    }
}

/// One message as OTLP: its record and where the record belongs.
struct MappedMessage<'a> {
    resource: ResourceSource<'a>,
    /// The text of its scope, when it has one.
    scope: Option<&'a RawValue>,
    scope_schema_url: String,
    record: LogRecord,
}

impl<'a> MappedMessage<'a> {
    fn new(packet_id: &str, message: EncodedMessage<'a>, scopes: &mut ScopeMemo<'a>) -> MappedMessage<'a> {
        let mut metadata = message.metadata.unwrap_or_default();
        let time = unix_nanos(message.timestamp.0);
        let mut record = LogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: time,
            severity_number: severity_number(message.level),
            severity_text: message.level.name().to_owned(),
            ..LogRecord::default()
        };
        let mut resource = ResourceSource {
            attributes: ResourceAttributes::Source(message.source),
            dropped_attributes_count: 0,
            schema_url: String::new(),
        };
        let (mut scope, mut scope_schema_url) = (None, String::new());
        let (mut body, mut attributes) = (None, Vec::new());
        if metadata.came_over_otlp() {
            if let Some(object) =
                metadata.take_if(Field::Resource, |json| value::is_object(json).then_some(json))
            {
                resource.attributes = ResourceAttributes::Object(object);
            }
            resource.dropped_attributes_count = metadata
                .take_if(Field::ResourceDroppedAttributesCount, parse::<u32>)
                .unwrap_or(0);
            resource.schema_url = metadata
                .take_if(Field::ResourceSchemaUrl, parse::<String>)
                .unwrap_or_default();
            scope = metadata.take_if(Field::Scope, |json| scopes.check(json));
            scope_schema_url = metadata
                .take_if(Field::ScopeSchemaUrl, parse::<String>)
                .unwrap_or_default();
            if let Some(fields) = metadata.take_if(Field::Attributes, value::key_values) {
                attributes = fields;
            }
            take_record_fields(&mut metadata, &mut record);
            body = metadata.take_if(Field::Body, |json| Some(value::any_value(json)));
        }
        // What no field of the record took.
        attributes.extend(
            metadata
                .into_rest()
                .map(|(key, json)| value::key_value(key, value::any_value(json))),
        );
        attributes.retain(|kv| kv.key != PACKET_ID_ATTRIBUTE);
        attributes.push(value::key_value(
            PACKET_ID_ATTRIBUTE,
            value::string_value(packet_id),
        ));
        record.attributes = attributes;
        record.body = Some(body.unwrap_or_else(|| value::string_value(message.message)));
        MappedMessage {
            resource,
            scope,
            scope_schema_url,
            record,
        }
    }
}

/// The record's own fields that an OTLP message keeps in its metadata;
/// each taken out only when its value fits the field.
fn take_record_fields(metadata: &mut Metadata<'_>, record: &mut LogRecord) {
    // The record's times as they came (the message's timestamp is the same
    // instant when the record had one).
    if let Some(nanos) = metadata.take_if(Field::TimeUnixNano, nanos) {
        record.time_unix_nano = nanos;
    }
    if let Some(nanos) = metadata.take_if(Field::ObservedTimeUnixNano, nanos) {
        record.observed_time_unix_nano = nanos;
    }
    if let Some(number) = metadata.take_if(Field::SeverityNumber, parse::<i32>) {
        record.severity_number = number;
    }
    if let Some(text) = metadata.take_if(Field::SeverityText, parse::<String>) {
        record.severity_text = text;
    }
    if let Some(id) = metadata.take_if(Field::TraceId, |json| hex_bytes(json, 16)) {
        record.trace_id = id;
    }
    if let Some(id) = metadata.take_if(Field::SpanId, |json| hex_bytes(json, 8)) {
        record.span_id = id;
    }
    if let Some(flags) = metadata.take_if(Field::Flags, parse::<u32>) {
        record.flags = flags;
    }
    if let Some(count) = metadata.take_if(Field::DroppedAttributesCount, parse::<u32>) {
        record.dropped_attributes_count = count;
    }
    if let Some(name) = metadata.take_if(Field::EventName, parse::<String>) {
        record.event_name = name;
    }
}

/// The scope of an OTLP message: `{name, version, attributes,
/// dropped_attributes_count}`, each key optional; `None` (and so left in
/// the metadata, sent as an attribute) when it is not that shape.
fn scope_of(json: &RawValue) -> Option<InstrumentationScope> {
    let fields: Metadata<'_> = parse(json)?;
    let known = ["name", "version", "attributes", "dropped_attributes_count"];
    if fields.keys().any(|key| !known.contains(&key)) {
        return None;
    }
    let text = |key: &str| match fields.value_of(key) {
        None => Some(String::new()),
        Some(json) => parse::<String>(json),
    };
    let attributes: Vec<KeyValue> = match fields.value_of("attributes") {
        None => Vec::new(),
        Some(json) => value::key_values(json)?,
    };
    let dropped_attributes_count = match fields.value_of("dropped_attributes_count") {
        None => 0,
        Some(json) => parse::<u32>(json)?,
    };
    Some(InstrumentationScope {
        name: text("name")?,
        version: text("version")?,
        attributes,
        dropped_attributes_count,
    })
}

/// A value read as `T`; `None` when it is not one (a string where a
/// number is due, a number out of range, ...).
fn parse<'a, T: Deserialize<'a>>(json: &'a RawValue) -> Option<T> {
    serde_json::from_str(json.get()).ok()
}

/// Nanoseconds since the epoch, written as OTLP/JSON writes an int64 (a
/// decimal string) or as a JSON integer.
fn nanos(json: &RawValue) -> Option<u64> {
    match text(json) {
        Some(text) => text.parse().ok(),
        None => parse::<u64>(json),
    }
}

/// A JSON string's text, borrowed unless it has escapes (digits and hex
/// ids, as the encoder writes them, have none): no allocation per field.
fn text(json: &RawValue) -> Option<Cow<'_, str>> {
    parse::<&str>(json)
        .map(Cow::Borrowed)
        .or_else(|| parse::<String>(json).map(Cow::Owned))
}

/// The bytes of a string of exactly `len` bytes in hex (either case).
fn hex_bytes(json: &RawValue, len: usize) -> Option<Vec<u8>> {
    let text = text(json)?;
    let text = text.as_bytes();
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
