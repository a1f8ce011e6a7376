//! Log records to packets, as the decoders hand them over: each resource x
//! scope group becomes packets of its own (a new one at
//! `limits.max_messages_per_packet` messages or `limits.max_packet_bytes`
//! bytes), each record one message, in the order sent. Messages are
//! written straight to JSON (the packet's encoding), the group's resource
//! and scope once per group.
//!
//! A record that breaks a limit is rejected (counted, with the reason,
//! for `partial_success`); the others go on. A trace or span id of the
//! wrong length fails the whole request, as a body that does not decode.
//! See docs/otlp.md for the mapping, field by field.

use super::natural::{write_object, write_value};
use super::{Mapped, RequestError};
use crate::model::write_str;
use crate::model::{
    write_message_head, EncodedPacket, Level, Limits, PacketEncoder, QueueBounds, MAX_METADATA_DEPTH,
};
use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::fmt;

/// The source of a record whose resource has no `service.name` and whose
/// scope has no name (the SDKs' own default service name).
pub(crate) const UNKNOWN_SERVICE: &str = "unknown_service";

/// How many rejection reasons `partial_success.error_message` spells out.
const REASONS_KEPT: usize = 5;

/// Where a group or a record sits in the request, written as OTLP/JSON
/// names it: `resourceLogs[0].scopeLogs[1].logRecords[2]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct At {
    pub resource: usize,
    pub scope: usize,
    pub record: Option<usize>,
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resourceLogs[{}].scopeLogs[{}]", self.resource, self.scope)?;
        if let Some(record) = self.record {
            write!(f, ".logRecords[{record}]")?;
        }
        Ok(())
    }
}

/// What a group's records share.
pub(super) struct GroupHead<'a> {
    pub resource: Option<&'a Resource>,
    pub resource_schema_url: &'a str,
    pub scope: Option<&'a InstrumentationScope>,
    pub scope_schema_url: &'a str,
}

/// The current group, rendered once.
#[derive(Default)]
struct Group {
    source: String,
    /// The metadata entries every record of the group carries, from
    /// `"resource"` to `"scope_schema_url"` (adjacent in byte order), with
    /// no comma before or after.
    shared: Vec<u8>,
    /// The nesting of the deepest of those entries.
    shared_depth: usize,
    /// Why every record of the group is rejected, when one is.
    refused: Option<String>,
}

/// Turns a request's records into packets, group by group.
pub(super) struct Mapper<'l> {
    limits: &'l Limits,
    now: DateTime<Utc>,
    /// The most the packets of one request may add up to.
    bounds: QueueBounds,
    /// `json_bytes` of a packet with no message yet (ids are UUIDs, all
    /// of one length).
    empty_packet_bytes: usize,
    group: Group,
    packet: Option<PacketEncoder>,
    mapped: Mapped,
    /// `json_bytes` of the packets finished so far.
    output_bytes: usize,
    /// Scratch: one message's JSON.
    message: Vec<u8>,
    /// Scratch: a body that is not a string, as JSON.
    body: Vec<u8>,
}

impl<'l> Mapper<'l> {
    pub(super) fn new(limits: &'l Limits, bounds: QueueBounds, now: DateTime<Utc>) -> Mapper<'l> {
        Mapper {
            limits,
            now,
            bounds,
            empty_packet_bytes: PacketEncoder::new(uuid::Uuid::nil().to_string(), 0).json_bytes(),
            group: Group::default(),
            packet: None,
            mapped: Mapped::default(),
            output_bytes: 0,
            message: Vec::new(),
            body: Vec::new(),
        }
    }

    pub(super) fn limits(&self) -> &Limits {
        self.limits
    }

    /// The records that follow belong to this resource and scope.
    pub(super) fn start_group(&mut self, head: &GroupHead<'_>) {
        self.flush();
        let mut shared = std::mem::take(&mut self.group.shared);
        shared.clear();
        let depth = write_shared(head, &mut shared);
        self.group = Group {
            source: source_of(head).to_owned(),
            shared,
            shared_depth: depth,
            refused: (1 + depth > MAX_METADATA_DEPTH).then(|| {
                format!(
                    "metadata: the resource or scope attributes are nested {} levels deep: at most \
                     {MAX_METADATA_DEPTH} are allowed",
                    1 + depth
                )
            }),
        };
    }

    /// The records that follow are all rejected, for `reason` (their
    /// resource or scope could not be taken).
    pub(super) fn start_refused_group(&mut self, reason: String) {
        self.flush();
        self.group.refused = Some(reason);
    }

    /// Maps one record of the current group: into the current packet, or
    /// rejected with its reason.
    pub(super) fn record(&mut self, at: At, record: &LogRecord) -> Result<(), RequestError> {
        if let Some(reason) = &self.group.refused {
            let reason = reason.clone();
            self.reject(at, reason);
            return Ok(());
        }
        let ids = Ids {
            trace: checked_id(&record.trace_id, 16, "traceId", at)?,
            span: checked_id(&record.span_id, 8, "spanId", at)?,
        };
        self.message.clear();
        let written = write_message(
            record,
            &ids,
            &self.group,
            self.limits,
            self.now,
            &mut self.body,
            &mut self.message,
        );
        match written {
            Ok(()) => self.push(at),
            Err(reason) => {
                self.reject(at, reason);
                Ok(())
            }
        }
    }

    /// Counts a record out, with the reason.
    pub(super) fn reject(&mut self, at: At, reason: String) {
        self.mapped.rejected_records += 1;
        if self.mapped.rejections.len() < REASONS_KEPT {
            self.mapped.rejections.push(format!("{at}: {reason}"));
        }
    }

    /// The packets and the counts.
    pub(super) fn finish(mut self) -> Mapped {
        self.flush();
        self.mapped
    }

    /// Adds the message just written to the current packet, or to a new
    /// one when it is full.
    fn push(&mut self, at: At) -> Result<(), RequestError> {
        let size = self.message.len();
        let max_bytes = self.limits.max_packet_bytes;
        if self.empty_packet_bytes + size > max_bytes {
            self.reject(
                at,
                format!(
                    "it makes a message of {size} bytes of JSON, too many for a packet of at most \
                     {max_bytes} bytes (limits.max_packet_bytes)"
                ),
            );
            return Ok(());
        }
        let max_messages = self.limits.max_messages_per_packet;
        if let Some(packet) = &self.packet {
            if packet.message_count() >= max_messages || packet.json_bytes() + 1 + size > max_bytes {
                self.flush();
            }
        }
        let packet = self.packet.get_or_insert_with(|| {
            PacketEncoder::new(
                uuid::Uuid::new_v4().to_string(),
                size.saturating_mul(16).max(4096).min(max_bytes),
            )
        });
        packet.push_json(&self.message);
        self.mapped.accepted_records += 1;
        let packets = self.mapped.packets.len() + 1;
        self.bounds
            .check(packets, self.output_bytes + packet.json_bytes())?;
        Ok(())
    }

    fn flush(&mut self) {
        if let Some(packet) = self.packet.take() {
            let packet: EncodedPacket = packet.finish();
            self.output_bytes += packet.json_bytes();
            self.mapped.packets.push(packet);
        }
    }
}

/// A record's trace and span ids, when set.
struct Ids<'r> {
    trace: Option<&'r [u8]>,
    span: Option<&'r [u8]>,
}

/// An id of `len` bytes; empty and all-zero ids are unset. Another length
/// fails the request.
fn checked_id<'r>(id: &'r [u8], len: usize, name: &str, at: At) -> Result<Option<&'r [u8]>, RequestError> {
    if id.is_empty() {
        return Ok(None);
    }
    if id.len() != len {
        return Err(RequestError::Invalid(format!(
            "{at}: {name}: {} bytes: it must be {len} bytes ({} hex digits) or empty",
            id.len(),
            2 * len
        )));
    }
    Ok(id.iter().any(|&b| b != 0).then_some(id))
}

/// The level: `severityText` when it names one, else `severityNumber`.
pub(crate) fn level_of(severity_text: &str, severity_number: i32) -> Level {
    if !severity_text.is_empty() {
        if let Ok(level) = severity_text.parse() {
            return level;
        }
    }
    level_of_number(severity_number)
}

/// The OTLP severity ranges; 0 (unspecified) and numbers outside 1-24 are
/// INFO.
pub(crate) fn level_of_number(number: i32) -> Level {
    match number {
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        13..=16 => Level::Warning,
        17..=20 => Level::Error,
        21..=24 => Level::Critical,
        _ => Level::Info,
    }
}

/// The resource's `service.name` (its last occurrence) when it is a
/// string that is not blank, else the scope's name, else
/// [`UNKNOWN_SERVICE`].
fn source_of<'a>(head: &GroupHead<'a>) -> &'a str {
    let service = head.resource.and_then(|r| {
        r.attributes
            .iter()
            .rev()
            .find(|pair| pair.key == "service.name")
            .and_then(|pair| match pair.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(name)) => Some(name.as_str()),
                _ => None,
            })
    });
    let scope = head.scope.map(|s| s.name.as_str());
    [service, scope]
        .into_iter()
        .flatten()
        .find(|name| !name.trim().is_empty())
        .unwrap_or(UNKNOWN_SERVICE)
}

/// The entries of a JSON object being written, with their separators, and
/// the nesting of the deepest value.
struct Entries<'o> {
    out: &'o mut Vec<u8>,
    count: usize,
    deepest: usize,
}

impl<'o> Entries<'o> {
    fn new(out: &'o mut Vec<u8>) -> Entries<'o> {
        Entries {
            out,
            count: 0,
            deepest: 0,
        }
    }

    /// Writes `"key":` (after a comma when needed); the value follows.
    fn key(&mut self, key: &str) -> &mut Vec<u8> {
        if self.count > 0 {
            self.out.push(b',');
        }
        self.count += 1;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    fn nested(&mut self, depth: usize) {
        self.deepest = self.deepest.max(depth);
    }

    fn integer(&mut self, key: &str, value: impl serde::Serialize) {
        serde_json::to_writer(self.key(key), &value).expect("an integer always serialises");
    }

    fn string(&mut self, key: &str, value: &str) {
        write_str(value, self.key(key));
    }

    /// A 64-bit time as OTLP/JSON writes it: a decimal string.
    fn decimal_string(&mut self, key: &str, value: u64) {
        let out = self.key(key);
        out.push(b'"');
        serde_json::to_writer(&mut *out, &value).expect("an integer always serialises");
        out.push(b'"');
    }

    fn hex(&mut self, key: &str, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let out = self.key(key);
        out.push(b'"');
        for byte in bytes {
            out.push(DIGITS[usize::from(byte >> 4)]);
            out.push(DIGITS[usize::from(byte & 0xf)]);
        }
        out.push(b'"');
    }

    fn object(&mut self, key: &str, pairs: &[KeyValue]) {
        let depth = write_object(pairs, self.key(key));
        self.nested(depth);
    }

    /// Entries already written (none when `entries` is empty).
    fn raw(&mut self, entries: &[u8], depth: usize) {
        if entries.is_empty() {
            return;
        }
        if self.count > 0 {
            self.out.push(b',');
        }
        self.count += 1;
        self.out.extend_from_slice(entries);
        self.nested(depth);
    }
}

/// Writes the group's shared metadata entries; answers the nesting of the
/// deepest.
fn write_shared(head: &GroupHead<'_>, out: &mut Vec<u8>) -> usize {
    let mut entries = Entries::new(out);
    if let Some(resource) = head.resource {
        if !resource.attributes.is_empty() {
            entries.object("resource", &resource.attributes);
        }
        if resource.dropped_attributes_count > 0 {
            entries.integer(
                "resource_dropped_attributes_count",
                resource.dropped_attributes_count,
            );
        }
    }
    if !head.resource_schema_url.is_empty() {
        entries.string("resource_schema_url", head.resource_schema_url);
    }
    if let Some(scope) = head.scope {
        let mut object = Vec::new();
        let mut fields = Entries::new(&mut object);
        if !scope.attributes.is_empty() {
            fields.object("attributes", &scope.attributes);
        }
        if scope.dropped_attributes_count > 0 {
            fields.integer("dropped_attributes_count", scope.dropped_attributes_count);
        }
        if !scope.name.is_empty() {
            fields.string("name", &scope.name);
        }
        if !scope.version.is_empty() {
            fields.string("version", &scope.version);
        }
        if fields.count > 0 {
            let depth = 1 + fields.deepest;
            let out = entries.key("scope");
            out.push(b'{');
            out.extend_from_slice(&object);
            out.push(b'}');
            entries.nested(depth);
        }
    }
    if !head.scope_schema_url.is_empty() {
        entries.string("scope_schema_url", head.scope_schema_url);
    }
    entries.deepest
}

/// Writes one record as a message's JSON into `out`, or answers why it is
/// rejected. `body` is scratch space.
fn write_message(
    record: &LogRecord,
    ids: &Ids<'_>,
    group: &Group,
    limits: &Limits,
    now: DateTime<Utc>,
    body: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let level = level_of(&record.severity_text, record.severity_number);
    // A string body is the message; any other is its JSON text, and is
    // also kept typed in metadata.
    body.clear();
    let mut body_depth = 0;
    let message = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(Value::StringValue(text)) => text.as_str(),
        None | Some(Value::StringValueStrindex(_)) => "",
        Some(_) => {
            body_depth = write_value(record.body.as_ref(), body);
            std::str::from_utf8(body).expect("JSON written from strings is UTF-8")
        }
    };
    if message.len() > limits.max_message_bytes {
        return Err(format!(
            "body: {} bytes as the message: at most {} are allowed (limits.max_message_bytes)",
            message.len(),
            limits.max_message_bytes
        ));
    }
    let timestamp = [record.time_unix_nano, record.observed_time_unix_nano]
        .into_iter()
        .find(|&nanos| nanos != 0)
        .map_or(now, time_of);
    write_message_head(level, message, &group.source, timestamp, out);

    let before_metadata = out.len();
    out.extend_from_slice(b",\"metadata\":{");
    let mut entries = Entries::new(out);
    if !record.attributes.is_empty() {
        entries.object("attributes", &record.attributes);
    }
    if !body.is_empty() {
        let text = entries.key("body");
        text.extend_from_slice(body);
        entries.nested(body_depth);
    }
    if record.dropped_attributes_count > 0 {
        entries.integer("dropped_attributes_count", record.dropped_attributes_count);
    }
    if !record.event_name.is_empty() {
        entries.string("event_name", &record.event_name);
    }
    if record.flags != 0 {
        entries.integer("flags", record.flags);
    }
    if record.observed_time_unix_nano != 0 {
        entries.decimal_string("observed_time_unix_nano", record.observed_time_unix_nano);
    }
    entries.raw(&group.shared, group.shared_depth);
    if record.severity_number != 0 {
        entries.integer("severity_number", record.severity_number);
    }
    if !record.severity_text.is_empty() {
        entries.string("severity_text", &record.severity_text);
    }
    if let Some(span) = ids.span {
        entries.hex("span_id", span);
    }
    if record.time_unix_nano != 0 {
        entries.decimal_string("time_unix_nano", record.time_unix_nano);
    }
    if let Some(trace) = ids.trace {
        entries.hex("trace_id", trace);
    }
    let (count, depth) = (entries.count, 1 + entries.deepest);
    if depth > MAX_METADATA_DEPTH {
        return Err(format!(
            "metadata: its attributes or body are nested {depth} levels deep: at most \
             {MAX_METADATA_DEPTH} are allowed"
        ));
    }
    if count == 0 {
        out.truncate(before_metadata);
    } else {
        out.push(b'}');
    }
    out.push(b'}');
    Ok(())
}

/// A time in nanoseconds since the Unix epoch (any u64 is within chrono's
/// range: the largest is in the year 2554).
fn time_of(nanos: u64) -> DateTime<Utc> {
    DateTime::from_timestamp((nanos / 1_000_000_000) as i64, (nanos % 1_000_000_000) as u32)
        .expect("u64 nanoseconds are within chrono's range")
}
