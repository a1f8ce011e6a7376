//! A message's metadata as the `otlp` format reads it: each value's JSON
//! text borrowed from the packet, in key order, and where each key that a
//! field of OTLP takes is, found in one pass over the keys.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

/// The metadata keys a field of OTLP takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Field {
    Resource,
    ResourceDroppedAttributesCount,
    ResourceSchemaUrl,
    Scope,
    ScopeSchemaUrl,
    Attributes,
    Body,
    TimeUnixNano,
    ObservedTimeUnixNano,
    SeverityNumber,
    SeverityText,
    TraceId,
    SpanId,
    Flags,
    DroppedAttributesCount,
    EventName,
}

const FIELDS: usize = Field::EventName as usize + 1;

/// The keys that mark a message as one that came in over OTLP.
const OTLP_MARKERS: [Field; 5] = [
    Field::Resource,
    Field::Scope,
    Field::Attributes,
    Field::TimeUnixNano,
    Field::ObservedTimeUnixNano,
];

impl Field {
    fn of(key: &str) -> Option<Field> {
        Some(match key {
            "resource" => Field::Resource,
            "resource_dropped_attributes_count" => Field::ResourceDroppedAttributesCount,
            "resource_schema_url" => Field::ResourceSchemaUrl,
            "scope" => Field::Scope,
            "scope_schema_url" => Field::ScopeSchemaUrl,
            "attributes" => Field::Attributes,
            "body" => Field::Body,
            "time_unix_nano" => Field::TimeUnixNano,
            "observed_time_unix_nano" => Field::ObservedTimeUnixNano,
            "severity_number" => Field::SeverityNumber,
            "severity_text" => Field::SeverityText,
            "trace_id" => Field::TraceId,
            "span_id" => Field::SpanId,
            "flags" => Field::Flags,
            "dropped_attributes_count" => Field::DroppedAttributesCount,
            "event_name" => Field::EventName,
            _ => return None,
        })
    }
}

/// One key and its value's text; `None` once a field took it.
type Entry<'a> = (Cow<'a, str>, Option<&'a RawValue>);

/// A JSON object's entries, in key order (a repeated key keeps its last
/// value, as a JSON map holds it).
#[derive(Default)]
pub(super) struct Metadata<'a> {
    entries: Vec<Entry<'a>>,
    /// Where each field's key is among the entries.
    fields: [Option<usize>; FIELDS],
}

impl<'a> Metadata<'a> {
    /// Whether any key marks the message as one that came in over OTLP.
    pub(super) fn came_over_otlp(&self) -> bool {
        OTLP_MARKERS
            .iter()
            .any(|field| self.fields[*field as usize].is_some())
    }

    /// Takes `field`'s value out when `read` reads it.
    pub(super) fn take_if<T>(
        &mut self,
        field: Field,
        read: impl FnOnce(&'a RawValue) -> Option<T>,
    ) -> Option<T> {
        let at = self.fields[field as usize]?;
        let taken = read(self.entries[at].1?)?;
        self.entries[at].1 = None;
        Some(taken)
    }

    /// Every entry no field took, in key order.
    pub(super) fn into_rest(self) -> impl Iterator<Item = (Cow<'a, str>, &'a RawValue)> {
        self.entries
            .into_iter()
            .filter_map(|(key, json)| Some((key, json?)))
    }

    /// The keys, in order.
    pub(super) fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(key, _)| key.as_ref())
    }

    /// The value of `key`.
    pub(super) fn value_of(&self, key: &str) -> Option<&'a RawValue> {
        let at = self.entries.binary_search_by(|(k, _)| k.as_ref().cmp(key)).ok()?;
        self.entries[at].1
    }

    fn new(entries: Vec<Entry<'a>>) -> Metadata<'a> {
        let entries = super::value::in_key_order(entries, |(key, _)| key);
        let mut fields = [None; FIELDS];
        for (at, (key, _)) in entries.iter().enumerate() {
            if let Some(field) = Field::of(key) {
                fields[field as usize] = Some(at);
            }
        }
        Metadata { entries, fields }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Metadata<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Metadata<'a>, D::Error> {
        struct MetadataVisitor<'a>(PhantomData<Metadata<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for MetadataVisitor<'a> {
            type Value = Metadata<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Metadata<'a>, M::Error> {
                // Room for a key per field without growing (JSON gives no
                // size hint): a message that came over OTLP has several.
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(FIELDS));
                while let Some((Key(key), json)) = map.next_entry::<Key<'a>, &'a RawValue>()? {
                    entries.push((key, Some(json)));
                }
                Ok(Metadata::new(entries))
            }
        }
        deserializer.deserialize_map(MetadataVisitor(PhantomData))
    }
}

/// A key, borrowed from the text unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key<'a>, D::Error> {
        struct KeyVisitor<'a>(PhantomData<Key<'a>>);
        impl<'de: 'a, 'a> Visitor<'de> for KeyVisitor<'a> {
            type Value = Key<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, key: &'de str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Borrowed(key)))
            }
            fn visit_str<E>(self, key: &str) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(key.to_owned())))
            }
            fn visit_string<E>(self, key: String) -> Result<Key<'a>, E> {
                Ok(Key(Cow::Owned(key)))
            }
        }
        deserializer.deserialize_str(KeyVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(text: &str) -> Metadata<'_> {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn fields_are_found_by_key_and_taken_once() {
        let text = r#"{"a":1,"body":"b","resource":{"k":"v"},"severity_number":"high","z":null}"#;
        let mut metadata = metadata(text);
        assert!(metadata.came_over_otlp());
        assert_eq!(
            metadata.value_of("resource").map(RawValue::get),
            Some(r#"{"k":"v"}"#)
        );
        assert_eq!(
            metadata.take_if(Field::Scope, |json| Some(json.get())),
            None,
            "no such key"
        );
        // A read that refuses leaves the value where it is.
        assert_eq!(metadata.take_if(Field::SeverityNumber, |_| None::<i32>), None);
        assert_eq!(
            metadata.take_if(Field::Body, |json| Some(json.get())),
            Some(r#""b""#)
        );
        assert_eq!(
            metadata.take_if(Field::Body, |json| Some(json.get())),
            None,
            "taken once"
        );
        assert_eq!(metadata.value_of("z").map(RawValue::get), Some("null"));
        let rest: Vec<(String, &str)> = metadata
            .into_rest()
            .map(|(key, json)| (key.into_owned(), json.get()))
            .collect();
        assert_eq!(
            rest,
            [
                ("a".to_owned(), "1"),
                ("resource".to_owned(), r#"{"k":"v"}"#),
                ("severity_number".to_owned(), r#""high""#),
                ("z".to_owned(), "null"),
            ]
        );
    }

    #[test]
    fn only_the_otlp_keys_mark_a_message_as_one_that_came_over_otlp() {
        assert!(!metadata(r#"{"body":1,"severity_text":"x","trace_id":"00"}"#).came_over_otlp());
        for marker in [
            "resource",
            "scope",
            "attributes",
            "time_unix_nano",
            "observed_time_unix_nano",
        ] {
            assert!(
                metadata(&format!(r#"{{"{marker}":1}}"#)).came_over_otlp(),
                "{marker}"
            );
        }
    }

    #[test]
    fn keys_out_of_order_or_twice_come_out_by_key_with_the_last_value() {
        let text = r#"{"scope":1,"b\"q":2,"a":3,"scope":4}"#;
        let mut metadata = metadata(text);
        assert_eq!(metadata.keys().collect::<Vec<_>>(), ["a", "b\"q", "scope"]);
        assert_eq!(metadata.take_if(Field::Scope, |json| Some(json.get())), Some("4"));
        assert_eq!(metadata.value_of("b\"q").map(RawValue::get), Some("2"));
    }
}
