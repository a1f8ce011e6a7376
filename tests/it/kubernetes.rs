//! `--source kubernetes` against a real kube-apiserver (`scripts/envtest.sh`):
//! Analyzer resources drive the live routing table, the API server
//! validates them, the leader (Lease) writes status and Events, and routing
//! goes on while the API server is gone.
//!
//! Every test has a namespace of its own, so the tests run in parallel on
//! the shared control plane; the one that stops the API server starts a
//! control plane of its own. Tests that count an exact split keep the
//! status writer out (a phantom holds the Lease): see
//! `updates_that_change_no_weight_keep_the_split_exact` for why.

use crate::support::analyzers::AnalyzerProcess;
use crate::support::fixtures;
use crate::support::http::{processed, Api};
use crate::support::kube::{
    self, analyzers_where, distributor, event_about, four_defaults, kube_readiness, simulated, table,
    weights, Cluster, Namespace, PrivateCluster, KUBECTL_POLL,
};
use crate::support::packets::packets;
use crate::support::poll::{eventually, eventually_every, DEADLINE};
use crate::support::processes::signal;
use crate::support::receiver::{Receiver, ReceiverOptions};
use crate::support::serial::beside_others;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn shared() -> Cluster {
    tokio::task::spawn_blocking(Cluster::shared)
        .await
        .expect("control plane set-up")
}

/// `(id, count)` pairs as a map, for comparing with `processed`.
fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(id, n)| (id.to_string(), *n)).collect()
}

/// What each analyzer processed between two stats, by id (analyzers of
/// `after` only).
fn delta(before: &Value, after: &Value) -> BTreeMap<String, u64> {
    let before = processed(before);
    processed(after)
        .into_iter()
        .map(|(id, n)| {
            let was = before.get(&id).copied().unwrap_or(0);
            (id, n - was)
        })
        .collect()
}

fn expected_weights(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(id, w)| (id.to_string(), *w)).collect()
}

/// Applies the four default Analyzers (a/b/c/d, 40/30/20/10).
async fn apply_four_defaults(ns: &Namespace, processing_ms: u64) {
    for manifest in four_defaults(processing_ms) {
        ns.apply_ok(&manifest).await;
    }
}

async fn wait_for_four(api: &Api) {
    let four = expected_weights(&[("a", 40), ("b", 30), ("c", 20), ("d", 10)]);
    analyzers_where(api, "the four default analyzers", DEADLINE, |a| {
        weights(a) == four
    })
    .await;
}

/// Posts `count` packets (in requests of at most 1000) and waits until
/// nothing is in flight; answers the stats then.
async fn post_and_drain(api: &Api, prefix: &str, count: usize) -> Value {
    let mut sent = 0;
    while sent < count {
        let n = (count - sent).min(1000);
        api.post_logs(&packets(&format!("{prefix}-{sent}"), n))
            .await
            .expect(202);
        sent += n;
    }
    api.drained().await
}

async fn wait_leader(api: &Api, leader: bool) {
    eventually(&format!("/readyz to say leader {leader}"), DEADLINE, || async {
        let kube = kube_readiness(api).await;
        if kube["leader"] == leader {
            Ok(())
        } else {
            Err(kube.to_string())
        }
    })
    .await;
}

/// The Analyzer `name`'s status once `check` accepts it (polling kubectl).
async fn status_where(ns: &Namespace, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually_every(what, DEADLINE, KUBECTL_POLL, || async {
        let status = ns.get_json("analyzer", name).await["status"].clone();
        if check(&status) {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
    .await
}

fn ready_condition(status: &Value) -> Value {
    status["conditions"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or(Value::Null)
}

// ---------------------------------------------------------------- routing

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_four_default_analyzers_split_1000_packets_exactly() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "split").await;
    ns.hold_lease("phantom").await;
    apply_four_defaults(&ns, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    wait_for_four(&d).await;

    let stats = post_and_drain(&d, "split", 1000).await;
    assert_eq!(
        processed(&stats),
        counts(&[("a", 400), ("b", 300), ("c", 200), ("d", 100)])
    );
    assert_eq!(stats["total_packets_received"], 1000);
    assert_eq!(stats["total_dead_lettered"], 0);
}

/// The packets a restart recovers wait for the first list of Analyzers and
/// are then split among all of them by weight, with slow start on: the
/// analyzers present at start take their full weight at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_backlog_is_split_by_weight_among_the_analyzers_listed_at_start() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "backlog").await;
    ns.hold_lease("phantom").await;
    for mut manifest in four_defaults(0) {
        manifest["spec"]["health"] = json!("ForceUnhealthy");
        ns.apply_ok(&manifest).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let first = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    wait_for_four(&first).await;
    first.post_logs(&packets("backlog", 1000)).await.expect(202);
    assert_eq!(first.stats().await["in_flight"], 1000);
    drop(first); // kill -9: the backlog is in the write-ahead log only
    for name in ["a", "b", "c", "d"] {
        ns.patch_analyzer(name, &json!({"spec": {"health": "Auto"}}))
            .await;
    }

    let yaml = kube::distributor_yaml("").replace(
        "health: {interval: 100ms}",
        "health: {interval: 100ms, slow_start: 60s}",
    );
    assert!(yaml.contains("slow_start"), "{yaml}");
    let second = kube::distributor_with_config(&cluster, &ns.name, "one", dir.path(), &yaml).await;
    let stats = second.drained().await;
    assert_eq!(
        processed(&stats),
        counts(&[("a", 400), ("b", 300), ("c", 200), ("d", 100)]),
        "{stats}"
    );
}

/// With Analyzer resources, `spec.health` is the health override: the
/// REST one is refused with 409 and the patch that does it instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_health_override_points_at_spec_health() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "override").await;
    ns.hold_lease("phantom").await;
    apply_four_defaults(&ns, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    wait_for_four(&d).await;

    let reply = d.set_health("b", json!({"healthy": false})).await;
    reply.expect(409);
    let error = reply.error();
    assert!(error.contains("spec.health"), "{error}");
    assert!(
        error.contains(&format!("kubectl patch analyzer b -n {}", ns.name)),
        "{error}"
    );
    let analyzers = d.get("/api/v1/analyzers").await.json;
    let b = &analyzers["analyzers"]["b"];
    assert_eq!(b["in_rotation"], true, "{analyzers}");
    assert_eq!(b["health_mode"], "auto", "{analyzers}");

    // The declared way works, and the split follows it.
    ns.patch_analyzer("b", &json!({"spec": {"health": "ForceUnhealthy"}}))
        .await;
    analyzers_where(&d, "b out of rotation", DEADLINE, |a| {
        a["b"]["in_rotation"] == false
    })
    .await;
    let before = d.stats().await;
    let after = post_and_drain(&d, "override", 700).await;
    assert_eq!(
        delta(&before, &after),
        counts(&[("a", 400), ("b", 0), ("c", 200), ("d", 100)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weight_patched_to_zero_and_back_applies_within_a_second() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "weight").await;
    ns.hold_lease("phantom").await;
    apply_four_defaults(&ns, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    wait_for_four(&d).await;
    let before = post_and_drain(&d, "warm", 100).await;

    ns.patch_analyzer("a", &json!({"spec": {"weight": 0}})).await;
    let a_out = expected_weights(&[("a", 0), ("b", 30), ("c", 20), ("d", 10)]);
    analyzers_where(&d, "a's weight 0 within a second", Duration::from_secs(1), |a| {
        weights(a) == a_out
    })
    .await;
    let listed = d.get("/api/v1/analyzers").await.json;
    assert_eq!(listed["analyzers"]["a"]["in_rotation"], false, "{listed}");
    let out = post_and_drain(&d, "without-a", 600).await;
    assert_eq!(
        delta(&before, &out),
        counts(&[("a", 0), ("b", 300), ("c", 200), ("d", 100)])
    );

    ns.patch_analyzer("a", &json!({"spec": {"weight": 40}})).await;
    let four = expected_weights(&[("a", 40), ("b", 30), ("c", 20), ("d", 10)]);
    analyzers_where(&d, "a's weight 40 within a second", Duration::from_secs(1), |a| {
        weights(a) == four
    })
    .await;
    let back = post_and_drain(&d, "with-a", 100).await;
    assert_eq!(
        delta(&out, &back),
        counts(&[("a", 40), ("b", 30), ("c", 20), ("d", 10)])
    );
    assert_eq!(back["total_dead_lettered"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_analyzer_takes_its_share_at_once() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "add").await;
    ns.hold_lease("phantom").await;
    apply_four_defaults(&ns, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    wait_for_four(&d).await;
    let before = post_and_drain(&d, "four", 1000).await;

    ns.apply_ok(&simulated("e", 100, 0)).await;
    let five = expected_weights(&[("a", 40), ("b", 30), ("c", 20), ("d", 10), ("e", 100)]);
    analyzers_where(&d, "e in the rotation", DEADLINE, |a| {
        weights(a) == five && a["e"]["in_rotation"] == true
    })
    .await;
    // 40/30/20/10/100: a cycle of 20 picks, 10 of them e.
    let after = post_and_drain(&d, "five", 1000).await;
    assert_eq!(
        delta(&before, &after),
        counts(&[("a", 200), ("b", 150), ("c", 100), ("d", 50), ("e", 500)])
    );
    assert_eq!(after["total_dead_lettered"], 0);
}

/// b takes 3 s per packet and delivers one at a time, so when it is
/// deleted it holds one packet in delivery and the rest of its share
/// queued: the one being delivered completes (on the deleted analyzer,
/// whose counters leave the stats), every queued one goes elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_analyzer_leaves_and_its_queued_packets_go_elsewhere() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "delete").await;
    ns.hold_lease("phantom").await;
    for manifest in [
        simulated("a", 40, 0),
        simulated("b", 30, 3000),
        simulated("c", 20, 0),
        simulated("d", 10, 0),
    ] {
        ns.apply_ok(&manifest).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(
        &cluster,
        &ns.name,
        "one",
        dir.path(),
        "queue: {analyzer_concurrency: 1}\n",
    )
    .await;
    wait_for_four(&d).await;

    let posted = Instant::now();
    d.post_logs(&packets("queued", 100)).await.expect(202);
    let stats = d.stats().await;
    let b = &stats["analyzers"]["b"];
    assert_eq!(b["routed_count"], 30, "{stats}");
    assert_eq!(b["processed_count"], 0, "{stats}");
    eventually("a, c and d to deliver their 70", DEADLINE, || async {
        let stats = d.stats().await;
        let done: u64 = processed(&stats).values().sum();
        if done == 70 {
            Ok(())
        } else {
            Err(stats.to_string())
        }
    })
    .await;

    ns.kubectl(&["delete", "analyzer", "b", "--wait=false"], None)
        .await
        .ok("kubectl delete analyzer b");
    let three = expected_weights(&[("a", 40), ("c", 20), ("d", 10)]);
    analyzers_where(&d, "b out of the fleet", DEADLINE, |a| weights(a) == three).await;
    // Still inside b's first 3 s delivery: it has delivered nothing yet.
    assert!(
        posted.elapsed() < Duration::from_millis(2500),
        "b was deleted {:?} after the packets came, too late for this test's timing",
        posted.elapsed()
    );

    let stats = d.drained().await;
    assert_eq!(stats["total_packets_received"], 100);
    assert_eq!(stats["total_dead_lettered"], 0);
    assert!(d.dead_letter().await.is_empty());
    // Nothing lost: 100 accepted, none in flight, none dead: every packet
    // was delivered, by a/c/d or by b before it was gone.
    let elsewhere: u64 = processed(&stats).values().sum();
    let by_b = 100 - elsewhere;
    assert_eq!(
        by_b,
        1,
        "only the packet b was delivering when deleted may end at b; the {} queued behind it \
         must go to a, c or d (b delivered {by_b}); stats: {stats}",
        30 - 1
    );
}

/// Every status write of the leader, and any change of an Analyzer that
/// leaves its weight and health alone (a label), is a watch event; none of
/// them changes the rotation, so a split over whole cycles stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_that_change_no_weight_keep_the_split_exact() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "noop").await;
    apply_four_defaults(&ns, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    wait_for_four(&d).await;
    wait_leader(&d, true).await;
    let before = d.stats().await;

    // 6 requests of 5 packets: 30 picks, three whole cycles of 10.
    for round in 0..6 {
        d.post_logs(&packets(&format!("round-{round}"), 5))
            .await
            .expect(202);
        ns.kubectl(
            &["label", "analyzer", "d", &format!("round={round}"), "--overwrite"],
            None,
        )
        .await
        .ok("kubectl label");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let after = d.drained().await;
    assert_eq!(
        delta(&before, &after),
        counts(&[("a", 12), ("b", 9), ("c", 6), ("d", 3)]),
        "30 packets over 40/30/20/10 with no change of weight or health"
    );
}

// ---------------------------------------------------------------- health, status, Events

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forcing_an_analyzer_unhealthy_shows_in_status_and_events() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "health").await;
    apply_four_defaults(&ns, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    wait_for_four(&d).await;
    wait_leader(&d, true).await;
    status_where(&ns, "b", "b's first status", |s| s["healthy"] == true).await;

    ns.patch_analyzer("b", &json!({"spec": {"health": "ForceUnhealthy"}}))
        .await;
    analyzers_where(&d, "b out of the rotation", DEADLINE, |a| {
        a["b"]["is_healthy"] == false && a["b"]["in_rotation"] == false
    })
    .await;
    let before = d.stats().await;
    let out = post_and_drain(&d, "without-b", 200).await;
    let moved = delta(&before, &out);
    assert_eq!(moved["b"], 0, "b forced unhealthy got traffic: {moved:?}");
    assert_eq!(moved.values().sum::<u64>(), 200);

    let status = status_where(&ns, "b", "b's status healthy false", |s| {
        s["healthy"] == false && ready_condition(s)["status"] == "False"
    })
    .await;
    let ready = ready_condition(&status);
    assert_eq!(ready["reason"], "ForcedUnhealthy", "{status}");
    assert!(ready["lastTransitionTime"].is_string(), "{status}");
    let b = ns.get_json("analyzer", "b").await;
    assert_eq!(
        b["status"]["observedGeneration"], b["metadata"]["generation"],
        "the status describes the patched spec: {b}"
    );
    let event = event_about(&ns, "b", "Warning", "Unhealthy").await;
    assert!(
        event["message"]
            .as_str()
            .unwrap_or_default()
            .contains("ForcedUnhealthy"),
        "{event}"
    );
    // The others stay healthy.
    let a = ns.get_json("analyzer", "a").await;
    assert_eq!(a["status"]["healthy"], true, "{a}");

    ns.patch_analyzer("b", &json!({"spec": {"health": "Auto"}})).await;
    analyzers_where(&d, "b back in the rotation", DEADLINE, |a| {
        a["b"]["is_healthy"] == true && a["b"]["in_rotation"] == true
    })
    .await;
    let status = status_where(&ns, "b", "b's status healthy true", |s| {
        s["healthy"] == true && ready_condition(s)["status"] == "True"
    })
    .await;
    assert_ne!(ready_condition(&status)["reason"], "ForcedUnhealthy", "{status}");
    event_about(&ns, "b", "Normal", "Recovered").await;
    let back = post_and_drain(&d, "with-b", 100).await;
    assert!(delta(&out, &back)["b"] > 0, "b back in rotation got nothing");
}

// ---------------------------------------------------------------- validation

/// An Analyzer spec the API server refuses, and what kubectl's error must
/// say (the cases of `tests/fixtures/kubernetes/invalid-analyzers.yaml`).
#[derive(serde::Deserialize)]
struct InvalidAnalyzer {
    name: String,
    spec: Value,
    says: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_invalid_analyzers() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "invalid").await;
    let with_spec = |name: &str, spec: Value| {
        json!({
            "apiVersion": "logs-distributor.dev/v1alpha1",
            "kind": "Analyzer",
            "metadata": {"name": name},
            "spec": spec,
        })
    };
    let sim = json!({"processingTimeMs": 0, "failureRate": 0, "healthFailureRate": 0});
    let cases: Vec<InvalidAnalyzer> = fixtures::yaml("kubernetes/invalid-analyzers.yaml");
    for InvalidAnalyzer { name, spec, says } in cases {
        let out = ns.apply(&with_spec(&name, spec.clone())).await;
        assert!(
            !out.status.success(),
            "kubectl apply accepted {name} ({spec}): {}",
            out.stdout
        );
        for part in &says {
            assert!(
                out.stderr.contains(part),
                "refusing {name} ({spec}), kubectl should say {part:?}; it said: {}",
                out.stderr
            );
        }
    }
    let listed = ns.kubectl(&["get", "analyzers", "-o", "name"], None).await;
    assert_eq!(
        listed.ok("kubectl get analyzers").trim(),
        "",
        "refused Analyzers were stored"
    );
    // The same manifests, made valid, are accepted.
    ns.apply_ok(&with_spec("valid", json!({"weight": 1000, "simulated": sim})))
        .await;
    ns.apply_ok(&with_spec(
        "valid-endpoint",
        json!({"weight": 0, "endpoint": "http://127.0.0.1:9/", "maxBatchPackets": 1}),
    ))
    .await;
    ns.apply_ok(&with_spec(
        "valid-https",
        json!({
            "weight": 0,
            "endpoint": "https://127.0.0.1:9/v1/logs",
            "tls": {"ca": {"configMapKeyRef": {"name": "ca", "key": "ca.crt"}},
                    "clientCertificate": {"secretName": "client"}, "serverName": "collector"},
            "auth": {"basic": {"secretName": "credentials"}},
            "headers": {"X-Scope-OrgID": "tenant-a"},
            "healthCheck": {"url": "http://127.0.0.1:13133/", "method": "HEAD", "expectedStatuses": [200, "202-204"]},
        }),
    ))
    .await;
}

/// `spec.maxBatchPackets` caps an Analyzer's deliveries: with 1, the
/// packets of one request reach it one per request; its twin without the
/// cap takes its share in fewer, larger requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzers_max_batch_packets_caps_its_deliveries() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "batch-cap").await;
    let capped = Receiver::start(ReceiverOptions::default()).await;
    let batched = Receiver::start(ReceiverOptions::default()).await;
    for (name, receiver, cap) in [("capped", &capped, json!(1)), ("batched", &batched, Value::Null)] {
        let mut spec = json!({"weight": 1, "endpoint": receiver.endpoint()});
        if !cap.is_null() {
            spec["maxBatchPackets"] = cap;
        }
        ns.apply_ok(&json!({
            "apiVersion": "logs-distributor.dev/v1alpha1",
            "kind": "Analyzer",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .await;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    analyzers_where(&d, "both analyzers", DEADLINE, |all| {
        all.get("capped").is_some() && all.get("batched").is_some()
    })
    .await;
    d.post_logs(&packets("cap", 20)).await.expect(202);
    let stats = d.drained().await;
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    let capped = capped.deliveries();
    assert_eq!(capped.len(), 10, "{capped:?}");
    assert!(
        capped.iter().all(|delivery| delivery.ids.len() == 1),
        "{capped:?}"
    );
    let batched = batched.deliveries();
    assert_eq!(
        batched.iter().map(|delivery| delivery.ids.len()).sum::<usize>(),
        10
    );
    assert!(batched.len() < 10, "{batched:?}");
}

// ---------------------------------------------------------------- kubectl output

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_analyzers_shows_the_printer_columns() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "columns").await;
    let dir = tempfile::tempdir().unwrap();
    let remote = AnalyzerProcess::start(dir.path(), "remote", &[]).await;
    // No status until a distributor leads.
    ns.hold_lease("phantom").await;
    apply_four_defaults(&ns, 0).await;
    ns.apply_ok(&json!({
        "apiVersion": "logs-distributor.dev/v1alpha1",
        "kind": "Analyzer",
        "metadata": {"name": "remote"},
        "spec": {"weight": 10, "endpoint": remote.endpoint()},
    }))
    .await;
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    analyzers_where(&d, "five analyzers", DEADLINE, |a| weights(a).len() == 5).await;
    let stats = post_and_drain(&d, "columns", 110).await;
    assert_eq!(stats["total_dead_lettered"], 0);
    assert_eq!(
        remote.records().len(),
        10,
        "the remote analyzer got its 10 of 110"
    );

    let get = || async {
        let out = ns.kubectl(&["get", "analyzers"], None).await;
        table(out.ok("kubectl get analyzers"))
    };
    let (header, rows) = get().await;
    assert_eq!(
        header,
        [
            "NAME",
            "WEIGHT",
            "HEALTHY",
            "SHARE",
            "PROCESSED",
            "ERRORS",
            "ENDPOINT",
            "SERVICE",
            "ENDPOINTS",
            "AGE"
        ]
    );
    assert_eq!(rows.len(), 5, "{rows:?}");
    for row in &rows {
        assert_eq!(row["HEALTHY"], "", "no status yet: {row:?}");
        assert_eq!(row["SHARE"], "", "no status yet: {row:?}");
    }

    // The distributor takes the Lease once the phantom's is gone.
    ns.kubectl(&["delete", "lease", kube::LEASE], None)
        .await
        .ok("kubectl delete lease");
    wait_leader(&d, true).await;
    let rows = eventually_every("SHARE in every row", DEADLINE, KUBECTL_POLL, || async {
        let (_, rows) = get().await;
        let a_share = rows
            .iter()
            .find(|r| r["NAME"] == "a")
            .and_then(|r| r["SHARE"].parse::<f64>().ok())
            .unwrap_or(0.0);
        // Each replica's entry is written on its own schedule: wait until
        // the totals cover every analyzer's.
        let total: f64 = rows.iter().filter_map(|r| r["SHARE"].parse::<f64>().ok()).sum();
        if rows.len() == 5
            && rows.iter().all(|r| !r["SHARE"].is_empty())
            && a_share > 0.0
            && (total - 100.0).abs() < 0.1
        {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await;
    let by_name: BTreeMap<&str, &BTreeMap<String, String>> =
        rows.iter().map(|r| (r["NAME"].as_str(), r)).collect();
    for (name, weight) in [
        ("a", "40"),
        ("b", "30"),
        ("c", "20"),
        ("d", "10"),
        ("remote", "10"),
    ] {
        let row = by_name[name];
        assert_eq!(row["WEIGHT"], weight, "{row:?}");
        assert_eq!(row["HEALTHY"], "true", "{row:?}");
        assert!(!row["AGE"].is_empty(), "{row:?}");
    }
    assert_eq!(
        by_name["a"]["ENDPOINT"], "",
        "a simulated analyzer has no endpoint"
    );
    assert_eq!(
        (
            by_name["remote"]["SERVICE"].as_str(),
            by_name["remote"]["ENDPOINTS"].as_str()
        ),
        ("", ""),
        "no Service"
    );
    assert_eq!(by_name["remote"]["ENDPOINT"], remote.endpoint());
    let total: f64 = rows.iter().map(|r| r["SHARE"].parse::<f64>().unwrap()).sum();
    assert!((total - 100.0).abs() < 0.1, "shares add up to {total}: {rows:?}");
}

// ---------------------------------------------------------------- leader election

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_elect_one_status_writer_and_fail_over() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "lease").await;
    apply_four_defaults(&ns, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let one = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    let two = distributor(&cluster, &ns.name, "two", dir.path(), "").await;
    wait_for_four(&one).await;
    wait_for_four(&two).await;

    let holder = eventually_every(
        "one replica to hold the Lease",
        DEADLINE,
        KUBECTL_POLL,
        || async {
            let holder = ns.lease_holder().await.unwrap_or_default();
            let (r1, r2) = (kube_readiness(&one).await, kube_readiness(&two).await);
            let consistent = match holder.as_str() {
                "one" => r1["leader"] == true && r2["leader"] == false,
                "two" => r2["leader"] == true && r1["leader"] == false,
                _ => false,
            };
            if consistent {
                Ok(holder)
            } else {
                Err(format!("holder {holder:?}, one {r1}, two {r2}"))
            }
        },
    )
    .await;
    let (mut leader, follower, follower_id) = if holder == "one" {
        (one, two, "two")
    } else {
        (two, one, "one")
    };
    // Stays put: the follower does not take a Lease that is being renewed.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(ns.lease_holder().await.as_deref(), Some(holder.as_str()));
    assert_eq!(kube_readiness(&follower).await["leader"], false);

    // Both route, each with its own counters.
    let on_leader = post_and_drain(&leader, "leader", 100).await;
    let on_follower = post_and_drain(&follower, "follower", 300).await;
    assert_eq!(processed(&on_leader).values().sum::<u64>(), 100);
    assert_eq!(processed(&on_follower).values().sum::<u64>(), 300);
    // The status counts both.
    let leader_a = processed(&on_leader)["a"];
    let follower_a = processed(&on_follower)["a"];
    status_where(&ns, "a", "a's processedCount from both replicas", |s| {
        s["processedCount"] == leader_a + follower_a
    })
    .await;

    signal(leader.pid(), "KILL");
    let killed = Instant::now();
    leader.wait_exit(DEADLINE).await;
    eventually_every(
        "the follower to take the Lease",
        Duration::from_secs(6),
        Duration::from_millis(100),
        || async {
            let holder = ns.lease_holder().await.unwrap_or_default();
            let readiness = kube_readiness(&follower).await;
            if holder == follower_id && readiness["leader"] == true {
                Ok(())
            } else {
                Err(format!("holder {holder:?}, follower {readiness}"))
            }
        },
    )
    .await;
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(6),
        "takeover after {took:?}, lease 3 s"
    );
    let lease = ns.get_json("lease", kube::LEASE).await;
    assert!(
        lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) >= 1,
        "{lease}"
    );

    // The new leader keeps the totals, and keeps them current.
    status_where(&ns, "a", "a's processedCount from the new leader", |s| {
        s["processedCount"] == leader_a + follower_a
    })
    .await;
    let more = post_and_drain(&follower, "after", 100).await;
    let now_a = processed(&more)["a"];
    assert!(now_a > follower_a);
    status_where(&ns, "a", "a's processedCount updated", |s| {
        s["processedCount"] == leader_a + now_a
    })
    .await;
}

// ---------------------------------------------------------------- the API server stopped

/// SIGSTOP to a process; SIGCONT when dropped (also when the test fails).
struct Stopped(u32);

impl Stopped {
    fn stop(pid: u32) -> Stopped {
        signal(pid, "STOP");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

/// The API server frozen for 10 s (SIGSTOP: connections hang, nothing is
/// refused) under load. Runs on a control plane of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_goes_on_while_the_api_server_is_stopped() {
    let _gate = beside_others().await;
    let private = PrivateCluster::up("stop").await;
    let cluster = private.cluster.clone();
    let ns = Namespace::create(&cluster, "stop").await;
    apply_four_defaults(&ns, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(&cluster, &ns.name, "solo", dir.path(), "").await;
    wait_for_four(&d).await;
    wait_leader(&d, true).await;

    let stopped = Stopped::stop(cluster.apiserver_pid());
    let since = Instant::now();
    let mut posted = 0u64;
    let mut round = 0;
    let mut saw_disconnected = None;
    let mut saw_not_leader = None;
    while since.elapsed() < Duration::from_secs(10) {
        d.post_logs(&packets(&format!("stopped-{round}"), 20))
            .await
            .expect(202);
        posted += 20;
        round += 1;
        let ready = d.get("/readyz").await;
        assert_eq!(ready.status, 200, "{}", ready.text);
        let kube = &ready.json["kubernetes"];
        if kube["connected"] == false && saw_disconnected.is_none() {
            saw_disconnected = Some(since.elapsed());
        }
        if kube["leader"] == false && saw_not_leader.is_none() {
            saw_not_leader = Some(since.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Delivered while the API server is still stopped.
    let stats = d.drained().await;
    assert_eq!(stats["total_packets_received"], posted);
    assert_eq!(processed(&stats).values().sum::<u64>(), posted);
    assert_eq!(stats["total_dead_lettered"], 0);
    let readiness_while_stopped = kube_readiness(&d).await;
    drop(stopped);

    // The watch resumes: a new Analyzer is used.
    ns.apply_ok(&simulated("e", 100, 0)).await;
    analyzers_where(&d, "e after the API server is back", DEADLINE, |a| {
        a["e"]["in_rotation"] == true
    })
    .await;
    let before = d.stats().await;
    let after = post_and_drain(&d, "after", 200).await;
    assert!(delta(&before, &after)["e"] > 0, "e got nothing");
    assert_eq!(after["total_dead_lettered"], 0);
    eventually("connected and leading again", DEADLINE, || async {
        let kube = kube_readiness(&d).await;
        if kube["connected"] == true && kube["leader"] == true {
            Ok(())
        } else {
            Err(kube.to_string())
        }
    })
    .await;
    status_where(&ns, "e", "e's status written after the stop", |s| {
        s["healthy"] == true
    })
    .await;

    // What /readyz said while the API server did not answer: a replica
    // that cannot renew the Lease for longer than the Lease lasts must stop
    // claiming it (another could hold it by then), and a watch that gets
    // nothing from a frozen API server is not connected.
    let mut wrong = Vec::new();
    if saw_not_leader.is_none_or(|after| after > Duration::from_secs(5)) {
        wrong.push(format!(
            "leader false only after {saw_not_leader:?}: the 3 s Lease could not be renewed from the start"
        ));
    }
    if saw_disconnected.is_none() {
        wrong.push("connected stayed true although the API server answered nothing for 10 s".to_string());
    }
    assert!(
        wrong.is_empty(),
        "/readyz while the API server was stopped: {wrong:?} (at the end of the stop: \
         {readiness_while_stopped})"
    );
}

// ---------------------------------------------------------------- RBAC

/// The distributor runs as the ServiceAccount of `manifests/rbac.yaml`,
/// with nothing more than its namespaced Role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributor_runs_with_the_rights_of_manifests_rbac() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "rbac").await;
    apply_four_defaults(&ns, 0).await;
    ns.apply_file(&kube::repo_file("manifests/rbac.yaml")).await;
    let dir = tempfile::tempdir().unwrap();
    let account = ns.as_service_account("logs-distributor", dir.path()).await;
    // The kubeconfig really is the restricted account.
    let elsewhere = account
        .kubectl(&["get", "analyzers", "-n", "default"], None)
        .await;
    assert!(
        !elsewhere.status.success(),
        "the account lists Analyzers of another namespace"
    );
    assert!(elsewhere.stderr.contains("forbidden"), "{}", elsewhere.stderr);
    let here = account
        .kubectl(&["get", "analyzers", "-n", &ns.name, "-o", "name"], None)
        .await;
    assert_eq!(here.ok("kubectl get analyzers as the account").lines().count(), 4);

    let d = distributor(&account, &ns.name, "one", dir.path(), "").await;
    wait_for_four(&d).await;
    wait_leader(&d, true).await;
    assert_eq!(ns.lease_holder().await.as_deref(), Some("one"));
    let stats = post_and_drain(&d, "rbac", 100).await;
    let a = processed(&stats)["a"];
    status_where(&ns, "a", "a's status written by the account", |s| {
        s["processedCount"] == a
    })
    .await;
    ns.patch_analyzer("c", &json!({"spec": {"health": "ForceUnhealthy"}}))
        .await;
    event_about(&ns, "c", "Warning", "Unhealthy").await;
    status_where(&ns, "c", "c's status healthy false", |s| s["healthy"] == false).await;
    let log = d.stderr();
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "the distributor was refused something:\n{log}"
    );
}
