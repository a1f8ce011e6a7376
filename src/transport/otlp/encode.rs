//! An `ExportLogsServiceRequest` to protobuf bytes, each record measured
//! once. prost's `encode_to_vec` writes the same bytes, but it measures a
//! nested message again for every message it sits in: a record four
//! times, the value of one of its attributes six. Here the three outer
//! levels are written by hand from lengths measured once, and each record
//! by prost.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, message, WireType};
use prost::Message;

/// The field numbers of the outer messages (the same in all three:
/// `resource_logs`; `resource`, `scope_logs`, `schema_url`; `scope`,
/// `log_records`, `schema_url`).
const FIRST: u32 = 1;
const SECOND: u32 = 2;
const SCHEMA_URL: u32 = 3;

/// The bytes `request.encode_to_vec()` answers.
pub(super) fn encode(request: &ExportLogsServiceRequest) -> Vec<u8> {
    let lengths = Lengths::of(request);
    let mut out = Vec::with_capacity(lengths.total);
    let (mut records, mut scopes) = (lengths.records.iter(), lengths.scopes.iter());
    for (resource_logs, &resource_len) in request.resource_logs.iter().zip(&lengths.resources) {
        delimited_head(FIRST, resource_len, &mut out);
        if let Some(resource) = &resource_logs.resource {
            message::encode(FIRST, resource, &mut out);
        }
        for scope_logs in &resource_logs.scope_logs {
            let scope_len = *scopes.next().expect("a length per scope");
            delimited_head(SECOND, scope_len, &mut out);
            if let Some(scope) = &scope_logs.scope {
                message::encode(FIRST, scope, &mut out);
            }
            for record in &scope_logs.log_records {
                delimited_head(SECOND, *records.next().expect("a length per record"), &mut out);
                record.encode_raw(&mut out);
            }
            schema_url(&scope_logs.schema_url, &mut out);
        }
        schema_url(&resource_logs.schema_url, &mut out);
    }
    debug_assert_eq!(
        out.len(),
        lengths.total,
        "the lengths measured are the lengths written"
    );
    out
}

/// The encoded lengths of every record, scope and resource of a request,
/// each in the order written, and the request's.
struct Lengths {
    records: Vec<usize>,
    scopes: Vec<usize>,
    resources: Vec<usize>,
    total: usize,
}

impl Lengths {
    fn of(request: &ExportLogsServiceRequest) -> Lengths {
        let mut lengths = Lengths {
            records: Vec::new(),
            scopes: Vec::new(),
            resources: Vec::with_capacity(request.resource_logs.len()),
            total: 0,
        };
        for resource_logs in &request.resource_logs {
            let resource_len = lengths.resource(resource_logs);
            lengths.resources.push(resource_len);
            lengths.total += delimited_len(FIRST, resource_len);
        }
        lengths
    }

    fn resource(&mut self, resource_logs: &ResourceLogs) -> usize {
        let scopes = resource_logs.scope_logs.iter().map(|scope_logs| {
            let scope_len = self.scope(scope_logs);
            self.scopes.push(scope_len);
            scope_len
        });
        outer_len(resource_logs.resource.as_ref(), scopes, &resource_logs.schema_url)
    }

    fn scope(&mut self, scope_logs: &ScopeLogs) -> usize {
        let records = scope_logs.log_records.iter().map(|record| {
            let record_len = record.encoded_len();
            self.records.push(record_len);
            record_len
        });
        outer_len(scope_logs.scope.as_ref(), records, &scope_logs.schema_url)
    }
}

/// The length of a `ResourceLogs` or a `ScopeLogs`: its resource or scope
/// (field 1), its parts of `part_lens` bytes each (field 2) and its schema
/// URL (field 3).
fn outer_len(head: Option<&impl Message>, part_lens: impl Iterator<Item = usize>, url: &str) -> usize {
    let head = head.map_or(0, |head| delimited_len(FIRST, head.encoded_len()));
    let parts: usize = part_lens.map(|len| delimited_len(SECOND, len)).sum();
    head + parts + schema_url_len(url)
}

/// The bytes of a length-delimited field of `len` bytes, its key and
/// length included.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn delimited_head(tag: u32, len: usize, out: &mut Vec<u8>) {
    encode_key(tag, WireType::LengthDelimited, out);
    encode_varint(len as u64, out);
}

/// A `schema_url` field, written when not empty (as proto3 does).
fn schema_url(url: &str, out: &mut Vec<u8>) {
    if !url.is_empty() {
        delimited_head(SCHEMA_URL, url.len(), out);
        out.extend_from_slice(url.as_bytes());
    }
}

fn schema_url_len(url: &str) -> usize {
    if url.is_empty() {
        0
    } else {
        delimited_len(SCHEMA_URL, url.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
    use opentelemetry_proto::tonic::logs::v1::LogRecord;
    use opentelemetry_proto::tonic::resource::v1::Resource;

    fn record(n: usize) -> LogRecord {
        LogRecord {
            time_unix_nano: n as u64 * 1_000_000_007,
            severity_text: "INFO".into(),
            severity_number: 9,
            // Bodies across the one- and two-byte length varints.
            body: Some(AnyValue {
                value: Some(Value::StringValue("x".repeat(n * 37))),
            }),
            attributes: (0..n % 4)
                .map(|k| KeyValue {
                    key: format!("k{k}"),
                    value: Some(AnyValue {
                        value: Some(Value::IntValue(k as i64 - 1)),
                    }),
                    ..KeyValue::default()
                })
                .collect(),
            ..LogRecord::default()
        }
    }

    /// Resources and scopes present, absent and empty, schema URLs set
    /// and not, scopes and resources without records, records of every
    /// size up to a length of three varint bytes.
    fn request() -> ExportLogsServiceRequest {
        let mut n = 0;
        let mut records = |count: usize| {
            (0..count)
                .map(|_| {
                    n += 1;
                    record(n * n % 600)
                })
                .collect::<Vec<_>>()
        };
        let scope = |name: &str, records: Vec<LogRecord>, url: &str| ScopeLogs {
            scope: (!name.is_empty()).then(|| InstrumentationScope {
                name: name.into(),
                ..InstrumentationScope::default()
            }),
            log_records: records,
            schema_url: url.into(),
        };
        let resource = |service: Option<&str>, scope_logs: Vec<ScopeLogs>, url: &str| ResourceLogs {
            resource: service.map(|service| Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(Value::StringValue(service.into())),
                    }),
                    ..KeyValue::default()
                }],
                ..Resource::default()
            }),
            scope_logs,
            schema_url: url.into(),
        };
        ExportLogsServiceRequest {
            resource_logs: vec![
                resource(
                    Some("checkout"),
                    vec![scope("a", records(3), ""), scope("", records(1), "https://s/1")],
                    "https://r/1",
                ),
                resource(None, vec![scope("b", records(0), "")], ""),
                resource(Some(""), vec![], ""),
                resource(Some("big"), vec![scope("c", records(120), "u")], ""),
            ],
        }
    }

    #[test]
    fn writes_the_bytes_prost_writes() {
        let request = request();
        let expected = request.encode_to_vec();
        assert!(expected.len() > 1 << 14, "some lengths take three varint bytes");
        assert_eq!(encode(&request), expected);
        assert!(encode(&ExportLogsServiceRequest::default()).is_empty());
    }
}
