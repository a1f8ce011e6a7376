//! The bytes of a write-ahead log segment.
//!
//! ```text
//! segment   = magic group*
//! magic     = "LDWAL" 0x00 0x00 0x02            (8 bytes; 2 is the format version)
//! group     = len:u64 LE | synced:u64 LE | body_crc:u32 LE | head_crc:u32 LE | body
//!   len       bytes of body
//!   synced    how much of the segment the last completed fdatasync had
//!             made durable when this group was written (its own offset at
//!             most)
//!   body_crc  crc32c of body
//!   head_crc  crc32c of the 20 header bytes before it
//! body      = record+
//! record    = len:u32 LE | kind:u8 | payload     (len = 1 + payload length)
//!   kind 1 Accept  payload = seq:u64 LE | packet as JSON (with retry_count)
//!   kind 2 Retry   payload = seq:u64 LE | retries:u32 LE
//!   kind 3 End     payload = seq:u64 LE          (delivered or dead-lettered)
//! ```
//!
//! A commit group is what the writer writes at once (about a MiB at most,
//! an append never split); the groups of one go are followed by one
//! fdatasync, so a group is on disk whole or it was never acknowledged.
//! Both checksums cover every length, so a damaged length is a checksum
//! mismatch, never a record that seems to run past the end of the file.
//! `synced` tells recovery which bytes were already durable when a later
//! group was written: damage there is corruption, not a torn write.
//!
//! Version 1 segments (written before the magic existed, still read):
//!
//! ```text
//! segment   = v1record*
//! v1record  = len:u32 LE | crc32c:u32 LE | kind:u8 | payload   (crc over kind and payload only)
//! ```

use crate::model::{EncodedPacket, LogPacket};
use std::sync::Arc;

/// The first bytes of every segment this build writes.
pub const SEGMENT_MAGIC: [u8; 8] = *b"LDWAL\x00\x00\x02";
/// Bytes of a commit group's header.
pub const GROUP_HEADER_BYTES: usize = 24;
/// Bytes of a record's length field.
const RECORD_LEN_BYTES: usize = 4;
/// Bytes of a version 1 record's header: length and checksum.
const V1_HEADER_BYTES: usize = 8;
const KIND_ACCEPT: u8 = 1;
const KIND_RETRY: u8 = 2;
const KIND_END: u8 = 3;
/// The largest record a version 1 segment held: its length is not covered
/// by its checksum, so a larger one is damage. Records are sized for it
/// still (see `limits.max_packet_bytes`).
pub const MAX_RECORD_BYTES: usize = 64 * 1024 * 1024;
/// The largest packet (its JSON, `retry_count` included) an Accept record
/// is sized for: the record limit less its kind and seq.
pub const MAX_PACKET_JSON_BYTES: usize = MAX_RECORD_BYTES - 9;

/// One entry of the log.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A packet taken in, with the retries it had already spent.
    Accept {
        seq: u64,
        packet: Arc<EncodedPacket>,
        retries: u32,
    },
    Retry {
        seq: u64,
        retries: u32,
    },
    End {
        seq: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end inside the record.
    Truncated,
    /// The record is damaged.
    Corrupt(String),
    /// The record is whole (its checksum holds) but cannot be read: never
    /// a torn write, always refused.
    Unreadable(String),
}

impl Record {
    /// The most bytes [`Record::encode`] appends.
    pub fn max_encoded_bytes(&self) -> usize {
        let payload = match self {
            Record::Accept { packet, .. } => 8 + packet.json_bytes(),
            Record::Retry { .. } => 12,
            Record::End { .. } => 8,
        };
        RECORD_LEN_BYTES + 1 + payload
    }

    /// Appends the record's bytes to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; RECORD_LEN_BYTES]);
        self.encode_kind_and_payload(out);
        let len = u32::try_from(out.len() - start - RECORD_LEN_BYTES).expect("records are far below 4 GiB");
        out[start..start + RECORD_LEN_BYTES].copy_from_slice(&len.to_le_bytes());
    }

    fn encode_kind_and_payload(&self, out: &mut Vec<u8>) {
        match self {
            Record::Accept { seq, packet, retries } => {
                out.push(KIND_ACCEPT);
                out.extend_from_slice(&seq.to_le_bytes());
                packet.write_json(*retries, out);
            }
            Record::Retry { seq, retries } => {
                out.push(KIND_RETRY);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&retries.to_le_bytes());
            }
            Record::End { seq } => {
                out.push(KIND_END);
                out.extend_from_slice(&seq.to_le_bytes());
            }
        }
    }

    /// Decodes one record from the front of `bytes` (a commit group's
    /// body): the record and the bytes it took, or why it cannot be read.
    pub fn decode(bytes: &[u8]) -> Result<(Record, usize), DecodeError> {
        let Some(len) = bytes.get(..RECORD_LEN_BYTES) else {
            return Err(DecodeError::Truncated);
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        if len == 0 {
            return Err(DecodeError::Corrupt("record of length 0".into()));
        }
        let Some(kind_and_payload) = bytes.get(RECORD_LEN_BYTES..RECORD_LEN_BYTES + len) else {
            return Err(DecodeError::Truncated);
        };
        Ok((decode_kind_and_payload(kind_and_payload)?, RECORD_LEN_BYTES + len))
    }

    /// Decodes one version 1 record from the front of `bytes`.
    pub fn decode_v1(bytes: &[u8]) -> Result<(Record, usize), DecodeError> {
        let Some(header) = bytes.get(..V1_HEADER_BYTES) else {
            return Err(DecodeError::Truncated);
        };
        let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD_BYTES {
            return Err(DecodeError::Corrupt(format!("impossible record length {len}")));
        }
        let Some(kind_and_payload) = bytes.get(V1_HEADER_BYTES..V1_HEADER_BYTES + len) else {
            return Err(DecodeError::Truncated);
        };
        if crc32c::crc32c(kind_and_payload) != crc {
            return Err(DecodeError::Corrupt("checksum mismatch".into()));
        }
        Ok((decode_kind_and_payload(kind_and_payload)?, V1_HEADER_BYTES + len))
    }
}

fn decode_kind_and_payload(bytes: &[u8]) -> Result<Record, DecodeError> {
    let seq = || -> Result<u64, DecodeError> {
        bytes
            .get(1..9)
            .map(|s| u64::from_le_bytes(s.try_into().expect("8 bytes")))
            .ok_or_else(|| DecodeError::Corrupt("record too short for its kind".into()))
    };
    Ok(match bytes[0] {
        KIND_ACCEPT => {
            let packet: LogPacket = serde_json::from_slice(bytes.get(9..).unwrap_or_default())
                .map_err(|e| DecodeError::Unreadable(format!("accept record holds no packet: {e}")))?;
            Record::Accept {
                seq: seq()?,
                packet: Arc::new(EncodedPacket::new(&packet)),
                retries: packet.retry_count,
            }
        }
        KIND_RETRY => Record::Retry {
            seq: seq()?,
            retries: bytes
                .get(9..13)
                .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
                .ok_or_else(|| DecodeError::Corrupt("retry record too short".into()))?,
        },
        KIND_END => Record::End { seq: seq()? },
        kind => return Err(DecodeError::Corrupt(format!("unknown record kind {kind}"))),
    })
}

/// A commit group's header, its checksum verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupHeader {
    /// Bytes of the body that follows.
    pub len: u64,
    /// Bytes of the segment durable when the group was written.
    pub synced: u64,
    pub body_crc: u32,
}

impl GroupHeader {
    /// The header of a group whose body is `body`.
    pub fn for_body(body: &[u8], synced: u64) -> GroupHeader {
        GroupHeader {
            len: body.len() as u64,
            synced,
            body_crc: crc32c::crc32c(body),
        }
    }

    pub fn encode(&self) -> [u8; GROUP_HEADER_BYTES] {
        let mut out = [0; GROUP_HEADER_BYTES];
        out[0..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..16].copy_from_slice(&self.synced.to_le_bytes());
        out[16..20].copy_from_slice(&self.body_crc.to_le_bytes());
        let head_crc = crc32c::crc32c(&out[0..20]);
        out[20..24].copy_from_slice(&head_crc.to_le_bytes());
        out
    }

    /// The header at the front of `bytes`, if its checksum holds.
    pub fn decode(bytes: &[u8]) -> Option<GroupHeader> {
        let header = bytes.get(..GROUP_HEADER_BYTES)?;
        let field = |range: std::ops::Range<usize>| &header[range];
        let head_crc = u32::from_le_bytes(field(20..24).try_into().expect("4 bytes"));
        if crc32c::crc32c(field(0..20)) != head_crc {
            return None;
        }
        Some(GroupHeader {
            len: u64::from_le_bytes(field(0..8).try_into().expect("8 bytes")),
            synced: u64::from_le_bytes(field(8..16).try_into().expect("8 bytes")),
            body_crc: u32::from_le_bytes(field(16..20).try_into().expect("4 bytes")),
        })
    }
}

/// A verified group header and its body, or why the group at the front
/// of `bytes` is damaged.
pub fn decode_group(bytes: &[u8]) -> Result<(GroupHeader, &[u8]), String> {
    if bytes.len() < GROUP_HEADER_BYTES {
        return Err(format!(
            "the segment ends inside a commit group's header ({} of {GROUP_HEADER_BYTES} bytes)",
            bytes.len()
        ));
    }
    let header = GroupHeader::decode(bytes).ok_or("commit group header checksum mismatch")?;
    let body = usize::try_from(header.len)
        .ok()
        .and_then(|len| bytes.get(GROUP_HEADER_BYTES..GROUP_HEADER_BYTES.checked_add(len)?))
        .ok_or_else(|| {
            format!(
                "the segment ends inside a commit group of {} bytes ({} there)",
                header.len,
                bytes.len() - GROUP_HEADER_BYTES
            )
        })?;
    if crc32c::crc32c(body) != header.body_crc {
        return Err("commit group checksum mismatch".into());
    }
    Ok((header, body))
}

/// Every record of a verified group's body, in order; a body that does not
/// decode whole is unreadable (its checksum held, so it is no torn write).
pub fn decode_body(mut body: &[u8]) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    while !body.is_empty() {
        let (record, used) = Record::decode(body).map_err(|e| match e {
            DecodeError::Truncated => "a commit group ends inside a record".to_string(),
            DecodeError::Corrupt(reason) | DecodeError::Unreadable(reason) => reason,
        })?;
        records.push(record);
        body = &body[used..];
    }
    Ok(records)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::{Level, LogMessage};

    pub(crate) fn packet(id: &str) -> Arc<EncodedPacket> {
        Arc::new(EncodedPacket::new(&LogPacket {
            id: id.into(),
            messages: vec![LogMessage {
                level: Level::Info,
                message: "m".into(),
                source: "s".into(),
                timestamp: chrono::Utc::now(),
                metadata: None,
            }],
            retry_count: 0,
        }))
    }

    /// The bytes of a version 1 record, laid out as version 1 wrote them.
    pub(crate) fn v1_bytes(record: &Record) -> Vec<u8> {
        let mut kind_and_payload = Vec::new();
        record.encode_kind_and_payload(&mut kind_and_payload);
        let mut out = Vec::new();
        out.extend_from_slice(&(kind_and_payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(&kind_and_payload).to_le_bytes());
        out.extend_from_slice(&kind_and_payload);
        out
    }

    fn samples() -> [Record; 3] {
        [
            Record::Accept {
                seq: 7,
                packet: packet("a"),
                retries: u32::MAX,
            },
            Record::Retry { seq: 7, retries: 2 },
            Record::End { seq: 7 },
        ]
    }

    #[test]
    fn records_round_trip_in_both_versions() {
        let records = samples();
        let mut v2 = Vec::new();
        let mut v1 = Vec::new();
        for r in &records {
            r.encode(&mut v2);
            v1.extend(v1_bytes(r));
        }
        let (mut at2, mut at1) = (0, 0);
        for expected in &records {
            let (record, used) = Record::decode(&v2[at2..]).unwrap();
            assert_eq!(&record, expected);
            assert!(used <= expected.max_encoded_bytes(), "{expected:?}: {used} bytes");
            at2 += used;
            let (record, used) = Record::decode_v1(&v1[at1..]).unwrap();
            assert_eq!(&record, expected);
            at1 += used;
        }
        assert_eq!(Record::decode(&v2[..5]), Err(DecodeError::Truncated));
        assert_eq!(Record::decode_v1(&v1[..5]), Err(DecodeError::Truncated));
        let mut flipped = v1.clone();
        flipped[12] ^= 0xff;
        assert!(matches!(
            Record::decode_v1(&flipped),
            Err(DecodeError::Corrupt(_))
        ));
    }

    #[test]
    fn a_group_checks_every_length_it_holds() {
        let records = samples();
        let mut body = Vec::new();
        for r in &records {
            r.encode(&mut body);
        }
        let header = GroupHeader::for_body(&body, 8);
        let mut group = header.encode().to_vec();
        group.extend_from_slice(&body);
        let (read, read_body) = decode_group(&group).unwrap();
        assert_eq!((read, read_body), (header, &body[..]));
        assert_eq!(decode_body(read_body).unwrap(), records);

        // The group's own length, and a record's length inside it.
        for at in [0, GROUP_HEADER_BYTES + 1] {
            let mut damaged = group.clone();
            damaged[at] ^= 0x40;
            let error = decode_group(&damaged).unwrap_err();
            assert!(error.contains("checksum mismatch"), "byte {at}: {error}");
        }
        assert!(decode_group(&group[..group.len() - 1])
            .unwrap_err()
            .contains("ends inside a commit group"));
        assert!(decode_group(&group[..10]).unwrap_err().contains("header"));
        assert_eq!(
            GroupHeader::decode(&[0; GROUP_HEADER_BYTES]),
            None,
            "zeros are no header"
        );
    }

    #[test]
    fn a_version_1_length_cannot_look_like_the_magic() {
        let as_length = u32::from_le_bytes(SEGMENT_MAGIC[0..4].try_into().unwrap()) as usize;
        assert!(as_length > MAX_RECORD_BYTES);
    }
}
