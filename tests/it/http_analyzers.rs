//! End to end over loopback with real processes: reference analyzers
//! (`logs-distributor analyzer`, each its own process, recording every
//! packet it takes in a file) and the distributor binary delivering to them
//! over HTTP. What arrived is read from the analyzers' own record files, not
//! from the distributor's counters.
//!
//! Each test runs alone (`support::serial::alone`): each starts up to five
//! processes, and exact splits need probes that never time out, which a
//! machine busy with another test's thousand deliveries cannot promise.

use crate::support::analyzers::AnalyzerProcess;
use crate::support::config::{remote, write_config, AnalyzerSpec, Config};
use crate::support::distributor::Distributor;
use crate::support::http::{serve, Api};
use crate::support::packets::{numbered_packets, packet};
use crate::support::poll::{eventually, DEADLINE};
use crate::support::serial;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Probes every 100 ms. A dead analyzer (connection refused) or one whose
/// `/health` answers 503 fails its probes at once, so it is out within two
/// rounds. The timeout and threshold are looser than the 200 ms and
/// 1 on purpose: on a two-CPU machine shared with other builds, a burst of
/// a thousand deliveries now and then delays some `/health` answer past
/// 200 ms, a healthy analyzer leaves the rotation for a moment, and the
/// exact splits these tests check are reshuffled (seen in about one run in
/// fifteen). No test here needs a probe to time out.
const HEALTH: &str =
    "{interval: 100ms, timeout: 1s, unhealthy_threshold: 2, healthy_threshold: 1, ejection_threshold: EJECT}";
/// Generous, so that a machine busy elsewhere does not turn a slow answer
/// into a timeout, a retry and a duplicate; the test of a hanging analyzer
/// sets the 500 ms.
const HTTP: &str = "{timeout: 5s}";
const RETRY: &str = "{base_delay: 50ms, factor: 2, max_retries: 3}";
/// At the default of 256 deliveries at once per analyzer, a burst of 1000
/// packets opens about 1000 connections at once; on a two-CPU machine with
/// debug builds, that alone delays an analyzer's `/health` answer to nearly
/// 200 ms. 16 at once keeps probes prompt and costs no time.
const QUEUE: &str = "{analyzer_concurrency: 16}";
/// How long an analyzer that refuses connections or answers 503 may take to
/// leave the rotation, or to rejoin it: far above two probe rounds (about
/// 200 ms), far below anything a person would wait.
const HEALTH_BOUND: Duration = Duration::from_secs(3);

/// The distributor's configuration for this file, with `ejection_threshold`.
fn config(analyzers: Vec<AnalyzerSpec>, ejection_threshold: u32) -> Config {
    Config::new(analyzers)
        .health(&HEALTH.replace("EJECT", &ejection_threshold.to_string()))
        .http(HTTP)
        .retry(RETRY)
        .queue(QUEUE)
}

/// Starts the distributor binary with `config`, its data in `dir/data`.
async fn distributor(dir: &Path, config: &Config) -> Distributor {
    let path = write_config(dir, "distributor.yaml", config);
    Distributor::start(&path, &dir.join("data"), dir).await
}

/// The original four analyzers by weight; A first.
const FOUR: [(&str, i64); 4] = [("a", 40), ("b", 30), ("c", 20), ("d", 10)];

/// Starts the four analyzers (A with the extra `a_args`), then the
/// distributor over them, and waits until each has passed a probe.
async fn four(dir: &Path, a_args: &[&str]) -> (Vec<AnalyzerProcess>, Distributor) {
    let mut analyzers = Vec::new();
    for (name, _) in FOUR {
        let extra = if name == "a" { a_args } else { &[] };
        analyzers.push(AnalyzerProcess::start(dir, name, extra).await);
    }
    let specs = FOUR
        .iter()
        .zip(&analyzers)
        .map(|((id, weight), a)| remote(id, *weight, &a.endpoint()))
        .collect();
    let distributor = distributor(dir, &config(specs, 3)).await;
    wait_all_probed(&distributor, &["a", "b", "c", "d"]).await;
    (analyzers, distributor)
}

/// Starts one analyzer with `args` and a distributor delivering only to it
/// (never ejected), and waits until it has passed a probe.
async fn alone(dir: &Path, name: &str, args: &[&str]) -> (AnalyzerProcess, Distributor) {
    let analyzer = AnalyzerProcess::start(dir, name, args).await;
    let distributor = distributor(dir, &config(vec![remote(name, 1, &analyzer.endpoint())], 0)).await;
    wait_all_probed(&distributor, &[name]).await;
    (analyzer, distributor)
}

/// How many of `ids` each analyzer's record holds.
fn split_of(analyzers: &[AnalyzerProcess], ids: &[String]) -> Vec<usize> {
    analyzers.iter().map(|a| count_of(&a.records(), ids)).collect()
}

/// One analyzer as `/api/v1/analyzers` shows it.
async fn analyzer_info(api: &Api, id: &str) -> Value {
    let reply = api.get("/api/v1/analyzers").await;
    reply.expect(200);
    let info = reply.json["analyzers"][id].clone();
    assert!(info.is_object(), "no analyzer {id} in {}", reply.text);
    info
}

/// Waits until analyzer `id` is (or is no longer) healthy and in rotation;
/// answers how long that took.
async fn wait_in_rotation(api: &Api, id: &str, expected: bool) -> Duration {
    let started = Instant::now();
    let what = format!("analyzer {id} to have is_healthy = in_rotation = {expected}");
    eventually(&what, DEADLINE, || async {
        let info = analyzer_info(api, id).await;
        if info["is_healthy"] == expected && info["in_rotation"] == expected {
            Ok(())
        } else {
            Err(info.to_string())
        }
    })
    .await;
    started.elapsed()
}

/// Waits until every analyzer has been probed at least once and all are in
/// rotation, so that the routing table is settled before traffic starts.
async fn wait_all_probed(api: &Api, ids: &[&str]) {
    for id in ids {
        eventually(&format!("a passed probe of {id}"), DEADLINE, || async {
            let info = analyzer_info(api, id).await;
            if info["last_health_check"].is_string() && info["in_rotation"] == true {
                Ok(())
            } else {
                Err(info.to_string())
            }
        })
        .await;
    }
}

/// Posts `body` and checks that every packet was accepted under its own id.
async fn post_all(api: &Api, body: &Value, ids: &[String]) {
    let reply = api.post_logs(body).await;
    reply.expect(202);
    assert_eq!(reply.ids(), ids, "the accepted ids are the ones posted, in order");
}

/// Asserts that every id of `accepted` ended in exactly one place among
/// the analyzers' records and the distributor's dead letter, and that
/// nothing else is there; answers the dead letter's ids.
async fn audit(
    distributor: &Distributor,
    accepted: &[String],
    analyzers: &[&AnalyzerProcess],
) -> Vec<String> {
    let dead = dead_ids(&distributor.dead_letter().await);
    let mut places: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for analyzer in analyzers {
        for id in analyzer.records() {
            places.entry(id).or_default().push(analyzer.name.clone());
        }
    }
    for id in &dead {
        places.entry(id.clone()).or_default().push("dead letter".into());
    }
    let accepted_set: HashSet<&String> = accepted.iter().collect();
    assert_eq!(
        accepted_set.len(),
        accepted.len(),
        "the test posted duplicate ids"
    );
    let missing: Vec<&String> = accepted.iter().filter(|id| !places.contains_key(*id)).collect();
    let repeated: Vec<(&String, &Vec<String>)> = places.iter().filter(|(_, at)| at.len() > 1).collect();
    let unknown: Vec<&String> = places.keys().filter(|id| !accepted_set.contains(id)).collect();
    assert!(
        missing.is_empty() && repeated.is_empty() && unknown.is_empty(),
        "{} lost (e.g. {:?}); {} in more than one place (e.g. {:?}); {} never posted (e.g. {:?})\n\
         rotation changes:\n{}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        repeated.len(),
        repeated.iter().take(5).collect::<Vec<_>>(),
        unknown.len(),
        unknown.iter().take(5).collect::<Vec<_>>(),
        rotation_log(distributor),
    );
    dead
}

/// How many of `ids` are in `record`.
fn count_of(record: &[String], ids: &[String]) -> usize {
    let wanted: HashSet<&String> = ids.iter().collect();
    record.iter().filter(|id| wanted.contains(id)).count()
}

/// The distributor's log lines about analyzers leaving or rejoining the
/// rotation, to explain a split that is off.
fn rotation_log(distributor: &Distributor) -> String {
    let log = distributor.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("rotation") || line.contains("eject"))
        .collect();
    lines.join("\n")
}

/// The ids of dead-letter entries.
fn dead_ids(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["packet"]["id"].as_str().expect("packet.id").to_string())
        .collect()
}

/// The analyzer's own counters agree with its record: every packet once.
async fn assert_no_duplicates(analyzer: &AnalyzerProcess) {
    let stats = analyzer.stats().await;
    assert_eq!(stats["duplicates"], 0, "{}: {stats}", analyzer.name);
    let record = analyzer.records();
    let distinct: HashSet<&String> = record.iter().collect();
    assert_eq!(
        distinct.len(),
        record.len(),
        "{}: its record repeats ids",
        analyzer.name
    );
}

// ---------------------------------------------------------------- 1

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_packets_split_exactly_40_30_20_10_on_the_analyzers_own_records() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let (analyzers, distributor) = four(dir.path(), &[]).await;

    let (body, ids) = numbered_packets("t1", 0, 1000);
    post_all(&distributor, &body, &ids).await;
    let stats = distributor.drained().await;

    let dead = audit(&distributor, &ids, &analyzers.iter().collect::<Vec<_>>()).await;
    assert!(dead.is_empty(), "nothing fails with failure rate 0: {dead:?}");
    assert_eq!(
        split_of(&analyzers, &ids),
        [400, 300, 200, 100],
        "{stats}\nrotation changes:\n{}",
        rotation_log(&distributor)
    );
    assert_eq!(stats["total_retries"], 0, "{stats}");
    for (analyzer, expected) in analyzers.iter().zip([400, 300, 200, 100]) {
        assert_eq!(
            analyzer.stats().await["packets_received"],
            expected,
            "{}",
            analyzer.name
        );
        assert_no_duplicates(analyzer).await;
    }
}

// ---------------------------------------------------------------- 2

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_analyzer_leaves_the_rotation_its_share_goes_3_2_1_and_it_rejoins_after_a_restart() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let (mut analyzers, distributor) = four(dir.path(), &[]).await;
    let mut accepted = Vec::new();

    // All four take their share.
    let (body, before) = numbered_packets("t2", 0, 100);
    post_all(&distributor, &body, &before).await;
    distributor.drained().await;
    assert_eq!(split_of(&analyzers, &before), [40, 30, 20, 10]);
    accepted.extend(before);

    // A crashes (SIGKILL) with nothing in flight; the probes notice.
    analyzers[0].kill();
    let took = wait_in_rotation(&distributor, "a", false).await;
    assert!(took <= HEALTH_BOUND, "A left the rotation only after {took:?}");
    let info = analyzer_info(&distributor, "a").await;
    assert_eq!(info["health_reason"], "ProbeFailed", "{info}");
    let health = distributor.get("/api/v1/health").await;
    health.expect(200);
    assert_eq!(health.json["status"], "degraded", "{}", health.text);
    assert_eq!(health.json["active_analyzers"], 3, "{}", health.text);

    // Its share goes to B, C and D in proportion 3:2:1, exactly.
    let (body, during) = numbered_packets("t2", 100, 900);
    post_all(&distributor, &body, &during).await;
    let stats = distributor.drained().await;
    assert_eq!(
        split_of(&analyzers, &during),
        [0, 450, 300, 150],
        "{stats}\nrotation changes:\n{}",
        rotation_log(&distributor)
    );
    accepted.extend(during);

    // Restarted on the same port and record file, it rejoins a fresh cycle.
    analyzers[0].restart().await;
    let took = wait_in_rotation(&distributor, "a", true).await;
    assert!(took <= HEALTH_BOUND, "A rejoined only after {took:?}");
    let (body, after) = numbered_packets("t2", 1000, 100);
    post_all(&distributor, &body, &after).await;
    let stats = distributor.drained().await;
    assert_eq!(split_of(&analyzers, &after), [40, 30, 20, 10], "{stats}");
    accepted.extend(after);

    // Nothing lost, nothing twice.
    let dead = audit(&distributor, &accepted, &analyzers.iter().collect::<Vec<_>>()).await;
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(stats["total_packets_received"], accepted.len(), "{stats}");
    for analyzer in &analyzers {
        assert_no_duplicates(analyzer).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_with_deliveries_in_flight_loses_nothing_and_delivers_nothing_twice() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    // A takes 400 ms before it records and answers: killed well before
    // that, it has recorded nothing, so whatever it held must be delivered
    // elsewhere, once.
    let (mut analyzers, distributor) = four(dir.path(), &["--latency-ms", "400"]).await;

    let (body, ids) = numbered_packets("t2b", 0, 100);
    post_all(&distributor, &body, &ids).await;
    analyzers[0].kill();
    let took = wait_in_rotation(&distributor, "a", false).await;
    assert!(took <= HEALTH_BOUND, "A left the rotation only after {took:?}");
    let stats = distributor.drained().await;

    let dead = audit(&distributor, &ids, &analyzers.iter().collect::<Vec<_>>()).await;
    assert!(
        dead.is_empty(),
        "three analyzers were there to take A's packets: {dead:?}"
    );
    assert!(
        analyzers[0].records().is_empty(),
        "A was killed before it recorded anything"
    );
    assert_eq!(split_of(&analyzers, &ids).iter().sum::<usize>(), 100);
    assert!(
        stats["total_retries"].as_u64().unwrap() >= 1,
        "the deliveries cut by the crash were retried: {stats}"
    );
    assert_eq!(stats["analyzers"]["a"]["processed_count"], 0, "{stats}");
    for analyzer in &analyzers[1..] {
        assert_no_duplicates(analyzer).await;
    }
}

// ---------------------------------------------------------------- 3

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_answering_400_sends_packets_straight_to_the_dead_letter() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let (refuser, distributor) = alone(dir.path(), "refuser", &["--respond-status", "400"]).await;

    let (body, ids) = numbered_packets("t3", 0, 5);
    post_all(&distributor, &body, &ids).await;
    let stats = distributor.drained().await;

    let entries = distributor.dead_letter().await;
    let mut dead = dead_ids(&entries);
    dead.sort();
    assert_eq!(dead, ids, "every packet is dead-lettered, once");
    for entry in &entries {
        assert_eq!(entry["packet"]["retry_count"], 0, "not retried: {entry}");
        let error = entry["final_error"].as_str().expect("final_error");
        assert!(error.contains("400"), "final_error names the status: {error:?}");
        assert!(
            error.contains("configured to answer 400"),
            "final_error quotes the analyzer's answer: {error:?}"
        );
    }
    assert_eq!(stats["total_retries"], 0, "{stats}");
    assert_eq!(stats["total_dead_lettered"], 5, "{stats}");
    assert_eq!(
        stats["analyzers"]["refuser"]["error_count"], 5,
        "one attempt each: {stats}"
    );
    assert!(refuser.records().is_empty(), "the analyzer kept nothing");
    assert_eq!(refuser.stats().await["packets_received"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_answering_429_is_retried_to_the_limit_then_dead_lettered() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let (busy, distributor) = alone(dir.path(), "busy", &["--respond-status", "429"]).await;

    let (body, ids) = numbered_packets("t3b", 0, 2);
    let posted = Instant::now();
    post_all(&distributor, &body, &ids).await;
    let stats = distributor.drained().await;
    let took = posted.elapsed();

    let entries = distributor.dead_letter().await;
    let mut dead = dead_ids(&entries);
    dead.sort();
    assert_eq!(dead, ids);
    for entry in &entries {
        assert_eq!(entry["packet"]["retry_count"], 3, "max_retries spent: {entry}");
        let error = entry["final_error"].as_str().expect("final_error");
        assert!(error.contains("429"), "{error:?}");
    }
    assert_eq!(stats["total_retries"], 6, "three retries each: {stats}");
    assert_eq!(
        stats["analyzers"]["busy"]["error_count"], 8,
        "four attempts each: {stats}"
    );
    assert!(
        took >= Duration::from_millis(350),
        "50 + 100 + 200 ms of backoff: {took:?}"
    );
    assert!(busy.records().is_empty());
}

// ---------------------------------------------------------------- 4

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyzer_answering_503_at_first_gets_the_packet_after_retries() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let (flaky, distributor) = alone(dir.path(), "flaky", &["--fail-first", "3"]).await;

    let (body, ids) = numbered_packets("t4", 0, 1);
    let posted = Instant::now();
    post_all(&distributor, &body, &ids).await;
    let stats = distributor.drained().await;
    let took = posted.elapsed();

    let dead = audit(&distributor, &ids, &[&flaky]).await;
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(flaky.records(), ids, "delivered once, on the last allowed retry");
    assert_eq!(stats["total_retries"], 3, "three 503s, three retries: {stats}");
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    assert_eq!(stats["analyzers"]["flaky"]["error_count"], 3, "{stats}");
    assert_eq!(stats["analyzers"]["flaky"]["processed_count"], 1, "{stats}");
    assert!(
        took >= Duration::from_millis(350),
        "50 + 100 + 200 ms of backoff: {took:?}"
    );
    assert_no_duplicates(&flaky).await;
}

// ---------------------------------------------------------------- 4b and 7

/// What an in-process analyzer saw of one delivery.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    idempotency_key: Option<String>,
    content_type: Option<String>,
    body: Value,
}

/// An analyzer hosted in the test: answers its first `refuse_first`
/// deliveries 503 with `Retry-After: 1`, later ones 200, `/health` 200;
/// keeps every delivery.
async fn capturing_analyzer(refuse_first: usize) -> (String, Arc<Mutex<Vec<Seen>>>) {
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};

    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/",
            post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let log = log.clone();
                async move {
                    let header =
                        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(String::from);
                    let mut log = log.lock().unwrap();
                    log.push(Seen {
                        at: Instant::now(),
                        idempotency_key: header("idempotency-key"),
                        content_type: header("content-type"),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                    });
                    if log.len() <= refuse_first {
                        (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [("retry-after", "1")],
                            "busy, come back in 1 s",
                        )
                    } else {
                        // (A header here too, so both answers have one type.)
                        (StatusCode::OK, [("retry-after", "0")], "{\"accepted\": 1}")
                    }
                }
            }),
        );
    let addr = serve(app).await;
    (format!("http://{addr}/"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_carry_the_idempotency_key_and_honour_retry_after() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let (endpoint, seen) = capturing_analyzer(1).await;
    let distributor = distributor(dir.path(), &config(vec![remote("capture", 1, &endpoint)], 0)).await;
    wait_all_probed(&distributor, &["capture"]).await;

    let (body, ids) = numbered_packets("t7", 0, 1);
    post_all(&distributor, &body, &ids).await;
    let stats = distributor.drained().await;
    assert_eq!(stats["total_retries"], 1, "{stats}");
    assert!(distributor.dead_letter().await.is_empty());

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one 503, then the delivery: {seen:?}");
    for (attempt, delivery) in seen.iter().enumerate() {
        assert_eq!(
            delivery.idempotency_key.as_deref(),
            Some(ids[0].as_str()),
            "{delivery:?}"
        );
        assert_eq!(
            delivery.content_type.as_deref(),
            Some("application/json"),
            "{delivery:?}"
        );
        let packets = delivery.body.as_array().expect("a JSON array of packets");
        assert_eq!(packets.len(), 1, "{delivery:?}");
        assert_eq!(packets[0]["id"], ids[0], "{delivery:?}");
        assert_eq!(packets[0]["retry_count"], attempt, "{delivery:?}");
        assert_eq!(packets[0]["messages"][0]["message"], "message 0", "{delivery:?}");
        assert_eq!(packets[0]["messages"][0]["level"], "INFO", "{delivery:?}");
    }
    let waited = seen[1].at - seen[0].at;
    assert!(
        waited >= Duration::from_millis(1000),
        "Retry-After: 1 asks for a second, the backoff alone is 50 ms; waited {waited:?}"
    );
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
}

/// The contract: a delivery of one packet (the default) carries the
/// packet's id in `Idempotency-Key`, percent-encoded. Ingest accepts ids
/// with commas, spaces and non-ASCII; an analyzer reading the header the way
/// the contract says must still find exactly the packet's id in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_idempotency_key_names_exactly_the_id_of_every_accepted_packet() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let (endpoint, seen) = capturing_analyzer(0).await;
    // One packet per request: each key names one packet.
    let capture = remote("capture", 1, &endpoint).with("max_batch_packets: 1");
    let distributor = distributor(dir.path(), &config(vec![capture], 0)).await;
    wait_all_probed(&distributor, &["capture"]).await;

    let odd = [
        "t8-plain",
        "t8,with-a-comma",
        " t8-leading-space",
        "t8-trailing-space ",
        "t8-é-ü",
    ];
    let body = Value::Array(odd.iter().map(|id| packet(Some(id), 1)).collect());
    let reply = distributor.post_logs(&body).await;
    assert!([202, 207, 400].contains(&reply.status.as_u16()), "{}", reply.text);
    let accepted = if reply.status == 400 {
        Vec::new()
    } else {
        reply.ids()
    };
    assert!(accepted.contains(&"t8-plain".to_string()), "{}", reply.text);
    distributor.drained().await;

    let seen = seen.lock().unwrap().clone();
    let mismatches: Vec<String> = accepted
        .iter()
        .filter_map(|id| {
            let delivery = seen
                .iter()
                .find(|d| d.body[0]["id"] == id.as_str())
                .unwrap_or_else(|| panic!("no delivery of {id:?}: {seen:?}"));
            let key = delivery.idempotency_key.as_deref().unwrap_or_default();
            let named: Vec<String> = key.split(',').map(percent_decode).collect();
            (named != [id.clone()])
                .then(|| format!("packet {id:?} went with Idempotency-Key {key:?}, which names {named:?}"))
        })
        .collect();
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}

/// Reverses the header's percent-encoding, as an analyzer would.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ascii");
            out.push(u8::from_str_radix(hex, 16).expect("two hex digits"));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("the ids are UTF-8")
}

/// An analyzer's error answer is its own text: logged, it must stay inside
/// the log line that quotes it. This one answers 500 with newlines in its
/// body; the distributor ejects it at the first failure and logs why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_answer_with_newlines_cannot_forge_log_lines() {
    use axum::http::StatusCode;
    use axum::routing::{get, post};

    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/",
            post(|| async {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "oops\nFAKE LOG LINE level=ERROR forged\r\nFAKE again",
                )
            }),
        );
    let endpoint = format!("http://{}/", serve(app).await);
    let distributor = distributor(dir.path(), &config(vec![remote("liar", 1, &endpoint)], 1)).await;
    wait_all_probed(&distributor, &["liar"]).await;

    let (body, ids) = numbered_packets("t15", 0, 1);
    post_all(&distributor, &body, &ids).await;
    let log = eventually("the ejection to be logged", DEADLINE, || async {
        let log = distributor.stderr();
        if log.contains("ejected") {
            Ok(log)
        } else {
            Err(log)
        }
    })
    .await;
    let forged: Vec<&str> = log.lines().filter(|line| line.starts_with("FAKE")).collect();
    assert!(forged.is_empty(), "forged log lines {forged:?} in:\n{log}");
    let quoted = log
        .lines()
        .find(|line| line.contains("ejected"))
        .expect("the ejection line");
    assert!(
        quoted.contains("oops") && quoted.contains("FAKE LOG LINE") && quoted.contains("FAKE again"),
        "the ejection line quotes the whole answer: {quoted}"
    );
}

// ---------------------------------------------------------------- 5

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_sent_to_a_hanging_analyzer_time_out_and_are_delivered_by_the_other() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let steady = AnalyzerProcess::start(dir.path(), "steady", &[]).await;
    let hung = AnalyzerProcess::start(dir.path(), "hung", &["--latency-ms", "60000"]).await;
    // 9:1, steady first: the cycle is S S S S S H S S S S, so 30 packets
    // send 3 to the hanging one, one packet per request. Its deliveries time
    // out together; two failures in a row eject it, and no probe brings it
    // back (they are an hour apart here), so the retries, which stay with
    // their analyzer only while it is in rotation, are routed afresh, to the
    // steady one (the first 5 picks of the cycle rebuilt without the hanging one).
    let specs = vec![
        remote("steady", 9, &steady.endpoint()),
        remote("hung", 1, &hung.endpoint()).with("max_batch_packets: 1"),
    ];
    // The 500 ms: a delivery to the hanging analyzer fails after it.
    let config = config(specs, 2)
        .http("{timeout: 500ms}")
        .health("{interval: 1h, timeout: 1s, ejection_threshold: 2}");
    let distributor = distributor(dir.path(), &config).await;
    wait_all_probed(&distributor, &["steady", "hung"]).await;

    let (body, ids) = numbered_packets("t5", 0, 30);
    let posted = Instant::now();
    post_all(&distributor, &body, &ids).await;
    let stats = distributor.drained().await;
    let took = posted.elapsed();

    let dead = audit(&distributor, &ids, &[&steady, &hung]).await;
    assert!(dead.is_empty(), "none should need the dead letter: {dead:?}");
    assert_eq!(steady.records().len(), ids.len(), "all on the steady one");
    assert!(hung.records().is_empty(), "the hanging analyzer answered nothing");
    assert_eq!(
        stats["analyzers"]["hung"]["error_count"], 3,
        "three timeouts: {stats}"
    );
    assert_eq!(stats["analyzers"]["hung"]["processed_count"], 0, "{stats}");
    assert_eq!(stats["analyzers"]["steady"]["processed_count"], 30, "{stats}");
    assert_eq!(
        stats["total_retries"], 3,
        "each timed-out packet retried once: {stats}"
    );
    assert!(
        took >= Duration::from_millis(500),
        "before the HTTP timeout: {took:?}"
    );
    assert!(
        distributor.stderr().contains("ejected"),
        "two timeouts in a row eject the hanging analyzer; log:\n{}",
        distributor.stderr()
    );
    assert_no_duplicates(&steady).await;
}

// ---------------------------------------------------------------- 6

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_analyzer_unhealthy_packets_wait_and_go_out_when_one_is_back() {
    let _alone = serial::alone().await;
    let dir = TempDir::new().unwrap();
    let left = AnalyzerProcess::start(dir.path(), "left", &[]).await;
    let right = AnalyzerProcess::start(dir.path(), "right", &[]).await;
    let specs = vec![
        remote("left", 1, &left.endpoint()),
        remote("right", 1, &right.endpoint()),
    ];
    let distributor = distributor(dir.path(), &config(specs, 3)).await;
    wait_all_probed(&distributor, &["left", "right"]).await;

    left.set_health(false).await;
    right.set_health(false).await;
    for id in ["left", "right"] {
        let took = wait_in_rotation(&distributor, id, false).await;
        assert!(took <= HEALTH_BOUND, "{id} left the rotation only after {took:?}");
    }
    let health = distributor.get("/api/v1/health").await;
    health.expect(503);
    assert_eq!(health.json["status"], "unhealthy", "{}", health.text);
    assert_eq!(health.json["active_analyzers"], 0, "{}", health.text);

    let (body, ids) = numbered_packets("t6", 0, 50);
    post_all(&distributor, &body, &ids).await;
    eventually("the packets to wait for an analyzer", DEADLINE, || async {
        let stats = distributor.stats().await;
        if stats["waiting_for_analyzer"] == 50 {
            Ok(())
        } else {
            Err(stats.to_string())
        }
    })
    .await;
    // They keep waiting through a few probe rounds: no retries, no dead letter.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = distributor.stats().await;
    assert_eq!(stats["in_flight"], 50, "{stats}");
    assert_eq!(stats["waiting_for_analyzer"], 50, "{stats}");
    assert_eq!(stats["total_retries"], 0, "{stats}");
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    assert!(left.records().is_empty() && right.records().is_empty());

    right.set_health(true).await;
    let took = wait_in_rotation(&distributor, "right", true).await;
    assert!(took <= HEALTH_BOUND, "right rejoined only after {took:?}");
    let stats = distributor.drained().await;
    let dead = audit(&distributor, &ids, &[&left, &right]).await;
    assert!(dead.is_empty(), "{dead:?}");
    assert_eq!(
        right.records().len(),
        50,
        "all of them went to the one back in rotation"
    );
    assert!(left.records().is_empty());
    assert_eq!(stats["waiting_for_analyzer"], 0, "{stats}");
    let health = distributor.get("/api/v1/health").await;
    health.expect(200);
    assert_eq!(health.json["status"], "degraded", "{}", health.text);
    assert_no_duplicates(&right).await;
}
