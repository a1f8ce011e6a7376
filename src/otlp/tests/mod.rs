//! The OTLP ingest's own tests: the OTLP/JSON codec (`json`), the mapping
//! of records to packets (`mapping`), and the protobuf reader against
//! prost's decoding of the same bytes and against the same request in
//! OTLP/JSON (`protobuf`).

mod json;
mod mapping;
mod protobuf;

use super::{from_json, from_protobuf, Mapped, RequestError};
use crate::model::{EncodedPacket, LargerThanQueue, Limits, QueueBounds};
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

/// Plenty of room for a request's packets.
const ROOM: QueueBounds = QueueBounds::NONE;

fn now() -> DateTime<Utc> {
    "2025-01-25T20:30:45Z".parse().unwrap()
}

fn json_with(limits: &Limits, text: &str) -> Result<Mapped, RequestError> {
    from_json(text.as_bytes(), limits, ROOM, now())
}

fn json(text: &str) -> Mapped {
    json_with(&Limits::default(), text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn proto_with(limits: &Limits, request: &ExportLogsServiceRequest) -> Result<Mapped, RequestError> {
    from_protobuf(&request.encode_to_vec(), limits, ROOM, now())
}

fn proto(request: &ExportLogsServiceRequest) -> Mapped {
    proto_with(&Limits::default(), request).unwrap()
}

/// Each packet's messages as JSON, in order; every packet must encode as
/// serde_json writes the packet it decodes to.
fn packets(mapped: &Mapped) -> Vec<Vec<serde_json::Value>> {
    mapped
        .packets
        .iter()
        .map(|encoded| {
            let packet = encoded.decode(0);
            assert_eq!(
                &EncodedPacket::new(&packet),
                encoded,
                "the packet's bytes are what serde writes"
            );
            assert!(uuid::Uuid::parse_str(&packet.id).is_ok(), "{}", packet.id);
            packet
                .messages
                .iter()
                .map(|m| serde_json::to_value(m).unwrap())
                .collect()
        })
        .collect()
}

/// Every message of every packet, in order.
fn messages(mapped: &Mapped) -> Vec<serde_json::Value> {
    packets(mapped).into_iter().flatten().collect()
}

fn any(value: Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

fn text(value: &str) -> AnyValue {
    any(Value::StringValue(value.into()))
}

fn pair(key: &str, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    }
}

fn resource(attributes: Vec<KeyValue>) -> Option<Resource> {
    Some(Resource {
        attributes,
        ..Default::default()
    })
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.into(),
        ..Default::default()
    })
}

/// A record with a string body.
fn record(body: &str) -> LogRecord {
    LogRecord {
        body: Some(text(body)),
        ..Default::default()
    }
}

fn request(resource_logs: Vec<ResourceLogs>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest { resource_logs }
}

fn group(resource: Option<Resource>, scopes: Vec<ScopeLogs>) -> ResourceLogs {
    ResourceLogs {
        resource,
        scope_logs: scopes,
        ..Default::default()
    }
}

fn scope_logs(scope: Option<InstrumentationScope>, log_records: Vec<LogRecord>) -> ScopeLogs {
    ScopeLogs {
        scope,
        log_records,
        ..Default::default()
    }
}
