//! Two distributors (two releases) in one namespace, against a real
//! kube-apiserver (`scripts/envtest.sh`): each follows the Analyzers its
//! label selector (`kubernetes.analyzer_selector`) picks and elects its
//! status writer with a Lease of its own (`kubernetes.lease_name`), so each
//! routes to and reports on its own Analyzers only; relabelling an Analyzer
//! moves it from one to the other; a selector the API server refuses stops
//! the start-up with a message naming the key.

use crate::support::http::{processed, Api};
use crate::support::kube::{analyzers_where, distributor_with_config, Cluster, Namespace, KUBECTL_POLL};
use crate::support::packets::packets;
use crate::support::poll::{eventually_every, DEADLINE};
use crate::support::processes::{command, run};
use crate::support::serial::beside_others;
use serde_json::{json, Value};
use std::time::Duration;

/// The label the chart selects a release's Analyzers by.
const RELEASE_LABEL: &str = "logs-distributor.dev/release";

async fn shared() -> Cluster {
    tokio::task::spawn_blocking(Cluster::shared)
        .await
        .expect("control plane set-up")
}

/// A simulated Analyzer, labelled for `release` when given.
fn analyzer(name: &str, weight: i64, release: Option<&str>) -> Value {
    let labels = match release {
        Some(release) => json!({RELEASE_LABEL: release}),
        None => json!({}),
    };
    json!({
        "apiVersion": "logs-distributor.dev/v1alpha1",
        "kind": "Analyzer",
        "metadata": {"name": name, "labels": labels},
        "spec": {"weight": weight, "simulated": {"processingTimeMs": 0, "failureRate": 0, "healthFailureRate": 0}},
    })
}

/// The configuration of release `release`'s distributor.
fn release_config(release: &str) -> String {
    format!(
        "kubernetes: {{lease_duration: 3s, status_interval: 1s, \
         analyzer_selector: '{RELEASE_LABEL}={release}', lease_name: {release}-leader}}\n\
         retry: {{base_delay: 20ms}}\n\
         checkpoint: {{interval: 1h}}\n\
         shutdown: {{drain_timeout: 200ms}}\n\
         health: {{interval: 100ms}}\n"
    )
}

/// Waits until the analyzers `api` runs are exactly `ids`.
async fn wait_for_ids(api: &Api, ids: &[&str]) {
    analyzers_where(api, &format!("analyzers {ids:?}"), DEADLINE, |all| {
        let have: Vec<&str> = all
            .as_object()
            .map(|a| a.keys().map(String::as_str).collect())
            .unwrap_or_default();
        have == ids
    })
    .await;
}

/// Waits until `field` of Analyzer `name`'s status is `value`.
async fn status_field(ns: &Namespace, name: &str, field: &str, value: Value) {
    eventually_every(
        &format!("{name}'s {field} to be {value}"),
        DEADLINE,
        KUBECTL_POLL,
        || async {
            let status = ns.get_json("analyzer", name).await["status"].clone();
            if status[field] == value {
                Ok(())
            } else {
                Err(status.to_string())
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_releases_in_one_namespace_route_to_and_report_on_their_own_analyzers() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "releases").await;
    for manifest in [
        analyzer("blue-a", 3, Some("blue")),
        analyzer("blue-b", 1, Some("blue")),
        analyzer("green-a", 1, Some("green")),
        analyzer("stray", 1, None),
    ] {
        ns.apply_ok(&manifest).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let blue =
        distributor_with_config(&cluster, &ns.name, "blue-0", dir.path(), &release_config("blue")).await;
    let green = distributor_with_config(
        &cluster,
        &ns.name,
        "green-0",
        dir.path(),
        &release_config("green"),
    )
    .await;
    wait_for_ids(&blue, &["blue-a", "blue-b"]).await;
    wait_for_ids(&green, &["green-a"]).await;

    blue.post_logs(&packets("blue", 40)).await.expect(202);
    let on_blue = processed(&blue.drained().await);
    assert_eq!(on_blue.values().sum::<u64>(), 40, "{on_blue:?}");
    assert!(on_blue["blue-a"] > on_blue["blue-b"], "3:1 {on_blue:?}");
    green.post_logs(&packets("green", 10)).await.expect(202);
    let on_green = processed(&green.drained().await);
    assert_eq!(on_green.get("green-a"), Some(&10), "{on_green:?}");
    assert_eq!(on_green.len(), 1, "{on_green:?}");

    // Each release leads with its own Lease and writes its own Analyzers' status.
    for (lease, holder) in [("blue-leader", "blue-0"), ("green-leader", "green-0")] {
        eventually_every(
            &format!("{holder} to hold {lease}"),
            DEADLINE,
            KUBECTL_POLL,
            || async {
                let lease = ns.get_json("lease", lease).await;
                if lease["spec"]["holderIdentity"] == holder {
                    Ok(())
                } else {
                    Err(lease.to_string())
                }
            },
        )
        .await;
    }
    status_field(&ns, "blue-a", "processedCount", json!(on_blue["blue-a"])).await;
    status_field(&ns, "blue-b", "processedCount", json!(on_blue["blue-b"])).await;
    status_field(&ns, "green-a", "processedCount", json!(10)).await;
    let stray = ns.get_json("analyzer", "stray").await;
    assert!(stray["status"].is_null(), "no release selects stray: {stray}");

    // Relabelled, an Analyzer leaves one release for the other.
    ns.kubectl(
        &[
            "label",
            "analyzer",
            "blue-b",
            &format!("{RELEASE_LABEL}=green"),
            "--overwrite",
        ],
        None,
    )
    .await
    .ok("kubectl label");
    wait_for_ids(&blue, &["blue-a"]).await;
    wait_for_ids(&green, &["blue-b", "green-a"]).await;
    green.post_logs(&packets("moved", 10)).await.expect(202);
    let on_green = processed(&green.drained().await);
    assert_eq!(on_green["blue-b"] + on_green["green-a"], 20, "{on_green:?}");
    assert!(on_green["blue-b"] > 0, "{on_green:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_the_api_server_refuses_stops_the_start_up() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "bad-selector").await;
    let dir = tempfile::tempdir().unwrap();
    let finished = tokio::task::spawn_blocking(move || {
        let mut binary = command();
        binary
            .env("KUBECONFIG", &cluster.kubeconfig)
            .args([
                "--source",
                "kubernetes",
                "--namespace",
                &ns.name,
                "--identity",
                "bad",
            ])
            .args(["--listen", "127.0.0.1:0", "--analyzer-selector", "tier in (a"])
            .arg("--data-dir")
            .arg(dir.path());
        run(&mut binary, None, Duration::from_secs(30))
    })
    .await
    .expect("run task");
    assert!(!finished.status.success(), "started: {}", finished.stderr);
    assert!(
        finished.stderr.contains("kubernetes.analyzer_selector") && finished.stderr.contains("tier in (a"),
        "{}",
        finished.stderr
    );
}
