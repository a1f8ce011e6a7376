//! `state.json.gz`: a gzip snapshot of what is in flight and of the
//! counters, written every `checkpoint.interval` and at shutdown, read once
//! at start-up.
//!
//! ```text
//! gzip( {"version":1, "saved_at":"...", "next_seq":N, "wal_segment":S,
//!        "counters":{...}, "in_flight":[{"seq":n, ...packet}, ...]} )
//! ```
//!
//! Invariants:
//! - It is the write-ahead log's compaction point: start-up replays the log
//!   from segment `wal_segment` on top of it, and older segments are deleted
//!   once it is written. `seq` ties each packet to its log records.
//! - The file is replaced atomically (temp file, fsync, rename, fsync of
//!   the directory): a crash leaves the previous checkpoint or the new one.
//! - Each in-flight packet carries its `retry_count`, so a restart neither
//!   forgets nor repeats the retries already spent.
//! - A version this build does not know stops start-up rather than being
//!   misread.

use super::atomic_file;
use crate::model::{EncodedPacket, LogPacket};
use chrono::{DateTime, Utc};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

pub(crate) const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub saved_at: DateTime<Utc>,
    /// The seq the next accepted packet takes.
    #[serde(default)]
    pub next_seq: u64,
    /// The first write-ahead log segment not covered by this checkpoint.
    #[serde(default)]
    pub wal_segment: u64,
    pub counters: Counters,
    pub in_flight: Vec<SavedPacket>,
}

/// Where recovery starts: the first log segment to replay, the packets in
/// flight at the checkpoint by seq, and the seq the next packet takes (all
/// from the beginning without a checkpoint).
pub(crate) fn recovery_start(checkpoint: Option<Checkpoint>) -> (u64, BTreeMap<u64, super::Unfinished>, u64) {
    match checkpoint {
        Some(saved) => {
            let in_flight = saved
                .in_flight
                .into_iter()
                .map(|saved| {
                    let unfinished = super::Unfinished {
                        packet: saved.packet,
                        retries: saved.retries,
                    };
                    (saved.seq, unfinished)
                })
                .collect();
            (saved.wal_segment, in_flight, saved.next_seq)
        }
        None => (0, BTreeMap::new(), 0),
    }
}

/// An in-flight packet and its place in the write-ahead log, saved as
/// `{"seq":n,"id":…,"messages":[…],"retry_count":r}`: the packet's own
/// encoded text, not encoded again.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedPacket {
    pub seq: u64,
    pub packet: Arc<EncodedPacket>,
    pub retries: u32,
}

impl Serialize for SavedPacket {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut json = Vec::with_capacity(self.packet.json_bytes() + 32);
        write!(json, "{{\"seq\":{},", self.seq).map_err(S::Error::custom)?;
        self.packet.write_fields(self.retries, &mut json);
        json.push(b'}');
        let text = String::from_utf8(json).map_err(S::Error::custom)?;
        RawValue::from_string(text)
            .map_err(S::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SavedPacket {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Saved {
            seq: u64,
            #[serde(flatten)]
            packet: LogPacket,
        }
        let saved = Saved::deserialize(deserializer)?;
        Ok(SavedPacket {
            seq: saved.seq,
            retries: saved.packet.retry_count,
            packet: Arc::new(EncodedPacket::new(&saved.packet)),
        })
    }
}

/// Lifetime counters, carried across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub packets_received: u64,
    pub messages_received: u64,
    pub packets_retried: u64,
    pub packets_dead_lettered: u64,
    pub analyzers: BTreeMap<String, AnalyzerCounters>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalyzerCounters {
    pub routed: u64,
    pub messages_routed: u64,
    pub delivered: u64,
    pub errors: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {path}: {source}")]
    Unreadable { path: String, source: io::Error },
    #[error("checkpoint {path} is damaged: {reason}; move it aside to start without it")]
    Damaged { path: String, reason: String },
    #[error("checkpoint {path} has version {found}; this build reads version {VERSION}")]
    UnknownVersion { path: String, found: u32 },
}

impl Checkpoint {
    /// Writes the checkpoint atomically.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        let json = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut gzip = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::fast());
        gzip.write_all(&json)?;
        atomic_file::write(path, &gzip.finish()?)
    }

    /// Reads the checkpoint, or `None` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
        let shown = path.display().to_string();
        let file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CheckpointError::Unreadable { path: shown, source }),
        };
        let mut json = Vec::new();
        GzDecoder::new(file)
            .read_to_end(&mut json)
            .map_err(|e| CheckpointError::Damaged {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u32,
        }
        let version = serde_json::from_slice::<VersionOnly>(&json)
            .map_err(|e| CheckpointError::Damaged {
                path: shown.clone(),
                reason: e.to_string(),
            })?
            .version;
        if version != VERSION {
            return Err(CheckpointError::UnknownVersion {
                path: shown,
                found: version,
            });
        }
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| CheckpointError::Damaged {
                path: shown,
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, LogMessage};

    fn checkpoint() -> Checkpoint {
        let mut counters = Counters {
            packets_received: 1250,
            ..Counters::default()
        };
        counters.analyzers.insert(
            "analyzer-a1".into(),
            AnalyzerCounters {
                routed: 520,
                messages_routed: 600,
                delivered: 508,
                errors: 12,
            },
        );
        Checkpoint {
            version: VERSION,
            saved_at: Utc::now(),
            next_seq: 8,
            wal_segment: 3,
            counters,
            in_flight: vec![SavedPacket {
                seq: 7,
                retries: 2,
                packet: Arc::new(EncodedPacket::new(&LogPacket {
                    id: "p1".into(),
                    messages: vec![LogMessage {
                        level: Level::Info,
                        message: "m".into(),
                        source: "s".into(),
                        timestamp: Utc::now(),
                        metadata: None,
                    }],
                    retry_count: 2,
                })),
            }],
        }
    }

    #[test]
    fn a_saved_checkpoint_loads_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json.gz");
        assert!(Checkpoint::load(&path).unwrap().is_none());
        let saved = checkpoint();
        saved.save(&path).unwrap();
        assert_eq!(Checkpoint::load(&path).unwrap(), Some(saved));
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(&raw[..2], &[0x1f, 0x8b], "gzip magic");
    }

    #[test]
    fn damage_and_unknown_versions_are_reported_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json.gz");
        std::fs::write(&path, b"not gzip").unwrap();
        assert!(matches!(
            Checkpoint::load(&path),
            Err(CheckpointError::Damaged { .. })
        ));
        let mut future = checkpoint();
        future.version = 99;
        future.save(&path).unwrap();
        assert!(matches!(
            Checkpoint::load(&path),
            Err(CheckpointError::UnknownVersion { found: 99, .. })
        ));
    }
}
