//! The fleet: routing shares, rotation, weights and slow start.

use super::*;
use crate::config::SimulatedConfig;
use crate::dispatch::health::HealthMode;
use crate::metrics::Metrics;

use std::collections::HashMap;

fn fleet(weights: &[(&str, u32)]) -> Fleet {
    fleet_with_slow_start(weights, Duration::ZERO)
}

fn fleet_with_slow_start(weights: &[(&str, u32)], slow_start: Duration) -> Fleet {
    let members: Vec<_> = weights.iter().map(|(id, w)| (*id, None, *w)).collect();
    fleet_of(&members, slow_start)
}

/// A fleet of `(id, group, weight)` members.
fn fleet_of(members: &[(&str, Option<&str>, u32)], slow_start: Duration) -> Fleet {
    let metrics = Metrics::new();
    let policy = HealthPolicy {
        unhealthy_threshold: 1,
        healthy_threshold: 1,
        ejection_threshold: 5,
        passive_cooldown: None,
    };
    let analyzers = members
        .iter()
        .map(|(id, group, w)| {
            let transport = Transport::Simulated(simulated_transport(&SimulatedConfig::default()));
            let spec = AnalyzerSpec {
                id: id.to_string(),
                name: id.to_string(),
                weight: *w,
                group: group.map(str::to_string),
                concurrency: 1,
                max_batch_packets: None,
                probe_interval: Duration::from_secs(10),
                probe_timeout: Duration::from_secs(1),
            };
            Analyzer::new(spec, transport, policy, metrics.analyzer(id)).0
        })
        .collect();
    Fleet::new(analyzers, slow_start)
}

/// How many of `picks` items each analyzer gets.
fn split(fleet: &Fleet, picks: usize) -> HashMap<String, usize> {
    let shares = fleet.share((0..picks).collect::<Vec<_>>()).unwrap();
    shares
        .into_iter()
        .map(|(analyzer, share)| (analyzer.id.clone(), share.len()))
        .collect()
}

/// The analyzer one item goes to.
fn pick(fleet: &Fleet) -> Option<String> {
    let mut shares = fleet.share(vec![()]).ok()?;
    Some(shares.pop()?.0.id.clone())
}

#[test]
fn health_changes_reshape_the_rotation_at_once() {
    let f = fleet(&[("a", 40), ("b", 30), ("c", 20), ("d", 10)]);
    assert_eq!(split(&f, 1000)["a"], 400);
    f.get("a").unwrap().health.set_mode(HealthMode::ForceUnhealthy);
    f.rebuild();
    assert!(!f.get("a").unwrap().in_rotation());
    let s = split(&f, 600);
    assert_eq!((s.get("a"), s["b"], s["c"], s["d"]), (None, 300, 200, 100));
    f.get("a").unwrap().health.set_mode(HealthMode::Auto);
    f.rebuild();
    let s = split(&f, 10);
    assert_eq!(
        (s["a"], s["b"], s["c"], s["d"]),
        (4, 3, 2, 1),
        "rejoins without a burst"
    );
}

#[test]
fn a_rejoining_analyzer_ramps_up_under_slow_start() {
    let f = fleet_with_slow_start(&[("a", 100), ("b", 100)], Duration::from_secs(60));
    assert!(
        !f.is_ramping(),
        "analyzers present at start take their full weight"
    );
    assert_eq!(split(&f, 200)["a"], 100);
    f.get("a").unwrap().health.set_mode(HealthMode::ForceUnhealthy);
    f.rebuild();
    f.get("a").unwrap().health.set_mode(HealthMode::Auto);
    f.rebuild();
    assert!(f.is_ramping());
    // Just back: a routes with a tenth of its weight, 10 against 100.
    let s = split(&f, 110);
    assert_eq!((s["a"], s["b"]), (10, 100));
}

#[test]
fn the_endpoints_of_one_analyzer_split_its_weight_and_an_unhealthy_one_leaves_it_to_the_others() {
    let f = fleet_of(
        &[
            ("s/1", Some("s"), 30),
            ("s/2", Some("s"), 30),
            ("s/3", Some("s"), 30),
            ("other", None, 70),
        ],
        Duration::ZERO,
    );
    let s = split(&f, 100);
    assert_eq!((s["s/1"], s["s/2"], s["s/3"], s["other"]), (10, 10, 10, 70));
    assert_eq!(f.get("s/2").unwrap().group(), "s");
    assert_eq!(f.get("other").unwrap().group(), "other");
    f.get("s/2").unwrap().health.set_mode(HealthMode::ForceUnhealthy);
    f.rebuild();
    let s = split(&f, 200);
    assert_eq!(
        (s["s/1"], s.get("s/2"), s["s/3"], s["other"]),
        (30, None, 30, 140)
    );
}

#[test]
fn nothing_in_rotation_picks_nothing() {
    let f = fleet(&[("a", 1)]);
    f.get("a").unwrap().health.set_mode(HealthMode::ForceUnhealthy);
    f.rebuild();
    assert!(pick(&f).is_none());
    assert!(!f.any_in_rotation());
}

#[test]
fn a_share_gives_each_analyzer_the_items_single_picks_would_and_keeps_their_order() {
    let (together, one_by_one) = (
        fleet(&[("a", 3), ("b", 2), ("c", 1)]),
        fleet(&[("a", 3), ("b", 2), ("c", 1)]),
    );
    for n in [1, 7, 12, 5] {
        let items: Vec<usize> = (0..n).collect();
        let mut expected: HashMap<String, Vec<usize>> = HashMap::new();
        for item in &items {
            expected
                .entry(pick(&one_by_one).unwrap())
                .or_default()
                .push(*item);
        }
        let shares: HashMap<String, Vec<usize>> = together
            .share(items)
            .unwrap()
            .into_iter()
            .map(|(analyzer, share)| (analyzer.id.clone(), share))
            .collect();
        assert_eq!(shares, expected, "{n} items");
    }
}

#[test]
fn a_share_with_nothing_in_rotation_gives_the_items_back() {
    let f = fleet(&[("a", 1)]);
    f.get("a").unwrap().health.set_mode(HealthMode::ForceUnhealthy);
    f.rebuild();
    assert_eq!(f.share(vec![1, 2, 3]).unwrap_err(), vec![1, 2, 3]);
}
