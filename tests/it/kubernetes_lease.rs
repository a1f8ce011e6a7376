//! The leader Lease at shutdown, against a real kube-apiserver
//! (`scripts/envtest.sh`): a leader stopped with SIGTERM hands the Lease
//! back, so its peer takes over at its next try, long before the Lease
//! would have expired.

use crate::support::kube::{
    distributor_with_config, kube_readiness, simulated, Cluster, Namespace, KUBECTL_POLL,
};
use crate::support::poll::{eventually_every, DEADLINE};
use crate::support::processes::signal;
use crate::support::serial::beside_others;
use std::time::{Duration, Instant};

/// A Lease of 15 s: a peer tries every 5 s, and without a release would
/// wait up to 15 s after the last renewal.
const CONFIG: &str = "kubernetes: {lease_duration: 15s, status_interval: 1s}\n\
    checkpoint: {interval: 1h}\n\
    shutdown: {drain_timeout: 200ms}\n\
    health: {interval: 100ms}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_stopped_with_sigterm_releases_the_lease_and_its_peer_takes_over_at_once() {
    let _gate = beside_others().await;
    let cluster = tokio::task::spawn_blocking(Cluster::shared)
        .await
        .expect("control plane set-up");
    let ns = Namespace::create(&cluster, "lease-release").await;
    ns.apply_ok(&simulated("a", 1, 0)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut one = distributor_with_config(&cluster, &ns.name, "one", dir.path(), CONFIG).await;
    eventually_every("one to hold the Lease", DEADLINE, KUBECTL_POLL, || async {
        let holder = ns.lease_holder().await.unwrap_or_default();
        if holder == "one" && kube_readiness(&one).await["leader"] == true {
            Ok(())
        } else {
            Err(holder)
        }
    })
    .await;
    let two = distributor_with_config(&cluster, &ns.name, "two", dir.path(), CONFIG).await;
    assert_eq!(kube_readiness(&two).await["leader"], false);

    signal(one.pid(), "TERM");
    let stopped = Instant::now();
    one.wait_exit(DEADLINE).await;
    assert!(
        one.stderr().contains("released the leader Lease"),
        "{}",
        one.stderr()
    );
    eventually_every(
        "two to take the Lease",
        Duration::from_secs(8),
        KUBECTL_POLL,
        || async {
            let holder = ns.lease_holder().await.unwrap_or_default();
            if holder == "two" && kube_readiness(&two).await["leader"] == true {
                Ok(())
            } else {
                Err(holder)
            }
        },
    )
    .await;
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(8),
        "takeover after {took:?}: the Lease was waited out (15 s), not released"
    );
}
