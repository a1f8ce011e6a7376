//! Natural JSON back to OTLP values: the inverse of how OTLP ingest keeps an
//! `AnyValue` in a message's metadata.
//!
//! | JSON | AnyValue |
//! | --- | --- |
//! | string, bool | string, bool |
//! | integer within i64 | int |
//! | integer above i64::MAX, number with a fraction or exponent | double |
//! | array | array |
//! | `{"bytes_base64": "<standard base64>"}` (that one key, a valid string) | bytes |
//! | any other object | kvlist (by key, the order of the metadata's objects) |
//! | null | an AnyValue with no value |

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use serde_json::{Map, Value as Json};

/// The key of the one-key object that stands for a bytes value.
pub(super) const BYTES_KEY: &str = "bytes_base64";

/// The OTLP value of a natural JSON value, taking its strings as they are.
pub(super) fn any_value(json: Json) -> AnyValue {
    let value = match json {
        Json::Null => None,
        Json::Bool(b) => Some(Value::BoolValue(b)),
        Json::String(s) => Some(Value::StringValue(s)),
        Json::Number(n) => Some(match n.as_i64() {
            Some(i) => Value::IntValue(i),
            // A u64 above i64::MAX, or a number with a fraction or exponent.
            None => Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Json::Array(items) => Some(Value::ArrayValue(ArrayValue {
            values: items.into_iter().map(any_value).collect(),
        })),
        Json::Object(fields) => Some(match bytes_of(&fields) {
            Some(bytes) => Value::BytesValue(bytes),
            None => Value::KvlistValue(KeyValueList {
                values: key_values(fields),
            }),
        }),
    };
    AnyValue { value }
}

/// An object's fields as OTLP attributes, in the object's order.
pub(super) fn key_values(fields: Map<String, Json>) -> Vec<KeyValue> {
    fields
        .into_iter()
        .map(|(key, value)| key_value(key, value))
        .collect()
}

pub(super) fn key_value(key: impl Into<String>, value: Json) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(any_value(value)),
        ..KeyValue::default()
    }
}

/// The bytes an object `{"bytes_base64": "..."}` stands for; `None` for any
/// other object (more keys, another value, or text that is not base64).
fn bytes_of(fields: &Map<String, Json>) -> Option<Vec<u8>> {
    if fields.len() != 1 {
        return None;
    }
    let Json::String(text) = fields.get(BYTES_KEY)? else {
        return None;
    };
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of(json: Json) -> Option<Value> {
        any_value(json).value
    }

    #[test]
    fn every_json_kind_has_its_otlp_value() {
        assert_eq!(of(json!("text")), Some(Value::StringValue("text".into())));
        assert_eq!(of(json!(true)), Some(Value::BoolValue(true)));
        assert_eq!(of(json!(-42)), Some(Value::IntValue(-42)));
        assert_eq!(of(json!(i64::MAX)), Some(Value::IntValue(i64::MAX)));
        assert_eq!(of(json!(i64::MIN)), Some(Value::IntValue(i64::MIN)));
        assert_eq!(of(json!(1.5)), Some(Value::DoubleValue(1.5)));
        assert_eq!(of(json!(null)), None, "null is an AnyValue with no value");
    }

    #[test]
    fn numbers_keep_their_kind_as_the_text_had_it() {
        // 1.0 is a double in the text, so it stays one.
        let one: Json = serde_json::from_str("1.0").unwrap();
        assert_eq!(of(one), Some(Value::DoubleValue(1.0)));
        let exponent: Json = serde_json::from_str("1e3").unwrap();
        assert_eq!(of(exponent), Some(Value::DoubleValue(1000.0)));
        // Past i64::MAX an integer has no OTLP int: the nearest double.
        assert_eq!(
            of(json!(u64::MAX)),
            Some(Value::DoubleValue(18_446_744_073_709_551_615.0))
        );
        assert_eq!(
            of(json!(9_223_372_036_854_775_808u64)),
            Some(Value::DoubleValue(9_223_372_036_854_775_808.0))
        );
    }

    #[test]
    fn a_bytes_base64_object_is_bytes_and_other_objects_are_kvlists() {
        assert_eq!(
            of(json!({"bytes_base64": "AAH/"})),
            Some(Value::BytesValue(vec![0, 1, 255]))
        );
        assert_eq!(of(json!({"bytes_base64": ""})), Some(Value::BytesValue(vec![])));
        // Not the one-key shape, or not base64: an object like any other.
        for not_bytes in [
            json!({"bytes_base64": "not base64!"}),
            json!({"bytes_base64": 7}),
            json!({"bytes_base64": "AAH/", "more": 1}),
        ] {
            let Some(Value::KvlistValue(list)) = of(not_bytes.clone()) else {
                panic!("{not_bytes} should be a kvlist");
            };
            assert_eq!(list.values.len(), not_bytes.as_object().unwrap().len());
        }
    }

    #[test]
    fn arrays_and_objects_nest_in_order() {
        let value = of(json!({"z": [1, "two", null, {"k": false}], "a": {"b": 2.5}}));
        let Some(Value::KvlistValue(list)) = value else {
            panic!("an object is a kvlist");
        };
        let keys: Vec<&str> = list.values.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["a", "z"], "in the map's order: by key");
        let Some(Value::ArrayValue(array)) = list.values[1].value.as_ref().and_then(|v| v.value.clone())
        else {
            panic!("an array is an array");
        };
        let items: Vec<Option<Value>> = array.values.into_iter().map(|v| v.value).collect();
        assert_eq!(
            items,
            [
                Some(Value::IntValue(1)),
                Some(Value::StringValue("two".into())),
                None,
                Some(Value::KvlistValue(KeyValueList {
                    values: vec![key_value("k", json!(false))]
                })),
            ]
        );
        assert_eq!(
            list.values[0].value.as_ref().unwrap().value,
            Some(Value::KvlistValue(KeyValueList {
                values: vec![key_value("b", json!(2.5))]
            }))
        );
    }
}
