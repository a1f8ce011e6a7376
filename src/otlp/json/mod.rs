//! OTLP/JSON: an `ExportLogsServiceRequest` as the OTLP specification
//! writes it in JSON (the protobuf JSON mapping with OTLP's own rules),
//! read into the crate's protobuf types:
//!
//! - keys in lowerCamelCase, and the proto's original snake_case names too;
//!   unknown keys are ignored; `null` is the field's default;
//! - 64-bit and 32-bit integers as numbers or as decimal strings;
//! - `traceId` and `spanId` as hex (either case; an empty string is unset);
//! - enums (`severityNumber`) as integers, or by their names;
//! - doubles as numbers, or as strings (`"NaN"`, `"Infinity"`, `"-Infinity"`);
//! - `bytesValue` in base64, standard or URL-safe, padded or not;
//! - an `AnyValue` with at most one of its values set (none: no value).
//!
//! Like the protobuf reader, it hands the mapper one group and one record
//! at a time: a level's array is kept as its text (not parsed into a
//! vector) until its elements are read one by one, and a resource, scope
//! or record whose text is longer than `limits.max_packet_bytes` is
//! rejected without being parsed.

mod scalars;

use super::map::{At, GroupHead, Mapper};
use super::RequestError;
use crate::model::Object;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use scalars::{int, Base64, Double, HexId, Int, Severity};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// Reads an OTLP/JSON request into `mapper`.
pub(super) fn decode(body: &[u8], mapper: &mut Mapper<'_>) -> Result<(), RequestError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| RequestError::Invalid(format!("the request is not UTF-8: {e}")))?;
    let request: RequestJson = parse(text, &"the request")?;
    let mut record = LogRecord::default();
    for_each(request.resource_logs, &"resourceLogs", |resource, raw| {
        let place = format!("resourceLogs[{resource}]");
        let resource_logs: ResourceLogsJson = parse(raw.get(), &place)?;
        let head_resource = match resource_logs.resource {
            Some(raw) if raw.get().len() > mapper.limits().max_packet_bytes => Err(raw.get().len()),
            Some(raw) => Ok(Some(
                parse::<ResourceJson>(raw.get(), &format_args!("{place}.resource"))?.into_proto(),
            )),
            None => Ok(None),
        };
        let resource_schema_url = resource_logs.schema_url.unwrap_or_default();
        for_each(
            resource_logs.scope_logs,
            &format_args!("{place}.scopeLogs"),
            |scope, raw| {
                let at = At {
                    resource,
                    scope,
                    record: None,
                };
                let scope_logs: ScopeLogsJson = parse(raw.get(), &at)?;
                let scope_schema_url = scope_logs.schema_url.unwrap_or_default();
                let max_bytes = mapper.limits().max_packet_bytes;
                let head_scope = match scope_logs.scope {
                    Some(raw) if raw.get().len() > max_bytes => Err(raw.get().len()),
                    Some(raw) => Ok(Some(
                        parse::<ScopeJson>(raw.get(), &format_args!("{at}.scope"))?.into_proto(),
                    )),
                    None => Ok(None),
                };
                match (&head_resource, &head_scope) {
                    (Err(size), _) => mapper.start_refused_group(too_large("resource", *size, max_bytes)),
                    (_, Err(size)) => mapper.start_refused_group(too_large("scope", *size, max_bytes)),
                    (Ok(resource), Ok(scope)) => mapper.start_group(&GroupHead {
                        resource: resource.as_ref(),
                        resource_schema_url: &resource_schema_url,
                        scope: scope.as_ref(),
                        scope_schema_url: &scope_schema_url,
                    }),
                }
                for_each(
                    scope_logs.log_records,
                    &format_args!("{at}.logRecords"),
                    |index, raw| {
                        let at = At {
                            record: Some(index),
                            ..at
                        };
                        if raw.get().len() > max_bytes {
                            mapper.reject(
                        at,
                        format!(
                            "the log record is {} bytes: at most {max_bytes} are allowed (limits.max_packet_bytes)",
                            raw.get().len()
                        ),
                    );
                            return Ok(());
                        }
                        parse::<LogRecordJson>(raw.get(), &at)?.fill(&mut record);
                        mapper.record(at, &record)
                    },
                )
            },
        )
    })
}

fn too_large(what: &str, size: usize, max_bytes: usize) -> String {
    format!("its {what} is {size} bytes: at most {max_bytes} are allowed (limits.max_packet_bytes)")
}

/// Parses `text` as a `T`; a failure names the place and the field at
/// fault (`resourceLogs[0].scopeLogs[0].logRecords[3].traceId: ...`).
fn parse<'a, T: Deserialize<'a>>(text: &'a str, place: &dyn fmt::Display) -> Result<T, RequestError> {
    // serde would take an array for a struct too (its fields in order).
    if !text.trim_start().starts_with('{') {
        let kind = match text.trim_start().bytes().next() {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            Some(b'-' | b'0'..=b'9') => "a number",
            _ => "not JSON",
        };
        return Err(RequestError::Invalid(format!(
            "{place}: expected a JSON object, got {kind}"
        )));
    }
    // The fast path for good input; only a failure pays for tracking the
    // path, to name the field.
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = serde_path_to_error::deserialize(&mut deserializer);
    let error = match parsed {
        Ok(value) => match deserializer.end() {
            Ok(()) => return Ok(value),
            Err(e) => describe(&e),
        },
        Err(e) => {
            let path = e.path().to_string();
            let reason = describe(e.inner());
            if path == "." || path.is_empty() {
                reason
            } else {
                format!("{path}: {reason}")
            }
        }
    };
    Err(RequestError::Invalid(format!("{place}: {error}")))
}

/// serde_json's message without its position (which is relative to the
/// part being read, not to the body).
fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.find(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Calls `each` with every element of the JSON array `raw` (none when it
/// is absent or `null`), one by one as they are read.
fn for_each<'a>(
    raw: Option<&'a RawValue>,
    place: &dyn fmt::Display,
    mut each: impl FnMut(usize, &'a RawValue) -> Result<(), RequestError>,
) -> Result<(), RequestError> {
    let Some(raw) = raw else {
        return Ok(());
    };
    let mut stopped = None;
    let mut deserializer = serde_json::Deserializer::from_str(raw.get());
    let read = deserializer.deserialize_seq(Elements {
        each: &mut each,
        stopped: &mut stopped,
    });
    match (stopped, read) {
        (Some(error), _) => Err(error),
        (None, Ok(())) => Ok(()),
        (None, Err(e)) => Err(RequestError::Invalid(format!("{place}: {}", describe(&e)))),
    }
}

/// The visitor of [`for_each`]: an error of `each` stops the array and is
/// kept in `stopped`.
struct Elements<'f, F> {
    each: &'f mut F,
    stopped: &'f mut Option<RequestError>,
}

impl<'de, F> Visitor<'de> for Elements<'_, F>
where
    F: FnMut(usize, &'de RawValue) -> Result<(), RequestError>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            if let Err(error) = (self.each)(index, element) {
                *self.stopped = Some(error);
                return Err(de::Error::custom("stopped"));
            }
            index += 1;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- the messages

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestJson<'a> {
    #[serde(borrow, default, alias = "resource_logs")]
    resource_logs: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceLogsJson<'a> {
    #[serde(borrow, default)]
    resource: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "scope_logs")]
    scope_logs: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "schema_url")]
    schema_url: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeLogsJson<'a> {
    #[serde(borrow, default)]
    scope: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "log_records")]
    log_records: Option<&'a RawValue>,
    #[serde(borrow, default, alias = "schema_url")]
    schema_url: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResourceJson {
    #[serde(default)]
    attributes: Option<Vec<KeyValueJson>>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: Option<Int<u32>>,
}

impl ResourceJson {
    fn into_proto(self) -> Resource {
        Resource {
            attributes: pairs(self.attributes),
            dropped_attributes_count: int(self.dropped_attributes_count),
            ..Default::default()
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeJson {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    attributes: Option<Vec<KeyValueJson>>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: Option<Int<u32>>,
}

impl ScopeJson {
    fn into_proto(self) -> InstrumentationScope {
        InstrumentationScope {
            name: self.name.unwrap_or_default(),
            version: self.version.unwrap_or_default(),
            attributes: pairs(self.attributes),
            dropped_attributes_count: int(self.dropped_attributes_count),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogRecordJson {
    #[serde(default, alias = "time_unix_nano")]
    time_unix_nano: Option<Int<u64>>,
    #[serde(default, alias = "observed_time_unix_nano")]
    observed_time_unix_nano: Option<Int<u64>>,
    #[serde(default, alias = "severity_number")]
    severity_number: Option<Severity>,
    #[serde(default, alias = "severity_text")]
    severity_text: Option<String>,
    #[serde(default)]
    body: Option<AnyValueJson>,
    #[serde(default)]
    attributes: Option<Vec<KeyValueJson>>,
    #[serde(default, alias = "dropped_attributes_count")]
    dropped_attributes_count: Option<Int<u32>>,
    #[serde(default)]
    flags: Option<Int<u32>>,
    #[serde(default, alias = "trace_id")]
    trace_id: Option<HexId>,
    #[serde(default, alias = "span_id")]
    span_id: Option<HexId>,
    #[serde(default, alias = "event_name")]
    event_name: Option<String>,
}

impl LogRecordJson {
    /// Writes the record into `record`, whose allocations it reuses.
    fn fill(self, record: &mut LogRecord) {
        record.time_unix_nano = int(self.time_unix_nano);
        record.observed_time_unix_nano = int(self.observed_time_unix_nano);
        record.severity_number = self.severity_number.map_or(0, |s| s.0);
        record.severity_text = self.severity_text.unwrap_or_default();
        record.body = self.body.map(|b| b.0);
        record.attributes = pairs(self.attributes);
        record.dropped_attributes_count = int(self.dropped_attributes_count);
        record.flags = int(self.flags);
        record.trace_id = self.trace_id.map(|id| id.0).unwrap_or_default();
        record.span_id = self.span_id.map(|id| id.0).unwrap_or_default();
        record.event_name = self.event_name.unwrap_or_default();
    }
}

/// A `KeyValue`.
#[derive(Deserialize)]
#[serde(from = "Object<KeyValueFields>")]
struct KeyValueJson(KeyValue);

#[derive(Deserialize)]
struct KeyValueFields {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<AnyValueJson>,
}

impl From<Object<KeyValueFields>> for KeyValueJson {
    fn from(Object(fields): Object<KeyValueFields>) -> KeyValueJson {
        KeyValueJson(KeyValue {
            key: fields.key.unwrap_or_default(),
            value: fields.value.map(|v| v.0),
            ..Default::default()
        })
    }
}

fn pairs(list: Option<Vec<KeyValueJson>>) -> Vec<KeyValue> {
    list.unwrap_or_default().into_iter().map(|pair| pair.0).collect()
}

/// An `AnyValue`: at most one of its values.
#[derive(Deserialize)]
#[serde(try_from = "Object<AnyValueFields>")]
struct AnyValueJson(AnyValue);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnyValueFields {
    #[serde(default, alias = "string_value")]
    string_value: Option<String>,
    #[serde(default, alias = "bool_value")]
    bool_value: Option<bool>,
    #[serde(default, alias = "int_value")]
    int_value: Option<Int<i64>>,
    #[serde(default, alias = "double_value")]
    double_value: Option<Double>,
    #[serde(default, alias = "array_value")]
    array_value: Option<Object<ValuesJson<AnyValueJson>>>,
    #[serde(default, alias = "kvlist_value")]
    kvlist_value: Option<Object<ValuesJson<KeyValueJson>>>,
    #[serde(default, alias = "bytes_value")]
    bytes_value: Option<Base64>,
}

impl TryFrom<Object<AnyValueFields>> for AnyValueJson {
    type Error = String;

    fn try_from(Object(fields): Object<AnyValueFields>) -> Result<AnyValueJson, String> {
        let values = [
            fields.string_value.map(Value::StringValue),
            fields.bool_value.map(Value::BoolValue),
            fields.int_value.map(|n| Value::IntValue(n.0)),
            fields.double_value.map(|x| Value::DoubleValue(x.0)),
            fields.array_value.map(|Object(array)| {
                Value::ArrayValue(ArrayValue {
                    values: array.into_vec().into_iter().map(|v| v.0).collect(),
                })
            }),
            fields.kvlist_value.map(|Object(list)| {
                Value::KvlistValue(KeyValueList {
                    values: list.into_vec().into_iter().map(|pair| pair.0).collect(),
                })
            }),
            fields.bytes_value.map(|bytes| Value::BytesValue(bytes.0)),
        ];
        let mut set = values.into_iter().flatten();
        let value = set.next();
        if set.next().is_some() {
            return Err("an AnyValue holds more than one value".into());
        }
        Ok(AnyValueJson(AnyValue { value }))
    }
}

/// An `ArrayValue` or a `KeyValueList`: `{"values": [...]}`.
#[derive(Deserialize)]
struct ValuesJson<T> {
    #[serde(default = "Option::default")]
    values: Option<Vec<T>>,
}

impl<T> ValuesJson<T> {
    fn into_vec(self) -> Vec<T> {
        self.values.unwrap_or_default()
    }
}
