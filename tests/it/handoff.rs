//! Handoff without Kubernetes (real processes on loopback): the peer's
//! endpoint takes a batch once however often it is sent and keeps each
//! packet's retry count, it is guarded like ingestion, a replica with
//! `handoff.on_stop: always` hands what its drain left to its fixed peers
//! (over HTTPS when it trusts their CA), and the adopt command hands an
//! orphaned data directory to a running distributor. Every acknowledged packet ends up in the analyzer's
//! records, once.

use crate::support::analyzers::AnalyzerProcess;
use crate::support::config::{remote, write_config, Config};
use crate::support::distributor::Distributor;
use crate::support::files::read_checkpoint;
use crate::support::handoff::{adopt, adopt_report, audit, handoff_body, handoff_packets};
use crate::support::in_process::Server;
use crate::support::packets::numbered_packets;
use crate::support::pki::Pki;
use crate::support::poll::{eventually, DEADLINE};
use crate::support::serial::beside_others;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

const HANDOFF: &str = "/internal/v1/handoff";

/// An analyzer that is down (its process killed; its port kept for its
/// return), and the configuration of a distributor delivering to it:
/// probes every 100 ms take it out of rotation, so packets wait in the
/// distributor (parked), not in the dead letter.
async fn analyzer_down(dir: &Path) -> (AnalyzerProcess, Config) {
    let mut analyzer = AnalyzerProcess::start(dir, "az", &[]).await;
    analyzer.kill();
    let config = Config::new(vec![remote("az", 1, &analyzer.endpoint())])
        .retry("{base_delay: 100ms, max_retries: 1000}")
        .health("{interval: 100ms, unhealthy_threshold: 1}");
    (analyzer, config)
}

/// Waits until `api` has taken the analyzer out of rotation (its probe
/// failed), so that packets wait without spending retries.
async fn out_of_rotation(api: &crate::support::http::Api) {
    eventually("the analyzer out of rotation", DEADLINE, || async {
        let reply = api.get("/api/v1/analyzers").await;
        let in_rotation = &reply.json["analyzers"]["az"]["in_rotation"];
        if in_rotation == false {
            Ok(())
        } else {
            Err(reply.text.clone())
        }
    })
    .await;
}

/// Waits until the analyzer has recorded every id of `acknowledged`;
/// answers its records.
async fn delivered(analyzer: &AnalyzerProcess, acknowledged: &[String]) -> Vec<String> {
    eventually(
        "every acknowledged packet delivered",
        Duration::from_secs(30),
        || async {
            let recorded = analyzer.records();
            let (missing, _) = audit(acknowledged, &recorded);
            if missing.is_empty() {
                Ok(recorded)
            } else {
                Err(format!(
                    "{} missing, e.g. {:?}",
                    missing.len(),
                    &missing[..missing.len().min(5)]
                ))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_batch_is_taken_once_and_each_packet_keeps_its_retry_count() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut analyzer, config) = analyzer_down(dir.path()).await;
    let config_path = write_config(dir.path(), "peer.yaml", &config);
    let data = dir.path().join("peer");
    let mut peer = Distributor::start(&config_path, &data, dir.path()).await;
    out_of_rotation(&peer.api).await;

    let batch = handoff_body("ld-2", &[(7, "h-7", 2), (8, "h-8", 0), (9, "h-9", 5)]);
    let first = peer.api.post(HANDOFF, &batch).await;
    first.expect(200);
    assert_eq!(first.json, serde_json::json!({"adopted": 3, "duplicates": 0}));
    // The same batch again (its answer lost, say): nothing taken twice.
    let again = peer.api.post(HANDOFF, &batch).await;
    again.expect(200);
    assert_eq!(again.json, serde_json::json!({"adopted": 0, "duplicates": 3}));
    // The same ids from another origin are other packets.
    let other = peer
        .api
        .post(HANDOFF, &handoff_body("ld-3", &[(7, "h-7", 1)]))
        .await;
    assert_eq!(other.json, serde_json::json!({"adopted": 1, "duplicates": 0}));
    assert_eq!(handoff_packets(&peer.api, "adopted").await, 4);
    assert_eq!(handoff_packets(&peer.api, "duplicate").await, 3);

    // Durable before the answer, with the retries spent at the origin.
    peer.stop_cleanly(DEADLINE).await;
    let saved = read_checkpoint(&data);
    let mut retries: Vec<(String, u64)> = saved["in_flight"]
        .as_array()
        .expect("in_flight")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["retry_count"].as_u64().unwrap(),
            )
        })
        .collect();
    retries.sort();
    assert_eq!(
        retries,
        [
            ("h-7".into(), 1),
            ("h-7".into(), 2),
            ("h-8".into(), 0),
            ("h-9".into(), 5)
        ]
    );

    peer.launch(&config_path, &data, &[]).await;
    analyzer.restart().await;
    let ids: Vec<String> = ["h-7", "h-8", "h-9"].iter().map(|s| s.to_string()).collect();
    let recorded = delivered(&analyzer, &ids).await;
    peer.drained_within(DEADLINE).await;
    let count = |id: &str| recorded.iter().filter(|r| *r == id).count();
    assert_eq!(
        (count("h-7"), count("h-8"), count("h-9")),
        (2, 1, 1),
        "{recorded:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_handoff_endpoint_is_guarded_like_ingestion_and_says_what_is_wrong() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let (_analyzer, config) = analyzer_down(dir.path()).await;
    let token = dir.path().join("ingest-token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let config = config.section("auth", &format!("{{ingest_token_file: {:?}}}", token));
    let config_path = write_config(dir.path(), "peer.yaml", &config);
    let peer = Distributor::start(&config_path, &dir.path().join("peer"), dir.path()).await;
    let body = handoff_body("ld-2", &[(1, "g-1", 0)]);

    let without = peer.api.post(HANDOFF, &body).await;
    without.expect(401);
    let wrong = peer
        .api
        .send(
            peer.api
                .http
                .post(peer.api.url(HANDOFF))
                .bearer_auth("nope")
                .json(&body),
        )
        .await;
    wrong.expect(403);
    let with = |body: &Value| {
        peer.api
            .http
            .post(peer.api.url(HANDOFF))
            .bearer_auth("s3cret")
            .json(body)
    };
    let taken = peer.api.send(with(&body)).await;
    taken.expect(200);
    assert_eq!(taken.json["adopted"], 1);

    let no_origin = peer.api.send(with(&handoff_body("  ", &[(1, "g-1", 0)]))).await;
    no_origin.expect(400);
    assert!(no_origin.error().contains("origin"), "{}", no_origin.error());
    let no_seq = peer
        .api
        .send(with(
            &serde_json::json!({"origin": "ld-2", "packets": [{"id": "x", "messages": []}]}),
        ))
        .await;
    no_seq.expect(400);
    assert!(no_seq.error().contains("seq"), "{}", no_seq.error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_with_handoff_always_hands_what_its_drain_left_to_its_peers() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut analyzer, config) = analyzer_down(dir.path()).await;
    let peer_config = write_config(dir.path(), "peer.yaml", &config);
    let peer = Distributor::start(&peer_config, &dir.path().join("peer"), dir.path()).await;
    let leaving_config = config.section(
        "handoff",
        &format!(
            "{{on_stop: always, peers: [{:?}], batch_packets: 40}}",
            peer.api.base
        ),
    );
    let leaving_config = write_config(dir.path(), "leaving.yaml", &leaving_config);
    let leaving_data = dir.path().join("leaving");
    let mut leaving = Distributor::start(&leaving_config, &leaving_data, dir.path()).await;
    let (body, ids) = numbered_packets("always", 0, 150);
    leaving.api.post_logs(&body).await.expect(202);

    let log = leaving.stop_cleanly(DEADLINE).await;
    assert!(log.contains("handed every packet to peers"), "{log}");
    assert_eq!(read_checkpoint(&leaving_data)["in_flight"], serde_json::json!([]));
    assert_eq!(handoff_packets(&peer.api, "adopted").await, 150);

    analyzer.restart().await;
    let recorded = delivered(&analyzer, &ids).await;
    peer.drained_within(DEADLINE).await;
    let (_, twice) = audit(&ids, &analyzer.records());
    assert!(
        twice.is_empty(),
        "delivered twice: {twice:?} of {}",
        recorded.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adopt_command_hands_an_orphaned_data_directory_to_a_running_distributor() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut analyzer, config) = analyzer_down(dir.path()).await;
    let config_path = write_config(dir.path(), "config.yaml", &config);
    // A former replica: it took packets, could not deliver them, and stopped.
    let orphan = dir.path().join("orphan");
    let mut former = Distributor::start(&config_path, &orphan, dir.path()).await;
    let (body, ids) = numbered_packets("orphan", 0, 120);
    former.api.post_logs(&body).await.expect(202);
    former.stop_cleanly(DEADLINE).await;
    assert_eq!(
        read_checkpoint(&orphan)["in_flight"].as_array().unwrap().len(),
        120
    );

    let peer = Distributor::start(&config_path, &dir.path().join("peer"), dir.path()).await;
    let to = vec![peer.api.base.clone()];
    let flags = ["--origin", "ld-5", "--batch-packets", "50", "--timeout", "20s"];
    let first = adopt(&orphan, &to, &flags).await;
    assert!(first.status.success(), "{}", first.stderr);
    assert_eq!(
        adopt_report(&first),
        serde_json::json!({"handed": 120, "duplicates": 0, "kept": 0})
    );
    // Run again: the directory's log says they are handed; nothing goes twice.
    let second = adopt(&orphan, &to, &flags).await;
    assert!(second.status.success(), "{}", second.stderr);
    assert_eq!(
        adopt_report(&second),
        serde_json::json!({"handed": 0, "duplicates": 0, "kept": 0})
    );
    assert_eq!(handoff_packets(&peer.api, "adopted").await, 120);

    analyzer.restart().await;
    delivered(&analyzer, &ids).await;
    peer.drained_within(DEADLINE).await;
    let (_, twice) = audit(&ids, &analyzer.records());
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    // The former replica, started again on its volume, holds nothing.
    former.launch(&config_path, &orphan, &[]).await;
    assert_eq!(former.api.stats().await["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_adopt_command_keeps_what_no_peer_takes_and_fails_loudly() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let (_analyzer, config) = analyzer_down(dir.path()).await;
    let config_path = write_config(dir.path(), "config.yaml", &config);
    let orphan = dir.path().join("orphan");
    let mut former = Distributor::start(&config_path, &orphan, dir.path()).await;
    let (body, _) = numbered_packets("kept", 0, 30);
    former.api.post_logs(&body).await.expect(202);
    former.stop_cleanly(DEADLINE).await;

    let refused = adopt(&orphan, &["http://127.0.0.1:9".into()], &["--timeout", "1s"]).await;
    assert!(!refused.status.success());
    assert_eq!(
        adopt_report(&refused),
        serde_json::json!({"handed": 0, "duplicates": 0, "kept": 30})
    );
    assert!(
        refused.stderr.contains("30 packets could not be handed over"),
        "{}",
        refused.stderr
    );
    former.launch(&config_path, &orphan, &[]).await;
    assert_eq!(former.api.stats().await["in_flight"], 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_serving_https_are_handed_to_when_their_ca_is_trusted() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut analyzer, config) = analyzer_down(dir.path()).await;
    let pki = Pki::new();
    let (cert, key, ca) = (
        dir.path().join("tls.crt"),
        dir.path().join("tls.key"),
        dir.path().join("ca.pem"),
    );
    pki.issue("peer", 1, &cert, &key);
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let tls = format!(
        "{{cert: {:?}, key: {:?}}}",
        cert.display().to_string(),
        key.display().to_string()
    );
    let peer = Server::start(&config.clone().section("tls", &tls)).await;
    let peer_url = format!("https://127.0.0.1:{}", peer.running().addr().port());

    // Without the peer's CA, its certificate is not trusted: the packets stay.
    let untrusting = config.clone().section(
        "handoff",
        &format!("{{on_stop: always, peers: [{peer_url:?}], timeout: 1s}}"),
    );
    let untrusting = write_config(dir.path(), "untrusting.yaml", &untrusting);
    let data = dir.path().join("leaving");
    let mut leaving = Distributor::start(&untrusting, &data, dir.path()).await;
    let (body, ids) = numbered_packets("tls", 0, 60);
    leaving.api.post_logs(&body).await.expect(202);
    let log = leaving.stop_cleanly(DEADLINE).await;
    assert!(log.contains("60 packets stay on this replica's volume"), "{log}");

    // With it (handoff.tls.ca_file), the same volume's packets go over HTTPS.
    let trusting = config.section(
        "handoff",
        &format!(
            "{{on_stop: always, peers: [{peer_url:?}], tls: {{ca_file: {:?}}}}}",
            ca.display().to_string()
        ),
    );
    let trusting = write_config(dir.path(), "trusting.yaml", &trusting);
    leaving.launch(&trusting, &data, &[]).await;
    let log = leaving.stop_cleanly(DEADLINE).await;
    assert!(log.contains("handed every packet to peers"), "{log}");

    analyzer.restart().await;
    delivered(&analyzer, &ids).await;
    let (_, twice) = audit(&ids, &analyzer.records());
    assert!(twice.is_empty(), "delivered twice: {twice:?}");
    peer.shutdown().await;
}
