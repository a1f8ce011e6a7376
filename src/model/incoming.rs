//! The shapes a client's packet arrives in, as serde reads them: a
//! packet whose messages are checked one by one, and a well-formed packet
//! read in one pass (by serde, or by `packet_reader` when it has the
//! usual shape). `validate` checks them against the limits.

use super::canonical;
use super::object::Object;
use super::rfc3339::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A message exactly as a client may send it: level is free text until
/// validated, timestamp optional. Strings without escapes are borrowed
/// from the request, not copied (and so, JSON having no raw control
/// character in a string, hold nothing to escape when written again).
/// The metadata, `M`, is a map, or its raw text where the packet is read
/// in one pass (see `Limits::validate`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, bound(deserialize = "M: Deserialize<'de>"))]
pub(super) struct IncomingMessage<'a, M = serde_json::Map<String, serde_json::Value>> {
    #[serde(borrow)]
    pub(super) level: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) message: Cow<'a, str>,
    #[serde(borrow)]
    pub(super) source: Cow<'a, str>,
    #[serde(default)]
    pub(super) timestamp: Option<Timestamp>,
    #[serde(default)]
    pub(super) metadata: Option<M>,
}

/// A packet exactly as a client may send it. `retry_count` is accepted so
/// that one distributor can be another's analyzer, but is reset to zero.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IncomingPacket<'a> {
    #[serde(default, borrow)]
    pub(super) id: Option<Cow<'a, str>>,
    /// Parsed one by one, so that an error names the message.
    #[serde(borrow)]
    pub(super) messages: Vec<&'a RawValue>,
    #[serde(default, rename = "retry_count")]
    _retry_count: Option<u32>,
}

/// A well-formed packet, parsed in one pass (see `Limits::validate`);
/// its messages' metadata is left as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WholePacket<'a> {
    #[serde(default, borrow)]
    pub(super) id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pub(super) messages: Vec<Object<IncomingMessage<'a, &'a RawValue>>>,
    #[serde(default, rename = "retry_count")]
    _retry_count: Option<u32>,
}

/// Deepest nesting of `metadata`: stored packets are re-read inside
/// wrappers (log records, dead-letter entries, checkpoints), which must stay
/// well under serde_json's recursion limit of 128.
pub const MAX_METADATA_DEPTH: usize = 32;

/// A message's metadata as it stands in the request: JSON text serde_json
/// would write back unchanged (see `canonical`), copied as it is when the
/// packet is encoded, or other text, read into a map and written again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MetadataText<'a> {
    Canonical(&'a str),
    Other(&'a str),
}

impl<'a> MetadataText<'a> {
    /// Sorts an object's text: canonical when it is (which makes it valid
    /// JSON, see `canonical`) and is nested at most [`MAX_METADATA_DEPTH`]
    /// levels.
    pub(super) fn of(text: &'a str) -> MetadataText<'a> {
        match canonical::object_depth(text, MAX_METADATA_DEPTH) {
            Some(_) => MetadataText::Canonical(text),
            None => MetadataText::Other(text),
        }
    }
}
