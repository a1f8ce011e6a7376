//! RFC 3339 timestamps read and written exactly as chrono's serde does,
//! the common shapes by hand: chrono's general parser was a fifth of the
//! CPU of validating a packet, and writing through `core::fmt` was the
//! costliest part of encoding one.
//!
//! Written: 0, 3, 6 or 9 fraction digits, `Z`. Read: what
//! `DateTime<FixedOffset>`'s `FromStr` reads, in UTC; by hand when it is
//! `YYYY-MM-DDTHH:MM:SS`, an optional `.` and 1 to 9 digits, then `Z` or
//! `±HH:MM`, by chrono otherwise (other separators, leap seconds, dates
//! that do not exist, and every refusal with chrono's reason).

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc,
};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::cell::Cell;
use std::fmt;

/// A timestamp a client sent, read as chrono's serde reads a
/// `DateTime<Utc>` (same errors), faster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timestamp(pub(crate) DateTime<Utc>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // chrono's words, so that a refusal reads the same.
        f.write_str("an RFC 3339 formatted date and time string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
        parse(text).map(Timestamp).map_err(E::custom)
    }
}

/// `text` read as `DateTime<FixedOffset>`'s `FromStr` reads it, in UTC.
pub(super) fn parse(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match parse_common(text.as_bytes()) {
        Some(time) => Ok(time),
        None => text
            .parse::<DateTime<FixedOffset>>()
            .map(|time| time.with_timezone(&Utc)),
    }
}

/// The common shape (see the module's docs); `None` for anything else.
fn parse_common(text: &[u8]) -> Option<DateTime<Utc>> {
    let [y0, y1, y2, y3, b'-', mo0, mo1, b'-', d0, d1, b'T', h0, h1, b':', mi0, mi1, b':', s0, s1, rest @ ..] =
        text
    else {
        return None;
    };
    let (nanos, zone) = match rest {
        [b'.', rest @ ..] => {
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if !(1..=9).contains(&digits) {
                return None;
            }
            let fraction = number(&rest[..digits])?;
            (fraction * 10u32.pow(9 - digits as u32), &rest[digits..])
        }
        _ => (0, rest),
    };
    let offset_seconds = match zone {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), oh0, oh1, b':', om0, om1] => {
            let (hours, minutes) = (number(&[*oh0, *oh1])?, number(&[*om0, *om1])?);
            if hours > 23 || minutes > 59 {
                return None;
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if *sign == b'-' {
                -seconds
            } else {
                seconds
            }
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(
        number(&[*y0, *y1, *y2, *y3])? as i32,
        number(&[*mo0, *mo1])?,
        number(&[*d0, *d1])?,
    )?;
    let (hour, minute, second) = (number(&[*h0, *h1])?, number(&[*mi0, *mi1])?, number(&[*s0, *s1])?);
    if second > 59 {
        return None;
    }
    let time = NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    let local = NaiveDateTime::new(date, time);
    Some(
        local
            .checked_sub_signed(TimeDelta::seconds(offset_seconds))?
            .and_utc(),
    )
}

/// The value of ASCII decimal digits; `None` if any byte is not one.
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |value, &byte| {
        byte.is_ascii_digit().then(|| value * 10 + u32::from(byte - b'0'))
    })
}

pub(super) fn serialize<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let mut text = [0u8; 30];
    match write(time, &mut text) {
        Some(len) => serializer.serialize_str(std::str::from_utf8(&text[..len]).expect("digits and ASCII")),
        // Years past 9999 or before 0, and leap seconds: chrono's way.
        None => time.serialize(serializer),
    }
}

/// The length of `YYYY-MM-DDTHH:MM:SS`.
const SECOND_BYTES: usize = 19;

thread_local! {
    /// The time this thread wrote last, and its text: the messages of a
    /// request that carry no timestamp all get the time it arrived, and
    /// the messages of a packet, and of a stream, mostly share their second.
    static LAST: Cell<Option<Written>> = const { Cell::new(None) };
}

/// A time and the text [`write`] wrote for it.
#[derive(Clone, Copy)]
struct Written {
    time: DateTime<Utc>,
    text: [u8; 30],
    len: usize,
}

/// Writes `time` into `out`, answering the length; `None` for what
/// only chrono writes.
pub(super) fn write(time: &DateTime<Utc>, out: &mut [u8; 30]) -> Option<usize> {
    let last = LAST.get();
    if let Some(last) = last.filter(|last| last.time == *time) {
        *out = last.text;
        return Some(last.len);
    }
    let nano = time.nanosecond();
    if nano >= 1_000_000_000 {
        return None;
    }
    match last.filter(|last| last.time.timestamp() == time.timestamp()) {
        Some(last) => out[..SECOND_BYTES].copy_from_slice(&last.text[..SECOND_BYTES]),
        None => {
            let year = time.year();
            if !(0..=9999).contains(&year) {
                return None;
            }
            let mut text = Text {
                out: &mut *out,
                len: 0,
            };
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
        }
    }
    let mut text = Text {
        out,
        len: SECOND_BYTES,
    };
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
    let len = text.len;
    LAST.set(Some(Written {
        time: *time,
        text: *out,
        len,
    }));
    Some(len)
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

#[cfg(test)]
mod tests {
    use super::{parse, parse_common, write};
    use chrono::{DateTime, FixedOffset, TimeZone, Utc};
    use proptest::prelude::*;

    fn chrono(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
        text.parse::<DateTime<FixedOffset>>()
            .map(|time| time.with_timezone(&Utc))
    }

    /// Timestamps around the common shape: fields in and just out of
    /// range, every separator and zone chrono knows, and some it does not.
    fn near_rfc3339() -> impl Strategy<Value = String> {
        (
            (0u32..=10_000, 0u32..=13, 0u32..=32),
            (0u32..=25, 0u32..=61, 0u32..=61),
            prop_oneof![Just(String::new()), "\\.[0-9]{0,11}", "[.,][0-9a]{1,3}"],
            prop_oneof![
                "[Zz]",
                "[+-][0-9]{2}:[0-9]{2}",
                "[+-]2[0-9]:[0-5][0-9]",
                "[+-][0-9]{2}[0-9]{0,2}",
                " ?(UTC|utc|Z)",
                "Z ",
                "",
            ],
            "[Tt _]",
        )
            .prop_map(|((y, mo, d), (h, mi, s), fraction, zone, separator)| {
                format!("{y:04}-{mo:02}-{d:02}{separator}{h:02}:{mi:02}:{s:02}{fraction}{zone}")
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn timestamps_are_read_as_chrono_reads_them(text in near_rfc3339()) {
            prop_assert_eq!(parse(&text), chrono(&text), "{}", text);
        }

        /// Times written one after the other, some again (the memo of the
        /// last time and of the last second), are each the text chrono's
        /// serde writes.
        #[test]
        fn times_written_in_turn_are_written_as_chrono_writes_them(
            picks in proptest::collection::vec(0usize..9, 1..24),
            seconds in proptest::collection::vec(-62_167_219_200i64..253_402_300_800, 3),
            nanos in proptest::collection::vec(prop_oneof![Just(0u32), 0u32..1_000_000_000, (0u32..1000).prop_map(|n| n * 1_000_000)], 3),
        ) {
            let times: Vec<DateTime<Utc>> = seconds
                .iter()
                .flat_map(|&second| nanos.iter().map(move |&nano| Utc.timestamp_opt(second, nano).unwrap()))
                .collect();
            for pick in picks {
                let time = times[pick];
                let mut text = [0u8; 30];
                let chrono = serde_json::to_string(&time).unwrap();
                match write(&time, &mut text) {
                    Some(len) => prop_assert_eq!(format!("\"{}\"", std::str::from_utf8(&text[..len]).unwrap()), chrono),
                    None => prop_assert!(!(0..=9999).contains(&chrono::Datelike::year(&time)), "{}", chrono),
                }
            }
        }

        #[test]
        fn any_text_is_read_as_chrono_reads_it(text in "[0-9TZ:.+ -]{0,32}|\\PC{0,32}") {
            prop_assert_eq!(parse(&text), chrono(&text), "{}", text);
        }
    }

    #[test]
    fn the_common_shapes_are_read_by_hand() {
        for text in [
            "2026-01-01T00:00:00Z",
            "2024-01-01T10:00:15.250Z",
            "2024-02-29T23:59:59.123456789+05:30",
            "0000-01-01T00:00:00.1-00:00",
            "9999-12-31T23:59:59-23:59",
        ] {
            let by_hand = parse_common(text.as_bytes());
            assert!(by_hand.is_some(), "{text}");
            assert_eq!(by_hand.map(Ok), Some(chrono(text)), "{text}");
        }
        for text in [
            "2023-02-29T00:00:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01t00:00:00Z",
            "2024-01-01T00:00:00.1234567890Z",
            "2024-01-01T00:00:00+24:00",
        ] {
            assert_eq!(parse_common(text.as_bytes()), None, "{text}: left to chrono");
        }
    }
}
