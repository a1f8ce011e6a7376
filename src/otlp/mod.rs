//! OTLP/HTTP logs in: an `ExportLogsServiceRequest`, protobuf ([`from_protobuf`])
//! or OTLP/JSON ([`from_json`]), turned into packets that pass the same
//! limits as `POST /api/v1/logs` ([`Mapped`]), and the answers the OTLP
//! specification asks for ([`response`]).
//!
//! - `proto`: the protobuf request, read group by group and record by record
//!   with the prost types of `opentelemetry-proto`;
//! - `json`: OTLP/JSON read into the same types (the crate's own serde
//!   support is not exact to the specification: see docs/ARCHITECTURE.md);
//! - `map`: each resource x scope group to packets, each record to a
//!   message (docs/otlp.md has the table);
//! - `natural`: an `AnyValue` as plain JSON, for metadata;
//! - [`response`]: `ExportLogsServiceResponse` and `google.rpc.Status`, in
//!   the request's encoding.
//!
//! The public functions here never panic, whatever the bytes (the fuzz
//! targets `otlp_protobuf` and `otlp_json` hold them to it).

mod json;
mod map;
mod natural;
mod proto;
pub mod response;

use crate::model::{EncodedPacket, LargerThanQueue, Limits, QueueBounds};
use chrono::{DateTime, Utc};

/// A request's records as packets.
#[derive(Debug, Default)]
pub struct Mapped {
    /// In the order of the request's groups and records.
    pub packets: Vec<EncodedPacket>,
    /// Records in `packets`.
    pub accepted_records: usize,
    /// Records that broke a limit, left out.
    pub rejected_records: usize,
    /// Why, for the first few of them: `resourceLogs[0].scopeLogs[0].logRecords[3]: body: ...`.
    pub rejections: Vec<String>,
}

impl Mapped {
    /// `partial_success.error_message`: how many records were rejected and
    /// why (the first few reasons); `None` when none were.
    pub fn rejection_message(&self) -> Option<String> {
        if self.rejected_records == 0 {
            return None;
        }
        let total = self.accepted_records + self.rejected_records;
        let mut message = format!(
            "{} of {total} log records rejected: {}",
            self.rejected_records,
            self.rejections.join("; ")
        );
        let unexplained = self.rejected_records - self.rejections.len();
        if unexplained > 0 {
            message.push_str(&format!("; and {unexplained} more"));
        }
        Some(message)
    }
}

/// Why a whole request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body does not decode (400).
    #[error("{0}")]
    Invalid(String),
    /// Its packets would not fit in the whole queue (413).
    #[error("the request's log records make {0}")]
    LargerThanQueue(#[from] LargerThanQueue),
}

/// The packets of a protobuf `ExportLogsServiceRequest`, each within
/// `limits`, all together within `bounds`; `now` is the time of records
/// that carry none.
pub fn from_protobuf(
    body: &[u8],
    limits: &Limits,
    bounds: QueueBounds,
    now: DateTime<Utc>,
) -> Result<Mapped, RequestError> {
    let mut mapper = map::Mapper::new(limits, bounds, now);
    proto::decode(body, &mut mapper)?;
    Ok(mapper.finish())
}

/// The packets of an OTLP/JSON `ExportLogsServiceRequest`, as
/// [`from_protobuf`].
pub fn from_json(
    body: &[u8],
    limits: &Limits,
    bounds: QueueBounds,
    now: DateTime<Utc>,
) -> Result<Mapped, RequestError> {
    let mut mapper = map::Mapper::new(limits, bounds, now);
    json::decode(body, &mut mapper)?;
    Ok(mapper.finish())
}

#[cfg(test)]
mod tests;
