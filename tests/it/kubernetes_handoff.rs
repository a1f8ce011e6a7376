//! Scale-in without stranding a packet, against a real kube-apiserver
//! (`scripts/envtest.sh`): three distributor processes on this machine
//! named by `POD_NAME` (`ld-0`, `ld-1`, `ld-2`), a StatefulSet `ld` and the
//! EndpointSlices of its headless Service created by the test (envtest runs
//! no controllers) pointing at the replicas' ports, and one reference
//! analyzer that is down, so packets pile up in every replica. The API
//! server refuses loopback addresses in an EndpointSlice, so the replicas
//! listen on every address and their slices name the machine's own
//! (non-loopback) address.
//!
//! - Scale to two (`spec.replicas` patched, SIGTERM to `ld-2`): `ld-2`
//!   hands what it holds to `ld-0` and `ld-1`; once the analyzer returns,
//!   every acknowledged packet is in its records, none twice.
//! - A restart (`spec.replicas` unchanged) keeps the packets on the volume
//!   and hands nothing; the replica delivers them when it is back.
//! - `kill -9` of the leaving replica mid-handoff (its peers full): what a
//!   peer took is there, the rest is on the volume, and the adopt command
//!   hands it over; nothing is lost, nothing is delivered twice.
//! - No ready peer, or a deleted StatefulSet: the packets stay, with an
//!   error in the log and a Warning Event `HandoffIncomplete` about the pod.
//! - A replica that may not read its StatefulSet (the chart's rules name
//!   another one) cannot tell a scale-in from a restart: it keeps its packets.

use crate::support::analyzers::AnalyzerProcess;
use crate::support::distributor::Distributor;
use crate::support::files::read_checkpoint;
use crate::support::handoff::{adopt, adopt_report, audit, handoff_packets};
use crate::support::kube::{host_address, repo_file, Cluster, Namespace, KUBECTL_POLL};
use crate::support::packets::numbered_packets;
use crate::support::poll::{eventually, eventually_every, DEADLINE};
use crate::support::serial::beside_others;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const STATEFULSET: &str = "ld";
const SERVICE: &str = "ld-headless";

/// The replicas' configuration: short timings, retries that outlast the
/// test, the analyzer out of rotation after one failed probe; `extra`'s
/// sections added (its `handoff` in place of the default one).
fn replica_yaml(extra: &str) -> String {
    let handoff = if extra.contains("handoff:") {
        ""
    } else {
        "handoff: {timeout: 20s, batch_packets: 50}\n"
    };
    format!(
        "kubernetes: {{lease_duration: 3s, status_interval: 1s}}\n\
         retry: {{base_delay: 100ms, max_retries: 1000}}\n\
         checkpoint: {{interval: 1h}}\n\
         shutdown: {{drain_timeout: 300ms}}\n\
         health: {{interval: 100ms, unhealthy_threshold: 1}}\n\
         {handoff}{extra}"
    )
}

/// The cluster side and the processes of one test.
struct Set {
    /// Whom the replicas act as (the admin's kubeconfig unless a test
    /// gives them a ServiceAccount's).
    kubeconfig: PathBuf,
    ns: Namespace,
    dir: tempfile::TempDir,
    analyzer: AnalyzerProcess,
    replicas: Vec<Distributor>,
}

impl Set {
    /// A namespace with the StatefulSet (`replicas`), its headless Service,
    /// an Analyzer whose process is down, and the replicas named by
    /// `ordinals` started with `extra[i]` added to their configuration, an
    /// EndpointSlice for each.
    async fn up(prefix: &str, replicas: i32, ordinals: &[u32], extra: &[&str]) -> Set {
        let cluster = tokio::task::spawn_blocking(Cluster::shared)
            .await
            .expect("control plane set-up");
        let ns = Namespace::create(&cluster, prefix).await;
        let dir = tempfile::tempdir().unwrap();
        let mut analyzer = AnalyzerProcess::start(dir.path(), "az", &[]).await;
        analyzer.kill();
        ns.apply_ok(&json!({
            "apiVersion": "logs-distributor.dev/v1alpha1",
            "kind": "Analyzer",
            "metadata": {"name": "az"},
            "spec": {"weight": 1, "endpoint": analyzer.endpoint()},
        }))
        .await;
        ns.apply_ok(&statefulset(replicas)).await;
        ns.apply_ok(&json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE},
            "spec": {"clusterIP": "None", "selector": {"app": STATEFULSET}, "ports": [{"name": "http", "port": 8080}]},
        }))
        .await;
        let mut set = Set {
            kubeconfig: cluster.kubeconfig.clone(),
            ns,
            dir,
            analyzer,
            replicas: Vec::new(),
        };
        for (i, ordinal) in ordinals.iter().enumerate() {
            let replica = set.start(*ordinal, extra.get(i).copied().unwrap_or("")).await;
            set.ns.apply_ok(&endpoint_slice(*ordinal, replica.port)).await;
            set.replicas.push(replica);
        }
        set
    }

    fn data_dir(&self, ordinal: u32) -> PathBuf {
        self.dir.path().join(format!("data-ld-{ordinal}"))
    }

    fn config(&self, ordinal: u32, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("config-ld-{ordinal}.yaml"));
        std::fs::write(&path, replica_yaml(extra)).expect("write config");
        path
    }

    /// The binary as the chart runs it: `--source kubernetes`, `POD_NAME`.
    fn setup(&self, ordinal: u32, config: &Path) -> impl Fn(&mut Command, u16) + '_ {
        let config = config.to_path_buf();
        move |command: &mut Command, port: u16| {
            command
                .env("KUBECONFIG", &self.kubeconfig)
                .env("POD_NAME", format!("ld-{ordinal}"))
                .args(["--source", "kubernetes", "--namespace", &self.ns.name])
                .arg("--listen")
                .arg(format!("0.0.0.0:{port}"))
                .arg("--data-dir")
                .arg(self.data_dir(ordinal))
                .arg("--config")
                .arg(&config);
        }
    }

    async fn start(&self, ordinal: u32, extra: &str) -> Distributor {
        let config = self.config(ordinal, extra);
        Distributor::start_with(self.dir.path(), self.setup(ordinal, &config)).await
    }

    /// Waits until every replica has the analyzer out of rotation.
    async fn analyzer_out(&self) {
        for replica in &self.replicas {
            eventually("the analyzer out of rotation", DEADLINE, || async {
                let reply = replica.api.get("/api/v1/analyzers").await;
                if reply.json["analyzers"]["az"]["in_rotation"] == false {
                    Ok(())
                } else {
                    Err(reply.text.clone())
                }
            })
            .await;
        }
    }

    async fn scale(&self, replicas: i32) {
        let patch = json!({"spec": {"replicas": replicas}}).to_string();
        self.ns
            .kubectl(
                &[
                    "patch",
                    "statefulset",
                    STATEFULSET,
                    "--type",
                    "merge",
                    "-p",
                    &patch,
                ],
                None,
            )
            .await
            .ok("kubectl patch statefulset");
    }

    /// `handoff_packets_total{outcome}` summed over the running replicas `ordinals`.
    async fn adopted_by(&self, indexes: &[usize]) -> u64 {
        let mut total = 0;
        for &i in indexes {
            total += handoff_packets(&self.replicas[i].api, "adopted").await;
        }
        total
    }

    /// Waits until the analyzer has recorded every acknowledged id;
    /// fails on an id recorded twice.
    async fn all_delivered_once(&self, acknowledged: &[String]) {
        eventually(
            "every acknowledged packet delivered",
            Duration::from_secs(40),
            || async {
                let (missing, _) = audit(acknowledged, &self.analyzer.records());
                if missing.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} of {} missing, e.g. {:?}",
                        missing.len(),
                        acknowledged.len(),
                        &missing[..missing.len().min(5)]
                    ))
                }
            },
        )
        .await;
        let (_, twice) = audit(acknowledged, &self.analyzer.records());
        assert!(
            twice.is_empty(),
            "{} packets delivered twice: {:?}",
            twice.len(),
            &twice[..twice.len().min(10)]
        );
    }
}

fn statefulset(replicas: i32) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": STATEFULSET},
        "spec": {
            "replicas": replicas,
            "serviceName": SERVICE,
            "selector": {"matchLabels": {"app": STATEFULSET}},
            "template": {
                "metadata": {"labels": {"app": STATEFULSET}},
                "spec": {"containers": [{"name": "logs-distributor", "image": "logs-distributor:test"}]},
            },
        },
    })
}

/// What the EndpointSlice controller would write for a ready pod `ld-N`
/// serving on this machine's `port`: one slice each, as the ports differ.
fn endpoint_slice(ordinal: u32, port: u16) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": format!("{SERVICE}-{ordinal}"), "labels": {"kubernetes.io/service-name": SERVICE}},
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [host_address().to_string()],
            "conditions": {"ready": true, "serving": true, "terminating": false},
            "targetRef": {"kind": "Pod", "name": format!("ld-{ordinal}")},
        }],
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
    })
}

/// Waits for the Warning Event `HandoffIncomplete` about pod `pod`.
async fn handoff_incomplete_event(ns: &Namespace, pod: &str) {
    eventually_every(
        &format!("a HandoffIncomplete Event about {pod}"),
        DEADLINE,
        KUBECTL_POLL,
        || async {
            let out = ns
                .kubectl(&["get", "events.v1.events.k8s.io", "-o", "json"], None)
                .await;
            let events: Value = serde_json::from_str(out.ok("kubectl get events")).expect("JSON");
            let items = events["items"].as_array().cloned().unwrap_or_default();
            items
                .iter()
                .find(|e| {
                    e["regarding"]["kind"] == "Pod"
                        && e["regarding"]["name"] == pod
                        && e["reason"] == "HandoffIncomplete"
                        && e["type"] == "Warning"
                })
                .map(|_| ())
                .ok_or_else(|| format!("{} events", items.len()))
        },
    )
    .await;
}

/// Posts `count` packets to `replica`; answers their ids (all acknowledged).
async fn post(replica: &Distributor, prefix: &str, count: usize) -> Vec<String> {
    let (body, ids) = numbered_packets(prefix, 0, count);
    replica.api.post_logs(&body).await.expect(202);
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_in_hands_every_acknowledged_packet_to_the_remaining_replicas() {
    let _gate = beside_others().await;
    let mut set = Set::up("handoff-scale", 3, &[0, 1, 2], &[]).await;
    set.analyzer_out().await;
    let mut acknowledged = Vec::new();
    for (ordinal, replica) in set.replicas.iter().enumerate() {
        acknowledged.extend(post(replica, &format!("ld-{ordinal}"), 200).await);
    }

    set.scale(2).await;
    let leaving = &mut set.replicas[2];
    let log = leaving.stop_cleanly(Duration::from_secs(30)).await;
    assert!(log.contains("stopping for good"), "{log}");
    assert!(log.contains("handed every packet to peers"), "{log}");
    assert_eq!(
        read_checkpoint(&set.data_dir(2))["in_flight"],
        json!([]),
        "ld-2 kept packets"
    );
    // Spread over both remaining replicas, in batches of 50.
    let (zero, one) = (
        handoff_packets(&set.replicas[0].api, "adopted").await,
        handoff_packets(&set.replicas[1].api, "adopted").await,
    );
    assert_eq!(
        (zero + one, zero.min(one) >= 50),
        (200, true),
        "ld-0 took {zero}, ld-1 {one}"
    );

    set.analyzer.restart().await;
    set.all_delivered_once(&acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_its_packets_on_its_volume_and_hands_nothing() {
    let _gate = beside_others().await;
    let mut set = Set::up("handoff-restart", 3, &[0, 1, 2], &[]).await;
    set.analyzer_out().await;
    let mut acknowledged = Vec::new();
    for (ordinal, replica) in set.replicas.iter().enumerate() {
        acknowledged.extend(post(replica, &format!("ld-{ordinal}"), 100).await);
    }

    let leaving = &mut set.replicas[2];
    let log = leaving.stop_cleanly(Duration::from_secs(30)).await;
    assert!(log.contains("a restart, not a scale-in"), "{log}");
    assert!(!log.contains("stopping for good"), "{log}");
    let saved = read_checkpoint(&set.data_dir(2));
    assert_eq!(saved["in_flight"].as_array().map(Vec::len), Some(100));
    assert_eq!(set.adopted_by(&[0, 1]).await, 0);

    // Back on its volume (same pod name, same port), it delivers them itself.
    let config = set.config(2, "");
    let mut restarted = set.replicas.pop().expect("ld-2");
    restarted.spawn_with(set.setup(2, &config));
    restarted.wait_ready().await.expect("ld-2 back");
    set.replicas.push(restarted);
    set.analyzer.restart().await;
    set.all_delivered_once(&acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaving_replica_killed_mid_handoff_loses_nothing_and_its_volume_is_adopted() {
    let _gate = beside_others().await;
    // The peers hold 150 packets each: they fill up mid-handoff.
    let full = "queue: {max_in_flight: 150}\n";
    let mut set = Set::up("handoff-kill", 2, &[0, 1, 2], &[full, full, ""]).await;
    set.analyzer_out().await;
    let acknowledged = post(&set.replicas[2], "ld-2", 600).await;

    set.replicas[2].sigterm();
    eventually_every(
        "the peers full of ld-2's packets",
        Duration::from_secs(20),
        KUBECTL_POLL,
        || async {
            let adopted = set.adopted_by(&[0, 1]).await;
            if adopted == 300 {
                Ok(())
            } else {
                Err(format!("{adopted} adopted"))
            }
        },
    )
    .await;
    // The rest waits for room (both peers hold it up to queue.full_wait,
    // then answer 503); the replica dies meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        set.replicas[2].kill9(),
        "ld-2 stopped before it was killed:\n{}",
        set.replicas[2].stderr()
    );

    set.analyzer.restart().await;
    let peers: Vec<String> = set.replicas[..2].iter().map(|r| r.api.base.clone()).collect();
    let adopted = adopt(
        &set.data_dir(2),
        &peers,
        &["--origin", "ld-2", "--batch-packets", "50", "--timeout", "60s"],
    )
    .await;
    assert!(adopted.status.success(), "{}", adopted.stderr);
    let report = adopt_report(&adopted);
    assert_eq!(report["handed"], 300, "{report}");
    assert_eq!(report["kept"], 0, "{report}");
    set.all_delivered_once(&acknowledged).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_in_replica_without_a_ready_peer_keeps_its_packets_and_says_so() {
    let _gate = beside_others().await;
    let mut set = Set::up("handoff-alone", 1, &[1], &["handoff: {timeout: 1s}\n"]).await;
    set.analyzer_out().await;
    post(&set.replicas[0], "ld-1", 40).await;

    let leaving = &mut set.replicas[0];
    let log = leaving.stop_cleanly(Duration::from_secs(30)).await;
    assert!(log.contains("40 packets stay on this replica's volume"), "{log}");
    assert_eq!(
        read_checkpoint(&set.data_dir(1))["in_flight"]
            .as_array()
            .map(Vec::len),
        Some(40)
    );
    handoff_incomplete_event(&set.ns, "ld-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_statefulset_leaves_no_peer_and_the_packets_stay() {
    let _gate = beside_others().await;
    let mut set = Set::up("handoff-deleted", 3, &[0, 2], &[]).await;
    set.analyzer_out().await;
    post(&set.replicas[1], "ld-2", 30).await;
    set.ns
        .kubectl(&["delete", "statefulset", STATEFULSET, "--wait=false"], None)
        .await
        .ok("kubectl delete statefulset");

    let leaving = &mut set.replicas[1];
    let log = leaving.stop_cleanly(Duration::from_secs(30)).await;
    assert!(log.contains("is gone or names no Service"), "{log}");
    assert_eq!(
        read_checkpoint(&set.data_dir(2))["in_flight"]
            .as_array()
            .map(Vec::len),
        Some(30)
    );
    assert_eq!(set.adopted_by(&[0]).await, 0);
    handoff_incomplete_event(&set.ns, "ld-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_may_not_read_its_statefulset_keeps_its_packets() {
    let _gate = beside_others().await;
    // The chart's rules: `get` on the StatefulSet named logs-distributor only.
    let mut set = Set::up("handoff-forbidden", 2, &[], &[]).await;
    set.ns.apply_file(&repo_file("manifests/rbac.yaml")).await;
    let account = set
        .ns
        .as_service_account("logs-distributor", set.dir.path())
        .await;
    set.kubeconfig = account.kubeconfig;
    let replica = set.start(2, "").await;
    set.ns.apply_ok(&endpoint_slice(2, replica.port)).await;
    set.replicas.push(replica);
    set.analyzer_out().await;
    post(&set.replicas[0], "ld-2", 30).await;

    let leaving = &mut set.replicas[0];
    let log = leaving.stop_cleanly(Duration::from_secs(30)).await;
    assert!(log.contains("cannot tell a scale-in from a restart"), "{log}");
    assert!(log.contains("forbidden"), "{log}");
    assert_eq!(
        read_checkpoint(&set.data_dir(2))["in_flight"]
            .as_array()
            .map(Vec::len),
        Some(30)
    );
}
