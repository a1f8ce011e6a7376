//! The leaving side: what is held goes to peers in bounded batches, each
//! ended here only once a peer has answered that it is durable there.
//!
//! Batches go round the peers in turn (a batch starts with the peer after
//! the one that took the previous batch); a peer that refuses or fails is
//! passed over for the next, and when none takes a batch the peers are
//! looked up again after a pause, until the deadline. What is left then
//! stays where it is (the log and the checkpoint).

use super::wire::{HandoffAnswer, HandoffRequest};
use super::HANDOFF_PATH;
use crate::dispatch::Dispatcher;
use crate::k8s::handoff::{Membership, Peer};
use crate::metrics::Metrics;
use crate::storage::checkpoint::SavedPacket;
use crate::storage::wal::{Wal, WalError};
use crate::transport::endpoint::Endpoint;
use crate::transport::format::DeliveryBody;
use crate::transport::pool::{Answered, Origin};
use crate::transport::tls::{ClientTls, TlsOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The wait before the peers are looked up again when none took a batch.
const PAUSE: Duration = Duration::from_millis(500);
/// The longest one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// What a packet adds to a request besides its JSON: `"seq":N,` and a comma.
const PACKET_OVERHEAD_BYTES: usize = 32;
/// What a request adds besides its packets: the braces, `origin` and its name.
pub(crate) const REQUEST_OVERHEAD_BYTES: usize = 1024;

/// Where the peers come from.
#[derive(Clone)]
pub(crate) enum Peers {
    /// A fixed list (`handoff.peers`, or the adopt command's `--to`).
    Fixed(Vec<Peer>),
    /// The ready endpoints of a headless Service, this pod left out.
    /// Reached over `scheme` (`http` or `https`).
    Service {
        membership: Membership,
        service: String,
        scheme: &'static str,
    },
}

impl Peers {
    /// Peers from URLs, each named by its URL.
    pub(crate) fn fixed(urls: &[String]) -> Peers {
        Peers::Fixed(
            urls.iter()
                .map(|url| Peer {
                    name: url.clone(),
                    url: url.trim_end_matches('/').to_string(),
                })
                .collect(),
        )
    }

    async fn list(&self) -> Result<Vec<Peer>, String> {
        match self {
            Peers::Fixed(peers) => Ok(peers.clone()),
            Peers::Service {
                membership,
                service,
                scheme,
            } => membership
                .ready_peers(service, scheme)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}

/// Where the packets are held, and how a handed batch is ended there.
pub(crate) enum Holder {
    /// A running distributor: out of the registry, End records durable.
    Dispatcher(Arc<Dispatcher>),
    /// An orphaned data directory's log, opened for its End records.
    Log(Wal),
}

impl Holder {
    async fn end(&self, seqs: &[u64]) -> Result<(), WalError> {
        match self {
            Holder::Dispatcher(dispatcher) => dispatcher.end_handed_off(seqs).await,
            Holder::Log(wal) => {
                let ends: Vec<_> = seqs
                    .iter()
                    .map(|&seq| crate::storage::wal::Record::End { seq })
                    .collect();
                wal.append_durable(&ends).await
            }
        }
    }
}

/// How to send.
pub(crate) struct Sender {
    /// The name peers know the packets' origin by.
    pub origin: String,
    pub peers: Peers,
    /// The peers' ingestion token, when they have one.
    pub token: Option<String>,
    /// How `https://` peers are trusted (none: the system's roots).
    pub tls: Option<TlsOptions>,
    pub batch_packets: usize,
    pub batch_bytes: usize,
    pub metrics: Metrics,
}

/// What a handoff did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Packets a peer has now (ended here).
    pub handed: usize,
    /// Of those, the ones the peer had already.
    pub duplicates: usize,
    /// Packets still here: no peer took them in time.
    pub kept: usize,
    /// The last reason a peer did not take a batch, if one did not.
    pub last_failure: Option<String>,
}

/// Why a handoff stopped before its deadline.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandoffError {
    /// A peer has the batch, but it could not be ended here: it would be
    /// handed (or delivered) again from here, so the handoff stops.
    #[error("packets handed to {peer} cannot be ended in the local log: {source}")]
    End { peer: String, source: WalError },
}

impl Sender {
    /// Hands `held` over until every packet is with a peer or `deadline`
    /// has passed.
    pub(crate) async fn hand_off(
        &self,
        held: Vec<SavedPacket>,
        holder: &Holder,
        deadline: Instant,
    ) -> Result<Report, HandoffError> {
        let mut report = Report::default();
        let batches = self.batches(held);
        let mut peers: Vec<Peer> = Vec::new();
        let mut turn = 0;
        let mut left: usize = batches.iter().map(Vec::len).sum();
        'batches: for batch in batches {
            let seqs: Vec<u64> = batch.iter().map(|saved| saved.seq).collect();
            let body = serde_json::to_vec(&HandoffRequest {
                origin: self.origin.clone(),
                packets: batch,
            })
            .expect("a handoff request serialises");
            loop {
                if peers.is_empty() {
                    match self.peers.list().await {
                        Ok(found) if !found.is_empty() => peers = found,
                        Ok(_) => report.last_failure = Some("no ready peer".into()),
                        Err(e) => report.last_failure = Some(e),
                    }
                }
                for k in 0..peers.len() {
                    let peer = &peers[(turn + k) % peers.len()];
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        break;
                    }
                    match tokio::time::timeout(remaining.min(REQUEST_TIMEOUT), self.post(peer, &body)).await {
                        Ok(Ok(answer)) if answer.adopted + answer.duplicates == seqs.len() => {
                            holder.end(&seqs).await.map_err(|source| HandoffError::End {
                                peer: peer.name.clone(),
                                source,
                            })?;
                            report.handed += seqs.len();
                            report.duplicates += answer.duplicates;
                            left -= seqs.len();
                            self.metrics
                                .handoff_packets
                                .with_label_values(&["sent"])
                                .inc_by(seqs.len() as u64);
                            tracing::info!(peer = %peer.name, packets = seqs.len(), duplicates = answer.duplicates, left, "handed packets to a peer");
                            turn = (turn + k + 1) % peers.len();
                            continue 'batches;
                        }
                        Ok(Ok(answer)) => {
                            report.last_failure = Some(format!(
                                "{} answered for {} packets of {}",
                                peer.name,
                                answer.adopted + answer.duplicates,
                                seqs.len()
                            ))
                        }
                        Ok(Err(e)) => report.last_failure = Some(format!("{}: {e}", peer.name)),
                        Err(_) => report.last_failure = Some(format!("{}: no answer in time", peer.name)),
                    }
                    tracing::warn!(peer = %peer.name, reason = ?report.last_failure, "a peer did not take a handoff batch; trying the next");
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                if remaining.is_zero() {
                    break 'batches;
                }
                peers.clear();
                tokio::time::sleep(remaining.min(PAUSE)).await;
            }
        }
        report.kept = left;
        if left > 0 {
            self.metrics
                .handoff_packets
                .with_label_values(&["kept"])
                .inc_by(left as u64);
        }
        Ok(report)
    }

    /// `held` cut into requests of at most `batch_packets` packets and
    /// `batch_bytes` bytes (a larger packet goes alone), in seq order.
    fn batches(&self, held: Vec<SavedPacket>) -> Vec<Vec<SavedPacket>> {
        let mut batches: Vec<Vec<SavedPacket>> = Vec::new();
        let mut bytes = 0;
        for saved in held {
            let size = saved.packet.json_bytes() + PACKET_OVERHEAD_BYTES;
            let full = batches
                .last()
                .is_none_or(|last| last.len() >= self.batch_packets || bytes + size > self.batch_bytes);
            if full {
                batches.push(Vec::new());
                bytes = 0;
            }
            bytes += size;
            batches.last_mut().expect("pushed above").push(saved);
        }
        batches
    }

    /// One request to `peer`: its answer when it took the batch, the
    /// reason otherwise.
    async fn post(&self, peer: &Peer, body: &[u8]) -> Result<HandoffAnswer, String> {
        let endpoint = Endpoint::parse(&peer.url)?;
        let tls = if endpoint.is_https() {
            let host = endpoint.host.to_string();
            let options = self.tls.clone().unwrap_or_default();
            Some(ClientTls::new(&options, &host, "handoff peer")?)
        } else {
            None
        };
        let origin = Origin::new(&endpoint, tls);
        let host = endpoint.url.host_str().unwrap_or_default();
        let mut head = http1::request_head("POST", HANDOFF_PATH, &format!("{host}:{}", endpoint.port));
        head.push_str("Content-Type: application/json\r\nConnection: close\r\n");
        if let Some(token) = &self.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        let answer = origin
            .exchange(
                head.as_bytes(),
                DeliveryBody::whole(body.to_vec()),
                Answered::WithBody,
            )
            .await
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&answer.body);
        if answer.status != 200 {
            return Err(format!("HTTP {}: {}", answer.status, text.trim()));
        }
        serde_json::from_slice(&answer.body)
            .map_err(|e| format!("an answer that is not a handoff answer ({e}): {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EncodedPacket, LogPacket};

    fn saved(seq: u64, text_bytes: usize) -> SavedPacket {
        let packet: LogPacket = serde_json::from_value(serde_json::json!({
            "id": format!("p{seq}"),
            "messages": [{"timestamp": "2024-01-01T00:00:00Z", "level": "INFO", "source": "s", "message": "x".repeat(text_bytes)}],
        }))
        .unwrap();
        SavedPacket {
            seq,
            packet: Arc::new(EncodedPacket::new(&packet)),
            retries: 0,
        }
    }

    fn sender(batch_packets: usize, batch_bytes: usize) -> Sender {
        Sender {
            origin: "ld-2".into(),
            peers: Peers::Fixed(Vec::new()),
            token: None,
            tls: None,
            batch_packets,
            batch_bytes,
            metrics: Metrics::new(),
        }
    }

    #[test]
    fn batches_hold_at_most_so_many_packets_and_bytes_and_keep_the_order() {
        let held: Vec<SavedPacket> = (0..7).map(|seq| saved(seq, 10)).collect();
        let batches = sender(3, 1 << 20).batches(held.clone());
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1]);
        let seqs: Vec<u64> = batches.concat().iter().map(|s| s.seq).collect();
        assert_eq!(seqs, (0..7).collect::<Vec<_>>());
        let one = held[0].packet.json_bytes();
        let by_bytes = sender(100, 2 * (one + PACKET_OVERHEAD_BYTES)).batches(held);
        assert!(by_bytes.iter().all(|b| b.len() == 2 || b.len() == 1));
    }

    #[test]
    fn a_packet_larger_than_a_batch_goes_alone() {
        let held = vec![saved(0, 10), saved(1, 5000), saved(2, 10)];
        let batches = sender(100, 1000).batches(held);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 1, 1]);
    }
}
