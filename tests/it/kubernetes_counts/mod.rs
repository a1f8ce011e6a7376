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
//!
//! `failover`: three replicas, the leader stopped and killed, the printer
//! columns; `rebuilt`: an analyzer that left and came back keeps its
//! counts; `retire`: entries retired and never counted twice; `writes`:
//! the bounds on status writes.

mod failover;
mod rebuilt;
mod retire;
mod writes;

use crate::support::analyzers::AnalyzerProcess;
use crate::support::distributor::Distributor;
use crate::support::http::processed;
use crate::support::kube::{analyzers_where, kube_readiness, Cluster, Namespace, KUBECTL_POLL};
use crate::support::packets::packets;
use crate::support::poll::{eventually_every, DEADLINE};
use serde_json::{json, Value};
use std::collections::BTreeMap;
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
    analyzer
        .records()
        .iter()
        .filter(|id| id.starts_with(&prefix))
        .count() as i64
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

/// A client of the test's kubeconfig.
async fn kube_client(cluster: &Cluster) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.kubeconfig).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .expect("client configuration");
    kube::Client::try_from(config).expect("client")
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
