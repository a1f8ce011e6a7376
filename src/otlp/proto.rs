//! The protobuf `ExportLogsServiceRequest`, read group by group and record
//! by record rather than decoded whole: what is held at once is one
//! resource, one scope and one record (decoded with prost, the crate's
//! types), so a body of millions of empty records costs no more memory
//! than its bytes, and a record, resource or scope larger than
//! `limits.max_packet_bytes` is rejected without being decoded.
//!
//! It reads what prost reads: fields in any order, unknown fields skipped,
//! a message field that occurs more than once merged, the last value of a
//! string field kept; a known field with the wrong wire type, a length
//! past the end or a string that is not UTF-8 fails the request.

use super::map::{At, GroupHead, Mapper};
use super::RequestError;
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use prost::Message;
use std::fmt::Display;

/// `ExportLogsServiceRequest.resource_logs`.
const REQUEST_RESOURCE_LOGS: u32 = 1;
/// `ResourceLogs`: `resource`, `scope_logs`, `schema_url`.
const RESOURCE: u32 = 1;
const SCOPE_LOGS: u32 = 2;
const RESOURCE_SCHEMA_URL: u32 = 3;
/// `ScopeLogs`: `scope`, `log_records`, `schema_url`.
const SCOPE: u32 = 1;
const LOG_RECORDS: u32 = 2;
const SCOPE_SCHEMA_URL: u32 = 3;

/// Reads a protobuf request into `mapper`.
pub(super) fn decode(body: &[u8], mapper: &mut Mapper<'_>) -> Result<(), RequestError> {
    let mut record = LogRecord::default();
    let mut index = 0;
    for field in Fields(body) {
        let field = field.map_err(|e| invalid("the request", e))?;
        let place = "resourceLogs";
        if let Some(bytes) = field
            .delimited(REQUEST_RESOURCE_LOGS)
            .map_err(|e| invalid(place, e))?
        {
            resource_logs(bytes, index, mapper, &mut record)?;
            index += 1;
        }
    }
    Ok(())
}

/// A request that does not decode, and where.
fn invalid(place: impl Display, error: impl Display) -> RequestError {
    RequestError::Invalid(format!("{place}: {error}"))
}

/// One `ResourceLogs`: its resource and schema URL first (wherever they
/// are), then its scopes.
fn resource_logs(
    bytes: &[u8],
    resource: usize,
    mapper: &mut Mapper<'_>,
    record: &mut LogRecord,
) -> Result<(), RequestError> {
    let place = format!("resourceLogs[{resource}]");
    let fail = |e: String| invalid(&place, e);
    let (head_resource, schema_url) =
        head::<Resource>(bytes, RESOURCE, RESOURCE_SCHEMA_URL, mapper).map_err(fail)?;
    let mut scope = 0;
    for field in Fields(bytes) {
        let Some(scope_bytes) = field.map_err(fail)?.delimited(SCOPE_LOGS).map_err(fail)? else {
            continue;
        };
        let at = At {
            resource,
            scope,
            record: None,
        };
        scope_logs(scope_bytes, at, &head_resource, schema_url, mapper, record)?;
        scope += 1;
    }
    Ok(())
}

/// One `ScopeLogs`: a group, then its records one by one.
fn scope_logs(
    bytes: &[u8],
    at: At,
    resource: &Head<Resource>,
    resource_schema_url: &str,
    mapper: &mut Mapper<'_>,
    record: &mut LogRecord,
) -> Result<(), RequestError> {
    let fail = |e: String| invalid(at, e);
    let (scope, schema_url) =
        head::<InstrumentationScope>(bytes, SCOPE, SCOPE_SCHEMA_URL, mapper).map_err(fail)?;
    match (resource, &scope) {
        (Head::TooLarge(size), _) => mapper.start_refused_group(too_large("resource", *size, mapper)),
        (_, Head::TooLarge(size)) => mapper.start_refused_group(too_large("scope", *size, mapper)),
        (Head::Decoded(resource), Head::Decoded(scope)) => mapper.start_group(&GroupHead {
            resource: resource.as_ref(),
            resource_schema_url,
            scope: scope.as_ref(),
            scope_schema_url: schema_url,
        }),
    }
    let max_bytes = mapper.limits().max_packet_bytes;
    let mut index = 0;
    for field in Fields(bytes) {
        let Some(record_bytes) = field.map_err(fail)?.delimited(LOG_RECORDS).map_err(fail)? else {
            continue;
        };
        let at = At {
            record: Some(index),
            ..at
        };
        index += 1;
        if record_bytes.len() > max_bytes {
            mapper.reject(
                at,
                format!(
                    "the log record is {} bytes: at most {max_bytes} are allowed (limits.max_packet_bytes)",
                    record_bytes.len()
                ),
            );
            continue;
        }
        record.clear();
        record.merge(record_bytes).map_err(|e| invalid(at, e))?;
        mapper.record(at, record)?;
    }
    Ok(())
}

/// A group's resource or scope: decoded (absent or present), or too large
/// to be taken.
enum Head<T> {
    Decoded(Option<T>),
    TooLarge(usize),
}

/// The message field `message_tag` (every occurrence merged, as prost
/// does) and the string field `url_tag` (the last occurrence) of `bytes`.
/// A message larger in all than `limits.max_packet_bytes` is not decoded.
fn head<'b, T: Message + Default>(
    bytes: &'b [u8],
    message_tag: u32,
    url_tag: u32,
    mapper: &Mapper<'_>,
) -> Result<(Head<T>, &'b str), String> {
    let max_bytes = mapper.limits().max_packet_bytes;
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut size = 0;
    let mut url = "";
    for field in Fields(bytes) {
        let field = field?;
        if let Some(part) = field.delimited(message_tag)? {
            size += part.len();
            if size <= max_bytes {
                parts.push(part);
            }
        } else if let Some(text) = field.delimited(url_tag)? {
            url = std::str::from_utf8(text)
                .map_err(|_| "invalid string value: data is not UTF-8 encoded".to_string())?;
        }
    }
    if size > max_bytes {
        return Ok((Head::TooLarge(size), url));
    }
    let mut message = None;
    for part in parts {
        message
            .get_or_insert_with(T::default)
            .merge(part)
            .map_err(|e| e.to_string())?;
    }
    Ok((Head::Decoded(message), url))
}

fn too_large(what: &str, size: usize, mapper: &Mapper<'_>) -> String {
    format!(
        "its {what} is {size} bytes: at most {} are allowed (limits.max_packet_bytes)",
        mapper.limits().max_packet_bytes
    )
}

/// The fields of a protobuf message, in order: each length-delimited one
/// with its bytes, any other skipped (checked as prost checks it).
struct Fields<'b>(&'b [u8]);

/// One field of a message.
struct Field<'b> {
    tag: u32,
    wire_type: WireType,
    /// The bytes of a length-delimited field.
    bytes: &'b [u8],
}

impl<'b> Field<'b> {
    /// The bytes of field `tag`, or `None` for another field; an error when
    /// it is field `tag` with another wire type.
    fn delimited(&self, tag: u32) -> Result<Option<&'b [u8]>, String> {
        if self.tag != tag {
            return Ok(None);
        }
        if self.wire_type != WireType::LengthDelimited {
            return Err(format!(
                "failed to decode Protobuf message: invalid wire type: {:?} (expected {:?})",
                self.wire_type,
                WireType::LengthDelimited
            ));
        }
        Ok(Some(self.bytes))
    }
}

impl<'b> Iterator for Fields<'b> {
    type Item = Result<Field<'b>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.read();
        if field.is_err() {
            // Nothing after a field that does not decode can be read.
            self.0 = &[];
        }
        Some(field)
    }
}

impl<'b> Fields<'b> {
    fn read(&mut self) -> Result<Field<'b>, String> {
        let (tag, wire_type) = decode_key(&mut self.0).map_err(|e| e.to_string())?;
        if wire_type != WireType::LengthDelimited {
            skip_field(wire_type, tag, &mut self.0, DecodeContext::default()).map_err(|e| e.to_string())?;
            return Ok(Field {
                tag,
                wire_type,
                bytes: &[],
            });
        }
        let len = decode_varint(&mut self.0).map_err(|e| e.to_string())?;
        if len > self.0.len() as u64 {
            return Err("failed to decode Protobuf message: buffer underflow".into());
        }
        let (bytes, rest) = self.0.split_at(len as usize);
        self.0 = rest;
        Ok(Field {
            tag,
            wire_type,
            bytes,
        })
    }
}
