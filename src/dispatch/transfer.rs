//! Packets moved to a peer replica (see `crate::handoff`): what this
//! replica holds, and those a peer has made durable taken out for good.
//! Packets a peer hands over come in through `Dispatcher::admit_with_retries`.

use super::Dispatcher;
use crate::storage::checkpoint::SavedPacket;
use crate::storage::wal::{Record, WalError};

impl Dispatcher {
    /// Every packet in flight now, by seq, oldest first, with its retries.
    pub(crate) fn held_packets(&self) -> Vec<SavedPacket> {
        let mut held: Vec<SavedPacket> = self
            .lock_registry()
            .iter()
            .map(|(seq, entry)| SavedPacket {
                seq: *seq,
                packet: entry.packet.clone(),
                retries: entry.retries,
            })
            .collect();
        held.sort_unstable_by_key(|saved| saved.seq);
        held
    }

    /// Ends packets that a peer has made durable: out of the registry, and
    /// their End records durable before this answers (so a crash after it
    /// does not hand them over again). A delivery of one of them still
    /// under way may reach its analyzer too (at least once).
    pub(crate) async fn end_handed_off(&self, seqs: &[u64]) -> Result<(), WalError> {
        self.take_out(seqs);
        let ends: Vec<Record> = seqs.iter().map(|&seq| Record::End { seq }).collect();
        self.wal.append_durable(&ends).await
    }
}
