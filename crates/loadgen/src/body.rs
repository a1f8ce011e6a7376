//! Request bodies: synthetic packets as a JSON array, NDJSON or OTLP
//! protobuf, built from templates rendered once, so that a request costs
//! little more than writing its packet ids.

use crate::args::LoadgenArgs;
use crate::gzip::GzipEncoder;
use crate::otlp;
use bytes::{BufMut, Bytes, BytesMut};
use rand::seq::IndexedRandom;
use serde::Serialize;

const LEVELS: [&str; 4] = ["INFO", "WARN", "ERROR", "DEBUG"];

/// Vocabulary of the synthetic message texts.
const WORDS: &str = "request served upstream cache miss latency user session token refreshed queue \
    depth shard replica timeout retry payload accepted disk usage checkpoint written connection reset \
    handler completed";

/// Request body layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    JsonArray,
    Ndjson,
    /// An OTLP `ExportLogsServiceRequest`: one resource per packet, no ids.
    Otlp,
}

impl BodyFormat {
    pub(crate) fn from_args(args: &LoadgenArgs) -> Self {
        if args.otlp {
            Self::Otlp
        } else if args.ndjson {
            Self::Ndjson
        } else {
            Self::JsonArray
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::JsonArray => "application/json",
            Self::Ndjson => "application/x-ndjson",
            Self::Otlp => "application/x-protobuf",
        }
    }

    /// Bytes before the first packet, between packets, and after the last one.
    fn delimiters(self) -> (&'static [u8], &'static [u8], &'static [u8]) {
        match self {
            Self::JsonArray => (b"[", b",", b"]"),
            Self::Ndjson => (b"", b"\n", b"\n"),
            Self::Otlp => (b"", b"", b""),
        }
    }
}

#[derive(Serialize)]
struct MessageTemplate<'a> {
    level: &'a str,
    message: String,
    source: &'a str,
    metadata: MessageMetadata,
}

#[derive(Serialize)]
struct MessageMetadata {
    worker: usize,
}

/// Builds request bodies from pre-rendered packet templates; only the ids are written
/// per request, into a reused buffer.
pub(crate) struct BodyWriter {
    /// `{"id":"lg-<run>-`: the packet number follows.
    id_opening: Vec<u8>,
    /// `","messages":[...]}`: the rest of a packet, in a few variants of levels and texts
    /// (OTLP: the whole packet, which has no id).
    packet_tails: Vec<Vec<u8>>,
    format: BodyFormat,
    buffer: BytesMut,
    gzip: Option<GzipEncoder>,
}

impl BodyWriter {
    pub(crate) fn new(id_prefix: &str, worker_id: usize, args: &LoadgenArgs, format: BodyFormat) -> Self {
        let mut rng = rand::rng();
        let words: Vec<&str> = WORDS.split_whitespace().collect();
        let packet_tails = (0..LEVELS.len())
            .map(|variant| {
                let messages: Vec<MessageTemplate> = (0..args.messages_per_packet as usize)
                    .map(|index| MessageTemplate {
                        level: LEVELS[(variant + index) % LEVELS.len()],
                        message: message_text(args.message_bytes as usize, &words, &mut rng),
                        source: "loadgen",
                        metadata: MessageMetadata { worker: worker_id },
                    })
                    .collect();
                if format == BodyFormat::Otlp {
                    let records: Vec<(&str, String)> =
                        messages.into_iter().map(|m| (m.level, m.message)).collect();
                    return otlp::encoded_packet(&records, worker_id);
                }
                let messages = serde_json::to_string(&messages).expect("message templates serialize to JSON");
                format!("\",\"messages\":{messages}}}").into_bytes()
            })
            .collect();
        Self {
            id_opening: format!("{{\"id\":\"{id_prefix}").into_bytes(),
            packet_tails,
            format,
            buffer: BytesMut::new(),
            gzip: args.gzip.then(GzipEncoder::new),
        }
    }

    /// The body carrying packets `first_packet..first_packet + count`.
    pub(crate) fn render(&mut self, first_packet: u64, count: u64) -> Bytes {
        let (opening, separator, closing) = self.format.delimiters();
        let longest_tail = self.packet_tails.iter().map(Vec::len).max().unwrap_or(0);
        let packet_bound = self.id_opening.len() + 20 + longest_tail + separator.len();
        self.buffer.clear();
        self.buffer
            .reserve(opening.len() + packet_bound * count as usize + closing.len());
        self.buffer.put_slice(opening);
        for packet in first_packet..first_packet + count {
            if packet != first_packet {
                self.buffer.put_slice(separator);
            }
            if self.format != BodyFormat::Otlp {
                self.buffer.put_slice(&self.id_opening);
                put_decimal(&mut self.buffer, packet);
            }
            let variant = (packet % self.packet_tails.len() as u64) as usize;
            self.buffer.put_slice(&self.packet_tails[variant]);
        }
        self.buffer.put_slice(closing);
        match &mut self.gzip {
            Some(gzip) => gzip.encode(&self.buffer),
            None => self.buffer.split().freeze(),
        }
    }
}

fn put_decimal(buffer: &mut BytesMut, mut number: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (number % 10) as u8;
        number /= 10;
        if number == 0 {
            break;
        }
    }
    buffer.put_slice(&digits[start..]);
}

/// Random words, cut to exactly `length` bytes; plain ASCII, so it needs no JSON escaping.
fn message_text(length: usize, words: &[&str], rng: &mut impl rand::Rng) -> String {
    let mut text = String::with_capacity(length + 16);
    while text.len() < length {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(words.choose(rng).expect("the vocabulary is not empty"));
    }
    text.truncate(length);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::tests::parse;
    use crate::schedule::PacketBudget;
    use serde_json::Value;

    fn body_json(args: &LoadgenArgs, first_packet: u64, count: u64) -> Vec<Value> {
        let mut writer = BodyWriter::new("lg-test-", 3, args, BodyFormat::from_args(args));
        let body = writer.render(first_packet, count);
        serde_json::from_slice(&body).expect("the body is a JSON array")
    }

    #[test]
    fn json_body_has_the_requested_shape() {
        let args = parse(&["--messages-per-packet", "4", "--message-bytes", "50"]);
        let packets = body_json(&args, 10, 5);
        assert_eq!(packets.len(), 5);
        for (offset, packet) in packets.iter().enumerate() {
            assert_eq!(packet["id"], format!("lg-test-{}", 10 + offset));
            let messages = packet["messages"].as_array().expect("messages is an array");
            assert_eq!(messages.len(), 4);
            for message in messages {
                assert!(LEVELS.contains(&message["level"].as_str().expect("level is a string")));
                assert_eq!(
                    message["message"].as_str().expect("message is a string").len(),
                    50
                );
                assert_eq!(message["source"], "loadgen");
                assert_eq!(message["metadata"]["worker"], 3);
            }
        }
    }

    #[test]
    fn packets_vary_their_levels() {
        let packets = body_json(&parse(&[]), 0, 4);
        let first_levels: std::collections::HashSet<&str> = packets
            .iter()
            .map(|packet| packet["messages"][0]["level"].as_str().expect("a level"))
            .collect();
        assert_eq!(first_levels.len(), LEVELS.len());
    }

    #[test]
    fn ids_are_unique_across_requests() {
        let args = parse(&[]);
        let mut writer = BodyWriter::new("lg-test-", 0, &args, BodyFormat::JsonArray);
        let budget = PacketBudget {
            total_packets: Some(25),
            packets_per_request: 10,
        };
        let mut ids = std::collections::HashSet::new();
        for index in 0.. {
            let Some((first, count)) = budget.packets_of_request(index) else {
                break;
            };
            let packets: Vec<Value> =
                serde_json::from_slice(&writer.render(first, count)).expect("valid JSON");
            for packet in packets {
                assert!(
                    ids.insert(packet["id"].as_str().expect("an id").to_owned()),
                    "duplicate id"
                );
            }
        }
        assert_eq!(ids.len(), 25);
    }

    #[test]
    fn ndjson_body_has_one_packet_per_line() {
        let args = parse(&["--ndjson"]);
        let mut writer = BodyWriter::new("lg-test-", 0, &args, BodyFormat::from_args(&args));
        let body = writer.render(0, 3);
        let text = std::str::from_utf8(&body).expect("the body is UTF-8");
        assert!(text.ends_with('\n'));
        let ids: Vec<String> = text
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).expect("each line is JSON")["id"].to_string())
            .collect();
        assert_eq!(ids, ["\"lg-test-0\"", "\"lg-test-1\"", "\"lg-test-2\""]);
    }

    #[test]
    fn otlp_body_is_one_request_with_a_resource_per_packet() {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use prost::Message as _;
        let args = parse(&["--otlp", "--messages-per-packet", "512", "--message-bytes", "30"]);
        let format = BodyFormat::from_args(&args);
        assert_eq!(format.content_type(), "application/x-protobuf");
        let mut writer = BodyWriter::new("lg-test-", 0, &args, format);
        let body = writer.render(0, 3);
        let request = ExportLogsServiceRequest::decode(&body[..]).expect("a protobuf request");
        assert_eq!(request.resource_logs.len(), 3);
        for resource_logs in &request.resource_logs {
            let records = &resource_logs.scope_logs[0].log_records;
            assert_eq!(records.len(), 512);
            assert!(records.iter().all(|r| r.severity_number > 0));
        }
    }

    #[test]
    fn gzip_body_decompresses_to_the_plain_body() {
        use std::io::Read;
        let plain_args = parse(&[]);
        let gzip_args = parse(&["--gzip"]);
        let mut plain = BodyWriter::new("lg-test-", 0, &plain_args, BodyFormat::JsonArray);
        let mut gzip = BodyWriter::new("lg-test-", 0, &gzip_args, BodyFormat::JsonArray);
        for _ in 0..2 {
            let compressed = gzip.render(0, 20);
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&compressed[..])
                .read_to_end(&mut inflated)
                .expect("a valid gzip stream");
            let packets: Vec<Value> = serde_json::from_slice(&inflated).expect("valid JSON");
            let expected: Vec<Value> = serde_json::from_slice(&plain.render(0, 20)).expect("valid JSON");
            assert_eq!(packets.len(), expected.len());
            assert_eq!(packets[19]["id"], expected[19]["id"]);
        }
    }
}
