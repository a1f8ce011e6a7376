//! OTLP/JSON as the specification writes it, and as receivers must also
//! take it (snake_case names, integers as numbers, ids in either case).

use super::*;
use serde_json::json;

/// One record's JSON inside a request with a named service.
fn with_record(record: &str) -> String {
    format!(
        r#"{{"resourceLogs":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"svc"}}}}]}},
           "scopeLogs":[{{"logRecords":[{record}]}}]}}]}}"#
    )
}

fn only_message(record: &str) -> serde_json::Value {
    let mapped = json(&with_record(record));
    let all = messages(&mapped);
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

fn refusal(text: &str) -> String {
    match json_with(&Limits::default(), text) {
        Err(RequestError::Invalid(reason)) => reason,
        other => panic!("expected 400 for {text}, got {other:?}"),
    }
}

#[test]
fn every_any_value_kind_is_read() {
    let message = only_message(
        r#"{"body":{"stringValue":"hi"},"attributes":[
            {"key":"s","value":{"stringValue":"text"}},
            {"key":"b","value":{"boolValue":true}},
            {"key":"i_string","value":{"intValue":"-9223372036854775808"}},
            {"key":"i_number","value":{"intValue":42}},
            {"key":"d","value":{"doubleValue":2.5}},
            {"key":"d_whole","value":{"doubleValue":3}},
            {"key":"d_string","value":{"doubleValue":"1.5"}},
            {"key":"nan","value":{"doubleValue":"NaN"}},
            {"key":"inf","value":{"doubleValue":"Infinity"}},
            {"key":"ninf","value":{"doubleValue":"-Infinity"}},
            {"key":"a","value":{"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"x"},{}]}}},
            {"key":"kv","value":{"kvlistValue":{"values":[{"key":"inner","value":{"boolValue":false}}]}}},
            {"key":"bytes","value":{"bytesValue":"AAEC+v8="}},
            {"key":"bytes_url_unpadded","value":{"bytesValue":"AAEC-v8"}},
            {"key":"empty","value":{}},
            {"key":"no_value"}
        ]}"#,
    );
    assert_eq!(message["message"], "hi");
    assert_eq!(
        message["metadata"]["attributes"],
        json!({
            "s": "text", "b": true,
            "i_string": i64::MIN, "i_number": 42,
            "d": 2.5, "d_whole": 3.0, "d_string": 1.5,
            "nan": "NaN", "inf": "Infinity", "ninf": "-Infinity",
            "a": [1, "x", null],
            "kv": {"inner": false},
            "bytes": {"bytes_base64": "AAEC+v8="},
            "bytes_url_unpadded": {"bytes_base64": "AAEC+v8="},
            "empty": null, "no_value": null,
        })
    );
    // A double stays a double: 3 is written 3.0.
    let text = serde_json::to_string(&message["metadata"]["attributes"]["d_whole"]).unwrap();
    assert_eq!(text, "3.0");
}

#[test]
fn integers_are_taken_as_strings_or_numbers() {
    let as_strings = only_message(
        r#"{"timeUnixNano":"1700000000123456789","observedTimeUnixNano":"1700000001000000000",
            "severityNumber":"13","droppedAttributesCount":"2","flags":"1"}"#,
    );
    let as_numbers = only_message(
        r#"{"timeUnixNano":1700000000123456789,"observedTimeUnixNano":1.700000001e18,
            "severityNumber":13,"droppedAttributesCount":2,"flags":1}"#,
    );
    assert_eq!(as_strings, as_numbers);
    assert_eq!(as_strings["timestamp"], "2023-11-14T22:13:20.123456789Z");
    assert_eq!(as_strings["level"], "WARNING");
    assert_eq!(
        as_strings["metadata"],
        json!({
            "time_unix_nano": "1700000000123456789",
            "observed_time_unix_nano": "1700000001000000000",
            "severity_number": 13, "dropped_attributes_count": 2, "flags": 1,
            "resource": {"service.name": "svc"},
        })
    );
    for (record, says) in [
        (r#"{"timeUnixNano":"-1"}"#, "timeUnixNano: -1 is out of range"),
        (
            r#"{"timeUnixNano":"12x"}"#,
            "timeUnixNano: \"12x\" is not an integer",
        ),
        (
            r#"{"timeUnixNano":"inf"}"#,
            "timeUnixNano: \"inf\" is not an integer",
        ),
        (r#"{"flags":4294967296}"#, "flags: 4294967296 is out of range"),
        (r#"{"flags":1.5}"#, "flags: 1.5 is not an integer"),
        (
            r#"{"attributes":[{"key":"k","value":{"intValue":"9223372036854775808"}}]}"#,
            "attributes[0].value.intValue: 9223372036854775808 is out of range",
        ),
    ] {
        let reason = refusal(&with_record(record));
        assert!(
            reason.starts_with("resourceLogs[0].scopeLogs[0].logRecords[0]: "),
            "{reason}"
        );
        assert!(reason.contains(says), "{record}: {reason}");
    }
}

#[test]
fn severity_numbers_are_integers_or_enum_names() {
    for (value, level, number) in [
        ("17", "ERROR", 17),
        ("\"17\"", "ERROR", 17),
        ("\"SEVERITY_NUMBER_ERROR\"", "ERROR", 17),
        ("\"SEVERITY_NUMBER_TRACE4\"", "TRACE", 4),
        ("null", "INFO", 0),
    ] {
        let message = only_message(&format!(r#"{{"severityNumber":{value}}}"#));
        assert_eq!(message["level"], level, "{value}");
        assert_eq!(
            message["metadata"]
                .get("severity_number")
                .cloned()
                .unwrap_or(json!(0)),
            number,
            "{value}"
        );
    }
    let reason = refusal(&with_record(r#"{"severityNumber":"LOUD"}"#));
    assert!(
        reason.contains("severityNumber: \"LOUD\" is not an integer"),
        "{reason}"
    );
}

#[test]
fn ids_are_hex_in_either_case_and_empty_is_unset() {
    let message =
        only_message(r#"{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174"}"#);
    assert_eq!(
        message["metadata"]["trace_id"],
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(message["metadata"]["span_id"], "eee19b7ec3c1b174");
    for unset in [
        r#"{"traceId":"","spanId":""}"#,
        r#"{"traceId":null,"spanId":null}"#,
        r#"{"traceId":"00000000000000000000000000000000","spanId":"0000000000000000"}"#,
    ] {
        let message = only_message(unset);
        assert!(message["metadata"].get("trace_id").is_none(), "{unset}");
        assert!(message["metadata"].get("span_id").is_none(), "{unset}");
    }
    for (record, says) in [
        (r#"{"traceId":"zz"}"#, "traceId: \"zz\" is not hex"),
        (
            r#"{"spanId":"abc"}"#,
            "spanId: \"abc\" is not hex: an odd number of digits",
        ),
        (
            r#"{"traceId":"0x5b8efff798038103d269b633813fc6"}"#,
            "traceId: \"0x5b8e",
        ),
        (
            r#"{"traceId":"5b8efff7"}"#,
            "traceId: 4 bytes: it must be 16 bytes",
        ),
        (
            r#"{"spanId":"5b8efff798038103d2"}"#,
            "spanId: 9 bytes: it must be 8 bytes",
        ),
        (r#"{"traceId":5}"#, "traceId: invalid type: integer `5`"),
    ] {
        let reason = refusal(&with_record(record));
        assert!(reason.contains(says), "{record}: {reason}");
        assert!(
            reason.starts_with("resourceLogs[0].scopeLogs[0].logRecords[0]"),
            "{reason}"
        );
    }
}

#[test]
fn snake_case_names_read_as_camel_case() {
    let camel = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}],
        "droppedAttributesCount":1},"schemaUrl":"https://r",
        "scopeLogs":[{"scope":{"name":"lib","version":"1.0","droppedAttributesCount":2},"schemaUrl":"https://s",
        "logRecords":[{"timeUnixNano":"1","observedTimeUnixNano":"2","severityNumber":9,"severityText":"info",
        "body":{"kvlistValue":{"values":[{"key":"k","value":{"arrayValue":{"values":[{"bytesValue":"AQ=="},
        {"doubleValue":1.5},{"boolValue":true},{"intValue":"3"}]}}}]}},
        "droppedAttributesCount":3,"flags":1,"traceId":"5b8efff798038103d269b633813fc60c",
        "spanId":"eee19b7ec3c1b174","eventName":"e"}]}]}]}"#;
    let snake = r#"{"resource_logs":[{"resource":{"attributes":[{"key":"service.name","value":{"string_value":"svc"}}],
        "dropped_attributes_count":1},"schema_url":"https://r",
        "scope_logs":[{"scope":{"name":"lib","version":"1.0","dropped_attributes_count":2},"schema_url":"https://s",
        "log_records":[{"time_unix_nano":"1","observed_time_unix_nano":"2","severity_number":9,"severity_text":"info",
        "body":{"kvlist_value":{"values":[{"key":"k","value":{"array_value":{"values":[{"bytes_value":"AQ=="},
        {"double_value":1.5},{"bool_value":true},{"int_value":"3"}]}}}]}},
        "dropped_attributes_count":3,"flags":1,"trace_id":"5b8efff798038103d269b633813fc60c",
        "span_id":"eee19b7ec3c1b174","event_name":"e"}]}]}]}"#;
    let camel = messages(&json(camel));
    assert_eq!(camel, messages(&json(snake)));
    assert_eq!(camel[0]["metadata"]["event_name"], "e");
    assert_eq!(camel[0]["metadata"]["scope"]["dropped_attributes_count"], 2);
    assert_eq!(
        camel[0]["metadata"]["body"],
        json!({"k": [{"bytes_base64": "AQ=="}, 1.5, true, 3]})
    );
}

#[test]
fn unknown_fields_are_ignored_and_null_is_the_default() {
    let message = only_message(
        r#"{"body":{"stringValue":"m","futureField":1},"someday":{"nested":[1,2]},
            "attributes":null,"severityText":null,"eventName":null}"#,
    );
    assert_eq!(message["message"], "m");
    assert_eq!(message["metadata"], json!({"resource": {"service.name": "svc"}}));
    let mapped = json(r#"{"resourceLogs":null,"partialSuccess":{}}"#);
    assert!(mapped.packets.is_empty());
    let mapped = json(r#"{}"#);
    assert!(mapped.packets.is_empty());
    let mapped = json(r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[]}]},{}]}"#);
    assert!(mapped.packets.is_empty());
}

#[test]
fn an_any_value_holds_one_value_at_most() {
    let reason = refusal(&with_record(r#"{"body":{"stringValue":"a","intValue":"1"}}"#));
    assert!(
        reason.contains("body: an AnyValue holds more than one value"),
        "{reason}"
    );
    // null is no value.
    let message = only_message(r#"{"body":{"stringValue":null,"intValue":"1"}}"#);
    assert_eq!(message["message"], "1");
}

#[test]
fn bytes_are_base64_standard_or_url_safe() {
    for text in ["+/8=", "+/8", "-_8=", "-_8"] {
        let message = only_message(&format!(r#"{{"body":{{"bytesValue":"{text}"}}}}"#));
        assert_eq!(
            message["metadata"]["body"],
            json!({"bytes_base64": "+/8="}),
            "{text}"
        );
    }
    let reason = refusal(&with_record(r#"{"body":{"bytesValue":"not base64!"}}"#));
    assert!(reason.contains("body.bytesValue: not base64"), "{reason}");
}

#[test]
fn a_body_that_is_not_a_request_is_refused_with_the_reason() {
    for (body, says) in [
        ("", "the request: expected a JSON object, got not JSON"),
        ("[]", "the request: expected a JSON object, got an array"),
        (
            "{\"resourceLogs\":{}}",
            "resourceLogs: invalid type: map, expected an array",
        ),
        (
            "{\"resourceLogs\":[5]}",
            "resourceLogs[0]: expected a JSON object, got a number",
        ),
        (
            "{\"resourceLogs\":[[]]}",
            "resourceLogs[0]: expected a JSON object, got an array",
        ),
        ("{} trailing", "the request: trailing characters"),
        (
            "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":",
            "the request: resourceLogs: EOF while parsing",
        ),
        (
            "{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"attributes\":[{\"key\":1}]}]}]}]}",
            "resourceLogs[0].scopeLogs[0].logRecords[0]: attributes[0].key: invalid type: integer `1`",
        ),
    ] {
        let reason = refusal(body);
        assert!(reason.contains(says), "{body:?}: {reason}");
    }
    let not_utf8 = from_json(b"{\"resourceLogs\":\xff}", &Limits::default(), ROOM, now());
    assert!(matches!(not_utf8, Err(RequestError::Invalid(r)) if r.contains("not UTF-8")));
}

#[test]
fn values_and_pairs_are_objects_not_positional_arrays() {
    for (record, says) in [
        (
            r#"{"body":["text"]}"#,
            "body: invalid type: sequence, expected a JSON object",
        ),
        (
            r#"{"attributes":[["k",{"stringValue":"v"}]]}"#,
            "attributes[0]: invalid type: sequence, expected a JSON object",
        ),
        (
            r#"{"body":{"arrayValue":[[{"stringValue":"a"}]]}}"#,
            "body.arrayValue: invalid type: sequence, expected a JSON object",
        ),
        (
            r#"{"body":{"kvlistValue":{"values":[["k",{"intValue":1}]]}}}"#,
            "body.kvlistValue.values[0]: invalid type: sequence, expected a JSON object",
        ),
    ] {
        let reason = refusal(&with_record(record));
        assert!(
            reason.contains(&format!("logRecords[0]: {says}")),
            "{record}: {reason}"
        );
    }
    let reason = refusal(r#"{"resourceLogs":[{"resource":{"attributes":[["k",{"stringValue":"v"}]]}}]}"#);
    assert!(
        reason.contains("resource: attributes[0]: invalid type: sequence"),
        "{reason}"
    );
}

#[test]
fn nesting_as_deep_as_json_allows_is_refused_cleanly() {
    // 60 nested arrays: past serde_json's recursion limit of 128 containers.
    let mut value = String::from(r#"{"intValue":"1"}"#);
    for _ in 0..60 {
        value = format!(r#"{{"arrayValue":{{"values":[{value}]}}}}"#);
    }
    let reason = refusal(&with_record(&format!(r#"{{"body":{value}}}"#)));
    assert!(reason.contains("recursion limit exceeded"), "{reason}");
}
