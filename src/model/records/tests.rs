//! Records from body to packets: the shippers' shapes, the field mapping,
//! the invalid records and the bounds.

use super::*;
use crate::model::LogMessage;
use serde_json::json;

fn now() -> DateTime<Utc> {
    "2025-01-25T20:30:45Z".parse().unwrap()
}

const ROOMY: QueueBounds = QueueBounds {
    max_packets: 1_000_000,
    max_bytes: usize::MAX,
};

fn packed(body: &str, framing: Framing) -> Packed {
    pack(
        body.as_bytes(),
        framing,
        &RecordRules::default(),
        &Limits::default(),
        ROOMY,
        now(),
    )
    .unwrap_or_else(|e| panic!("{body}: {e}"))
}

/// Every message of every packet, in order.
fn messages(packed: &Packed) -> Vec<LogMessage> {
    packed
        .packets
        .iter()
        .flat_map(|packet| packet.decode(0).messages)
        .collect()
}

/// The one message `record` maps to with the default rules.
fn one(record: Value) -> LogMessage {
    let packed = packed(&record.to_string(), Framing::Json);
    assert!(packed.invalid.is_empty(), "{record}: {:?}", packed.invalid);
    messages(&packed).remove(0)
}

fn refusal(record: &str) -> String {
    let packed = packed(record, Framing::Json);
    assert_eq!(packed.invalid.len(), 1, "{record}");
    packed.invalid[0].reason.clone()
}

#[test]
fn a_vector_event_maps_field_for_field() {
    let message = one(json!({
        "message": "GET /health 200", "timestamp": "2024-12-05T09:13:20.123456789Z",
        "host": "web-1", "source_type": "file", "file": "/var/log/app.log",
    }));
    assert_eq!(message.message, "GET /health 200");
    assert_eq!(message.source, "web-1");
    assert_eq!(message.level, Level::Info, "the default level");
    assert_eq!(
        message.timestamp.to_rfc3339(),
        "2024-12-05T09:13:20.123456789+00:00"
    );
    assert_eq!(
        Value::Object(message.metadata.unwrap()),
        json!({"source_type": "file", "file": "/var/log/app.log"}),
        "every field not mapped, and only those"
    );
}

#[test]
fn a_fluent_bit_kubernetes_record_keeps_its_nested_objects() {
    let kubernetes = json!({"pod_name": "api-7d9f", "namespace_name": "prod", "container_name": "api",
                            "labels": {"app": "api", "tier": {"deep": [1, 2]}}});
    let message = one(json!({
        "date": 1733390000.123, "log": "panic: nil map\n", "stream": "stderr",
        "kubernetes": kubernetes.clone(),
    }));
    assert_eq!(message.message, "panic: nil map\n");
    assert_eq!(message.timestamp.timestamp_millis(), 1_733_390_000_123);
    assert_eq!(message.source, "api", "from kubernetes.container_name");
    assert_eq!(
        Value::Object(message.metadata.unwrap()),
        json!({"stream": "stderr", "kubernetes": kubernetes}),
        "a nested field read by path stays where it was"
    );
}

#[test]
fn a_logstash_event_with_a_host_object() {
    let message = one(json!({
        "@timestamp": "2024-12-05T09:13:20.123Z", "@version": "1", "message": "user login",
        "host": {"name": "lb-2", "ip": ["10.0.0.2"]}, "event": {"original": "user login"},
    }));
    assert_eq!(message.source, "lb-2", "host is an object: host.name is taken");
    assert_eq!(message.timestamp.timestamp_millis(), 1_733_390_000_123);
    let metadata = message.metadata.unwrap();
    assert_eq!(metadata["host"], json!({"name": "lb-2", "ip": ["10.0.0.2"]}));
    assert_eq!(metadata["@version"], "1");
    assert_eq!(metadata["event"], json!({"original": "user login"}));
}

#[test]
fn syslog_style_records_with_numeric_or_named_levels() {
    let message =
        one(json!({"msg": "disk full", "severity": 3, "service": "storage", "time": "2024-12-05 09:13:20"}));
    assert_eq!(
        (message.level, message.source.as_str(), message.message.as_str()),
        (Level::Error, "storage", "disk full")
    );
    assert_eq!(
        one(json!({"msg": "m", "level": 40})).level,
        Level::Warning,
        "pino"
    );
    assert_eq!(one(json!({"msg": "m", "lvl": "warn"})).level, Level::Warning);
    assert_eq!(one(json!({"msg": "m", "level": "FATAL"})).level, Level::Critical);
}

#[test]
fn the_first_field_that_holds_a_value_wins_and_the_others_stay() {
    let message = one(json!({"log": "from log", "message": "from message", "msg": null}));
    assert_eq!(message.message, "from message");
    let metadata = message.metadata.unwrap();
    assert_eq!(metadata["log"], "from log");
    assert_eq!(metadata["msg"], Value::Null);
    // A level that is not one stays in metadata; the next field or the
    // default is used. The same for a source that is not a non-empty string.
    let message =
        one(json!({"msg": "m", "level": "verbose", "severity": "notice", "source": "", "host": "h"}));
    assert_eq!(message.level, Level::Notice);
    assert_eq!(message.source, "h");
    let metadata = message.metadata.unwrap();
    assert_eq!(metadata["level"], "verbose");
    assert_eq!(metadata["source"], "");
    let plain = one(json!({"message": "m", "level": 99}));
    assert_eq!((plain.level, plain.source.as_str()), (Level::Info, "unknown"));
    assert_eq!(plain.timestamp, now(), "no timestamp: the time it was received");
}

#[test]
fn a_message_that_is_not_a_string_is_its_json_text() {
    assert_eq!(one(json!({"message": {"a": [1, 2]}})).message, r#"{"a":[1,2]}"#);
    assert_eq!(one(json!({"message": 42})).message, "42");
}

#[test]
fn configured_fields_and_defaults_replace_the_defaults() {
    let rules = RecordRules {
        message_fields: vec!["body.text".into()],
        timestamp_fields: vec!["ts".into()],
        level_fields: vec![],
        source_fields: vec!["app".into()],
        default_level: Level::Debug,
        default_source: "edge".into(),
        ..RecordRules::default()
    };
    let body = json!([{"body": {"text": "hello"}, "ts": 1733390000, "level": "error", "app": "checkout"},
                      {"body": {"text": "again"}}]);
    let packed = pack(
        body.to_string().as_bytes(),
        Framing::Json,
        &rules,
        &Limits::default(),
        ROOMY,
        now(),
    )
    .unwrap();
    let got = messages(&packed);
    assert_eq!(got[0].message, "hello");
    assert_eq!(
        got[0].level,
        Level::Debug,
        "no level field configured: the default"
    );
    assert_eq!(got[0].source, "checkout");
    assert_eq!(got[0].metadata.as_ref().unwrap()["level"], "error");
    assert_eq!(got[1].source, "edge");
}

#[test]
fn invalid_records_are_named_with_their_reason_and_text() {
    assert_eq!(
        refusal(r#"{"level": "info", "text": "where is it"}"#),
        "no message field: looked for message, log, msg"
    );
    assert!(refusal(r#"{"message": "m", "timestamp": "soon"}"#)
        .starts_with("timestamp (field `timestamp`): \"soon\" is not an RFC 3339 time"));
    assert_eq!(
        refusal(&json!({"log": "x".repeat(10_001)}).to_string()),
        "message (field `log`): 10001 bytes long: at most 10000 are allowed"
    );
    assert_eq!(refusal("[1]"), "a record must be a JSON object, got a number");
    assert!(refusal(r#"[{"message": }, {"msg": "fine"}]"#).starts_with("not valid JSON: "));
    let mut deep = Value::from(1);
    for _ in 0..40 {
        deep = json!({"d": deep});
    }
    assert!(refusal(&json!({"message": "m", "deep": deep}).to_string()).starts_with("nested 41 levels deep"));
    // The invalid ones are taken out; the others go on, in order.
    let packed = packed(
        r#"[{"msg":"a"},{"nope":1},{"msg":"b"},"text",{"msg":"c"}]"#,
        Framing::Json,
    );
    assert_eq!(packed.total, 5);
    assert_eq!(packed.accepted, 3);
    let texts: Vec<_> = messages(&packed).into_iter().map(|m| m.message).collect();
    assert_eq!(texts, ["a", "b", "c"]);
    let invalid: Vec<_> = packed
        .invalid
        .iter()
        .map(|r| (r.index, r.text.as_str()))
        .collect();
    assert_eq!(invalid, [(1, r#"{"nope":1}"#), (3, r#""text""#)]);
}

#[test]
fn an_invalid_record_goes_to_the_dead_letter_as_it_was_sent() {
    let record = InvalidRecord {
        index: 7,
        reason: "no message field: looked for message, log, msg".into(),
        text: r#"{"lvl":"x"}"#.into(),
    };
    let packet = record.dead_letter_packet(&RecordRules::default(), now());
    assert!(uuid::Uuid::parse_str(&packet.id).is_ok());
    let message = &packet.messages[0];
    assert_eq!(message.message, r#"{"lvl":"x"}"#);
    assert_eq!((message.level, message.source.as_str()), (Level::Info, "unknown"));
    assert_eq!(
        Value::Object(message.metadata.clone().unwrap()),
        json!({"invalid_record": {"index": 7, "error": "no message field: looked for message, log, msg"}})
    );
    assert_eq!(
        record.final_error(),
        "invalid record 7: no message field: looked for message, log, msg"
    );
}

#[test]
fn every_framing_gives_the_same_records() {
    let records = [
        r#"{"msg":"one"}"#,
        r#"{"msg":"two","n":{"x":[1]}}"#,
        r#"{"msg":"three"}"#,
    ];
    let bodies = [
        (format!("[{}]", records.join(",")), Framing::Json),
        (format!("[\n  {}\n]\n", records.join(",\n  ")), Framing::Json),
        (records.join(""), Framing::Json),
        (records.join("\n"), Framing::Json),
        (format!("{}\n", records.join("\n")), Framing::Lines),
        (records.join("\r\n\r\n"), Framing::Lines),
    ];
    for (body, framing) in bodies {
        let texts: Vec<_> = messages(&packed(&body, framing))
            .into_iter()
            .map(|m| m.message)
            .collect();
        assert_eq!(texts, ["one", "two", "three"], "{body:?}");
    }
    assert_eq!(
        messages(&packed(r#"{"msg":"alone"}"#, Framing::Json))[0].message,
        "alone"
    );
}

#[test]
fn a_bad_ndjson_line_is_one_invalid_record() {
    let packed = packed("{\"msg\":\"a\"}\nnot json\n{\"msg\":\"b\"}\n", Framing::Lines);
    assert_eq!(packed.accepted, 2);
    assert_eq!(packed.invalid.len(), 1);
    assert_eq!(packed.invalid[0].index, 1);
    assert_eq!(packed.invalid[0].text, "not json");
}

#[test]
fn a_body_cut_short_keeps_what_came_whole() {
    let packed = packed(r#"[{"msg":"a"},{"msg":"b"},{"msg":"c"#, Framing::Json);
    assert_eq!(packed.accepted, 2);
    assert_eq!(packed.invalid[0].reason, "the body ends inside this value");
    assert_eq!(packed.invalid[0].text, r#"{"msg":"c"#);
}

#[test]
fn bodies_with_nothing_usable_are_refused_whole() {
    let refused = |body: &str, framing| {
        pack(
            body.as_bytes(),
            framing,
            &RecordRules::default(),
            &Limits::default(),
            ROOMY,
            now(),
        )
        .unwrap_err()
    };
    assert_eq!(refused("", Framing::Json), RecordsError::Empty);
    assert_eq!(refused(" [ ] ", Framing::Json), RecordsError::Empty);
    assert_eq!(refused("\n\n", Framing::Lines), RecordsError::Empty);
    for (body, framing) in [
        ("hello world", Framing::Json),
        ("plain text\nlines\n", Framing::Lines),
        (r#"{"msg": "cut"#, Framing::Json),
        ("[", Framing::Json),
    ] {
        let error = refused(body, framing);
        assert!(
            matches!(error, RecordsError::NotJson { .. }),
            "{body:?}: {error:?}"
        );
        assert!(
            error.to_string().starts_with("body holds no JSON: record 0: "),
            "{error}"
        );
    }
}

#[test]
fn packets_are_cut_by_message_count_then_by_bytes_in_order() {
    let body: Vec<Value> = (0..250).map(|i| json!({"msg": format!("m{i}")})).collect();
    let packed = packed(&Value::Array(body).to_string(), Framing::Json);
    let sizes: Vec<_> = packed.packets.iter().map(EncodedPacket::message_count).collect();
    assert_eq!(sizes, [100, 100, 50]);
    let texts: Vec<_> = messages(&packed).into_iter().map(|m| m.message).collect();
    assert_eq!(texts, (0..250).map(|i| format!("m{i}")).collect::<Vec<_>>());
    let ids: std::collections::HashSet<_> = packed.packets.iter().map(|p| p.id().to_string()).collect();
    assert_eq!(ids.len(), 3, "each packet has an id of its own");

    let limits = Limits {
        max_packet_bytes: 2000,
        ..Limits::default()
    };
    let body: Vec<Value> = (0..20)
        .map(|i| json!({"msg": format!("{i:03}{}", "x".repeat(300))}))
        .collect();
    let rules = RecordRules::default();
    let packed = pack(
        Value::Array(body).to_string().as_bytes(),
        Framing::Json,
        &rules,
        &limits,
        ROOMY,
        now(),
    )
    .unwrap();
    assert!(packed.packets.iter().all(|p| p.json_bytes() <= 2000));
    assert!(packed.packets.len() > 3);
    let texts: Vec<_> = messages(&packed)
        .into_iter()
        .map(|m| m.message[..3].to_string())
        .collect();
    assert_eq!(texts, (0..20).map(|i| format!("{i:03}")).collect::<Vec<_>>());
    // A record no packet can hold is invalid, and the open packet goes on.
    let body = json!([{"msg": "a"}, {"msg": "y".repeat(3000)}, {"msg": "b"}]).to_string();
    let limits = Limits {
        max_packet_bytes: 2000,
        max_message_bytes: 5000,
        ..Limits::default()
    };
    let packed = pack(body.as_bytes(), Framing::Json, &rules, &limits, ROOMY, now()).unwrap();
    assert_eq!(packed.packets.len(), 1);
    assert_eq!(packed.packets[0].message_count(), 2);
    assert!(packed.invalid[0]
        .reason
        .contains("on its own: at most 2000 are allowed (limits.max_packet_bytes)"));
}

#[test]
fn a_huge_number_of_records_stops_at_the_bounds() {
    let count = 100_000;
    let body = format!("[{}]", vec![r#"{"log":"x","stream":"stdout"}"#; count].join(","));
    let packed = packed(&body, Framing::Json);
    assert_eq!(packed.accepted, count);
    assert_eq!(packed.packets.len(), count / 100);
    let rules = RecordRules::default();
    let limits = Limits::default();
    let few = QueueBounds {
        max_packets: 10,
        max_bytes: usize::MAX,
    };
    assert_eq!(
        pack(body.as_bytes(), Framing::Json, &rules, &limits, few, now()).unwrap_err(),
        RecordsError::LargerThanQueue(LargerThanQueue::Packets { max: 10 })
    );
    let small = QueueBounds {
        max_packets: usize::MAX,
        max_bytes: 100_000,
    };
    assert_eq!(
        pack(body.as_bytes(), Framing::Json, &rules, &limits, small, now()).unwrap_err(),
        RecordsError::LargerThanQueue(LargerThanQueue::Bytes { max: 100_000 })
    );
    // Invalid records count against the bytes too: a body of millions of
    // tiny scalars stops at the bound, whatever its length.
    let scalars = "1 ".repeat(2_000_000);
    let started = std::time::Instant::now();
    assert_eq!(
        pack(scalars.as_bytes(), Framing::Json, &rules, &limits, small, now()).unwrap_err(),
        RecordsError::LargerThanQueue(LargerThanQueue::Bytes { max: 100_000 })
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
}

#[test]
fn the_rules_are_checked() {
    let limits = Limits::default();
    assert_eq!(RecordRules::default().check(&limits), Ok(()));
    let bad = |rules: RecordRules| rules.check(&limits).unwrap_err();
    assert_eq!(
        bad(RecordRules {
            message_fields: vec![],
            ..RecordRules::default()
        }),
        "message_fields: name at least one field"
    );
    assert!(bad(RecordRules {
        source_fields: vec!["host..name".into()],
        ..RecordRules::default()
    })
    .starts_with("source_fields: \"host..name\" is not a field name"));
    assert_eq!(
        bad(RecordRules {
            default_source: " ".into(),
            ..RecordRules::default()
        }),
        "default_source: must not be empty"
    );
    assert!(bad(RecordRules {
        max_messages_per_packet: Some(1001),
        ..RecordRules::default()
    })
    .starts_with("max_messages_per_packet: 1001 is out of range 1..=1000"));
}

#[test]
fn unset_messages_per_packet_is_the_default_within_the_limits() {
    let rules = RecordRules::default();
    let limits = |max_messages_per_packet| Limits {
        max_messages_per_packet,
        ..Limits::default()
    };
    assert_eq!(
        rules.messages_per_packet(&limits(1000)),
        DEFAULT_MESSAGES_PER_PACKET
    );
    assert_eq!(rules.messages_per_packet(&limits(10)), 10);
    assert_eq!(
        rules.check(&limits(10)),
        Ok(()),
        "a lower limit is followed, not refused"
    );
    let set = RecordRules {
        max_messages_per_packet: Some(500),
        ..rules
    };
    assert_eq!(set.messages_per_packet(&limits(1000)), 500);
    assert!(
        set.check(&limits(10)).is_err(),
        "a number set above the limit is refused"
    );
}

mod any_body {
    use super::*;
    use proptest::prelude::*;

    /// Bodies made of the bytes that matter to the scan and the mapping:
    /// brackets, quotes, escapes, separators, field names and values.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop_oneof![
            Just(&b"{"[..]),
            Just(&b"}"[..]),
            Just(&b"["[..]),
            Just(&b"]"[..]),
            Just(&b","[..]),
            Just(&b":"[..]),
            Just(&b"\""[..]),
            Just(&b"\\"[..]),
            Just(&b"\n"[..]),
            Just(&b" "[..]),
            Just(&br#""msg":"m""#[..]),
            Just(&br#""log":"l""#[..]),
            Just(&br#""date":1733390000.5"#[..]),
            Just(&br#""timestamp":"2024-12-05T09:13:20Z""#[..]),
            Just(&br#""level":40"#[..]),
            Just(&br#""host":{"name":"h"}"#[..]),
            Just(&b"1e400"[..]),
            Just(&b"null"[..]),
        ];
        prop::collection::vec(pieces, 0..60).prop_map(|parts| parts.concat())
    }

    fn holds_invariants(body: &[u8]) {
        let rules = RecordRules {
            max_messages_per_packet: Some(3),
            ..RecordRules::default()
        };
        let limits = Limits::default();
        for framing in [Framing::Json, Framing::Lines] {
            let Ok(packed) = pack(body, framing, &rules, &limits, ROOMY, now()) else {
                continue;
            };
            assert_eq!(packed.accepted + packed.invalid.len(), packed.total);
            let messages: usize = packed.packets.iter().map(EncodedPacket::message_count).sum();
            assert_eq!(messages, packed.accepted);
            for packet in &packed.packets {
                assert!((1..=3).contains(&packet.message_count()));
                let decoded = packet.decode(0);
                assert_eq!(
                    &EncodedPacket::new(&decoded),
                    packet,
                    "the encoding survives a round trip"
                );
            }
            let mut indexes = packed.invalid.iter().map(|record| record.index);
            assert!(indexes.all(|index| index < packed.total));
        }
    }

    proptest! {
        #[test]
        fn never_panic_and_account_for_every_record(body in jsonish()) {
            holds_invariants(&body);
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..200)) {
            holds_invariants(&body);
        }
    }
}
