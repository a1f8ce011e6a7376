//! A record's timestamp: RFC 3339 text, or a number since the Unix epoch
//! whose size says its unit.
//!
//! - Text: RFC 3339 (`2024-12-05T09:13:20.123Z`, any offset, `T` or a
//!   space between date and time); without an offset it is UTC
//!   (`2024-12-05 09:13:20.123456`, Fluent Bit's `java_sql_timestamp`).
//! - A number (integer or with a fraction, as Fluent Bit's `date` is):
//!   seconds, unless it is 10^11 or more (seconds that large are past the
//!   year 5000): then milliseconds, from 10^14 microseconds, from 10^17
//!   nanoseconds. The digits are read exactly, not through a float, so
//!   `1733390000.123` is 123 ms past the second.

use super::kind;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::Value;

/// At and above each bound, in order, a number is read in the next unit
/// (with the power of ten that turns that unit into nanoseconds).
const UNITS: [(f64, u32); 4] = [(0.0, 9), (1e11, 6), (1e14, 3), (1e17, 0)];
/// Past this a number is no time at all (nanoseconds run out in 2262).
const LARGEST: f64 = 1e19;
/// How much of a refused value an error quotes.
const QUOTED_CHARS: usize = 64;

/// The time `value` names.
pub(super) fn parse(value: &Value) -> Result<DateTime<Utc>, String> {
    match value {
        Value::String(text) => from_text(text),
        Value::Number(number) => from_number(&number.to_string()),
        other => Err(format!(
            "must be an RFC 3339 time or a number of seconds since the epoch, got {}",
            kind(other)
        )),
    }
}

fn from_text(text: &str) -> Result<DateTime<Utc>, String> {
    let trimmed = text.trim();
    let with_t = match trimmed.as_bytes().get(10) {
        Some(b' ') => format!("{}T{}", &trimmed[..10], &trimmed[11..]),
        _ => trimmed.to_string(),
    };
    if let Ok(time) = DateTime::parse_from_rfc3339(&with_t) {
        return Ok(time.with_timezone(&Utc));
    }
    if let Ok(naive) = NaiveDateTime::parse_from_str(&with_t, "%Y-%m-%dT%H:%M:%S%.f") {
        return Ok(naive.and_utc());
    }
    Err(format!(
        "{:?} is not an RFC 3339 time or a number of seconds since the epoch",
        quoted(text)
    ))
}

/// `text` is a JSON number as serde_json writes it: an optional `-`,
/// digits, an optional fraction, an optional exponent.
fn from_number(text: &str) -> Result<DateTime<Utc>, String> {
    let out_of_range = || format!("{text} is out of range for a time");
    let approximate: f64 = text.parse().map_err(|_| out_of_range())?;
    if approximate.abs() >= LARGEST {
        return Err(out_of_range());
    }
    let to_nanos = UNITS
        .iter()
        .rev()
        .find(|(from, _)| approximate.abs() >= *from)
        .map_or(9, |(_, power)| *power);
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().map_err(|_| out_of_range())?),
        None => (unsigned, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: i128 = 0;
    for byte in whole.bytes().chain(fraction.bytes()) {
        digits = digits
            .checked_mul(10)
            .and_then(|d| d.checked_add(i128::from(byte - b'0')))
            .ok_or_else(out_of_range)?;
    }
    let power = exponent - fraction.len() as i32 + to_nanos as i32;
    let nanos = if power >= 0 {
        10i128
            .checked_pow(power as u32)
            .and_then(|scale| digits.checked_mul(scale))
            .ok_or_else(out_of_range)?
    } else {
        match 10i128.checked_pow(power.unsigned_abs()) {
            // Rounded to the nearest nanosecond.
            Some(scale) => (digits + scale / 2) / scale,
            None => 0,
        }
    };
    let nanos = if negative { -nanos } else { nanos };
    let seconds = i64::try_from(nanos.div_euclid(1_000_000_000)).map_err(|_| out_of_range())?;
    let subsecond = nanos.rem_euclid(1_000_000_000) as u32;
    DateTime::from_timestamp(seconds, subsecond).ok_or_else(out_of_range)
}

/// At most the first [`QUOTED_CHARS`] characters of `text`.
fn quoted(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(value: Value) -> String {
        parse(&value)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            .unwrap_or_else(|e| format!("error: {e}"))
    }

    #[test]
    fn rfc3339_text_in_any_offset() {
        assert_eq!(at(json!("2024-12-05T09:13:20.123Z")), "2024-12-05T09:13:20.123Z");
        assert_eq!(at(json!("2024-12-05T10:13:20+01:00")), "2024-12-05T09:13:20Z");
        assert_eq!(
            at(json!("2024-12-05T09:13:20.123456789Z")),
            "2024-12-05T09:13:20.123456789Z"
        );
        assert_eq!(at(json!(" 2024-12-05 09:13:20Z ")), "2024-12-05T09:13:20Z");
    }

    #[test]
    fn text_without_an_offset_is_utc() {
        assert_eq!(
            at(json!("2024-12-05 09:13:20.123456")),
            "2024-12-05T09:13:20.123456Z"
        );
        assert_eq!(at(json!("2024-12-05T09:13:20")), "2024-12-05T09:13:20Z");
    }

    #[test]
    fn numbers_are_seconds_with_their_fraction_read_exactly() {
        assert_eq!(at(json!(1733390000)), "2024-12-05T09:13:20Z");
        assert_eq!(at(json!(1733390000.123)), "2024-12-05T09:13:20.123Z");
        assert_eq!(at(json!(1733390000.000001)), "2024-12-05T09:13:20.000001Z");
        assert_eq!(at(json!(0)), "1970-01-01T00:00:00Z");
        assert_eq!(at(json!(-1.5)), "1969-12-31T23:59:58.500Z");
        assert_eq!(
            from_number("1.7333900001e9").map(|t| t.timestamp_millis()),
            Ok(1_733_390_000_100)
        );
    }

    #[test]
    fn large_numbers_are_milli_micro_or_nanoseconds() {
        assert_eq!(at(json!(1733390000123u64)), "2024-12-05T09:13:20.123Z");
        assert_eq!(at(json!(1733390000123456u64)), "2024-12-05T09:13:20.123456Z");
        assert_eq!(
            at(json!(1733390000123456789u64)),
            "2024-12-05T09:13:20.123456789Z"
        );
        // Just under 10^11 is still seconds (the year 5138).
        assert_eq!(at(json!(99_999_999_999u64)), "5138-11-16T09:46:39Z");
        assert_eq!(at(json!(100_000_000_000u64)), "1973-03-03T09:46:40Z");
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for (value, says) in [
            (json!("yesterday"), "\"yesterday\" is not an RFC 3339 time"),
            (json!("2024-13-05T09:13:20Z"), "is not an RFC 3339 time"),
            (json!(true), "got a boolean"),
            (json!({"sec": 1}), "got an object"),
            (json!(1e300), "out of range"),
            (json!(-1e19), "out of range"),
        ] {
            let error = parse(&value).unwrap_err();
            assert!(error.contains(says), "{value}: {error}");
        }
        let long = parse(&json!("x".repeat(1000))).unwrap_err();
        assert!(long.len() < 200, "{long}");
    }
}
