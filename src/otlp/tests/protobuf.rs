//! The protobuf reader: the same packets as the same request in OTLP/JSON,
//! the same reading as prost's whole decoding (merged and reordered
//! fields, unknown ones), and a clear refusal of bytes that do not decode.

use super::*;
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use prost::encoding::{encode_key, encode_varint, WireType};

/// Messages without the packet ids (fresh in every mapping).
fn shape(mapped: &Mapped) -> Vec<Vec<serde_json::Value>> {
    packets(mapped)
}

/// A request with every field and every AnyValue kind, in protobuf.
fn rich_request() -> ExportLogsServiceRequest {
    let kv = |values: Vec<KeyValue>| any(Value::KvlistValue(KeyValueList { values }));
    let attributes = vec![
        pair("s", text("é \"quoted\"\n")),
        pair("b", any(Value::BoolValue(true))),
        pair("i", any(Value::IntValue(-9_007_199_254_740_993))),
        pair("d", any(Value::DoubleValue(0.1))),
        pair("whole", any(Value::DoubleValue(2.0))),
        pair("nan", any(Value::DoubleValue(f64::NAN))),
        pair(
            "a",
            any(Value::ArrayValue(ArrayValue {
                values: vec![text("x"), AnyValue { value: None }, any(Value::IntValue(3))],
            })),
        ),
        pair(
            "kv",
            kv(vec![
                pair("z", text("last")),
                pair("y", any(Value::BoolValue(false))),
            ]),
        ),
        pair("bytes", any(Value::BytesValue(vec![0, 255, 16]))),
        KeyValue {
            key: "none".into(),
            value: None,
            ..Default::default()
        },
    ];
    request(vec![
        ResourceLogs {
            resource: Some(Resource {
                attributes: vec![pair("service.name", text("checkout")), pair("host", text("h1"))],
                dropped_attributes_count: 3,
                ..Default::default()
            }),
            scope_logs: vec![
                ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "lib".into(),
                        version: "1.2".into(),
                        attributes: vec![pair("scope.k", any(Value::IntValue(1)))],
                        dropped_attributes_count: 0,
                    }),
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 1_733_390_000_123_000_000,
                            observed_time_unix_nano: 1_733_390_000_124_000_000,
                            severity_number: 13,
                            severity_text: "WARN".into(),
                            body: Some(text("disk almost full")),
                            attributes,
                            dropped_attributes_count: 1,
                            flags: 1,
                            trace_id: vec![0xab; 16],
                            span_id: vec![0xcd; 8],
                            event_name: "disk".into(),
                        },
                        LogRecord {
                            severity_number: 21,
                            body: Some(kv(vec![pair("n", any(Value::IntValue(1)))])),
                            ..Default::default()
                        },
                    ],
                    schema_url: "https://s".into(),
                },
                scope_logs(None, vec![record("no scope")]),
            ],
            schema_url: "https://r".into(),
        },
        group(None, vec![scope_logs(scope("bare"), vec![LogRecord::default()])]),
    ])
}

/// The same request in OTLP/JSON, as an SDK writes it.
const RICH_JSON: &str = r#"{"resourceLogs":[
  {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}},
                             {"key":"host","value":{"stringValue":"h1"}}],
               "droppedAttributesCount":3},
   "scopeLogs":[
     {"scope":{"name":"lib","version":"1.2","attributes":[{"key":"scope.k","value":{"intValue":"1"}}]},
      "logRecords":[
        {"timeUnixNano":"1733390000123000000","observedTimeUnixNano":"1733390000124000000",
         "severityNumber":13,"severityText":"WARN","body":{"stringValue":"disk almost full"},
         "attributes":[
           {"key":"s","value":{"stringValue":"é \"quoted\"\n"}},
           {"key":"b","value":{"boolValue":true}},
           {"key":"i","value":{"intValue":"-9007199254740993"}},
           {"key":"d","value":{"doubleValue":0.1}},
           {"key":"whole","value":{"doubleValue":2.0}},
           {"key":"nan","value":{"doubleValue":"NaN"}},
           {"key":"a","value":{"arrayValue":{"values":[{"stringValue":"x"},{},{"intValue":"3"}]}}},
           {"key":"kv","value":{"kvlistValue":{"values":[{"key":"z","value":{"stringValue":"last"}},
                                                      {"key":"y","value":{"boolValue":false}}]}}},
           {"key":"bytes","value":{"bytesValue":"AP8Q"}},
           {"key":"none"}],
         "droppedAttributesCount":1,"flags":1,
         "traceId":"abababababababababababababababab","spanId":"cdcdcdcdcdcdcdcd","eventName":"disk"},
        {"severityNumber":21,"body":{"kvlistValue":{"values":[{"key":"n","value":{"intValue":"1"}}]}}}],
      "schemaUrl":"https://s"},
     {"logRecords":[{"body":{"stringValue":"no scope"}}]}],
   "schemaUrl":"https://r"},
  {"scopeLogs":[{"scope":{"name":"bare"},"logRecords":[{}]}]}]}"#;

#[test]
fn protobuf_and_otlp_json_of_one_request_give_the_same_packets() {
    let from_proto = proto(&rich_request());
    let from_json = json(RICH_JSON);
    assert_eq!((from_proto.accepted_records, from_proto.rejected_records), (4, 0));
    assert_eq!(shape(&from_proto), shape(&from_json));
    let first = &shape(&from_proto)[0][0];
    assert_eq!(first["metadata"]["attributes"]["i"], -9_007_199_254_740_993i64);
    assert_eq!(first["metadata"]["attributes"]["bytes"]["bytes_base64"], "AP8Q");
    assert_eq!(first["metadata"]["trace_id"], "ab".repeat(16));
    assert_eq!(first["level"], "WARNING");
    assert_eq!(first["source"], "checkout");
}

/// `bytes` as field `tag` of a message (length-delimited).
fn field(tag: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_key(tag, WireType::LengthDelimited, &mut out);
    encode_varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

#[test]
fn fields_out_of_order_repeated_and_unknown_read_as_prost_reads_them() {
    // One ResourceLogs written in three parts (protobuf merges repeated
    // message fields): its scopes first, then its resource in two halves,
    // with an unknown field and an unknown group between them.
    let scopes = ResourceLogs {
        scope_logs: vec![scope_logs(scope("lib"), vec![record("one"), record("two")])],
        ..Default::default()
    }
    .encode_to_vec();
    let first_half = ResourceLogs {
        resource: resource(vec![pair("service.name", text("first"))]),
        schema_url: "https://old".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let second_half = ResourceLogs {
        resource: resource(vec![pair("service.name", text("second"))]),
        schema_url: "https://new".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let mut unknown = Vec::new();
    encode_key(15, WireType::Varint, &mut unknown);
    encode_varint(300, &mut unknown);
    encode_key(16, WireType::StartGroup, &mut unknown);
    encode_key(1, WireType::ThirtyTwoBit, &mut unknown);
    unknown.extend_from_slice(&[1, 2, 3, 4]);
    encode_key(16, WireType::EndGroup, &mut unknown);
    let resource_logs = [scopes, unknown.clone(), first_half, second_half].concat();
    let body = [unknown, field(1, &resource_logs), field(9, b"ignored")].concat();

    let whole = ExportLogsServiceRequest::decode(body.as_slice()).expect("prost reads it");
    let ours = from_protobuf(&body, &Limits::default(), ROOM, now()).unwrap();
    let canonical = proto(&whole);
    assert_eq!(shape(&ours), shape(&canonical));
    let first = &shape(&ours)[0][0];
    assert_eq!(
        first["source"], "second",
        "merged attributes: the last service.name"
    );
    assert_eq!(first["metadata"]["resource_schema_url"], "https://new");
    assert_eq!(
        first["metadata"]["resource"],
        serde_json::json!({"service.name": "second"})
    );
}

#[test]
fn an_empty_body_is_an_empty_request() {
    let mapped = from_protobuf(b"", &Limits::default(), ROOM, now()).unwrap();
    assert!(mapped.packets.is_empty());
    assert_eq!((mapped.accepted_records, mapped.rejected_records), (0, 0));
}

#[test]
fn bytes_that_do_not_decode_are_refused_with_where_and_why() {
    let good = proto_body();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"this is not protobuf".to_vec(),
            "the request: failed to decode Protobuf message",
        ),
        (
            good[..good.len() - 3].to_vec(),
            "the request: failed to decode Protobuf message: buffer underflow",
        ),
        (
            vec![0x08, 0x01],
            "resourceLogs: failed to decode Protobuf message: invalid wire type: Varint",
        ),
        (
            field(1, &field(2, &field(2, &[0xff, 0xff]))),
            "resourceLogs[0].scopeLogs[0].logRecords[0]: failed to decode Protobuf message",
        ),
        (
            field(1, &field(3, &[0xff])),
            "resourceLogs[0]: invalid string value: data is not UTF-8 encoded",
        ),
    ];
    for (body, says) in cases {
        match from_protobuf(&body, &Limits::default(), ROOM, now()) {
            Err(RequestError::Invalid(reason)) => assert!(reason.contains(says), "{says}: {reason}"),
            other => panic!("{body:?}: expected a refusal, got {other:?}"),
        }
    }
}

fn proto_body() -> Vec<u8> {
    rich_request().encode_to_vec()
}
