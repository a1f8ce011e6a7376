//! The prober: probes each analyzer's health endpoint when its interval is
//! due, feeds the verdicts to its [`Health`](super::health::Health), and
//! rebuilds the rotation when one changed. A passive analyzer is never
//! probed: the prober brings it back once its cool-down has passed.

use super::fleet::Analyzer;
use super::Dispatcher;
use crate::transport::ExchangeError;
use std::sync::Arc;
use std::time::Duration;

/// Probes every analyzer now and then every `interval`, until the task is
/// dropped.
pub(crate) async fn run_prober(dispatcher: Arc<Dispatcher>) {
    /// Analyzers added meanwhile are seen at least this often.
    const LOOK_AGAIN: Duration = Duration::from_secs(1);
    loop {
        let now = std::time::Instant::now();
        let analyzers = dispatcher.fleet().all();
        let (passive, active): (Vec<_>, Vec<_>) = analyzers.iter().partition(|a| a.health.is_passive());
        let mut cooled_down = false;
        for analyzer in passive {
            if analyzer.health.end_cooldown(now) {
                tracing::info!(analyzer = %analyzer.id, "passive analyzer back in rotation after its cool-down");
                cooled_down = true;
            }
        }
        if cooled_down {
            dispatcher.rotation_changed();
        }
        let due: Vec<_> = active
            .into_iter()
            .filter(|a| a.next_probe() <= now)
            .cloned()
            .collect();
        for analyzer in &due {
            analyzer.probed(now);
        }
        probe(&dispatcher, &due).await;
        let next = analyzers
            .iter()
            .map(|a| match a.health.is_passive() {
                true => a.health.cooldown_ends().unwrap_or(now + LOOK_AGAIN),
                false => a.next_probe(),
            })
            .min()
            .unwrap_or(now + LOOK_AGAIN)
            .min(std::time::Instant::now() + LOOK_AGAIN);
        tokio::time::sleep_until(next.into()).await;
    }
}

/// Probes `analyzers` at once, each bounded by its timeout; rebuilds the
/// rotation when any verdict changed.
pub(crate) async fn probe(dispatcher: &Dispatcher, analyzers: &[Arc<Analyzer>]) {
    let probes = analyzers.iter().map(|analyzer| async move {
        let timeout = analyzer.probe_timeout;
        let result = match tokio::time::timeout(timeout, analyzer.transport.probe()).await {
            Ok(result) => result,
            Err(_) => Err(ExchangeError::NoAnswer(timeout).into()),
        };
        let changed = analyzer.health.record_probe(result.map_err(|e| e.to_string()));
        if changed {
            let now = analyzer.health.snapshot();
            if now.healthy {
                tracing::info!(analyzer = %analyzer.id, reason = ?now.reason, "analyzer back in rotation");
            } else {
                tracing::warn!(analyzer = %analyzer.id, reason = ?now.reason, detail = ?now.detail, "analyzer out of rotation");
            }
        }
        changed
    });
    let changes = futures_util::future::join_all(probes).await;
    if changes.into_iter().any(|changed| changed) {
        dispatcher.rotation_changed();
    }
}
