//! Requests are bounded by bytes, not by a count of packets: a request of
//! thousands of packets is taken whole and delivered in full; one the queue
//! could never hold (`queue.max_in_flight` packets or
//! `queue.max_in_flight_bytes` bytes) is refused with 413 saying which;
//! many clients racing for room never push the queue past its bounds, and
//! each of them gets in once there is room.

use crate::support::config::{analyzer, Config};
use crate::support::http::processed;
use crate::support::in_process::Server;
use crate::support::packets::{numbered_packets, packets};
use crate::support::poll::{eventually, DEADLINE};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_5000_packets_is_accepted_and_delivered_in_full() {
    let server = Server::start(&Config::four(0)).await;
    let reply = server.post_logs(&packets("many", 5000)).await;
    reply.expect(202);
    assert_eq!(reply.ids().len(), 5000);
    let stats = server.drained().await;
    let per_analyzer: Vec<u64> = processed(&stats).values().copied().collect();
    assert_eq!(per_analyzer, [2000, 1500, 1000, 500]);
    server.shutdown().await;
}

/// `count` packets of one empty message each, as small as packets come.
fn tiny_packets(count: usize) -> Vec<u8> {
    let tiny = json!({"messages": [{"level": "info", "message": "", "source": "s"}]});
    serde_json::to_vec(&vec![tiny; count]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_whole_queue_is_413_naming_the_bound() {
    let config = Config::new(vec![analyzer("sink", 1)])
        .queue("{max_in_flight: 1000, max_in_flight_bytes: 65536}")
        .limits("{max_body_bytes: 65536}");
    let server = Server::start(&config).await;
    let json_type = [("content-type", "application/json")];
    let body = tiny_packets(1001);
    assert!(body.len() <= 65536, "{}", body.len());
    let reply = server.post_raw("/api/v1/logs", &json_type, body).await;
    reply.expect(413);
    assert_eq!(
        reply.error(),
        "the request is larger than the whole queue: more than 1000 packets (queue.max_in_flight); send it in smaller requests; nothing from this request was kept"
    );
    // 1000 packets in a body under the limit, but each takes more as it is
    // kept (its id and timestamp are added) than the queue's bytes allow.
    let reply = server
        .post_raw("/api/v1/logs", &json_type, tiny_packets(1000))
        .await;
    reply.expect(413);
    assert_eq!(
        reply.error(),
        "the request is larger than the whole queue: more than 65536 bytes (queue.max_in_flight_bytes); send it in smaller requests; nothing from this request was kept"
    );
    // Counted as the packets known when refused: the 1001 the splitter
    // read before it stopped, then the 1000 of the second request.
    let metrics = server.get("/metrics").await.text;
    assert!(
        metrics.contains("logs_distributor_packets_rejected_total{reason=\"too_large\"} 2001"),
        "{metrics}"
    );
    // What fits is taken.
    let reply = server
        .post_raw("/api/v1/logs", &json_type, tiny_packets(300))
        .await;
    reply.expect(202);
    assert_eq!(server.drained().await["total_packets_received"], 300);
    server.shutdown().await;
}

/// Six clients send requests of 300 packets into a queue of 1000 faster
/// than a slow analyzer takes them, with no wait for room: each request is
/// taken whole or refused whole (503), the queue never holds more than its bound, every client
/// gets all its requests in by retrying, and every accepted packet is
/// delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_racing_for_room_never_push_the_queue_past_its_bound() {
    let config = Config::new(vec![analyzer("slow", 1).processing(20)])
        .queue("{max_in_flight: 1000, analyzer_concurrency: 64, full_wait: 0s}");
    let server = Server::start(&config).await;
    let watcher = {
        let api = server.api.clone();
        tokio::spawn(async move {
            let mut highest = 0;
            loop {
                let stats = api.stats().await;
                highest = highest.max(stats["in_flight"].as_u64().unwrap());
                if stats["total_packets_received"] == 6 * 4 * 300 && stats["in_flight"] == 0 {
                    return highest;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let clients = (0..6).map(|client| {
        let api = server.api.clone();
        async move {
            let mut refused = 0;
            for round in 0..4 {
                let (body, _) = numbered_packets(&format!("c{client}-r{round}"), 0, 300);
                loop {
                    let reply = api.post_logs(&body).await;
                    match reply.status.as_u16() {
                        202 => break,
                        503 => {
                            assert_eq!(reply.header("retry-after"), Some("1"));
                            refused += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        other => panic!("unexpected {other}: {}", reply.text),
                    }
                }
            }
            refused
        }
    });
    let refusals: u32 = futures_util::future::join_all(clients).await.into_iter().sum();
    let highest = tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .expect("everything delivered within a minute")
        .unwrap();
    assert!(highest <= 1000, "in flight reached {highest}");
    assert!(
        refusals > 0,
        "the clients never had to wait: the test proves nothing"
    );
    let stats = eventually("every packet delivered", DEADLINE, || async {
        let stats = server.stats().await;
        (processed(&stats)["slow"] == 7200)
            .then_some(stats.clone())
            .ok_or(stats.to_string())
    })
    .await;
    assert_eq!(stats["total_dead_lettered"], 0);
    server.shutdown().await;
}
