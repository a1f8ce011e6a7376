//! Handoff: a replica stopped for good gives the packets it still holds to
//! a peer, so that none stays on a volume no pod reads.
//!
//! ```text
//! leaving replica                                   peer
//! SIGTERM ─► drain ─► for good? (decide) ─► batches ─POST /internal/v1/handoff─► known (origin, seq)? skip
//!                                              │                                 else admit: Accept records
//!                                              │                                 durable (fsync), then route
//!                                              ◄──────────── 200 {adopted, duplicates} ┘
//!                                  End records durable, packets out of the registry
//! ```
//!
//! - A packet travels as the checkpoint saves it (`{"seq", "id",
//!   "messages", "retry_count"}`): its id and its retries are kept; `seq`
//!   is its place at the origin, which with the origin's name makes the
//!   key a peer recognises a packet sent again by (a resent batch is not
//!   taken twice while that peer runs).
//! - The leaving replica ends a batch locally only after the peer has
//!   answered, so a crash at any point loses nothing: what was not ended
//!   is still in its log (at least once).
//! - What no peer takes before `handoff.timeout` stays in the log and the
//!   checkpoint, said in the log, the metric and (in Kubernetes) an Event.
//!
//! [`receive`] is the peer's side (the endpoint's ledger), [`leave`] the
//! decision at a stop, [`send`] the batches and peers of the leaving side, [`orphan`] the command that
//! hands a former replica's data directory to a running distributor, and
//! [`wire`] what travels. Whether a stop is for good, and where the peers
//! are in Kubernetes, is `crate::k8s::handoff`.

pub(crate) mod leave;
mod orphan;
pub(crate) mod receive;
pub(crate) mod send;
pub(crate) mod wire;

pub use orphan::{adopt, Orphan};
pub use send::Report;

/// The peer's endpoint.
pub(crate) const HANDOFF_PATH: &str = "/internal/v1/handoff";
