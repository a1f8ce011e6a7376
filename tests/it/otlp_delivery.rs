//! `format: otlp` against an OTLP receiver hosted by the test on loopback:
//! what goes on the wire (protobuf `ExportLogsServiceRequest`s, one record
//! per message, each with its packet's id) and what each answer of the
//! OTLP/HTTP specification does (a partial success is delivered, counted
//! and logged; a refusal's `Status` message is the dead letter's reason; a
//! 503 is retried with the same request). The same format against real
//! OpenTelemetry Collectors is `otel_collector`.

use crate::support::config::{remote, write_config, Config};
use crate::support::distributor::Distributor;
use crate::support::http::serve;
use crate::support::poll::{eventually, DEADLINE};
use axum::http::{HeaderMap, StatusCode};
use logs_distributor::otlp::response::Status;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tempfile::TempDir;

/// One request the receiver took.
#[derive(Debug, Clone)]
struct Received {
    content_type: Option<String>,
    idempotency_key: Option<String>,
    request: ExportLogsServiceRequest,
}

/// How the receiver answers its `n`th request (from 0).
type Answer = fn(usize) -> (StatusCode, Vec<u8>);

/// An OTLP/HTTP receiver on loopback: `POST /v1/logs` decodes the request,
/// keeps it, and answers as `answer` says; `GET /health` is 200.
async fn receiver(answer: Answer) -> (String, Arc<Mutex<Vec<Received>>>) {
    use axum::routing::{get, post};
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/v1/logs",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let log = log.clone();
                async move {
                    let header =
                        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
                    let request = ExportLogsServiceRequest::decode(body.as_ref())
                        .expect("a protobuf ExportLogsServiceRequest");
                    let n = {
                        let mut log = log.lock().unwrap();
                        log.push(Received {
                            content_type: header("content-type"),
                            idempotency_key: header("idempotency-key"),
                            request,
                        });
                        log.len() - 1
                    };
                    let (status, body) = answer(n);
                    (status, [("content-type", "application/x-protobuf")], body)
                }
            }),
        );
    let addr = serve(app).await;
    (format!("http://{addr}/v1/logs"), seen)
}

fn full_success(_: usize) -> (StatusCode, Vec<u8>) {
    (
        StatusCode::OK,
        ExportLogsServiceResponse::default().encode_to_vec(),
    )
}

/// Starts a distributor whose one analyzer, `otlp`, is the receiver at `endpoint`.
/// A distributor over the receiver at `endpoint`, one packet per request
/// (`max_batch_packets: 1`): the tests count requests.
async fn distributor(dir: &TempDir, endpoint: &str) -> Distributor {
    let config = Config::new(vec![
        remote("otlp", 1, endpoint).with("format: otlp, max_batch_packets: 1")
    ])
    .retry("{base_delay: 20ms, factor: 2, max_retries: 3}");
    let path = write_config(dir.path(), "distributor.yaml", &config);
    Distributor::start(&path, &dir.path().join("data"), dir.path()).await
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref()?.value.as_ref())
}

fn text(value: Option<&Any>) -> &str {
    match value {
        Some(Any::StringValue(s)) => s,
        other => panic!("not a string: {other:?}"),
    }
}

/// (packet id, body) of every record of every request, in order.
fn records(seen: &[Received]) -> Vec<(String, String)> {
    seen.iter()
        .flat_map(|r| &r.request.resource_logs)
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .map(|record| {
            let id = text(attribute(&record.attributes, "logs_distributor.packet_id")).to_string();
            let body = text(record.body.as_ref().and_then(|b| b.value.as_ref())).to_string();
            (id, body)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_packet_goes_as_an_otlp_protobuf_request_with_its_records_and_their_packet_id() {
    let dir = TempDir::new().unwrap();
    let (endpoint, seen) = receiver(full_success).await;
    let distributor = distributor(&dir, &endpoint).await;
    let body = json!([
        {"id": "otlp-1", "messages": [
            {"level": "ERROR", "message": "db down", "source": "api", "timestamp": "2025-01-25T20:30:45.5Z",
             "metadata": {"user_id": 42, "region": "eu", "tags": ["a", "b"]}},
            {"level": "debug", "message": "retrying", "source": "api"}
        ]},
        {"id": "otlp-2", "messages": [{"level": "WARNING", "message": "slow", "source": "worker"}]}
    ]);
    distributor.post_logs(&body).await.expect(202);
    distributor.drained().await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one delivery per packet (max_batch_packets: 1)");
    for received in &seen {
        assert_eq!(received.content_type.as_deref(), Some("application/x-protobuf"));
    }
    let keys: Vec<_> = seen
        .iter()
        .map(|r| r.idempotency_key.clone().unwrap_or_default())
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["otlp-1", "otlp-2"],
        "the Idempotency-Key of each delivery"
    );
    let mut all = records(&seen);
    all.sort();
    assert_eq!(
        all,
        [
            ("otlp-1".to_string(), "db down".to_string()),
            ("otlp-1".to_string(), "retrying".to_string()),
            ("otlp-2".to_string(), "slow".to_string()),
        ]
    );

    let first = seen
        .iter()
        .find(|r| r.idempotency_key.as_deref() == Some("otlp-1"))
        .unwrap();
    let resource_logs = &first.request.resource_logs;
    assert_eq!(resource_logs.len(), 1, "one source, one resource");
    let resource = resource_logs[0].resource.as_ref().unwrap();
    assert_eq!(text(attribute(&resource.attributes, "service.name")), "api");
    let records = &resource_logs[0].scope_logs[0].log_records;
    let error = &records[0];
    assert_eq!(error.time_unix_nano, 1_737_837_045_500_000_000);
    assert_eq!(
        (error.severity_number, error.severity_text.as_str()),
        (17, "ERROR")
    );
    assert_eq!(attribute(&error.attributes, "user_id"), Some(&Any::IntValue(42)));
    assert_eq!(text(attribute(&error.attributes, "region")), "eu");
    assert!(matches!(attribute(&error.attributes, "tags"), Some(Any::ArrayValue(a)) if a.values.len() == 2));
    assert_eq!(
        (records[1].severity_number, records[1].severity_text.as_str()),
        (5, "DEBUG")
    );
}

fn partial_success(_: usize) -> (StatusCode, Vec<u8>) {
    let response = ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: 1,
            error_message: "record 0: severity_text too long".into(),
        }),
    };
    (StatusCode::OK, response.encode_to_vec())
}

/// The spec: a partial success means the receiver kept the rest, and the
/// rejected records must not be sent again. So the packets are delivered
/// (not retried, not dead-lettered), the rejected records are counted per
/// analyzer and the receiver's message is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_is_delivered_counted_and_logged() {
    let dir = TempDir::new().unwrap();
    let (endpoint, seen) = receiver(partial_success).await;
    let distributor = distributor(&dir, &endpoint).await;
    let body = json!([
        {"id": "p-1", "messages": [{"level": "INFO", "message": "one", "source": "s"}]},
        {"id": "p-2", "messages": [{"level": "INFO", "message": "two", "source": "s"}]},
        {"id": "p-3", "messages": [{"level": "INFO", "message": "three", "source": "s"}]},
    ]);
    distributor.post_logs(&body).await.expect(202);
    let stats = distributor.drained().await;

    assert_eq!(seen.lock().unwrap().len(), 3, "each packet sent once, none again");
    assert_eq!(stats["analyzers"]["otlp"]["processed_count"], 3, "{stats}");
    assert!(distributor.dead_letter().await.is_empty());
    let metrics = distributor.get("/metrics").await;
    assert!(
        metrics
            .text
            .contains("logs_distributor_otlp_rejected_records_total{analyzer=\"otlp\"} 3"),
        "{}",
        metrics.text
    );
    eventually("the receiver's message in the log", DEADLINE, || async {
        let log = distributor.stderr();
        if log.contains("record 0: severity_text too long") && log.contains("rejected_log_records=1") {
            Ok(())
        } else {
            Err(log)
        }
    })
    .await;
}

fn bad_request(_: usize) -> (StatusCode, Vec<u8>) {
    let status = Status {
        code: 3,
        message: "log record 0: invalid trace id".into(),
    };
    (StatusCode::BAD_REQUEST, status.encode_to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_names_the_status_message_in_the_dead_letter() {
    let dir = TempDir::new().unwrap();
    let (endpoint, seen) = receiver(bad_request).await;
    let distributor = distributor(&dir, &endpoint).await;
    let body = json!([{"id": "bad-1", "messages": [{"level": "INFO", "message": "x", "source": "s"}]}]);
    distributor.post_logs(&body).await.expect(202);
    distributor.drained().await;

    assert_eq!(seen.lock().unwrap().len(), 1, "a 400 is not retried");
    let dead = distributor.dead_letter().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["packet"]["id"], "bad-1");
    assert_eq!(
        dead[0]["final_error"],
        Value::from("analyzer answered HTTP 400: log record 0: invalid trace id")
    );
}

fn busy_once(n: usize) -> (StatusCode, Vec<u8>) {
    if n == 0 {
        (StatusCode::SERVICE_UNAVAILABLE, Vec::new())
    } else {
        full_success(n)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_is_retried_with_the_same_request() {
    let dir = TempDir::new().unwrap();
    let (endpoint, seen) = receiver(busy_once).await;
    let distributor = distributor(&dir, &endpoint).await;
    let body = json!([{"id": "again-1", "messages": [{"level": "INFO", "message": "x", "source": "s"}]}]);
    distributor.post_logs(&body).await.expect(202);
    let stats = distributor.drained().await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "refused once, then taken");
    assert_eq!(seen[0].request, seen[1].request, "the same records again");
    assert_eq!(seen[0].idempotency_key, seen[1].idempotency_key);
    assert_eq!(stats["analyzers"]["otlp"]["processed_count"], 1, "{stats}");
    assert!(distributor.dead_letter().await.is_empty());
}
