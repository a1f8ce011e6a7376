//! The reference analyzer: a real HTTP server that speaks the analyzer
//! contract, for demos, tests and benchmarks. The service's binary runs it
//! as `logs-distributor analyzer`; tests host [`app`] in-process.
//!
//! Routes:
//! - `POST /`: a JSON array of packets; answers 200 (or 503 with
//!   `failure_rate`, for the first `--fail-first` deliveries, or while its
//!   health is switched off; or always `--respond-status`). With `--record`,
//!   each received packet id is appended to the file as a JSON line and
//!   fsynced before the answer, so a test can audit what arrived; with
//!   `--record-messages` too, the line holds the packet's messages as well.
//! - `GET /health`: 200 when healthy, 503 when switched off.
//! - `POST /admin/health` `{"healthy": bool}`: switch its own health.
//! - `GET /stats`: requests, packets and messages received, duplicates seen.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::{Args, FromArgMatches};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;
use std::borrow::Cow;
use std::collections::HashSet;
use std::future::Future;
use std::hash::BuildHasher;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct AnalyzerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: String,
    /// Name shown in /stats and logs.
    #[arg(long, default_value = "analyzer")]
    pub name: String,
    /// Time taken per request before answering, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Chance (0 to 1) that a delivery is answered 503.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Append each received packet id to FILE as a JSON line, fsynced.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// With --record: each line holds the packet's messages too
    /// (`{"id": ..., "messages": [...]}`).
    #[arg(long, requires = "record")]
    pub record_messages: bool,
    /// Answer the first N deliveries 503 (then behave normally).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub fail_first: u64,
    /// Answer every delivery with this status instead of taking it (e.g. 400).
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(100..600))]
    pub respond_status: Option<u16>,
}

impl AnalyzerArgs {
    /// The command line's defaults, named `name` (for tests that host the
    /// analyzer in-process).
    pub fn named(name: &str) -> AnalyzerArgs {
        let command = AnalyzerArgs::augment_args(clap::Command::new("analyzer"));
        let matches = command.get_matches_from(["analyzer", "--name", name]);
        AnalyzerArgs::from_arg_matches(&matches).expect("the defaults are valid arguments")
    }
}

/// What the analyzer knows about itself.
struct Analyzer {
    args: AnalyzerArgs,
    healthy: AtomicBool,
    packets: AtomicU64,
    messages: AtomicU64,
    duplicates: AtomicU64,
    /// Deliveries answered so far, for `--fail-first`.
    deliveries: AtomicU64,
    /// Deliveries taken (requests answered 200).
    requests: AtomicU64,
    /// Ids seen and the record file; one lock keeps them in step.
    seen: Mutex<Seen>,
}

struct Seen {
    ids: IdDigests,
    record: Option<std::fs::File>,
}

/// The ids seen, each kept as a 128-bit digest (two 64-bit hashes under
/// different seeds): sixteen bytes an id however long it is, and a false
/// duplicate needs both hashes of two ids to collide.
struct IdDigests {
    first: foldhash::quality::FixedState,
    second: foldhash::quality::FixedState,
    seen: HashSet<u128, foldhash::fast::RandomState>,
}

impl IdDigests {
    fn new() -> IdDigests {
        IdDigests {
            first: foldhash::quality::FixedState::with_seed(0x9e37_79b9_7f4a_7c15),
            second: foldhash::quality::FixedState::with_seed(0xc2b2_ae3d_27d4_eb4f),
            seen: HashSet::default(),
        }
    }

    fn digest(&self, id: &str) -> u128 {
        (u128::from(self.first.hash_one(id)) << 64) | u128::from(self.second.hash_one(id))
    }

    /// Remembers `id`; false when it was seen before.
    fn insert(&mut self, id: &str) -> bool {
        let digest = self.digest(id);
        self.seen.insert(digest)
    }
}

/// Only the parts of a packet the analyzer looks at.
#[derive(Deserialize)]
struct PacketView<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    messages: Vec<serde::de::IgnoredAny>,
}

/// A packet as `--record-messages` records it.
#[derive(Deserialize, serde::Serialize)]
struct RecordedPacket {
    id: String,
    messages: Box<serde_json::value::RawValue>,
}

/// Builds the analyzer's router (for tests that host it in-process).
pub fn app(args: AnalyzerArgs) -> std::io::Result<Router> {
    let record = match &args.record {
        Some(path) => Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        None => None,
    };
    let state = Arc::new(Analyzer::new(args, record));
    Ok(Router::new()
        .route("/", post(receive))
        .route("/health", get(health))
        .route("/admin/health", post(set_health))
        .route("/stats", get(stats))
        .with_state(state))
}

/// Runs the analyzer until `shutdown` resolves (the binary passes its
/// SIGINT/SIGTERM signal), then finishes the requests in progress.
pub async fn run(
    args: AnalyzerArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, name = %args.name, "reference analyzer listening");
    axum::serve(listener, app(args)?)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

async fn receive(State(me): State<Arc<Analyzer>>, body: Bytes) -> Response {
    if me.args.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(me.args.latency_ms)).await;
    }
    if !me.healthy.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "analyzer is switched off"})),
        )
            .into_response();
    }
    if let Some(code) = me.args.respond_status {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
        return (
            status,
            Json(json!({"error": format!("configured to answer {code}")})),
        )
            .into_response();
    }
    if me.deliveries.fetch_add(1, Ordering::Relaxed) < me.args.fail_first {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "failing the first deliveries"})),
        )
            .into_response();
    }
    if me.args.failure_rate > 0.0 && rand::rng().random_bool(me.args.failure_rate.min(1.0)) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "simulated failure"})),
        )
            .into_response();
    }
    let packets: Vec<PacketView> = match serde_json::from_slice(&body) {
        Ok(packets) => packets,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": format!("not a packet array: {e}")})),
            )
                .into_response()
        }
    };
    let recorded = if me.args.record_messages {
        match serde_json::from_slice::<Vec<RecordedPacket>>(&body) {
            Ok(recorded) => Some(recorded),
            Err(e) => {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"error": format!("not a packet array: {e}")})),
                )
                    .into_response()
            }
        }
    } else {
        None
    };
    let messages: usize = packets.iter().map(|p| p.messages.len()).sum();
    let count = packets.len();
    let remembered = match record_lines(&me, &packets, recorded.as_deref()) {
        // Recording fsyncs: off the async workers, so /health stays quick.
        Ok(Some(lines)) => {
            let ids: Vec<String> = packets.iter().map(|p| p.id.to_string()).collect();
            let recorder = me.clone();
            tokio::task::spawn_blocking(move || recorder.remember(ids.iter().map(String::as_str), &lines))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        }
        // Without a record it is a few set inserts, not worth a thread hop.
        Ok(None) => me.remember(packets.iter().map(|p| p.id.as_ref()), &[]),
        Err(e) => Err(e),
    };
    if let Err(e) = remembered {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": format!("cannot record: {e}")})),
        )
            .into_response();
    }
    me.requests.fetch_add(1, Ordering::Relaxed);
    me.packets.fetch_add(count as u64, Ordering::Relaxed);
    me.messages.fetch_add(messages as u64, Ordering::Relaxed);
    (StatusCode::OK, Json(json!({"accepted": count}))).into_response()
}

/// The lines `--record` appends for `packets` (with their messages when
/// `recorded` holds them); none without `--record`.
fn record_lines(
    me: &Analyzer,
    packets: &[PacketView<'_>],
    recorded: Option<&[RecordedPacket]>,
) -> std::io::Result<Option<Vec<u8>>> {
    if me.args.record.is_none() {
        return Ok(None);
    }
    let mut lines = Vec::new();
    for (i, packet) in packets.iter().enumerate() {
        match recorded.and_then(|all| all.get(i)) {
            Some(whole) => serde_json::to_writer(&mut lines, whole)?,
            None => serde_json::to_writer(&mut lines, &json!({"id": packet.id}))?,
        }
        lines.push(b'\n');
    }
    Ok(Some(lines))
}

impl Analyzer {
    /// Nothing seen yet; ids recorded to `record` when there is one.
    fn new(args: AnalyzerArgs, record: Option<std::fs::File>) -> Analyzer {
        Analyzer {
            args,
            healthy: AtomicBool::new(true),
            packets: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            deliveries: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            seen: Mutex::new(Seen {
                ids: IdDigests::new(),
                record,
            }),
        }
    }

    /// Counts the ids seen and appends `lines` to the record (fsynced).
    fn remember<'a>(&self, ids: impl Iterator<Item = &'a str>, lines: &[u8]) -> std::io::Result<()> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            if !seen.ids.insert(id) {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(file) = seen.record.as_mut() {
            file.write_all(lines)?;
            file.sync_data()?;
        }
        Ok(())
    }
}

async fn health(State(me): State<Arc<Analyzer>>) -> Response {
    if me.healthy.load(Ordering::Relaxed) {
        (
            StatusCode::OK,
            Json(json!({"status": "healthy", "name": me.args.name})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unhealthy", "name": me.args.name})),
        )
            .into_response()
    }
}

#[derive(Deserialize)]
struct HealthSwitch {
    healthy: bool,
}

async fn set_health(State(me): State<Arc<Analyzer>>, body: Bytes) -> Response {
    match serde_json::from_slice::<HealthSwitch>(&body) {
        Ok(switch) => {
            me.healthy.store(switch.healthy, Ordering::Relaxed);
            Json(json!({"healthy": switch.healthy})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("body must be {{\"healthy\": bool}}: {e}")})),
        )
            .into_response(),
    }
}

async fn stats(State(me): State<Arc<Analyzer>>) -> Json<serde_json::Value> {
    Json(json!({
        "name": me.args.name,
        "healthy": me.healthy.load(Ordering::Relaxed),
        "requests_received": me.requests.load(Ordering::Relaxed),
        "packets_received": me.packets.load(Ordering::Relaxed),
        "messages_received": me.messages.load(Ordering::Relaxed),
        "duplicates": me.duplicates.load(Ordering::Relaxed),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyzer() -> Arc<Analyzer> {
        Arc::new(Analyzer::new(AnalyzerArgs::named("test"), None))
    }

    fn body(ids: &[&str]) -> Bytes {
        let packets: Vec<_> = ids
            .iter()
            .map(|id| json!({"id": id, "source": "s", "messages": [{"level": "INFO", "message": "m"}, {"message": "n"}]}))
            .collect();
        Bytes::from(serde_json::to_vec(&packets).unwrap())
    }

    #[tokio::test]
    async fn an_id_seen_again_counts_as_a_duplicate_and_any_other_does_not() {
        let me = analyzer();
        let first = receive(State(me.clone()), body(&["a-1", "a-2", "a-10", "b-1"])).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(me.duplicates.load(Ordering::Relaxed), 0);
        // An escaped id is the same id as its plain spelling.
        let escaped = r#"[{"id": "a-2", "messages": [{}, {}]}, {"id": "a-3", "messages": [{}, {}]},
            {"id": "b\u002d1", "messages": [{}, {}]}, {"id": "a-1\u0000", "messages": [{}, {}]}]"#;
        let again = receive(State(me.clone()), Bytes::from_static(escaped.as_bytes())).await;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(me.duplicates.load(Ordering::Relaxed), 2);
        assert_eq!(me.packets.load(Ordering::Relaxed), 8);
        assert_eq!(me.messages.load(Ordering::Relaxed), 16);
    }

    #[test]
    fn ids_differing_anywhere_have_different_digests() {
        let digests = IdDigests::new();
        let ids: Vec<String> = (0..100_000).map(|n| format!("lg-0123abcd-{n}")).collect();
        let distinct: HashSet<u128> = ids.iter().map(|id| digests.digest(id)).collect();
        assert_eq!(distinct.len(), ids.len());
        assert_eq!(digests.digest("same id"), digests.digest("same id"));
    }
}
