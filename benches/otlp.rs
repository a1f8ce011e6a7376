//! Records/s through the OTLP readers and the mapping to packets, for one
//! request of 512 records (the SDKs' default batch) as the SDKs send them:
//! one resource of six attributes, one scope, each record a string body of
//! about 150 bytes, four attributes, both times, severity, trace and span
//! ids. `otlp::from_protobuf` for the protobuf body, `otlp::from_json` for
//! the same request in OTLP/JSON.
//!
//! `cargo bench --bench otlp` (add `-- --quick` for a short run).

use chrono::Utc;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use logs_distributor::model::{Limits, QueueBounds};
use logs_distributor::otlp::{from_json, from_protobuf};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::json;

const RECORDS: usize = 512;

fn pair(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(value: &str) -> Value {
    Value::StringValue(value.into())
}

const RESOURCE: [(&str, &str); 6] = [
    ("service.name", "checkout"),
    ("service.version", "2.14.1"),
    ("k8s.namespace.name", "shop"),
    ("k8s.pod.name", "checkout-7d9f8c6b5-x2k4q"),
    ("host.name", "node-17"),
    ("telemetry.sdk.language", "python"),
];

fn body_text(i: usize) -> String {
    format!("order {i} paid: 3 items, total 129.90 EUR, card ending 4242, customer 88{i:04}, carrier DHL, eta 2 days, warehouse FRA-2")
}

fn protobuf_request() -> ExportLogsServiceRequest {
    let records = (0..RECORDS)
        .map(|i| LogRecord {
            time_unix_nano: 1_733_390_000_000_000_000 + i as u64 * 1000,
            observed_time_unix_nano: 1_733_390_000_000_500_000 + i as u64 * 1000,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: Some(AnyValue {
                value: Some(text(&body_text(i))),
            }),
            attributes: vec![
                pair("http.route", text("/api/orders")),
                pair("http.status_code", Value::IntValue(200)),
                pair("duration_ms", Value::DoubleValue(12.5)),
                pair("user.id", text(&format!("u-{i}"))),
            ],
            trace_id: vec![0x5b; 16],
            span_id: vec![0xee; 8],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: RESOURCE.iter().map(|(k, v)| pair(k, text(v))).collect(),
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "checkout.orders".into(),
                    version: "1.0.0".into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn json_request() -> Vec<u8> {
    let records: Vec<serde_json::Value> = (0..RECORDS)
        .map(|i| {
            json!({
                "timeUnixNano": (1_733_390_000_000_000_000u64 + i as u64 * 1000).to_string(),
                "observedTimeUnixNano": (1_733_390_000_000_500_000u64 + i as u64 * 1000).to_string(),
                "severityNumber": 9, "severityText": "INFO",
                "body": {"stringValue": body_text(i)},
                "attributes": [
                    {"key": "http.route", "value": {"stringValue": "/api/orders"}},
                    {"key": "http.status_code", "value": {"intValue": "200"}},
                    {"key": "duration_ms", "value": {"doubleValue": 12.5}},
                    {"key": "user.id", "value": {"stringValue": format!("u-{i}")}},
                ],
                "traceId": "5b".repeat(16), "spanId": "ee".repeat(8),
            })
        })
        .collect();
    let resource: Vec<serde_json::Value> = RESOURCE
        .iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    serde_json::to_vec(&json!({"resourceLogs": [{
        "resource": {"attributes": resource},
        "scopeLogs": [{"scope": {"name": "checkout.orders", "version": "1.0.0"}, "logRecords": records}]}]}))
    .expect("the request serializes")
}

fn map(c: &mut Criterion) {
    let limits = Limits::default();
    let now = Utc::now();
    let protobuf = protobuf_request().encode_to_vec();
    let json = json_request();
    let mut group = c.benchmark_group("otlp");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function(
        format!("from_protobuf, 512 records ({} bytes)", protobuf.len()),
        |b| {
            b.iter(|| {
                let mapped = from_protobuf(black_box(&protobuf), &limits, QueueBounds::NONE, now).unwrap();
                assert_eq!(mapped.accepted_records, RECORDS);
                mapped
            })
        },
    );
    group.bench_function(format!("from_json, 512 records ({} bytes)", json.len()), |b| {
        b.iter(|| {
            let mapped = from_json(black_box(&json), &limits, QueueBounds::NONE, now).unwrap();
            assert_eq!(mapped.accepted_records, RECORDS);
            mapped
        })
    });
    group.finish();
}

criterion_group!(benches, map);
criterion_main!(benches);
