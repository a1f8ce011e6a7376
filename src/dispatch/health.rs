//! Whether an analyzer is fit for traffic, and why.
//!
//! Three inputs decide it, strongest first:
//! 1. the operator's [`HealthMode`] (`ForceHealthy` / `ForceUnhealthy`);
//! 2. passive ejection: `ejection_threshold` consecutive failed deliveries
//!    take the analyzer out until a probe passes (Envoy's outlier detection);
//! 3. active probes with Kubernetes semantics: `unhealthy_threshold`
//!    consecutive failures take it out, `healthy_threshold` successes bring
//!    it back.
//!
//! A passive analyzer (`health_check.passive`: a receiver with no health
//! endpoint) is never probed; only 2 applies, and it comes back without a
//! probe: when a delivery to it succeeds (one that was under way when it
//! was ejected), or once its cool-down (`interval`) has passed since the
//! ejection. Back after a cool-down, it is on probation: the first
//! delivery that fails ejects it again at once, for another cool-down; the
//! first that succeeds ends the probation, and from then on it takes
//! `ejection_threshold` failures in a row again.
//!
//! [`Health`] records these and answers `is_healthy()` without a lock;
//! every `record_*` call says whether the verdict changed, so the caller
//! rebuilds the routing table only then. The prober
//! ([`crate::dispatch::prober`]) feeds it the probes.

use crate::config::HealthConfig;
use crate::sync::LockUnpoisoned;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Who decides an analyzer's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum HealthMode {
    /// Probes and delivery results decide.
    #[default]
    Auto,
    ForceHealthy,
    ForceUnhealthy,
}

/// Why the verdict is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthReason {
    /// Not probed yet: analyzers start in rotation.
    Starting,
    ProbeSucceeded,
    ProbeFailed,
    /// Too many consecutive delivery failures.
    Ejected,
    ForcedHealthy,
    ForcedUnhealthy,
    /// Passive: in rotation, never probed; failed deliveries eject it.
    Passive,
    /// Passive: back after its cool-down, on probation.
    CooledDown,
    /// Passive: back because a delivery to it succeeded.
    DeliverySucceeded,
}

/// The health of one analyzer at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthSnapshot {
    pub healthy: bool,
    pub mode: HealthMode,
    pub reason: HealthReason,
    /// The last probe's error, if it failed.
    pub detail: Option<String>,
    /// When the verdict last changed.
    pub since: DateTime<Utc>,
    pub last_check: Option<DateTime<Utc>>,
}

/// The thresholds that turn probe and delivery results into a verdict.
#[derive(Debug, Clone, Copy)]
pub struct HealthPolicy {
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub ejection_threshold: u32,
    /// `Some(cool-down)`: passive, never probed; an ejection lasts this long.
    pub passive_cooldown: Option<Duration>,
}

impl From<&HealthConfig> for HealthPolicy {
    fn from(c: &HealthConfig) -> Self {
        HealthPolicy {
            unhealthy_threshold: c.unhealthy_threshold.max(1),
            healthy_threshold: c.healthy_threshold.max(1),
            ejection_threshold: c.ejection_threshold,
            passive_cooldown: None,
        }
    }
}

#[derive(Debug)]
pub struct Health {
    policy: HealthPolicy,
    /// The verdict, read on every routing decision: kept apart from the
    /// lock so that reads never wait.
    healthy: AtomicBool,
    /// Consecutive failed deliveries, touched on every delivery: atomic so
    /// that the success path takes no lock.
    delivery_failures_in_a_row: AtomicU32,
    /// Passive, back after a cool-down: the next failed delivery ejects.
    /// Atomic so that the success path reads it without the lock.
    on_probation: AtomicBool,
    /// Written a few times per probe interval; a std Mutex is enough.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    mode: HealthMode,
    probe_healthy: bool,
    ejected: bool,
    /// When the current ejection began.
    ejected_at: Option<Instant>,
    passes_in_a_row: u32,
    probe_failures_in_a_row: u32,
    auto_reason: HealthReason,
    detail: Option<String>,
    since: DateTime<Utc>,
    last_check: Option<DateTime<Utc>>,
}

impl State {
    fn verdict(&self) -> (bool, HealthReason) {
        match self.mode {
            HealthMode::ForceHealthy => (true, HealthReason::ForcedHealthy),
            HealthMode::ForceUnhealthy => (false, HealthReason::ForcedUnhealthy),
            HealthMode::Auto if self.ejected => (false, HealthReason::Ejected),
            HealthMode::Auto => (self.probe_healthy, self.auto_reason),
        }
    }
}

impl Health {
    pub fn new(policy: HealthPolicy) -> Health {
        Health {
            policy,
            healthy: AtomicBool::new(true),
            delivery_failures_in_a_row: AtomicU32::new(0),
            on_probation: AtomicBool::new(false),
            state: Mutex::new(State {
                mode: HealthMode::Auto,
                probe_healthy: true,
                ejected: false,
                ejected_at: None,
                passes_in_a_row: 0,
                probe_failures_in_a_row: 0,
                auto_reason: if policy.passive_cooldown.is_some() {
                    HealthReason::Passive
                } else {
                    HealthReason::Starting
                },
                detail: None,
                since: Utc::now(),
                last_check: None,
            }),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Records a probe result; true when the verdict changed.
    pub fn record_probe(&self, result: Result<(), String>) -> bool {
        if result.is_ok() {
            self.delivery_failures_in_a_row.store(0, Ordering::Relaxed);
        }
        self.update(|s, policy| {
            s.last_check = Some(Utc::now());
            match result {
                Ok(()) => {
                    s.probe_failures_in_a_row = 0;
                    s.passes_in_a_row = s.passes_in_a_row.saturating_add(1);
                    s.ejected = false;
                    s.detail = None;
                    if !s.probe_healthy && s.passes_in_a_row >= policy.healthy_threshold {
                        s.probe_healthy = true;
                    }
                    if s.probe_healthy {
                        s.auto_reason = HealthReason::ProbeSucceeded;
                    }
                }
                Err(reason) => {
                    s.passes_in_a_row = 0;
                    s.probe_failures_in_a_row = s.probe_failures_in_a_row.saturating_add(1);
                    s.detail = Some(reason);
                    if s.probe_failures_in_a_row >= policy.unhealthy_threshold {
                        s.probe_healthy = false;
                        s.auto_reason = HealthReason::ProbeFailed;
                    }
                }
            }
        })
    }

    /// Whether this analyzer is passive: never probed.
    pub fn is_passive(&self) -> bool {
        self.policy.passive_cooldown.is_some()
    }

    /// Records a delivery result; true when the verdict changed.
    pub fn record_delivery(&self, delivered: bool) -> bool {
        let passive = self.is_passive();
        if delivered {
            if self.delivery_failures_in_a_row.load(Ordering::Relaxed) != 0 {
                self.delivery_failures_in_a_row.store(0, Ordering::Relaxed);
            }
            if passive && (self.on_probation.load(Ordering::Relaxed) || !self.is_healthy()) {
                self.on_probation.store(false, Ordering::Relaxed);
                return self.update(|s, _| {
                    if s.ejected {
                        s.ejected = false;
                        s.ejected_at = None;
                        s.auto_reason = HealthReason::DeliverySucceeded;
                    }
                });
            }
            return false;
        }
        let streak = self.delivery_failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        let threshold = self.policy.ejection_threshold;
        let on_probation = passive && self.on_probation.swap(false, Ordering::Relaxed);
        if !on_probation && (threshold == 0 || streak < threshold) {
            return false;
        }
        self.update(|s, _| {
            if !s.ejected {
                s.ejected = true;
                s.ejected_at = Some(Instant::now());
            }
        })
    }

    /// Passive: brings an ejected analyzer back, on probation, once its
    /// cool-down has passed by `now`; true when the verdict changed.
    pub fn end_cooldown(&self, now: Instant) -> bool {
        let Some(cooldown) = self.policy.passive_cooldown else {
            return false;
        };
        self.update(|s, _| {
            let over = s
                .ejected_at
                .is_some_and(|at| now.saturating_duration_since(at) >= cooldown);
            if s.ejected && over {
                s.ejected = false;
                s.ejected_at = None;
                s.auto_reason = HealthReason::CooledDown;
                self.delivery_failures_in_a_row.store(0, Ordering::Relaxed);
                self.on_probation.store(true, Ordering::Relaxed);
            }
        })
    }

    /// Passive: when the current ejection's cool-down ends, if ejected.
    pub fn cooldown_ends(&self) -> Option<Instant> {
        let cooldown = self.policy.passive_cooldown?;
        let s = self.lock();
        s.ejected.then_some(s.ejected_at?.checked_add(cooldown)?)
    }

    /// Sets the operator's mode; true when the verdict changed.
    pub fn set_mode(&self, mode: HealthMode) -> bool {
        self.update(|s, _| s.mode = mode)
    }

    pub fn snapshot(&self) -> HealthSnapshot {
        let s = self.lock();
        let (healthy, reason) = s.verdict();
        HealthSnapshot {
            healthy,
            mode: s.mode,
            reason,
            detail: s.detail.clone(),
            since: s.since,
            last_check: s.last_check,
        }
    }

    fn update(&self, change: impl FnOnce(&mut State, &HealthPolicy)) -> bool {
        let mut state = self.lock();
        let (before, _) = state.verdict();
        change(&mut state, &self.policy);
        let (after, _) = state.verdict();
        if before != after {
            state.since = Utc::now();
            self.healthy.store(after, Ordering::Release);
        }
        before != after
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State half-written in
        // a way that matters more than losing health tracking: keep going.
        self.state.lock_unpoisoned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(unhealthy: u32, healthy: u32, ejection: u32) -> Health {
        Health::new(HealthPolicy {
            unhealthy_threshold: unhealthy,
            healthy_threshold: healthy,
            ejection_threshold: ejection,
            passive_cooldown: None,
        })
    }

    fn passive(ejection: u32, cooldown: Duration) -> Health {
        Health::new(HealthPolicy {
            ejection_threshold: ejection,
            passive_cooldown: Some(cooldown),
            ..health(1, 1, 0).policy
        })
    }

    #[test]
    fn a_passive_analyzer_comes_back_when_a_delivery_succeeds() {
        let h = passive(2, Duration::from_secs(30));
        assert!(h.is_passive());
        assert_eq!(h.snapshot().reason, HealthReason::Passive);
        assert!(!h.record_delivery(false));
        assert!(h.record_delivery(false), "the second failure in a row ejects");
        assert_eq!(h.snapshot().reason, HealthReason::Ejected);
        assert!(h.cooldown_ends().is_some());
        assert!(!h.record_delivery(false), "a failure while out changes nothing");
        assert!(
            h.record_delivery(true),
            "a delivery under way when it left succeeded"
        );
        assert!(h.is_healthy());
        assert_eq!(h.snapshot().reason, HealthReason::DeliverySucceeded);
        assert_eq!(h.cooldown_ends(), None);
        assert!(!h.record_delivery(false), "the streak starts again from zero");
    }

    #[test]
    fn a_passive_analyzer_comes_back_after_its_cool_down_on_probation() {
        let cooldown = Duration::from_secs(30);
        let h = passive(3, cooldown);
        for _ in 0..2 {
            assert!(!h.record_delivery(false));
        }
        assert!(h.record_delivery(false));
        let ends = h.cooldown_ends().unwrap();
        assert!(
            !h.end_cooldown(ends - Duration::from_millis(1)),
            "not before the cool-down ends"
        );
        assert!(!h.is_healthy());
        assert!(h.end_cooldown(ends));
        assert!(h.is_healthy());
        assert_eq!(h.snapshot().reason, HealthReason::CooledDown);
        assert!(h.record_delivery(false), "on probation one failure ejects again");
        let again = h.cooldown_ends().unwrap();
        assert!(again >= ends, "a new cool-down from the new ejection");
        assert!(h.end_cooldown(again));
        assert!(
            !h.record_delivery(true),
            "a success ends the probation; already in rotation"
        );
        assert!(!h.record_delivery(false));
        assert!(!h.record_delivery(false));
        assert!(
            h.record_delivery(false),
            "off probation it takes the threshold again"
        );
    }

    #[test]
    fn an_active_analyzer_needs_a_probe_to_come_back_after_an_ejection() {
        let h = health(1, 1, 1);
        assert!(h.record_delivery(false));
        assert!(
            !h.record_delivery(true),
            "a delivery success does not bring it back"
        );
        assert!(
            !h.end_cooldown(Instant::now() + Duration::from_secs(3600)),
            "no cool-down"
        );
        assert!(!h.is_healthy());
        assert!(h.record_probe(Ok(())));
    }

    #[test]
    fn analyzers_start_healthy() {
        let h = health(1, 1, 5);
        assert!(h.is_healthy());
        assert_eq!(h.snapshot().reason, HealthReason::Starting);
    }

    #[test]
    fn probes_follow_kubernetes_thresholds() {
        let h = health(2, 3, 0);
        assert!(
            !h.record_probe(Err("down".into())),
            "one failure is under the threshold"
        );
        assert!(h.record_probe(Err("down".into())));
        assert!(!h.is_healthy());
        assert_eq!(h.snapshot().reason, HealthReason::ProbeFailed);
        assert_eq!(h.snapshot().detail.as_deref(), Some("down"));
        assert!(!h.record_probe(Ok(())));
        assert!(!h.record_probe(Ok(())));
        assert!(h.record_probe(Ok(())), "the third pass in a row brings it back");
        assert!(h.is_healthy());
        assert_eq!(h.snapshot().reason, HealthReason::ProbeSucceeded);
    }

    #[test]
    fn a_failure_streak_ejects_until_a_probe_passes() {
        let h = health(1, 1, 3);
        assert!(!h.record_delivery(false));
        assert!(!h.record_delivery(true), "a success resets the streak");
        assert!(!h.record_delivery(false));
        assert!(!h.record_delivery(false));
        assert!(h.record_delivery(false));
        assert_eq!(h.snapshot().reason, HealthReason::Ejected);
        assert!(h.record_probe(Ok(())));
        assert!(h.is_healthy());
    }

    #[test]
    fn a_forced_mode_beats_probes_and_ejection() {
        let h = health(1, 1, 1);
        assert!(h.set_mode(HealthMode::ForceUnhealthy));
        assert!(!h.record_probe(Ok(())));
        assert!(!h.is_healthy());
        assert_eq!(h.snapshot().reason, HealthReason::ForcedUnhealthy);
        assert!(h.set_mode(HealthMode::ForceHealthy));
        assert!(!h.record_probe(Err("down".into())));
        assert!(!h.record_delivery(false));
        assert!(h.is_healthy());
        assert!(
            h.set_mode(HealthMode::Auto),
            "auto hands control back to the failed probe"
        );
        assert!(!h.is_healthy());
    }
}
