//! The bounds on status writes: nothing written while nothing changes, at
//! most 5 entry writes a second per replica and one leader write per
//! Analyzer and `status_interval` under traffic.

use super::{config, kube_client, shared, COUNTS_DEADLINE};
use crate::support::http::processed;
use crate::support::kube::{analyzers_where, distributor_with_config, simulated, Namespace, KUBECTL_POLL};
use crate::support::packets::packets;
use crate::support::poll::{eventually_every, DEADLINE};
use crate::support::serial::beside_others;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// The status writes to the Analyzers of `ns` seen by a watch over
/// `window`: by Analyzer, those that changed `status.replicas` (a
/// replica's entry) and the others (the leader's).
#[derive(Debug, Default)]
struct Writes {
    entries: BTreeMap<String, usize>,
    leader: BTreeMap<String, usize>,
}

impl Writes {
    async fn watch(ns: &Namespace, window: Duration) -> Writes {
        use futures_util::StreamExt;
        use kube::api::{ApiResource, DynamicObject, GroupVersionKind, WatchEvent, WatchParams};
        let resource = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("logs-distributor.dev", "v1alpha1", "Analyzer"),
            "analyzers",
        );
        let api: kube::Api<DynamicObject> =
            kube::Api::namespaced_with(kube_client(&ns.cluster).await, &ns.name, &resource);
        let list = api.list(&Default::default()).await.expect("list Analyzers");
        let mut last: BTreeMap<String, Value> = list
            .items
            .iter()
            .map(|o| (o.metadata.name.clone().unwrap(), o.data["status"].clone()))
            .collect();
        let version = list.metadata.resource_version.unwrap_or_default();
        let params = WatchParams::default().timeout(window.as_secs() as u32 + 5);
        let mut events = api.watch(&params, &version).await.expect("watch").boxed();
        let mut writes = Writes::default();
        let end = tokio::time::Instant::now() + window;
        while let Ok(Some(event)) = tokio::time::timeout_at(end, events.next()).await {
            let Ok(WatchEvent::Modified(object)) = event else {
                continue;
            };
            let name = object.metadata.name.clone().unwrap();
            let status = object.data["status"].clone();
            let before = last.insert(name.clone(), status.clone()).unwrap_or(Value::Null);
            if before["replicas"] != status["replicas"] {
                *writes.entries.entry(name).or_default() += 1;
            } else if before != status {
                *writes.leader.entry(name).or_default() += 1;
            }
        }
        writes
    }

    fn entry_writes(&self) -> usize {
        self.entries.values().sum()
    }

    fn leader_writes(&self) -> usize {
        self.leader.values().sum()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_writes_are_bounded_and_only_on_change() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "counts-writes").await;
    let names: Vec<String> = (0..12).map(|i| format!("s{i:02}")).collect();
    for name in &names {
        ns.apply_ok(&simulated(name, 1, 0)).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = distributor_with_config(&cluster, &ns.name, "one", dir.path(), &config("15m", "200ms")).await;
    analyzers_where(&d, "12 analyzers running", DEADLINE, |all| {
        all.as_object().is_some_and(|a| a.len() == 12)
    })
    .await;
    eventually_every("every status written", COUNTS_DEADLINE, KUBECTL_POLL, || async {
        let out = ns.kubectl(&["get", "analyzers", "-o", "json"], None).await;
        let list: Value = serde_json::from_str(out.ok("kubectl get analyzers")).unwrap();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let settled = items.iter().all(|i| {
            i["status"]["processedCount"] == 0 && i["status"]["conditions"][0]["reason"] == "ProbeSucceeded"
        });
        if items.len() == 12 && settled {
            Ok(())
        } else {
            Err(list.to_string())
        }
    })
    .await;

    // Idle: probes run every 100 ms, nothing is written.
    let idle = Writes::watch(&ns, Duration::from_secs(3)).await;
    assert_eq!(
        idle.entry_writes() + idle.leader_writes(),
        0,
        "writes while nothing changed: {idle:?}"
    );

    // Steady traffic to all twelve for 5 s: every count changes every
    // second, the writes stay within the bounds.
    let traffic = async {
        for round in 0..20 {
            d.post_logs(&packets(&format!("r{round}"), 12)).await.expect(202);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let (busy, ()) = tokio::join!(Writes::watch(&ns, Duration::from_secs(5)), traffic);
    assert!(
        busy.entry_writes() <= 5 * 5 + 5,
        "at most 5 entry writes a second: {busy:?}"
    );
    assert!(
        busy.entry_writes() >= 10,
        "the entries follow the traffic: {busy:?}"
    );
    for name in &names {
        let entries = busy.entries.get(name).copied().unwrap_or(0);
        let leader = busy.leader.get(name).copied().unwrap_or(0);
        assert!(entries <= 6, "{name}: {entries} entry writes in 5 s: {busy:?}");
        assert!(
            (1..=6).contains(&leader),
            "{name}: {leader} leader writes in 5 s: {busy:?}"
        );
    }

    // And the totals are all there once the traffic stops.
    let delivered = processed(&d.drained().await);
    assert_eq!(delivered.values().sum::<u64>(), 240);
    for name in &names {
        let want = delivered[name.as_str()];
        eventually_every(
            &format!("{name}'s total"),
            COUNTS_DEADLINE,
            KUBECTL_POLL,
            || async {
                let status = ns.get_json("analyzer", name).await["status"].clone();
                if status["processedCount"] == want {
                    Ok(())
                } else {
                    Err(status.to_string())
                }
            },
        )
        .await;
    }
    println!(
        "status writes in 5 s of traffic to 12 Analyzers: {} entry writes, {} leader writes",
        busy.entry_writes(),
        busy.leader_writes()
    );
}
