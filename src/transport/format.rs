//! What a delivery's body looks like: the analyzer's format, chosen per
//! analyzer (`format` in its configuration, `spec.format` of an Analyzer).
//!
//! Every format carries the same packets in the same order, so batching,
//! retries, the dead letter and the exact shares work alike in each; only
//! the bytes on the wire and their content type differ.

use crate::dispatch::job::Job;
use crate::model::write_retry_count;
use crate::offload;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::io::IoSlice;

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
    pub fn write_body(self, batch: &[Job]) -> DeliveryBody<'_> {
        match self {
            DeliveryFormat::Packets => packets_body(batch),
            DeliveryFormat::Ndjson => DeliveryBody::whole(super::ndjson::body(batch)),
            DeliveryFormat::Otlp => DeliveryBody::whole(super::otlp::write_body(batch)),
        }
    }

    /// [`Self::write_body`], off the request threads ([`crate::offload`])
    /// when the body is long to build: an OTLP body of many messages takes
    /// milliseconds of CPU (each packet decoded, each message mapped).
    pub async fn write_body_off_thread(self, batch: &[Job]) -> DeliveryBody<'_> {
        let long =
            || batch.iter().map(|job| job.packet.message_count()).sum::<usize>() >= BLOCKING_BODY_MESSAGES;
        if self != DeliveryFormat::Otlp || !long() {
            return self.write_body(batch);
        }
        let jobs = batch.to_vec();
        match offload::DELIVERY_BODIES
            .run(move || super::otlp::write_body(&jobs))
            .await
        {
            Some(body) => DeliveryBody::whole(body),
            // The runtime is stopping: no blocking thread to be had.
            None => self.write_body(batch),
        }
    }
}

/// Messages from which an OTLP body is built on a blocking thread (about
/// a tenth of a millisecond of work, where the hop costs tens of µs).
const BLOCKING_BODY_MESSAGES: usize = 32;

/// A request's body in pieces, sent in order without being joined: for a
/// delivery of packets, the packets' own bytes and what goes between them.
pub struct DeliveryBody<'a> {
    /// The bytes around and between the packets, one after the other.
    glue: Vec<u8>,
    pieces: Vec<Piece<'a>>,
}

enum Piece<'a> {
    /// `glue[start..end]`.
    Glue {
        start: usize,
        end: usize,
    },
    Borrowed(&'a [u8]),
}

impl<'a> DeliveryBody<'a> {
    /// A body in one piece.
    pub(crate) fn whole(bytes: Vec<u8>) -> DeliveryBody<'a> {
        let mut body = DeliveryBody {
            glue: bytes,
            pieces: Vec::new(),
        };
        body.end_glue(0);
        body
    }

    /// Ends the glue piece that started at `start`, if it holds anything.
    fn end_glue(&mut self, start: usize) {
        if self.glue.len() > start {
            let end = self.glue.len();
            self.pieces.push(Piece::Glue { start, end });
        }
    }

    /// The pieces, for one vectored write.
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        self.pieces
            .iter()
            .map(|piece| match *piece {
                Piece::Glue { start, end } => IoSlice::new(&self.glue[start..end]),
                Piece::Borrowed(bytes) => IoSlice::new(bytes),
            })
            .collect()
    }
}

/// A JSON array of the packets, each with its retry count: the text they
/// were encoded to when accepted, sent as it is, with the retry counts and
/// the array's punctuation between.
fn packets_body(batch: &[Job]) -> DeliveryBody<'_> {
    let mut body = DeliveryBody {
        glue: Vec::with_capacity(batch.len() * 24 + 2),
        pieces: Vec::with_capacity(batch.len() * 2 + 1),
    };
    let mut start = 0;
    for (n, job) in batch.iter().enumerate() {
        if n > 0 {
            write_retry_count(batch[n - 1].retries, &mut body.glue);
            body.glue.extend_from_slice(b"},{");
        } else {
            body.glue.extend_from_slice(b"[{");
        }
        body.end_glue(start);
        body.pieces.push(Piece::Borrowed(job.packet.fields_json()));
        start = body.glue.len();
    }
    if let Some(last) = batch.last() {
        write_retry_count(last.retries, &mut body.glue);
        body.glue.push(b'}');
    } else {
        body.glue.push(b'[');
    }
    body.glue.push(b']');
    body.end_glue(start);
    body
}

#[cfg(test)]
mod tests {
    use super::DeliveryFormat;
    use crate::dispatch::job::Job;
    use crate::model::{EncodedPacket, Level, LogMessage, LogPacket};
    use std::sync::Arc;

    /// Every body's bytes, joined.
    fn joined(body: &super::DeliveryBody<'_>) -> Vec<u8> {
        body.slices().iter().flat_map(|piece| piece.to_vec()).collect()
    }

    #[tokio::test]
    async fn a_long_otlp_body_built_off_the_request_thread_is_the_same_body() {
        let message = |n: usize| LogMessage {
            level: Level::Warning,
            message: format!("message {n}"),
            source: format!("source-{}", n % 3),
            timestamp: "2026-01-01T00:00:00Z".parse().unwrap(),
            metadata: None,
        };
        for (packets, per_packet) in [(1, 1), (1, super::BLOCKING_BODY_MESSAGES), (5, 40)] {
            let batch: Vec<Job> = (0..packets)
                .map(|p| {
                    let packet = LogPacket {
                        id: format!("p{p}"),
                        messages: (0..per_packet).map(message).collect(),
                        retry_count: 0,
                    };
                    Job::new(p as u64, Arc::new(EncodedPacket::new(&packet)), 1)
                })
                .collect();
            let inline = joined(&DeliveryFormat::Otlp.write_body(&batch));
            let off_thread = joined(&DeliveryFormat::Otlp.write_body_off_thread(&batch).await);
            assert!(inline.len() > 20 * packets * per_packet);
            assert_eq!(off_thread, inline, "{packets} x {per_packet}");
        }
    }

    #[test]
    fn a_packets_body_is_the_json_array_serde_writes() {
        let packet = |id: &str, message: &str, retry_count: u32| LogPacket {
            id: id.into(),
            messages: vec![LogMessage {
                level: Level::Info,
                message: message.into(),
                source: "s".into(),
                timestamp: "2026-01-01T00:00:00Z".parse().unwrap(),
                metadata: None,
            }],
            retry_count,
        };
        let packets = [
            packet("a", "one", 0),
            packet("b", "two \"q\"", 3),
            packet("c", "", 0),
        ];
        for count in 0..=packets.len() {
            let batch: Vec<Job> = packets[..count]
                .iter()
                .enumerate()
                .map(|(seq, p)| Job::new(seq as u64, Arc::new(EncodedPacket::new(p)), p.retry_count))
                .collect();
            let body: Vec<u8> = DeliveryFormat::Packets
                .write_body(&batch)
                .slices()
                .iter()
                .flat_map(|piece| piece.to_vec())
                .collect();
            let expected = serde_json::to_string(&packets[..count]).unwrap();
            assert_eq!(String::from_utf8(body).unwrap(), expected);
        }
    }

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
