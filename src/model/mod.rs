//! Log packets and messages: the wire shapes clients send, the validated
//! shapes the distributor keeps, and the validation rules with their limits.
//!
//! A request body is parsed in two steps so that one bad packet does not
//! spoil its neighbours: the body is split into raw packets
//! ([`read_json_array`], [`read_ndjson`]: read as they are split when
//! they have the usual shape), then each raw packet is validated on its
//! own ([`Limits::validate`]), giving either an
//! [`EncodedPacket`] (written straight from the request's text) or a
//! [`PacketError`] naming the field at fault.
//!
//! Shippers' flat JSON records take another way in ([`records`]): each is
//! mapped to a message, and the messages are packed in order.
//!
//! No request may bring in more than the whole queue holds
//! ([`QueueBounds`]), whichever route it takes.

mod bounds;
mod canonical;
mod encode;
mod incoming;
mod object;
mod packet_reader;
pub mod records;
mod rfc3339;
mod split;
mod validate;
mod wire;

pub use bounds::{LargerThanQueue, QueueBounds};
pub(crate) use encode::{write_message_head, write_str, PacketEncoder};
pub use encode::{write_retry_count, EncodedPacket};
pub use incoming::MAX_METADATA_DEPTH;
pub(crate) use object::Object;
pub(crate) use rfc3339::Timestamp;
pub use split::{read_json_array, read_ndjson, split_json_array, split_ndjson, BodyError, RawPacket};
pub use validate::{Limits, PacketError};
pub use wire::{Level, LogMessage, LogPacket};

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use serde_json::value::RawValue;

    fn now() -> DateTime<Utc> {
        "2025-01-25T20:30:45Z".parse().unwrap()
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_string()).unwrap()
    }

    fn check(text: &str) -> Result<LogPacket, PacketError> {
        Limits::default()
            .validate(0, raw(text).as_ref().into(), now())
            .map(|p| p.decode(0))
    }

    const ALL_LEVELS: [Level; 9] = [
        Level::Emergency,
        Level::Alert,
        Level::Critical,
        Level::Error,
        Level::Warning,
        Level::Notice,
        Level::Info,
        Level::Debug,
        Level::Trace,
    ];

    const GOOD: &str =
        r#"{"messages":[{"level":"ERROR","message":"Database connection failed","source":"api-service"}]}"#;

    mod timestamps {
        use super::super::rfc3339;
        use chrono::{DateTime, SecondsFormat, Utc};
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn are_written_as_chrono_writes_them(
                seconds in -62_135_596_800i64..253_402_300_799i64,
                nanos in prop_oneof![
                    Just(0u32),
                    (0u32..1000).prop_map(|ms| ms * 1_000_000),
                    (0u32..1_000_000).prop_map(|us| us * 1_000),
                    0u32..1_000_000_000,
                ],
            ) {
                let time = DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap();
                let mut text = [0u8; 30];
                let len = rfc3339::write(&time, &mut text).expect("years 0 to 9999 are written");
                let chrono = time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                prop_assert_eq!(std::str::from_utf8(&text[..len]).unwrap(), chrono.as_str());
            }

            /// Times one after another, many in the same second (which
            /// a thread writes from the text of the last one).
            #[test]
            fn in_a_row_are_written_as_chrono_writes_them(
                times in proptest::collection::vec(
                    (1_767_225_598i64..1_767_225_602, prop_oneof![Just(0u32), 0u32..1_000_000_000]),
                    1..40,
                ),
            ) {
                for (seconds, nanos) in times {
                    let time = DateTime::<Utc>::from_timestamp(seconds, nanos).unwrap();
                    let mut text = [0u8; 30];
                    let len = rfc3339::write(&time, &mut text).expect("years 0 to 9999 are written");
                    let chrono = time.to_rfc3339_opts(SecondsFormat::AutoSi, true);
                    prop_assert_eq!(std::str::from_utf8(&text[..len]).unwrap(), chrono.as_str());
                }
            }
        }

        #[test]
        fn a_leap_second_after_its_second_falls_back_to_chrono() {
            let second = DateTime::<Utc>::from_timestamp(1_483_228_799, 0).unwrap();
            let leap = DateTime::<Utc>::from_timestamp(1_483_228_799, 1_500_000_000).unwrap();
            let mut text = [0u8; 30];
            assert_eq!(rfc3339::write(&second, &mut text), Some(20));
            assert_eq!(rfc3339::write(&leap, &mut text), None, "only chrono writes :60");
        }
    }

    mod strings {
        use super::super::write_str;
        use proptest::prelude::*;

        fn written(text: &str) -> String {
            let mut out = Vec::new();
            write_str(text, &mut out);
            String::from_utf8(out).unwrap()
        }

        proptest! {
            #[test]
            fn are_written_as_serde_writes_them(
                text in any::<String>(),
                plain_prefix in 0usize..200,
            ) {
                // Behind a plain run of any length, so that the byte to
                // escape falls anywhere in a block.
                let text = format!("{}{text}", "a".repeat(plain_prefix));
                prop_assert_eq!(written(&text), serde_json::to_string(&text).unwrap());
            }
        }

        #[test]
        fn a_byte_to_escape_anywhere_is_escaped() {
            for at in 0..200 {
                for special in ['"', '\\', '\n', '\u{1f}', '\0'] {
                    let mut text = "x".repeat(200);
                    text.insert(at, special);
                    assert_eq!(written(&text), serde_json::to_string(&text).unwrap());
                }
            }
        }
    }

    #[test]
    fn timestamps_only_chrono_can_write_fall_back_to_it() {
        let far = DateTime::<Utc>::from_timestamp(300_000_000_000, 0).unwrap();
        assert_eq!(rfc3339::write(&far, &mut [0; 30]), None);
        let message = LogMessage {
            level: Level::Info,
            message: "m".into(),
            source: "s".into(),
            timestamp: far,
            metadata: None,
        };
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["timestamp"], serde_json::to_value(far).unwrap());
    }

    #[test]
    fn level_names_are_their_serde_names() {
        for level in ALL_LEVELS {
            assert_eq!(serde_json::to_value(level).unwrap(), level.name());
        }
    }

    #[test]
    fn encoded_packets_write_what_serde_writes_and_decode_back() {
        let plain = r#"{"id":"p-1","messages":[{"level":"INFO","message":"plain text","source":"api",
            "timestamp":"2024-01-01T10:00:15.250Z"},{"level":"debug","message":"two","source":"b"}]}"#;
        let escaped = r#"{"id":"a,\"b\" é","messages":[{"level":"warn","message":"x\ny \\ \"q\" \u0041\/","source":"s\t",
               "metadata":{"n":1.5,"deep":{"list":[1,null,"z"]}}}]}"#;
        // Metadata copied as it came (canonical), read and written again
        // (keys out of order, spaces), or null.
        let metadata = r#"{"id":"p-2","messages":[{"level":"INFO","message":"m","source":"s",
            "metadata":{"a":[1,-2,"x",null],"b":{"c":true,"d":{}}}},
            {"level":"INFO","message":"m","source":"s","metadata":{"b":1, "a":{"z":0,"y":[]}}},
            {"level":"INFO","message":"m","source":"s","metadata":null}]}"#;
        for text in [plain, escaped, metadata] {
            // Encoded as it is validated, from the request's own text.
            let validated = Limits::default()
                .validate(0, raw(text).as_ref().into(), now())
                .unwrap();
            let packet = validated.decode(0);
            assert_eq!(
                EncodedPacket::new(&packet),
                validated,
                "both ways of encoding agree"
            );
            encoded_packet_matches_serde(&validated, &packet);
        }
    }

    fn encoded_packet_matches_serde(encoded: &EncodedPacket, packet: &LogPacket) {
        assert_eq!(encoded.id(), packet.id);
        assert_eq!(encoded.message_count(), packet.messages.len());
        assert_eq!(
            encoded.messages_json(),
            serde_json::to_string(&packet.messages).unwrap(),
            "the messages' JSON is the array serde writes"
        );
        for retries in [0, 7, u32::MAX] {
            let mut json = Vec::new();
            encoded.write_json(retries, &mut json);
            let expected = serde_json::to_vec(&LogPacket {
                retry_count: retries,
                ..packet.clone()
            })
            .unwrap();
            assert_eq!(
                String::from_utf8(json.clone()).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            assert!(json.len() <= encoded.json_bytes());
            assert_eq!(
                encoded.decode(retries),
                LogPacket {
                    retry_count: retries,
                    ..packet.clone()
                }
            );
        }
    }

    #[test]
    fn a_minimal_packet_gets_an_id_and_the_receive_time() {
        let p = check(GOOD).unwrap();
        assert!(uuid::Uuid::parse_str(&p.id).is_ok());
        assert_eq!(p.messages[0].timestamp, now());
        assert_eq!(p.messages[0].level, Level::Error);
        assert_eq!(p.retry_count, 0);
    }

    #[test]
    fn client_ids_timestamps_and_metadata_are_kept() {
        let p = check(
            r#"{"id":"abc-123","retry_count":2,"messages":[{"level":"warn","message":"m","source":"s",
               "timestamp":"2024-01-01T10:00:15Z","metadata":{"attempt_count":5}}]}"#,
        )
        .unwrap();
        assert_eq!(p.id, "abc-123");
        assert_eq!(p.retry_count, 0, "a client's retry_count is reset");
        assert_eq!(p.messages[0].level, Level::Warning);
        assert_eq!(p.messages[0].timestamp.to_rfc3339(), "2024-01-01T10:00:15+00:00");
        assert_eq!(p.messages[0].metadata.as_ref().unwrap()["attempt_count"], 5);
    }

    mod level_names {
        use super::super::Level;
        use proptest::prelude::*;

        /// Every name a level is read from, with its level.
        const NAMES: [(&str, Level); 17] = [
            ("emergency", Level::Emergency),
            ("emerg", Level::Emergency),
            ("panic", Level::Emergency),
            ("alert", Level::Alert),
            ("critical", Level::Critical),
            ("crit", Level::Critical),
            ("fatal", Level::Critical),
            ("error", Level::Error),
            ("err", Level::Error),
            ("warning", Level::Warning),
            ("warn", Level::Warning),
            ("notice", Level::Notice),
            ("info", Level::Info),
            ("informational", Level::Info),
            ("information", Level::Info),
            ("debug", Level::Debug),
            ("trace", Level::Trace),
        ];

        /// The rule, plainly: trimmed, then equal to a name in any case.
        fn reference(text: &str) -> Option<Level> {
            let name = text.trim();
            NAMES
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(name))
                .map(|&(_, level)| level)
        }

        fn near_names() -> impl Strategy<Value = String> {
            (
                proptest::sample::select(&NAMES[..]),
                proptest::collection::vec(any::<bool>(), 13),
                prop_oneof![Just(""), Just(" "), Just("\t\u{a0}"), Just("x"), Just("\u{130}")],
                prop_oneof![Just(""), Just(" "), Just("s"), Just("\n")],
                0usize..3,
            )
                .prop_map(|((name, _), upper, before, after, cut)| {
                    let name: String = name
                        .chars()
                        .zip(upper)
                        .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
                        .collect();
                    let name = &name[..name.len() - if cut == 2 { 1 } else { 0 }];
                    format!("{before}{name}{after}")
                })
        }

        proptest! {
            #[test]
            fn are_read_as_the_rule_says(text in prop_oneof![near_names(), "\\PC{0,14}"]) {
                prop_assert_eq!(text.parse::<Level>().ok(), reference(&text), "{:?}", text);
            }
        }
    }

    #[test]
    fn levels_accept_rfc5424_names_and_aliases_in_any_case() {
        for (text, level) in [
            ("EMERG", Level::Emergency),
            ("panic", Level::Emergency),
            ("Alert", Level::Alert),
            ("crit", Level::Critical),
            ("FATAL", Level::Critical),
            ("err", Level::Error),
            ("Warning", Level::Warning),
            ("notice", Level::Notice),
            ("informational", Level::Info),
            ("INFO", Level::Info),
            ("debug", Level::Debug),
            ("trace", Level::Trace),
        ] {
            assert_eq!(text.parse::<Level>(), Ok(level), "{text}");
        }
        assert!("verbose".parse::<Level>().is_err());
        for level in ALL_LEVELS {
            assert_eq!(level.name().parse::<Level>(), Ok(level));
            assert_eq!(format!(" {} ", level.name()).parse::<Level>(), Ok(level));
        }
    }

    #[test]
    fn a_source_or_id_of_only_whitespace_is_refused_and_any_other_taken() {
        for blank in ["", " ", "\t\n", "\u{3000}", "\u{a0} "] {
            let source =
                serde_json::json!({"messages": [{"level": "INFO", "message": "m", "source": blank}]});
            let id = serde_json::json!({"id": blank, "messages": [{"level": "INFO", "message": "m", "source": "s"}]});
            assert!(check(&source.to_string()).is_err(), "source {blank:?}");
            assert!(check(&id.to_string()).is_err(), "id {blank:?}");
        }
        for taken in ["a", " a", "\u{3000}a", "é", "-"] {
            let source =
                serde_json::json!({"messages": [{"level": "INFO", "message": "m", "source": taken}]});
            assert_eq!(check(&source.to_string()).unwrap().messages[0].source, taken);
        }
    }

    #[test]
    fn each_rule_names_the_field() {
        let cases = [
            (r#"{}"#, "missing field `messages`"),
            (r#"{"messages":[]}"#, "messages: must hold at least 1"),
            (r#"{"messages":"x"}"#, "invalid type"),
            (
                r#"{"messages":[{"level":"nope","message":"m","source":"s"}]}"#,
                "messages[0].level: unknown level",
            ),
            (
                r#"{"messages":[{"level":"info","message":"m","source":" "}]}"#,
                "messages[0].source: must not be empty",
            ),
            (
                r#"{"messages":[{"level":"info","message":"m"}]}"#,
                "missing field `source`",
            ),
            (
                r#"{"id":"","messages":[{"level":"info","message":"m","source":"s"}]}"#,
                "id: must not be empty",
            ),
            (
                r#"{"id":"a\u0000b","messages":[{"level":"info","message":"m","source":"s"}]}"#,
                "control characters",
            ),
            (
                r#"{"messages":[{"level":"info","message":"m","source":"s","timestamp":"yesterday"}]}"#,
                "input contains invalid characters",
            ),
            (
                r#"{"messages":[{"level":"info","message":"m","source":"s","colour":"red"}]}"#,
                "unknown field `colour`",
            ),
        ];
        for (text, expected) in cases {
            let err = check(text).unwrap_err();
            assert!(err.reason.contains(expected), "{text}: got {:?}", err.reason);
        }
    }

    #[test]
    fn packets_and_messages_are_objects_not_positional_arrays() {
        let message = r#"{"level":"info","message":"m","source":"s"}"#;
        let cases = [
            (
                r#"[null,[["INFO","m","src"]]]"#.to_string(),
                "a packet must be a JSON object",
            ),
            (
                format!(r#"["p-1",[{message}]]"#),
                "a packet must be a JSON object",
            ),
            (
                r#"{"messages":[["INFO","m","src"]]}"#.to_string(),
                "messages[0]: a message must be a JSON object",
            ),
            (
                format!(r#"{{"messages":[{message}, ["INFO","m","src",null,null]]}}"#),
                "messages[1]: a message must be a JSON object",
            ),
            (
                r#"{"id":"p-2","messages":[ ["INFO","m","src"] ]}"#.to_string(),
                "messages[0]: a message must be a JSON object",
            ),
        ];
        for (text, expected) in cases {
            let err = check(&text).unwrap_err();
            assert_eq!(err.reason, expected, "{text}");
        }
        let err = check(r#"{"id":"p-2","messages":[["INFO","m","src"]]}"#).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("p-2"), "the refusal names the packet");
    }

    #[test]
    fn message_text_is_limited_to_10000_bytes() {
        let at_limit = format!(
            r#"{{"messages":[{{"level":"info","message":"{}","source":"s"}}]}}"#,
            "x".repeat(10_000)
        );
        assert!(check(&at_limit).is_ok());
        let over = at_limit.replace(&"x".repeat(10_000), &"x".repeat(10_001));
        let err = check(&over).unwrap_err();
        assert!(
            err.reason.contains("messages[0].message: 10001 bytes"),
            "{}",
            err.reason
        );
    }

    #[test]
    fn messages_per_packet_are_limited() {
        let msg = r#"{"level":"info","message":"m","source":"s"}"#;
        let packet = |n: usize| format!(r#"{{"messages":[{}]}}"#, vec![msg; n].join(","));
        assert!(check(&packet(1000)).is_ok());
        assert!(check(&packet(1001)).unwrap_err().reason.contains("1001 messages"));
    }

    #[test]
    fn packets_are_limited_to_one_mebibyte() {
        let limits = Limits {
            max_packet_bytes: 50,
            ..Limits::default()
        };
        let err = limits.validate(3, raw(GOOD).as_ref().into(), now()).unwrap_err();
        assert_eq!(err.index, 3);
        assert!(err.reason.contains("at most 50"), "{}", err.reason);
    }

    #[test]
    fn a_failed_packet_reports_its_id_when_readable() {
        let err = check(r#"{"id":"p-7","messages":[]}"#).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("p-7"));
        let err = check(r#"{"id":"p-8"}"#).unwrap_err();
        assert_eq!(err.id.as_deref(), Some("p-8"));
        let err = check(r#"{"messages":[{"level":"nope","message":"m","source":"s"}]}"#).unwrap_err();
        assert_eq!(err.id, None, "no id is made up for a refused packet");
    }

    #[test]
    fn bodies_split_into_raw_packets() {
        let body = format!("[{GOOD}, 5, {GOOD}]");
        assert_eq!(split_json_array(body.as_bytes(), 1000).unwrap().len(), 3);
        assert_eq!(
            split_json_array(b"{}", 1000).unwrap_err(),
            BodyError::NotAnArray("an object")
        );
        assert!(matches!(
            split_json_array(b"[{", 1000),
            Err(BodyError::InvalidJson(_))
        ));
        assert!(matches!(
            split_json_array(b"[5] x", 1000),
            Err(BodyError::InvalidJson(_))
        ));
        let ndjson = format!("{GOOD}\n\n{GOOD}\r\n");
        assert_eq!(split_ndjson(ndjson.as_bytes(), 1000).unwrap().len(), 2);
        let bad = format!("{GOOD}\n{{oops\n");
        assert!(matches!(
            split_ndjson(bad.as_bytes(), 1000),
            Err(BodyError::InvalidNdjsonLine { line: 2, .. })
        ));
    }

    #[test]
    fn request_counts_are_limited_as_the_body_is_split() {
        assert_eq!(split_json_array(b" [ ] ", 3).unwrap_err(), BodyError::Empty);
        assert_eq!(split_ndjson(b"\n \r\n", 3).unwrap_err(), BodyError::Empty);
        assert_eq!(split_json_array(b"[1,2,3]", 3).unwrap().len(), 3);
        assert_eq!(split_ndjson(b"1\n2\n3\n", 3).unwrap().len(), 3);
        let too_many = BodyError::TooManyPackets { max: 3 };
        assert_eq!(split_json_array(b"[1,2,3,4]", 3).unwrap_err(), too_many);
        assert_eq!(split_ndjson(b"1\n2\n3\n4", 3).unwrap_err(), too_many);
        // Counting stops at the first packet too many: what follows it is
        // not read.
        assert_eq!(split_json_array(b"[1,2,3,4,oops", 3).unwrap_err(), too_many);
        assert_eq!(split_ndjson(b"1\n2\n3\n4\n{oops", 3).unwrap_err(), too_many);
        assert_eq!(
            too_many.to_string(),
            "request holds more than 3 packets: at most 3 are allowed per request"
        );
    }

    #[test]
    fn long_numbers_in_metadata_survive_a_round_trip() {
        // Found by the ingest fuzzer: without float_roundtrip, 2.4e61 came
        // back one step off after being written and read again.
        let p = check(
            r#"{"messages":[{"level":"info","message":"m","source":"s",
               "metadata":{"attempt":24000000000000000000000000000000000000000000000000000000000000,"tiny":2.0000000000000002e-19}}]}"#,
        )
        .unwrap();
        let back: LogPacket = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn packets_round_trip_in_the_analyzer_shape() {
        let p = check(GOOD).unwrap();
        let text = serde_json::to_string(&p).unwrap();
        assert!(text.contains(r#""level":"ERROR""#));
        assert!(text.contains(r#""retry_count":0"#));
        let back: LogPacket = serde_json::from_str(&text).unwrap();
        assert_eq!(back, p);
    }
}
