//! What an Analyzer's status says when its spec cannot be built, against a
//! real kube-apiserver (`scripts/envtest.sh`): `Ready` False with the
//! reason and message, one Warning Event per failure (not one per status
//! write), `status.observedGeneration` left at the generation that runs
//! until a new one is applied; and `status.conditions` is a list keyed by
//! `type`, so the API server refuses two conditions of one type.

use crate::support::http::processed;
use crate::support::kube::{
    analyzers_where, distributor, event_about, events_about, Cluster, Namespace, KUBECTL_POLL,
};
use crate::support::packets::packets;
use crate::support::poll::{eventually_every, DEADLINE};
use crate::support::receiver::{Receiver, ReceiverOptions};
use crate::support::serial::beside_others;
use serde_json::{json, Value};
use std::time::Duration;

/// A URL the API server's rules accept (it starts with `http://`) that
/// names no port a connection can use.
const UNBUILDABLE_ENDPOINT: &str = "http://analyzer:99999/";

async fn shared() -> Cluster {
    tokio::task::spawn_blocking(Cluster::shared)
        .await
        .expect("control plane set-up")
}

/// An Analyzer delivering to `endpoint`.
fn http_analyzer(name: &str, endpoint: &str) -> Value {
    json!({
        "apiVersion": "logs-distributor.dev/v1alpha1",
        "kind": "Analyzer",
        "metadata": {"name": name},
        "spec": {"weight": 1, "endpoint": endpoint, "healthCheck": {"passive": true}},
    })
}

/// The Analyzer `name` (whole object) once `check` accepts its status and
/// Ready condition.
async fn analyzer_where(
    ns: &Namespace,
    name: &str,
    what: &str,
    check: impl Fn(&Value, &Value) -> bool,
) -> Value {
    eventually_every(what, DEADLINE, KUBECTL_POLL, || async {
        let analyzer = ns.get_json("analyzer", name).await;
        let status = &analyzer["status"];
        let ready = status["conditions"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or(Value::Null);
        if check(status, &ready) {
            Ok(analyzer)
        } else {
            Err(analyzer["status"].to_string())
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spec_that_cannot_be_built_says_why_once_and_keeps_the_applied_generation() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "status-broken").await;
    let receiver = Receiver::start(ReceiverOptions::default()).await;
    ns.apply_ok(&http_analyzer("edited", &receiver.endpoint())).await;
    ns.apply_ok(&http_analyzer("born-broken", UNBUILDABLE_ENDPOINT))
        .await;
    let dir = tempfile::tempdir().unwrap();
    let d = distributor(&cluster, &ns.name, "one", dir.path(), "").await;
    analyzers_where(&d, "edited running", DEADLINE, |all| {
        all.as_object().map(|a| a.keys().collect::<Vec<_>>()) == Some(vec![&"edited".to_string()])
    })
    .await;
    analyzer_where(
        &ns,
        "edited",
        "edited Ready True at generation 1",
        |status, ready| {
            ready["status"] == "True" && status["observedGeneration"] == 1 && ready["observedGeneration"] == 1
        },
    )
    .await;

    // Never built: Ready False with the cause, no applied generation, an Event.
    let never = analyzer_where(&ns, "born-broken", "born-broken Ready False", |_, ready| {
        ready["status"] == "False"
    })
    .await;
    let status = &never["status"];
    let ready = &status["conditions"][0];
    assert_eq!(ready["reason"], "InvalidConfiguration", "{status}");
    assert!(
        ready["message"].as_str().unwrap().contains("99999"),
        "the message names the cause: {status}"
    );
    assert_eq!(ready["observedGeneration"], 1, "{status}");
    assert_eq!(status["healthy"], false, "{status}");
    assert!(
        status.get("observedGeneration").is_none(),
        "nothing applied: {status}"
    );
    let event = event_about(&ns, "born-broken", "Warning", "InvalidConfiguration").await;
    assert_eq!(event["message"], ready["message"], "{event}");

    // A broken edit: the running generation goes on and the status says so.
    ns.patch_analyzer("edited", &json!({"spec": {"endpoint": UNBUILDABLE_ENDPOINT}}))
        .await;
    let edited = analyzer_where(&ns, "edited", "edited Ready False at generation 2", |_, ready| {
        ready["status"] == "False" && ready["observedGeneration"] == 2
    })
    .await;
    let status = &edited["status"];
    let ready = &status["conditions"][0];
    assert_eq!(edited["metadata"]["generation"], 2);
    assert_eq!(
        status["observedGeneration"], 1,
        "generation 2 is not applied: {status}"
    );
    assert_eq!(ready["reason"], "InvalidConfiguration", "{status}");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("99999") && message.contains("generation 1 goes on running"),
        "{message}"
    );
    event_about(&ns, "edited", "Warning", "InvalidConfiguration").await;
    d.post_logs(&packets("meanwhile", 6)).await.expect(202);
    let stats = d.drained().await;
    assert_eq!(processed(&stats)["edited"], 6, "{stats}");
    assert_eq!(receiver.ids().len(), 6, "generation 1 still delivers");

    // Several status writes later, still one Event per failure, never repeated.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for name in ["born-broken", "edited"] {
        let events = events_about(&ns, name, "InvalidConfiguration").await;
        assert_eq!(events.len(), 1, "{name}: {events:?}");
        assert!(events[0]["series"].is_null(), "{name} repeated: {events:?}");
    }

    // Fixed: generation 3 is applied.
    ns.patch_analyzer("edited", &json!({"spec": {"endpoint": receiver.endpoint()}}))
        .await;
    let fixed = analyzer_where(
        &ns,
        "edited",
        "edited Ready True at generation 3",
        |status, ready| ready["status"] == "True" && status["observedGeneration"] == 3,
    )
    .await;
    assert_eq!(fixed["status"]["conditions"][0]["observedGeneration"], 3);
    ns.patch_analyzer("born-broken", &json!({"spec": {"endpoint": receiver.endpoint()}}))
        .await;
    analyzer_where(
        &ns,
        "born-broken",
        "born-broken Ready True at generation 2",
        |status, ready| ready["status"] == "True" && status["observedGeneration"] == 2,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_keeps_one_condition_per_type() {
    let _gate = beside_others().await;
    let cluster = shared().await;
    let ns = Namespace::create(&cluster, "status-conditions").await;
    ns.apply_ok(&http_analyzer("a", "http://a:9000/")).await;
    let condition = |status: &str| {
        json!({"type": "Ready", "status": status, "reason": "Test", "message": "",
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    };
    let patch = json!({"status": {"conditions": [condition("True"), condition("False")]}});
    let out = ns
        .kubectl(
            &[
                "patch",
                "analyzer",
                "a",
                "--subresource=status",
                "--type",
                "merge",
                "-p",
                &patch.to_string(),
            ],
            None,
        )
        .await;
    assert!(
        !out.status.success(),
        "two Ready conditions accepted: {}",
        out.stdout
    );
    assert!(out.stderr.contains("Duplicate value"), "{}", out.stderr);
    let one = json!({"status": {"conditions": [condition("True")]}});
    ns.kubectl(
        &[
            "patch",
            "analyzer",
            "a",
            "--subresource=status",
            "--type",
            "merge",
            "-p",
            &one.to_string(),
        ],
        None,
    )
    .await
    .ok("one Ready condition");
}
