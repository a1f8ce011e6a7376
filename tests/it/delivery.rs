//! The HTTP transport against analyzers hosted in this process: batching,
//! the idempotency header, permanent failures with the analyzer's answer,
//! `Retry-After`, and the retry budget.

use crate::support::http::{counter, processed, serve, Api};
use crate::support::packets::{numbered_packets, packet, packets};
use crate::support::poll::{eventually, DEADLINE};
use crate::support::serial::beside_others;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use logs_distributor::config::Settings;
use logs_distributor::service::{self, Running};
use reference_analyzer::AnalyzerArgs;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

async fn reference_analyzer(name: &str) -> SocketAddr {
    serve(reference_analyzer::app(AnalyzerArgs::named(name)).expect("analyzer app")).await
}

/// Probes and ejection out of the way: the rotation never changes.
const STEADY: &str = "{interval: 1h, ejection_threshold: 0}";

/// A distributor over one HTTP analyzer at `addr`, with `extra` YAML.
async fn distributor(addr: SocketAddr, extra: &str) -> (Running, Api, tempfile::TempDir) {
    distributor_over(&[("only", 1, addr)], STEADY, extra).await
}

/// A distributor over one HTTP analyzer at `addr` that takes one packet
/// per request (`max_batch_packets: 1`), with `extra` YAML.
async fn one_packet_per_request(addr: SocketAddr, extra: &str) -> (Running, Api, tempfile::TempDir) {
    let analyzer =
        format!("  - {{id: only, weight: 1, endpoint: \"http://{addr}/\", max_batch_packets: 1}}\n");
    start(&analyzer, STEADY, extra).await
}

/// A distributor over HTTP analyzers given as (id, weight, address), with
/// the `health` section and `extra` YAML.
async fn distributor_over(
    analyzers: &[(&str, u32, SocketAddr)],
    health: &str,
    extra: &str,
) -> (Running, Api, tempfile::TempDir) {
    let lines: String = analyzers
        .iter()
        .map(|(id, weight, addr)| {
            format!("  - {{id: {id}, weight: {weight}, endpoint: \"http://{addr}/\"}}\n")
        })
        .collect();
    start(&lines, health, extra).await
}

/// A distributor over the `analyzers` list's YAML entries, with the
/// `health` section and `extra` YAML.
async fn start(analyzers: &str, health: &str, extra: &str) -> (Running, Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut yaml = format!("analyzers:\n{analyzers}");
    yaml.push_str(&format!(
        "health: {health}\ncheckpoint: {{interval: 1h}}\nshutdown: {{drain_timeout: 100ms}}\n{extra}"
    ));
    let mut settings = Settings::from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    settings.listen = "127.0.0.1:0".into();
    settings.data_dir = dir.path().to_path_buf();
    let running = service::start(settings).await.expect("distributor starts");
    let api = Api::new(running.addr());
    (running, api, dir)
}

async fn analyzer_stats(addr: SocketAddr) -> Value {
    reqwest::get(format!("http://{addr}/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn packets_bound_for_one_analyzer_travel_in_batches() {
    let addr = reference_analyzer("batched").await;
    let (running, api, _dir) = distributor(
        addr,
        "batch: {max_packets: 10, linger: 100ms}\nretry: {base_delay: 20ms}\n",
    )
    .await;
    api.post_logs(&packets("batch", 100)).await.expect(202);
    let stats = eventually("all 100 packets at the analyzer", DEADLINE, || async {
        let stats = analyzer_stats(addr).await;
        if stats["packets_received"] == 100 {
            Ok(stats)
        } else {
            Err(stats.to_string())
        }
    })
    .await;
    let requests = stats["requests_received"].as_u64().unwrap();
    assert!(
        (10..=20).contains(&requests),
        "100 packets in batches of up to 10 took {requests} requests"
    );
    assert_eq!(stats["duplicates"], 0);
    running.shutdown().await.unwrap();
}

/// What the reference analyzer at `addr` counted once `count` packets
/// posted in one request have arrived: (requests, packets).
async fn requests_for_packets_posted_together(addr: SocketAddr, api: &Api, count: u64) -> (u64, u64) {
    api.post_logs(&packets("together", count as usize))
        .await
        .expect(202);
    api.drained().await;
    let stats = analyzer_stats(addr).await;
    assert_eq!(stats["packets_received"], count, "{stats}");
    assert_eq!(stats["duplicates"], 0, "{stats}");
    (
        stats["requests_received"].as_u64().unwrap(),
        stats["packets_received"].as_u64().unwrap(),
    )
}

/// The default settings batch: packets of one request bound for the same
/// analyzer leave in one request, a JSON array of all of them.
#[tokio::test]
async fn by_default_packets_arriving_together_leave_in_one_request() {
    let addr = reference_analyzer("defaults").await;
    let (running, api, _dir) = distributor(addr, "").await;
    assert_eq!(requests_for_packets_posted_together(addr, &api, 5).await, (1, 5));
    running.shutdown().await.unwrap();
}

/// `max_batch_packets: 1` is the way to one packet per request, whatever
/// `batch` says.
#[tokio::test]
async fn max_batch_packets_1_sends_one_packet_per_request() {
    let addr = reference_analyzer("one-by-one").await;
    let (running, api, _dir) = one_packet_per_request(addr, "").await;
    assert_eq!(requests_for_packets_posted_together(addr, &api, 5).await, (5, 5));
    running.shutdown().await.unwrap();
}

/// One scripted answer: status, extra headers, body.
type Answer = (StatusCode, Vec<(&'static str, String)>, String);
/// One request as the scripted analyzer saw it: when, headers, JSON body.
type Seen = (Instant, HeaderMap, Value);

/// An analyzer that records each request's headers and body and answers
/// from a script: one (status, headers, body) per request, then 200.
#[derive(Clone, Default)]
struct Scripted {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<Vec<Answer>>>,
}

impl Scripted {
    async fn start(script: Vec<Answer>) -> (Scripted, SocketAddr) {
        let me = Scripted {
            seen: Arc::default(),
            script: Arc::new(Mutex::new(script.into_iter().rev().collect())),
        };
        let state = me.clone();
        let app = Router::new().route("/health", get(|| async { "ok" })).route(
            "/",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    state.seen.lock().unwrap().push((Instant::now(), headers, body));
                    match state.script.lock().unwrap().pop() {
                        Some((status, headers, text)) => {
                            let mut response = (status, text).into_response();
                            for (name, value) in headers {
                                response.headers_mut().insert(name, value.parse().unwrap());
                            }
                            response
                        }
                        None => (StatusCode::OK, "{}".to_string()).into_response(),
                    }
                }
            }),
        );
        let addr = serve(app).await;
        (me, addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn each_delivery_names_its_packets_for_deduplication() {
    let (analyzer, addr) = Scripted::start(vec![]).await;
    let (running, api, _dir) = one_packet_per_request(addr, "").await;
    api.post_logs(&packets("idem", 3)).await.expect(202);
    api.drained().await;
    let requests = analyzer.requests();
    assert_eq!(requests.len(), 3, "one packet per request");
    for (_, headers, body) in &requests {
        let packets = body.as_array().expect("a JSON array of packets");
        assert_eq!(packets.len(), 1, "{body}");
        let packet = &packets[0];
        let id = packet["id"].as_str().unwrap();
        assert_eq!(headers["idempotency-key"], id);
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(packet["retry_count"], 0);
        assert_eq!(packet["messages"][0]["level"], "INFO");
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refusal_goes_to_the_dead_letter_with_the_answer_cut_to_1_kib() {
    let long_answer = format!(
        "{{\"error\": \"schema mismatch\", \"detail\": \"{}\"}}",
        "x".repeat(5000)
    );
    let (analyzer, addr) =
        Scripted::start(vec![(StatusCode::UNPROCESSABLE_ENTITY, vec![], long_answer)]).await;
    let (running, api, _dir) = distributor(addr, "retry: {base_delay: 20ms}\n").await;
    api.post_logs(&packets("refused", 1)).await.expect(202);
    let stats = api.drained().await;
    assert_eq!(stats["total_dead_lettered"], 1);
    assert_eq!(stats["total_retries"], 0, "a 4xx is permanent: no retry");
    assert_eq!(analyzer.requests().len(), 1);
    let page = api.get("/api/v1/dead-letter").await;
    let entry = &page.json["packets"][0];
    let error = entry["final_error"].as_str().unwrap();
    assert!(error.contains("422"), "{error}");
    assert!(error.contains("schema mismatch"), "{error}");
    assert!(
        error.len() < 1100,
        "the answer is cut to 1 KiB: {} bytes",
        error.len()
    );
    assert_eq!(entry["packet"]["retry_count"], 0);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_longer_retry_after_from_the_analyzer_is_honoured() {
    let (analyzer, addr) = Scripted::start(vec![(
        StatusCode::TOO_MANY_REQUESTS,
        vec![("retry-after", "1".into())],
        "slow down".into(),
    )])
    .await;
    let (running, api, _dir) = distributor(addr, "retry: {base_delay: 20ms}\n").await;
    api.post_logs(&packets("later", 1)).await.expect(202);
    let stats = api.drained().await;
    assert_eq!(stats["total_retries"], 1);
    assert_eq!(stats["total_dead_lettered"], 0);
    let requests = analyzer.requests();
    assert_eq!(requests.len(), 2);
    let waited = requests[1].0 - requests[0].0;
    assert!(
        waited >= Duration::from_millis(950),
        "retried after {waited:?}, not the 1 s asked for"
    );
    assert_eq!(requests[1].2[0]["retry_count"], 1);
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_retry_budget_holds_retries_back_but_loses_nothing() {
    // Every first attempt fails; with a floor of 1 retry at a time and no
    // other traffic, retries go out one by one and some must wait.
    let script = (0..20)
        .map(|_| (StatusCode::SERVICE_UNAVAILABLE, vec![], "busy".to_string()))
        .collect();
    let (analyzer, addr) = Scripted::start(script).await;
    let (running, api, _dir) = one_packet_per_request(
        addr,
        "retry: {base_delay: 20ms, max_retries: 5, budget_percent: 1, budget_min_concurrent: 1}\nqueue: {analyzer_concurrency: 32}\n",
    )
    .await;
    api.post_logs(&packets("budget", 20)).await.expect(202);
    let stats = api.drained().await;
    assert_eq!(stats["total_dead_lettered"], 0);
    let delivered: usize = analyzer.requests().len() - 20;
    assert_eq!(delivered, 20, "every packet delivered once after its retry");
    let metrics = api.get("/metrics").await.text;
    let deferred: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("logs_distributor_retries_deferred_total "))
        .expect("the deferred counter is exported")
        .parse()
        .unwrap();
    assert!(
        deferred > 0.0,
        "20 retries at once against a budget of 1 must wait"
    );
    running.shutdown().await.unwrap();
}

/// A client that goes away while its packets are being written to the log
/// (as wrk does with the requests it has open at the end of a run) does not
/// leave them stuck in flight until a restart: once in the log, they are
/// delivered like every other packet.
#[tokio::test]
async fn packets_of_a_client_gone_mid_request_are_delivered_not_left_in_flight() {
    let analyzer = reference_analyzer("only").await;
    let (running, api, _dir) = distributor(analyzer, "").await;
    for n in 0..40 {
        let body = serde_json::to_vec(&packets(&format!("gone-{n}-"), 2)).unwrap();
        let head = format!(
            "POST /api/v1/logs HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        let mut stream = tokio::net::TcpStream::connect(running.addr()).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.unwrap();
        // Closed without waiting for the answer.
        drop(stream);
    }
    let stats = api.drained().await;
    let received = stats["total_packets_received"].as_u64().unwrap();
    assert!(received > 0, "no request was taken in at all");
    assert_eq!(processed(&stats)["only"], received);
    assert_eq!(
        analyzer_stats(analyzer).await["packets_received"].as_u64(),
        Some(received)
    );
    running.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- batches an analyzer refuses

/// The longest header line nginx takes by default (`large_client_header_buffers 4 8k`).
const HEADER_LIMIT: usize = 8 * 1024;
/// A message the strict analyzer refuses with 400.
const POISON: &str = "poison: the analyzer refuses the request holding this";

/// What the strict analyzer saw: each request's status and packet count,
/// and the ids of the packets it took, in order.
#[derive(Clone, Default)]
struct Strict {
    answers: Arc<Mutex<Vec<(u16, usize)>>>,
    taken: Arc<Mutex<Vec<String>>>,
}

impl Strict {
    /// An analyzer with a proxy's limits in front of it: 431 when a header
    /// is over 8 KiB, 413 when the body is over `max_body` bytes, 400 when
    /// the body holds the POISON message; otherwise it takes every packet
    /// of the request and answers 200.
    async fn start(max_body: usize) -> (Strict, SocketAddr) {
        let me = Strict::default();
        let state = me.clone();
        let app = Router::new().route("/health", get(|| async { "ok" })).route(
            "/",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let packets: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
                    let status = if headers.values().any(|value| value.len() > HEADER_LIMIT) {
                        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                    } else if body.len() > max_body {
                        StatusCode::PAYLOAD_TOO_LARGE
                    } else if String::from_utf8_lossy(&body).contains(POISON) {
                        StatusCode::BAD_REQUEST
                    } else {
                        let ids = packets.iter().map(|p| p["id"].as_str().unwrap().to_string());
                        state.taken.lock().unwrap().extend(ids);
                        StatusCode::OK
                    };
                    state
                        .answers
                        .lock()
                        .unwrap()
                        .push((status.as_u16(), packets.len()));
                    (status, format!("{{\"status\": {}}}", status.as_u16()))
                }
            }),
        );
        let addr = serve(app).await;
        (me, addr)
    }
}

/// 256 packets in one batch, as `batch.max_packets: 256` sends them: their
/// ids (40 bytes each) would make a header of 10 KiB, the batch is too large
/// for the analyzer's 16 KiB body limit, one packet is too large on its own
/// and one is refused. Every other packet is delivered, once; only those two
/// are dead-lettered, each with its own reason, and nothing is retried.
#[tokio::test]
async fn a_batch_the_analyzer_refuses_is_split_until_only_the_bad_packets_are_dead_lettered() {
    let (analyzer, addr) = Strict::start(16 * 1024).await;
    let (running, api, _dir) = distributor(addr, "batch: {max_packets: 256, linger: 50ms}\n").await;

    let ids: Vec<String> = (0..256)
        .map(|i| format!("t12-{i:03}-{}", "x".repeat(32)))
        .collect();
    let (poison, huge) = (ids[100].clone(), ids[200].clone());
    let body = Value::Array(
        ids.iter()
            .map(|id| {
                let mut packet = packet(Some(id), 1);
                if *id == poison {
                    packet["messages"][0]["message"] = POISON.into();
                }
                if *id == huge {
                    let message = json!({"level": "INFO", "message": "y".repeat(5000), "source": "tests"});
                    packet["messages"] = Value::Array(vec![message; 5]);
                }
                packet
            })
            .collect(),
    );
    let reply = api.post_logs(&body).await;
    reply.expect(202);
    let stats = api.drained().await;

    let answers = analyzer.answers.lock().unwrap().clone();
    let mut taken = analyzer.taken.lock().unwrap().clone();
    taken.sort();
    let innocent: Vec<String> = ids
        .iter()
        .filter(|id| **id != poison && **id != huge)
        .cloned()
        .collect();
    assert_eq!(
        taken, innocent,
        "every innocent packet delivered, once; the analyzer answered {answers:?}"
    );
    assert!(
        answers
            .iter()
            .any(|&(status, packets)| status == 200 && packets > 1),
        "packets still travel in batches: {answers:?}"
    );
    assert!(
        !answers.iter().any(|&(status, _)| status == 431),
        "the headers stay under 8 KiB: {answers:?}"
    );

    let entries = api.dead_letter().await;
    let mut dead: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            assert_eq!(e["packet"]["retry_count"], 0, "a refusal is not retried: {e}");
            let id = e["packet"]["id"].as_str().unwrap().to_string();
            (id, e["final_error"].as_str().unwrap().to_string())
        })
        .collect();
    dead.sort();
    assert_eq!(dead.len(), 2, "only the two bad packets: {dead:?}");
    assert_eq!(dead[0].0, poison);
    assert!(dead[0].1.contains("HTTP 400"), "{dead:?}");
    assert_eq!(dead[1].0, huge);
    assert!(dead[1].1.contains("HTTP 413"), "{dead:?}");
    assert_eq!(stats["total_retries"], 0, "{stats}");
    assert_eq!(stats["total_dead_lettered"], 2, "{stats}");
    running.shutdown().await.unwrap();
}

/// A bad packet says nothing about the analyzer's health: with ejection at
/// the first failed delivery, a batch whose first packet is refused (four
/// 400s in a row while it is bisected) delivers the other seven and leaves
/// the analyzer in rotation.
#[tokio::test]
async fn a_refused_packet_in_a_batch_does_not_eject_the_analyzer() {
    let (analyzer, addr) = Strict::start(1 << 20).await;
    let (running, api, _dir) = distributor_over(
        &[("only", 1, addr)],
        "{interval: 1h, ejection_threshold: 1}",
        "batch: {max_packets: 8, linger: 50ms}\n",
    )
    .await;
    let mut body = packets("eject", 8);
    body[0]["messages"][0]["message"] = POISON.into();
    api.post_logs(&body).await.expect(202);
    let stats = api.drained().await;
    let answers = analyzer.answers.lock().unwrap().clone();
    assert_eq!(
        analyzer.taken.lock().unwrap().len(),
        7,
        "the analyzer answered {answers:?}"
    );
    assert_eq!(stats["total_dead_lettered"], 1, "{stats}");
    let list = api.get("/api/v1/analyzers").await;
    assert_eq!(
        list.json["analyzers"]["only"]["in_rotation"], true,
        "{}",
        list.text
    );
    running.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- retries stay with their analyzer

/// Every packet an analyzer received: (id, retry_count) in arrival order.
type Attempts = Arc<Mutex<Vec<(String, u64)>>>;

/// An analyzer that takes every packet it receives (records its id and
/// retry count) and answers 200, except that it answers its first
/// `fail_first` requests 500 and then hangs its next `hang_next` past any
/// delivery timeout, both after taking the packets: the distributor sees a
/// failure for a delivery the analyzer processed.
async fn processing_analyzer(fail_first: usize, hang_next: usize) -> (Attempts, SocketAddr) {
    let attempts: Attempts = Arc::default();
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = attempts.clone();
    let app = Router::new().route("/health", get(|| async { "ok" })).route(
        "/",
        post(move |body: axum::body::Bytes| {
            let (seen, requests) = (seen.clone(), requests.clone());
            async move {
                let packets: Vec<Value> = serde_json::from_slice(&body).unwrap();
                seen.lock().unwrap().extend(packets.iter().map(|p| {
                    let id = p["id"].as_str().unwrap().to_string();
                    (id, p["retry_count"].as_u64().unwrap())
                }));
                let n = requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n < fail_first {
                    return (StatusCode::INTERNAL_SERVER_ERROR, "processed, then failed");
                }
                if n < fail_first + hang_next {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                (StatusCode::OK, "{}")
            }
        }),
    );
    (attempts, serve(app).await)
}

/// A processes 3 deliveries and answers 500, then processes 2 more and
/// answers only after the distributor's timeout. Each retry goes back to the
/// analyzer that had the packet (no packet reaches two analyzers), and the
/// first attempts still split exactly 40/30/20/10: retries take no turn in
/// the rotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_goes_back_to_the_analyzer_that_had_the_packet() {
    let mut analyzers = Vec::new();
    for (id, weight, fail_first, hang_next) in
        [("a", 40, 3, 2), ("b", 30, 0, 0), ("c", 20, 0, 0), ("d", 10, 0, 0)]
    {
        let (attempts, addr) = processing_analyzer(fail_first, hang_next).await;
        analyzers.push((id, weight, addr, attempts));
    }
    let specs: Vec<(&str, u32, SocketAddr)> = analyzers
        .iter()
        .map(|(id, w, addr, _)| (*id, *w, *addr))
        .collect();
    let (running, api, _dir) = distributor_over(
        &specs,
        STEADY,
        "http: {timeout: 1s}\nretry: {base_delay: 20ms, max_retries: 5}\nqueue: {analyzer_concurrency: 4}\n",
    )
    .await;

    let ids = numbered_packets("t14", 0, 200).1;
    api.post_logs(&numbered_packets("t14", 0, 200).0)
        .await
        .expect(202);
    let stats = api.drained().await;

    let mut places: std::collections::BTreeMap<String, std::collections::BTreeSet<&str>> = Default::default();
    let mut first_attempts = Vec::new();
    let mut retried_at_a = 0;
    for (id, _, _, attempts) in &analyzers {
        let attempts = attempts.lock().unwrap().clone();
        first_attempts.push(attempts.iter().filter(|(_, retries)| *retries == 0).count());
        for (packet, retries) in attempts {
            if *id == "a" && retries > 0 {
                retried_at_a += 1;
            }
            places.entry(packet).or_default().insert(id);
        }
    }
    let elsewhere: Vec<_> = places.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(
        elsewhere.is_empty(),
        "packets processed by more than one analyzer: {elsewhere:?}"
    );
    assert_eq!(places.len(), ids.len(), "every packet reached an analyzer");
    assert!(
        retried_at_a >= 5,
        "A's five failed deliveries were retried at A: {retried_at_a}"
    );
    assert_eq!(first_attempts, [80, 60, 40, 20], "{stats}");
    assert_eq!(
        counter(&stats, "routed_count").into_values().collect::<Vec<_>>(),
        [80, 60, 40, 20],
        "a retry is no routing decision: {stats}"
    );
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    running.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- Retry-After as an HTTP-date

/// How long the distributor waited between a 503 with `Retry-After:
/// retry_after` and the retry, with a backoff of 20 ms and a cap of `max_delay`.
async fn retry_wait(retry_after: String, max_delay: &str) -> Duration {
    let (analyzer, addr) = Scripted::start(vec![(
        StatusCode::SERVICE_UNAVAILABLE,
        vec![("retry-after", retry_after)],
        "come back later".into(),
    )])
    .await;
    let (running, api, _dir) = distributor(
        addr,
        &format!("retry: {{base_delay: 20ms, max_delay: {max_delay}}}\n"),
    )
    .await;
    api.post_logs(&packets("date", 1)).await.expect(202);
    let stats = api.drained().await;
    assert_eq!(stats["total_retries"], 1, "{stats}");
    let requests = analyzer.requests();
    assert_eq!(requests.len(), 2);
    running.shutdown().await.unwrap();
    requests[1].0 - requests[0].0
}

/// An HTTP-date `ahead` from now, rounded up to the next whole second.
fn http_date_in(ahead: Duration) -> String {
    let at = chrono::Utc::now() + ahead + chrono::TimeDelta::seconds(1);
    at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[tokio::test]
async fn a_retry_after_given_as_an_http_date_is_honoured() {
    let _gate = beside_others().await;
    let waited = retry_wait(http_date_in(Duration::from_secs(2)), "1m").await;
    assert!(
        waited >= Duration::from_millis(1500),
        "a date 2-3 s ahead, the backoff 20 ms; retried after {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "retried after {waited:?}");
}

#[tokio::test]
async fn a_retry_after_date_is_capped_by_max_delay() {
    let waited = retry_wait(http_date_in(Duration::from_secs(3600)), "1s").await;
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "a date an hour ahead, capped at 1 s; retried after {waited:?}"
    );
}

#[tokio::test]
async fn an_unreadable_retry_after_leaves_the_backoff_schedule() {
    let waited = retry_wait("in a little while".into(), "1m").await;
    assert!(
        waited < Duration::from_millis(900),
        "the backoff's 20 ms; retried after {waited:?}"
    );
}

/// A batch whose delivery failed goes again as it was: the same packets in
/// the same order under the same `Idempotency-Key` (bounded: a hash of the
/// ids), so that an analyzer that took the first attempt can recognise it.
#[tokio::test]
async fn a_failed_batch_is_retried_whole_under_the_same_key() {
    let (analyzer, addr) =
        Scripted::start(vec![(StatusCode::SERVICE_UNAVAILABLE, vec![], "busy".into())]).await;
    let (running, api, _dir) = distributor(
        addr,
        "batch: {max_packets: 8, linger: 50ms}\nretry: {base_delay: 20ms}\n",
    )
    .await;
    api.post_logs(&packets("whole", 8)).await.expect(202);
    let stats = api.drained().await;
    assert_eq!(stats["total_retries"], 8, "{stats}");
    let requests = analyzer.requests();
    assert_eq!(requests.len(), 2, "one batch refused, then taken whole");
    let ids = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_string())
            .collect()
    };
    let expected: Vec<String> = (0..8).map(|i| format!("whole-{i}")).collect();
    assert_eq!(ids(&requests[0].2), expected);
    assert_eq!(
        ids(&requests[1].2),
        expected,
        "the same packets, in the same order"
    );
    let key = |n: usize| requests[n].1["idempotency-key"].to_str().unwrap().to_string();
    assert_eq!(key(0), key(1));
    assert!(
        key(0).starts_with("sha256:") && key(0).len() == 7 + 64,
        "{}",
        key(0)
    );
    running.shutdown().await.unwrap();
}
