//! Endpoints for the platform: Prometheus metrics, liveness, readiness.

use super::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::atomic::Ordering;

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let dispatcher = &state.dispatcher;
    let pipeline = dispatcher.pipeline();
    let metrics = dispatcher.metrics();
    for (stage, depth) in [
        ("queued", pipeline.queued),
        ("delivering", pipeline.delivering),
        ("retry_wait", pipeline.retry_wait),
        ("no_analyzer", pipeline.no_analyzer),
    ] {
        metrics.queue_depth.with_label_values(&[stage]).set(depth as i64);
    }
    metrics.in_flight.set(pipeline.in_flight as i64);
    let wal_bytes = dispatcher.wal_bytes();
    metrics
        .wal_bytes
        .set(i64::try_from(wal_bytes).unwrap_or(i64::MAX));
    if let Some(kube) = &state.kube {
        metrics
            .kubernetes_connected
            .set(i64::from(kube.connected.load(Ordering::Acquire)));
        metrics
            .kubernetes_leader
            .set(i64::from(kube.leader.load(Ordering::Acquire)));
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics.render(),
    )
        .into_response()
}

/// The process is alive (it answers).
pub(super) async fn alive() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Recovered and accepting packets.
pub(super) async fn ready(State(state): State<AppState>) -> Response {
    let recovered = state.is_ready();
    let accepting = state.dispatcher.is_accepting();
    // Until the first list of Analyzers, there is nothing to route to; an
    // API server lost later does not stop routing (it is reported).
    let synced = state
        .kube
        .as_ref()
        .is_none_or(|k| k.synced.load(Ordering::Acquire));
    let ok = recovered && accepting && synced;
    // A failing disk is reported, not a reason to stop probing ready: the
    // replica recovers by itself when space returns.
    let storage = match state.dispatcher.storage_error() {
        Some(error) => format!("unavailable: {error}"),
        None => "ok".into(),
    };
    let mut body = json!({
        "status": if ok { "ready" } else { "not ready" },
        "recovered": recovered,
        "accepting": accepting,
        "storage": storage,
    });
    if let Some(kube) = &state.kube {
        body["kubernetes"] = json!({
            "synced": synced,
            "connected": kube.connected.load(Ordering::Acquire),
            "leader": kube.leader.load(Ordering::Acquire),
        });
    }
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}
