//! What a health probe asks and what answer passes: the method (`GET` or
//! `HEAD`) and the expected statuses, a list of codes and ranges
//! (`[200, "200-299", 204]`); by default any 2xx.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::RangeInclusive;

/// The method of a health probe.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProbeMethod {
    #[default]
    #[serde(rename = "GET", alias = "get")]
    Get,
    /// The head of the answer only (Vector's health check uses it).
    #[serde(rename = "HEAD", alias = "head")]
    Head,
}

impl ProbeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeMethod::Get => "GET",
            ProbeMethod::Head => "HEAD",
        }
    }
}

/// The statuses a probe's answer may have to pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedStatuses(Vec<RangeInclusive<u16>>);

impl Default for ExpectedStatuses {
    /// Any 2xx.
    fn default() -> Self {
        ExpectedStatuses(vec![200..=299])
    }
}

impl ExpectedStatuses {
    pub fn is_default(&self) -> bool {
        *self == ExpectedStatuses::default()
    }

    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|range| range.contains(&status))
    }

    /// From items as the configuration and the Analyzer resource give them:
    /// a code (`204`, or `"204"`) or a range (`"200-299"`), each within
    /// 100..=599; at least one.
    pub fn parse<'a>(items: impl IntoIterator<Item = StatusItem<'a>>) -> Result<ExpectedStatuses, String> {
        let mut ranges = Vec::new();
        for item in items {
            let range = match item {
                StatusItem::Code(code) => {
                    let code = u16::try_from(code).map_err(|_| format!("{code} is not an HTTP status"))?;
                    code..=code
                }
                StatusItem::Text(text) => parse_text(text)?,
            };
            for end in [*range.start(), *range.end()] {
                if !(100..=599).contains(&end) {
                    return Err(format!("{end} is not an HTTP status (100 to 599)"));
                }
            }
            if range.is_empty() {
                return Err(format!("{}-{} is an empty range", range.start(), range.end()));
            }
            ranges.push(range);
        }
        if ranges.is_empty() {
            return Err("list at least one status or range".into());
        }
        Ok(ExpectedStatuses(ranges))
    }
}

/// One item of a list of expected statuses.
#[derive(Debug, Clone, Copy)]
pub enum StatusItem<'a> {
    Code(i64),
    Text(&'a str),
}

fn parse_text(text: &str) -> Result<RangeInclusive<u16>, String> {
    let number = |part: &str| {
        part.trim()
            .parse::<u16>()
            .map_err(|_| format!("{text:?} is not a status or a range such as \"200-299\""))
    };
    match text.split_once('-') {
        Some((low, high)) => Ok(number(low)?..=number(high)?),
        None => {
            let code = number(text)?;
            Ok(code..=code)
        }
    }
}

impl fmt::Display for ExpectedStatuses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, range) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            if range.start() == range.end() {
                write!(f, "{}", range.start())?;
            } else {
                write!(f, "{}-{}", range.start(), range.end())?;
            }
        }
        Ok(())
    }
}

/// Written as the configuration takes it: codes as numbers, ranges as text.
impl Serialize for ExpectedStatuses {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut list = serializer.serialize_seq(Some(self.0.len()))?;
        for range in &self.0 {
            if range.start() == range.end() {
                list.serialize_element(range.start())?;
            } else {
                list.serialize_element(&format!("{}-{}", range.start(), range.end()))?;
            }
        }
        list.end()
    }
}

impl<'de> Deserialize<'de> for ExpectedStatuses {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<ExpectedStatuses, D::Error> {
        /// A code or a range, as a number or as text.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Item {
            Code(i64),
            Text(String),
        }
        struct List;
        impl<'de> Visitor<'de> for List {
            type Value = ExpectedStatuses;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of HTTP statuses and ranges, such as [200, \"200-299\"]")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ExpectedStatuses, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Item>()? {
                    items.push(item);
                }
                ExpectedStatuses::parse(items.iter().map(|item| match item {
                    Item::Code(code) => StatusItem::Code(*code),
                    Item::Text(text) => StatusItem::Text(text),
                }))
                .map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_seq(List)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_ranges_are_parsed_and_any_2xx_is_the_default() {
        let default = ExpectedStatuses::default();
        assert!(default.contains(200) && default.contains(299) && !default.contains(300));
        let parsed: ExpectedStatuses = serde_json::from_str(r#"[204, "300-302", "418"]"#).unwrap();
        assert!(parsed.contains(204) && parsed.contains(301) && parsed.contains(418));
        assert!(!parsed.contains(200) && !parsed.contains(303));
        assert_eq!(parsed.to_string(), "204, 300-302, 418");
        assert_eq!(serde_json::to_string(&parsed).unwrap(), r#"[204,"300-302",418]"#);
    }

    #[test]
    fn what_is_not_a_status_is_refused_with_the_reason() {
        for (json, expected) in [
            ("[]", "list at least one status"),
            ("[99]", "99 is not an HTTP status (100 to 599)"),
            ("[600]", "600 is not an HTTP status"),
            ("[-1]", "-1 is not an HTTP status"),
            (r#"["2xx"]"#, "\"2xx\" is not a status or a range"),
            (r#"["299-200"]"#, "299-200 is an empty range"),
            (r#"["200-700"]"#, "700 is not an HTTP status"),
            ("204", "a list of HTTP statuses"),
        ] {
            let error = serde_json::from_str::<ExpectedStatuses>(json)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{json}: {error}");
        }
    }

    #[test]
    fn methods_are_named_as_http_does() {
        let head: ProbeMethod = serde_json::from_str("\"HEAD\"").unwrap();
        assert_eq!(head, ProbeMethod::Head);
        assert_eq!(
            serde_json::from_str::<ProbeMethod>("\"get\"").unwrap(),
            ProbeMethod::Get
        );
        assert!(serde_json::from_str::<ProbeMethod>("\"POST\"").is_err());
    }
}
