//! Every endpoint and every status code of the HTTP API, over a real socket
//! against a distributor started in-process.

use crate::support::config::Config;
use crate::support::fixtures;
use crate::support::http::processed;
use crate::support::in_process::Server;
use crate::support::packets::{packet, packets};
use crate::support::poll::{eventually, DEADLINE};
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn is_rfc3339(text: &Value) -> bool {
    text.as_str()
        .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_batch_is_accepted_with_202_and_missing_ids_get_uuids() {
    let server = Server::start(&Config::four(0)).await;
    let body = json!([packet(Some("client-id-1"), 2), packet(None, 1), packet(None, 3)]);
    let reply = server.post_logs(&body).await;
    reply.expect(202);
    assert_eq!(reply.json["total_packets"], 3);
    assert_eq!(reply.json["successful"], 3);
    assert_eq!(reply.json["failed"], 0);
    assert_eq!(reply.json["errors"], json!([]));
    assert!(reply.json.get("error").is_none(), "{}", reply.text);
    let ids = reply.ids();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], "client-id-1", "a client's id is kept, in order");
    for generated in &ids[1..] {
        let uuid = uuid::Uuid::parse_str(generated).unwrap_or_else(|_| panic!("{generated} is no UUID"));
        assert_eq!(uuid.get_version_num(), 4);
    }
    assert_ne!(ids[1], ids[2]);

    let stats = server.drained().await;
    assert_eq!(stats["total_packets_received"], 3);
    assert_eq!(stats["total_messages_received"], 6);
    assert_eq!(stats["total_messages_routed"], 6);
    assert_eq!(processed(&stats).values().sum::<u64>(), 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_bad_batch_is_207_and_names_each_bad_field() {
    let server = Server::start(&Config::four(0)).await;
    let body = json!([
        packet(Some("good-0"), 1),
        {"id": "bad-level", "messages": [
            {"level": "INFO", "message": "fine", "source": "s"},
            {"level": "LOUD", "message": "not a level", "source": "s"}
        ]},
        packet(Some("good-2"), 1),
        {"id": "bad-source", "messages": [{"level": "warn", "message": "m", "source": "  "}]},
        {"messages": []},
    ]);
    let reply = server.post_logs(&body).await;
    reply.expect(207);
    assert_eq!(reply.json["total_packets"], 5);
    assert_eq!(reply.json["successful"], 2);
    assert_eq!(reply.json["failed"], 3);
    assert_eq!(reply.ids(), ["good-0", "good-2"]);
    let errors = reply.json["errors"].as_array().unwrap();
    let summary: Vec<(u64, Value)> = errors
        .iter()
        .map(|e| (e["index"].as_u64().unwrap(), e["id"].clone()))
        .collect();
    assert_eq!(summary[..2], [(1, json!("bad-level")), (3, json!("bad-source"))]);
    assert_eq!(summary[2].0, 4);
    let reason = |i: usize| errors[i]["error"].as_str().unwrap().to_string();
    assert!(reason(0).starts_with("messages[1].level"), "{}", reason(0));
    assert!(reason(0).contains("LOUD"), "{}", reason(0));
    assert!(reason(1).starts_with("messages[0].source"), "{}", reason(1));
    assert!(reason(2).starts_with("messages:"), "{}", reason(2));

    let stats = server.drained().await;
    assert_eq!(
        stats["total_packets_received"], 2,
        "only the good packets were kept"
    );
    let metrics = server.get("/metrics").await;
    assert!(
        metrics
            .text
            .contains("logs_distributor_packets_rejected_total{reason=\"invalid\"} 3"),
        "{}",
        metrics.text
    );
    server.shutdown().await;
}

/// `errors[].id` is "the packet's id, when the client gave one that could be
/// read" (model::PacketError). A packet sent without an id and refused must
/// not be reported under an id the distributor made up: the client cannot
/// match it to anything, and the UUID names no packet that exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_packet_without_an_id_is_reported_without_one() {
    let server = Server::start(&Config::four(0)).await;
    let body = json!([
        packet(Some("good"), 1),
        {"messages": [{"level": "LOUD", "message": "m", "source": "s"}]},
        {"messages": []},
    ]);
    let reply = server.post_logs(&body).await;
    reply.expect(207);
    let errors = reply.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    for error in errors {
        assert_eq!(error["id"], Value::Null, "made-up id in {error}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_without_an_acceptable_packet_are_400_with_a_reason() {
    let server = Server::start(&Config::four(0).limits("{max_packets_per_request: 3}")).await;
    let json_type = [("content-type", "application/json")];
    let cases: [(&[u8], &str); 6] = [
        (b"[{\"messages\": [", "not valid JSON"),
        (b"not json at all", "not valid JSON"),
        (b"[]", "no packet"),
        (b"{\"messages\": []}", "JSON array"),
        (b"42", "JSON array"),
        (b"", "not valid JSON"),
    ];
    for (body, expected) in cases {
        let reply = server.post_raw("/api/v1/logs", &json_type, body.to_vec()).await;
        reply.expect(400);
        let error = reply.error();
        assert!(
            error.contains(expected),
            "{:?}: {error:?} lacks {expected:?}",
            String::from_utf8_lossy(body)
        );
    }

    // More packets than limits.max_packets_per_request: too large, 413.
    let reply = server
        .post_raw("/api/v1/logs", &json_type, b"[{}, {}, {}, {}]".to_vec())
        .await;
    reply.expect(413);
    assert_eq!(
        reply.error(),
        "request holds more than 3 packets: at most 3 are allowed per request (limits.max_packets_per_request)"
    );

    // Every packet invalid: 400, each one listed.
    let reply = server
        .post_logs(&json!([
            {"id": "x", "messages": [{"level": "nope", "message": "m", "source": "s"}]},
            {"messages": [{"level": "info", "message": "m"}]},
        ]))
        .await;
    reply.expect(400);
    assert!(reply.error().contains("messages[0].level"), "{}", reply.text);
    assert_eq!(reply.json["successful"], 0);
    assert_eq!(reply.json["failed"], 2);
    assert_eq!(reply.json["processed_packets"], json!([]));
    let errors = reply.json["errors"].as_array().unwrap();
    assert_eq!(errors[0]["index"], 0);
    assert_eq!(errors[0]["id"], "x");
    assert_eq!(errors[1]["index"], 1);
    assert!(
        errors[1]["error"].as_str().unwrap().contains("source"),
        "{}",
        reply.text
    );

    let stats = server.stats().await;
    assert_eq!(stats["total_packets_received"], 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_limit_are_413_also_once_inflated() {
    let server = Server::start(&Config::four(0).limits("{max_body_bytes: 2048}")).await;
    let padded = |size: usize| {
        let mut body = serde_json::to_vec(&json!([packet(Some("padded"), 1)])).unwrap();
        body.resize(size, b' ');
        body
    };
    let json_type = ("content-type", "application/json");

    let reply = server.post_raw("/api/v1/logs", &[json_type], padded(2048)).await;
    reply.expect(202);
    let reply = server.post_raw("/api/v1/logs", &[json_type], padded(3000)).await;
    reply.expect(413);
    assert!(reply.error().contains("max_body_bytes"), "{}", reply.text);

    // Compressed, the body is far under the limit; inflated, it is over.
    let bomb = gzip(&padded(100_000));
    assert!(bomb.len() < 2048);
    let gzip_headers = [json_type, ("content-encoding", "gzip")];
    let reply = server.post_raw("/api/v1/logs", &gzip_headers, bomb).await;
    reply.expect(413);
    assert!(reply.error().contains("max_body_bytes"), "{}", reply.text);

    // Inflated to exactly the limit: accepted.
    let reply = server
        .post_raw("/api/v1/logs", &gzip_headers, gzip(&padded(2048)))
        .await;
    reply.expect(202);
    assert_eq!(reply.ids(), ["padded"]);

    let reply = server
        .post_raw("/api/v1/logs", &gzip_headers, b"not gzip".to_vec())
        .await;
    reply.expect(400);
    assert!(reply.error().contains("gzip"), "{}", reply.text);

    let stats = server.drained().await;
    assert_eq!(stats["total_packets_received"], 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_ndjson_bodies_are_accepted() {
    let server = Server::start(&Config::four(0)).await;
    let body = serde_json::to_vec(&packets("gz", 4)).unwrap();
    let reply = server
        .post_raw(
            "/api/v1/logs",
            &[("content-type", "application/json"), ("content-encoding", "gzip")],
            gzip(&body),
        )
        .await;
    reply.expect(202);
    assert_eq!(reply.ids(), ["gz-0", "gz-1", "gz-2", "gz-3"]);

    // One packet per line; blank lines and CRLF endings are fine.
    let lines = [packet(Some("nd-0"), 1), packet(None, 2), packet(Some("nd-2"), 1)]
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>();
    let ndjson = format!("{}\r\n\n{}\n{}\n", lines[0], lines[1], lines[2]);
    let reply = server
        .post_raw(
            "/api/v1/logs",
            &[("content-type", "application/x-ndjson")],
            ndjson.clone().into_bytes(),
        )
        .await;
    reply.expect(202);
    let ids = reply.ids();
    assert_eq!((ids.len(), ids[0].as_str(), ids[2].as_str()), (3, "nd-0", "nd-2"));

    // NDJSON, gzipped.
    let reply = server
        .post_raw(
            "/api/v1/logs",
            &[
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "gzip"),
            ],
            gzip(lines[0].as_bytes()),
        )
        .await;
    reply.expect(202);

    // A line that is not JSON fails the whole body and is named.
    let bad = format!("{}\n{{\"messages\": oops\n{}\n", lines[0], lines[2]);
    let reply = server
        .post_raw(
            "/api/v1/logs",
            &[("content-type", "application/x-ndjson")],
            bad.into_bytes(),
        )
        .await;
    reply.expect(400);
    assert!(reply.error().contains("line 2"), "{}", reply.text);

    let stats = server.drained().await;
    assert_eq!(stats["total_packets_received"], 8);
    assert_eq!(stats["total_messages_received"], 9);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_media_types_and_encodings_are_415() {
    let server = Server::start(&Config::four(0)).await;
    let body = serde_json::to_vec(&packets("m", 1)).unwrap();
    for (name, value) in [
        ("content-type", "text/plain"),
        ("content-type", "application/xml"),
        ("content-encoding", "br"),
    ] {
        let reply = server
            .post_raw("/api/v1/logs", &[(name, value)], body.clone())
            .await;
        reply.expect(415);
        assert!(reply.error().contains(value), "{}", reply.text);
    }
    // Parameters and case do not matter; no content type means JSON.
    let reply = server
        .post_raw(
            "/api/v1/logs",
            &[("content-type", "Application/JSON; charset=utf-8")],
            body.clone(),
        )
        .await;
    reply.expect(202);
    let reply = server.post_raw("/api/v1/logs", &[], body).await;
    reply.expect(202);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_and_wrong_methods_405_in_json() {
    let server = Server::start(&Config::four(0)).await;
    let http = &server.api.http;
    for path in ["/nope", "/api/v1/nope", "/api/v2/logs", "/api/v1/logs/extra"] {
        let reply = server.get(path).await;
        reply.expect(404);
        assert!(reply.error().contains(path), "{}", reply.text);
    }
    let wrong_methods = [
        http.get(server.url("/api/v1/logs")),
        http.delete(server.url("/api/v1/stats")),
        http.post(server.url("/api/v1/health")),
        http.put(server.url("/api/v1/dead-letter")),
        http.get(server.url("/api/v1/dead-letter/replay")),
        http.get(server.url("/api/v1/analyzers/analyzer-a1/health")),
        http.post(server.url("/metrics")),
    ];
    for request in wrong_methods {
        let reply = server.send(request).await;
        reply.expect(405);
        assert!(!reply.error().is_empty());
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_distributor_answers_503_with_retry_after_and_keeps_nothing_of_the_request() {
    let config = Config::four(1500).queue("{max_in_flight: 5, full_wait: 0s}");
    let server = Server::start(&config).await;
    server.post_logs(&packets("kept", 5)).await.expect(202);

    for body in [packets("refused", 3), packets("one-more", 1)] {
        let reply = server.post_logs(&body).await;
        reply.expect(503);
        assert_eq!(reply.header("retry-after"), Some("1"));
        assert!(reply.error().contains("capacity"), "{}", reply.text);
    }
    // A request that would only partly fit is refused whole.
    let stats = server.stats().await;
    assert_eq!(stats["total_packets_received"], 5);
    assert_eq!(stats["in_flight"], 5);
    assert_eq!(stats["queue_capacity"], 5);
    let metrics = server.get("/metrics").await;
    assert!(
        metrics
            .text
            .contains("logs_distributor_packets_rejected_total{reason=\"overloaded\"} 4"),
        "{}",
        metrics.text
    );

    // Once the five are delivered there is room again, and only they were delivered.
    let stats = server.drained().await;
    assert_eq!(processed(&stats).values().sum::<u64>(), 5);
    assert_eq!(stats["total_packets_received"], 5);
    assert_eq!(stats["total_packets_routed"], 5);
    let dead = server.get("/api/v1/dead-letter").await;
    assert_eq!(dead.json["total"], 0);
    server.post_logs(&packets("later", 2)).await.expect(202);
    server.shutdown().await;
}

/// With the default `queue.full_wait` (1 s) a request that finds the queue
/// full is held until deliveries make room, then accepted; one still
/// without room when the wait ends is answered 503 with Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_distributor_holds_a_request_for_up_to_queue_full_wait_then_answers_503() {
    let config = Config::four(400).queue("{max_in_flight: 5}");
    let server = Server::start(&config).await;
    server.post_logs(&packets("first", 5)).await.expect(202);
    let started = std::time::Instant::now();
    server.post_logs(&packets("held", 3)).await.expect(202);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "held until the first five were delivered: {:?}",
        started.elapsed()
    );
    let stats = server.drained().await;
    assert_eq!(processed(&stats).values().sum::<u64>(), 8);
    server.shutdown().await;

    let config = Config::four(60_000).queue("{max_in_flight: 5, full_wait: 300ms}");
    let server = Server::start(&config).await;
    server.post_logs(&packets("stuck", 5)).await.expect(202);
    let started = std::time::Instant::now();
    let reply = server.post_logs(&packets("refused", 1)).await;
    reply.expect(503);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "refused once queue.full_wait had passed: {:?}",
        started.elapsed()
    );
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(reply.error().contains("capacity"), "{}", reply.text);
    assert_eq!(
        server.stats().await["in_flight"],
        5,
        "nothing of the refused request is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_fit_is_refused_before_its_packets_are_validated() {
    let config = Config::four(1500).queue("{max_in_flight: 5, full_wait: 0s}");
    let server = Server::start(&config).await;
    server.post_logs(&packets("kept", 3)).await.expect(202);

    // Three packets, one of them bad, with room for two: refused whole as
    // overload, and the bad one is never looked at (overload spends no
    // time validating what it cannot keep).
    let body = json!([
        packet(Some("fits-0"), 1),
        packet(Some("fits-1"), 1),
        {"id": "bad", "messages": [{"level": "LOUD", "message": "m", "source": "s"}]},
    ]);
    server.post_logs(&body).await.expect(503);
    let metrics = server.get("/metrics").await;
    let rejected = |reason: &str| format!("logs_distributor_packets_rejected_total{{reason=\"{reason}\"}}");
    assert!(
        metrics.text.contains(&format!("{} 3", rejected("overloaded"))),
        "{}",
        metrics.text
    );
    assert!(!metrics.text.contains(&rejected("invalid")), "{}", metrics.text);

    // Two fit.
    server.post_logs(&packets("two", 2)).await.expect(202);
    assert_eq!(server.stats().await["in_flight"], 5);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_answers_503_with_retry_after() {
    let config = Config::four(1000).shutdown("{drain_timeout: 5s}");
    let server = Server::start(&config).await;
    server.post_logs(&packets("slow", 2)).await.expect(202);
    server.running().stop_token().cancel();
    // Wait until the shutdown has begun, so that no later POST can slip in.
    let ready = eventually("/readyz to say 503", DEADLINE, || async {
        let reply = server.get("/readyz").await;
        if reply.status == 503 {
            Ok(reply)
        } else {
            Err(reply.text)
        }
    })
    .await;
    assert_eq!(ready.json["accepting"], false);
    assert_eq!(ready.json["recovered"], true);
    let reply = server.post_logs(&packets("late", 1)).await;
    reply.expect(503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert!(reply.error().contains("shutting down"), "{}", reply.text);
    let stats = server.stats().await;
    assert_eq!(stats["total_packets_received"], 2, "the late packet was not kept");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_original_readme_session_and_jmeter_body_work() {
    let server = Server::start(&Config::four(0)).await;

    // curl http://localhost:8080/api/v1/health
    let health = server.get("/api/v1/health").await;
    health.expect(200);
    assert_eq!(health.json["status"], "healthy");
    assert_eq!(health.json["active_analyzers"], 4);
    assert_eq!(health.json["total_analyzers"], 4);
    assert!(health.json["uptime"].as_str().unwrap().ends_with('s'));
    assert!(is_rfc3339(&health.json["timestamp"]), "{}", health.text);

    // curl http://localhost:8080/api/v1/stats
    let stats = server.stats().await;
    for field in [
        "packet_channel_util_percent",
        "result_channel_util_percent",
        "retry_channel_util_percent",
    ] {
        assert!(stats[field].is_f64(), "{field}: {stats}");
    }
    assert_eq!(stats["total_packets_received"], 0);
    assert_eq!(stats["total_messages_routed"], 0);
    assert_eq!(stats["active_analyzers"], 4);
    assert!(stats["uptime"].is_string());
    assert!(is_rfc3339(&stats["timestamp"]));
    let names: Vec<(&str, &str)> = stats["analyzers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, a)| (id.as_str(), a["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("analyzer-a1", "Analyzer A"),
            ("analyzer-a2", "Analyzer B"),
            ("analyzer-a3", "Analyzer C"),
            ("analyzer-a4", "Analyzer D")
        ]
    );

    // Submit custom packet (the README's curl -d body, byte for byte).
    let curl_body = fixtures::text("requests/readme-custom-packet.json");
    let reply = server
        .post_raw(
            "/api/v1/logs",
            &[("content-type", "application/json")],
            curl_body.into_bytes(),
        )
        .await;
    reply.expect(202);
    assert_eq!(reply.json["total_packets"], 1);
    assert_eq!(reply.json["successful"], 1);
    assert_eq!(reply.json["failed"], 0);
    assert_eq!(reply.ids().len(), 1);

    // The JMeter sample request body.
    let jmeter_body = fixtures::text("requests/jmeter-sample.json");
    let reply = server
        .post_raw(
            "/api/v1/logs",
            &[("content-type", "application/json")],
            jmeter_body.into_bytes(),
        )
        .await;
    reply.expect(202);
    assert_eq!(reply.json["successful"], 1);

    let stats = server.drained().await;
    assert_eq!(stats["total_packets_received"], 2);
    assert_eq!(stats["total_messages_received"], 4);
    assert_eq!(stats["total_messages_routed"], 4);
    assert_eq!(processed(&stats).values().sum::<u64>(), 2);

    // curl http://localhost:8080/api/v1/dead-letter
    let dead = server.get("/api/v1/dead-letter").await;
    dead.expect(200);
    assert_eq!(dead.json["count"], 0);
    assert_eq!(dead.json["packets"], json!([]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_and_analyzers_show_weights_shares_and_counts() {
    let server = Server::start(&Config::four(0)).await;
    for i in 0..2 {
        server
            .post_logs(&packets(&format!("batch{i}"), 10))
            .await
            .expect(202);
    }
    let stats = server.drained().await;
    assert_eq!(stats["total_retries"], 0);
    assert_eq!(stats["total_dead_lettered"], 0);
    assert_eq!(stats["in_flight"], 0);
    assert_eq!(stats["total_packets_routed"], 20);
    assert_eq!(stats["waiting_for_analyzer"], 0);
    let expected = [
        ("analyzer-a1", 40, 40.0, 8),
        ("analyzer-a2", 30, 30.0, 6),
        ("analyzer-a3", 20, 20.0, 4),
        ("analyzer-a4", 10, 10.0, 2),
    ];
    for (id, weight, share, count) in expected {
        let a = &stats["analyzers"][id];
        assert_eq!(a["weight"], weight, "{id}");
        assert_eq!(a["share_percent"].as_f64(), Some(share), "{id}");
        assert_eq!(a["routed_count"], count, "{id}");
        assert_eq!(a["processed_count"], count, "{id}");
        assert_eq!(a["error_count"], 0, "{id}");
        assert_eq!(a["is_healthy"], true, "{id}");
    }

    let list = server.get("/api/v1/analyzers").await;
    list.expect(200);
    assert_eq!(list.json["total_count"], 4);
    assert_eq!(list.json["active_count"], 4);
    let a1 = &list.json["analyzers"]["analyzer-a1"];
    assert_eq!(a1["id"], "analyzer-a1");
    assert_eq!(a1["weight"], 40);
    assert_eq!(a1["in_rotation"], true);
    assert_eq!(a1["is_healthy"], true);
    assert_eq!(a1["processed_count"], 8);
    assert_eq!(a1["health_mode"], "auto");
    assert_eq!(a1["endpoint"], "simulated");
    assert!(is_rfc3339(&a1["healthy_since"]), "{}", list.text);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_healthz_and_readyz_answer() {
    let server = Server::start(&Config::four(0)).await;
    server.post_logs(&packets("m", 3)).await.expect(202);
    server.drained().await;
    let metrics = server.get("/metrics").await;
    metrics.expect(200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    for line in [
        "logs_distributor_packets_received_total 3",
        "logs_distributor_messages_received_total 3",
        "logs_distributor_in_flight_packets 0",
        "logs_distributor_packets_delivered_total{analyzer=\"analyzer-a1\"}",
        "logs_distributor_analyzer_weight{analyzer=\"analyzer-a4\"} 10",
        "logs_distributor_queue_capacity 20000",
    ] {
        assert!(
            metrics.text.contains(line),
            "{line} missing from:\n{}",
            metrics.text
        );
    }
    let alive = server.get("/healthz").await;
    alive.expect(200);
    assert_eq!(alive.json["status"], "ok");
    let ready = server.get("/readyz").await;
    ready.expect(200);
    assert_eq!(ready.json["status"], "ready");
    assert_eq!(ready.json["recovered"], true);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_health_endpoint_checks_its_input() {
    let server = Server::start(&Config::four(0)).await;
    let reply = server
        .set_health("no-such-analyzer", json!({"healthy": false}))
        .await;
    reply.expect(404);
    assert!(reply.error().contains("no-such-analyzer"));

    for bad in [
        json!({}),
        json!({"healthy": "no"}),
        json!({"mode": "sometimes"}),
        json!({"healthy": false, "mode": "auto"}),
        json!({"healthy": false, "colour": "red"}),
        json!([]),
    ] {
        let reply = server.set_health("analyzer-a2", bad.clone()).await;
        reply.expect(400);
        assert!(!reply.error().is_empty(), "{bad}");
    }
    let reply = server
        .post_raw("/api/v1/analyzers/analyzer-a2/health", &[], b"{".to_vec())
        .await;
    reply.expect(400);
    reply.error();

    let reply = server.set_health("analyzer-a2", json!({"healthy": false})).await;
    reply.expect(200);
    assert_eq!(reply.json["analyzer"]["id"], "analyzer-a2");
    assert_eq!(reply.json["analyzer"]["health_mode"], "force_unhealthy");
    assert_eq!(reply.json["analyzer"]["in_rotation"], false);
    let reply = server
        .set_health("analyzer-a2", json!({"mode": "force_healthy"}))
        .await;
    reply.expect(200);
    assert_eq!(reply.json["analyzer"]["health_mode"], "force_healthy");
    assert_eq!(reply.json["analyzer"]["in_rotation"], true);
    let reply = server.set_health("analyzer-a2", json!({"mode": "auto"})).await;
    reply.expect(200);
    assert_eq!(reply.json["analyzer"]["health_mode"], "auto");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dead_letter_endpoints_check_their_input() {
    let server = Server::start(&Config::four(0)).await;
    let page = server.get("/api/v1/dead-letter").await;
    page.expect(200);
    assert_eq!(page.json["total"], 0);
    assert_eq!(page.json["offset"], 0);
    assert!(page.json["file"]
        .as_str()
        .unwrap()
        .ends_with("failed_packets.json"));
    assert!(is_rfc3339(&page.json["timestamp"]));
    for query in ["?limit=10001", "?limit=abc", "?offset=-1", "?colour=red"] {
        let reply = server.get(&format!("/api/v1/dead-letter{query}")).await;
        reply.expect(400);
        assert!(!reply.error().is_empty(), "{query}");
    }
    for bad in [&b"{"[..], b"{\"ids\": \"x\"}", b"{\"all\": true}", b"[]"] {
        let reply = server
            .post_raw("/api/v1/dead-letter/replay", &[], bad.to_vec())
            .await;
        reply.expect(400);
        assert!(!reply.error().is_empty());
    }
    let reply = server.post("/api/v1/dead-letter/replay", &json!({})).await;
    reply.expect(202);
    assert_eq!(reply.json["replayed"], 0);
    let reply = server
        .post("/api/v1/dead-letter/replay", &json!({"ids": ["ghost"]}))
        .await;
    reply.expect(404);
    assert_eq!(reply.json["not_found"], json!(["ghost"]));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_each_get_their_own_ids() {
    let server = Server::start(&Config::four(0)).await;
    let requests = (0..8).map(|i| {
        let api = server.api.clone();
        tokio::spawn(async move { api.post_logs(&packets(&format!("c{i}"), 25)).await })
    });
    let mut seen = HashSet::new();
    for request in requests {
        let reply = request.await.unwrap();
        reply.expect(202);
        for id in reply.ids() {
            assert!(seen.insert(id));
        }
    }
    assert_eq!(seen.len(), 200);
    let stats = tokio::time::timeout(Duration::from_secs(10), server.drained())
        .await
        .unwrap();
    assert_eq!(processed(&stats).values().sum::<u64>(), 200);
    server.shutdown().await;
}
