//! The stop of a replica: after the drain, whether what is left goes to a
//! peer (`handoff.on_stop`), and the handoff itself.
//!
//! - `auto` with `--source kubernetes`: the StatefulSet says whether the
//!   stop is for good (`crate::k8s::handoff`); a scale-in hands off to the
//!   ready pods of the headless Service (or to `handoff.peers`), a restart
//!   keeps everything on the volume, as does a StatefulSet that cannot be
//!   read or was deleted (then every replica goes: the volumes are adopted
//!   later). Without Kubernetes, `auto` never hands off.
//! - `always`: every stop hands off, to `handoff.peers` (or, in
//!   Kubernetes, to the headless Service's ready pods).
//! - `never`: nothing moves.

use super::send::{Holder, Peers, Sender, REQUEST_OVERHEAD_BYTES};
use crate::config::{HandoffOnStop, Settings, Source, TlsOptions};
use crate::dispatch::Dispatcher;
use crate::k8s::handoff::{Membership, Place};
use std::sync::Arc;
use std::time::Duration;

/// What a stop does with what the drain left.
pub(crate) struct OnStop {
    mode: HandoffOnStop,
    membership: Option<Membership>,
    fixed: Vec<String>,
    identity: String,
    token: Option<String>,
    tls: Option<TlsOptions>,
    /// How the Service's peers are reached: `https` when this replica
    /// serves HTTPS (they do too) or `handoff.tls` is set.
    scheme: &'static str,
    batch_packets: usize,
    batch_bytes: usize,
    timeout: Duration,
}

impl OnStop {
    /// Prepared at start-up (the Kubernetes client then, not at the stop);
    /// `None` when no stop hands off.
    pub(crate) async fn prepare(settings: &Settings, token: Option<String>) -> Option<OnStop> {
        let config = &settings.handoff;
        let kubernetes = settings.source == Source::Kubernetes;
        let mode = match (config.on_stop, kubernetes) {
            (HandoffOnStop::Never, _) | (HandoffOnStop::Auto, false) => return None,
            (mode, _) => mode,
        };
        let identity = settings.kubernetes.identity.clone();
        let membership = if kubernetes {
            match Membership::connect(
                settings.kubernetes.namespace.clone(),
                identity.clone(),
                &config.statefulset,
            )
            .await
            {
                Ok(membership) => Some(membership),
                Err(e) if mode == HandoffOnStop::Auto => {
                    tracing::warn!(error = %e, "handoff at scale-in is off: this replica cannot tell a scale-in from a restart");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "handoff peers come from handoff.peers only");
                    None
                }
            }
        } else {
            None
        };
        if membership.is_none() && config.peers.is_empty() {
            tracing::warn!("handoff.on_stop is always but there is no handoff.peers and no Kubernetes to find peers in; nothing will be handed off");
            return None;
        }
        Some(OnStop {
            mode,
            membership,
            fixed: config.peers.clone(),
            identity,
            token,
            tls: config.tls.clone(),
            scheme: if config.tls.is_some() || settings.tls.cert.is_some() {
                "https"
            } else {
                "http"
            },
            batch_packets: config.batch_packets,
            // A request stays within the peers' limits.max_body_bytes.
            batch_bytes: config
                .batch_bytes
                .min(
                    settings
                        .limits
                        .max_body_bytes
                        .saturating_sub(REQUEST_OVERHEAD_BYTES),
                )
                .max(1),
            timeout: config.timeout,
        })
    }

    /// Hands what `dispatcher` still holds to peers when the stop is for
    /// good; says what it did, loudly when packets stay.
    pub(crate) async fn run(&self, dispatcher: &Arc<Dispatcher>) {
        let held = dispatcher.held_packets();
        if held.is_empty() {
            return;
        }
        let Some(peers) = self.peers_if_leaving(held.len()).await else {
            return;
        };
        let packets = held.len();
        tracing::info!(packets, "stopping for good: handing what is left to peers");
        let sender = Sender {
            origin: self.identity.clone(),
            peers,
            token: self.token.clone(),
            tls: self.tls.clone(),
            batch_packets: self.batch_packets,
            batch_bytes: self.batch_bytes,
            metrics: dispatcher.metrics().clone(),
        };
        let deadline = tokio::time::Instant::now() + self.timeout;
        let report = sender
            .hand_off(held, &Holder::Dispatcher(dispatcher.clone()), deadline)
            .await;
        let (handed, kept, why) = match report {
            Ok(report) if report.kept == 0 => {
                tracing::info!(
                    handed = report.handed,
                    duplicates = report.duplicates,
                    "handed every packet to peers"
                );
                return;
            }
            Ok(report) => (
                report.handed,
                report.kept,
                report.last_failure.unwrap_or_else(|| "no peer took them".into()),
            ),
            Err(e) => {
                let kept = dispatcher.held_packets().len();
                (packets - kept, kept, e.to_string())
            }
        };
        let note = format!(
            "{kept} packets stay on this replica's volume: {why}; {handed} were handed to peers. \
             Adopt the volume with `logs-distributor handoff --data-dir <dir> --to <peer>`"
        );
        tracing::error!(handed, kept, reason = %why, "{note}");
        if let Some(membership) = &self.membership {
            membership.warn_kept(note).await;
        }
    }

    /// The peers to hand to when this stop is for good; `None` (said why)
    /// when it is not.
    async fn peers_if_leaving(&self, packets: usize) -> Option<Peers> {
        let fixed = (!self.fixed.is_empty()).then(|| Peers::fixed(&self.fixed));
        let Some(membership) = &self.membership else {
            return fixed;
        };
        let place = match membership.place().await {
            Ok(place) => place,
            Err(e) => {
                tracing::warn!(error = %e, packets, "cannot tell a scale-in from a restart: keeping the packets on the volume");
                return match self.mode {
                    HandoffOnStop::Always => fixed,
                    _ => None,
                };
            }
        };
        let service = match &place {
            Place::Member { service, .. } => Some(service.clone()).filter(|s| !s.is_empty()),
            Place::Deleted => None,
        };
        if self.mode == HandoffOnStop::Auto && !place.scaled_in() {
            tracing::info!(
                ?place,
                packets,
                "a restart, not a scale-in: the packets stay on the volume for the next start"
            );
            return None;
        }
        if let Some(fixed) = fixed {
            return Some(fixed);
        }
        match service {
            Some(service) => Some(Peers::Service {
                membership: membership.clone(),
                service,
                scheme: self.scheme,
            }),
            None => {
                let note = format!(
                    "{packets} packets stay on this replica's volume: StatefulSet {} is gone or names no Service, so there is no peer to hand them to. \
                     Adopt the volume with `logs-distributor handoff --data-dir <dir> --to <peer>`",
                    membership.statefulset()
                );
                tracing::error!(packets, "{note}");
                membership.warn_kept(note).await;
                None
            }
        }
    }
}
