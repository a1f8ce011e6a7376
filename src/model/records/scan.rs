//! Where each record of a body begins and ends, found without parsing the
//! records: a JSON array's elements, values one after another (with or
//! without whitespace between them), or lines.
//!
//! The scan follows only the structure (brackets, braces and strings), so
//! a record that is malformed inside is still one piece, which fails on
//! its own when it is parsed, and its neighbours are kept. Only a value
//! that never ends (the body is cut inside it) takes the rest of the body
//! with it, as one broken piece.

/// How a body frames its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: a JSON array of records, one record, or records
    /// one after another with or without whitespace between them (and any
    /// mix of those: each top-level array is opened).
    Json,
    /// NDJSON: one record per line; blank lines are skipped.
    Lines,
}

/// One piece of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// The text of one record, to be parsed on its own.
    Record(&'a [u8]),
    /// Bytes that cannot be a record, and why (the body ends inside a
    /// value, or before an array is closed).
    Broken { text: &'a [u8], reason: &'static str },
}

/// The pieces of `body`, in order.
pub fn pieces(body: &[u8], framing: Framing) -> Pieces<'_> {
    Pieces {
        body,
        at: 0,
        framing,
        in_array: false,
    }
}

/// The iterator of [`pieces`].
#[derive(Debug, Clone)]
pub struct Pieces<'a> {
    body: &'a [u8],
    at: usize,
    framing: Framing,
    /// Inside a top-level array (JSON framing).
    in_array: bool,
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        match self.framing {
            Framing::Json => self.next_value(),
            Framing::Lines => self.next_line(),
        }
    }
}

impl<'a> Pieces<'a> {
    fn next_line(&mut self) -> Option<Piece<'a>> {
        while self.at < self.body.len() {
            let rest = &self.body[self.at..];
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            self.at += (end + 1).min(rest.len());
            let line = &rest[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.iter().all(u8::is_ascii_whitespace) {
                return Some(Piece::Record(line));
            }
        }
        None
    }

    fn next_value(&mut self) -> Option<Piece<'a>> {
        loop {
            while self.at < self.body.len() && self.body[self.at].is_ascii_whitespace() {
                self.at += 1;
            }
            let Some(&byte) = self.body.get(self.at) else {
                if std::mem::take(&mut self.in_array) {
                    return Some(Piece::Broken {
                        text: &[],
                        reason: "the body ends before the array's closing `]`",
                    });
                }
                return None;
            };
            match (self.in_array, byte) {
                (true, b',') => self.at += 1,
                (true, b']') => {
                    self.at += 1;
                    self.in_array = false;
                }
                (false, b'[') => {
                    self.at += 1;
                    self.in_array = true;
                }
                _ => {
                    let start = self.at;
                    return Some(match value_end(self.body, start) {
                        Some(end) => {
                            self.at = end;
                            Piece::Record(&self.body[start..end])
                        }
                        None => {
                            self.at = self.body.len();
                            self.in_array = false;
                            Piece::Broken {
                                text: &self.body[start..],
                                reason: "the body ends inside this value",
                            }
                        }
                    });
                }
            }
        }
    }
}

/// Where the value that starts at `start` ends (one past its last byte),
/// or `None` when the body ends first. Objects and arrays end at the
/// bracket that brings the nesting back to where it began (the kinds of
/// brackets are not matched: parsing the record checks them); strings at
/// their closing quote; anything else at the next whitespace, comma,
/// bracket, brace or quote (and a lone comma or closing bracket is a
/// value of one byte, which fails when parsed).
fn value_end(body: &[u8], start: usize) -> Option<usize> {
    match body[start] {
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut at = start;
            while at < body.len() {
                match body[at] {
                    b'"' => at = string_end(body, at)? - 1,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(at + 1);
                        }
                    }
                    _ => {}
                }
                at += 1;
            }
            None
        }
        b'"' => string_end(body, start),
        _ => {
            let length = body[start..]
                .iter()
                .position(|&b| b.is_ascii_whitespace() || b",[]{}\"".contains(&b))
                .unwrap_or(body.len() - start);
            Some(start + length.max(1))
        }
    }
}

/// One past the quote that closes the string opening at `start`.
fn string_end(body: &[u8], start: usize) -> Option<usize> {
    let mut at = start + 1;
    while at < body.len() {
        match body[at] {
            b'\\' => at += 2,
            b'"' => return Some(at + 1),
            _ => at += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(body: &str, framing: Framing) -> Vec<String> {
        pieces(body.as_bytes(), framing)
            .map(|piece| match piece {
                Piece::Record(text) => String::from_utf8_lossy(text).into_owned(),
                Piece::Broken { text, reason } => {
                    format!("BROKEN({}): {reason}", String::from_utf8_lossy(text))
                }
            })
            .collect()
    }

    #[test]
    fn an_array_gives_its_elements() {
        assert_eq!(
            texts(r#" [ {"a":1} , {"b":[1,{"c":"]}"}]},{}] "#, Framing::Json),
            [r#"{"a":1}"#, r#"{"b":[1,{"c":"]}"}]}"#, "{}"]
        );
        assert!(texts("[]", Framing::Json).is_empty());
        assert!(texts(" \n ", Framing::Json).is_empty());
    }

    #[test]
    fn values_follow_one_another_with_or_without_whitespace() {
        assert_eq!(
            texts(r#"{"a":1}{"b":"}{"}"#, Framing::Json),
            [r#"{"a":1}"#, r#"{"b":"}{"}"#]
        );
        assert_eq!(
            texts("{\"a\":1}\n{\"b\":2}\r\n\t{\"c\":3}\n", Framing::Json),
            [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]
        );
        assert_eq!(texts(r#"{"only":true}"#, Framing::Json), [r#"{"only":true}"#]);
        // Arrays one after another, and a value beside them, are all opened.
        assert_eq!(
            texts(r#"[{"a":1}][{"b":2}] {"c":3}"#, Framing::Json),
            [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]
        );
    }

    #[test]
    fn escapes_inside_strings_do_not_end_them() {
        assert_eq!(
            texts(r#"[{"q":"a \" } ] \\"},{"r":"\\\""}]"#, Framing::Json),
            [r#"{"q":"a \" } ] \\"}"#, r#"{"r":"\\\""}"#]
        );
    }

    #[test]
    fn scalars_and_stray_bytes_are_pieces_of_their_own() {
        assert_eq!(
            texts(r#"[1, "two", null, [3], true]"#, Framing::Json),
            ["1", r#""two""#, "null", "[3]", "true"]
        );
        assert_eq!(texts("hello world", Framing::Json), ["hello", "world"]);
        assert_eq!(texts(r#"}{"a":1}"#, Framing::Json), ["}", r#"{"a":1}"#]);
        assert_eq!(
            texts(r#"{"a":1},{"b":2}"#, Framing::Json),
            [r#"{"a":1}"#, ",", r#"{"b":2}"#]
        );
        // Malformed inside but whole: one piece, for the parser to refuse.
        assert_eq!(
            texts(r#"[{"a":},{"b":2}]"#, Framing::Json),
            [r#"{"a":}"#, r#"{"b":2}"#]
        );
    }

    #[test]
    fn a_cut_body_keeps_what_came_whole_and_the_rest_is_one_broken_piece() {
        assert_eq!(
            texts(r#"[{"a":1},{"b":"cut"#, Framing::Json),
            [
                r#"{"a":1}"#.to_string(),
                r#"BROKEN({"b":"cut): the body ends inside this value"#.into()
            ]
        );
        assert_eq!(
            texts(r#"{"a":1}{"b":{"c":2}"#, Framing::Json),
            [
                r#"{"a":1}"#.to_string(),
                r#"BROKEN({"b":{"c":2}): the body ends inside this value"#.into()
            ]
        );
        assert_eq!(
            texts(r#"[{"a":1} "#, Framing::Json),
            [
                r#"{"a":1}"#.to_string(),
                "BROKEN(): the body ends before the array's closing `]`".into()
            ]
        );
        assert_eq!(
            texts(r#""open"#, Framing::Json),
            [r#"BROKEN("open): the body ends inside this value"#]
        );
    }

    #[test]
    fn lines_are_records_and_blank_lines_are_skipped() {
        assert_eq!(
            texts(
                "{\"a\":1}\r\n\n  \n{\"b\":2}\nnot json\n{\"c\":3}",
                Framing::Lines
            ),
            [r#"{"a":1}"#, r#"{"b":2}"#, "not json", r#"{"c":3}"#]
        );
        assert!(texts("\n\r\n", Framing::Lines).is_empty());
        // A line is a record whatever it holds: two objects on one line
        // are one piece (refused when parsed).
        assert_eq!(texts("{}{}\n", Framing::Lines), ["{}{}"]);
    }

    #[test]
    fn a_huge_number_of_records_is_scanned_in_one_pass() {
        let count = 200_000;
        let body = format!("[{}]", vec![r#"{"log":"x"}"#; count].join(","));
        let started = std::time::Instant::now();
        assert_eq!(pieces(body.as_bytes(), Framing::Json).count(), count);
        let lines = vec![r#"{"log":"x"}"#; count].join("\n");
        assert_eq!(pieces(lines.as_bytes(), Framing::Lines).count(), count);
        // Deep nesting costs no stack: the scan counts, it does not recurse.
        let deep = "[".repeat(1_000_000);
        assert_eq!(
            pieces(deep.as_bytes(), Framing::Json).count(),
            1,
            "the first `[` opens the array; the rest is one value cut short"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
