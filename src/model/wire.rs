//! The wire shapes: a log packet and its messages as the distributor keeps
//! them and analyzers receive them, and the severity levels with the
//! aliases ingest accepts.

use super::rfc3339;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Severity of a log message: the RFC 5424 severities plus `TRACE`.
///
/// Parsing is case-insensitive and takes the common aliases
/// (`WARN`, `ERR`, `FATAL`, `CRIT`, `EMERG`, `PANIC`, `INFORMATIONAL`, ...);
/// the canonical upper-case name is what analyzers receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Info,
    Debug,
    Trace,
}

impl Level {
    /// The canonical name: what analyzers receive.
    pub fn name(self) -> &'static str {
        match self {
            Level::Emergency => "EMERGENCY",
            Level::Alert => "ALERT",
            Level::Critical => "CRITICAL",
            Level::Error => "ERROR",
            Level::Warning => "WARNING",
            Level::Notice => "NOTICE",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        }
    }

    /// The level whose canonical name `name` is: the usual case, matched
    /// before any other work.
    fn canonical(name: &str) -> Option<Level> {
        Some(match name {
            "INFO" => Level::Info,
            "ERROR" => Level::Error,
            "WARNING" => Level::Warning,
            "DEBUG" => Level::Debug,
            "TRACE" => Level::Trace,
            "NOTICE" => Level::Notice,
            "CRITICAL" => Level::Critical,
            "ALERT" => Level::Alert,
            "EMERGENCY" => Level::Emergency,
            _ => return None,
        })
    }

    /// The level `name` names, in any case (`name` trimmed already).
    /// Lower-cased into a buffer on the stack and matched: no allocation,
    /// and the compiler turns the match into a few comparisons.
    fn named(name: &str) -> Option<Level> {
        // As long as the longest name, "informational".
        let mut lower = [0u8; 13];
        let lower = lower.get_mut(..name.len())?;
        for (to, from) in lower.iter_mut().zip(name.bytes()) {
            *to = from.to_ascii_lowercase();
        }
        Some(match &*lower {
            b"emergency" | b"emerg" | b"panic" => Level::Emergency,
            b"alert" => Level::Alert,
            b"critical" | b"crit" | b"fatal" => Level::Critical,
            b"error" | b"err" => Level::Error,
            b"warning" | b"warn" => Level::Warning,
            b"notice" => Level::Notice,
            b"info" | b"informational" | b"information" => Level::Info,
            b"debug" => Level::Debug,
            b"trace" => Level::Trace,
            _ => return None,
        })
    }
}

impl FromStr for Level {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(level) = Level::canonical(s) {
            return Ok(level);
        }
        match Level::named(s.trim()) {
            Some(level) => Ok(level),
            None => Err(format!(
                "unknown level {s:?}: expected one of EMERGENCY, ALERT, CRITICAL, ERROR, \
                 WARNING, NOTICE, INFO, DEBUG, TRACE (case-insensitive; aliases such as \
                 WARN, ERR, FATAL are accepted)"
            )),
        }
    }
}

/// Read as ingest reads it (any case, aliases): what the distributor wrote
/// is canonical, and a dead letter written by hand or by the original
/// service may hold an alias.
impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// One log line as the distributor keeps it and analyzers receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMessage {
    pub level: Level,
    pub message: String,
    pub source: String,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A batch of log lines handed to exactly one analyzer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogPacket {
    pub id: String,
    pub messages: Vec<LogMessage>,
    #[serde(default)]
    pub retry_count: u32,
}
