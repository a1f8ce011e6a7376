//! The scalars of OTLP/JSON: integers as numbers or strings ([`Int`]),
//! `severityNumber` ([`Severity`]), doubles ([`Double`]), hex ids
//! ([`HexId`]) and base64 bytes ([`Base64`]).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use opentelemetry_proto::tonic::logs::v1::SeverityNumber;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::fmt;

/// An integer as a number or a decimal string (also in exponent form, when
/// it is whole: `1e3`), within `T`'s range.
pub(super) struct Int<T>(pub T);

pub(super) fn int<T: Default>(value: Option<Int<T>>) -> T {
    value.map(|n| n.0).unwrap_or_default()
}

impl<'de, T: TryFrom<i128>> Deserialize<'de> for Int<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wide = deserializer.deserialize_any(Integer)?;
        T::try_from(wide)
            .map(Int)
            .map_err(|_| de::Error::custom(format!("{wide} is out of range for this field")))
    }
}

/// Reads an integer (as [`Int`] takes it) into an `i128`.
struct Integer;

impl Visitor<'_> for Integer {
    type Value = i128;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer, or a string holding one")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<i128, E> {
        Ok(n.into())
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<i128, E> {
        Ok(n.into())
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<i128, E> {
        whole(x).ok_or_else(|| E::custom(format!("{x} is not an integer")))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<i128, E> {
        text.parse::<i128>()
            .ok()
            .or_else(|| {
                // Only a number's text: `f64::from_str` also takes "inf".
                let numeric = text.bytes().all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b));
                numeric.then(|| text.parse().ok().and_then(whole)).flatten()
            })
            .ok_or_else(|| E::custom(format!("{text:?} is not an integer")))
    }
}

/// `x` as an integer, when it is a whole number within `i128`.
fn whole(x: f64) -> Option<i128> {
    (x.is_finite() && x.fract() == 0.0 && x.abs() < 1e38).then_some(x as i128)
}

/// `severityNumber`: an integer as [`Int`] takes it, or the enum value's
/// name (`SEVERITY_NUMBER_WARN`).
pub(super) struct Severity(pub i32);

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Number;

        impl Visitor<'_> for Number {
            type Value = i128;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a severity number, or its name (SEVERITY_NUMBER_...)")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<i128, E> {
                Integer.visit_u64(n)
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<i128, E> {
                Integer.visit_i64(n)
            }

            fn visit_f64<E: de::Error>(self, x: f64) -> Result<i128, E> {
                Integer.visit_f64(x)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<i128, E> {
                match SeverityNumber::from_str_name(text) {
                    Some(named) => Ok((named as i32).into()),
                    None => Integer.visit_str(text),
                }
            }
        }

        let wide = deserializer.deserialize_any(Number)?;
        i32::try_from(wide)
            .map(Severity)
            .map_err(|_| de::Error::custom(format!("{wide} is out of range for a severity number")))
    }
}

/// A double as a number, or as a string (`"1.5"`, `"NaN"`, `"Infinity"`,
/// `"-Infinity"`).
pub(super) struct Double(pub f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Number;

        impl Visitor<'_> for Number {
            type Value = f64;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or a string holding one (NaN, Infinity, -Infinity)")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<f64, E> {
                Ok(n as f64)
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<f64, E> {
                Ok(n as f64)
            }

            fn visit_f64<E: de::Error>(self, x: f64) -> Result<f64, E> {
                Ok(x)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<f64, E> {
                match text {
                    "NaN" => Ok(f64::NAN),
                    "Infinity" => Ok(f64::INFINITY),
                    "-Infinity" => Ok(f64::NEG_INFINITY),
                    _ => text
                        .parse::<f64>()
                        .ok()
                        .filter(|x| x.is_finite())
                        .ok_or_else(|| E::custom(format!("{text:?} is not a number"))),
                }
            }
        }

        deserializer.deserialize_any(Number).map(Double)
    }
}

/// A trace or span id in hex, either case; an empty string is no id.
pub(super) struct HexId(pub Vec<u8>);

impl<'de> Deserialize<'de> for HexId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        hex(&text).map(HexId).map_err(de::Error::custom)
    }
}

fn hex(text: &str) -> Result<Vec<u8>, String> {
    let digit = |b: u8| char::from(b).to_digit(16);
    if text.len() % 2 != 0 {
        return Err(format!("{text:?} is not hex: an odd number of digits"));
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| match (digit(pair[0]), digit(pair[1])) {
            (Some(high), Some(low)) => Ok((high * 16 + low) as u8),
            _ => Err(format!("{text:?} is not hex")),
        })
        .collect()
}

/// `bytesValue`: base64, standard or URL-safe, with or without padding.
pub(super) struct Base64(pub Vec<u8>);

const BASE64_CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, BASE64_CONFIG);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, BASE64_CONFIG);

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        BASE64_STANDARD
            .decode(text.as_bytes())
            .or_else(|_| BASE64_URL_SAFE.decode(text.as_bytes()))
            .map(Base64)
            .map_err(|e| de::Error::custom(format!("not base64: {e}")))
    }
}
