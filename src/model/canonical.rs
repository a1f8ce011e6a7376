//! Whether a JSON object's text is already what serde_json writes for it
//! (a `Map` parsed from it and written again): then validation copies the
//! client's bytes instead of building the map and writing it out again.
//!
//! Canonical means compact (no whitespace), keys in strictly ascending byte
//! order (so none twice), strings without escapes, and numbers that are
//! integers serde_json keeps as integers, written without a leading zero or
//! `-0`. Anything else (floats, escapes, whitespace, keys out of order) is
//! not canonical, and the caller takes the general way.

use super::encode::find_special;

/// The nesting of `text` (an object holding only scalars is 1) when it is a
/// canonical JSON object nested at most `max_depth` levels; `None` when it
/// is not (or is deeper). `text` need not be JSON: the scan checks every
/// byte, so what it calls canonical is valid JSON too.
pub(super) fn object_depth(text: &str, max_depth: usize) -> Option<usize> {
    let mut scanner = Scanner {
        text: text.as_bytes(),
        at: 0,
        max_depth,
    };
    if scanner.peek()? != b'{' {
        return None;
    }
    let depth = scanner.value(0)?;
    (scanner.at == scanner.text.len()).then_some(depth)
}

struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
    max_depth: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// The nesting of the value here (a scalar is 0); `outer` levels
    /// enclose it.
    fn value(&mut self, outer: usize) -> Option<usize> {
        match self.peek()? {
            b'{' | b'[' if outer == self.max_depth => None,
            b'{' => self.object(outer + 1),
            b'[' => self.array(outer + 1),
            b'"' => self.string().map(|_| 0),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.integer(),
        }
    }

    fn object(&mut self, depth: usize) -> Option<usize> {
        self.expect(b'{')?;
        if self.expect(b'}').is_some() {
            return Some(1);
        }
        let mut deepest = 0;
        let mut previous: Option<&[u8]> = None;
        loop {
            let key = self.string()?;
            if previous.is_some_and(|previous| previous >= key) {
                return None;
            }
            previous = Some(key);
            self.expect(b':')?;
            deepest = deepest.max(self.value(depth)?);
            if self.expect(b',').is_none() {
                self.expect(b'}')?;
                return Some(deepest + 1);
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<usize> {
        self.expect(b'[')?;
        if self.expect(b']').is_some() {
            return Some(1);
        }
        let mut deepest = 0;
        loop {
            deepest = deepest.max(self.value(depth)?);
            if self.expect(b',').is_none() {
                self.expect(b']')?;
                return Some(deepest + 1);
            }
        }
    }

    /// A string without escapes or control characters: its contents.
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let rest = &self.text[self.at..];
        let end = find_special(rest)?;
        if rest[end] != b'"' {
            return None;
        }
        self.at += end + 1;
        Some(&rest[..end])
    }

    fn literal(&mut self, word: &[u8]) -> Option<usize> {
        let found = self.text[self.at..].starts_with(word);
        found.then(|| {
            self.at += word.len();
            0
        })
    }

    /// An integer serde_json reads as one (`u64`, or `i64` when negative)
    /// and writes back the same: no fraction or exponent (a float), no
    /// leading zero, no `-0`.
    fn integer(&mut self) -> Option<usize> {
        let negative = self.expect(b'-').is_some();
        let start = self.at;
        let digits = self.text[start..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let text = &self.text[start..start + digits];
        self.at += digits;
        if digits == 0 || (text[0] == b'0' && (digits > 1 || negative)) {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let magnitude = text.iter().try_fold(0u64, |value, &digit| {
            value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
        })?;
        (!negative || magnitude <= 1 << 63).then_some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::object_depth;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// What serde_json writes for the map it reads from `text`.
    fn rewritten(text: &str) -> String {
        let map: Map<String, Value> = serde_json::from_str(text).unwrap();
        serde_json::to_string(&map).unwrap()
    }

    #[test]
    fn what_serde_json_writes_back_unchanged_is_canonical() {
        for (text, depth) in [
            ("{}", 1),
            (r#"{"worker":0}"#, 1),
            (r#"{"a":"x","b":[1,-2,true,false,null],"c":{"d":[]}}"#, 3),
            (r#"{"big":18446744073709551615,"low":-9223372036854775808}"#, 1),
            (r#"{"":1,"a":{"b":{"c":"é ü /"}}}"#, 3),
        ] {
            assert_eq!(rewritten(text), text);
            assert_eq!(object_depth(text, 32), Some(depth), "{text}");
        }
    }

    #[test]
    fn what_serde_json_writes_otherwise_is_not() {
        for text in [
            r#"{"b":1,"a":2}"#,
            r#"{"a":1,"a":2}"#,
            r#"{ "a":1}"#,
            r#"{"a": 1}"#,
            r#"{"a":[1, 2]}"#,
            r#"{"a":1e3}"#,
            r#"{"a":1.50}"#,
            r#"{"a":-0}"#,
            r#"{"a":18446744073709551616}"#,
            r#"{"a":-9223372036854775809}"#,
            r#"{"a":"x\/y"}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a\/":1}"#,
        ] {
            assert_ne!(rewritten(text), text, "the test's premise: {text}");
            assert_eq!(object_depth(text, 32), None, "{text}");
        }
        // Canonical for serde_json too, but escaped or a float: the
        // general way.
        for text in [r#"{"a":"x\"y"}"#, r#"{"a\n":1}"#, r#"{"a":1.5}"#] {
            assert_eq!(rewritten(text), text);
            assert_eq!(object_depth(text, 32), None, "{text}");
        }
        assert_eq!(object_depth("[1]", 32), None, "an array is no object");
        assert_eq!(object_depth("{}x", 32), None);
    }

    #[test]
    fn depth_is_bounded() {
        let nested = |levels: usize| format!("{}1{}", r#"{"a":"#.repeat(levels), "}".repeat(levels));
        assert_eq!(object_depth(&nested(32), 32), Some(32));
        assert_eq!(object_depth(&nested(33), 32), None);
        assert_eq!(object_depth(r#"{"a":[[[]]]}"#, 4), Some(4));
        assert_eq!(object_depth(r#"{"a":[[[]]]}"#, 3), None);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-c\"\\\\/é\n ]{0,4}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-c\"]{0,2}", inner, 0..4)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Canonical exactly when serde_json writes the text back as it was.
        #[test]
        fn canonical_text_is_written_back_unchanged(
            map in prop::collection::btree_map("[a-c\"]{0,2}", json_value(), 0..4),
            pretty in any::<bool>(),
        ) {
            let map: Map<String, Value> = map.into_iter().collect();
            let text = if pretty {
                serde_json::to_string_pretty(&map).unwrap()
            } else {
                serde_json::to_string(&map).unwrap()
            };
            let unchanged = rewritten(&text) == text;
            match object_depth(&text, 32) {
                Some(depth) => {
                    prop_assert!(unchanged, "{}", text);
                    // The depth is the least bound the text fits in.
                    prop_assert_eq!(object_depth(&text, depth), Some(depth));
                    prop_assert_eq!(object_depth(&text, depth - 1), None);
                }
                // The generated strings hold no `.` or `e`: those are floats.
                None => prop_assert!(!unchanged || text.contains(['\\', '.', 'e']), "{}", text),
            }
        }
    }
}
