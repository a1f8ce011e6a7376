//! Three replicas count into one status; the leader stopped (SIGTERM) and
//! killed (SIGKILL), a replica restarted; the totals never go back nor run
//! ahead of what the analyzers received; the printer columns.

use super::{
    config, counts_match, delivered_by, entry, http_analyzer, kube_client, leader_among, post_and_drain,
    shared, wait_for_a_and_b, COUNTS_DEADLINE,
};
use crate::support::analyzers::AnalyzerProcess;
use crate::support::distributor::Distributor;
use crate::support::kube::{distributor_with_config, restart_distributor, Cluster, Namespace, KUBECTL_POLL};
use crate::support::packets::packets;
use crate::support::poll::{eventually_every, DEADLINE};
use crate::support::serial::beside_others;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    eventually_every(
        "shares over all replicas",
        COUNTS_DEADLINE,
        KUBECTL_POLL,
        || async {
            let a = ns.get_json("analyzer", "a").await["status"].clone();
            let b = ns.get_json("analyzer", "b").await["status"].clone();
            let routed =
                |status: &Value, name: &str| entry(status, name).map(|e| e["routedLastMinute"].clone());
            let each = [("one", 10), ("two", 20), ("three", 30)].iter().all(|(name, n)| {
                routed(&a, name) == Some(json!(n)) && routed(&b, name) == Some(json!(n * 3))
            });
            if a["trafficShare"].as_f64() == Some(25.0) && b["trafficShare"].as_f64() == Some(75.0) && each {
                Ok(())
            } else {
                Err(format!("a {a}\nb {b}"))
            }
        },
    )
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
        .kubectl(
            &["get", "crd", "analyzers.logs-distributor.dev", "-o", "json"],
            None,
        )
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
    for column in [
        "WEIGHT",
        "HEALTHY",
        "SHARE",
        "PROCESSED",
        "ERRORS",
        "ENDPOINT",
        "AGE",
    ] {
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
