//! Runs the load generator against a small in-process axum server that accepts every
//! packet but answers every 10th request with 503.

use std::collections::HashSet;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use clap::Parser;
use loadgen::{run, LoadgenArgs, Report};
use serde_json::{json, Value};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: LoadgenArgs,
}

#[derive(Default)]
struct Ingest {
    requests: AtomicU64,
    accepted: Mutex<Vec<String>>,
    delay: Duration,
}

async fn ingest(State(state): State<Arc<Ingest>>, headers: HeaderMap, body: Bytes) -> Response {
    let number = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    tokio::time::sleep(state.delay).await;
    if number % 10 == 0 {
        let retry_after = [(header::RETRY_AFTER, "1")];
        return (StatusCode::SERVICE_UNAVAILABLE, retry_after, "queue full").into_response();
    }
    let ids = packet_ids(&headers, &body);
    state.accepted.lock().expect("lock").extend(ids.iter().cloned());
    let summary = json!({
        "total_packets": ids.len(),
        "successful": ids.len(),
        "failed": 0,
        "processed_packets": ids,
        "errors": [],
    });
    (StatusCode::ACCEPTED, Json(summary)).into_response()
}

fn packet_ids(headers: &HeaderMap, body: &[u8]) -> Vec<String> {
    let mut raw = Vec::new();
    if headers.get(header::CONTENT_ENCODING).is_some_and(|v| v == "gzip") {
        flate2::read::GzDecoder::new(body)
            .read_to_end(&mut raw)
            .expect("gzip body");
    } else {
        raw.extend_from_slice(body);
    }
    let packets: Vec<Value> = if headers[header::CONTENT_TYPE] == "application/x-ndjson" {
        raw.split(|byte| *byte == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).expect("JSON line"))
            .collect()
    } else {
        serde_json::from_slice(&raw).expect("JSON array body")
    };
    packets
        .iter()
        .map(|packet| packet["id"].as_str().expect("packet id").to_owned())
        .collect()
}

async fn start_server(delay: Duration) -> (SocketAddr, Arc<Ingest>) {
    let state = Arc::new(Ingest {
        delay,
        ..Ingest::default()
    });
    let app = Router::new()
        .route("/api/v1/logs", post(ingest))
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    (addr, state)
}

async fn load(addr: SocketAddr, flags: &[&str]) -> Report {
    let target = format!("http://{addr}/api/v1/logs");
    let argv = ["loadgen", "--quiet", "--target", &target]
        .into_iter()
        .chain(flags.iter().copied());
    let args = Cli::try_parse_from(argv).expect("valid flags").args;
    run(args).await.expect("the run completes")
}

fn status_count(report: &Report, status: &str) -> u64 {
    report.status_codes.get(status).copied().unwrap_or(0)
}

fn recorded_ids(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("record file");
    text.lines()
        .map(|line| {
            let entry: Value = serde_json::from_str(line).expect("JSON line");
            assert_eq!(entry["status"], 202, "{line}");
            entry["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

async fn check_recorded_run(extra_flags: &[&str]) {
    let (addr, server) = start_server(Duration::ZERO).await;
    let record = tempfile::NamedTempFile::new().expect("temp file");
    let record_path = record.path().to_str().expect("UTF-8 path");
    let mut flags = vec![
        "--packets",
        "2000",
        "--packets-per-request",
        "10",
        "--concurrency",
        "8",
    ];
    flags.extend(["--record", record_path]);
    flags.extend(extra_flags);
    let report = load(addr, &flags).await;

    assert_eq!(report.requests, 200);
    assert_eq!(report.packets_sent, 2000);
    assert_eq!(status_count(&report, "202"), 180);
    assert_eq!(status_count(&report, "503"), 20);
    assert_eq!(status_count(&report, "error"), 0);
    assert_eq!(report.packets_accepted, 1800);
    assert_eq!(report.invalid_response_bodies, 0);

    let recorded = recorded_ids(record.path());
    let unique: HashSet<&String> = recorded.iter().collect();
    assert_eq!(unique.len(), recorded.len(), "an id was recorded twice");
    let accepted = server.accepted.lock().expect("lock").clone();
    assert_eq!(unique, accepted.iter().collect::<HashSet<_>>());
    assert_eq!(recorded.len(), 1800);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_lists_exactly_the_accepted_packets() {
    check_recorded_run(&[]).await;
}

#[tokio::test]
async fn gzip_ndjson_bodies_are_accepted_and_recorded() {
    check_recorded_run(&["--gzip", "--ndjson"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_accounts_for_every_slot() {
    let (addr, _server) = start_server(Duration::ZERO).await;
    let report = load(addr, &["--rate", "500", "--duration", "1s", "--concurrency", "4"]).await;
    assert_eq!(report.requests + report.dropped_by_client, 500);
    assert!(report.requests >= 400, "{report:?}");
    assert!(report.duration_secs < 1.5, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_drops_requests_beyond_concurrency() {
    let (addr, _server) = start_server(Duration::from_millis(100)).await;
    let flags = ["--rate", "200", "--duration", "1s", "--concurrency", "2"];
    let report = load(addr, &flags).await;
    assert_eq!(report.requests + report.dropped_by_client, 200);
    assert!(report.requests <= 25, "{report:?}");
    assert!(report.latency_ms.p50 >= 100.0, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_counts_errors_and_stops() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    drop(listener);
    let report = load(addr, &["--packets", "6", "--concurrency", "2", "--json"]).await;
    assert_eq!(report.requests, 6);
    assert_eq!(status_count(&report, "error"), 6);
    assert!(report.connection_errors >= 6, "{report:?}");
    assert!(report.first_error.is_some());
}

/// A server that answers one request per connection and then closes it,
/// without saying so in the answer (as an idle timeout does to a keep-alive
/// connection between requests).
async fn start_one_request_per_connection_server() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.expect("accept");
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 4096];
                let complete = |request: &[u8]| {
                    let text = String::from_utf8_lossy(request);
                    let (head, body) = text.split_once("\r\n\r\n")?;
                    let length: usize = head
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(str::to_owned)
                        })?
                        .trim()
                        .parse()
                        .ok()?;
                    (body.len() >= length).then_some(())
                };
                while complete(&request).is_none() {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let body =
                    r#"{"total_packets":1,"successful":1,"failed":0,"processed_packets":["x"],"errors":[]}"#;
                let answer = format!(
                    "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_the_server_closed_while_idle_is_replaced_before_the_next_request() {
    let addr = start_one_request_per_connection_server().await;
    let flags = ["--rate", "10", "--duration", "1s", "--concurrency", "1"];
    let report = load(addr, &flags).await;
    assert_eq!(report.requests + report.dropped_by_client, 10, "{report:?}");
    assert!(report.requests >= 9, "{report:?}");
    assert_eq!(status_count(&report, "202"), report.requests, "{report:?}");
    assert_eq!(report.connection_errors, 0, "{report:?}");
}
