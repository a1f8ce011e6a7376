//! What the distributor keeps on its data volume: the write-ahead log, the
//! dead letter and the checkpoint. File names are the wire contract of the data directory.

pub(crate) mod atomic_file;
pub(crate) mod checkpoint;
pub(crate) mod dead_letter;
pub mod wal;

pub use checkpoint::{AnalyzerCounters, Checkpoint, CheckpointError, Counters};
pub use dead_letter::{DeadLetter, DeadLetterEntry};

/// A packet not yet delivered nor dead-lettered, as a checkpoint or the
/// write-ahead log gives it back: the packet and the retries it spent.
#[derive(Debug, Clone, PartialEq)]
pub struct Unfinished {
    pub packet: std::sync::Arc<crate::model::EncodedPacket>,
    pub retries: u32,
}

/// The dead-letter file, in the data directory.
pub const DEAD_LETTER_FILE: &str = "failed_packets.json";
/// The gzip checkpoint, in the data directory.
pub const CHECKPOINT_FILE: &str = "state.json.gz";
/// The write-ahead log's segments, in the data directory.
pub const WAL_DIR: &str = "wal";
