//! The HTTP transport against analyzers hosted in this process: batching,
//! the idempotency header, permanent failures with the analyzer's answer,
//! `Retry-After`, and the retry budget.

mod common;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use common::{eventually, packets, processed, Api, DEADLINE};
use logs_distributor::analyzer::{self, AnalyzerArgs};
use logs_distributor::config::Settings;
use logs_distributor::service::{self, Running};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Serves `app` on 127.0.0.1:0; answers its address.
async fn host(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn reference_analyzer(name: &str) -> SocketAddr {
    let args = AnalyzerArgs {
        listen: String::new(),
        name: name.into(),
        latency_ms: 0,
        failure_rate: 0.0,
        record: None,
        fail_first: 0,
        respond_status: None,
    };
    host(analyzer::app(args).expect("analyzer app")).await
}

/// A distributor over one HTTP analyzer at `addr`, with `extra` YAML.
async fn distributor(addr: SocketAddr, extra: &str) -> (Running, Api, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = format!(
        "analyzers:\n  - {{id: only, weight: 1, endpoint: \"http://{addr}/\"}}\n\
         health: {{interval: 1h, ejection_threshold: 0}}\ncheckpoint: {{interval: 1h}}\n\
         shutdown: {{drain_timeout: 100ms}}\n{extra}"
    );
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
        let addr = host(app).await;
        (me, addr)
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn each_delivery_names_its_packets_for_deduplication() {
    let (analyzer, addr) = Scripted::start(vec![]).await;
    let (running, api, _dir) = distributor(addr, "").await;
    api.post_logs(&packets("idem", 3)).await.expect(202);
    api.drained().await;
    let requests = analyzer.requests();
    assert_eq!(requests.len(), 3, "one packet per request by default");
    for (_, headers, body) in &requests {
        let packet = &body.as_array().expect("a JSON array of packets")[0];
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
    let (running, api, _dir) = distributor(
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
