//! Replay: dead letters taken back for delivery, one replay at a time,
//! out of the file only once their packets are durable in the log again.

use super::admission::AdmitError;
use super::Dispatcher;
use crate::model::EncodedPacket;
use crate::storage::dead_letter::{EntryKey, Selection};
use std::collections::HashSet;
use std::sync::Arc;

/// Why a replay of dead letters took nothing back, or did not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Refused(#[from] AdmitError),
    #[error(
        "cannot take {matched} or more packets back now (room for {room} more in flight); \
         replay fewer ids or retry shortly"
    )]
    NoRoom { matched: usize, room: usize },
    #[error("cannot read the dead letter: {0}")]
    Read(String),
    /// The packets are in flight again, and still in the file.
    #[error("replayed, but cannot remove them from the dead letter: {0}")]
    Remove(String),
}

/// What a replay took back: the packets' ids, in the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub ids: Vec<String>,
}

impl Dispatcher {
    /// Takes dead letters back for delivery: those of the packets named by
    /// `ids`, or all of them. One step that outlives its caller: it runs on
    /// its own task, one replay at a time, and takes the entries out of the
    /// file only once their packets are durable in the log again (a crash
    /// between the two delivers them and leaves them in the file: at least
    /// once, never lost).
    pub async fn replay(self: &Arc<Self>, ids: Option<HashSet<String>>) -> Result<Replayed, ReplayError> {
        let dispatcher = Arc::clone(self);
        tokio::spawn(async move { dispatcher.replay_alone(ids).await })
            .await
            .unwrap_or_else(|e| Err(ReplayError::Read(format!("the replay task failed: {e}"))))
    }

    async fn replay_alone(self: Arc<Self>, ids: Option<HashSet<String>>) -> Result<Replayed, ReplayError> {
        let _alone = self.replays.lock().await;
        let room = self.room();
        let file = self.dead_letter.clone();
        let selection = tokio::task::spawn_blocking(move || file.select(ids.as_ref(), room))
            .await
            .map_err(|e| ReplayError::Read(e.to_string()))?
            .map_err(|e| ReplayError::Read(e.to_string()))?;
        let entries = match selection {
            Selection::Chosen(entries) => entries,
            Selection::NoRoom { matched } => {
                return Err(ReplayError::NoRoom {
                    matched,
                    room: room.packets,
                })
            }
        };
        if entries.is_empty() {
            return Ok(Replayed::default());
        }
        let keys: HashSet<EntryKey> = entries.iter().map(|entry| entry.key()).collect();
        let packets = entries
            .iter()
            .map(|entry| EncodedPacket::new(&entry.packet))
            .collect();
        let admitted = self.admit(packets).await?;
        let file = self.dead_letter.clone();
        tokio::task::spawn_blocking(move || file.remove(&keys))
            .await
            .map_err(|e| ReplayError::Remove(e.to_string()))?
            .map_err(|e| ReplayError::Remove(e.to_string()))?;
        Ok(Replayed {
            ids: admitted.ids().map(str::to_owned).collect(),
        })
    }
}
