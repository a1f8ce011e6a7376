//! Operator actions: force an analyzer in or out of rotation, replay dead
//! letters.

use super::query::AnalyzerInfo;
use super::{ApiError, AppState};
use crate::dispatch::AdmitError;
use crate::health::HealthMode;
use crate::model::EncodedPacket;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// `{"healthy": false}` forces the analyzer out, `{"healthy": true}` in,
/// `{"mode": "auto"}` hands control back to the probes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HealthOverride {
    healthy: Option<bool>,
    mode: Option<HealthMode>,
}

#[derive(Serialize)]
pub struct HealthChanged {
    message: String,
    analyzer: AnalyzerInfo,
}

pub async fn set_health(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HealthChanged>, ApiError> {
    let Path(id) = id?;
    let body = body?;
    let analyzer = state.dispatcher.fleet().get(&id).ok_or_else(|| {
        ApiError::not_found(format!("no analyzer with id {id:?}; see GET /api/v1/analyzers"))
    })?;
    let request: HealthOverride = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be {{\"healthy\": true|false}} or {{\"mode\": \"auto\"|\"force_healthy\"|\"force_unhealthy\"}}: {e}"
        ))
    })?;
    let mode = match (request.healthy, request.mode) {
        (Some(true), None) => HealthMode::ForceHealthy,
        (Some(false), None) => HealthMode::ForceUnhealthy,
        (None, Some(mode)) => mode,
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give either `healthy` or `mode`, not both")),
        (None, None) => {
            return Err(ApiError::bad_request(
                "give `healthy` (true or false) or `mode` (auto, force_healthy, force_unhealthy)",
            ))
        }
    };
    if analyzer.health.set_mode(mode) {
        state.dispatcher.rotation_changed();
    }
    tracing::info!(analyzer = %id, ?mode, "health mode set by operator");
    let message = match mode {
        HealthMode::Auto => format!("{id} health is decided by probes again"),
        HealthMode::ForceHealthy => format!("{id} forced into rotation until mode auto"),
        HealthMode::ForceUnhealthy => format!("{id} forced out of rotation until mode auto"),
    };
    Ok(Json(HealthChanged {
        message,
        analyzer: AnalyzerInfo::of(&analyzer),
    }))
}

/// `{"ids": [...]}` replays those packets, `{}` (or no body) replays all.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    ids: Option<Vec<String>>,
}

#[derive(Serialize)]
pub struct ReplayReport {
    message: String,
    replayed: usize,
    replayed_ids: Vec<String>,
    not_found: Vec<String>,
}

pub async fn replay(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ReplayReport>), ApiError> {
    let body = body?;
    let request: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("body must be {{\"ids\": [\"...\"]}} or {{}}: {e}")))?
    };
    let file = state.dispatcher.dead_letter().clone();
    let entries = tokio::task::spawn_blocking(move || file.read_all())
        .await
        .map_err(|e| ApiError::internal(format!("dead-letter reader failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot read the dead letter: {e}")))?;
    let wanted: Option<HashSet<String>> = request.ids.map(|ids| ids.into_iter().collect());
    let chosen: Vec<_> = entries
        .into_iter()
        .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.packet.id)))
        .collect();
    let found: HashSet<&str> = chosen.iter().map(|e| e.packet.id.as_str()).collect();
    let mut not_found: Vec<String> = wanted
        .iter()
        .flatten()
        .filter(|id| !found.contains(id.as_str()))
        .cloned()
        .collect();
    not_found.sort();
    let replayed: HashSet<(String, DateTime<Utc>)> = chosen
        .iter()
        .map(|e| (e.packet.id.clone(), e.failed_at))
        .collect();
    let packets = chosen
        .into_iter()
        .map(|e| EncodedPacket::new(&e.packet))
        .collect::<Vec<_>>();
    let count = packets.len();
    let ids = if packets.is_empty() {
        Vec::new()
    } else {
        state.dispatcher.admit(packets).await.map_err(|e| match e {
            AdmitError::Full { capacity } => ApiError::unavailable(
                format!("cannot take {count} packets back now (at most {capacity}); replay fewer ids or retry shortly"),
                1,
            ),
            AdmitError::ShuttingDown => ApiError::unavailable("the distributor is shutting down", 5),
            AdmitError::StorageUnavailable(why) => ApiError::unavailable(format!("storage unavailable: {why}"), 5),
        })?
    };
    // Accepted again: only now leave the file (a crash in between means a
    // duplicate delivery, never a loss).
    let file = state.dispatcher.dead_letter().clone();
    tokio::task::spawn_blocking(move || {
        file.remove_where(|e| replayed.contains(&(e.packet.id.clone(), e.failed_at)))
    })
    .await
    .map_err(|e| ApiError::internal(format!("dead-letter writer failed: {e}")))?
    .map_err(|e| {
        ApiError::internal(format!(
            "replayed, but cannot remove them from the dead letter: {e}"
        ))
    })?;
    let status = if count == 0 && !not_found.is_empty() {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(ReplayReport {
            message: format!("{count} packets taken back for delivery"),
            replayed: count,
            replayed_ids: ids,
            not_found,
        }),
    ))
}
