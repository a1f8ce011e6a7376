//! Service-backed Analyzers (`spec.service`) against a real kube-apiserver:
//! the distributor follows the Service's EndpointSlices and sends to each
//! ready endpoint, the Analyzer's weight split evenly among them.
//!
//! envtest runs no kubelet and no EndpointSlice controller, so each test
//! writes the slices itself, as the controller would: one slice per "pod"
//! (the pods are reference analyzers on this machine's non-loopback
//! address, which the API server accepts in a slice, unlike 127.0.0.1; the
//! ports differ, hence a slice each). Counts per endpoint are the
//! analyzers' own records.

use crate::support::analyzers::AnalyzerProcess;
use crate::support::distributor::Distributor;
use crate::support::http::{processed, Api};
use crate::support::kube::{
    analyzers_where, distributor, event_about, host_address, simulated, table, Cluster, Namespace,
    KUBECTL_POLL,
};
use crate::support::packets::numbered_packets;
use crate::support::poll::{eventually_every, DEADLINE};
use crate::support::serial::beside_others;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

/// The Service the Analyzers name.
const SERVICE: &str = "analyzer";

async fn shared() -> Cluster {
    tokio::task::spawn_blocking(Cluster::shared)
        .await
        .expect("control plane set-up")
}

/// Reference analyzers named `names` on this machine's address, each with
/// the flags `extra` gives it.
async fn start_pods(dir: &Path, names: &[(&str, &[&str])]) -> Vec<AnalyzerProcess> {
    let host = IpAddr::V4(host_address());
    let mut pods = Vec::new();
    for (name, extra) in names {
        pods.push(AnalyzerProcess::start_on(dir, name, host, extra).await);
    }
    pods
}

/// An endpoint that is ready, as the EndpointSlice controller writes it.
fn ready() -> Value {
    json!({"ready": true, "serving": true, "terminating": false})
}

/// The EndpointSlice of `pod` (its own: the ports differ), with `conditions`.
fn slice(pod: &AnalyzerProcess, conditions: Value) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{SERVICE}-{}", pod.name),
            "labels": {"kubernetes.io/service-name": SERVICE},
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [pod.host.to_string()],
            "conditions": conditions,
            "targetRef": {"kind": "Pod", "name": pod.name},
        }],
        "ports": [{"name": "http", "port": pod.port, "protocol": "TCP"}],
    })
}

/// An Analyzer backed by the Service's port `http`.
fn service_analyzer(name: &str, weight: i64) -> Value {
    json!({
        "apiVersion": "logs-distributor.dev/v1alpha1",
        "kind": "Analyzer",
        "metadata": {"name": name},
        "spec": {"weight": weight, "service": {"name": SERVICE, "port": "http"}},
    })
}

/// The fleet id of `pod` as an endpoint of Analyzer `name`.
fn member(name: &str, pod: &AnalyzerProcess) -> String {
    format!("{name}/{}", pod.address())
}

/// Waits until the analyzers in rotation are exactly `ids`.
async fn in_rotation(api: &Api, ids: &[String]) {
    let wanted: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    analyzers_where(api, &format!("exactly {wanted:?} in rotation"), DEADLINE, |all| {
        let rotating: BTreeSet<&str> = all
            .as_object()
            .map(|all| {
                all.iter()
                    .filter(|(_, a)| a["in_rotation"] == true)
                    .map(|(id, _)| id.as_str())
                    .collect()
            })
            .unwrap_or_default();
        rotating == wanted
    })
    .await;
}

/// Posts the packets `{prefix}-000000`... and waits until nothing is in
/// flight; answers their ids.
async fn post_and_drain(api: &Api, prefix: &str, count: usize) -> Vec<String> {
    let (body, ids) = numbered_packets(prefix, 0, count);
    api.post_logs(&body).await.expect(202);
    let stats = api.drained().await;
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    ids
}

/// How many of `ids` each pod recorded, by pod name.
fn received(pods: &[AnalyzerProcess], ids: &[String]) -> BTreeMap<String, usize> {
    let ids: BTreeSet<&String> = ids.iter().collect();
    pods.iter()
        .map(|pod| {
            let n = pod.records().iter().filter(|id| ids.contains(id)).count();
            (pod.name.clone(), n)
        })
        .collect()
}

fn by_pod(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(name, n)| (name.to_string(), *n)).collect()
}

/// Fails unless every one of `ids` was received by one of `pods`.
fn all_received(pods: &[AnalyzerProcess], ids: &[String]) {
    let seen: BTreeSet<String> = pods.iter().flat_map(AnalyzerProcess::records).collect();
    let missing: Vec<&String> = ids.iter().filter(|id| !seen.contains(*id)).collect();
    assert!(missing.is_empty(), "acknowledged but never received: {missing:?}");
}

/// The Analyzer `name`'s status once `check` accepts it.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_endpoints_weighted_30_beside_an_analyzer_weighted_70_take_exactly_10_each_of_every_100() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "svc-split").await;
    // No status writer: its writes would be events too (see kubernetes.rs).
    ns.hold_lease("phantom").await;
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods(dir.path(), &[("p1", &[]), ("p2", &[]), ("p3", &[])]).await;
    for pod in &pods {
        ns.apply_ok(&slice(pod, ready())).await;
    }
    ns.apply_ok(&service_analyzer("svc", 30)).await;
    ns.apply_ok(&simulated("other", 70, 0)).await;
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    let mut ids: Vec<String> = pods.iter().map(|pod| member("svc", pod)).collect();
    ids.push("other".into());
    in_rotation(&d, &ids).await;

    let sent = post_and_drain(&d, "split", 1000).await;
    assert_eq!(
        received(&pods, &sent),
        by_pod(&[("p1", 100), ("p2", 100), ("p3", 100)])
    );
    let stats = d.stats().await;
    assert_eq!(processed(&stats)["other"], 700, "{stats}");
    for pod in &pods {
        assert_eq!(processed(&stats)[&member("svc", pod)], 100, "{stats}");
    }
}

/// p2 takes 3 s per delivery (within the 5 s delivery timeout) and delivers
/// one packet at a time, so when its slice
/// says it terminates it holds one packet in delivery and the rest of its
/// share queued: the one in delivery completes at p2 (it still serves),
/// every queued one goes to its siblings, and no new packet reaches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_endpoint_takes_no_new_packet_and_its_queue_goes_to_its_siblings() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "svc-terminating").await;
    ns.hold_lease("phantom").await;
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods(
        dir.path(),
        &[("p1", &[]), ("p2", &["--latency-ms", "3000"]), ("p3", &[])],
    )
    .await;
    for pod in &pods {
        ns.apply_ok(&slice(pod, ready())).await;
    }
    let mut one_at_a_time = service_analyzer("svc", 10);
    one_at_a_time["spec"]["maxBatchPackets"] = json!(1);
    ns.apply_ok(&one_at_a_time).await;
    let d = distributor(
        &cluster,
        &ns.name,
        "one",
        dir.path(),
        "queue: {analyzer_concurrency: 1}\n",
    )
    .await;
    let all: Vec<String> = pods.iter().map(|pod| member("svc", pod)).collect();
    in_rotation(&d, &all).await;

    let posted = Instant::now();
    let (body, first) = numbered_packets("first", 0, 30);
    d.post_logs(&body).await.expect(202);
    let stats = d.stats().await;
    assert_eq!(
        stats["analyzers"][&member("svc", &pods[1])]["routed_count"],
        10,
        "{stats}"
    );
    let terminating = json!({"ready": false, "serving": true, "terminating": true});
    ns.apply_ok(&slice(&pods[1], terminating)).await;
    in_rotation(&d, &[all[0].clone(), all[2].clone()]).await;
    assert!(
        posted.elapsed() < Duration::from_millis(2500),
        "p2 left {:?} after the packets came, too late for this test's timing",
        posted.elapsed()
    );
    let (body, second) = numbered_packets("second", 0, 30);
    d.post_logs(&body).await.expect(202);

    let stats = d.drained().await;
    assert_eq!(stats["total_packets_received"], 60);
    assert_eq!(stats["total_dead_lettered"], 0);
    assert!(d.dead_letter().await.is_empty());
    let everything: Vec<String> = first.iter().chain(&second).cloned().collect();
    all_received(&pods, &everything);
    assert_eq!(
        received(&pods, &second)["p2"],
        0,
        "no new packet for a terminating endpoint"
    );
    assert_eq!(
        received(&pods, &first)["p2"],
        1,
        "only the packet p2 was delivering when it left ends there; its 9 queued go to p1 and p3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_join_and_leave_with_their_endpoint_slices() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "svc-members").await;
    ns.hold_lease("phantom").await;
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods(dir.path(), &[("p1", &[]), ("p2", &[]), ("p3", &[])]).await;
    let ids: Vec<String> = pods.iter().map(|pod| member("svc", pod)).collect();
    for pod in &pods[..2] {
        ns.apply_ok(&slice(pod, ready())).await;
    }
    ns.apply_ok(&service_analyzer("svc", 10)).await;
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    in_rotation(&d, &ids[..2]).await;
    let sent = post_and_drain(&d, "two", 100).await;
    assert_eq!(
        received(&pods, &sent),
        by_pod(&[("p1", 50), ("p2", 50), ("p3", 0)])
    );

    ns.apply_ok(&slice(&pods[2], ready())).await;
    in_rotation(&d, &ids).await;
    let sent = post_and_drain(&d, "three", 300).await;
    assert_eq!(
        received(&pods, &sent),
        by_pod(&[("p1", 100), ("p2", 100), ("p3", 100)]),
        "a pod added later takes its even share at once"
    );

    ns.apply_ok(&slice(&pods[0], json!({"ready": false}))).await;
    in_rotation(&d, &ids[1..]).await;
    let sent = post_and_drain(&d, "not-ready", 100).await;
    assert_eq!(
        received(&pods, &sent),
        by_pod(&[("p1", 0), ("p2", 50), ("p3", 50)])
    );

    ns.kubectl(&["delete", "endpointslice", &format!("{SERVICE}-p2")], None)
        .await
        .ok("kubectl delete endpointslice");
    in_rotation(&d, &ids[2..]).await;
    let sent = post_and_drain(&d, "deleted", 50).await;
    assert_eq!(
        received(&pods, &sent),
        by_pod(&[("p1", 0), ("p2", 0), ("p3", 50)])
    );
}

/// Three ready pods behind the Service (a slice each), an Analyzer `svc`
/// of weight 10 naming it, and a distributor with all three in rotation.
/// Fields drop in order: the distributor, the pods, their directory, then
/// the namespace.
struct ThreeEndpoints {
    d: Distributor,
    ids: Vec<String>,
    pods: Vec<AnalyzerProcess>,
    _dir: tempfile::TempDir,
    ns: Namespace,
}

async fn three_endpoints(namespace: &str) -> ThreeEndpoints {
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, namespace).await;
    let dir = tempfile::tempdir().unwrap();
    let pods = start_pods(dir.path(), &[("p1", &[]), ("p2", &[]), ("p3", &[])]).await;
    let ids: Vec<String> = pods.iter().map(|pod| member("svc", pod)).collect();
    for pod in &pods {
        ns.apply_ok(&slice(pod, ready())).await;
    }
    ns.apply_ok(&service_analyzer("svc", 10)).await;
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    in_rotation(&d, &ids).await;
    ThreeEndpoints {
        d,
        ids,
        pods,
        _dir: dir,
        ns,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_endpoint_leaves_the_rotation_while_its_siblings_stay() {
    let _gate = beside_others().await;
    let ThreeEndpoints {
        d,
        ids,
        pods,
        ns,
        _dir,
    } = three_endpoints("svc-health").await;

    pods[1].set_health(false).await;
    in_rotation(&d, &[ids[0].clone(), ids[2].clone()]).await;
    let sent = post_and_drain(&d, "sick", 200).await;
    assert_eq!(
        received(&pods, &sent),
        by_pod(&[("p1", 100), ("p2", 0), ("p3", 100)])
    );
    let status = status_where(&ns, "svc", "p2 unhealthy in the status", |s| {
        s["readyEndpoints"] == "2/3"
    })
    .await;
    let p2 = status["endpoints"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["pod"] == "p2"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&p2["ready"], &p2["healthy"], &p2["inRotation"]),
        (&json!(true), &json!(false), &json!(false)),
        "{status}"
    );
    assert_eq!(
        status["healthy"], true,
        "two endpoints still take packets: {status}"
    );
    let event = event_about(&ns, "svc", "Warning", "EndpointUnhealthy").await;
    let note = event["message"].as_str().unwrap_or_default();
    assert!(note.contains(&pods[1].address().to_string()), "{event}");

    pods[1].set_health(true).await;
    in_rotation(&d, &ids).await;
    let sent = post_and_drain(&d, "well", 300).await;
    assert_eq!(
        received(&pods, &sent),
        by_pod(&[("p1", 100), ("p2", 100), ("p3", 100)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_lists_the_endpoints_and_counts_over_endpoints_that_left_never_go_back() {
    let _gate = beside_others().await;
    let ThreeEndpoints {
        d,
        ids,
        pods,
        ns,
        _dir,
    } = three_endpoints("svc-status").await;
    post_and_drain(&d, "before", 300).await;

    let status = status_where(&ns, "svc", "300 processed over 3/3 endpoints", |s| {
        s["readyEndpoints"] == "3/3" && s["processedCount"] == 300
    })
    .await;
    assert_eq!(status["healthy"], true, "{status}");
    let endpoints: Vec<(String, Value, Value)> = status["endpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let pod = e["pod"].as_str().unwrap_or_default().to_string();
            (pod, e["address"].clone(), e["inRotation"].clone())
        })
        .collect();
    let expected: Vec<(String, Value, Value)> = pods
        .iter()
        .map(|pod| (pod.name.clone(), json!(pod.address().to_string()), json!(true)))
        .collect();
    let sorted = |mut v: Vec<(String, Value, Value)>| {
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    assert_eq!(sorted(endpoints), sorted(expected), "{status}");

    // kubectl's Table request: the SERVICE and ENDPOINTS columns.
    let out = ns.kubectl(&["get", "analyzers"], None).await;
    let (header, rows) = table(out.ok("kubectl get analyzers"));
    assert_eq!(
        &header[header.len() - 4..],
        ["ENDPOINT", "SERVICE", "ENDPOINTS", "AGE"]
    );
    assert_eq!(
        (
            rows[0]["ENDPOINT"].as_str(),
            rows[0]["SERVICE"].as_str(),
            rows[0]["ENDPOINTS"].as_str()
        ),
        ("", SERVICE, "3/3"),
        "{rows:?}"
    );

    // p3 goes: the counts it delivered stay in the totals.
    ns.kubectl(&["delete", "endpointslice", &format!("{SERVICE}-p3")], None)
        .await
        .ok("kubectl delete endpointslice");
    in_rotation(&d, &ids[..2]).await;
    let seen = std::sync::Mutex::new(Vec::new());
    status_where(&ns, "svc", "2/2 endpoints", |s| {
        seen.lock()
            .unwrap()
            .push(s["processedCount"].as_i64().unwrap_or(0));
        s["readyEndpoints"] == "2/2" && s["endpoints"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    post_and_drain(&d, "after", 300).await;
    let status = status_where(&ns, "svc", "600 processed", |s| {
        seen.lock()
            .unwrap()
            .push(s["processedCount"].as_i64().unwrap_or(0));
        s["processedCount"] == 600
    })
    .await;
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && seen.iter().all(|n| *n >= 300),
        "processedCount went back: {seen:?}"
    );
    assert_eq!(status["replicas"][0]["name"], "one", "{status}");
    assert_eq!(status["replicas"][0]["processedCount"], 600, "{status}");

    // Without a Service, no endpoints in the status.
    ns.patch_analyzer(
        "svc",
        &json!({"spec": {"service": null, "endpoint": pods[0].endpoint()}}),
    )
    .await;
    in_rotation(&d, &["svc".to_string()]).await;
    let status = status_where(&ns, "svc", "no endpoints without a Service", |s| {
        s.get("endpoints").is_none() && s.get("readyEndpoints").is_none()
    })
    .await;
    assert!(status["processedCount"].as_i64().unwrap_or(0) >= 600, "{status}");
}
