//! "Natural JSON" of OTLP values: an `AnyValue` written as the JSON a
//! person would write for it, and as serde_json writes the same
//! `serde_json::Value` (object keys in byte order, numbers as serde_json
//! formats them), so that a packet read back and encoded again gives the
//! same bytes.
//!
//! | AnyValue | JSON |
//! | --- | --- |
//! | string | string |
//! | bool | `true` / `false` |
//! | int | integer |
//! | double | number with a fraction or exponent (`1.0`); NaN and the infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | array | array |
//! | kvlist | object (a repeated key: the last one wins) |
//! | bytes | `{"bytes_base64": "<standard base64>"}` |
//! | no value | `null` |

use crate::model::write_str;
use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};

/// The key of the object that stands for a bytes value.
pub(crate) const BYTES_KEY: &str = "bytes_base64";

/// Appends the natural JSON of `value` (`null` for none); answers its
/// nesting: 0 for a scalar, 1 + the deepest element for an array or object.
pub(crate) fn write_value(value: Option<&AnyValue>, out: &mut Vec<u8>) -> usize {
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(Value::StringValueStrindex(_)) => {
            out.extend_from_slice(b"null");
            0
        }
        Some(Value::StringValue(text)) => {
            write_str(text, out);
            0
        }
        Some(Value::BoolValue(true)) => {
            out.extend_from_slice(b"true");
            0
        }
        Some(Value::BoolValue(false)) => {
            out.extend_from_slice(b"false");
            0
        }
        Some(Value::IntValue(n)) => {
            serde_json::to_writer(&mut *out, n).expect("an integer always serialises");
            0
        }
        Some(Value::DoubleValue(x)) => {
            write_double(*x, out);
            0
        }
        Some(Value::ArrayValue(array)) => {
            out.push(b'[');
            let mut deepest = 0;
            for (i, item) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                deepest = deepest.max(write_value(Some(item), out));
            }
            out.push(b']');
            1 + deepest
        }
        Some(Value::KvlistValue(list)) => write_object(&list.values, out),
        Some(Value::BytesValue(bytes)) => {
            out.extend_from_slice(b"{\"");
            out.extend_from_slice(BYTES_KEY.as_bytes());
            out.extend_from_slice(b"\":\"");
            let start = out.len();
            let encoded =
                base64::encoded_len(bytes.len(), true).expect("a body's bytes fit in memory as base64");
            out.resize(start + encoded, 0);
            base64::engine::general_purpose::STANDARD
                .encode_slice(bytes, &mut out[start..])
                .expect("the buffer is sized for the encoding");
            out.push(b'"');
            out.push(b'}');
            1
        }
    }
}

/// Appends key-value pairs as a JSON object, keys in byte order, a
/// repeated key once with its last value; answers its nesting (at least 1).
pub(crate) fn write_object(pairs: &[KeyValue], out: &mut Vec<u8>) -> usize {
    out.push(b'{');
    let mut deepest = 0;
    let mut write_pair = |first: bool, pair: &KeyValue, out: &mut Vec<u8>| {
        if !first {
            out.push(b',');
        }
        write_str(&pair.key, out);
        out.push(b':');
        deepest = deepest.max(write_value(pair.value.as_ref(), out));
    };
    if pairs.windows(2).all(|w| w[0].key < w[1].key) {
        // Already in order and unique (no sort, no allocation).
        for (i, pair) in pairs.iter().enumerate() {
            write_pair(i == 0, pair, out);
        }
    } else {
        // A stable sort keeps repeated keys in the order sent: the last of
        // each run is the one that wins.
        let mut order: Vec<&KeyValue> = pairs.iter().collect();
        order.sort_by(|a, b| a.key.cmp(&b.key));
        let mut first = true;
        for (i, pair) in order.iter().enumerate() {
            if order.get(i + 1).is_some_and(|next| next.key == pair.key) {
                continue;
            }
            write_pair(first, pair, out);
            first = false;
        }
    }
    out.push(b'}');
    1 + deepest
}

/// Appends a double as serde_json writes it (`1.0`, `1e300`), or a
/// non-finite one as the string OTLP/JSON uses for it.
fn write_double(x: f64, out: &mut Vec<u8>) {
    if x.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if x.is_infinite() {
        out.extend_from_slice(if x > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else {
        serde_json::to_writer(&mut *out, &x).expect("a finite double always serialises");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use serde_json::json;

    fn any(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    fn pair(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(any(value)),
            ..Default::default()
        }
    }

    fn natural(value: Option<&AnyValue>) -> (String, usize) {
        let mut out = Vec::new();
        let depth = write_value(value, &mut out);
        (String::from_utf8(out).unwrap(), depth)
    }

    #[test]
    fn every_kind_is_written_as_natural_json() {
        let cases = [
            (Value::StringValue("a \"q\"\n".into()), json!("a \"q\"\n"), 0),
            (Value::BoolValue(true), json!(true), 0),
            (Value::BoolValue(false), json!(false), 0),
            (Value::IntValue(i64::MIN), json!(i64::MIN), 0),
            (Value::DoubleValue(1.0), json!(1.0), 0),
            (Value::DoubleValue(-2.5e-300), json!(-2.5e-300), 0),
            (Value::DoubleValue(f64::NAN), json!("NaN"), 0),
            (Value::DoubleValue(f64::INFINITY), json!("Infinity"), 0),
            (Value::DoubleValue(f64::NEG_INFINITY), json!("-Infinity"), 0),
            (
                Value::BytesValue(vec![0, 1, 2, 250, 255]),
                json!({"bytes_base64": "AAEC+v8="}),
                1,
            ),
            (
                Value::ArrayValue(ArrayValue {
                    values: vec![any(Value::IntValue(1)), AnyValue { value: None }],
                }),
                json!([1, null]),
                1,
            ),
            (
                Value::KvlistValue(KeyValueList {
                    values: vec![pair(
                        "inner",
                        Value::ArrayValue(ArrayValue {
                            values: vec![any(Value::StringValue("x".into()))],
                        }),
                    )],
                }),
                json!({"inner": ["x"]}),
                2,
            ),
        ];
        for (value, expected, depth) in cases {
            let value = any(value);
            let (text, nesting) = natural(Some(&value));
            assert_eq!(text, serde_json::to_string(&expected).unwrap(), "{value:?}");
            assert_eq!(nesting, depth, "{value:?}");
        }
        assert_eq!(natural(None), ("null".into(), 0));
        assert_eq!(natural(Some(&AnyValue { value: None })), ("null".into(), 0));
        // A 1.0 keeps its fraction: it goes back out as a double.
        assert_eq!(natural(Some(&any(Value::DoubleValue(1.0)))).0, "1.0");
    }

    #[test]
    fn objects_are_in_byte_order_and_a_repeated_key_keeps_its_last_value() {
        let pairs = vec![
            pair("b", Value::IntValue(1)),
            pair("a", Value::IntValue(2)),
            pair("b", Value::IntValue(3)),
            pair("B", Value::IntValue(4)),
            pair("a", Value::IntValue(5)),
        ];
        let mut out = Vec::new();
        assert_eq!(write_object(&pairs, &mut out), 1);
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"B":4,"a":5,"b":3}"#);
        let mut out = Vec::new();
        write_object(&[], &mut out);
        assert_eq!(out, b"{}");
        // What serde_json writes for the same map.
        let mut out = Vec::new();
        write_object(&pairs, &mut out);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(serde_json::to_vec(&value).unwrap(), out);
    }
}
