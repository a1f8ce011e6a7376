//! Records to packets: the groups, the splits, the fields of a message and
//! of its metadata, the limits.

use super::*;
use crate::model::Level;
use crate::otlp::map::{level_of, level_of_number};
use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
use serde_json::json;

fn service(name: &str) -> Option<Resource> {
    resource(vec![pair("service.name", text(name))])
}

#[test]
fn severity_numbers_map_by_the_specification_s_ranges() {
    let expected = |n: i32| match n {
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warning,
        17..=20 => Level::Error,
        21..=24 => Level::Critical,
        _ => Level::Info,
    };
    for n in -3..=30 {
        assert_eq!(level_of_number(n), expected(n), "{n}");
    }
    // The edges, spelled out.
    for (n, level) in [
        (0, Level::Info),
        (1, Level::Trace),
        (4, Level::Trace),
        (5, Level::Debug),
        (8, Level::Debug),
        (9, Level::Info),
        (12, Level::Info),
        (13, Level::Warning),
        (16, Level::Warning),
        (17, Level::Error),
        (20, Level::Error),
        (21, Level::Critical),
        (24, Level::Critical),
        (25, Level::Info),
    ] {
        assert_eq!(level_of_number(n), level, "{n}");
    }
}

#[test]
fn severity_text_wins_when_it_names_a_level() {
    assert_eq!(level_of("warn", 1), Level::Warning);
    assert_eq!(level_of("Notice", 17), Level::Notice);
    assert_eq!(level_of(" fatal ", 1), Level::Critical);
    assert_eq!(
        level_of("Verbose", 17),
        Level::Error,
        "not a level: the number decides"
    );
    assert_eq!(level_of("", 5), Level::Debug);
    assert_eq!(level_of("", 0), Level::Info);
}

#[test]
fn each_resource_and_scope_is_a_group_of_its_own_in_order() {
    let mapped = proto(&request(vec![
        group(
            service("checkout"),
            vec![
                scope_logs(scope("http"), vec![record("a1"), record("a2")]),
                scope_logs(scope("db"), vec![record("b1")]),
            ],
        ),
        group(
            resource(vec![pair("host.name", text("h"))]),
            vec![
                scope_logs(scope("worker"), vec![record("c1")]),
                scope_logs(None, vec![record("d1")]),
            ],
        ),
        group(None, vec![scope_logs(scope(" "), vec![record("e1")])]),
    ]));
    assert_eq!((mapped.accepted_records, mapped.rejected_records), (6, 0));
    let packets = packets(&mapped);
    let summary: Vec<Vec<(String, String)>> = packets
        .iter()
        .map(|messages| {
            messages
                .iter()
                .map(|m| {
                    (
                        m["source"].as_str().unwrap().to_owned(),
                        m["message"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .collect();
    let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
        list.iter().map(|(s, m)| (s.to_string(), m.to_string())).collect()
    };
    assert_eq!(
        summary,
        vec![
            pairs(&[("checkout", "a1"), ("checkout", "a2")]),
            pairs(&[("checkout", "b1")]),
            pairs(&[("worker", "c1")]),
            pairs(&[("unknown_service", "d1")]),
            pairs(&[("unknown_service", "e1")]),
        ],
        "service.name, else the scope's name, else unknown_service"
    );
    let ids: std::collections::HashSet<_> = mapped.packets.iter().map(|p| p.id()).collect();
    assert_eq!(ids.len(), 5, "a fresh id per packet");
    assert_eq!(packets[1][0]["metadata"]["scope"], json!({"name": "db"}));
    assert_eq!(packets[2][0]["metadata"]["resource"], json!({"host.name": "h"}));
}

#[test]
fn the_source_is_the_last_service_name_when_it_is_a_string() {
    let name = |attributes: Vec<KeyValue>| {
        let mapped = proto(&request(vec![group(
            resource(attributes),
            vec![scope_logs(scope("lib"), vec![record("m")])],
        )]));
        messages(&mapped)[0]["source"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        name(vec![
            pair("service.name", text("old")),
            pair("service.name", text("new"))
        ]),
        "new"
    );
    assert_eq!(name(vec![pair("service.name", any(Value::IntValue(5)))]), "lib");
    assert_eq!(name(vec![pair("service.name", text(""))]), "lib");
}

#[test]
fn a_group_is_split_at_max_messages_per_packet_in_order() {
    let limits = Limits {
        max_messages_per_packet: 3,
        ..Limits::default()
    };
    let records: Vec<LogRecord> = (0..7).map(|i| record(&format!("m{i}"))).collect();
    let mapped = proto_with(
        &limits,
        &request(vec![group(service("s"), vec![scope_logs(None, records)])]),
    )
    .unwrap();
    let packets = packets(&mapped);
    let sizes: Vec<usize> = packets.iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![3, 3, 1]);
    let order: Vec<&str> = packets
        .iter()
        .flatten()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
}

#[test]
fn a_group_is_split_at_max_packet_bytes() {
    let limits = Limits {
        max_packet_bytes: 1000,
        ..Limits::default()
    };
    let records: Vec<LogRecord> = (0..10)
        .map(|i| record(&format!("{i}{}", "x".repeat(200))))
        .collect();
    let mapped = proto_with(
        &limits,
        &request(vec![group(service("s"), vec![scope_logs(None, records)])]),
    )
    .unwrap();
    assert_eq!(mapped.accepted_records, 10);
    assert!(mapped.packets.len() >= 3, "{} packets", mapped.packets.len());
    for packet in &mapped.packets {
        assert!(packet.json_bytes() <= 1000, "{}", packet.json_bytes());
    }
    let order: Vec<String> = messages(&mapped)
        .iter()
        .map(|m| m["message"].as_str().unwrap()[..1].to_owned())
        .collect();
    assert_eq!(order, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
}

#[test]
fn every_field_lands_where_the_mapping_says() {
    let full = LogRecord {
        time_unix_nano: 1_700_000_000_123_456_789,
        observed_time_unix_nano: 1_700_000_001_000_000_000,
        severity_number: 17,
        severity_text: "oops".into(),
        body: Some(any(Value::KvlistValue(KeyValueList {
            values: vec![pair("user", text("u1")), pair("n", any(Value::IntValue(2)))],
        }))),
        attributes: vec![
            pair("http.status", any(Value::IntValue(500))),
            pair("ok", any(Value::BoolValue(false))),
        ],
        dropped_attributes_count: 4,
        flags: 1,
        trace_id: (1..=16).collect(),
        span_id: (1..=8).collect(),
        event_name: "checkout.failed".into(),
    };
    let request = request(vec![ResourceLogs {
        resource: Some(Resource {
            attributes: vec![
                pair("service.name", text("checkout")),
                pair("k8s.pod.name", text("pod-1")),
            ],
            dropped_attributes_count: 1,
            ..Default::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "io.lib".into(),
                version: "2.1".into(),
                attributes: vec![pair("a", any(Value::DoubleValue(0.5)))],
                dropped_attributes_count: 2,
            }),
            log_records: vec![full],
            schema_url: "https://opentelemetry.io/schemas/1.2".into(),
        }],
        schema_url: "https://opentelemetry.io/schemas/1.1".into(),
    }]);
    let message = messages(&proto(&request)).remove(0);
    assert_eq!(
        message,
        json!({
            "level": "ERROR",
            "message": r#"{"n":2,"user":"u1"}"#,
            "source": "checkout",
            "timestamp": "2023-11-14T22:13:20.123456789Z",
            "metadata": {
                "attributes": {"http.status": 500, "ok": false},
                "body": {"n": 2, "user": "u1"},
                "dropped_attributes_count": 4,
                "event_name": "checkout.failed",
                "flags": 1,
                "observed_time_unix_nano": "1700000001000000000",
                "resource": {"k8s.pod.name": "pod-1", "service.name": "checkout"},
                "resource_dropped_attributes_count": 1,
                "resource_schema_url": "https://opentelemetry.io/schemas/1.1",
                "scope": {"attributes": {"a": 0.5}, "dropped_attributes_count": 2,
                          "name": "io.lib", "version": "2.1"},
                "scope_schema_url": "https://opentelemetry.io/schemas/1.2",
                "severity_number": 17,
                "severity_text": "oops",
                "span_id": "0102030405060708",
                "time_unix_nano": "1700000000123456789",
                "trace_id": "0102030405060708090a0b0c0d0e0f10",
            }
        })
    );
}

#[test]
fn unset_fields_leave_no_key_and_times_fall_back() {
    let bare = request(vec![group(
        None,
        vec![scope_logs(None, vec![LogRecord::default()])],
    )]);
    let message = messages(&proto(&bare)).remove(0);
    assert_eq!(
        message,
        json!({"level": "INFO", "message": "", "source": "unknown_service",
               "timestamp": "2025-01-25T20:30:45Z"}),
        "no metadata at all; the time of receipt"
    );
    let observed = LogRecord {
        observed_time_unix_nano: 1_000_000_000,
        ..Default::default()
    };
    let message = messages(&proto(&request(vec![group(
        None,
        vec![scope_logs(None, vec![observed])],
    )])))
    .remove(0);
    assert_eq!(message["timestamp"], "1970-01-01T00:00:01Z");
}

#[test]
fn bodies_that_are_not_strings_become_json_text_and_stay_typed() {
    let cases = [
        (any(Value::IntValue(7)), "7", json!(7)),
        (any(Value::DoubleValue(1.0)), "1.0", json!(1.0)),
        (any(Value::BoolValue(true)), "true", json!(true)),
        (
            any(Value::ArrayValue(ArrayValue {
                values: vec![text("a"), any(Value::IntValue(1))],
            })),
            r#"["a",1]"#,
            json!(["a", 1]),
        ),
        (
            any(Value::BytesValue(vec![1, 2])),
            r#"{"bytes_base64":"AQI="}"#,
            json!({"bytes_base64": "AQI="}),
        ),
    ];
    for (body, text, typed) in cases {
        let record = LogRecord {
            body: Some(body.clone()),
            ..Default::default()
        };
        let message = messages(&proto(&request(vec![group(
            None,
            vec![scope_logs(None, vec![record])],
        )])))
        .remove(0);
        assert_eq!(message["message"], text, "{body:?}");
        assert_eq!(message["metadata"]["body"], typed, "{body:?}");
    }
    let record = LogRecord {
        body: Some(AnyValue { value: None }),
        ..Default::default()
    };
    let message = messages(&proto(&request(vec![group(
        None,
        vec![scope_logs(None, vec![record])],
    )])))
    .remove(0);
    assert_eq!(message["message"], "");
    assert!(message.get("metadata").is_none(), "an empty body is no body");
}

#[test]
fn a_record_that_breaks_a_limit_is_rejected_and_the_others_go_on() {
    let limits = Limits {
        max_message_bytes: 100,
        ..Limits::default()
    };
    let records = vec![
        record("first"),
        record(&"x".repeat(101)),
        record("third"),
        record(&"y".repeat(100)),
    ];
    let mapped = proto_with(
        &limits,
        &request(vec![group(service("s"), vec![scope_logs(None, records)])]),
    )
    .unwrap();
    assert_eq!((mapped.accepted_records, mapped.rejected_records), (3, 1));
    let kept: Vec<String> = messages(&mapped)
        .iter()
        .map(|m| m["message"].as_str().unwrap().chars().take(5).collect())
        .collect();
    assert_eq!(kept, ["first", "third", "yyyyy"]);
    assert_eq!(
        mapped.rejection_message().unwrap(),
        "1 of 4 log records rejected: resourceLogs[0].scopeLogs[0].logRecords[1]: body: 101 bytes \
         as the message: at most 100 are allowed (limits.max_message_bytes)"
    );
}

#[test]
fn records_too_large_for_a_packet_and_too_deep_are_rejected_with_the_reason() {
    let limits = Limits {
        max_packet_bytes: 600,
        ..Limits::default()
    };
    let mut deep = text("bottom");
    for _ in 0..31 {
        deep = any(Value::ArrayValue(ArrayValue { values: vec![deep] }));
    }
    let mut shallow_enough = text("bottom");
    for _ in 0..30 {
        shallow_enough = any(Value::ArrayValue(ArrayValue {
            values: vec![shallow_enough],
        }));
    }
    let with_attribute = |value: AnyValue| LogRecord {
        attributes: vec![pair("deep", value)],
        ..Default::default()
    };
    let raw_too_big = record(&"z".repeat(700));
    // Each under the limit alone, together (the resource is in every
    // message) over it.
    let roomy = resource(vec![pair("service.name", text(&"s".repeat(300)))]);
    let mapped = proto_with(
        &limits,
        &request(vec![
            group(
                None,
                vec![scope_logs(
                    None,
                    vec![with_attribute(deep), with_attribute(shallow_enough), raw_too_big],
                )],
            ),
            group(roomy, vec![scope_logs(None, vec![record(&"b".repeat(300))])]),
        ]),
    )
    .unwrap();
    assert_eq!((mapped.accepted_records, mapped.rejected_records), (1, 3));
    let reasons = mapped.rejections.join("\n");
    for says in [
        "resourceLogs[0].scopeLogs[0].logRecords[0]: metadata: its attributes or body are nested 33 \
         levels deep: at most 32 are allowed",
        "resourceLogs[0].scopeLogs[0].logRecords[2]: the log record is 706 bytes: at most 600 are \
         allowed (limits.max_packet_bytes)",
        "resourceLogs[1].scopeLogs[0].logRecords[0]: it makes a message of",
    ] {
        assert!(reasons.contains(says), "{says}\nnot in:\n{reasons}");
    }
    assert!(reasons.ends_with("too many for a packet of at most 600 bytes (limits.max_packet_bytes)"));
}

#[test]
fn only_the_first_reasons_are_spelled_out() {
    let limits = Limits {
        max_message_bytes: 1,
        ..Limits::default()
    };
    let records: Vec<LogRecord> = (0..8).map(|_| record("too long")).collect();
    let mapped = proto_with(
        &limits,
        &request(vec![group(None, vec![scope_logs(None, records)])]),
    )
    .unwrap();
    assert!(mapped.packets.is_empty());
    let message = mapped.rejection_message().unwrap();
    assert!(message.starts_with("8 of 8 log records rejected: "), "{message}");
    assert!(message.ends_with("; and 3 more"), "{message}");
    assert_eq!(message.matches("limits.max_message_bytes").count(), 5);
}

#[test]
fn a_resource_too_deep_or_too_large_rejects_its_records() {
    let mut deep = text("bottom");
    for _ in 0..31 {
        deep = any(Value::ArrayValue(ArrayValue { values: vec![deep] }));
    }
    let mapped = proto(&request(vec![
        group(
            resource(vec![pair("deep", deep)]),
            vec![scope_logs(None, vec![record("a"), record("b")])],
        ),
        group(service("fine"), vec![scope_logs(None, vec![record("c")])]),
    ]));
    assert_eq!((mapped.accepted_records, mapped.rejected_records), (1, 2));
    assert!(mapped.rejections[0].contains("the resource or scope attributes are nested 33 levels deep"));
    assert_eq!(messages(&mapped)[0]["message"], "c");

    let limits = Limits {
        max_packet_bytes: 300,
        ..Limits::default()
    };
    let big = resource((0..40).map(|i| pair(&format!("k{i}"), text("v"))).collect());
    let mapped = proto_with(
        &limits,
        &request(vec![group(big, vec![scope_logs(None, vec![record("a")])])]),
    )
    .unwrap();
    assert_eq!((mapped.accepted_records, mapped.rejected_records), (0, 1));
    assert!(
        mapped.rejections[0].contains("its resource is"),
        "{:?}",
        mapped.rejections
    );
}

#[test]
fn ids_of_the_wrong_length_fail_the_request() {
    let record = LogRecord {
        trace_id: vec![1; 15],
        ..Default::default()
    };
    let error = proto_with(
        &Limits::default(),
        &request(vec![group(None, vec![scope_logs(None, vec![record])])]),
    )
    .unwrap_err();
    assert_eq!(
        error,
        RequestError::Invalid(
            "resourceLogs[0].scopeLogs[0].logRecords[0]: traceId: 15 bytes: it must be 16 bytes \
             (32 hex digits) or empty"
                .into()
        )
    );
}

#[test]
fn packets_past_the_whole_queue_fail_the_request_as_larger_than_the_queue() {
    let records: Vec<LogRecord> = (0..250).map(|i| record(&format!("message {i}"))).collect();
    let body = request(vec![group(service("s"), vec![scope_logs(None, records)])]).encode_to_vec();
    let limits = Limits {
        max_messages_per_packet: 100,
        ..Limits::default()
    };
    let fits = from_protobuf(&body, &limits, ROOM, now()).unwrap();
    let (packets, bytes) = (
        fits.packets.len(),
        fits.packets.iter().map(EncodedPacket::json_bytes).sum::<usize>(),
    );
    assert_eq!(packets, 3, "100 messages a packet");
    let exact = QueueBounds {
        max_packets: packets,
        max_bytes: bytes,
    };
    assert!(from_protobuf(&body, &limits, exact, now()).is_ok());
    let fewer_packets = QueueBounds {
        max_packets: packets - 1,
        ..exact
    };
    assert_eq!(
        from_protobuf(&body, &limits, fewer_packets, now()).unwrap_err(),
        RequestError::LargerThanQueue(LargerThanQueue::Packets { max: packets - 1 })
    );
    let fewer_bytes = QueueBounds {
        max_bytes: bytes - 1,
        ..exact
    };
    assert_eq!(
        from_protobuf(&body, &limits, fewer_bytes, now()).unwrap_err(),
        RequestError::LargerThanQueue(LargerThanQueue::Bytes { max: bytes - 1 })
    );
}
