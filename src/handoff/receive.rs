//! The peer's side: packets handed over are taken in durably, each once.
//!
//! A packet is known by its origin, its seq there and its id. The ledger
//! of known packets is in memory and kept for [`REMEMBER`]: a leaving
//! replica resends within its `handoff.timeout`, so a resend to a peer
//! that still runs is recognised; a peer that restarts between making a
//! batch durable and answering forgets it, and the resend is taken again
//! (at least once).

use super::wire::{HandoffAnswer, HandoffRequest};
use crate::dispatch::{AdmitError, Dispatcher};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a packet taken in is recognised when it comes again.
pub(crate) const REMEMBER: Duration = Duration::from_secs(3600);

/// A packet as its origin names it.
type Key = (String, u64, String);

/// The packets taken in lately, and when.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Held for a whole handoff request, so that two sends of one batch
    /// cannot both find it new.
    known: tokio::sync::Mutex<HashMap<Key, Instant>>,
}

impl Ledger {
    /// Takes the request's packets in (all new ones or none), durably, and
    /// records them. It runs on a task of its own: a sender that goes away
    /// mid-request does not leave packets taken in but unrecorded.
    pub(crate) async fn adopt(
        self: &Arc<Self>,
        dispatcher: &Arc<Dispatcher>,
        request: HandoffRequest,
    ) -> Result<HandoffAnswer, AdmitError> {
        let ledger = Arc::clone(self);
        let dispatcher = Arc::clone(dispatcher);
        tokio::spawn(async move { ledger.adopt_alone(&dispatcher, request).await })
            .await
            .unwrap_or_else(|e| {
                Err(AdmitError::StorageUnavailable(format!(
                    "the handoff task failed: {e}"
                )))
            })
    }

    async fn adopt_alone(
        &self,
        dispatcher: &Arc<Dispatcher>,
        request: HandoffRequest,
    ) -> Result<HandoffAnswer, AdmitError> {
        let mut known = self.known.lock().await;
        known.retain(|_, since| since.elapsed() < REMEMBER);
        let total = request.packets.len();
        let mut fresh_keys = Vec::new();
        let mut fresh = Vec::new();
        let mut in_request = HashSet::new();
        for saved in request.packets {
            let key = (request.origin.clone(), saved.seq, saved.packet.id().to_string());
            if known.contains_key(&key) || !in_request.insert(key.clone()) {
                continue;
            }
            fresh_keys.push(key);
            fresh.push((Arc::unwrap_or_clone(saved.packet), saved.retries));
        }
        let adopted = fresh.len();
        if !fresh.is_empty() {
            dispatcher
                .admit_with_retries(fresh, dispatcher.room_deadline())
                .await?;
        }
        let now = Instant::now();
        known.extend(fresh_keys.into_iter().map(|key| (key, now)));
        let answer = HandoffAnswer {
            adopted,
            duplicates: total - adopted,
        };
        let metrics = dispatcher.metrics();
        metrics
            .handoff_packets
            .with_label_values(&["adopted"])
            .inc_by(adopted as u64);
        metrics
            .handoff_packets
            .with_label_values(&["duplicate"])
            .inc_by(answer.duplicates as u64);
        tracing::info!(origin = %request.origin, adopted, duplicates = answer.duplicates, "took in packets handed over by a peer");
        Ok(answer)
    }
}
