//! OTLP/HTTP request bodies (`--otlp`): an `ExportLogsServiceRequest` is a
//! repeated field of `ResourceLogs`, so each packet is pre-encoded once as
//! that field, and a request body is those bytes one after another.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The OTLP severity number of each level the generator uses.
fn severity_number(level: &str) -> i32 {
    match level {
        "DEBUG" => 5,
        "WARN" => 13,
        "ERROR" => 17,
        _ => 9,
    }
}

fn string(text: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(text.to_owned())),
    })
}

fn key_value(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

/// One packet as the bytes of one `resource_logs` field: a resource
/// (`service.name` loadgen) with one scope holding a record per
/// `(level, text)`, each with the attribute `worker`.
pub(crate) fn encoded_packet(messages: &[(&str, String)], worker_id: usize) -> Vec<u8> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX));
    let worker = i64::try_from(worker_id).unwrap_or(i64::MAX);
    let log_records = messages
        .iter()
        .map(|(level, text)| LogRecord {
            time_unix_nano: now,
            observed_time_unix_nano: now,
            severity_number: severity_number(level),
            severity_text: (*level).to_owned(),
            body: string(text),
            attributes: vec![key_value("worker", any_value::Value::IntValue(worker))],
            ..LogRecord::default()
        })
        .collect();
    let resource_logs = ResourceLogs {
        resource: Some(Resource {
            attributes: vec![key_value(
                "service.name",
                any_value::Value::StringValue("loadgen".into()),
            )],
            ..Resource::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "logs-distributor-loadgen".into(),
                ..InstrumentationScope::default()
            }),
            log_records,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![resource_logs],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_one_after_another_are_one_request() {
        let first = encoded_packet(&[("INFO", "a".into()), ("ERROR", "b".into())], 3);
        let second = encoded_packet(&[("WARN", "c".into())], 3);
        let body = [first, second].concat();
        let request = ExportLogsServiceRequest::decode(body.as_slice()).expect("a valid request");
        assert_eq!(request.resource_logs.len(), 2);
        let records = &request.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].severity_number, 17);
        assert_eq!(records[1].body, string("b"));
        assert_eq!(
            records[0].attributes,
            [key_value("worker", any_value::Value::IntValue(3))]
        );
        let service = &request.resource_logs[1].resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
    }
}
