//! Timestamps written exactly as chrono's serde writes them (RFC 3339,
//! 0, 3, 6 or 9 fraction digits, `Z`), without going through `core::fmt`:
//! they were the costliest part of encoding a packet.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::{Serialize, Serializer};

pub(super) fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; 30];
    match write(time, &mut text) {
        Some(len) => serializer.serialize_str(std::str::from_utf8(&text[..len]).expect("digits and ASCII")),
        // Years past 9999 or before 0, and leap seconds: chrono's way.
        None => time.serialize(serializer),
    }
}

/// Writes `time` into `out`, answering the length; `None` for what
/// only chrono writes.
pub(super) fn write(time: &DateTime<Utc>, out: &mut [u8; 30]) -> Option<usize> {
    let year = time.year();
    let nano = time.nanosecond();
    if !(0..=9999).contains(&year) || nano >= 1_000_000_000 {
        return None;
    }
    let mut text = Text { out, len: 0 };
    text.digits(year as u32, 4);
    text.byte(b'-');
    text.digits(time.month(), 2);
    text.byte(b'-');
    text.digits(time.day(), 2);
    text.byte(b'T');
    text.digits(time.hour(), 2);
    text.byte(b':');
    text.digits(time.minute(), 2);
    text.byte(b':');
    text.digits(time.second(), 2);
    if nano != 0 {
        text.byte(b'.');
        if nano % 1_000_000 == 0 {
            text.digits(nano / 1_000_000, 3);
        } else if nano % 1_000 == 0 {
            text.digits(nano / 1_000, 6);
        } else {
            text.digits(nano, 9);
        }
    }
    text.byte(b'Z');
    Some(text.len)
}

struct Text<'a> {
    out: &'a mut [u8; 30],
    len: usize,
}

impl Text<'_> {
    fn byte(&mut self, byte: u8) {
        self.out[self.len] = byte;
        self.len += 1;
    }

    /// `value` in exactly `width` decimal digits, zero-padded.
    fn digits(&mut self, value: u32, width: usize) {
        let mut rest = value;
        for at in (self.len..self.len + width).rev() {
            self.out[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        self.len += width;
    }
}
