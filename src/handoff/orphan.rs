//! The adopt command: a former replica's data directory (a volume no pod
//! reads) handed to a running distributor through the same endpoint and
//! code as a scale-in.
//!
//! It replays the directory's checkpoint and log as a start would, hands
//! every unfinished packet over, and appends the End record of each batch
//! a peer took to that log, durably: run again (after a crash, or with the
//! peer down meanwhile), it sends only what no peer has. The dead letter
//! (`failed_packets.json`) is left where it is. No distributor may run on
//! the directory meanwhile.

use super::send::{Holder, Peers, Report, Sender};
use crate::metrics::Metrics;
use crate::storage::checkpoint::{self, SavedPacket};
use crate::storage::wal::{self, FsyncMode, RecoverMode, Wal, WalOptions};
use crate::storage::{Checkpoint, CHECKPOINT_FILE, WAL_DIR};
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;

/// What to adopt, and where to.
#[derive(Debug, Clone)]
pub struct Orphan {
    pub data_dir: PathBuf,
    /// Base URLs of running distributors.
    pub to: Vec<String>,
    /// The name peers know these packets by (default: the directory's path).
    pub origin: Option<String>,
    pub token: Option<String>,
    /// How `https://` peers are trusted (none: the system's roots).
    pub tls: Option<crate::transport::tls::TlsOptions>,
    pub timeout: Duration,
    pub batch_packets: usize,
    pub batch_bytes: usize,
    pub recover: RecoverMode,
}

/// Hands what `orphan.data_dir` holds to `orphan.to`.
pub async fn adopt(orphan: &Orphan) -> anyhow::Result<Report> {
    let dir = &orphan.data_dir;
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    let checkpoint = Checkpoint::load(&dir.join(CHECKPOINT_FILE))?;
    let wal_dir = dir.join(WAL_DIR);
    let tail = wal::newest_segment(&wal_dir)
        .with_context(|| format!("cannot read write-ahead log directory {}", wal_dir.display()))?;
    let (from, state, next_seq) = checkpoint::recovery_start(checkpoint);
    let (recover_dir, mode) = (wal_dir.clone(), orphan.recover);
    let recovered =
        tokio::task::spawn_blocking(move || wal::recover(&recover_dir, from, tail, state, next_seq, mode))
            .await
            .context("write-ahead log recovery panicked")??;
    let held: Vec<SavedPacket> = recovered
        .in_flight
        .into_iter()
        .map(|(seq, unfinished)| SavedPacket {
            seq,
            packet: unfinished.packet,
            retries: unfinished.retries,
        })
        .collect();
    tracing::info!(data_dir = %dir.display(), packets = held.len(), "read the orphaned data directory");
    if held.is_empty() {
        return Ok(Report::default());
    }
    let log = Wal::open(
        &wal_dir,
        tail,
        WalOptions {
            fsync: FsyncMode::Always,
            segment_bytes: 64 * 1024 * 1024,
            commit_delay: Duration::ZERO,
            fsync_duration: None,
        },
    )
    .with_context(|| format!("cannot open write-ahead log in {}", wal_dir.display()))?;
    let origin = match &orphan.origin {
        Some(origin) => origin.clone(),
        None => std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.clone())
            .display()
            .to_string(),
    };
    let sender = Sender {
        origin,
        peers: Peers::fixed(&orphan.to),
        token: orphan.token.clone(),
        tls: orphan.tls.clone(),
        batch_packets: orphan.batch_packets,
        batch_bytes: orphan.batch_bytes,
        metrics: Metrics::new(),
    };
    let deadline = tokio::time::Instant::now() + orphan.timeout;
    Ok(sender.hand_off(held, &Holder::Log(log), deadline).await?)
}
