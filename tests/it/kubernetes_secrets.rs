//! Analyzers whose credentials are Kubernetes Secrets (`spec.auth`),
//! against a real kube-apiserver (`scripts/envtest.sh`) and a receiver on
//! loopback that requires them: the token is read from the Secret, a
//! rotated Secret is applied without a restart, a missing Secret keeps the
//! analyzer out with `Ready` False `SecretNotFound` (and a Warning Event)
//! until it appears, and with RBAC that names the readable Secrets
//! (`resourceNames`, as the chart's `analyzerSecrets` renders it) only
//! those are read.

use crate::support::http::{processed, Api};
use crate::support::kube::{
    self, analyzers_where, distributor_with_config, event_about, simulated, Cluster, Namespace, KUBECTL_POLL,
};
use crate::support::packets::packets;
use crate::support::poll::{eventually_every, DEADLINE};
use crate::support::receiver::{Receiver, ReceiverOptions};
use crate::support::serial::beside_others;
use serde_json::{json, Value};
use std::time::Duration;

/// Retries far enough apart and many enough to outlast a rotation: a 401
/// from an analyzer with credentials is retried, not dead-lettered.
const CONFIG: &str = "kubernetes: {lease_duration: 3s, status_interval: 1s}\n\
    retry: {base_delay: 200ms, factor: 1, max_retries: 50}\n\
    checkpoint: {interval: 1h}\n\
    shutdown: {drain_timeout: 200ms}\n\
    health: {interval: 100ms}\n";

async fn shared() -> Cluster {
    tokio::task::spawn_blocking(Cluster::shared)
        .await
        .expect("control plane set-up")
}

/// An Opaque Secret with one key.
fn secret(name: &str, key: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "stringData": {key: value},
    })
}

/// An Analyzer delivering to `endpoint` with a bearer token from `secret`'s key `token`.
fn with_token(name: &str, endpoint: &str, secret: &str) -> Value {
    json!({
        "apiVersion": "logs-distributor.dev/v1alpha1",
        "kind": "Analyzer",
        "metadata": {"name": name},
        "spec": {
            "weight": 1,
            "endpoint": endpoint,
            "auth": {"bearerToken": {"secretKeyRef": {"name": secret, "key": "token"}}},
            "headers": {"X-Scope-OrgID": "tenant-a"},
        }
    })
}

/// Waits until the analyzers the distributor runs are exactly `ids`.
async fn wait_for_ids(api: &Api, ids: &[&str]) {
    let mut expected: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
    expected.sort();
    analyzers_where(api, &format!("analyzers {ids:?}"), DEADLINE, |all| {
        let mut have: Vec<String> = all
            .as_object()
            .map(|a| a.keys().cloned().collect())
            .unwrap_or_default();
        have.sort();
        have == expected
    })
    .await;
}

/// The `Ready` condition of Analyzer `name` once `check` accepts it.
async fn ready_where(ns: &Namespace, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    eventually_every(what, DEADLINE, KUBECTL_POLL, || async {
        let status = ns.get_json("analyzer", name).await["status"].clone();
        let ready = status["conditions"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or(Value::Null);
        if check(&ready) {
            Ok(ready)
        } else {
            Err(status.to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_a_secret_is_sent_and_a_rotated_secret_is_applied_without_a_restart() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "secret-auth").await;
    let receiver = Receiver::start(ReceiverOptions {
        authorization: Some("Bearer first-token".into()),
        ..ReceiverOptions::default()
    })
    .await;
    ns.apply_ok(&secret("receiver-token", "token", "first-token\n"))
        .await;
    ns.apply_ok(&with_token("secure", &receiver.endpoint(), "receiver-token"))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor_with_config(&cluster, &ns.name, "one", dir.path(), CONFIG).await;
    wait_for_ids(&d, &["secure"]).await;

    d.post_logs(&packets("before", 5)).await.expect(202);
    d.drained().await;
    assert_eq!(receiver.ids().len(), 5);
    for delivery in receiver.deliveries() {
        assert_eq!(delivery.headers["authorization"], "Bearer first-token");
        assert_eq!(delivery.headers["x-scope-orgid"], "tenant-a");
    }

    // The receiver and the Secret change together.
    receiver.require(Some("Bearer second-token"));
    ns.apply_ok(&secret("receiver-token", "token", "second-token"))
        .await;
    d.post_logs(&packets("after", 5)).await.expect(202);
    let stats = d.drained_within(Duration::from_secs(20)).await;
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    assert_eq!(processed(&stats)["secure"], 10, "{stats}");
    let after: Vec<_> = receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.ids[0].starts_with("after"))
        .collect();
    assert_eq!(after.iter().map(|d| d.ids.len()).sum::<usize>(), 5, "{after:?}");
    for delivery in after {
        assert_eq!(delivery.headers["authorization"], "Bearer second-token");
    }
    let log = d.stderr();
    assert!(
        !log.contains("first-token") && !log.contains("second-token"),
        "a token in the log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_whose_secret_is_missing_stays_out_and_says_why_until_it_appears() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "secret-missing").await;
    let receiver = Receiver::start(ReceiverOptions {
        authorization: Some("Bearer late".into()),
        ..ReceiverOptions::default()
    })
    .await;
    ns.apply_ok(&simulated("other", 1, 0)).await;
    ns.apply_ok(&with_token("waiting", &receiver.endpoint(), "late-token"))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor_with_config(&cluster, &ns.name, "one", dir.path(), CONFIG).await;
    wait_for_ids(&d, &["other"]).await;
    let ready = ready_where(&ns, "waiting", "Ready False SecretNotFound", |ready| {
        ready["reason"] == "SecretNotFound"
    })
    .await;
    assert_eq!(ready["status"], "False");
    assert_eq!(
        ready["message"],
        format!("Secret {}/late-token does not exist", ns.name)
    );
    let event = event_about(&ns, "waiting", "Warning", "SecretNotFound").await;
    assert_eq!(
        event["message"],
        format!("Secret {}/late-token does not exist", ns.name)
    );
    let log = d.stderr();
    assert!(
        log.contains("cannot build the analyzer") && log.contains("late-token does not exist"),
        "the reason is logged:\n{log}"
    );

    // The Secret appears: the analyzer is built and takes its share.
    ns.apply_ok(&secret("late-token", "token", "late")).await;
    wait_for_ids(&d, &["other", "waiting"]).await;
    d.post_logs(&packets("late", 10)).await.expect(202);
    let stats = d.drained().await;
    assert_eq!(processed(&stats)["waiting"], 5, "{stats}");
    assert_eq!(receiver.ids().len(), 5);
    ready_where(&ns, "waiting", "Ready True", |ready| ready["status"] == "True").await;

    // Deleted, it leaves the rotation again.
    ns.kubectl(&["delete", "secret", "late-token"], None)
        .await
        .ok("kubectl delete secret");
    wait_for_ids(&d, &["other"]).await;
    ready_where(&ns, "waiting", "Ready False SecretNotFound again", |ready| {
        ready["reason"] == "SecretNotFound"
    })
    .await;
}

/// The chart's rule for `analyzerSecrets: [allowed-token]`: the
/// distributor's ServiceAccount may get, list and watch that Secret only.
fn secrets_role(names: &[&str]) -> [Value; 2] {
    [
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "analyzer-secrets"},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": names,
                       "verbs": ["get", "list", "watch"]}],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "analyzer-secrets"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "analyzer-secrets"},
            "subjects": [{"kind": "ServiceAccount", "name": "logs-distributor"}],
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rbac_by_resource_names_reads_and_watches_the_listed_secrets_only() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "secret-rbac").await;
    let receiver = Receiver::start(ReceiverOptions {
        authorization: Some("Bearer allowed-1".into()),
        ..ReceiverOptions::default()
    })
    .await;
    ns.apply_ok(&secret("allowed-token", "token", "allowed-1")).await;
    ns.apply_ok(&secret("other-token", "token", "other")).await;
    ns.apply_ok(&with_token("allowed", &receiver.endpoint(), "allowed-token"))
        .await;
    ns.apply_ok(&with_token("denied", &receiver.endpoint(), "other-token"))
        .await;
    ns.apply_file(&kube::repo_file("manifests/rbac.yaml")).await;
    for manifest in secrets_role(&["allowed-token"]) {
        ns.apply_ok(&manifest).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let account = ns.as_service_account("logs-distributor", dir.path()).await;
    let listing = account.kubectl(&["get", "secrets", "-n", &ns.name], None).await;
    assert!(!listing.status.success(), "the account lists every Secret");
    let d = distributor_with_config(&account, &ns.name, "one", dir.path(), CONFIG).await;
    wait_for_ids(&d, &["allowed"]).await;
    let ready = ready_where(&ns, "denied", "Ready False SecretForbidden", |ready| {
        ready["reason"] == "SecretForbidden"
    })
    .await;
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("analyzerSecrets"),
        "the message says where to allow it: {message}"
    );

    // The listed Secret is watched by name: its rotation is applied.
    receiver.require(Some("Bearer allowed-2"));
    ns.apply_ok(&secret("allowed-token", "token", "allowed-2")).await;
    d.post_logs(&packets("rbac", 4)).await.expect(202);
    let stats = d.drained_within(Duration::from_secs(20)).await;
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    assert_eq!(processed(&stats)["allowed"], 4, "{stats}");
    assert!(receiver
        .deliveries()
        .iter()
        .all(|d| d.headers["authorization"] == "Bearer allowed-2"));
}
