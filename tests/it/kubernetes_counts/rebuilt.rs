//! An analyzer that leaves the fleet and comes back (its Secret deleted
//! and created again) starts its process counters at 0; its entry, and so
//! the totals, carry on from what it had.

use super::{entry, shared, COUNTS_DEADLINE};
use crate::support::http::{processed, Api};
use crate::support::kube::{analyzers_where, distributor_with_config, Namespace, KUBECTL_POLL};
use crate::support::packets::packets;
use crate::support::poll::{eventually_every, DEADLINE};
use crate::support::receiver::{Receiver, ReceiverOptions};
use crate::support::serial::beside_others;
use serde_json::{json, Value};

const SECRET: &str = "counts-token";

fn token_secret() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET},
        "type": "Opaque",
        "stringData": {"token": "t0k3n"},
    })
}

/// Waits until the status of `secure` counts `want` in total and in the
/// entry of replica `one`.
async fn counted(ns: &Namespace, want: i64) -> Value {
    eventually_every(
        &format!("{want} counted"),
        COUNTS_DEADLINE,
        KUBECTL_POLL,
        || async {
            let status = ns.get_json("analyzer", "secure").await["status"].clone();
            let own = entry(&status, "one").map(|e| e["processedCount"].clone());
            if status["processedCount"] == want && own == Some(json!(want)) {
                Ok(status)
            } else {
                Err(status.to_string())
            }
        },
    )
    .await
}

/// Waits until `d` runs `secure` (`yes`) or not.
async fn running(d: &Api, yes: bool) {
    analyzers_where(d, &format!("secure running: {yes}"), DEADLINE, |all| {
        all.get("secure").is_some() == yes
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_rebuilt_after_its_secret_returns_keeps_its_counts() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "counts-rebuilt").await;
    let receiver = Receiver::start(ReceiverOptions {
        authorization: Some("Bearer t0k3n".into()),
        ..ReceiverOptions::default()
    })
    .await;
    ns.apply_ok(&token_secret()).await;
    ns.apply_ok(&json!({
        "apiVersion": "logs-distributor.dev/v1alpha1",
        "kind": "Analyzer",
        "metadata": {"name": "secure"},
        "spec": {
            "weight": 1,
            "endpoint": receiver.endpoint(),
            "auth": {"bearerToken": {"secretKeyRef": {"name": SECRET, "key": "token"}}},
        }
    }))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor_with_config(
        &cluster,
        &ns.name,
        "one",
        dir.path(),
        &super::config("15m", "200ms"),
    )
    .await;
    running(&d, true).await;
    d.post_logs(&packets("before", 6)).await.expect(202);
    d.drained().await;
    counted(&ns, 6).await;

    // The Secret gone: the analyzer leaves (its counters are forgotten).
    ns.kubectl(&["delete", "secret", SECRET], None)
        .await
        .ok("kubectl delete secret");
    running(&d, false).await;
    eventually_every("SecretNotFound", DEADLINE, KUBECTL_POLL, || async {
        let status = ns.get_json("analyzer", "secure").await["status"].clone();
        if status["conditions"][0]["reason"] == "SecretNotFound" {
            Ok(())
        } else {
            Err(status.to_string())
        }
    })
    .await;

    // Back: a new analyzer counting from 0 in the process, not in the status.
    ns.apply_ok(&token_secret()).await;
    running(&d, true).await;
    d.post_logs(&packets("after", 4)).await.expect(202);
    let stats = d.drained().await;
    assert_eq!(processed(&stats)["secure"], 4, "the process counts anew: {stats}");
    let status = counted(&ns, 10).await;
    assert_eq!(receiver.ids().len(), 10, "{status}");
}
