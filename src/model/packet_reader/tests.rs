//! The hand reader against serde_json's: what it reads, what it leaves to
//! serde, and bodies split and read in one pass, spoilt byte by byte.

use super::super::incoming::{MetadataText, WholePacket};
use super::super::object::Object;
use super::super::{
    read_json_array, read_ndjson, split_json_array, split_ndjson, BodyError, EncodedPacket, Limits, RawPacket,
};
use super::read;
use proptest::prelude::*;
use serde_json::value::RawValue;

/// A message's fields as text, whichever reader read them.
type Fields = (String, String, String, Option<String>, Option<String>);

/// What serde_json's derived reader reads, when it reads it.
fn by_serde(text: &str) -> Option<(Option<String>, Vec<Fields>)> {
    let whole = serde_json::from_str::<WholePacket>(text).ok()?;
    let messages = whole.messages.iter().map(|Object(m)| {
        (
            m.level.to_string(),
            m.message.to_string(),
            m.source.to_string(),
            m.timestamp.map(|t| t.0.to_rfc3339()),
            m.metadata.map(|raw| RawValue::get(raw).to_string()),
        )
    });
    Some((whole.id.map(String::from), messages.collect()))
}

fn by_hand(text: &str) -> Option<(Option<String>, Vec<Fields>)> {
    let packet = read(text)?;
    let messages = packet.messages.iter().map(|m| {
        (
            m.level.to_string(),
            m.message.to_string(),
            m.source.to_string(),
            m.timestamp.map(|t| t.0.to_rfc3339()),
            m.metadata
                .map(|(MetadataText::Canonical(text) | MetadataText::Other(text))| text.to_string()),
        )
    });
    Some((packet.id.map(String::from), messages.collect()))
}

/// JSON strings: plain, escaped every way, a lone surrogate.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => "[a-zA-Z0-9 .:-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        1 => Just(r#""""#.to_string()),
        1 => Just(r#""a\"b\\c\/d\n\t\u00e9\ud83d\ude00""#.to_string()),
        1 => Just(r#""\\""#.to_string()),
        1 => Just(r#""x\ud800y""#.to_string()),
        1 => any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
}

/// Level names, mostly known ones.
fn level() -> impl Strategy<Value = String> {
    const KNOWN: [&str; 7] = ["INFO", "warn", "Error", "debug", "TRACE", " fatal ", "\\u0049NFO"];
    prop_oneof![
        6 => proptest::sample::select(&KNOWN[..]).prop_map(|name| format!("\"{name}\"")),
        1 => string(),
    ]
}

/// Values of the wrong type, or `null`.
fn other() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("5".to_string()),
        Just("-1.5e3".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just(r#"["INFO","m","s"]"#.to_string()),
        Just("{}".to_string()),
    ]
}

fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(r#""2026-01-01T00:00:00Z""#.to_string()),
        4 => Just(r#""2024-02-29T23:59:59.123+05:30""#.to_string()),
        2 => Just(r#""2024-02-29 23:59:59z""#.to_string()),
        1 => Just(r#""2023-02-29T00:00:00Z""#.to_string()),
        2 => Just(r#""2024\u002d01-01T00:00:00Z""#.to_string()),
        1 => Just(r#""yesterday""#.to_string()),
    ]
}

fn metadata() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just(r#"{"worker":3}"#.to_string()),
        4 => Just(r#"{ "b" : [1, {"c": "}]\"{["}], "a": null }"#.to_string()),
        1 => Just(r#"{"k":"\ud800"}"#.to_string()),
        1 => Just(r#"{"n":1e400}"#.to_string()),
        1 => Just(format!("{}1{}", r#"{"a":"#.repeat(40), "}".repeat(40))),
        1 => Just(format!("{}{}", r#"{"a":["#.repeat(70), "]}".repeat(70))),
    ]
}

/// A member `"key":value`, with whitespace around its parts.
fn member(key: &str, value: String, space: &str) -> String {
    format!("{space}\"{key}\"{space}:{space}{value}{space}")
}

fn message() -> impl Strategy<Value = String> {
    let value = |good: BoxedStrategy<String>| prop_oneof![12 => good, 1 => other()];
    let keys = vec!["level", "message", "source", "timestamp", "metadata"];
    (
        (
            value(level().boxed()),
            value(string().boxed()),
            value(string().boxed()),
        ),
        proptest::option::of(value(timestamp().boxed())),
        proptest::option::of(value(metadata().boxed())),
        (
            Just(keys).prop_shuffle(),
            prop_oneof![8 => Just(None), 1 => (0..3usize).prop_map(Some)],
        ),
        prop_oneof![
            12 => Just(None),
            1 => Just(Some("level")),
            1 => Just(Some("colour")),
            1 => Just(Some("\\u006cevel")),
        ],
        prop_oneof![Just(""), Just(" "), Just("\n\t ")],
        prop_oneof![30 => Just(false), 1 => Just(true)],
    )
        .prop_map(
            |((level, text, source), timestamp, metadata, (keys, missing), extra, space, not_an_object)| {
                if not_an_object {
                    return r#"["INFO","m","s"]"#.to_string();
                }
                let mut members: Vec<String> = keys
                    .iter()
                    .filter(|&&key| missing.map(|i| ["level", "message", "source"][i]) != Some(key))
                    .filter_map(|&key| {
                        let value = match key {
                            "level" => level.clone(),
                            "message" => text.clone(),
                            "source" => source.clone(),
                            "timestamp" => timestamp.clone()?,
                            _ => metadata.clone()?,
                        };
                        Some(member(key, value, space))
                    })
                    .collect();
                if let Some(key) = extra {
                    members.push(member(key, r#""x""#.into(), space));
                }
                format!("{{{}}}", members.join(","))
            },
        )
}

fn packet() -> impl Strategy<Value = String> {
    (
        proptest::option::of(prop_oneof![4 => string(), 1 => other()]),
        prop_oneof![
            8 => proptest::collection::vec(message(), 0..4).prop_map(|m| format!("[{}]", m.join(","))),
            1 => other(),
        ],
        proptest::option::of(prop_oneof![
            Just("0"),
            Just("4294967295"),
            Just("4294967296"),
            Just("-1"),
            Just("1.5"),
            Just("1e3"),
            Just("null"),
            Just("\"3\""),
        ]),
        prop_oneof![
            8 => Just(None),
            1 => Just(Some(("id", r#""again""#))),
            1 => Just(Some(("messages", "[]"))),
            1 => Just(Some(("retry_count", "1"))),
        ],
        prop_oneof![Just(""), Just(" "), Just("\r\n ")],
        any::<bool>(),
    )
        .prop_map(|(id, messages, retry_count, twice, space, messages_first)| {
            let mut members = Vec::new();
            members.extend(id.map(|id| member("id", id, space)));
            let messages = member("messages", messages, space);
            if messages_first {
                members.insert(0, messages);
            } else {
                members.push(messages);
            }
            members.extend(retry_count.map(|n| member("retry_count", n.to_string(), space)));
            if let Some((key, value)) = twice {
                members.push(member(key, value.into(), space));
            }
            format!("{space}{{{}}}{space}", members.join(","))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn what_is_read_by_hand_is_what_serde_reads(text in packet()) {
        // The reader is given JSON values only.
        prop_assume!(serde_json::from_str::<&RawValue>(&text).is_ok());
        let text = text.trim();
        if let Some(read) = by_hand(text) {
            prop_assert_eq!(Some(read), by_serde(text), "{}", text);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Whichever way a packet was read and its strings written
    /// (copied as plain, or escaped), its encoding is the one serde's
    /// shapes give.
    #[test]
    fn valid_packets_encode_as_their_decoded_packet_does(text in packet()) {
        let Ok(raw) = RawValue::from_string(text.trim().to_string()) else {
            return Ok(());
        };
        if let Ok(encoded) = Limits::default().validate(0, raw.as_ref().into(), chrono::Utc::now()) {
            prop_assert_eq!(EncodedPacket::new(&encoded.decode(0)), encoded);
        }
    }
}

/// Packets of the usual shape (which the reader reads whole), mostly
/// valid, with their parts in any order.
fn usual_packet() -> impl Strategy<Value = String> {
    let metadata = prop::sample::select(vec![
        r#"{"worker":3}"#,
        r#"{}"#,
        r#"{"a":[1,{"b":null}],"c":"x","d":-12,"e":true}"#,
        "null",
    ]);
    let message = (
        level(),
        string(),
        string(),
        proptest::option::of(prop_oneof![timestamp(), Just("null".to_string())]),
        proptest::option::of(metadata),
        prop_oneof![Just(""), Just(" "), Just("\n\t ")],
    )
        .prop_map(|(level, text, source, timestamp, metadata, space)| {
            let mut members = vec![
                member("level", level, space),
                member("message", text, space),
                member("source", source, space),
            ];
            members.extend(timestamp.map(|t| member("timestamp", t, space)));
            members.extend(metadata.map(|m| member("metadata", m.to_string(), space)));
            members
        })
        .prop_shuffle()
        .prop_map(|members| format!("{{{}}}", members.join(",")));
    (
        proptest::option::of(prop_oneof![string(), Just("null".to_string())]),
        proptest::collection::vec(message, 1..4),
        proptest::option::of(prop::sample::select(vec![
            "0",
            "7",
            "4294967295",
            "null",
            "07",
            "nul",
            "-0",
        ])),
    )
        .prop_map(|(id, messages, retry_count)| {
            let mut members = vec![format!(r#""messages":[{}]"#, messages.join(","))];
            members.extend(id.map(|id| format!(r#""id":{id}"#)));
            members.extend(retry_count.map(|n| format!(r#""retry_count":{n}"#)));
            format!("{{{}}}", members.join(","))
        })
}

/// A way to spoil a body at some byte.
#[derive(Debug, Clone)]
enum Spoil {
    Put(u8),
    Replace(u8),
    Remove,
    Cut,
}

/// A request body of packets, a JSON array or NDJSON, maybe spoilt: a
/// byte JSON cares about put in or put in place of another, one taken
/// out, or the end cut off.
fn body() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let byte = prop::sample::select(&b"\x01\x1f\"\\{}[],:0 \n\xff\xc3tn"[..]);
    let spoil = prop_oneof![
        4 => Just(None),
        1 => (any::<prop::sample::Index>(), byte.clone()).prop_map(|(at, byte)| Some((at, Spoil::Put(byte)))),
        1 => (any::<prop::sample::Index>(), byte).prop_map(|(at, byte)| Some((at, Spoil::Replace(byte)))),
        1 => any::<prop::sample::Index>().prop_map(|at| Some((at, Spoil::Remove))),
        1 => any::<prop::sample::Index>().prop_map(|at| Some((at, Spoil::Cut))),
    ];
    let packet = prop_oneof![3 => usual_packet(), 1 => packet()];
    (proptest::collection::vec(packet, 1..5), any::<bool>(), spoil).prop_map(|(packets, ndjson, spoil)| {
        let mut body = if ndjson {
            packets.join("\n").into_bytes()
        } else {
            format!("[{}]", packets.join(",")).into_bytes()
        };
        if let Some((at, spoil)) = spoil {
            let at = at.index(body.len());
            match spoil {
                Spoil::Put(byte) => body.insert(at, byte),
                Spoil::Replace(byte) => body[at] = byte,
                Spoil::Remove => drop(body.remove(at)),
                Spoil::Cut => body.truncate(at),
            }
        }
        (body, ndjson)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// A body read by hand as it is split gives what serde_json's
    /// split gives, and each packet validates to the same verdict
    /// (whether what was read of it is kept or read again).
    #[test]
    fn bodies_read_as_they_are_split_are_what_serde_splits(
        (body, ndjson) in body(),
        max in 1usize..5,
        forget in any::<bool>(),
    ) {
        let (read, split) = if ndjson {
            (read_ndjson(&body, max), split_ndjson(&body, max))
        } else {
            (read_json_array(&body, max), split_json_array(&body, max))
        };
        let texts = read.as_ref().map(|packets| packets.iter().map(RawPacket::text).collect::<Vec<_>>());
        let split_texts = split.as_ref().map(|raws| raws.iter().map(|raw| raw.get()).collect::<Vec<_>>());
        prop_assert_eq!(texts, split_texts);
        let (Ok(read), Ok(split)) = (read, split) else {
            return Ok(());
        };
        let now = chrono::Utc::now();
        for (index, (mut packet, raw)) in read.into_iter().zip(split).enumerate() {
            if forget && index % 2 == 1 {
                packet.forget_reading();
            }
            let by_hand = Limits::default().validate(index, packet, now);
            let by_serde = Limits::default().validate(index, raw.into(), now);
            match (by_hand, by_serde) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a.messages_json(), b.messages_json()),
                (Err(a), Err(b)) => prop_assert_eq!(a, b),
                (a, b) => prop_assert!(false, "by hand {:?}, by serde {:?}", a, b),
            }
        }
    }
}

/// Bodies a reader that trusted its text to be JSON would take.
#[test]
fn bodies_that_are_not_json_are_refused_as_serde_refuses_them() {
    let good = r#"{"id":"a","messages":[{"level":"INFO","message":"m","source":"s"}]}"#;
    for body in [
        format!("[{good},"),
        format!("[{good}"),
        format!("[{good}]]"),
        format!("[{good},]"),
        r#"[{"id":"a\"#.to_string(),
        r#"[{"id":"a\u"#.to_string(),
        r#"[{"id":"a","messages":[],"retry_count":07}]"#.to_string(),
        r#"[{"id":nul,"messages":[]}]"#.to_string(),
        r#"[{"id":nulx,"messages":[]}]"#.to_string(),
        format!("[{}]", good.replace("\"m\"", "\"m\u{1}\"")),
        format!("[{}]", good.replace("\"s\"", "\"s\"\"")),
        format!(
            "[{}]",
            good.replace("\"s\"}", "\"s\",\"metadata\":{\"k\":\"\u{1}\"}}")
        ),
        format!("[{}]", good.replace("\"s\"}", "\"s\",\"metadata\":{\"a\":tru}}")),
        format!("[{}]", good.replace("\"s\"}", "\"s\",\"metadata\":{\"a\":[}]}")),
    ] {
        assert!(
            split_json_array(body.as_bytes(), 10).is_err(),
            "the test's premise: {body}"
        );
        assert_eq!(
            read_json_array(body.as_bytes(), 10).map(|packets| packets.len()),
            split_json_array(body.as_bytes(), 10).map(|raws| raws.len()),
            "{body}"
        );
    }
    let body = format!("[{good},{good}]");
    assert_eq!(read_json_array(body.as_bytes(), 2).unwrap().len(), 2);
    assert_eq!(
        read_json_array(body.as_bytes(), 1).unwrap_err(),
        BodyError::TooManyPackets { max: 1 }
    );
}

#[test]
fn the_usual_packets_are_read_by_hand() {
    let compact = r#"{"id":"p-1","messages":[{"level":"INFO","message":"served in 3 ms","source":"api","timestamp":"2026-01-01T00:00:00Z","metadata":{"worker":3}},{"level":"warn","message":"m","source":"s"}]}"#;
    let pretty =
        serde_json::to_string_pretty(&serde_json::from_str::<serde_json::Value>(compact).unwrap()).unwrap();
    let escaped = r#"{"messages":[{"source":"s","message":"a \"quoted\" \\ path\n","level":"INFO","timestamp":null,"metadata":null}],"retry_count":2,"id":null}"#;
    for text in [compact, pretty.as_str(), escaped] {
        let read = by_hand(text);
        assert!(read.is_some(), "{text}");
        assert_eq!(read, by_serde(text), "{text}");
    }
    let (_, messages) = by_hand(escaped).unwrap();
    assert_eq!(messages[0].1, "a \"quoted\" \\ path\n");
}

#[test]
fn other_shapes_are_left_to_serde() {
    for text in [
        r#"{"messages":[["INFO","m","s"]]}"#,
        r#"{"messages":[{"level":"INFO","message":"m","source":"s","colour":"red"}]}"#,
        r#"{"messages":[{"level":"INFO","level":"INFO","message":"m","source":"s"}]}"#,
        r#"{"messages":[{"\u006cevel":"INFO","message":"m","source":"s"}]}"#,
        r#"{"messages":[{"level":"INFO","message":"m","source":"s","metadata":[1]}]}"#,
        r#"{"messages":[{"level":"INFO","message":"m","source":"s","timestamp":"yesterday"}]}"#,
        r#"{"messages":[{"level":5,"message":"m","source":"s"}]}"#,
        r#"{"messages":[{"level":"INFO","message":"m"}]}"#,
        r#"{"id":"a","messages":[],"retry_count":-1}"#,
        r#"{"id":"\ud800","messages":[]}"#,
        r#"{"id":"a"}"#,
    ] {
        assert!(read(text).is_none(), "{text}");
    }
}

proptest! {
    /// The block search finds the byte a plain search finds, wherever it
    /// sits in a block and whatever bytes (above 0x7f too) surround it.
    #[test]
    fn the_first_byte_ending_plain_text_is_found_where_it_is(
        plain in proptest::collection::vec(prop_oneof![0x20u8..0x22, 0x23u8..0x5c, 0x5du8..=0xff], 0..70),
        stop in prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20],
        after in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut bytes = plain.clone();
        bytes.push(stop);
        bytes.extend_from_slice(&after);
        prop_assert_eq!(super::super::encode::find_special(&bytes), Some(plain.len()));
        prop_assert_eq!(super::super::encode::find_special(&plain), None);
    }
}
