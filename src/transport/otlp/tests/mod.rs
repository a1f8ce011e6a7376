use super::*;
use crate::model::{EncodedPacket, LogMessage, LogPacket};
use crate::transport::DeliveryFormat;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::AnyValue;
use prost::Message as _;
use serde_json::{json, Value as Json};

mod grouping;

fn message(level: Level, text: &str, source: &str, metadata: Option<Json>) -> LogMessage {
    LogMessage {
        level,
        message: text.into(),
        source: source.into(),
        timestamp: "2025-01-25T20:30:45.123456789Z".parse().unwrap(),
        metadata: metadata.map(|m| m.as_object().unwrap().clone()),
    }
}

/// The packet as delivery sees it: encoded when accepted.
fn packet(id: &str, messages: Vec<LogMessage>) -> EncodedPacket {
    EncodedPacket::new(&LogPacket {
        id: id.into(),
        messages,
        retry_count: 0,
    })
}

/// The OTLP value of a JSON value.
fn any(json: Json) -> AnyValue {
    value::any_value(&serde_json::value::to_raw_value(&json).unwrap())
}

fn key_value(key: &str, json: Json) -> KeyValue {
    value::key_value(key, any(json))
}

fn string(s: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(Value::StringValue(s.into())),
    })
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn keys(attributes: &[KeyValue]) -> Vec<&str> {
    attributes.iter().map(|kv| kv.key.as_str()).collect()
}

const NANOS: u64 = 1_737_837_045_123_456_789;

#[test]
fn the_format_is_named_otlp_and_sent_as_protobuf() {
    let named: DeliveryFormat = serde_json::from_str("\"otlp\"").unwrap();
    assert_eq!(named, DeliveryFormat::Otlp);
    assert_eq!(named.content_type(), "application/x-protobuf");
}

#[test]
fn a_plain_message_has_its_source_as_service_name_and_its_metadata_as_attributes() {
    let metadata =
        json!({"user_id": 42, "ok": true, "ratio": 0.5, "tags": ["a", "b"], "ctx": {"k": "v"}, "none": null});
    let request = request(&[packet(
        "p-1",
        vec![message(Level::Error, "db down", "api", Some(metadata))],
    )]);
    assert_eq!(request.resource_logs.len(), 1);
    let resource_logs = &request.resource_logs[0];
    assert_eq!(
        resource_logs.resource.as_ref().unwrap().attributes,
        [key_value("service.name", json!("api"))]
    );
    let scope_logs = &resource_logs.scope_logs;
    assert_eq!(scope_logs.len(), 1);
    assert_eq!(scope_logs[0].scope, None, "a plain message has no scope");
    let record = &scope_logs[0].log_records[0];
    assert_eq!(record.time_unix_nano, NANOS);
    assert_eq!(record.observed_time_unix_nano, NANOS);
    assert_eq!(record.severity_number, 17);
    assert_eq!(record.severity_text, "ERROR");
    assert_eq!(record.body, string("db down"));
    assert_eq!(
        keys(&record.attributes),
        [
            "ctx",
            "none",
            "ok",
            "ratio",
            "tags",
            "user_id",
            PACKET_ID_ATTRIBUTE
        ]
    );
    assert_eq!(
        attribute(&record.attributes, "user_id"),
        Some(&Value::IntValue(42))
    );
    assert_eq!(attribute(&record.attributes, "ok"), Some(&Value::BoolValue(true)));
    assert_eq!(
        attribute(&record.attributes, "ratio"),
        Some(&Value::DoubleValue(0.5))
    );
    assert_eq!(
        attribute(&record.attributes, "none"),
        None,
        "null: a value with none"
    );
    assert!(matches!(
        attribute(&record.attributes, "tags"),
        Some(Value::ArrayValue(a)) if a.values.len() == 2
    ));
    assert!(matches!(
        attribute(&record.attributes, "ctx"),
        Some(Value::KvlistValue(l)) if l.values == [key_value("k", json!("v"))]
    ));
    assert_eq!(
        attribute(&record.attributes, PACKET_ID_ATTRIBUTE),
        Some(&Value::StringValue("p-1".into()))
    );
    assert!(record.trace_id.is_empty() && record.span_id.is_empty());
}

#[test]
fn every_level_has_its_severity_number_and_name() {
    let levels = [
        (Level::Trace, 1, "TRACE"),
        (Level::Debug, 5, "DEBUG"),
        (Level::Info, 9, "INFO"),
        (Level::Notice, 10, "NOTICE"),
        (Level::Warning, 13, "WARNING"),
        (Level::Error, 17, "ERROR"),
        (Level::Critical, 21, "CRITICAL"),
        (Level::Alert, 22, "ALERT"),
        (Level::Emergency, 23, "EMERGENCY"),
    ];
    let messages = levels
        .iter()
        .map(|(level, ..)| message(*level, "m", "s", None))
        .collect();
    let request = request(&[packet("p", messages)]);
    let records = &request.resource_logs[0].scope_logs[0].log_records;
    assert_eq!(records.len(), levels.len());
    for (record, (_, number, name)) in records.iter().zip(levels) {
        assert_eq!(
            (record.severity_number, record.severity_text.as_str()),
            (number, name)
        );
        // No metadata: only the packet's id.
        assert_eq!(keys(&record.attributes), [PACKET_ID_ATTRIBUTE]);
    }
}

#[test]
fn a_message_that_came_over_otlp_goes_out_with_its_fields_where_they_were() {
    let metadata = json!({
        "resource": {"service.name": "checkout", "host.cpus": 8, "k8s": {"pod": "p-1"}},
        "resource_dropped_attributes_count": 2,
        "resource_schema_url": "https://opentelemetry.io/schemas/1.30.0",
        "scope": {"name": "lib", "version": "1.2", "attributes": {"a": 1}, "dropped_attributes_count": 3},
        "scope_schema_url": "https://example.com/scope",
        "attributes": {"http.status": 503, "retry": true, "big": 18_446_744_073_709_551_615u64,
                       "raw": {"bytes_base64": "3q2+7w=="}, "nothing": null},
        "dropped_attributes_count": 4,
        "severity_number": 14,
        "severity_text": "warn2",
        "body": {"event": "checkout", "items": [1, 2.5]},
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "EEE19B7EC3C1B174",
        "flags": 1,
        "time_unix_nano": "1737837045123456789",
        "observed_time_unix_nano": "1737837046000000001",
        "event_name": "cart.checkout",
    });
    let request = request(&[packet(
        "p-9",
        vec![message(
            Level::Warning,
            "{\"event\":\"checkout\"}",
            "checkout",
            Some(metadata),
        )],
    )]);
    let resource_logs = &request.resource_logs[0];
    let resource = resource_logs.resource.as_ref().unwrap();
    assert_eq!(keys(&resource.attributes), ["host.cpus", "k8s", "service.name"]);
    assert_eq!(
        attribute(&resource.attributes, "host.cpus"),
        Some(&Value::IntValue(8))
    );
    assert_eq!(resource.dropped_attributes_count, 2);
    assert_eq!(
        resource_logs.schema_url,
        "https://opentelemetry.io/schemas/1.30.0"
    );
    let scope_logs = &resource_logs.scope_logs[0];
    assert_eq!(
        scope_logs.scope,
        Some(InstrumentationScope {
            name: "lib".into(),
            version: "1.2".into(),
            attributes: vec![key_value("a", json!(1))],
            dropped_attributes_count: 3,
        })
    );
    assert_eq!(scope_logs.schema_url, "https://example.com/scope");
    let record = &scope_logs.log_records[0];
    assert_eq!(record.time_unix_nano, NANOS);
    assert_eq!(record.observed_time_unix_nano, 1_737_837_046_000_000_001);
    assert_eq!(record.severity_number, 14);
    assert_eq!(record.severity_text, "warn2");
    assert_eq!(
        record.body.as_ref().unwrap(),
        &any(json!({"event": "checkout", "items": [1, 2.5]})),
        "the typed body, not the message's text"
    );
    assert_eq!(
        record.trace_id,
        [0x5b, 0x8e, 0xff, 0xf7, 0x98, 0x03, 0x81, 0x03, 0xd2, 0x69, 0xb6, 0x33, 0x81, 0x3f, 0xc6, 0x0c]
    );
    assert_eq!(record.span_id, [0xee, 0xe1, 0x9b, 0x7e, 0xc3, 0xc1, 0xb1, 0x74]);
    assert_eq!(record.flags, 1);
    assert_eq!(record.dropped_attributes_count, 4);
    assert_eq!(record.event_name, "cart.checkout");
    assert_eq!(
        keys(&record.attributes),
        [
            "big",
            "http.status",
            "nothing",
            "raw",
            "retry",
            PACKET_ID_ATTRIBUTE
        ],
        "the record's attributes only: every other key went to its field"
    );
    assert_eq!(
        attribute(&record.attributes, "big"),
        Some(&Value::DoubleValue(18_446_744_073_709_551_615.0))
    );
    assert_eq!(
        attribute(&record.attributes, "raw"),
        Some(&Value::BytesValue(vec![0xde, 0xad, 0xbe, 0xef]))
    );
    assert_eq!(attribute(&record.attributes, "nothing"), None);
}

#[test]
fn what_no_field_can_hold_goes_out_as_an_attribute() {
    let metadata = json!({
        "attributes": {"logs_distributor.packet_id": "an-earlier-hop", "k": "v"},
        "trace_id": "not hex",
        "span_id": "00ff",
        "severity_number": "high",
        "scope": {"name": "lib", "unexpected": 1},
        "extra": {"kept": true},
    });
    let request = request(&[packet(
        "p-2",
        vec![message(Level::Info, "m", "src", Some(metadata))],
    )]);
    let resource_logs = &request.resource_logs[0];
    // No resource in the metadata: the source is the service.
    assert_eq!(
        resource_logs.resource.as_ref().unwrap().attributes,
        [key_value("service.name", json!("src"))]
    );
    assert_eq!(resource_logs.scope_logs[0].scope, None);
    let record = &resource_logs.scope_logs[0].log_records[0];
    assert!(record.trace_id.is_empty() && record.span_id.is_empty());
    assert_eq!(record.severity_number, 9, "from the level");
    assert_eq!(
        keys(&record.attributes),
        [
            "k",
            "extra",
            "scope",
            "severity_number",
            "span_id",
            "trace_id",
            PACKET_ID_ATTRIBUTE
        ]
    );
    assert_eq!(
        attribute(&record.attributes, "trace_id"),
        Some(&Value::StringValue("not hex".into()))
    );
    assert_eq!(
        attribute(&record.attributes, PACKET_ID_ATTRIBUTE),
        Some(&Value::StringValue("p-2".into())),
        "this hop's packet id, once"
    );
}

#[test]
fn the_body_is_the_request_in_protobuf() {
    let packets = || {
        vec![packet(
            "p-1",
            vec![message(Level::Info, "hello", "api", Some(json!({"n": 1})))],
        )]
    };
    let bytes = request(&packets()).encode_to_vec();
    let decoded = ExportLogsServiceRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded, request(&packets()));
}

#[test]
fn times_before_the_epoch_are_unknown_and_past_u64_are_the_last_nanosecond() {
    assert_eq!(unix_nanos("1969-12-31T23:59:59Z".parse().unwrap()), 0);
    assert_eq!(
        unix_nanos("1970-01-01T00:00:01.5Z".parse().unwrap()),
        1_500_000_000
    );
    assert_eq!(unix_nanos("2700-01-01T00:00:00Z".parse().unwrap()), u64::MAX);
}

/// OTLP in (`crate::otlp`, what `POST /v1/logs` does) then OTLP out: the
/// same request comes back, every field and value kind intact, each record
/// with its packet's id added.
#[test]
fn otlp_that_came_in_goes_out_as_it_came() {
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    let any = |value: Value| Some(AnyValue { value: Some(value) });
    let kv = |key: &str, value: Option<AnyValue>| KeyValue {
        key: key.into(),
        value,
        ..KeyValue::default()
    };
    // Keys in order, as the metadata's objects keep them.
    let record = |n: u8, body: Option<AnyValue>| LogRecord {
        time_unix_nano: 1_737_837_045_000_000_000 + u64::from(n),
        observed_time_unix_nano: 1_737_837_046_000_000_000 + u64::from(n),
        severity_number: 14,
        severity_text: "Warn2".into(),
        body,
        attributes: vec![
            kv("bool", any(Value::BoolValue(false))),
            kv("bytes", any(Value::BytesValue(vec![0, 159, 255]))),
            kv("double", any(Value::DoubleValue(1.0))),
            kv("empty", Some(AnyValue { value: None })),
            kv("int", any(Value::IntValue(-7))),
            kv(
                "list",
                any(Value::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(Value::IntValue(1)),
                        },
                        AnyValue { value: None },
                    ],
                })),
            ),
            kv(
                "map",
                any(Value::KvlistValue(KeyValueList {
                    values: vec![kv("a", any(Value::StringValue("x".into())))],
                })),
            ),
        ],
        dropped_attributes_count: 2,
        flags: 1,
        trace_id: vec![0xab; 16],
        span_id: vec![0xcd; 8],
        event_name: "checkout".into(),
    };
    let scope = |name: &str| InstrumentationScope {
        name: name.into(),
        version: "1.0".into(),
        attributes: vec![kv("scope.attr", any(Value::IntValue(3)))],
        dropped_attributes_count: 1,
    };
    let resource_logs = |service: &str, scopes: Vec<ScopeLogs>| ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                kv("host.cpus", any(Value::IntValue(8))),
                kv("service.name", any(Value::StringValue(service.into()))),
            ],
            dropped_attributes_count: 4,
            ..Resource::default()
        }),
        scope_logs: scopes,
        schema_url: "https://opentelemetry.io/schemas/1.30.0".into(),
    };
    let sent = ExportLogsServiceRequest {
        resource_logs: vec![
            resource_logs(
                "checkout",
                vec![
                    ScopeLogs {
                        scope: Some(scope("lib-a")),
                        log_records: vec![
                            record(0, any(Value::StringValue("text body".into()))),
                            record(
                                1,
                                any(Value::KvlistValue(KeyValueList {
                                    values: vec![kv("event", any(Value::StringValue("paid".into())))],
                                })),
                            ),
                        ],
                        schema_url: "https://example.com/scope".into(),
                    },
                    ScopeLogs {
                        scope: Some(scope("lib-b")),
                        log_records: vec![record(2, any(Value::DoubleValue(2.5)))],
                        schema_url: String::new(),
                    },
                ],
            ),
            resource_logs(
                "billing",
                vec![ScopeLogs {
                    scope: Some(scope("lib-a")),
                    log_records: vec![record(3, any(Value::BytesValue(b"raw".to_vec())))],
                    schema_url: String::new(),
                }],
            ),
        ],
    };
    let mapped = crate::otlp::from_protobuf(
        &sent.encode_to_vec(),
        &crate::model::Limits::default(),
        crate::model::QueueBounds::NONE,
        "2025-01-25T20:30:45Z".parse().unwrap(),
    )
    .expect("a valid request");
    assert_eq!(mapped.rejected_records, 0, "{:?}", mapped.rejections);
    let ids: Vec<String> = mapped.packets.iter().map(|p| p.id().to_owned()).collect();
    let mut came_back = request(&mapped.packets);

    let mut packet_ids = Vec::new();
    for record in came_back
        .resource_logs
        .iter_mut()
        .flat_map(|rl| &mut rl.scope_logs)
        .flat_map(|sl| &mut sl.log_records)
    {
        let id = record.attributes.pop().expect("the packet id, last");
        assert_eq!(id.key, PACKET_ID_ATTRIBUTE);
        packet_ids.push(id.value.and_then(|v| v.value));
    }
    assert_eq!(came_back, sent);
    // One packet per resource x scope group, each record naming its own.
    let named = |i: usize| Some(Value::StringValue(ids[i].clone()));
    assert_eq!(packet_ids, [named(0), named(0), named(1), named(2)]);
}

#[test]
fn escaped_text_comes_out_as_the_text_it_stands_for() {
    let request = request(&[packet(
        "p-\"1\"",
        vec![message(
            Level::Info,
            "line\nbreak \"quoted\" é",
            "svc\\x",
            Some(json!({"k\"ey": "tab\there", "plain": "v"})),
        )],
    )]);
    let resource_logs = &request.resource_logs[0];
    assert_eq!(
        resource_logs.resource.as_ref().unwrap().attributes,
        [key_value("service.name", json!("svc\\x"))]
    );
    let record = &resource_logs.scope_logs[0].log_records[0];
    assert_eq!(record.body, string("line\nbreak \"quoted\" é"));
    assert_eq!(keys(&record.attributes), ["k\"ey", "plain", PACKET_ID_ATTRIBUTE]);
    assert_eq!(
        attribute(&record.attributes, "k\"ey"),
        Some(&Value::StringValue("tab\there".into()))
    );
    assert_eq!(
        attribute(&record.attributes, PACKET_ID_ATTRIBUTE),
        Some(&Value::StringValue("p-\"1\"".into()))
    );
}

#[test]
fn times_and_ids_in_strings_are_read_with_or_without_escapes() {
    let raw = |text: &str| RawValue::from_string(text.to_owned()).unwrap();
    assert_eq!(
        nanos(&raw(r#""1700000000000000001""#)),
        Some(1_700_000_000_000_000_001)
    );
    assert_eq!(nanos(&raw(r#""\u00317""#)), Some(17), "an escaped digit");
    assert_eq!(nanos(&raw("42")), Some(42), "a JSON integer");
    assert_eq!(nanos(&raw(r#""4x""#)), None);
    assert_eq!(hex_bytes(&raw(r#""0a0B""#), 2), Some(vec![0x0a, 0x0b]));
    assert_eq!(hex_bytes(&raw(r#""0a\u0030b""#), 2), Some(vec![0x0a, 0x0b]));
    assert_eq!(hex_bytes(&raw(r#""0a0b""#), 3), None, "the wrong length");
}
