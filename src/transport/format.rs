//! What a delivery's body looks like: the analyzer's format, chosen per
//! analyzer (`format` in its configuration, `spec.format` of an Analyzer).
//!
//! Every format carries the same packets in the same order, so batching,
//! retries, the dead letter and the exact shares work alike in each; only
//! the bytes on the wire and their content type differ.

use crate::dispatch::job::Job;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The body format an analyzer takes.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryFormat {
    /// A JSON array of packets, each with its `id` and `retry_count`: the
    /// analyzer contract of docs/analyzers.md.
    #[default]
    Packets,
    /// One message per line as a flat JSON object (`message`, `timestamp`,
    /// `level`, `source`, `packet_id`, `retry_count`, the metadata's keys):
    /// what Vector's `http_server` source and Logstash's `http` input take.
    Ndjson,
    /// OTLP/HTTP: one `ExportLogsServiceRequest` in protobuf, for an OTLP
    /// receiver's `/v1/logs` (see docs/analyzers.md for the mapping).
    Otlp,
}

impl DeliveryFormat {
    /// The `Content-Type` of a delivery's body.
    pub fn content_type(self) -> &'static str {
        match self {
            DeliveryFormat::Packets => "application/json",
            DeliveryFormat::Ndjson => "application/x-ndjson",
            DeliveryFormat::Otlp => "application/x-protobuf",
        }
    }

    /// The body of one delivery of `batch`.
    pub fn write_body(self, batch: &[Job]) -> Vec<u8> {
        match self {
            DeliveryFormat::Packets => packets_body(batch),
            DeliveryFormat::Ndjson => super::ndjson::body(batch),
            DeliveryFormat::Otlp => super::otlp::write_body(batch),
        }
    }
}

/// A JSON array of the packets, each with its retry count, from the text
/// they were encoded to when accepted.
fn packets_body(batch: &[Job]) -> Vec<u8> {
    let size: usize = batch.iter().map(|job| job.packet.json_bytes() + 1).sum();
    let mut body = Vec::with_capacity(size + 2);
    body.push(b'[');
    for (n, job) in batch.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        job.packet.write_json(job.retries, &mut body);
    }
    body.push(b']');
    body
}

#[cfg(test)]
mod tests {
    use super::DeliveryFormat;

    #[test]
    fn formats_are_named_in_lower_case_and_packets_is_the_default() {
        assert_eq!(DeliveryFormat::default(), DeliveryFormat::Packets);
        let named: DeliveryFormat = serde_json::from_str("\"packets\"").unwrap();
        assert_eq!(named, DeliveryFormat::Packets);
        let named: DeliveryFormat = serde_json::from_str("\"ndjson\"").unwrap();
        assert_eq!(named, DeliveryFormat::Ndjson);
        assert_eq!(DeliveryFormat::Ndjson.content_type(), "application/x-ndjson");
        let named: DeliveryFormat = serde_json::from_str("\"otlp\"").unwrap();
        assert_eq!(named, DeliveryFormat::Otlp);
        assert_eq!(DeliveryFormat::Otlp.content_type(), "application/x-protobuf");
        assert!(serde_json::from_str::<DeliveryFormat>("\"xml\"").is_err());
    }
}
