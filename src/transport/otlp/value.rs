//! Natural JSON back to OTLP values: the inverse of how OTLP ingest keeps an
//! `AnyValue` in a message's metadata. Values are read from their encoded
//! text straight into OTLP values, with no JSON tree in between.
//!
//! | JSON | AnyValue |
//! | --- | --- |
//! | string, bool | string, bool |
//! | integer within i64 | int |
//! | integer above i64::MAX, number with a fraction or exponent | double |
//! | array | array |
//! | `{"bytes_base64": "<standard base64>"}` (that one key, a valid string) | bytes |
//! | any other object | kvlist (by key; a repeated key keeps its last value) |
//! | null | an AnyValue with no value |

use base64::Engine as _;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// The key of the one-key object that stands for a bytes value.
pub(super) const BYTES_KEY: &str = "bytes_base64";

/// The OTLP value of an encoded JSON value.
pub(super) fn any_value(json: &RawValue) -> AnyValue {
    let Any(value) = read(json);
    AnyValue { value }
}

/// An encoded JSON object's fields as OTLP attributes, by key; `None` when
/// the value is not an object.
pub(super) fn key_values(json: &RawValue) -> Option<Vec<KeyValue>> {
    is_object(json).then(|| read::<Fields>(json).0)
}

/// Whether an encoded JSON value is an object.
pub(super) fn is_object(json: &RawValue) -> bool {
    json.get().trim_start().starts_with('{')
}

pub(super) fn key_value(key: impl Into<String>, value: AnyValue) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(value),
        ..KeyValue::default()
    }
}

pub(super) fn string_value(text: impl Into<String>) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(text.into())),
    }
}

/// Reads a value that is already known to be valid JSON of its shape (an
/// encoded packet's text).
fn read<'a, T: Deserialize<'a>>(json: &'a RawValue) -> T {
    serde_json::from_str(json.get()).expect("an encoded packet's values are valid JSON")
}

/// An OTLP value as read from JSON: `None` for null.
struct Any(Option<Value>);

/// An object's fields, by key.
struct Fields(Vec<KeyValue>);

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Any, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

impl<'de> Deserialize<'de> for Fields {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fields, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Fields, M::Error> {
                fields(map).map(Fields)
            }
        }
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Any;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Any, E> {
        Ok(Any(None))
    }

    fn visit_bool<E>(self, b: bool) -> Result<Any, E> {
        Ok(Any(Some(Value::BoolValue(b))))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Any, E> {
        Ok(Any(Some(Value::IntValue(n))))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Any, E> {
        Ok(Any(Some(match i64::try_from(n) {
            Ok(n) => Value::IntValue(n),
            // Past i64::MAX an integer has no OTLP int: the nearest double.
            Err(_) => Value::DoubleValue(n as f64),
        })))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Any, E> {
        Ok(Any(Some(Value::DoubleValue(n))))
    }

    fn visit_str<E>(self, text: &str) -> Result<Any, E> {
        Ok(Any(Some(Value::StringValue(text.to_owned()))))
    }

    fn visit_string<E>(self, text: String) -> Result<Any, E> {
        Ok(Any(Some(Value::StringValue(text))))
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut items: S) -> Result<Any, S::Error> {
        let mut values = Vec::with_capacity(items.size_hint().unwrap_or(0));
        while let Some(Any(value)) = items.next_element()? {
            values.push(AnyValue { value });
        }
        Ok(Any(Some(Value::ArrayValue(ArrayValue { values }))))
    }

    fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Any, M::Error> {
        let values = fields(map)?;
        Ok(Any(Some(match bytes_of(&values) {
            Some(bytes) => Value::BytesValue(bytes),
            None => Value::KvlistValue(KeyValueList { values }),
        })))
    }
}

/// An object's fields in key order, a repeated key keeping its last value:
/// as a JSON map holds them.
fn fields<'de, M: MapAccess<'de>>(mut map: M) -> Result<Vec<KeyValue>, M::Error> {
    let mut fields: Vec<KeyValue> = Vec::with_capacity(map.size_hint().unwrap_or(0));
    while let Some((key, Any(value))) = map.next_entry::<String, Any>()? {
        fields.push(key_value(key, AnyValue { value }));
    }
    Ok(in_key_order(fields, |field| &field.key))
}

/// An object's entries in key order, a repeated key keeping its last
/// value: as a JSON map holds them. Text that serde_json wrote is in that
/// order already.
pub(super) fn in_key_order<T>(entries: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
    if entries.windows(2).all(|pair| key(&pair[0]) < key(&pair[1])) {
        return entries;
    }
    let mut sorted = entries;
    sorted.sort_by(|a, b| key(a).cmp(key(b)));
    let mut unique: Vec<T> = Vec::with_capacity(sorted.len());
    for entry in sorted {
        match unique.last_mut() {
            Some(last) if key(last) == key(&entry) => *last = entry,
            _ => unique.push(entry),
        }
    }
    unique
}

/// The bytes an object `{"bytes_base64": "..."}` stands for; `None` for any
/// other object (more keys, another value, or text that is not base64).
fn bytes_of(fields: &[KeyValue]) -> Option<Vec<u8>> {
    let [field] = fields else {
        return None;
    };
    if field.key != BYTES_KEY {
        return None;
    }
    let Some(Value::StringValue(text)) = field.value.as_ref()?.value.as_ref() else {
        return None;
    };
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn of_text(text: &str) -> Option<Value> {
        any_value(&RawValue::from_string(text.to_owned()).unwrap()).value
    }

    fn of(json: serde_json::Value) -> Option<Value> {
        of_text(&json.to_string())
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        key_value(key, AnyValue { value: Some(value) })
    }

    #[test]
    fn every_json_kind_has_its_otlp_value() {
        assert_eq!(of(json!("text")), Some(Value::StringValue("text".into())));
        assert_eq!(
            of_text(r#""a\"b\n\u00e9""#),
            Some(Value::StringValue("a\"b\né".into()))
        );
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
        assert_eq!(of_text("1.0"), Some(Value::DoubleValue(1.0)));
        assert_eq!(of_text("1e3"), Some(Value::DoubleValue(1000.0)));
        // Past i64::MAX an integer has no OTLP int: the nearest double.
        assert_eq!(
            of(json!(u64::MAX)),
            Some(Value::DoubleValue(18_446_744_073_709_551_615.0))
        );
        assert_eq!(
            of(json!(9_223_372_036_854_775_808u64)),
            Some(Value::DoubleValue(9_223_372_036_854_775_808.0))
        );
        assert_eq!(
            of_text("123456789012345678901234567890"),
            Some(Value::DoubleValue(1.2345678901234568e29))
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
            json!({"bytes": "AAH/"}),
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
        assert_eq!(
            list.values,
            [
                kv(
                    "a",
                    Value::KvlistValue(KeyValueList {
                        values: vec![kv("b", Value::DoubleValue(2.5))]
                    })
                ),
                kv(
                    "z",
                    Value::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(Value::IntValue(1))
                            },
                            AnyValue {
                                value: Some(Value::StringValue("two".into()))
                            },
                            AnyValue { value: None },
                            AnyValue {
                                value: Some(Value::KvlistValue(KeyValueList {
                                    values: vec![kv("k", Value::BoolValue(false))]
                                }))
                            },
                        ]
                    })
                ),
            ],
            "in key order"
        );
    }

    #[test]
    fn fields_written_out_of_order_or_twice_come_out_by_key_with_the_last_value() {
        let Some(Value::KvlistValue(list)) = of_text(r#"{"b": 1, "a": 2, "b": 3, "c": {"y": 1, "x": 2}}"#)
        else {
            panic!("an object is a kvlist");
        };
        assert_eq!(
            list.values,
            [
                kv("a", Value::IntValue(2)),
                kv("b", Value::IntValue(3)),
                kv(
                    "c",
                    Value::KvlistValue(KeyValueList {
                        values: vec![kv("x", Value::IntValue(2)), kv("y", Value::IntValue(1))]
                    })
                ),
            ]
        );
    }

    #[test]
    fn key_values_are_an_objects_fields_and_nothing_else() {
        let object = RawValue::from_string(r#" {"k": "v"}"#.to_owned()).unwrap();
        assert_eq!(
            key_values(&object),
            Some(vec![kv("k", Value::StringValue("v".into()))])
        );
        for other in ["[1]", "\"{}\"", "null", "7"] {
            let raw = RawValue::from_string(other.to_owned()).unwrap();
            assert_eq!(key_values(&raw), None, "{other}");
        }
    }
}
