//! `POST /api/v1/records` against the service over HTTP: bodies built to
//! each shipper's documented wire format (`tests/fixtures/records/`: Vector's
//! `http` sink with the `json` codec as an array and newline-delimited,
//! Fluent Bit's `http` output as `json`, `json_lines` and `json_stream`,
//! Logstash's `http` output as `json_batch`, Fluent Bit's Kubernetes
//! records), gzip in one member and in several, every answer rule, and a
//! 10 MB Vector batch of 40 000 events delivered in full to reference
//! analyzers, split exactly by weight.

use crate::support::analyzers::AnalyzerProcess;
use crate::support::config::{analyzer, remote, Config};
use crate::support::fixtures;
use crate::support::http::{Api, Reply};
use crate::support::in_process::Server;
use crate::support::packets::packets;
use crate::support::poll::{eventually, DEADLINE};
use crate::support::recorder::Recorder;
use crate::support::serial::beside_others;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

const RECORDS: &str = "/api/v1/records";
const JSON: &str = "application/json";
const NDJSON: &str = "application/x-ndjson";

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// `bytes` as gzip in two members, cut in the middle (as `cat a.gz b.gz` makes).
fn gzip_in_two_members(bytes: &[u8]) -> Vec<u8> {
    let (first, second) = bytes.split_at(bytes.len() / 2);
    [gzip(first), gzip(second)].concat()
}

async fn post(api: &Api, content_type: &str, gzipped: bool, body: Vec<u8>) -> Reply {
    let mut headers = vec![("content-type", content_type)];
    if gzipped {
        headers.push(("content-encoding", "gzip"));
    }
    api.post_raw(RECORDS, &headers, body).await
}

/// A distributor in this process delivering to one recorder, with the
/// `records` section `rules` when given.
async fn recorded(rules: Option<&str>) -> (Server, Recorder) {
    let (recorder, endpoint) = Recorder::start(vec![]).await;
    let mut config = Config::new(vec![remote("recorder", 1, &endpoint)]);
    if let Some(rules) = rules {
        config = config.section("records", rules);
    }
    (Server::start(&config).await, recorder)
}

/// Asserts a 200 that took `accepted` records and found none invalid;
/// answers the packet ids.
fn all_accepted(reply: &Reply, accepted: u64) -> Vec<String> {
    reply.expect(200);
    assert_eq!(reply.json["accepted_records"], accepted, "{}", reply.text);
    assert_eq!(reply.json["total_records"], accepted, "{}", reply.text);
    assert_eq!(reply.json["invalid_records"], 0, "{}", reply.text);
    assert_eq!(reply.json["errors"], json!([]), "{}", reply.text);
    packet_ids(reply)
}

/// The `packets` of an answer: the ids of the packets its records went into.
fn packet_ids(reply: &Reply) -> Vec<String> {
    reply.json["packets"]
        .as_array()
        .unwrap_or_else(|| panic!("no packets in {}", reply.text))
        .iter()
        .map(|id| id.as_str().unwrap().to_string())
        .collect()
}

/// Waits until nothing is in flight, for at most `within`; answers the stats.
async fn drained_within(api: &Api, within: Duration) -> Value {
    eventually("nothing in flight", within, || async {
        let stats = api.stats().await;
        if stats["in_flight"] == 0 {
            Ok(stats)
        } else {
            Err(format!("in_flight = {}", stats["in_flight"]))
        }
    })
    .await
}

/// The messages of the packets `ids`, in that order, once the recorder has
/// them all.
async fn delivered(server: &Server, recorder: &Recorder, ids: &[String]) -> Vec<Value> {
    server.drained().await;
    let packets = recorder.packets_by_id();
    ids.iter()
        .flat_map(|id| {
            packets
                .get(id)
                .unwrap_or_else(|| panic!("packet {id} was not delivered"))["messages"]
                .as_array()
                .unwrap()
                .clone()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_events_as_a_json_array_or_newline_delimited_map_field_for_field() {
    let (server, recorder) = recorded(None).await;
    // Vector's health check: a HEAD that must answer 200 (`healthcheck.uri`).
    server
        .send(server.http.head(server.url("/readyz")))
        .await
        .expect(200);
    let array = fixtures::text("records/vector-json.json");
    let lines = fixtures::text("records/vector-ndjson.ndjson");
    let from_array = all_accepted(&post(&server, JSON, true, gzip(array.as_bytes())).await, 3);
    let from_lines = all_accepted(&post(&server, NDJSON, true, gzip(lines.as_bytes())).await, 3);
    let messages = delivered(&server, &recorder, &from_array).await;
    assert_eq!(messages, delivered(&server, &recorder, &from_lines).await);
    assert_eq!(
        messages,
        [
            json!({"level": "INFO", "message": "GET /health 200 0.4ms", "source": "web-1",
                   "timestamp": "2024-12-05T09:13:20.123456789Z",
                   "metadata": {"file": "/var/log/app/api.log", "source_type": "file"}}),
            json!({"level": "INFO", "message": "POST /orders 201 12ms", "source": "web-1",
                   "timestamp": "2024-12-05T09:13:20.200Z",
                   "metadata": {"file": "/var/log/app/api.log", "source_type": "file"}}),
            json!({"level": "INFO", "message": "{\"level\":\"error\",\"msg\":\"db timeout\"}", "source": "web-2",
                   "timestamp": "2024-12-05T09:13:21Z",
                   "metadata": {"container_name": "checkout", "source_type": "docker_logs", "stream": "stderr"}}),
        ]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluent_bit_json_json_lines_and_json_stream_map_the_same_records() {
    let (server, recorder) = recorded(None).await;
    let json_format = fixtures::text("records/fluent-bit-json.json");
    let json_lines = fixtures::text("records/fluent-bit-json-lines.ndjson");
    let json_stream = fixtures::text("records/fluent-bit-json-stream.json");
    assert!(!json_stream.contains('\n'), "json_stream has no separators");
    let bodies = [
        (JSON, true, gzip(json_format.as_bytes())),
        (NDJSON, true, gzip_in_two_members(json_lines.as_bytes())),
        (JSON, false, json_stream.into_bytes()),
        (JSON, true, gzip_in_two_members(json_format.as_bytes())),
    ];
    let mut all = Vec::new();
    for (content_type, gzipped, body) in bodies {
        let ids = all_accepted(&post(&server, content_type, gzipped, body).await, 3);
        all.push(delivered(&server, &recorder, &ids).await);
    }
    let expected = [
        json!({"level": "INFO", "message": "worker 3 started", "source": "queue",
               "timestamp": "2024-12-05T09:13:20.123456Z"}),
        json!({"level": "WARNING", "message": "retrying job 42", "source": "queue",
               "timestamp": "2024-12-05T09:13:20.500Z", "metadata": {"attempt": 2}}),
        json!({"level": "ERROR", "message": "job 42 failed", "source": "queue",
               "timestamp": "2024-12-05T09:13:21Z",
               "metadata": {"error": {"kind": "timeout", "after_ms": 3000}}}),
    ];
    for messages in all {
        assert_eq!(messages, expected);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logstash_json_batch_events_keep_their_host_object() {
    let (server, recorder) = recorded(None).await;
    let body = fixtures::text("records/logstash-json-batch.json");
    let ids = all_accepted(&post(&server, JSON, true, gzip(body.as_bytes())).await, 2);
    let messages = delivered(&server, &recorder, &ids).await;
    assert_eq!(
        messages[0],
        json!({"level": "INFO", "message": "Accepted publickey for deploy from 10.0.0.7 port 52144",
               "source": "bastion-1", "timestamp": "2024-12-05T09:13:20.123Z",
               "metadata": {"@version": "1", "host": {"name": "bastion-1", "hostname": "bastion-1"},
                            "log": {"file": {"path": "/var/log/auth.log"}},
                            "event": {"original": "Accepted publickey for deploy from 10.0.0.7 port 52144"},
                            "tags": ["ssh"]}})
    );
    assert_eq!(messages[1]["timestamp"], "2024-12-05T09:13:21Z");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_records_from_fluent_bit_keep_every_field() {
    let (server, recorder) = recorded(None).await;
    let body = fixtures::text("records/fluent-bit-kubernetes.json");
    let sent: Vec<Value> = serde_json::from_str(&body).unwrap();
    let ids = all_accepted(&post(&server, JSON, false, body.into_bytes()).await, 2);
    let messages = delivered(&server, &recorder, &ids).await;
    for (message, record) in messages.iter().zip(&sent) {
        assert_eq!(message["message"], record["log"]);
        assert_eq!(message["source"], "api", "from kubernetes.container_name");
        assert_eq!(message["level"], "INFO");
        let metadata = &message["metadata"];
        assert_eq!(
            metadata["kubernetes"], record["kubernetes"],
            "the nested object whole"
        );
        for field in ["date", "stream", "logtag"] {
            assert_eq!(metadata[field], record[field], "{field}");
        }
        assert_eq!(metadata.as_object().unwrap().len(), 4, "{metadata}");
    }
    assert_eq!(
        messages[0]["timestamp"], "2024-12-05T09:13:20.500Z",
        "from `time`"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_go_to_the_dead_letter_and_the_answer_says_how_many_and_why() {
    let (server, recorder) = recorded(None).await;
    let long = json!({"log": "x".repeat(10_001)}).to_string();
    let records = [
        r#"{"msg":"first good one"}"#,
        r#"{"level":"info","text":"no message here"}"#,
        r#"{"msg":"second good one","host":"h"}"#,
        r#"{"message":"m","timestamp":"soon"}"#,
        r#""just a string""#,
        &long,
        r#"{"msg": }"#,
    ];
    let body = format!("[{}]", records.join(","));
    let reply = post(&server, JSON, false, body.into_bytes()).await;
    reply.expect(200);
    let reasons = [
        (1, "no message field: looked for message, log, msg"),
        (
            3,
            "timestamp (field `timestamp`): \"soon\" is not an RFC 3339 time or a number of seconds since the epoch",
        ),
        (4, "a record must be a JSON object, got a string"),
        (5, "message (field `log`): 10001 bytes long: at most 10000 are allowed"),
        (6, "not valid JSON: expected value at line 1 column 9"),
    ];
    assert_eq!(
        reply.json,
        json!({"total_records": 7, "accepted_records": 2, "invalid_records": 5, "dead_lettered": 5,
               "packets": reply.json["packets"].clone(),
               "errors": reasons.iter().map(|(index, error)| json!({"index": index, "error": error})).collect::<Vec<_>>()})
    );
    let ids = packet_ids(&reply);
    let messages = delivered(&server, &recorder, &ids).await;
    let texts: Vec<_> = messages.iter().map(|m| m["message"].clone()).collect();
    assert_eq!(texts, [json!("first good one"), json!("second good one")]);

    // Each invalid record is a dead letter of its own: the record's text as
    // it was sent, its reason as final_error.
    let dead = server.dead_letter().await;
    assert_eq!(dead.len(), 5);
    for (entry, (index, reason)) in dead.iter().zip(reasons) {
        assert_eq!(entry["final_error"], format!("invalid record {index}: {reason}"));
        let message = &entry["packet"]["messages"][0];
        assert_eq!(message["message"], records[index], "kept as it was sent");
        assert_eq!(
            message["metadata"],
            json!({"invalid_record": {"index": index, "error": reason}})
        );
        assert_eq!(message["source"], "unknown");
    }
    let stats = server.stats().await;
    assert_eq!(stats["total_dead_lettered"], 5);
    assert_eq!(stats["total_messages_received"], 2);
    let metrics = server.get("/metrics").await.text;
    assert!(
        metrics.contains("logs_distributor_records_invalid_total{outcome=\"dead_lettered\"} 5"),
        "{metrics}"
    );

    // Nothing valid at all, but JSON: every record kept, still a 200.
    let reply = post(&server, NDJSON, false, b"{\"a\":1}\nnot json\n".to_vec()).await;
    reply.expect(200);
    assert_eq!(reply.json["accepted_records"], 0);
    assert_eq!(reply.json["dead_lettered"], 2);
    assert_eq!(reply.json["packets"], json!([]));
    assert_eq!(server.dead_letter().await.len(), 7);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refuse_policy_refuses_the_whole_request_and_keeps_nothing() {
    let (server, recorder) = recorded(Some("{invalid: refuse}")).await;
    let body = r#"[{"msg":"good"},{"msg":"also good"},{"lvl":"debug"},{"message":"m","date":"later"}]"#;
    let reply = post(&server, JSON, false, body.as_bytes().to_vec()).await;
    reply.expect(400);
    assert_eq!(
        reply.error(),
        "record 2: no message field: looked for message, log, msg; nothing from this request was kept (records.invalid: refuse)"
    );
    assert_eq!(reply.json["invalid_records"], 2);
    assert_eq!(reply.json["errors"][1]["index"], 3);
    server.drained().await;
    assert!(recorder.deliveries().is_empty());
    assert!(server.dead_letter().await.is_empty());
    assert_eq!(server.stats().await["total_packets_received"], 0);
    let metrics = server.get("/metrics").await.text;
    assert!(
        metrics.contains("logs_distributor_records_invalid_total{outcome=\"refused\"} 2"),
        "{metrics}"
    );
    all_accepted(
        &post(&server, JSON, false, br#"[{"msg":"good"}]"#.to_vec()).await,
        1,
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_with_nothing_usable_is_400_and_keeps_nothing() {
    let (server, recorder) = recorded(None).await;
    for (content_type, body, says) in [
        (JSON, "", "request holds no record: send at least 1"),
        (JSON, "  [ ] ", "request holds no record: send at least 1"),
        (NDJSON, "\n\n", "request holds no record: send at least 1"),
        (
            JSON,
            "not json at all",
            "body holds no JSON: record 0: not valid JSON: expected ident",
        ),
        (
            NDJSON,
            "plain text\nlines\n",
            "body holds no JSON: record 0: not valid JSON",
        ),
        (
            JSON,
            r#"{"msg": "cut"#,
            "body holds no JSON: record 0: the body ends inside this value",
        ),
    ] {
        let reply = post(&server, content_type, false, body.as_bytes().to_vec()).await;
        reply.expect(400);
        assert!(reply.error().starts_with(says), "{body:?}: {}", reply.text);
    }
    server.drained().await;
    assert!(recorder.deliveries().is_empty());
    assert!(server.dead_letter().await.is_empty());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_or_stopping_distributor_answers_503_with_retry_after_and_keeps_nothing() {
    let config = Config::new(vec![analyzer("slow", 1).processing(1500)])
        .queue("{max_in_flight: 3, full_wait: 0s}")
        .shutdown("{drain_timeout: 5s}");
    let server = Server::start(&config).await;
    server.post_logs(&packets("filler", 3)).await.expect(202);
    let reply = post(&server, JSON, false, br#"[{"msg":"no room"}]"#.to_vec()).await;
    reply.expect(503);
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(reply.error().contains("at capacity"), "{}", reply.text);
    assert!(
        reply.error().ends_with("nothing from this request was kept"),
        "{}",
        reply.text
    );
    let metrics = server.get("/metrics").await.text;
    assert!(
        metrics.contains("logs_distributor_packets_rejected_total{reason=\"overloaded\"} 1"),
        "{metrics}"
    );
    assert_eq!(server.stats().await["total_packets_received"], 3);

    server.running().stop_token().cancel();
    eventually("/readyz to say 503", DEADLINE, || async {
        let ready = server.get("/readyz").await;
        (ready.status == 503).then_some(()).ok_or(ready.text)
    })
    .await;
    let reply = post(&server, JSON, false, br#"[{"msg":"too late"}]"#.to_vec()).await;
    reply.expect(503);
    assert_eq!(reply.header("retry-after"), Some("5"));
    assert!(reply.error().contains("shutting down"), "{}", reply.text);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_large_and_unsupported_bodies_are_413_and_415() {
    let config = Config::new(vec![analyzer("sink", 1)])
        .limits("{max_body_bytes: 65536}")
        .queue("{max_in_flight: 3}")
        .section("records", "{max_messages_per_packet: 2}");
    let server = Server::start(&config).await;
    let record = json!({"msg": "y".repeat(100)}).to_string();
    let over = format!("[{}]", vec![record.as_str(); 700].join(","));
    assert!(over.len() > 65536);
    let reply = post(&server, JSON, false, over.clone().into_bytes()).await;
    reply.expect(413);
    assert_eq!(reply.error(), "request body is larger than limits.max_body_bytes");
    let reply = post(&server, JSON, true, gzip(over.as_bytes())).await;
    reply.expect(413);
    assert!(
        reply.error().starts_with("decompressed body is larger"),
        "{}",
        reply.text
    );
    // Seven records in packets of two: four packets, and the queue holds three.
    let seven = format!("[{}]", [record.as_str(); 7].join(","));
    let reply = post(&server, JSON, false, seven.into_bytes()).await;
    reply.expect(413);
    assert_eq!(
        reply.error(),
        "the request is larger than the whole queue: more than 3 packets (queue.max_in_flight); send it in smaller requests; nothing from this request was kept"
    );
    let metrics = server.get("/metrics").await.text;
    assert!(
        metrics.contains("logs_distributor_packets_rejected_total{reason=\"too_large\"} 4"),
        "{metrics}"
    );
    let six = format!("[{}]", [record.as_str(); 6].join(","));
    all_accepted(&post(&server, JSON, false, six.into_bytes()).await, 6);
    for (headers, says) in [
        (
            [("content-type", "text/plain"), ("content-encoding", "identity")],
            "Content-Type \"text/plain\" is not supported",
        ),
        (
            [("content-type", JSON), ("content-encoding", "zstd")],
            "Content-Encoding \"zstd\" is not supported",
        ),
    ] {
        let reply = server
            .post_raw(RECORDS, &headers, record.clone().into_bytes())
            .await;
        reply.expect(415);
        assert!(reply.error().starts_with(says), "{}", reply.text);
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_take_the_ingestion_token() {
    let dir = tempfile::tempdir().unwrap();
    let (ingest, admin) = (dir.path().join("ingest"), dir.path().join("admin"));
    std::fs::write(&ingest, "records-ingest-token\n").unwrap();
    std::fs::write(&admin, "records-admin-token\n").unwrap();
    let auth = format!("{{ingest_token_file: {ingest:?}, admin_token_file: {admin:?}}}");
    let server = Server::start(&Config::new(vec![analyzer("sink", 1)]).section("auth", &auth)).await;
    let body = br#"{"msg":"authorised"}"#.to_vec();
    let reply = post(&server, JSON, false, body.clone()).await;
    reply.expect(401);
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer realm=\"logs-distributor\"")
    );
    for (token, status) in [
        ("wrong", 403),
        ("records-ingest-token", 200),
        ("records-admin-token", 200),
    ] {
        let request = server
            .http
            .post(server.url(RECORDS))
            .bearer_auth(token)
            .header("content-type", JSON)
            .body(body.clone());
        server.send(request).await.expect(status);
    }
    server.shutdown().await;
}

/// Vector's default batch: 10 MB, no event cap. One request of 40 000
/// events is taken whole, cut into packets of 100 in order, and delivered
/// to four reference analyzers 40/30/20/10, exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_of_vector_events_are_accepted_in_one_request_and_delivered_in_full() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let mut analyzers = Vec::new();
    for name in ["a", "b", "c", "d"] {
        analyzers.push(AnalyzerProcess::start(dir.path(), name, &[]).await);
    }
    let config = Config::new(
        analyzers
            .iter()
            .zip([40, 30, 20, 10])
            .map(|(a, weight)| remote(&a.name, weight, &a.endpoint()))
            .collect(),
    );
    let server = Server::start(&config).await;

    let count = 40_000;
    let body = vector_batch(count, 255);
    assert!(
        (10_000_000..=10_485_760).contains(&body.len()),
        "{} bytes",
        body.len()
    );
    let reply = post(&server, JSON, false, body).await;
    let ids = all_accepted(&reply, count as u64);
    assert_eq!(ids.len(), count / 100);

    // 400 deliveries, each fsynced by its analyzer.
    let stats = drained_within(&server, Duration::from_secs(60)).await;
    assert_eq!(stats["total_messages_received"], count);
    let mut received = BTreeSet::new();
    for (analyzer, weight) in analyzers.iter().zip([40u64, 30, 20, 10]) {
        let seen = analyzer.stats().await;
        assert_eq!(seen["packets_received"], 4 * weight, "{}: {seen}", analyzer.name);
        assert_eq!(
            seen["messages_received"],
            400 * weight,
            "{}: {seen}",
            analyzer.name
        );
        assert_eq!(seen["duplicates"], 0);
        received.extend(analyzer.records());
    }
    assert_eq!(
        received,
        ids.iter().cloned().collect::<BTreeSet<_>>(),
        "every packet, once"
    );
    server.shutdown().await;
}

/// `count` Vector events as the `http` sink's `json` codec sends them (one
/// JSON array), each `size` bytes long.
fn vector_batch(count: usize, size: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(count * (size + 1) + 2);
    body.push(b'[');
    for i in 0..count {
        if i > 0 {
            body.push(b',');
        }
        let event = |padding: usize| {
            format!(
                r#"{{"host":"web-{}","message":"event {i:05} {}","source_type":"demo_logs","timestamp":"2024-12-05T09:13:20.{:06}Z"}}"#,
                i % 7,
                "x".repeat(padding),
                i
            )
        };
        let bare = event(0).len();
        body.extend_from_slice(event(size.saturating_sub(bare)).as_bytes());
    }
    body.push(b']');
    body
}
