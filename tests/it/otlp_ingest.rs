//! `POST /v1/logs` (OTLP/HTTP) against the binary over loopback, with
//! reference analyzers (processes) recording every message they receive:
//! protobuf, OTLP/JSON and gzip delivered as the mapping says; each answer
//! of the OTLP specification in the request's encoding (200 with
//! `partial_success`, 400/413/415 with a `Status`, 503 with `Retry-After`
//! when full or recovering); the ingest token; nothing lost across a
//! `kill -9` after the 200.

use crate::support::config::{analyzer, write_config, Config};
use crate::support::distributor::Distributor;
use crate::support::http::Reply;
use crate::support::otlp::{log_request, partial_success, post_otlp, status, OtlpSetup, JSON, PROTOBUF};
use crate::support::packets::packets;
use crate::support::poll::{eventually, DEADLINE};
use crate::support::ports::free_port;
use crate::support::serial::beside_others;
use flate2::write::GzEncoder;
use flate2::Compression;
use prost::Message;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn protobuf(service: &str, bodies: &[&str]) -> Vec<u8> {
    log_request(service, bodies).encode_to_vec()
}

/// The messages by their text.
fn by_text(messages: Vec<Value>) -> BTreeMap<String, Value> {
    messages
        .into_iter()
        .map(|m| (m["message"].as_str().expect("message text").to_owned(), m))
        .collect()
}

/// The value of one series of `/metrics`, 0 when it is not there.
async fn metric(setup: &OtlpSetup, series: &str) -> u64 {
    let text = setup.api().get("/metrics").await.text;
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_json_and_gzip_are_taken_and_delivered_as_the_mapping_says() {
    let setup = OtlpSetup::start(|config, _| config).await;
    let api = setup.api();

    let reply = post_otlp(api, PROTOBUF, protobuf("proto-svc", &["p0", "p1", "p2"]), &[]).await;
    assert_eq!(partial_success(&reply, PROTOBUF), (0, String::new()));
    assert!(reply.bytes.is_empty(), "an empty ExportLogsServiceResponse");

    let otlp_json = json!({"resourceLogs": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "json-svc"}},
            {"key": "k8s.pod.uid", "value": {"stringValue": "pod-7"}}]},
        "scopeLogs": [{"scope": {"name": "io.app", "version": "1.0"}, "logRecords": [{
            "timeUnixNano": "1733390000250000000", "severityNumber": 17, "severityText": "Error",
            "body": {"stringValue": "j0"},
            "attributes": [{"key": "user", "value": {"stringValue": "u1"}},
                           {"key": "attempt", "value": {"intValue": 3}},
                           {"key": "latency", "value": {"doubleValue": 1.5}}],
            "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174", "flags": 1}]}]}]});
    let json_body = serde_json::to_vec(&otlp_json).unwrap();
    let reply = post_otlp(api, JSON, json_body.clone(), &[]).await;
    assert_eq!(partial_success(&reply, JSON), (0, String::new()));
    assert_eq!(reply.text, "{}");

    let gzip_header = [("content-encoding", "gzip")];
    let reply = post_otlp(
        api,
        PROTOBUF,
        gzip(&protobuf("gzip-svc", &["g0", "g1"])),
        &gzip_header,
    )
    .await;
    assert_eq!(partial_success(&reply, PROTOBUF), (0, String::new()));
    let gzipped_json = String::from_utf8(json_body).unwrap().replace("\"j0\"", "\"j1\"");
    let reply = post_otlp(api, JSON, gzip(gzipped_json.as_bytes()), &gzip_header).await;
    assert_eq!(partial_success(&reply, JSON), (0, String::new()));

    let messages = by_text(setup.delivered(7).await);
    let names: Vec<&str> = messages.keys().map(String::as_str).collect();
    assert_eq!(names, ["g0", "g1", "j0", "j1", "p0", "p1", "p2"]);
    assert_eq!(
        messages["p1"],
        json!({"level": "INFO", "message": "p1", "source": "proto-svc",
               "timestamp": "2024-12-05T09:13:20.000000001Z",
               "metadata": {"attributes": {"index": 1},
                            "resource": {"service.name": "proto-svc"},
                            "scope": {"name": "it"},
                            "severity_number": 9, "severity_text": "INFO",
                            "time_unix_nano": "1733390000000000001"}})
    );
    assert_eq!(
        messages["j0"],
        json!({"level": "ERROR", "message": "j0", "source": "json-svc",
               "timestamp": "2024-12-05T09:13:20.250Z",
               "metadata": {"attributes": {"attempt": 3, "latency": 1.5, "user": "u1"},
                            "flags": 1,
                            "resource": {"k8s.pod.uid": "pod-7", "service.name": "json-svc"},
                            "scope": {"name": "io.app", "version": "1.0"},
                            "severity_number": 17, "severity_text": "Error",
                            "span_id": "eee19b7ec3c1b174",
                            "time_unix_nano": "1733390000250000000",
                            "trace_id": "5b8efff798038103d269b633813fc60c"}})
    );
    assert_eq!(messages["g1"]["source"], "gzip-svc");
    assert_eq!(messages["j1"]["metadata"], messages["j0"]["metadata"]);

    // Counted like any ingest: one packet per request here (one group each).
    let stats = api.stats().await;
    assert_eq!(stats["total_packets_received"], 4, "{stats}");
    assert_eq!(stats["total_messages_received"], 7, "{stats}");
    assert_eq!(
        metric(
            &setup,
            "logs_distributor_otlp_log_records_total{outcome=\"accepted\"}"
        )
        .await,
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_a_limit_is_reported_in_partial_success_and_the_others_are_delivered() {
    let setup = OtlpSetup::start(|config, _| config.limits("{max_message_bytes: 100}")).await;
    let api = setup.api();
    let too_big = "x".repeat(150);
    for (encoding, body) in [
        (PROTOBUF, protobuf("svc", &["kept-1", &too_big, "kept-2"])),
        (
            JSON,
            serde_json::to_vec(&json!({"resourceLogs": [{"scopeLogs": [{"logRecords": [
                {"body": {"stringValue": "kept-3"}},
                {"body": {"stringValue": too_big}},
                {"body": {"stringValue": "kept-4"}}]}]}]}))
            .unwrap(),
        ),
    ] {
        let reply = post_otlp(api, encoding, body, &[]).await;
        let (rejected, why) = partial_success(&reply, encoding);
        assert_eq!(rejected, 1, "{encoding}: {why}");
        assert_eq!(
            why,
            "1 of 3 log records rejected: resourceLogs[0].scopeLogs[0].logRecords[1]: body: 150 \
             bytes as the message: at most 100 are allowed (limits.max_message_bytes)",
            "{encoding}"
        );
    }
    let messages = by_text(setup.delivered(4).await);
    let names: Vec<&str> = messages.keys().map(String::as_str).collect();
    assert_eq!(names, ["kept-1", "kept-2", "kept-3", "kept-4"]);
    assert_eq!(messages["kept-3"]["source"], "unknown_service");
    assert_eq!(
        metric(
            &setup,
            "logs_distributor_otlp_log_records_total{outcome=\"rejected\"}"
        )
        .await,
        2
    );
}

/// Asserts `reply` is `code` with a Status in `encoding` whose message
/// holds `says`.
fn refused(reply: &Reply, code: u16, encoding: &str, says: &str) {
    reply.expect(code);
    let status = status(reply, encoding);
    let expected_code = if code == 503 { 14 } else { 3 };
    assert_eq!(status.code, expected_code, "{}", status.message);
    assert!(
        status.message.contains(says),
        "{says:?} not in {:?}",
        status.message
    );
}

/// A request refused whole: what it is, its content type, body and other
/// headers, the status and what the Status says.
type Refusal = (
    &'static str,
    &'static str,
    Vec<u8>,
    Vec<(&'static str, &'static str)>,
    u16,
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_status_in_their_encoding_and_nothing_is_kept() {
    let setup = OtlpSetup::start(|config, _| {
        config
            .limits("{max_body_bytes: 2000}")
            .queue("{max_in_flight_bytes: 8192}")
    })
    .await;
    let api = setup.api();
    let cases: Vec<Refusal> = vec![
        (
            "protobuf garbage",
            PROTOBUF,
            b"\xff\xff\xff\xff".to_vec(),
            vec![],
            400,
            "the request: failed to decode Protobuf message",
        ),
        (
            "JSON of another shape",
            JSON,
            br#"{"resourceLogs": {"scopeLogs": []}}"#.to_vec(),
            vec![],
            400,
            "resourceLogs: invalid type: map, expected an array",
        ),
        (
            "not JSON",
            JSON,
            b"resourceLogs".to_vec(),
            vec![],
            400,
            "the request: expected a JSON object",
        ),
        (
            "a trace id that is not hex",
            JSON,
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"traceId":"not-hex"}]}]}]}"#.to_vec(),
            vec![],
            400,
            "resourceLogs[0].scopeLogs[0].logRecords[0]: traceId: \"not-hex\" is not hex",
        ),
        (
            "gzip that is not",
            PROTOBUF,
            b"plain".to_vec(),
            vec![("content-encoding", "gzip")],
            400,
            "body is not valid gzip",
        ),
        (
            "another content type",
            "text/plain",
            b"hello".to_vec(),
            vec![],
            415,
            "Content-Type \"text/plain\" is not supported: send application/x-protobuf or application/json",
        ),
        (
            "protobuf by another name",
            "application/protobuf",
            protobuf("svc", &["m"]),
            vec![],
            415,
            "is not supported",
        ),
        (
            "another content encoding",
            PROTOBUF,
            protobuf("svc", &["m"]),
            vec![("content-encoding", "br")],
            415,
            "Content-Encoding \"br\" is not supported",
        ),
        (
            "a body over limits.max_body_bytes",
            PROTOBUF,
            protobuf("svc", &[&"m".repeat(2500)]),
            vec![],
            413,
            "request body is larger than limits.max_body_bytes",
        ),
        (
            "a gzip body that inflates over it",
            JSON,
            gzip(&[b' '; 5000]),
            vec![("content-encoding", "gzip")],
            413,
            "decompressed body is larger than limits.max_body_bytes (2000 bytes)",
        ),
        (
            // The resource is in every message: 20 small records make more
            // than 8 KiB of packets.
            "records that map to more bytes than the whole queue holds",
            PROTOBUF,
            {
                let mut request = log_request("svc", &["a"; 20]);
                let resource = request.resource_logs[0].resource.as_mut().unwrap();
                resource.attributes.push(crate::support::otlp::attribute(
                    "big",
                    crate::support::otlp::string(&"r".repeat(500)),
                ));
                request.encode_to_vec()
            },
            vec![],
            413,
            "the request is larger than the whole queue: more than 8192 bytes (queue.max_in_flight_bytes); \
             send it in smaller requests",
        ),
    ];
    for (what, content_type, body, headers, code, says) in cases {
        let reply = post_otlp(api, content_type, body, &headers).await;
        // The answer's encoding is the request's; JSON when it has none of the two.
        let encoding = if content_type == PROTOBUF { PROTOBUF } else { JSON };
        eprintln!("{what}: {} {}", reply.status, reply.text);
        refused(&reply, code, encoding, says);
    }
    let reply = api.post_raw("/v1/logs", &[], protobuf("svc", &["m"])).await;
    refused(&reply, 415, JSON, "no Content-Type");

    let stats = api.stats().await;
    assert_eq!(stats["total_packets_received"], 0, "{stats}");
    assert!(setup.recorded_messages().is_empty());
}

/// The queue's bounds hold `/v1/logs` as they hold the other ingest
/// routes: records that make more packets than the whole queue holds are
/// 413 (retrying cannot help), in the request's encoding, counted as
/// `too_large`; a request that fits is taken whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_whole_queue_is_413_and_one_that_fits_is_taken() {
    let setup = OtlpSetup::start(|config, _| {
        config
            .limits("{max_messages_per_packet: 2}")
            .queue("{max_in_flight: 3}")
    })
    .await;
    let api = setup.api();
    let says = "the request is larger than the whole queue: more than 3 packets (queue.max_in_flight); \
                send it in smaller requests; nothing from this request was kept";
    // 7 records make 4 packets of at most 2 messages: one more than the queue.
    let reply = post_otlp(api, PROTOBUF, protobuf("svc", &["big"; 7]), &[]).await;
    refused(&reply, 413, PROTOBUF, says);
    let records: Vec<Value> = (0..7).map(|_| json!({"body": {"stringValue": "big"}})).collect();
    let otlp_json = json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]});
    let reply = post_otlp(api, JSON, serde_json::to_vec(&otlp_json).unwrap(), &[]).await;
    refused(&reply, 413, JSON, says);
    assert_eq!(
        metric(
            &setup,
            "logs_distributor_packets_rejected_total{reason=\"too_large\"}"
        )
        .await,
        2,
        "each refused request counts as one packet, their number not being known"
    );

    let reply = post_otlp(api, PROTOBUF, protobuf("svc", &["fits"; 6]), &[]).await;
    assert_eq!(partial_success(&reply, PROTOBUF), (0, String::new()));
    let messages = setup.delivered(6).await;
    assert!(messages.iter().all(|m| m["message"] == "fits"), "{messages:?}");
    assert_eq!(api.stats().await["total_packets_received"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_distributor_answers_503_with_retry_after_and_takes_the_records_later() {
    let setup = OtlpSetup::start(|config, _| config.queue("{max_in_flight: 1}")).await;
    let api = setup.api();
    // Nobody to deliver to: the first packet waits, in flight.
    for analyzer in &setup.analyzers {
        api.set_health(&analyzer.name, json!({"healthy": false}))
            .await
            .expect(200);
    }
    let reply = post_otlp(api, PROTOBUF, protobuf("svc", &["first"]), &[]).await;
    assert_eq!(partial_success(&reply, PROTOBUF), (0, String::new()));
    for encoding in [PROTOBUF, JSON] {
        let body = if encoding == PROTOBUF {
            protobuf("svc", &["second"])
        } else {
            br#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"second"}}]}]}]}"#
                .to_vec()
        };
        let reply = post_otlp(api, encoding, body, &[]).await;
        refused(
            &reply,
            503,
            encoding,
            "the distributor is at capacity (1 packets in flight)",
        );
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    assert_eq!(
        metric(
            &setup,
            "logs_distributor_packets_rejected_total{reason=\"overloaded\"}"
        )
        .await,
        2
    );
    // Room again once the analyzers are back: the retry is taken.
    for analyzer in &setup.analyzers {
        api.set_health(&analyzer.name, json!({"mode": "auto"}))
            .await
            .expect(200);
    }
    eventually("room again", DEADLINE, || async {
        let reply = post_otlp(api, PROTOBUF, protobuf("svc", &["second"]), &[]).await;
        match reply.status.as_u16() {
            200 => Ok(()),
            503 => Err(reply.text),
            other => panic!("{other}: {}", reply.text),
        }
    })
    .await;
    let messages = by_text(setup.delivered(2).await);
    assert!(messages.contains_key("first") && messages.contains_key("second"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_token_guards_the_route() {
    let setup = OtlpSetup::start(|config, dir| {
        let token = dir.join("ingest.token");
        std::fs::write(&token, "s3cret\n").unwrap();
        config.section("auth", &format!("{{ingest_token_file: {token:?}}}"))
    })
    .await;
    let api = setup.api();
    let body = || protobuf("svc", &["authorized"]);
    let reply = post_otlp(api, PROTOBUF, body(), &[]).await;
    reply.expect(401);
    assert!(reply.header("www-authenticate").unwrap().starts_with("Bearer"));
    post_otlp(api, PROTOBUF, body(), &[("authorization", "Bearer wrong")])
        .await
        .expect(403);
    let reply = post_otlp(api, PROTOBUF, body(), &[("authorization", "Bearer s3cret")]).await;
    assert_eq!(partial_success(&reply, PROTOBUF), (0, String::new()));
    let messages = setup.delivered(1).await;
    assert_eq!(messages[0]["message"], "authorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_answered_200_survive_a_kill_9() {
    let mut setup = OtlpSetup::start(|config, _| config).await;
    for analyzer in &setup.analyzers {
        setup
            .api()
            .set_health(&analyzer.name, json!({"healthy": false}))
            .await
            .expect(200);
    }
    let bodies: Vec<String> = (0..20).map(|i| format!("durable-{i:02}")).collect();
    let bodies: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let reply = post_otlp(setup.api(), PROTOBUF, protobuf("svc", &bodies), &[]).await;
    assert_eq!(partial_success(&reply, PROTOBUF), (0, String::new()));
    assert!(setup.distributor.kill9());
    assert!(
        setup.recorded_messages().is_empty(),
        "nothing was delivered before the kill"
    );

    let data = setup.dir.path().join("data");
    let config = setup.config.clone();
    setup.distributor.launch(&config, &data, &[]).await;
    for analyzer in &setup.analyzers {
        // Forced health is not kept across a restart; either way, back to auto.
        setup
            .api()
            .set_health(&analyzer.name, json!({"mode": "auto"}))
            .await
            .expect(200);
    }
    let messages = by_text(setup.delivered(20).await);
    let names: Vec<&str> = messages.keys().map(String::as_str).collect();
    assert_eq!(names, bodies);
}

/// While start-up recovery replays a backlog, the route answers 503 with
/// `Retry-After: 5` and a Status, as every state-changing route does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovering_distributor_answers_503_with_retry_after() {
    let _gate = beside_others().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = write_config(
        dir.path(),
        "config.yaml",
        &Config::new(vec![analyzer("only", 1)])
            .queue("{max_in_flight: 100000, max_in_flight_bytes: 268435456}"),
    );
    // A backlog for the next start to recover: the analyzer forced out, then kill -9.
    let first = Distributor::start(&config, &data, dir.path()).await;
    first
        .set_health("only", json!({"healthy": false}))
        .await
        .expect(200);
    for batch in 0..400 {
        first
            .post_logs(&packets(&format!("backlog-{batch}"), 100))
            .await
            .expect(202);
    }
    drop(first);

    let mut second = Distributor::stopped(free_port(), dir.path());
    second.spawn(&config, &data, &[]);
    let api = second.api.clone();
    let started = Instant::now();
    let mut before_ready = Vec::new();
    loop {
        assert!(started.elapsed() < DEADLINE * 3, "not ready in time");
        let sent = api
            .http
            .post(api.url("/v1/logs"))
            .header("content-type", PROTOBUF)
            .body(protobuf("svc", &["while recovering"]))
            .send()
            .await;
        let Ok(response) = sent else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        let reply = Reply::read(response).await.expect("an answer");
        if api.get("/readyz").await.status == 200 {
            break;
        }
        before_ready.push(reply);
    }
    assert!(
        !before_ready.is_empty(),
        "start-up recovery finished before any request could be served"
    );
    for reply in &before_ready {
        refused(reply, 503, PROTOBUF, "recovering its write-ahead log");
        assert_eq!(reply.header("retry-after"), Some("5"));
    }
}
