//! The usual packet read by hand: what serde_json's derived reader
//! (`incoming::WholePacket`) reads for it, in one pass that finds the end
//! of each string (and any byte JSON forbids in it) a block at a time.
//!
//! Only the usual shape is read: known keys without escapes, each at most
//! once, values of the expected types (or `null` where the field is
//! optional), `retry_count` as plain digits, metadata an object,
//! timestamps that parse. Anything else is `None`, and the caller takes
//! serde_json's way, whose answer (and refusal) it keeps.
//!
//! The reader checks every byte it takes as JSON does (strings, literals,
//! numbers, structure) but a metadata object's, which only the
//! `canonical` scan checks: so a packet read whole with canonical
//! metadata ([`read_valid`]) is valid JSON, and a request body of such
//! packets needs no other pass to be known valid (see `split`).

use super::encode::find_special;
use super::incoming::{IncomingMessage, MetadataText};
use super::rfc3339::{self, Timestamp};
use std::borrow::Cow;

/// A packet read by hand: its messages' metadata left as text.
#[derive(Debug)]
pub(super) struct ReadPacket<'a> {
    pub(super) id: Option<Cow<'a, str>>,
    pub(super) messages: Vec<IncomingMessage<'a, MetadataText<'a>>>,
}

/// Reads `text`, a JSON value, when it is a packet of the usual shape.
pub(super) fn read(text: &str) -> Option<ReadPacket<'_>> {
    let mut reader = Reader { text, at: 0 };
    let packet = reader.packet()?;
    reader.skip_whitespace();
    (reader.at == text.len()).then_some(packet)
}

/// Reads the packet that starts at `at` in `text`, which need not be
/// JSON, when it is a packet of the usual shape whose metadata is all
/// canonical: the packet, and where its text ends. Such a packet's text is
/// valid JSON; `None` says nothing either way.
pub(super) fn read_valid(text: &str, at: usize) -> Option<(ReadPacket<'_>, usize)> {
    let mut reader = Reader { text, at };
    let packet = reader.packet()?;
    let canonical =
        |m: &IncomingMessage<'_, MetadataText<'_>>| !matches!(m.metadata, Some(MetadataText::Other(_)));
    packet
        .messages
        .iter()
        .all(canonical)
        .then_some((packet, reader.at))
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn skip_whitespace(&mut self) {
        self.at = skip_whitespace(self.text, self.at);
    }

    /// The next byte that is not whitespace, not taken.
    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes().get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// `null`, taken; whether it was there.
    fn null(&mut self) -> bool {
        self.skip_whitespace();
        let found = self.text[self.at..].starts_with("null");
        if found {
            self.at += "null".len();
        }
        found
    }

    /// The members of an object: `member` is called with each key (one
    /// without escapes) and reads its value.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let Cow::Borrowed(key) = self.string()? else {
                return None;
            };
            self.expect(b':')?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn packet(&mut self) -> Option<ReadPacket<'a>> {
        let mut id = None;
        let mut messages = None;
        let mut retry_count = false;
        self.object(|reader, key| match key {
            "id" => once(&mut id, reader.optional(Self::string)?),
            "messages" => once(&mut messages, reader.messages()?),
            "retry_count" if !retry_count => {
                retry_count = true;
                reader.optional(Self::retry_count).map(drop)
            }
            _ => None,
        })?;
        Some(ReadPacket {
            id: id.flatten(),
            messages: messages?,
        })
    }

    fn messages(&mut self) -> Option<Vec<IncomingMessage<'a, MetadataText<'a>>>> {
        self.expect(b'[')?;
        let mut messages = Vec::new();
        if self.peek()? == b']' {
            self.at += 1;
            return Some(messages);
        }
        loop {
            messages.push(self.message()?);
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(messages);
                }
                _ => return None,
            }
        }
    }

    fn message(&mut self) -> Option<IncomingMessage<'a, MetadataText<'a>>> {
        let (mut level, mut message, mut source) = (None, None, None);
        let (mut timestamp, mut metadata) = (None, None);
        self.object(|reader, key| match key {
            "level" => once(&mut level, reader.string()?),
            "message" => once(&mut message, reader.string()?),
            "source" => once(&mut source, reader.string()?),
            "timestamp" => once(&mut timestamp, reader.optional(Self::timestamp)?),
            "metadata" => once(
                &mut metadata,
                reader.optional(|reader| reader.object_text().map(MetadataText::of))?,
            ),
            _ => None,
        })?;
        Some(IncomingMessage {
            level: level?,
            message: message?,
            source: source?,
            timestamp: timestamp.flatten(),
            metadata: metadata.flatten(),
        })
    }

    /// `null` as `None`, or what `value` reads.
    fn optional<T>(&mut self, value: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() {
            return Some(None);
        }
        value(self).map(Some)
    }

    /// A string: borrowed from the text when it has no escape, else
    /// decoded by serde_json (`None` where it refuses one, such as a lone
    /// surrogate).
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.at;
        if !self.skip_string()? {
            return Some(Cow::Borrowed(&self.text[start..self.at - 1]));
        }
        serde_json::from_str(&self.text[start - 1..self.at])
            .ok()
            .map(Cow::Owned)
    }

    /// Moves past the rest of a string whose `"` is taken, answering
    /// whether it holds an escape; `None` when it does not end, or holds a
    /// control character (which JSON allows only escaped). Always inlined,
    /// as [`find_special`] is.
    #[inline(always)]
    fn skip_string(&mut self) -> Option<bool> {
        let bytes = self.bytes();
        let mut escaped = false;
        let mut at = self.at;
        loop {
            at += find_special(bytes.get(at..)?)?;
            match bytes[at] {
                b'"' => break,
                // The escaped byte (of `\uXXXX`, the `u`) cannot end the string.
                b'\\' => (escaped, at) = (true, at + 2),
                _ => return None,
            }
        }
        self.at = at + 1;
        Some(escaped)
    }

    fn timestamp(&mut self) -> Option<Timestamp> {
        rfc3339::parse(&self.string()?).ok().map(Timestamp)
    }

    /// The digits of a `u32`.
    fn retry_count(&mut self) -> Option<u32> {
        self.skip_whitespace();
        let digits = self.bytes()[self.at..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let text = &self.text[self.at..self.at + digits];
        self.at += digits;
        if text.len() > 1 && text.starts_with('0') {
            return None; // not JSON
        }
        text.parse().ok()
    }

    /// An object's text, as it is.
    fn object_text(&mut self) -> Option<&'a str> {
        if self.peek()? != b'{' {
            return None;
        }
        let start = self.at;
        let mut depth = 0usize;
        loop {
            match *self.bytes().get(self.at)? {
                b'"' => {
                    self.at += 1;
                    self.skip_string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.at += 1;
                        return Some(&self.text[start..self.at]);
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
    }
}

/// Where the JSON whitespace that starts at `at` in `text` ends.
pub(super) fn skip_whitespace(text: &str, at: usize) -> usize {
    let blank = text.as_bytes()[at.min(text.len())..]
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
        .count();
    at + blank
}

/// Sets `slot` to `value` unless it was set already (a key given twice,
/// which serde refuses).
fn once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

#[cfg(test)]
mod tests;
