//! Checkpoints: the registry and the lifetime counters saved as the
//! write-ahead log's compaction point, and the counters carried over from
//! one at start-up.

use super::Dispatcher;
use crate::storage::{AnalyzerCounters, Checkpoint, Counters};
use chrono::Utc;
use std::sync::atomic::Ordering;

impl Dispatcher {
    /// Writes a checkpoint to `path` and deletes the log segments it
    /// covers; answers how many packets were in flight.
    ///
    /// Checkpoints happen one at a time, each from its snapshot to its
    /// deletions: one taken later can neither be overwritten by an older
    /// one nor lose the segments the older one still needs. The turn is
    /// held by the blocking save itself, so a caller that stops waiting
    /// (its task aborted) does not let the next checkpoint start early.
    pub async fn checkpoint_to(&self, path: &std::path::Path) -> anyhow::Result<usize> {
        let turn = self.checkpoint_turn.clone().lock_owned().await;
        // Rotate first: every record in the older segments is then already
        // reflected in the registry snapshot taken below.
        let (segment, checkpoint) = {
            let _alone = self.admission.write().await;
            let segment = self.wal.rotate().await?;
            (segment, self.snapshot(segment))
        };
        let packets = checkpoint.in_flight.len();
        let path = path.to_path_buf();
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            checkpoint.save(&path)?;
            wal.delete_before(segment)
        })
        .await??;
        Ok(packets)
    }

    /// The state a restart needs: in-flight packets and lifetime counters,
    /// and the first log segment to replay on top of them.
    fn snapshot(&self, wal_segment: u64) -> Checkpoint {
        let in_flight = self.held_packets();
        let m = &self.metrics;
        let analyzers = self
            .fleet
            .all()
            .iter()
            .map(|a| {
                let counters = AnalyzerCounters {
                    routed: a.metrics.routed.get(),
                    messages_routed: a.metrics.messages_routed.get(),
                    delivered: a.metrics.delivered.get(),
                    errors: a.metrics.errors.get(),
                };
                (a.id.clone(), counters)
            })
            .collect();
        Checkpoint {
            version: crate::storage::checkpoint::VERSION,
            saved_at: Utc::now(),
            next_seq: self.next_seq.load(Ordering::Acquire),
            wal_segment,
            counters: Counters {
                packets_received: m.packets_received.get(),
                messages_received: m.messages_received.get(),
                packets_retried: m.packets_retried.get(),
                packets_dead_lettered: m.packets_dead_lettered.get(),
                analyzers,
            },
            in_flight,
        }
    }

    /// Carries counters over from a checkpoint (before any traffic).
    pub fn restore_counters(&self, counters: &Counters) {
        let m = &self.metrics;
        m.packets_received.inc_by(counters.packets_received);
        m.messages_received.inc_by(counters.messages_received);
        m.packets_retried.inc_by(counters.packets_retried);
        m.packets_dead_lettered.inc_by(counters.packets_dead_lettered);
        for (id, saved) in &counters.analyzers {
            if let Some(a) = self.fleet.get(id) {
                a.metrics.routed.inc_by(saved.routed);
                a.metrics.messages_routed.inc_by(saved.messages_routed);
                a.metrics.delivered.inc_by(saved.delivered);
                a.metrics.errors.inc_by(saved.errors);
            }
        }
    }
}
