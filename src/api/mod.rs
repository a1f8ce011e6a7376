//! The HTTP API: the axum [`app`], its shared [`AppState`], and the
//! handlers grouped by job (ingest, OTLP ingest, query, admin, ops).

mod admin;
pub(crate) mod auth;
mod body;
mod budget;
mod error;
mod gzip;
mod handoff;
mod ingest;
mod openapi;
mod ops;
mod otlp;
mod query;
mod records;
mod ui;

pub(crate) use budget::BodyBudget;
pub(crate) use error::ApiError;

use crate::dispatch::Dispatcher;
use crate::k8s::KubeState;
use crate::model::records::RecordRules;
use crate::model::Limits;
use crate::traffic::Traffic;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Seconds a client is asked to wait while start-up recovery runs.
const RETRY_AFTER_RECOVERY: u32 = 5;

/// What every handler shares; a clone (one per request and layer) is one
/// reference count.
#[derive(Clone)]
pub(crate) struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub(crate) struct Shared {
    pub dispatcher: Arc<Dispatcher>,
    pub limits: Limits,
    /// How `POST /api/v1/records` maps records (the `records` section).
    pub records: RecordRules,
    pub started: Instant,
    /// False until start-up recovery has finished.
    pub ready: Arc<AtomicBool>,
    pub traffic: Arc<Traffic>,
    /// The Kubernetes side, when analyzers come from Analyzer resources.
    pub kube: Option<Arc<KubeState>>,
    /// Bearer tokens ([`auth`]).
    pub auth: Arc<auth::Auth>,
    /// The memory request bodies may hold at once, all connections together.
    pub body_budget: BodyBudget,
    /// The packets peers handed over lately (`POST /internal/v1/handoff`).
    pub handoffs: Arc<crate::handoff::receive::Ledger>,
}

impl Shared {
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The 503 of every route that changes state while start-up recovery
    /// has not finished.
    pub(crate) fn require_ready(&self) -> Result<(), ApiError> {
        if self.is_ready() {
            Ok(())
        } else {
            Err(ApiError::unavailable(
                "the distributor is recovering its write-ahead log; retry shortly",
                RETRY_AFTER_RECOVERY,
            ))
        }
    }
}

/// The whole API. The server bounds each request's time
/// ([`request_timed_out`]).
pub(crate) fn app(state: AppState) -> Router {
    // Compressed bodies are bounded again after decompression (ingest).
    let body_limit = state.limits.max_body_bytes;
    // Ingest reads its body itself, within the body budget; the admin
    // POSTs take theirs through extractors, read first by this layer.
    let admin_posts = Router::new()
        .route("/api/v1/analyzers/{id}/health", post(admin::set_health))
        .route("/api/v1/dead-letter/replay", post(admin::replay))
        .route("/internal/v1/handoff", post(handoff::take))
        .route_layer(middleware::from_fn_with_state(state.clone(), body::within_budget));
    let routes = Router::new()
        .merge(admin_posts)
        .route("/api/v1/logs", post(ingest::submit))
        .route("/api/v1/records", post(records::submit))
        .route("/v1/logs", post(otlp::export))
        .route("/api/v1/health", get(query::health))
        .route("/api/v1/stats", get(query::stats))
        .route("/api/v1/analyzers", get(query::analyzers))
        .route("/api/v1/traffic", get(query::traffic))
        .route("/api/v1/dead-letter", get(query::dead_letter))
        .route("/api/v1/openapi.json", get(openapi::document))
        .route("/metrics", get(ops::metrics))
        .route("/healthz", get(ops::alive))
        .route("/readyz", get(ops::ready))
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit));
    // Without any token to check, every request would pass: no layer then
    // (each costs a boxed call per request).
    let routes = if state.auth.is_open() {
        routes
    } else {
        routes.layer(middleware::from_fn_with_state(state.clone(), auth::require_token))
    };
    routes.with_state(state)
}

/// The 408 for a request (reading its body included) that outlasted
/// `server.request_timeout`; the connection closes after it.
pub(crate) fn request_timed_out(limit: std::time::Duration) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut response = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!(
            "the request took longer than server.request_timeout ({})",
            humantime::format_duration(limit)
        ),
    )
    .into_response();
    response.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// A duration the way the original service printed it (Go's style):
/// `5m23s`, or `5m23.891s` with milliseconds.
pub(crate) fn format_uptime(elapsed: std::time::Duration, with_millis: bool) -> String {
    let total = elapsed.as_secs();
    let (hours, minutes, seconds) = (total / 3600, total / 60 % 60, total % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if with_millis {
        text.push_str(&format!("{seconds}.{:03}s", elapsed.subsec_millis()));
    } else {
        text.push_str(&format!("{seconds}s"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::format_uptime;
    use std::time::Duration;

    #[test]
    fn uptime_reads_like_the_original() {
        assert_eq!(format_uptime(Duration::from_millis(323_891), false), "5m23s");
        assert_eq!(format_uptime(Duration::from_millis(323_891), true), "5m23.891s");
        assert_eq!(format_uptime(Duration::from_secs(3723), false), "1h2m3s");
        assert_eq!(format_uptime(Duration::from_millis(4_005), true), "4.005s");
    }
}
