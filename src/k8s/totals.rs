//! The Analyzer's totals, derived by the leader from the replicas' own
//! entries in its status (`status.replicas`, written by [`super::counts`]).
//!
//! - `processedCount` and `errorCount` are `status.retired` plus the sum of
//!   the entries. Each entry only grows, and an entry is removed only in
//!   the same write that adds it to `retired`, so the totals never go back
//!   and do not move when leadership does: any leader derives the same
//!   numbers from the same object.
//! - An entry that has not changed for `stale_replica_after` (as this
//!   replica saw it: no clock of another replica is trusted) belongs to a
//!   replica that is gone, or idle and no longer refreshing it: it is
//!   retired.
//! - `trafficShare` is the Analyzer's part of the packets every replica
//!   routed over the last minute: the sum of the entries'
//!   `routedLastMinute`, counting only entries seen changing within that
//!   minute (a replica that died stops counting after a minute).

use super::crd::{Analyzer, ReplicaCounts, RetiredCounts};
use crate::traffic::SHARE_WINDOW;
use kube::ResourceExt;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// When each replica entry was last seen changing, by (Analyzer uid,
/// replica name).
#[derive(Default)]
pub(crate) struct Observations {
    seen: HashMap<(String, String), (ReplicaCounts, Instant)>,
}

impl Observations {
    /// Notes the entries of `resources` as they are at `now`; forgets the
    /// entries no longer there.
    pub(crate) fn observe<'a>(&mut self, resources: impl Iterator<Item = &'a Analyzer>, now: Instant) {
        let mut present = HashMap::new();
        for resource in resources {
            let uid = key_of(resource);
            for entry in entries(resource) {
                let key = (uid.clone(), entry.name.clone());
                let since = match self.seen.get(&key) {
                    Some((last, since)) if last == entry => *since,
                    _ => now,
                };
                present.insert(key, (entry.clone(), since));
            }
        }
        self.seen = present;
    }

    /// How long `entry` of `resource` has been as it is (0 when not seen yet).
    fn unchanged_for(&self, resource: &Analyzer, entry: &ReplicaCounts, now: Instant) -> Duration {
        match self.seen.get(&(key_of(resource), entry.name.clone())) {
            Some((last, since)) if last == entry => now.saturating_duration_since(*since),
            _ => Duration::ZERO,
        }
    }
}

/// What the leader writes for one Analyzer's counts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Totals {
    pub processed: i64,
    pub errors: i64,
    pub retired: RetiredCounts,
    /// The entries that stay, when some were retired (then written too).
    pub kept: Option<Vec<ReplicaCounts>>,
    /// Packets routed to it over the last minute, by every replica.
    pub routed_last_minute: i64,
}

/// The totals of `resource` at `now`.
pub(crate) fn totals(
    resource: &Analyzer,
    observations: &Observations,
    now: Instant,
    stale_after: Duration,
) -> Totals {
    let status = resource.status.clone().unwrap_or_default();
    // A status whose totals were written without `retired` (before replicas
    // had entries): those totals are the base.
    let mut retired = status.retired.clone().unwrap_or(RetiredCounts {
        processed_count: status.processed_count.unwrap_or(0),
        error_count: status.error_count.unwrap_or(0),
        replicas: 0,
    });
    let mut kept = Vec::new();
    let mut any_retired = false;
    let mut routed_last_minute = 0;
    for entry in &status.replicas {
        let unchanged = observations.unchanged_for(resource, entry, now);
        if unchanged >= stale_after {
            retired.processed_count += entry.processed_count;
            retired.error_count += entry.error_count;
            retired.replicas += 1;
            any_retired = true;
            continue;
        }
        if unchanged < SHARE_WINDOW {
            routed_last_minute += entry.routed_last_minute;
        }
        kept.push(entry.clone());
    }
    Totals {
        processed: retired.processed_count + kept.iter().map(|e| e.processed_count).sum::<i64>(),
        errors: retired.error_count + kept.iter().map(|e| e.error_count).sum::<i64>(),
        retired,
        kept: any_retired.then_some(kept),
        routed_last_minute,
    }
}

fn entries(resource: &Analyzer) -> &[ReplicaCounts] {
    resource
        .status
        .as_ref()
        .map(|s| s.replicas.as_slice())
        .unwrap_or_default()
}

/// An Analyzer's identity across its writes: its uid (its name when the
/// uid is unknown).
pub(crate) fn key_of(resource: &Analyzer) -> String {
    resource.uid().unwrap_or_else(|| resource.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::crd::{AnalyzerSpec, AnalyzerStatus};

    fn entry(name: &str, processed: i64, errors: i64, routed: i64) -> ReplicaCounts {
        ReplicaCounts {
            name: name.into(),
            processed_count: processed,
            error_count: errors,
            routed_last_minute: routed,
            last_update_time: None,
        }
    }

    fn analyzer(status: AnalyzerStatus) -> Analyzer {
        let mut resource = Analyzer::new(
            "a",
            serde_json::from_value::<AnalyzerSpec>(serde_json::json!({"weight": 1, "simulated": {}}))
                .unwrap(),
        );
        resource.metadata.uid = Some("uid-a".into());
        resource.status = Some(status);
        resource
    }

    const STALE: Duration = Duration::from_secs(600);

    #[test]
    fn the_totals_are_retired_plus_every_entry() {
        let resource = analyzer(AnalyzerStatus {
            replicas: vec![entry("one", 100, 2, 40), entry("two", 300, 1, 60)],
            retired: Some(RetiredCounts {
                processed_count: 7,
                error_count: 3,
                replicas: 1,
            }),
            ..AnalyzerStatus::default()
        });
        let mut seen = Observations::default();
        let now = Instant::now();
        seen.observe([&resource].into_iter(), now);
        let totals = totals(&resource, &seen, now, STALE);
        assert_eq!((totals.processed, totals.errors), (407, 6));
        assert_eq!(totals.routed_last_minute, 100);
        assert_eq!(totals.kept, None, "nothing retired");
    }

    #[test]
    fn an_entry_unchanged_past_the_limit_is_retired_and_the_totals_stay() {
        let resource = analyzer(AnalyzerStatus {
            replicas: vec![entry("one", 100, 2, 40), entry("gone", 300, 1, 60)],
            ..AnalyzerStatus::default()
        });
        let mut seen = Observations::default();
        let start = Instant::now();
        seen.observe([&resource].into_iter(), start);
        // "one" moves on; "gone" never changes again.
        let mut later = resource.clone();
        later.status.as_mut().unwrap().replicas[0] = entry("one", 150, 2, 40);
        seen.observe([&later].into_iter(), start + Duration::from_secs(61));
        let before = totals(&later, &seen, start + Duration::from_secs(61), STALE);
        assert_eq!(before.processed, 450);
        assert_eq!(
            before.routed_last_minute, 40,
            "an entry unchanged for a minute is not in the share"
        );
        let after = totals(&later, &seen, start + STALE, STALE);
        assert_eq!((after.processed, after.errors), (450, 3), "the totals stay");
        assert_eq!(
            after.retired,
            RetiredCounts {
                processed_count: 300,
                error_count: 1,
                replicas: 1
            }
        );
        assert_eq!(after.kept, Some(vec![entry("one", 150, 2, 40)]));
    }

    #[test]
    fn an_entry_not_seen_before_is_fresh_whatever_its_age() {
        let resource = analyzer(AnalyzerStatus {
            replicas: vec![entry("one", 5, 0, 5)],
            ..AnalyzerStatus::default()
        });
        let seen = Observations::default();
        let totals = totals(&resource, &seen, Instant::now(), Duration::from_millis(1));
        assert_eq!(totals.kept, None);
        assert_eq!(totals.processed, 5);
    }

    #[test]
    fn a_status_without_entries_keeps_its_totals_as_retired() {
        let resource = analyzer(AnalyzerStatus {
            processed_count: Some(40),
            error_count: Some(2),
            ..AnalyzerStatus::default()
        });
        let totals = totals(&resource, &Observations::default(), Instant::now(), STALE);
        assert_eq!((totals.processed, totals.errors), (40, 2));
        assert_eq!(totals.retired.processed_count, 40);
    }
}
