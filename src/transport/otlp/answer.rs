//! What an OTLP receiver's answer says beyond its status, per the OTLP/HTTP
//! specification:
//!
//! - a 2xx carries an `ExportLogsServiceResponse`; its `partial_success`
//!   with `rejected_log_records > 0` means the receiver kept the rest and
//!   the rejected records must not be sent again. The delivery counts as
//!   made; the rejected records are counted per analyzer
//!   (`logs_distributor_otlp_rejected_records_total`) and the receiver's
//!   `error_message` is logged. An `error_message` with nothing rejected is
//!   a warning, logged.
//! - an error answer carries a `google.rpc.Status`; its message is the
//!   reason given in the dead letter's `final_error`.

use crate::otlp::response::Status;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use prometheus::IntCounter;
use prost::Message as _;

/// The message of the `google.rpc.Status` an OTLP receiver refused a
/// delivery with, cut to at most `max_bytes`; `None` when the answer is not
/// one, or says nothing.
pub(crate) fn status_message(body: &[u8], max_bytes: usize) -> Option<String> {
    let status = Status::decode(body).ok()?;
    let message = status.message.trim();
    let mut end = message.len().min(max_bytes);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    (!message.is_empty()).then(|| message[..end].to_owned())
}

/// Reads the successful answers of one analyzer that takes `format: otlp`.
#[derive(Debug)]
pub(crate) struct PartialSuccessTally {
    analyzer: String,
    rejected_records: IntCounter,
}

/// What an `ExportLogsServiceResponse` said beyond success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartialSuccess {
    pub(crate) rejected_log_records: u64,
    pub(crate) error_message: String,
}

impl PartialSuccessTally {
    /// `rejected_records`: the analyzer's series of
    /// `logs_distributor_otlp_rejected_records_total`.
    pub(crate) fn new(analyzer: &str, rejected_records: IntCounter) -> PartialSuccessTally {
        PartialSuccessTally {
            analyzer: analyzer.to_owned(),
            rejected_records,
        }
    }

    /// Counts and logs what the body of a 2xx answer says was rejected.
    pub(crate) fn record(&self, body: &[u8]) {
        let Some(partial) = partial_success(body) else {
            return;
        };
        if partial.rejected_log_records > 0 {
            self.rejected_records.inc_by(partial.rejected_log_records);
            tracing::warn!(
                analyzer = %self.analyzer,
                rejected_log_records = partial.rejected_log_records,
                error_message = ?partial.error_message,
                "OTLP receiver rejected records of a delivery (partial success; the rest delivered, the rejected not sent again)"
            );
        } else {
            tracing::warn!(
                analyzer = %self.analyzer,
                error_message = ?partial.error_message,
                "OTLP receiver took a delivery with a warning"
            );
        }
    }
}

/// The `partial_success` of a 2xx answer's `ExportLogsServiceResponse`,
/// when it says anything: rejected records or a message. An empty body, or
/// one that is not a response, says nothing (the spec lets a receiver
/// answer a full success with an empty response).
pub(crate) fn partial_success(body: &[u8]) -> Option<PartialSuccess> {
    let partial = ExportLogsServiceResponse::decode(body).ok()?.partial_success?;
    let rejected_log_records = u64::try_from(partial.rejected_log_records).unwrap_or(0);
    let error_message = partial.error_message;
    (rejected_log_records > 0 || !error_message.is_empty()).then_some(PartialSuccess {
        rejected_log_records,
        error_message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsPartialSuccess;

    fn response(rejected: i64, message: &str) -> Vec<u8> {
        ExportLogsServiceResponse {
            partial_success: Some(ExportLogsPartialSuccess {
                rejected_log_records: rejected,
                error_message: message.into(),
            }),
        }
        .encode_to_vec()
    }

    #[test]
    fn a_partial_success_is_read_from_the_response() {
        assert_eq!(
            partial_success(&response(3, "3 records had no body")),
            Some(PartialSuccess {
                rejected_log_records: 3,
                error_message: "3 records had no body".into()
            })
        );
        assert_eq!(
            partial_success(&response(0, "slow down")),
            Some(PartialSuccess {
                rejected_log_records: 0,
                error_message: "slow down".into()
            }),
            "a warning"
        );
    }

    #[test]
    fn a_full_success_says_nothing() {
        assert_eq!(partial_success(b""), None, "an empty body");
        assert_eq!(
            partial_success(&ExportLogsServiceResponse::default().encode_to_vec()),
            None
        );
        assert_eq!(
            partial_success(&response(0, "")),
            None,
            "an empty partial_success"
        );
        assert_eq!(partial_success(b"{\"ok\":true}"), None, "not protobuf");
        assert_eq!(
            partial_success(&response(-2, "")),
            None,
            "a negative count is none"
        );
    }

    #[test]
    fn the_tally_counts_rejected_records() {
        let counter = IntCounter::new("rejected", "test").unwrap();
        let tally = PartialSuccessTally::new("a", counter.clone());
        tally.record(&response(2, "two bad"));
        tally.record(&response(0, "a warning"));
        tally.record(b"");
        tally.record(&response(5, ""));
        assert_eq!(counter.get(), 7);
    }

    #[test]
    fn a_status_gives_its_message() {
        let status = Status {
            code: 3,
            message: " invalid body: unexpected EOF ".into(),
        }
        .encode_to_vec();
        assert_eq!(
            status_message(&status, 1024).as_deref(),
            Some("invalid body: unexpected EOF")
        );
        assert_eq!(status_message(&status, 7).as_deref(), Some("invalid"));
        let wide = Status {
            code: 3,
            message: "ééé".into(),
        }
        .encode_to_vec();
        assert_eq!(
            status_message(&wide, 3).as_deref(),
            Some("é"),
            "cut at a character"
        );
        let silent = Status {
            code: 8,
            message: String::new(),
        };
        assert_eq!(status_message(&silent.encode_to_vec(), 1024), None);
        assert_eq!(status_message(b"Not Found", 1024), None, "text is not a Status");
        assert_eq!(status_message(b"", 1024), None);
    }
}
