//! Analyzers as real receivers run them (docs/analyzers.md): HTTPS with a
//! CA of their own and client certificates, a token or basic credentials
//! from files that rotate, health served on another port, HEAD probes,
//! expected statuses, and passive analyzers that are never probed.
//!
//! The receivers are real HTTP/1.1 servers on loopback (`support::receiver`,
//! hyper over rustls) with certificates made in the test; the distributor
//! runs in the test's process.

use crate::support::config::{analyzer, remote, AnalyzerSpec, Config};
use crate::support::http::{processed, Api};
use crate::support::in_process::Server;
use crate::support::packets::packets;
use crate::support::pki::Pki;
use crate::support::poll::{eventually, DEADLINE};
use crate::support::receiver::{Receiver, ReceiverOptions};
use crate::support::serial::beside_others;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The first byte of a TLS record carrying a handshake: every connection a
/// TLS receiver accepts must start with it (nothing sent in clear text).
const TLS_HANDSHAKE: u8 = 0x16;

/// Writes `text` to `dir/name`; answers the path.
fn file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The YAML of a path.
fn yaml_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

/// One analyzer as `/api/v1/analyzers` shows it.
async fn info(api: &Api, id: &str) -> Value {
    let reply = api.get("/api/v1/analyzers").await;
    reply.expect(200);
    reply.json["analyzers"][id].clone()
}

/// Waits until analyzer `id` is (or is not) healthy; answers its info then.
async fn wait_healthy(api: &Api, id: &str, healthy: bool) -> Value {
    eventually(&format!("{id} healthy = {healthy}"), DEADLINE, || async {
        let now = info(api, id).await;
        if now["is_healthy"] == healthy && now["in_rotation"] == healthy {
            Ok(now)
        } else {
            Err(now.to_string())
        }
    })
    .await
}

/// A configuration with `analyzers`, retries 20 ms apart, and probes every
/// 100 ms (the shared default keeps them an hour apart).
fn config(analyzers: Vec<AnalyzerSpec>) -> Config {
    Config::new(analyzers).health("{interval: 100ms, timeout: 2s, ejection_threshold: 0}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_over_https_carry_the_token_and_headers_on_kept_connections() {
    let _guard = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(pki.server("receiver", 1)),
        authorization: Some("Bearer s3cr3t-token".into()),
        ..ReceiverOptions::default()
    })
    .await;
    let ca = file(dir.path(), "ca.pem", &pki.ca_pem());
    let token = file(dir.path(), "token", "s3cr3t-token\n");
    let secure = remote("secure", 1, &receiver.endpoint())
        .with(&format!("tls: {{ca_file: {}}}", yaml_path(&ca)))
        .with(&format!("auth: {{token_file: {}}}", yaml_path(&token)))
        .with("headers: {X-Scope-OrgID: tenant-a}, concurrency: 1");
    let server = Server::start(&config(vec![secure])).await;
    wait_healthy(&server, "secure", true).await;
    assert_eq!(info(&server, "secure").await["endpoint"], receiver.endpoint());

    for i in 0..20 {
        let reply = server.post_logs(&packets(&format!("https-{i}"), 1)).await;
        reply.expect(202);
    }
    let stats = server.drained().await;
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    let expected: Vec<String> = (0..20).map(|i| format!("https-{i}-0")).collect();
    assert_eq!(receiver.ids(), expected, "every packet, once, in order");
    for delivery in receiver.deliveries() {
        assert_eq!(delivery.headers["authorization"], "Bearer s3cr3t-token");
        assert_eq!(delivery.headers["x-scope-orgid"], "tenant-a");
        assert_eq!(delivery.headers["content-type"], "application/json");
    }
    let probes = receiver.probes();
    assert!(!probes.is_empty(), "probed over HTTPS at /health");
    for probe in &probes {
        assert_eq!(probe.method, "GET");
        assert_eq!(
            probe.headers["authorization"], "Bearer s3cr3t-token",
            "same origin: credentials go"
        );
        assert_eq!(probe.headers["x-scope-orgid"], "tenant-a");
    }
    let connections = receiver.first_bytes();
    assert!(connections.iter().all(|&b| b == TLS_HANDSHAKE), "{connections:?}");
    // One delivery at a time and probes between them: kept-alive
    // connections carry them all, a handful at most for 20 deliveries and
    // the probes.
    assert!(
        connections.len() <= 3,
        "{} TLS connections for {} deliveries and {} probes",
        connections.len(),
        receiver.deliveries().len(),
        probes.len()
    );
    server.shutdown().await;
}

/// Two HTTPS analyzers the distributor cannot verify: one trusting only the
/// system's roots, one trusting another CA. Their probes go to a plain HTTP
/// health port and pass, so only deliveries fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_the_ca_does_not_vouch_for_gets_nothing_and_the_packets_are_dead_lettered() {
    let _guard = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let stranger = Pki::named("a stranger's CA");
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(pki.server("receiver", 1)),
        health_listener: true,
        ..ReceiverOptions::default()
    })
    .await;
    let wrong_ca = file(dir.path(), "other-ca.pem", &stranger.ca_pem());
    // One packet per delivery: each packet's attempts are handshakes of their own.
    let health = format!(
        "health_check: {{url: '{}'}}, max_batch_packets: 1",
        receiver.health_url()
    );
    let system_roots = remote("system-roots", 1, &receiver.endpoint()).with(&health);
    let wrong = remote("wrong-ca", 1, &receiver.endpoint())
        .with(&health)
        .with(&format!("tls: {{ca_file: {}}}", yaml_path(&wrong_ca)));
    let server = Server::start(
        &config(vec![system_roots, wrong]).retry("{base_delay: 20ms, factor: 2, max_retries: 2}"),
    )
    .await;
    wait_healthy(&server, "system-roots", true).await;
    wait_healthy(&server, "wrong-ca", true).await;

    server.post_logs(&packets("untrusted", 4)).await.expect(202);
    let stats = server.drained().await;
    assert_eq!(stats["total_dead_lettered"], 4, "{stats}");
    assert_eq!(
        stats["total_retries"], 8,
        "each packet tried three times: {stats}"
    );
    let dead = server.dead_letter().await;
    assert_eq!(dead.len(), 4);
    for entry in &dead {
        let error = entry["final_error"].as_str().unwrap();
        assert_eq!(
            error, "TLS handshake failed: invalid peer certificate: UnknownIssuer",
            "{entry}"
        );
        assert_eq!(entry["packet"]["retry_count"], 2, "{entry}");
    }
    assert!(
        receiver.deliveries().is_empty() && receiver.attempts() == 0,
        "nothing reached it"
    );
    eventually("12 failed handshakes seen by the receiver", DEADLINE, || async {
        match receiver.handshake_failures() {
            12 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;
    let connections = receiver.first_bytes();
    assert_eq!(connections.len(), 12, "three handshakes per packet");
    assert!(
        connections.iter().all(|&b| b == TLS_HANDSHAKE),
        "never in clear text: {connections:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_ca_bundle_is_used_for_the_next_connections_without_a_restart() {
    let _guard = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(pki.server("receiver", 1)),
        health_listener: true,
        ..ReceiverOptions::default()
    })
    .await;
    let ca = file(dir.path(), "ca.pem", &Pki::named("the old CA").ca_pem());
    let rotated = remote("rotated", 1, &receiver.endpoint())
        .with(&format!("health_check: {{url: '{}'}}", receiver.health_url()))
        .with(&format!("tls: {{ca_file: {}}}", yaml_path(&ca)));
    let retry = "{base_delay: 100ms, factor: 1, max_retries: 40}";
    let server = Server::start(&config(vec![rotated]).retry(retry)).await;
    server.post_logs(&packets("rotation", 3)).await.expect(202);
    eventually("handshakes refused under the old CA", DEADLINE, || async {
        match receiver.handshake_failures() {
            0 => Err("none yet".to_string()),
            _ => Ok(()),
        }
    })
    .await;
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let stats = server.drained().await;
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    let mut ids = receiver.ids();
    ids.sort();
    assert_eq!(ids, ["rotation-0", "rotation-1", "rotation-2"]);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_to_a_receiver_that_requires_one() {
    let _guard = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(pki.server("receiver", 1)),
        client_ca: Some(pki.ca_pem()),
        health_listener: true,
        ..ReceiverOptions::default()
    })
    .await;
    let ca = file(dir.path(), "ca.pem", &pki.ca_pem());
    let identity = pki.client("logs-distributor");
    let (cert, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    identity.write(&cert, &key);
    let health = format!("health_check: {{url: '{}'}}", receiver.health_url());
    let with_cert = remote("with-cert", 1, &receiver.endpoint())
        .with(&health)
        .with(&format!(
            "tls: {{ca_file: {}, cert_file: {}, key_file: {}, server_name: localhost}}",
            yaml_path(&ca),
            yaml_path(&cert),
            yaml_path(&key)
        ));
    let without = remote("without-cert", 1, &receiver.endpoint())
        .with(&health)
        .with(&format!("tls: {{ca_file: {}}}", yaml_path(&ca)));
    let server = Server::start(
        &config(vec![with_cert, without]).retry("{base_delay: 20ms, factor: 2, max_retries: 1}"),
    )
    .await;
    wait_healthy(&server, "with-cert", true).await;
    wait_healthy(&server, "without-cert", true).await;

    server.post_logs(&packets("mtls", 4)).await.expect(202);
    let stats = server.drained().await;
    assert_eq!(processed(&stats)["with-cert"], 2, "{stats}");
    let mut delivered = receiver.ids();
    let dead = server.dead_letter().await;
    let mut buried: Vec<String> = dead
        .iter()
        .map(|e| e["packet"]["id"].as_str().unwrap().to_string())
        .collect();
    delivered.extend(buried.iter().cloned());
    delivered.sort();
    buried.sort();
    assert_eq!(
        delivered,
        ["mtls-0", "mtls-1", "mtls-2", "mtls-3"],
        "two delivered, two buried"
    );
    assert_eq!(buried.len(), 2);
    for entry in &dead {
        let error = entry["final_error"].as_str().unwrap();
        assert!(
            error.contains("CertificateRequired"),
            "the receiver's alert: {error}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_token_file_is_used_for_the_next_deliveries_without_a_restart() {
    let _guard = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(ReceiverOptions {
        authorization: Some("Bearer first".into()),
        ..ReceiverOptions::default()
    })
    .await;
    let token = file(dir.path(), "token", "first\n");
    let rotating = remote("rotating", 1, &receiver.endpoint())
        .with(&format!("auth: {{token_file: {}}}", yaml_path(&token)))
        .with("concurrency: 1");
    // A 401 while the file and the receiver disagree is retried.
    let retry = "{base_delay: 100ms, factor: 1, max_retries: 40}";
    let server = Server::start(&config(vec![rotating]).retry(retry)).await;
    server.post_logs(&packets("before", 5)).await.expect(202);
    server.drained().await;

    // The receiver and the file change together, as a rotated Secret does.
    receiver.require(Some("Bearer second"));
    std::fs::write(&token, "second\n").unwrap();
    server.post_logs(&packets("after", 5)).await.expect(202);
    let stats = server.drained().await;
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    let mut ids = receiver.ids();
    ids.sort();
    let mut expected: Vec<String> = (0..5).map(|i| format!("after-{i}")).collect();
    expected.extend((0..5).map(|i| format!("before-{i}")));
    assert_eq!(ids, expected, "every packet once");
    for delivery in receiver.deliveries() {
        let token = if delivery.ids[0].starts_with("before") {
            "Bearer first"
        } else {
            "Bearer second"
        };
        assert_eq!(delivery.headers["authorization"], token, "{:?}", delivery.ids);
    }
    for refused in receiver.refused() {
        assert_eq!(
            refused["authorization"], "Bearer first",
            "only the old token was refused"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_from_two_files_are_sent() {
    let _guard = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    // RFC 7617's example pair.
    let receiver = Receiver::start(ReceiverOptions {
        authorization: Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".into()),
        ..ReceiverOptions::default()
    })
    .await;
    let username = file(dir.path(), "username", "Aladdin\n");
    let password = file(dir.path(), "password", "open sesame\n");
    let basic = remote("basic", 1, &receiver.endpoint()).with(&format!(
        "auth: {{username_file: {}, password_file: {}}}",
        yaml_path(&username),
        yaml_path(&password)
    ));
    let server = Server::start(&config(vec![basic])).await;
    server.post_logs(&packets("basic", 3)).await.expect(202);
    let stats = server.drained().await;
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    let mut ids = receiver.ids();
    ids.sort();
    assert_eq!(ids, ["basic-0", "basic-1", "basic-2"]);
    assert!(receiver.refused().is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_url_on_another_port_decides_health_while_the_delivery_port_is_up() {
    let _guard = beside_others().await;
    let receiver = Receiver::start(ReceiverOptions {
        health_listener: true,
        ..ReceiverOptions::default()
    })
    .await;
    let collector = remote("collector", 1, &receiver.endpoint())
        .with(&format!("health_check: {{url: '{}'}}", receiver.health_url()));
    let server = Server::start(&config(vec![collector, analyzer("backup", 1)])).await;
    wait_healthy(&server, "collector", true).await;

    receiver.answer_probes(503);
    let out = wait_healthy(&server, "collector", false).await;
    assert_eq!(out["health_reason"], "ProbeFailed");
    assert_eq!(
        out["health_detail"],
        format!("{} answered HTTP 503, expected 200-299", receiver.health_url())
    );
    server.post_logs(&packets("while-out", 10)).await.expect(202);
    let stats = server.drained().await;
    assert_eq!(processed(&stats)["backup"], 10, "{stats}");
    assert!(
        receiver.ids().is_empty(),
        "the delivery port took nothing while out"
    );

    receiver.answer_probes(200);
    wait_healthy(&server, "collector", true).await;
    server.post_logs(&packets("back", 10)).await.expect(202);
    server.drained().await;
    assert_eq!(receiver.ids().len(), 5, "its share again once the probe passes");
    let probes = receiver.probes();
    assert!(
        !probes.is_empty() && probes.iter().all(|p| p.method == "GET"),
        "{probes:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_probes_pass_only_on_the_expected_statuses() {
    let _guard = beside_others().await;
    let receiver = Receiver::start(ReceiverOptions::default()).await;
    receiver.answer_probes(200);
    let picky = remote("picky", 1, &receiver.endpoint())
        .with("health_check: {method: HEAD, expected_statuses: [204]}");
    let server = Server::start(&config(vec![picky, analyzer("backup", 1)])).await;
    let out = wait_healthy(&server, "picky", false).await;
    let detail = out["health_detail"].as_str().unwrap();
    assert!(
        detail.ends_with("/health answered HTTP 200, expected 204"),
        "{detail}"
    );
    receiver.answer_probes(204);
    wait_healthy(&server, "picky", true).await;
    let probes = receiver.probes();
    assert!(probes.len() >= 2);
    assert!(probes.iter().all(|p| p.method == "HEAD"), "{probes:?}");
    server.shutdown().await;
}

/// docs/analyzers.md, passive analyzers: never probed; `ejection_threshold`
/// failed deliveries in a row eject; back after the cool-down (`interval`)
/// on probation, when one failed delivery ejects again; a success ends the
/// probation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passive_analyzer_is_ejected_by_failures_and_returns_after_its_cool_down() {
    let _guard = beside_others().await;
    let receiver = Receiver::start(ReceiverOptions::default()).await;
    receiver.answer_deliveries(503);
    let cooldown = Duration::from_secs(1);
    let passive = remote("passive", 1, &receiver.endpoint())
        .with("health_check: {passive: true, interval: 1s}, concurrency: 1, max_batch_packets: 1");
    let config = config(vec![passive, analyzer("backup", 1)])
        .health("{interval: 100ms, ejection_threshold: 2}")
        .retry("{base_delay: 20ms, factor: 1, max_retries: 10}");
    let server = Server::start(&config).await;
    assert_eq!(info(&server, "passive").await["health_reason"], "Passive");

    server.post_logs(&packets("fail", 4)).await.expect(202);
    let ejected = wait_healthy(&server, "passive", false).await;
    let ejected_at = Instant::now();
    assert_eq!(ejected["health_reason"], "Ejected");
    assert_eq!(receiver.attempts(), 2, "two failures in a row eject");
    let stats = server.drained().await;
    assert_eq!(
        processed(&stats)["backup"],
        4,
        "its packets went to the other: {stats}"
    );

    let back = wait_healthy(&server, "passive", true).await;
    assert!(
        ejected_at.elapsed() >= cooldown - Duration::from_millis(150),
        "out for its cool-down"
    );
    assert_eq!(back["health_reason"], "CooledDown");

    // On probation: one failure ejects again.
    server.post_logs(&packets("probation", 2)).await.expect(202);
    wait_healthy(&server, "passive", false).await;
    assert_eq!(receiver.attempts(), 3, "one failure on probation ejects");
    server.drained().await;

    receiver.answer_deliveries(200);
    wait_healthy(&server, "passive", true).await;
    server.post_logs(&packets("healed", 10)).await.expect(202);
    let stats = server.drained().await;
    assert_eq!(receiver.ids().len(), 5, "its share once back: {stats}");
    assert_eq!(info(&server, "passive").await["is_healthy"], true);
    assert!(receiver.probes().is_empty(), "a passive analyzer is never probed");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_tls_files_close_the_idle_connections_made_under_the_old_ones() {
    let _guard = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(pki.server("receiver", 1)),
        health_listener: true,
        ..ReceiverOptions::default()
    })
    .await;
    let ca = file(dir.path(), "ca.pem", &pki.ca_pem());
    let kept = remote("kept", 1, &receiver.endpoint())
        .with(&format!("health_check: {{url: '{}'}}", receiver.health_url()))
        .with(&format!("tls: {{ca_file: {}}}", yaml_path(&ca)))
        .with("concurrency: 1");
    let server = Server::start(&Config::new(vec![kept])).await;
    for i in 0..3 {
        server
            .post_logs(&packets(&format!("kept-{i}"), 1))
            .await
            .expect(202);
        server.drained().await;
    }
    assert_eq!(
        receiver.first_bytes().len(),
        1,
        "three deliveries on one kept connection"
    );

    // The same CA and one more: a change of the file, not of the trust.
    let mut bundle = pki.ca_pem();
    bundle.push_str(&Pki::named("another CA").ca_pem());
    std::fs::write(&ca, bundle).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    server.post_logs(&packets("renewed", 1)).await.expect(202);
    server.drained().await;
    assert_eq!(receiver.ids().len(), 4);
    assert_eq!(
        receiver.first_bytes().len(),
        2,
        "a new connection under the new files; the kept one closed"
    );
    server.shutdown().await;
}

/// docs/analyzers.md, Health checks: an `https://` probe to the endpoint's
/// host on another port uses the analyzer's TLS settings, client
/// certificate included; to another host, only its CA bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_to_the_same_host_presents_the_client_certificate_and_to_another_host_does_not() {
    let _guard = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(pki.server("receiver", 1)),
        client_ca: Some(pki.ca_pem()),
        health_listener: true,
        health_over_tls: true,
        ..ReceiverOptions::default()
    })
    .await;
    let ca = file(dir.path(), "ca.pem", &pki.ca_pem());
    let (cert, key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    pki.client("logs-distributor").write(&cert, &key);
    let tls = format!(
        "tls: {{ca_file: {}, cert_file: {}, key_file: {}}}",
        yaml_path(&ca),
        yaml_path(&cert),
        yaml_path(&key)
    );
    // 127.0.0.1 is the endpoint's host; localhost, the same listener, is
    // another host by name.
    let same_host = remote("same-host", 1, &receiver.endpoint())
        .with(&tls)
        .with(&format!(
            "health_check: {{url: '{}'}}",
            receiver.health_url_at("127.0.0.1")
        ));
    let other_host = remote("other-host", 1, &receiver.endpoint())
        .with(&tls)
        .with(&format!(
            "health_check: {{url: '{}'}}",
            receiver.health_url_at("localhost")
        ));
    let server = Server::start(&config(vec![same_host, other_host])).await;
    let out = wait_healthy(&server, "other-host", false).await;
    let detail = out["health_detail"].as_str().unwrap();
    assert!(
        detail.contains("CertificateRequired"),
        "no client certificate to another host: {detail}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let same = info(&server, "same-host").await;
    assert_eq!(same["is_healthy"], true, "{same}");
    assert_eq!(same["health_reason"], "ProbeSucceeded", "{same}");
    server.shutdown().await;
}

#[tokio::test]
async fn a_missing_credential_or_certificate_file_stops_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-token");
    for (keys, named) in [
        (
            format!("auth: {{token_file: {}}}", yaml_path(&missing)),
            missing.clone(),
        ),
        (
            format!("tls: {{ca_file: {}}}", yaml_path(&dir.path().join("no-ca.pem"))),
            dir.path().join("no-ca.pem"),
        ),
    ] {
        let config = Config::new(vec![remote("a", 1, "https://127.0.0.1:9/").with(&keys)]);
        let mut settings = logs_distributor::config::Settings::from_yaml(&config.yaml()).unwrap();
        settings.listen = "127.0.0.1:0".into();
        settings.data_dir = dir.path().join("data");
        let error = match logs_distributor::service::start(settings).await {
            Ok(_) => panic!("started without {}", named.display()),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            error.contains(&format!("cannot read {}", named.display())),
            "{error}"
        );
    }
}
