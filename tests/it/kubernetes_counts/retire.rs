//! Entries that stop changing are retired into `status.retired`, their
//! counts kept; a replica back after that, or cut off (frozen) long enough
//! to be retired, counts what it delivers next once.

use super::{
    config, counts_match, delivered_by, entry, http_analyzer, post_and_drain, shared, wait_for_a_and_b,
    COUNTS_DEADLINE,
};
use crate::support::analyzers::AnalyzerProcess;
use crate::support::http::get;
use crate::support::kube::{
    distributor_with_config, kube_readiness, restart_distributor, Namespace, KUBECTL_POLL,
};
use crate::support::poll::{eventually, eventually_every, DEADLINE};
use crate::support::serial::beside_others;
use serde_json::json;
use std::time::Duration;

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
    assert_eq!(
        retired["retired"]["processedCount"],
        delivered_by(&a, "two"),
        "{retired}"
    );
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
    // Connections the server timed out while it was frozen close now: the
    // first requests after the thaw may meet one.
    eventually("cut answering again", DEADLINE, || async {
        match get(&cut_off.http, &cut_off.url("/readyz")).await {
            Ok(reply) if reply.status == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
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
