//! The answers of `POST /v1/logs` as the OTLP specification asks for them,
//! in the request's encoding: an `ExportLogsServiceResponse` (with
//! `partial_success` when records were rejected) for a 200, a
//! `google.rpc.Status` for an error.

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
use prost::Message;
use serde_json::json;

pub const PROTOBUF: &str = "application/x-protobuf";
pub const JSON: &str = "application/json";

/// How a request (and so its answer) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// The encoding a `Content-Type` names (parameters and case aside), if
    /// it is one of the two OTLP/HTTP uses.
    pub fn of_content_type(content_type: &str) -> Option<Encoding> {
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case(PROTOBUF) {
            Some(Encoding::Protobuf)
        } else if essence.eq_ignore_ascii_case(JSON) {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

/// `google.rpc.Status`, without `details` (none is ever sent).
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `google.rpc.Code` values the answers use.
pub mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

/// The `google.rpc.Code` that goes with an HTTP status.
pub fn code_of(http_status: u16) -> i32 {
    match http_status {
        400..=499 => code::INVALID_ARGUMENT,
        503 => code::UNAVAILABLE,
        _ => code::INTERNAL,
    }
}

/// The body of an error answer: a `Status`. In JSON it also carries
/// `error` (the same reason), the key every error of this API has.
pub fn status_body(encoding: Encoding, code: i32, message: &str) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => Status {
            code,
            message: message.to_owned(),
        }
        .encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&json!({"code": code, "message": message, "error": message}))
            .expect("a JSON value always serialises"),
    }
}

/// The body of a 200: an `ExportLogsServiceResponse`, with
/// `partial_success` when `rejected` records were left out (and why).
pub fn export_body(encoding: Encoding, rejected: usize, error_message: Option<&str>) -> Vec<u8> {
    let partial = (rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: error_message.unwrap_or_default().to_owned(),
    });
    match encoding {
        Encoding::Protobuf => ExportLogsServiceResponse {
            partial_success: partial,
        }
        .encode_to_vec(),
        // int64 is written as a decimal string, as OTLP/JSON writes it.
        Encoding::Json => serde_json::to_vec(&match partial {
            None => json!({}),
            Some(partial) => json!({"partialSuccess": {
                "rejectedLogRecords": partial.rejected_log_records.to_string(),
                "errorMessage": partial.error_message,
            }}),
        })
        .expect("a JSON value always serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_name_the_encoding() {
        for (value, expected) in [
            ("application/x-protobuf", Some(Encoding::Protobuf)),
            ("Application/X-Protobuf; charset=binary", Some(Encoding::Protobuf)),
            ("application/json", Some(Encoding::Json)),
            ("application/json; charset=utf-8", Some(Encoding::Json)),
            ("application/protobuf", None),
            ("text/plain", None),
            ("", None),
        ] {
            assert_eq!(Encoding::of_content_type(value), expected, "{value:?}");
        }
    }

    #[test]
    fn answers_decode_in_their_encoding() {
        let empty = export_body(Encoding::Protobuf, 0, None);
        assert!(empty.is_empty(), "an empty message is no bytes");
        let partial = export_body(Encoding::Protobuf, 2, Some("two too big"));
        let decoded = ExportLogsServiceResponse::decode(partial.as_slice()).unwrap();
        let partial = decoded.partial_success.unwrap();
        assert_eq!(partial.rejected_log_records, 2);
        assert_eq!(partial.error_message, "two too big");
        assert_eq!(export_body(Encoding::Json, 0, None), b"{}");
        let json: serde_json::Value =
            serde_json::from_slice(&export_body(Encoding::Json, 2, Some("why"))).unwrap();
        assert_eq!(
            json,
            json!({"partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "why"}})
        );

        let status = Status::decode(status_body(Encoding::Protobuf, 3, "bad").as_slice()).unwrap();
        assert_eq!((status.code, status.message.as_str()), (3, "bad"));
        let json: serde_json::Value =
            serde_json::from_slice(&status_body(Encoding::Json, 14, "later")).unwrap();
        assert_eq!(json, json!({"code": 14, "message": "later", "error": "later"}));
        assert_eq!(code_of(400), 3);
        assert_eq!(code_of(413), 3);
        assert_eq!(code_of(503), 14);
    }
}
