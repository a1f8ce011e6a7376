//! What travels between a leaving replica and its peer.

use crate::storage::checkpoint::SavedPacket;
use serde::{Deserialize, Serialize};

/// `POST /internal/v1/handoff`'s body.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HandoffRequest {
    /// The replica (or orphaned data directory) the packets come from.
    pub origin: String,
    /// Each as a checkpoint saves it: `{"seq", "id", "messages", "retry_count"}`.
    pub packets: Vec<SavedPacket>,
}

/// Its answer: how many packets are durable here now, and how many of
/// them had come before (and were not taken again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct HandoffAnswer {
    pub adopted: usize,
    pub duplicates: usize,
}
