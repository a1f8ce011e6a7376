//! Hostile requests: what a careless or malicious client can send, each
//! with the exact answer the service owes it, and proof that it survives:
//! after the table the service is healthy and every packet it accepted,
//! before the table or during it, has reached the analyzer.
//!
//! The table runs against a distributor started in-process whose one
//! analyzer is hosted by the test and records every packet it receives. The
//! answers checked are over real sockets: reqwest where a well-formed HTTP
//! request will do, raw TCP for what reqwest will not send (dot segments,
//! header floods, a trickle, a body cut short).
//!
//! Decisions recorded here (and in the README):
//! - `\u0000` inside `message` or `source` is accepted: the text is opaque
//!   and reaches the analyzer unchanged (JSON-escaped). A raw NUL byte in
//!   the body is not JSON: 400. In `id` it is refused like any control
//!   character.
//! - Numbers in `metadata` are read as 64-bit integers or doubles: `1e400`
//!   is refused (400, out of range); an integer beyond 64 bits is accepted
//!   and reaches the analyzer rounded to a double.
//! - A body over `limits.max_body_bytes` is answered 413 once that many
//!   bytes have been read (the server does not decide on Content-Length
//!   alone), so the over-limit cases send the limit + 1 bytes and no more.
//! - A connection that trickles its headers is closed once
//!   `server.header_read_timeout` (10 s by default) has passed; until then
//!   other clients are served meanwhile (the slow-loris case; the closing
//!   itself is tested in `security` with a 1 s timeout).
//!
//! The tests about metadata nested as deep as ingest allows are apart from
//! the table: they need the dead letter, a crash and a restart.

use crate::support::config::{analyzer, remote, write_config, Config};
use crate::support::distributor::Distributor;
use crate::support::http::{processed, serve, Api};
use crate::support::in_process::Server;
use crate::support::packets::packets;
use crate::support::poll::{eventually, DEADLINE};
use crate::support::serial::beside_others;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The default `limits.max_body_bytes`.
const BODY_LIMIT: usize = 10 * 1024 * 1024;

// ---------------------------------------------------------------- helpers

/// An analyzer hosted in the test: answers 200 to every delivery and keeps
/// every packet it received.
async fn recording_analyzer() -> (String, Arc<Mutex<Vec<Value>>>) {
    use axum::routing::{get, post};
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let log = received.clone();
    let app = axum::Router::new()
        .route("/health", get(|| async { "ok" }))
        .route(
            "/",
            post(move |body: axum::body::Bytes| {
                let log = log.clone();
                async move {
                    let packets: Vec<Value> =
                        serde_json::from_slice(&body).expect("a delivery is a JSON array");
                    log.lock().unwrap().extend(packets);
                    "{}"
                }
            }),
        );
    let addr = serve(app).await;
    (format!("http://{addr}/"), received)
}

fn message(text: &str) -> Value {
    json!({"level": "INFO", "message": text, "source": "hostile"})
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A packet whose metadata holds `depth` nested arrays: `{"a": [[...]]}`.
fn deep_packet(id: &str, depth: usize) -> String {
    format!(
        r#"{{"id":"{id}","messages":[{{"level":"INFO","message":"deep","source":"hostile","metadata":{{"a":{}{}}}}}]}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

/// An answer read off a raw socket.
#[derive(Debug)]
struct RawReply {
    status: u16,
    head: String,
    body: String,
}

/// Writes `request` on a fresh connection, then reads the answer until
/// the server closes the connection or `Content-Length` bytes have come.
/// Write errors are ignored: a server may answer and close before it has
/// read everything.
async fn raw(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let _ = stream.write_all(request).await;
    reply_on(&mut stream).await
}

/// Reads an answer off `stream`, as [`raw`] does.
async fn reply_on(stream: &mut TcpStream) -> RawReply {
    let mut bytes = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&chunk[..n]),
            Err(_) => panic!(
                "no complete answer within 10 s; so far: {}",
                String::from_utf8_lossy(&bytes)
            ),
        }
        if let Some(reply) = parse_reply(&bytes) {
            return reply;
        }
    }
    parse_reply(&bytes).unwrap_or_else(|| {
        panic!(
            "the server closed without a full answer: {}",
            String::from_utf8_lossy(&bytes)
        )
    })
}

fn parse_reply(bytes: &[u8]) -> Option<RawReply> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (body.len() >= length).then(|| RawReply {
        status,
        head: head.to_string(),
        body: body.to_string(),
    })
}

/// A POST whose headers promise `body.len()` bytes of which only the first
/// `BODY_LIMIT + 1` are sent: enough for the server to know the body is
/// over the limit, nothing it would leave unread.
fn over_limit_request(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    assert!(body.len() > BODY_LIMIT + 1, "the body must be over the limit");
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: hostile\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body[..BODY_LIMIT + 1]);
    request
}

/// Collects the differences between what the service answered and what it
/// owes, so one run reports every case at fault.
#[derive(Default)]
struct Verdicts {
    failures: Vec<String>,
    cases: usize,
}

impl Verdicts {
    fn check(&mut self, case: &str, ok: bool, detail: impl FnOnce() -> String) {
        self.cases += 1;
        if !ok {
            self.failures.push(format!("{case}: {}", detail()));
        }
    }

    /// A status and, when the body is JSON with an `error`, that text.
    fn answer(
        &mut self,
        case: &str,
        status: u16,
        content_type: Option<&str>,
        text: &str,
        want: u16,
        says: &[&str],
    ) {
        let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let is_json = content_type.is_some_and(|t| t.starts_with("application/json"));
        let error = json["error"].as_str().unwrap_or_default();
        let ok = status == want
            && (want < 400 || (is_json && !error.is_empty()))
            && says.iter().all(|s| text.contains(s));
        self.check(case, ok, || {
            format!(
                "expected {want} with a JSON error saying {says:?}; got {status} ({}) {}",
                content_type.unwrap_or("no content type"),
                shorten(text)
            )
        });
    }
}

fn shorten(text: &str) -> String {
    if text.len() <= 400 {
        return text.to_string();
    }
    let mut end = 400;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

// ---------------------------------------------------------------- the table

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_requests_get_their_exact_answer_and_the_service_survives_them() {
    let _gate = beside_others().await;
    let started = Instant::now();
    let (endpoint, received) = recording_analyzer().await;
    let server = Server::start(&Config::new(vec![remote("recorder", 1, &endpoint)])).await;
    let addr = server.running().addr();
    let logs = "/api/v1/logs";
    let json_type = [("content-type", "application/json")];
    let ndjson_type = [("content-type", "application/x-ndjson")];
    let mut verdicts = Verdicts::default();

    // Packets accepted before the table: all of them must arrive.
    let known: BTreeSet<String> = (0..100).map(|i| format!("known-{i}")).collect();
    let reply = server.post_logs(&packets("known", 100)).await;
    reply.expect(202);
    let mut accepted: BTreeSet<String> = reply.ids().into_iter().collect();
    assert_eq!(accepted, known);

    // Each case: the request, the status owed, words the answer must hold.
    // `total_packets_received` must grow by exactly the packets the answer
    // accepted: a refused request keeps nothing.
    macro_rules! case {
        ($name:expr, $reply:expr, $status:expr, $says:expr) => {{
            let before = server.stats().await["total_packets_received"].as_u64().unwrap();
            let reply = $reply;
            verdicts.answer(
                $name,
                reply.status.as_u16(),
                reply.header("content-type"),
                &reply.text,
                $status,
                &$says,
            );
            let ids: Vec<String> = reply.json["processed_packets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|id| id.as_str().unwrap().to_string())
                .collect();
            let after = server.stats().await["total_packets_received"].as_u64().unwrap();
            verdicts.check($name, after - before == ids.len() as u64, || {
                format!(
                    "{} packets kept, the answer accepted {}",
                    after - before,
                    ids.len()
                )
            });
            accepted.extend(ids);
            reply
        }};
    }

    // -- malformed JSON
    case!(
        "truncated JSON",
        server
            .post_raw(logs, &json_type, br#"[{"messages":[{"level":"INFO""#.to_vec())
            .await,
        400,
        ["body is not valid JSON", "EOF"]
    );
    case!(
        "an object, not an array",
        server.post(logs, &json!({"messages": [message("m")]})).await,
        400,
        ["must be a JSON array of packets, got an object"]
    );

    // -- wrong types: refused per packet, naming the field
    // The field as the validation errors name it: `messages[0].level: ...`.
    for (field, packet) in [
        (
            "messages[0].level",
            json!({"messages": [{"level": 5, "message": "m", "source": "s"}]}),
        ),
        (
            "messages[0].message",
            json!({"messages": [{"level": "INFO", "message": ["m"], "source": "s"}]}),
        ),
        (
            "messages[0].timestamp",
            json!({"messages": [{"level": "INFO", "message": "m", "source": "s", "timestamp": 5}]}),
        ),
        (
            "messages[0].metadata",
            json!({"messages": [{"level": "INFO", "message": "m", "source": "s", "metadata": [1]}]}),
        ),
        ("messages", json!({"messages": "m"})),
        ("id", json!({"id": 5, "messages": [message("m")]})),
        (
            "retry_count",
            json!({"retry_count": -1, "messages": [message("m")]}),
        ),
    ] {
        let reply = case!(
            &format!("wrong type of {field}, alone"),
            server.post_logs(&json!([packet.clone()])).await,
            400,
            ["no packet was accepted"]
        );
        let error = reply.json["errors"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        verdicts.check(
            &format!("wrong type of {field}: the error names the field"),
            error.starts_with(&format!("{field}:")) || error.contains(&format!("`{field}`")),
            || format!("errors[0].error does not name `{field}`: {error:?}"),
        );
        let reply = case!(
            &format!("wrong type of {field}, beside a good packet"),
            server
                .post_logs(&json!([{"messages": [message("fine")]}, packet]))
                .await,
            207,
            [""]
        );
        verdicts.check(
            &format!("wrong type of {field}, beside a good packet: index"),
            reply.json["errors"][0]["index"] == 1,
            || reply.text.clone(),
        );
    }

    // -- deep nesting: serde_json's recursion limit, not the stack
    let deep_metadata = format!("[{}]", deep_packet("deep-10000", 10_000));
    case!(
        "10 000 nested arrays in metadata",
        server
            .post_raw(logs, &json_type, deep_metadata.into_bytes())
            .await,
        400,
        ["messages[0].metadata.a[0]", "recursion limit exceeded"]
    );
    let deep_body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    case!(
        "10 000 nested arrays as the body",
        server
            .post_raw(logs, &json_type, deep_body.clone().into_bytes())
            .await,
        400,
        ["no packet was accepted", "a packet must be a JSON object"]
    );
    case!(
        "10 000 nested arrays as an NDJSON line",
        server.post_raw(logs, &ndjson_type, deep_body.into_bytes()).await,
        400,
        ["no packet was accepted", "a packet must be a JSON object"]
    );
    let deep_objects = format!(
        "[{{\"messages\":[{{\"level\":\"INFO\",\"message\":\"m\",\"source\":\"s\",\"metadata\":{}1{}}}]}}]",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    case!(
        "10 000 nested objects in metadata",
        server.post_raw(logs, &json_type, deep_objects.into_bytes()).await,
        400,
        ["messages[0].metadata.a.a", "recursion limit exceeded"]
    );
    // serde's derive also takes a struct as an array of its fields in order;
    // the documented shape of a packet and of a message is an object.
    case!(
        "a packet and its message as positional arrays",
        server
            .post_logs(&json!([["positional", [["INFO", "m", "s"]]]]))
            .await,
        400,
        ["no packet was accepted"]
    );
    case!(
        "a message as a positional array",
        server
            .post_logs(&json!([{"id": "positional", "messages": [["INFO", "m", "s"]]}]))
            .await,
        400,
        [
            "no packet was accepted",
            "messages[0]: a message must be a JSON object"
        ]
    );

    // -- huge numbers
    let huge = |number: &str| {
        format!(
            r#"[{{"messages":[{{"level":"INFO","message":"m","source":"s","metadata":{{"n":{number}}}}}]}}]"#
        )
        .into_bytes()
    };
    case!(
        "1e400 in metadata",
        server.post_raw(logs, &json_type, huge("1e400")).await,
        400,
        ["messages[0].metadata.n: number out of range"]
    );
    case!(
        "-1e400 in metadata",
        server.post_raw(logs, &json_type, huge("-1e400")).await,
        400,
        ["number out of range"]
    );
    let wide = format!("1{}", "0".repeat(400));
    case!(
        "a 401-digit integer in metadata",
        server.post_raw(logs, &json_type, huge(&wide)).await,
        400,
        ["number out of range"]
    );
    let big = case!(
        "2^64 + 1 in metadata (accepted, rounded to a double)",
        server
            .post_raw(logs, &json_type, huge("18446744073709551617"))
            .await,
        202,
        [""]
    );
    let big_id = big.json["processed_packets"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    case!(
        "1e400 as retry_count",
        server
            .post_raw(
                logs,
                &json_type,
                br#"[{"retry_count":1e400,"messages":[{"level":"INFO","message":"m","source":"s"}]}]"#
                    .to_vec()
            )
            .await,
        400,
        ["number out of range"]
    );

    // -- invalid UTF-8 and NUL
    case!(
        "invalid UTF-8 inside a string",
        server
            .post_raw(
                logs,
                &json_type,
                b"[{\"messages\":[{\"level\":\"INFO\",\"message\":\"\xff\xfe\",\"source\":\"s\"}]}]".to_vec()
            )
            .await,
        400,
        ["body is not valid JSON", "invalid unicode code point"]
    );
    case!(
        "invalid UTF-8 outside strings",
        server.post_raw(logs, &json_type, b"\xc3\x28[]".to_vec()).await,
        400,
        ["body is not valid JSON"]
    );
    case!(
        "invalid UTF-8 in an NDJSON line",
        server
            .post_raw(
                logs,
                &ndjson_type,
                b"{\"messages\":[]}\n{\"messages\":\"\xff\"}\n".to_vec()
            )
            .await,
        400,
        ["line 2: not valid JSON"]
    );
    let nul = case!(
        "\\u0000 in message and source (accepted)",
        server.post(logs, &json!([{"id": "nul-text", "messages": [{"level": "INFO", "message": "a\u{0}b", "source": "\u{0}"}]}])).await,
        202,
        [""]
    );
    verdicts.check(
        "\\u0000 in message: id",
        nul.json["processed_packets"] == json!(["nul-text"]),
        || nul.text.clone(),
    );
    case!(
        "a raw NUL byte inside a string",
        server
            .post_raw(
                logs,
                &json_type,
                b"[{\"messages\":[{\"level\":\"INFO\",\"message\":\"a\x00b\",\"source\":\"s\"}]}]".to_vec()
            )
            .await,
        400,
        ["control character"]
    );
    case!(
        "\\u0000 in id",
        server
            .post(logs, &json!([{"id": "a\u{0}b", "messages": [message("m")]}]))
            .await,
        400,
        ["id: must not contain control characters"]
    );

    // -- sizes
    let ten_mb = serde_json::to_string(&json!({"messages": [message(&"x".repeat(10_000_000))]})).unwrap();
    let reply = case!(
        "a 10 000 000-byte message (packet over 1 MiB)",
        server
            .post_raw(logs, &json_type, format!("[{ten_mb}]").into_bytes())
            .await,
        400,
        ["no packet was accepted"]
    );
    let want = format!("packet is {} bytes: at most 1048576 are allowed", ten_mb.len());
    verdicts.check(
        "a 10 000 000-byte message: reason",
        reply.json["errors"][0]["error"] == want.as_str(),
        || format!("want {want:?}, got {}", shorten(&reply.text)),
    );
    let over = format!(
        "[{}]",
        serde_json::to_string(&json!({"messages": [message(&"x".repeat(BODY_LIMIT))]})).unwrap()
    );
    let reply = raw(
        addr,
        &over_limit_request(logs, "application/json", over.as_bytes()),
    )
    .await;
    verdicts.answer(
        "a 10 MiB message (body over 10 MiB)",
        reply.status,
        Some(content_type(&reply.head)),
        &reply.body,
        413,
        &["request body is larger than limits.max_body_bytes"],
    );
    let reply = case!(
        "a 10 001-byte message beside a good packet",
        server
            .post(
                logs,
                &json!([{"messages": [message(&"x".repeat(10_001))]}, {"messages": [message("fine")]}])
            )
            .await,
        207,
        [""]
    );
    verdicts.check("a 10 001-byte message: reason", reply.json["errors"] == json!([{"index": 0, "id": null, "error": "messages[0].message: 10001 bytes long: at most 10000 are allowed"}]), || reply.text.clone());
    case!(
        "10 000 bytes exactly (accepted)",
        server
            .post(logs, &json!([{"messages": [message(&"x".repeat(10_000))]}]))
            .await,
        202,
        [""]
    );
    let minimal = serde_json::to_string(&json!({"messages": [message("m")]})).unwrap();
    let hundred_thousand = format!("[{}]", vec![minimal.as_str(); 100_000].join(","));
    assert!(hundred_thousand.len() < BODY_LIMIT);
    case!(
        "100 000 packets in 6 MB (more than queue.max_in_flight)",
        server
            .post_raw(logs, &json_type, hundred_thousand.into_bytes())
            .await,
        413,
        ["the request is larger than the whole queue: more than 20000 packets (queue.max_in_flight); send it in smaller requests; nothing from this request was kept"]
    );
    let hundred_thousand_lines = format!("{minimal}\n").repeat(100_000);
    case!(
        "100 000 packets as NDJSON lines",
        server
            .post_raw(logs, &ndjson_type, hundred_thousand_lines.into_bytes())
            .await,
        413,
        ["the request is larger than the whole queue: more than 20000 packets (queue.max_in_flight); send it in smaller requests; nothing from this request was kept"]
    );
    let padded = serde_json::to_string(&json!({"messages": [message(&"m".repeat(100))]})).unwrap();
    let too_big = format!("[{}]", vec![padded.as_str(); 100_000].join(","));
    let reply = raw(
        addr,
        &over_limit_request(logs, "application/json", too_big.as_bytes()),
    )
    .await;
    verdicts.answer(
        "100 000 packets in 16 MB",
        reply.status,
        Some(content_type(&reply.head)),
        &reply.body,
        413,
        &["request body is larger than limits.max_body_bytes"],
    );
    let bomb = gzip(&vec![0; 50 * 1024 * 1024]);
    assert!(bomb.len() < 100_000, "{}", bomb.len());
    let zipped = [("content-type", "application/json"), ("content-encoding", "gzip")];
    let timer = Instant::now();
    case!(
        "a gzip bomb (50 KB inflating to 50 MiB)",
        server.post_raw(logs, &zipped, bomb).await,
        413,
        ["decompressed body is larger than limits.max_body_bytes (10485760 bytes)"]
    );
    verdicts.check(
        "a gzip bomb: stops inflating at the limit",
        timer.elapsed() < Duration::from_secs(5),
        || format!("took {:?}", timer.elapsed()),
    );
    case!(
        "gzip that is not gzip",
        server
            .post_raw(logs, &zipped, b"[{\"messages\":[]}]".to_vec())
            .await,
        400,
        ["body is not valid gzip"]
    );
    // -- gzip in several members (RFC 1952 allows any number, as `cat a.gz b.gz` makes)
    let lines = |from: usize| -> Vec<u8> {
        (from..from + 3)
            .map(|i| {
                format!(
                    "{{\"id\":\"members-ndjson-{i}\",\"messages\":[{}]}}\n",
                    message("m")
                )
            })
            .collect::<String>()
            .into_bytes()
    };
    let ndjson_zipped = [
        ("content-type", "application/x-ndjson"),
        ("content-encoding", "gzip"),
    ];
    let reply = case!(
        "NDJSON in two gzip members (6 packets, all accepted)",
        server
            .post_raw(logs, &ndjson_zipped, [gzip(&lines(0)), gzip(&lines(3))].concat())
            .await,
        202,
        [""]
    );
    let want: Vec<String> = (0..6).map(|i| format!("members-ndjson-{i}")).collect();
    verdicts.check(
        "NDJSON in two gzip members: every packet",
        reply.json["processed_packets"] == json!(want),
        || reply.text.clone(),
    );
    let array: Vec<String> = (0..6)
        .map(|i| format!("{{\"id\":\"members-array-{i}\",\"messages\":[{}]}}", message("m")))
        .collect();
    let (head, tail) = (
        format!("[{},", array[..3].join(",")),
        format!("{}]", array[3..].join(",")),
    );
    let reply = case!(
        "a JSON array cut across two gzip members (6 packets, all accepted)",
        server
            .post_raw(
                logs,
                &zipped,
                [gzip(head.as_bytes()), gzip(tail.as_bytes())].concat()
            )
            .await,
        202,
        [""]
    );
    verdicts.check(
        "a JSON array cut across two gzip members: every packet",
        reply.json["processed_packets"].as_array().map(Vec::len) == Some(6),
        || reply.text.clone(),
    );
    case!(
        "gzip followed by bytes that are not gzip",
        server
            .post_raw(
                logs,
                &ndjson_zipped,
                [gzip(&lines(10)), b"trailing".to_vec()].concat()
            )
            .await,
        400,
        ["8 bytes after the end of the gzip data are not gzip"]
    );
    case!(
        "gzip followed by zeros",
        server
            .post_raw(logs, &ndjson_zipped, [gzip(&lines(20)), vec![0; 512]].concat())
            .await,
        400,
        ["512 bytes after the end of the gzip data are not gzip"]
    );
    case!(
        "a second gzip member cut short",
        server
            .post_raw(
                logs,
                &ndjson_zipped,
                [gzip(&lines(30)), gzip(&lines(33))[..20].to_vec()].concat()
            )
            .await,
        400,
        ["body is not valid gzip"]
    );
    let mut oversized_admin = vec![b' '; BODY_LIMIT + 100];
    oversized_admin[0] = b'{';
    for path in ["/api/v1/dead-letter/replay", "/api/v1/analyzers/recorder/health"] {
        let reply = raw(
            addr,
            &over_limit_request(path, "application/json", &oversized_admin),
        )
        .await;
        verdicts.answer(
            &format!("11 MB to {path}"),
            reply.status,
            Some(content_type(&reply.head)),
            &reply.body,
            413,
            &[],
        );
    }

    // -- NDJSON with one bad line: nothing kept, the line named
    let ndjson = format!("{minimal}\n{minimal}\n{{\"messages\": [\n{minimal}\n");
    case!(
        "NDJSON with a bad third line",
        server.post_raw(logs, &ndjson_type, ndjson.into_bytes()).await,
        400,
        ["line 3: not valid JSON"]
    );

    // -- content types and encodings
    for kind in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "application/json-seq",
    ] {
        let reply = server
            .send(
                server
                    .http
                    .post(server.api.url(logs))
                    .header("content-type", kind)
                    .body(format!("[{minimal}]")),
            )
            .await;
        case!(
            &format!("Content-Type {kind:?}"),
            reply,
            415,
            ["is not supported"]
        );
    }
    for encoding in ["br", "deflate", "gzip, gzip"] {
        let headers = [
            ("content-type", "application/json"),
            ("content-encoding", encoding),
        ];
        case!(
            &format!("Content-Encoding {encoding:?}"),
            server
                .post_raw(logs, &headers, format!("[{minimal}]").into_bytes())
                .await,
            415,
            ["Content-Encoding", "is not supported"]
        );
    }

    // -- unknown routes and methods
    case!(
        "unknown route",
        server.get("/api/v1/nope").await,
        404,
        ["no such endpoint: /api/v1/nope"]
    );
    case!(
        "unknown route, POST",
        server.post("/api/v2/logs", &json!([])).await,
        404,
        ["no such endpoint"]
    );
    let reply = case!(
        "GET /api/v1/logs",
        server.get(logs).await,
        405,
        ["/api/v1/logs does not accept GET"]
    );
    verdicts.check(
        "GET /api/v1/logs: Allow",
        reply.header("allow") == Some("POST"),
        || format!("{:?}", reply.headers),
    );
    for (method, path) in [
        (reqwest::Method::DELETE, "/api/v1/stats"),
        (reqwest::Method::PUT, "/api/v1/analyzers/recorder/health"),
        (reqwest::Method::PATCH, "/api/v1/dead-letter"),
    ] {
        let reply = server
            .send(server.http.request(method.clone(), server.api.url(path)))
            .await;
        case!(&format!("{method} {path}"), reply, 405, ["does not accept"]);
    }

    // -- path traversal: nothing is read from the file system
    let reply = case!(
        "traversal in the analyzer id",
        server
            .post(
                "/api/v1/analyzers/..%2F..%2Fetc%2Fpasswd/health",
                &json!({"healthy": false})
            )
            .await,
        404,
        ["no analyzer with id \\\"../../etc/passwd\\\""]
    );
    verdicts.check(
        "traversal in the analyzer id: nothing read",
        !reply.text.contains("root:"),
        || reply.text.clone(),
    );
    case!(
        "traversal in a page file",
        server.get("/ui/..%2F..%2FCargo.toml").await,
        404,
        ["no such file of the status page"]
    );
    for target in [
        "/ui/../../../../etc/passwd",
        "/api/v1/analyzers/../../../etc/passwd/health",
        "/ui/%2e%2e/%2e%2e/Cargo.toml",
    ] {
        let reply = raw(
            addr,
            format!("GET {target} HTTP/1.1\r\nHost: hostile\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        verdicts.answer(
            &format!("raw GET {target}"),
            reply.status,
            Some(content_type(&reply.head)),
            &reply.body,
            404,
            &[],
        );
        verdicts.check(
            &format!("raw GET {target}: nothing read"),
            !reply.body.contains("root:") && !reply.body.contains("[package]"),
            || reply.body.clone(),
        );
    }

    // -- header floods: refused by hyper (431) or served; the service lives on
    let many: String = (0..500).map(|i| format!("X-Flood-{i}: v\r\n")).collect();
    let reply = raw(
        addr,
        format!("GET /api/v1/health HTTP/1.1\r\nHost: hostile\r\n{many}\r\n").as_bytes(),
    )
    .await;
    verdicts.check("500 headers: 431", reply.status == 431, || format!("{reply:?}"));
    let long = "a".repeat(100 * 1024);
    let reply = raw(
        addr,
        format!(
            "GET /api/v1/health HTTP/1.1\r\nHost: hostile\r\nX-Long: {long}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    verdicts.check("a 100 KiB header: served", reply.status == 200, || {
        format!("{:?}", reply.head)
    });
    let longer = "a".repeat(1024 * 1024);
    let reply = raw(
        addr,
        format!("GET /api/v1/health HTTP/1.1\r\nHost: hostile\r\nX-Long: {longer}\r\n\r\n").as_bytes(),
    )
    .await;
    verdicts.check("a 1 MiB header: 431", reply.status == 431, || {
        format!("{:?}", reply.head)
    });
    server.get("/api/v1/health").await.expect(200);

    // -- slow loris: a trickle of header bytes; others are served meanwhile
    let mut loris = TcpStream::connect(addr).await.unwrap();
    let trickle = b"GET /api/v1/health HTTP/1.1\r\nHost: hostile\r\nX-Slow: aaaaaaaa";
    let mut worst = Duration::ZERO;
    let mut served = 0;
    for byte in trickle.iter().take(30) {
        loris
            .write_all(&[*byte])
            .await
            .expect("the trickle is still accepted");
        let timer = Instant::now();
        server.get("/api/v1/health").await.expect(200);
        worst = worst.max(timer.elapsed());
        served += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    verdicts.check(
        "slow loris: others served meanwhile",
        served == 30 && worst < Duration::from_secs(1),
        || format!("{served} served, slowest {worst:?}"),
    );
    // The default header-read timeout (10 s) has not passed yet, so the
    // half-sent request may still be open here; `security` checks
    // that it is closed once the timeout passes.
    let mut probe = [0; 1];
    let closed = tokio::time::timeout(Duration::from_millis(50), loris.read(&mut probe))
        .await
        .is_ok();
    if closed {
        eprintln!("slow loris: the server closed the trickling connection (a header-read timeout)");
    }
    drop(loris);

    // -- a client that disconnects mid-body: nothing accepted
    let before = server.stats().await["total_packets_received"].as_u64().unwrap();
    let mut partial = format!(
        "[{}",
        vec![r#"{"id":"cut","messages":[{"level":"INFO","message":"m","source":"s"}]}"#; 14].join(",")
    );
    partial.truncate(1024);
    let mut cut = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST {logs} HTTP/1.1\r\nHost: hostile\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n");
    cut.write_all(head.as_bytes()).await.unwrap();
    cut.write_all(partial.as_bytes()).await.unwrap();
    drop(cut);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = server.stats().await["total_packets_received"].as_u64().unwrap();
    verdicts.check("disconnect mid-body: nothing accepted", after == before, || {
        format!("{} packets kept", after - before)
    });

    // -- after the table: healthy, and every accepted packet delivered
    server.get("/api/v1/health").await.expect(200);
    server.get("/readyz").await.expect(200);
    let stats = server.drained().await;
    let processed: u64 = processed(&stats).values().sum();
    assert_eq!(
        stats["total_packets_received"].as_u64(),
        Some(accepted.len() as u64),
        "{stats}"
    );
    assert_eq!(
        processed,
        accepted.len() as u64,
        "every accepted packet is delivered: {stats}"
    );
    assert_eq!(stats["total_dead_lettered"], 0, "{stats}");
    let delivered: Vec<Value> = received.lock().unwrap().clone();
    let delivered_ids: BTreeSet<String> = delivered
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    let missing: Vec<_> = known.difference(&delivered_ids).collect();
    assert!(
        missing.is_empty(),
        "packets accepted before the table never arrived: {missing:?}"
    );
    assert_eq!(
        delivered_ids, accepted,
        "the analyzer received exactly the accepted packets"
    );
    assert!(
        !delivered_ids.iter().any(|id| id == "cut"),
        "a packet of the cut-off body arrived"
    );
    let nul_packet = delivered
        .iter()
        .find(|p| p["id"] == "nul-text")
        .expect("the NUL packet arrived");
    assert_eq!(
        nul_packet["messages"][0]["message"], "a\u{0}b",
        "NUL reaches the analyzer unchanged"
    );
    let big_packet = delivered
        .iter()
        .find(|p| p["id"] == big_id.as_str())
        .expect("the 2^64 + 1 packet arrived");
    assert_eq!(
        big_packet["messages"][0]["metadata"]["n"].as_f64(),
        Some(18446744073709551617_f64),
        "a wide integer arrives as a double"
    );

    assert!(
        verdicts.failures.is_empty(),
        "{} of {} checks failed:\n  {}",
        verdicts.failures.len(),
        verdicts.cases,
        verdicts.failures.join("\n  ")
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(30), "the table took {elapsed:?}");
    server.shutdown().await;
}

fn content_type(head: &str) -> &str {
    head.lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type").then(|| value.trim())
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- bodies that inflate to millions of packets

/// The peak resident memory of process `pid` so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kib * 1024
}

/// The most resident memory the binary may reach while it refuses the
/// bodies below.
const PEAK_RSS_BOUND: u64 = 100 * 1024 * 1024;

/// A gzip body of about 10 KB that inflates to just under 10 MiB of tiny
/// packets (5 million of them), within `limits.max_body_bytes`. Every one
/// is refused; what the refusal may cost is bounded: packets are counted
/// as the body is split, and the bodies held at once, all connections
/// together, within `server.max_body_memory`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_inflating_to_millions_of_tiny_packets_are_refused_within_a_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "config.yaml", &Config::new(vec![analyzer("sink", 1)]));
    let process = Distributor::start(&config, &dir.path().join("data"), dir.path()).await;
    let zeros = {
        let count = (BODY_LIMIT - 1) / 2; // "[" + "0," x (count - 1) + "0]"
        let mut text = Vec::with_capacity(BODY_LIMIT);
        text.push(b'[');
        text.extend(b"0,".repeat(count - 1));
        text.extend(b"0]");
        assert!(text.len() <= BODY_LIMIT);
        gzip(&text)
    };
    let zero_lines = gzip(&b"0\n".repeat(BODY_LIMIT / 2));
    assert!(zeros.len() < 20_000 && zero_lines.len() < 20_000);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let url = process.url("/api/v1/logs");
    let sent = Instant::now();
    let requests = (0..8).map(|i| {
        let (content_type, body) = if i % 2 == 0 {
            ("application/json", zeros.clone())
        } else {
            ("application/x-ndjson", zero_lines.clone())
        };
        let request = client
            .post(&url)
            .header("content-type", content_type)
            .header("content-encoding", "gzip")
            .body(body)
            .send();
        async move {
            match request.await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let text = response.text().await.unwrap_or_default();
                    format!("{status} {text}")
                }
                Err(e) => format!("no answer: {e}"),
            }
        }
    });
    let answers = futures_util::future::join_all(requests).await;
    let took = sent.elapsed();
    let peak = peak_rss(process.pid());
    eprintln!("peak RSS {} MiB, answers in {took:?}: {answers:?}", peak >> 20);
    for answer in &answers {
        let (status, text) = answer.split_once(' ').unwrap_or((answer, ""));
        let error = serde_json::from_str::<Value>(text).unwrap_or(Value::Null)["error"].clone();
        assert!(
            ["400", "413", "503"].contains(&status) && error.is_string(),
            "every request is refused with a JSON error; got {answer:.300}"
        );
    }
    assert!(
        peak < PEAK_RSS_BOUND,
        "peak RSS {} MiB while refusing 8 bodies of 5 million tiny packets (bound {} MiB; answers in {took:?}): {:?}",
        peak >> 20,
        PEAK_RSS_BOUND >> 20,
        answers
    );
    let counted = answers
        .iter()
        .filter(|a| a.contains("more than 20000 packets"))
        .count();
    assert!(counted > 0, "none refused for its packet count: {answers:?}");
    process.post_logs(&packets("after-zeros", 10)).await.expect(202);
    process.drained().await;
}

/// Twelve clients each send all but the last byte of a 10 MiB body at
/// once: what the distributor holds for them, all together, stays within
/// `server.max_body_memory` (30 MiB here, the least it may be with 10 MiB
/// bodies); a body that finds no room is read to its end and answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bodies_arriving_at_once_on_many_connections_are_held_within_the_body_memory() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "config.yaml",
        &Config::new(vec![analyzer("sink", 1)])
            .section("server", &format!("{{max_body_memory: {}}}", 3 * BODY_LIMIT)),
    );
    let process = Distributor::start(&config, &dir.path().join("data"), dir.path()).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], process.port));
    // No packet in it: 400 once it is whole.
    let body = Arc::new(format!("[{}]", " ".repeat(BODY_LIMIT - 2)));
    let head = Arc::new(format!(
        "POST /api/v1/logs HTTP/1.1\r\nHost: many\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let senders: Vec<_> = (0..12)
        .map(|_| {
            let (head, body) = (head.clone(), body.clone());
            tokio::spawn(async move {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(head.as_bytes()).await.unwrap();
                stream
                    .write_all(&body.as_bytes()[..body.len() - 1])
                    .await
                    .unwrap();
                stream
            })
        })
        .collect();
    let mut streams = Vec::new();
    for sender in senders {
        let stream = tokio::time::timeout(Duration::from_secs(30), sender)
            .await
            .expect("the distributor reads every body (keeping it or not)")
            .unwrap();
        streams.push(stream);
    }
    let peak = peak_rss(process.pid());
    let mut answers = Vec::new();
    for mut stream in streams {
        stream.write_all(b"]").await.unwrap();
        answers.push(reply_on(&mut stream).await);
    }
    eprintln!("peak RSS {} MiB", peak >> 20);
    for answer in &answers {
        let error = serde_json::from_str::<Value>(&answer.body).unwrap_or(Value::Null)["error"].clone();
        assert!(
            [400, 503].contains(&answer.status) && error.is_string(),
            "every body is refused with a JSON error: {answer:?}"
        );
        if answer.status == 503 {
            assert!(
                answer.head.to_ascii_lowercase().contains("retry-after: 1"),
                "{answer:?}"
            );
        }
    }
    assert!(
        peak < PEAK_RSS_BOUND,
        "peak RSS {} MiB while 12 bodies of 10 MiB arrived at once (bound {} MiB): {answers:?}",
        peak >> 20,
        PEAK_RSS_BOUND >> 20
    );
    process.post_logs(&packets("after-many", 10)).await.expect(202);
    process.drained().await;
}

/// The body budget is one for all routes that read a body: while three
/// ingest bodies that have not finished arriving fill it, an admin `POST`
/// waits for room, then is answered 503; once they are gone, it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bodies_share_the_body_memory_with_ingest() {
    let config = Config::new(vec![analyzer("sink", 1)])
        .limits("{max_body_bytes: 1000}")
        .section("server", "{max_body_memory: 3000}");
    let server = Server::start(&config).await;
    let addr = server.running().addr();
    let mut filling = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let body = format!("[{}]", " ".repeat(998));
        let head = format!(
            "POST /api/v1/logs HTTP/1.1\r\nHost: f\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream
            .write_all(format!("{head}{}", &body[..999]).as_bytes())
            .await
            .unwrap();
        filling.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ids = json!({"ids": ["not-there", "x".repeat(200)]});
    for (path, body) in [
        ("/api/v1/dead-letter/replay", &ids),
        (
            "/api/v1/analyzers/sink/health",
            &json!({"healthy": true, "pad": "x".repeat(200)}),
        ),
    ] {
        let reply = server.post(path, body).await;
        assert_eq!(reply.status.as_u16(), 503, "{path}: {}", reply.text);
        assert!(
            reply.error().contains("server.max_body_memory (3000 bytes)"),
            "{}",
            reply.text
        );
        assert_eq!(reply.header("retry-after"), Some("1"));
    }
    // A client that goes away gives its body's room back; the two others
    // then have room to finish (the last byte moves a body into a buffer
    // of its own: both are held for a moment).
    drop(filling.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    for mut stream in filling {
        stream.write_all(b"]").await.unwrap();
        let reply = reply_on(&mut stream).await;
        assert_eq!(reply.status, 400, "{reply:?}");
    }
    let reply = server.post("/api/v1/dead-letter/replay", &ids).await;
    assert_ne!(reply.status.as_u16(), 503, "{}", reply.text);
    server.shutdown().await;
}

// ---------------------------------------------------------------- deep metadata, stored

/// The deepest metadata (nested arrays) ingest accepts, found by asking:
/// answers the depth and the ids of the accepted packet.
async fn deepest_accepted(api: &Api, id: &str) -> (usize, String) {
    for depth in (1..=140).rev() {
        let body = format!("[{}]", deep_packet(id, depth));
        let reply = api
            .post_raw(
                "/api/v1/logs",
                &[("content-type", "application/json")],
                body.into_bytes(),
            )
            .await;
        match reply.status.as_u16() {
            202 => return (depth, reply.ids()[0].clone()),
            400 => assert!(
                reply.text.contains("recursion limit exceeded")
                    || reply.text.contains("levels deep: at most"),
                "{}",
                reply.text
            ),
            other => panic!("depth {depth}: {other} {}", reply.text),
        }
    }
    panic!("no depth from 1 up is accepted");
}

/// Metadata that ingest accepts must be readable wherever the packet is
/// stored again: the dead letter, the write-ahead log, the checkpoint.
/// Either refuse it at the door or store it readably.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_metadata_that_ingest_accepts_can_be_read_back_from_the_dead_letter() {
    let config =
        Config::new(vec![analyzer("failing", 1).failing(1.0)]).retry("{base_delay: 10ms, max_retries: 0}");
    let server = Server::start(&config).await;
    let (depth, id) = deepest_accepted(&server.api, "deep-dead").await;
    eventually("the deep packet is a dead letter", DEADLINE, || async {
        let stats = server.stats().await;
        if stats["total_dead_lettered"] == 1 && stats["in_flight"] == 0 {
            Ok(())
        } else {
            Err(stats.to_string())
        }
    })
    .await;
    let page = server.get("/api/v1/dead-letter").await;
    assert_eq!(
        page.status.as_u16(),
        200,
        "metadata nested {depth} deep was accepted, and now the dead letter cannot be read: {}",
        page.text
    );
    assert_eq!(page.json["packets"][0]["packet"]["id"], id.as_str());
    let replay = server
        .post("/api/v1/dead-letter/replay", &json!({"ids": [id]}))
        .await;
    assert_eq!(replay.status.as_u16(), 202, "{}", replay.text);
    server.shutdown().await;
}

/// Starts the binary on `data` again: the process, or why it did not start.
async fn restart(config: &Path, data: &Path, log_dir: &Path) -> Result<Distributor, String> {
    let (config, data, log_dir) = (config.to_path_buf(), data.to_path_buf(), log_dir.join("again"));
    std::fs::create_dir_all(&log_dir).unwrap();
    tokio::spawn(async move { Distributor::start(&config, &data, &log_dir).await })
        .await
        .map_err(|e| e.to_string())
}

/// The binary with the four simulated analyzers all forced out of
/// rotation, so that what it accepts stays in flight.
async fn distributor_holding_packets(dir: &Path) -> (PathBuf, PathBuf, Distributor) {
    let config = write_config(dir, "config.yaml", &Config::four(0));
    let data = dir.join("data");
    let process = Distributor::start(&config, &data, dir).await;
    for id in ["analyzer-a1", "analyzer-a2", "analyzer-a3", "analyzer-a4"] {
        process
            .set_health(id, json!({"healthy": false}))
            .await
            .expect(200);
    }
    (config, data, process)
}

/// After a restart the analyzers are back (modes are not persisted): what
/// was in flight is delivered. Answers the packets delivered.
async fn delivered_after_restart(process: &Distributor) -> u64 {
    let stats = process.drained().await;
    processed(&stats).values().sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_metadata_that_ingest_accepts_survives_a_kill_9_as_the_last_log_record() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data, process) = distributor_holding_packets(dir.path()).await;
    let (depth, id) = deepest_accepted(&process.api, "deep-last").await;
    drop(process); // kill -9
    let restarted = restart(&config, &data, dir.path()).await.unwrap_or_else(|e| {
        panic!("packet {id} (metadata nested {depth} deep) was acknowledged; after a kill -9 the distributor does not start: {e}")
    });
    assert_eq!(
        delivered_after_restart(&restarted).await,
        1,
        "packet {id} (metadata nested {depth} deep) was acknowledged with 202 and is in the write-ahead log; \
         after a kill -9 recovery did not bring it back:\n{}",
        restarted.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_metadata_that_ingest_accepts_survives_a_kill_9_in_the_middle_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data, process) = distributor_holding_packets(dir.path()).await;
    let (depth, id) = deepest_accepted(&process.api, "deep-middle").await;
    process.post_logs(&packets("after-deep", 1)).await.expect(202);
    drop(process); // kill -9
    let restarted = restart(&config, &data, dir.path()).await.unwrap_or_else(|e| {
        panic!(
            "packet {id} (metadata nested {depth} deep) was acknowledged with 202, then one more; \
             after a kill -9 the distributor does not start: {e}"
        )
    });
    assert_eq!(
        delivered_after_restart(&restarted).await,
        2,
        "{}",
        restarted.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_metadata_that_ingest_accepts_survives_a_graceful_restart_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (config, data, mut process) = distributor_holding_packets(dir.path()).await;
    let (depth, id) = deepest_accepted(&process.api, "deep-checkpoint").await;
    // SIGTERM: the drain times out (nobody in rotation) and the packet goes
    // into the checkpoint.
    process.stop_cleanly(DEADLINE).await;
    let restarted = restart(&config, &data, dir.path()).await.unwrap_or_else(|e| {
        panic!(
            "packet {id} (metadata nested {depth} deep) was acknowledged and checkpointed in flight at \
             SIGTERM; the distributor does not start again: {e}"
        )
    });
    assert_eq!(
        delivered_after_restart(&restarted).await,
        1,
        "{}",
        restarted.stderr()
    );
}
