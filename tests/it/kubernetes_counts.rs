//! An Analyzer's counts across replicas, against a real kube-apiserver
//! (`scripts/envtest.sh`) and real reference analyzers on loopback: each
//! replica writes its own entry of `status.replicas`, the leader derives
//! `processedCount`, `errorCount` and `trafficShare` from all of them, and
//! the totals equal what the analyzers received, go on across a leader
//! stopped (SIGTERM) or killed (SIGKILL) and a replica restarted, and never
//! go back nor run ahead of the analyzers. An entry that stops changing is
//! retired into `status.retired` with its counts kept, and a replica cut
//! off long enough to be retired does not count its deliveries twice. The
//! printer columns show the totals, in the CRD and in the API server's
//! Table.

use crate::support::analyzers::AnalyzerProcess;
use crate::support::distributor::Distributor;
use crate::support::http::processed;
use crate::support::kube::{
    analyzers_where, distributor_with_config, kube_readiness, restart_distributor, simulated, Cluster,
    Namespace, KUBECTL_POLL,
};
use crate::support::packets::packets;
use crate::support::poll::{eventually_every, DEADLINE};
use crate::support::serial::beside_others;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Longest wait for counts to reach the status (replica writes at most
/// every second, the leader's derivation after them).
const COUNTS_DEADLINE: Duration = Duration::from_secs(20);

async fn shared() -> Cluster {
    tokio::task::spawn_blocking(Cluster::shared)
        .await
        .expect("control plane set-up")
}

/// An Analyzer delivering to a reference analyzer.
fn http_analyzer(name: &str, weight: i64, endpoint: &str) -> Value {
    json!({
        "apiVersion": "logs-distributor.dev/v1alpha1",
        "kind": "Analyzer",
        "metadata": {"name": name},
        "spec": {"weight": weight, "endpoint": endpoint},
    })
}

/// Waits until `d` runs exactly the analyzers `a` and `b`.
async fn wait_for_a_and_b(d: &Distributor) {
    analyzers_where(d, "a and b running", DEADLINE, |all| {
        all.as_object().map(|a| a.keys().cloned().collect::<Vec<_>>()) == Some(vec!["a".into(), "b".into()])
    })
    .await;
}

/// Posts `count` packets with ids `{prefix}-N` to `d` and waits until
/// they are delivered; answers what `d` delivered to each analyzer so far.
async fn post_and_drain(d: &Distributor, prefix: &str, count: usize) -> BTreeMap<String, u64> {
    d.post_logs(&packets(prefix, count)).await.expect(202);
    processed(&d.drained().await)
}

/// The packets each analyzer received whose id starts with `{replica}-`:
/// what that replica delivered to it, counted at the analyzer.
fn delivered_by(analyzer: &AnalyzerProcess, replica: &str) -> i64 {
    let prefix = format!("{replica}-");
    analyzer.records().iter().filter(|id| id.starts_with(&prefix)).count() as i64
}

/// The entry of `replica` in `status.replicas`.
fn entry<'a>(status: &'a Value, replica: &str) -> Option<&'a Value> {
    status["replicas"]
        .as_array()
        .and_then(|all| all.iter().find(|e| e["name"] == replica))
}

/// Waits until the status of Analyzer `name` (served by `analyzer`) has
/// `processedCount` equal to the packets the analyzer received and, for
/// each of `replicas`, an entry equal to what that replica delivered to
/// it; answers the status.
async fn counts_match(ns: &Namespace, name: &str, analyzer: &AnalyzerProcess, replicas: &[&str]) -> Value {
    eventually_every(
        &format!("{name}'s status to count what it received"),
        COUNTS_DEADLINE,
        KUBECTL_POLL,
        || async {
            let status = ns.get_json("analyzer", name).await["status"].clone();
            let received = analyzer.records().len() as i64;
            let entries_match = replicas.iter().all(|replica| {
                entry(&status, replica).map(|e| e["processedCount"].as_i64())
                    == Some(Some(delivered_by(analyzer, replica)))
            });
            if status["processedCount"] == received && status["errorCount"] == 0 && entries_match {
                Ok(status)
            } else {
                Err(format!("received {received}, status {status}"))
            }
        },
    )
    .await
}

/// Waits until one of `candidates` holds the Lease and says it leads.
async fn leader_among(ns: &Namespace, candidates: &BTreeMap<String, Distributor>) -> String {
    eventually_every("a leader", DEADLINE, KUBECTL_POLL, || async {
        let holder = ns.lease_holder().await.unwrap_or_default();
        match candidates.get(&holder) {
            Some(d) if kube_readiness(d).await["leader"] == true => Ok(holder),
            _ => Err(format!("holder {holder:?}")),
        }
    })
    .await
}

/// Polls the totals of `a` and `b` and what their analyzers received,
/// until stopped; answers every sample `(name, processedCount, received)`.
struct Monitor {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(String, i64, i64)>>,
}

impl Monitor {
    fn start(cluster: &Cluster, ns: &str, analyzers: &[&AnalyzerProcess]) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let (cluster, ns, flag) = (cluster.clone(), ns.to_string(), stop.clone());
        let stats: Vec<(String, String)> = analyzers
            .iter()
            .map(|a| (a.name.clone(), a.url("/stats")))
            .collect();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut samples = Vec::new();
            while !flag.load(Ordering::Acquire) {
                let out = cluster
                    .kubectl(&["-n", &ns, "get", "analyzers", "-o", "json"], None)
                    .await;
                if let Ok(list) = serde_json::from_str::<Value>(&out.stdout) {
                    for (name, url) in &stats {
                        let item = list["items"]
                            .as_array()
                            .and_then(|items| items.iter().find(|i| i["metadata"]["name"] == name.as_str()));
                        let Some(total) = item.and_then(|i| i["status"]["processedCount"].as_i64()) else {
                            continue;
                        };
                        let received: Value = match http.get(url).send().await {
                            Ok(reply) => reply.json().await.unwrap_or(Value::Null),
                            Err(_) => continue,
                        };
                        if let Some(received) = received["packets_received"].as_i64() {
                            samples.push((name.clone(), total, received));
                        }
                    }
                }
                tokio::time::sleep(KUBECTL_POLL).await;
            }
            samples
        });
        Monitor { stop, task }
    }

    /// Stops polling; fails the test if a total went back or was ever above
    /// what its analyzer had received.
    async fn check(self) -> usize {
        self.stop.store(true, Ordering::Release);
        let samples = self.task.await.expect("the monitor");
        let mut last: BTreeMap<String, i64> = BTreeMap::new();
        for (name, total, received) in &samples {
            assert!(
                total <= received,
                "{name}: processedCount {total} ran ahead of the {received} packets received"
            );
            let before = last.insert(name.clone(), *total).unwrap_or(0);
            assert!(
                *total >= before,
                "{name}: processedCount went back from {before} to {total}"
            );
        }
        samples.len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_count_into_one_status_across_leader_changes() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "counts").await;
    let dir = tempfile::tempdir().unwrap();
    let a = AnalyzerProcess::start(dir.path(), "a", &[]).await;
    let b = AnalyzerProcess::start(dir.path(), "b", &[]).await;
    ns.apply_ok(&http_analyzer("a", 1, &a.endpoint())).await;
    ns.apply_ok(&http_analyzer("b", 3, &b.endpoint())).await;
    let mut replicas: BTreeMap<String, Distributor> = BTreeMap::new();
    // A drain long enough for the stopped leader's last packets.
    let yaml = config("15m", "5s");
    for name in ["one", "two", "three"] {
        let d = distributor_with_config(&cluster, &ns.name, name, dir.path(), &yaml).await;
        wait_for_a_and_b(&d).await;
        replicas.insert(name.to_string(), d);
    }
    let monitor = Monitor::start(&cluster, &ns.name, &[&a, &b]);

    // Each replica delivers its own share; 1:3 on every replica.
    for (name, count) in [("one", 40), ("two", 80), ("three", 120)] {
        let delivered = post_and_drain(&replicas[name], &format!("{name}-first"), count).await;
        assert_eq!(delivered["a"] as usize, count / 4, "{name}: {delivered:?}");
        assert_eq!(delivered["b"] as usize, count * 3 / 4, "{name}: {delivered:?}");
    }
    let all = ["one", "two", "three"];
    let status_a = counts_match(&ns, "a", &a, &all).await;
    let status_b = counts_match(&ns, "b", &b, &all).await;
    assert_eq!(status_a["processedCount"], 60, "{status_a}");
    assert_eq!(status_b["processedCount"], 180, "{status_b}");
    for (name, entry_a) in [("one", 10), ("two", 20), ("three", 30)] {
        let e = entry(&status_a, name).unwrap();
        assert_eq!(e["processedCount"], entry_a, "{e}");
        assert_eq!(e["errorCount"], 0, "{e}");
        assert!(e["lastUpdateTime"].is_string(), "{e}");
    }
    // The share of every replica's last minute: 60 of 240 and 180 of 240.
    eventually_every("shares over all replicas", COUNTS_DEADLINE, KUBECTL_POLL, || async {
        let a = ns.get_json("analyzer", "a").await["status"].clone();
        let b = ns.get_json("analyzer", "b").await["status"].clone();
        let routed = |status: &Value, name: &str| entry(status, name).map(|e| e["routedLastMinute"].clone());
        let each = [("one", 10), ("two", 20), ("three", 30)]
            .iter()
            .all(|(name, n)| routed(&a, name) == Some(json!(n)) && routed(&b, name) == Some(json!(n * 3)));
        if a["trafficShare"].as_f64() == Some(25.0) && b["trafficShare"].as_f64() == Some(75.0) && each {
            Ok(())
        } else {
            Err(format!("a {a}\nb {b}"))
        }
    })
    .await;
    printer_columns_show_the_totals(&ns).await;

    // The leader stopped: its last deliveries are counted once it drained,
    // a peer takes over, and the totals go on from where they were.
    let first = leader_among(&ns, &replicas).await;
    let mut stopped = replicas.remove(&first).unwrap();
    stopped
        .post_logs(&packets(&format!("{first}-last"), 20))
        .await
        .expect(202);
    stopped.sigterm();
    stopped.wait_exit(DEADLINE).await;
    assert!(
        stopped.stderr().contains("wrote this replica's last counts")
            && stopped.stderr().contains("entries=2"),
        "{}",
        stopped.stderr()
    );
    let second = leader_among(&ns, &replicas).await;
    for name in replicas.keys() {
        post_and_drain(&replicas[name], &format!("{name}-second"), 40).await;
    }
    counts_match(&ns, "a", &a, &all).await;
    let status_b = counts_match(&ns, "b", &b, &all).await;
    assert_eq!(
        entry(&status_b, &first).unwrap()["processedCount"],
        delivered_by(&b, &first),
        "the stopped leader's last deliveries are in its entry"
    );

    // The leader killed: nothing is lost of what it wrote, the last one
    // takes over.
    let mut killed = replicas.remove(&second).unwrap();
    assert!(killed.kill9());
    let third = leader_among(&ns, &replicas).await;
    post_and_drain(&replicas[&third], &format!("{third}-third"), 40).await;
    counts_match(&ns, "a", &a, &all).await;
    counts_match(&ns, "b", &b, &all).await;

    // The killed replica back, same name and volume: its entry goes on
    // from what it had, neither reset nor counted twice.
    restart_distributor(&mut killed, &cluster, &ns.name, &second, dir.path()).await;
    wait_for_a_and_b(&killed).await;
    post_and_drain(&killed, &format!("{second}-again"), 20).await;
    let status_a = counts_match(&ns, "a", &a, &all).await;
    let status_b = counts_match(&ns, "b", &b, &all).await;
    assert_eq!(
        status_a["processedCount"].as_i64().unwrap() + status_b["processedCount"].as_i64().unwrap(),
        240 + 20 + 80 + 40 + 20,
        "a {status_a}\nb {status_b}"
    );
    assert_eq!(status_a["retired"]["processedCount"], 0, "{status_a}");
    let samples = monitor.check().await;
    assert!(samples > 10, "the monitor saw {samples} samples");
}

/// `kubectl get analyzers` shows the totals: the CRD's printer columns and
/// the API server's Table.
async fn printer_columns_show_the_totals(ns: &Namespace) {
    let crd = ns
        .cluster
        .kubectl(&["get", "crd", "analyzers.logs-distributor.dev", "-o", "json"], None)
        .await;
    let crd: Value = serde_json::from_str(crd.ok("kubectl get crd")).unwrap();
    let columns: Vec<(String, String)> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["jsonPath"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (name, path) in [
        ("Weight", ".spec.weight"),
        ("Healthy", ".status.healthy"),
        ("Share", ".status.trafficShare"),
        ("Processed", ".status.processedCount"),
        ("Errors", ".status.errorCount"),
    ] {
        assert!(
            columns.contains(&(name.to_string(), path.to_string())),
            "{name} {path} not in {columns:?}"
        );
    }

    let table = table_of_analyzers(ns).await;
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let cell = |row: &Value, column: &str| {
        let at = names.iter().position(|n| *n == column).unwrap();
        row["cells"][at].clone()
    };
    let rows = table["rows"].as_array().unwrap();
    let row_a = rows.iter().find(|r| cell(r, "Name") == "a").unwrap();
    assert_eq!(cell(row_a, "Processed"), 60, "{row_a}");
    assert_eq!(cell(row_a, "Errors"), 0, "{row_a}");
    assert_eq!(cell(row_a, "Share"), 25.0, "{row_a}");
    assert_eq!(cell(row_a, "Weight"), 1, "{row_a}");
    assert_eq!(cell(row_a, "Healthy"), true, "{row_a}");

    let out = ns.kubectl(&["get", "analyzers"], None).await;
    let text = out.ok("kubectl get analyzers");
    let header: Vec<&str> = text.lines().next().unwrap().split_whitespace().collect();
    for column in ["WEIGHT", "HEALTHY", "SHARE", "PROCESSED", "ERRORS", "ENDPOINT", "AGE"] {
        assert!(header.contains(&column), "{column} not in {header:?}");
    }
    let row_b: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("b "))
        .unwrap()
        .split_whitespace()
        .collect();
    let at = |column: &str| header.iter().position(|h| *h == column).unwrap();
    assert_eq!(row_b[at("PROCESSED")], "180", "{text}");
    assert_eq!(row_b[at("ERRORS")], "0", "{text}");
    assert_eq!(row_b[at("SHARE")], "75", "{text}");
}

/// A client of the test's kubeconfig.
async fn kube_client(cluster: &Cluster) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .expect("client configuration");
    kube::Client::try_from(config).expect("client")
}

/// The Analyzers of `ns` as the API server's Table
/// (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).
async fn table_of_analyzers(ns: &Namespace) -> Value {
    let client = kube_client(&ns.cluster).await;
    let request = axum::http::Request::get(format!(
        "/apis/logs-distributor.dev/v1alpha1/namespaces/{}/analyzers",
        ns.name
    ))
    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
    .body(Vec::new())
    .unwrap();
    let text = client.request_text(request).await.expect("the Table");
    let table: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(table["kind"], "Table", "{table}");
    table
}

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
    assert!(busy.entry_writes() >= 10, "the entries follow the traffic: {busy:?}");
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
        eventually_every(&format!("{name}'s total"), COUNTS_DEADLINE, KUBECTL_POLL, || async {
            let status = ns.get_json("analyzer", name).await["status"].clone();
            if status["processedCount"] == want {
                Ok(())
            } else {
                Err(status.to_string())
            }
        })
        .await;
    }
    println!(
        "status writes in 5 s of traffic to 12 Analyzers: {} entry writes, {} leader writes",
        busy.entry_writes(),
        busy.leader_writes()
    );
}

/// A test configuration with `stale_replica_after` and `drain_timeout`.
fn config(stale_replica_after: &str, drain_timeout: &str) -> String {
    format!(
        "kubernetes: {{lease_duration: 3s, status_interval: 1s, stale_replica_after: {stale_replica_after}}}\n\
         retry: {{base_delay: 20ms}}\n\
         checkpoint: {{interval: 1h}}\n\
         shutdown: {{drain_timeout: {drain_timeout}}}\n\
         health: {{interval: 100ms}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_that_stop_changing_are_retired_and_never_counted_twice() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "counts-retire").await;
    let dir = tempfile::tempdir().unwrap();
    let a = AnalyzerProcess::start(dir.path(), "a", &[]).await;
    let b = AnalyzerProcess::start(dir.path(), "b", &[]).await;
    ns.apply_ok(&http_analyzer("a", 1, &a.endpoint())).await;
    ns.apply_ok(&http_analyzer("b", 1, &b.endpoint())).await;
    // Unchanged for 4 s, an entry is retired.
    let config = config("4s", "200ms");
    // "one" leads: the others are the ones that go.
    let one = distributor_with_config(&cluster, &ns.name, "one", dir.path(), &config).await;
    wait_for_a_and_b(&one).await;
    eventually_every("one to lead", DEADLINE, KUBECTL_POLL, || async {
        let holder = ns.lease_holder().await.unwrap_or_default();
        if holder == "one" && kube_readiness(&one).await["leader"] == true {
            Ok(())
        } else {
            Err(holder)
        }
    })
    .await;
    let mut two = distributor_with_config(&cluster, &ns.name, "two", dir.path(), &config).await;
    let cut_off = distributor_with_config(&cluster, &ns.name, "cut", dir.path(), &config).await;
    wait_for_a_and_b(&two).await;
    wait_for_a_and_b(&cut_off).await;
    let all = ["one", "two", "cut"];
    for (name, d) in all.iter().zip([&one, &two, &cut_off]) {
        post_and_drain(d, &format!("{name}-first"), 20).await;
    }
    counts_match(&ns, "a", &a, &all).await;

    // "two" killed: its entry stops changing and is retired, its counts kept.
    assert!(two.kill9());
    let retired = eventually_every("two's entry retired", COUNTS_DEADLINE, KUBECTL_POLL, || async {
        let status = ns.get_json("analyzer", "a").await["status"].clone();
        if entry(&status, "two").is_none() && status["retired"]["replicas"] == 1 {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
    .await;
    assert_eq!(retired["retired"]["processedCount"], delivered_by(&a, "two"), "{retired}");
    assert_eq!(retired["processedCount"], a.records().len() as i64, "{retired}");
    assert!(
        entry(&retired, "one").is_some(),
        "an idle live replica refreshes its entry: {retired}"
    );

    // "two" back: a new entry with only what it delivers now.
    restart_distributor(&mut two, &cluster, &ns.name, "two", dir.path()).await;
    wait_for_a_and_b(&two).await;
    post_and_drain(&two, "two-again", 10).await;
    let status = eventually_every("two's new entry", COUNTS_DEADLINE, KUBECTL_POLL, || async {
        let status = ns.get_json("analyzer", "a").await["status"].clone();
        let fresh = entry(&status, "two").map(|e| e["processedCount"].clone());
        if fresh == Some(json!(5)) && status["processedCount"] == a.records().len() as i64 {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
    .await;
    assert_eq!(status["processedCount"], 35, "{status}");

    // "cut" frozen long enough to be retired, then back: what it delivers
    // next counts once, on top of what was retired.
    cut_off.signal("STOP");
    let frozen = eventually_every("cut's entry retired", COUNTS_DEADLINE, KUBECTL_POLL, || async {
        let status = ns.get_json("analyzer", "a").await["status"].clone();
        if entry(&status, "cut").is_none() && status["retired"]["replicas"] == 2 {
            Ok(status)
        } else {
            Err(status.to_string())
        }
    })
    .await;
    cut_off.signal("CONT");
    assert_eq!(frozen["processedCount"], 35, "{frozen}");
    post_and_drain(&cut_off, "cut-again", 8).await;
    let status = eventually_every("cut counted once", COUNTS_DEADLINE, KUBECTL_POLL, || async {
        let status = ns.get_json("analyzer", "a").await["status"].clone();
        if status["processedCount"] == a.records().len() as i64
            && entry(&status, "cut").map(|e| e["processedCount"].clone()) == Some(json!(4))
        {
            Ok(status)
        } else {
            Err(format!("received {}, status {status}", a.records().len()))
        }
    })
    .await;
    assert_eq!(status["processedCount"], 39, "{status}");
    assert_eq!(status["retired"]["processedCount"], 20, "{status}");
    assert_eq!(b.records().len(), 39, "b took the other half");
}
