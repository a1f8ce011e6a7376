//! Writes the binary seed corpora: for `wal_decode`, a few encoded records
//! (one of each kind, and `segment.bin`: a commit group's body holding all
//! three); for `otlp_protobuf`, an OTLP logs request with every field and
//! every kind of value. Run from `fuzz/`:
//! `cargo run --example gen_corpus`.

use chrono::{TimeZone, Utc};
use logs_distributor::model::{split_json_array, Limits};
use logs_distributor::storage::wal::Record;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::sync::Arc;

fn main() -> std::io::Result<()> {
    wal_records()?;
    otlp_request()
}

fn wal_records() -> std::io::Result<()> {
    let dir = std::path::Path::new("corpus/wal_decode");
    std::fs::create_dir_all(dir)?;
    let body = br#"[{"id": "seed-1", "messages": [{"level": "INFO", "message": "User login successful",
        "source": "auth-service", "timestamp": "2025-01-25T20:30:00Z", "metadata": {"user_id": "user_12345", "n": 1.5, "tags": ["a", {"b": null}]}}]}]"#;
    let now = Utc.timestamp_opt(1_750_000_000, 0).unwrap();
    let raw = split_json_array(body, 1).expect("seed body is an array");
    let packet = Arc::new(
        Limits::default()
            .validate(0, raw[0].into(), now)
            .expect("seed packet is valid"),
    );
    let records = [
        (
            "accept",
            Record::Accept {
                seq: 1,
                packet: packet.clone(),
                retries: 0,
            },
        ),
        ("retry", Record::Retry { seq: 2, retries: 3 }),
        ("end", Record::End { seq: 1 }),
    ];
    let mut segment = Vec::new();
    for (name, record) in &records {
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        std::fs::write(dir.join(format!("{name}.bin")), &bytes)?;
        record.encode(&mut segment);
    }
    std::fs::write(dir.join("segment.bin"), &segment)?;
    Ok(())
}

fn otlp_request() -> std::io::Result<()> {
    let dir = std::path::Path::new("corpus/otlp_protobuf");
    std::fs::create_dir_all(dir)?;
    let any = |value: Value| AnyValue { value: Some(value) };
    let pair = |key: &str, value: AnyValue| KeyValue {
        key: key.into(),
        value: Some(value),
        ..Default::default()
    };
    let values = vec![
        pair("s", any(Value::StringValue("text".into()))),
        pair("b", any(Value::BoolValue(true))),
        pair("i", any(Value::IntValue(-3))),
        pair("d", any(Value::DoubleValue(1.5))),
        pair(
            "a",
            any(Value::ArrayValue(ArrayValue {
                values: vec![any(Value::IntValue(1)), AnyValue { value: None }],
            })),
        ),
        pair(
            "kv",
            any(Value::KvlistValue(KeyValueList {
                values: vec![pair("x", any(Value::BytesValue(vec![0, 255])))],
            })),
        ),
    ];
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![pair("service.name", any(Value::StringValue("checkout".into())))],
                dropped_attributes_count: 1,
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "lib".into(),
                    version: "1.0".into(),
                    attributes: values.clone(),
                    dropped_attributes_count: 2,
                }),
                log_records: vec![
                    LogRecord {
                        time_unix_nano: 1_733_390_000_123_000_000,
                        observed_time_unix_nano: 1_733_390_000_124_000_000,
                        severity_number: 13,
                        severity_text: "WARN".into(),
                        body: Some(any(Value::StringValue("disk almost full".into()))),
                        attributes: values,
                        dropped_attributes_count: 1,
                        flags: 1,
                        trace_id: vec![0xab; 16],
                        span_id: vec![0xcd; 8],
                        event_name: "disk".into(),
                    },
                    LogRecord::default(),
                ],
                schema_url: "https://s".into(),
            }],
            schema_url: "https://r".into(),
        }],
    };
    std::fs::write(dir.join("request.bin"), request.encode_to_vec())
}
