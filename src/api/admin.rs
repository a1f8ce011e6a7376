//! Operator actions: force an analyzer in or out of rotation, replay dead
//! letters.

use super::query::AnalyzerInfo;
use super::{ApiError, AppState};
use crate::dispatch::health::HealthMode;
use crate::dispatch::{AdmitError, ReplayError};
use crate::k8s::KubeState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kube::ResourceExt;
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
pub(super) struct HealthChanged {
    message: String,
    analyzer: AnalyzerInfo,
}

pub(super) async fn set_health(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HealthChanged>, ApiError> {
    state.require_ready()?;
    let Path(id) = id?;
    let body = body?;
    let analyzer = state.dispatcher.fleet().get(&id).ok_or_else(|| {
        ApiError::not_found(format!("no analyzer with id {id:?}; see GET /api/v1/analyzers"))
    })?;
    if let Some(kube) = &state.kube {
        return Err(declared_by_resource(kube, &id));
    }
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

/// The 409 of a health override in Kubernetes mode: the Analyzer's
/// `spec.health` decides, on every replica, and an override here would
/// hold on one replica until the next event of the watch.
fn declared_by_resource(kube: &KubeState, id: &str) -> ApiError {
    let (name, namespace) = match kube.resource(id) {
        Some(resource) => (resource.name_any(), resource.namespace()),
        None => (id.to_string(), None),
    };
    let namespace = namespace.map(|ns| format!(" -n {ns}")).unwrap_or_default();
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "analyzer {id:?} is declared by an Analyzer resource: its spec.health (Auto, ForceHealthy, \
             ForceUnhealthy) decides on every replica; for example \
             kubectl patch analyzer {name}{namespace} --type merge -p '{{\"spec\":{{\"health\":\"ForceUnhealthy\"}}}}'"
        ),
    )
}

/// `{"ids": [...]}` replays those packets, `{}` (or no body) replays all.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    ids: Option<Vec<String>>,
}

#[derive(Serialize)]
pub(super) struct ReplayReport {
    message: String,
    replayed: usize,
    replayed_ids: Vec<String>,
    not_found: Vec<String>,
}

pub(super) async fn replay(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ReplayReport>), ApiError> {
    state.require_ready()?;
    let body = body?;
    let request: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("body must be {{\"ids\": [\"...\"]}} or {{}}: {e}")))?
    };
    let wanted: Option<HashSet<String>> = request.ids.map(|ids| ids.into_iter().collect());
    let replayed = state
        .dispatcher
        .replay(wanted.clone())
        .await
        .map_err(|e| match e {
            ReplayError::Refused(AdmitError::Full { .. }) | ReplayError::NoRoom { .. } => {
                ApiError::unavailable(e.to_string(), 1)
            }
            ReplayError::Refused(_) => ApiError::unavailable(e.to_string(), 5),
            ReplayError::Read(_) | ReplayError::Remove(_) => ApiError::internal(e.to_string()),
        })?;
    let found: HashSet<&str> = replayed.ids.iter().map(String::as_str).collect();
    let mut not_found: Vec<String> = wanted
        .iter()
        .flatten()
        .filter(|id| !found.contains(id.as_str()))
        .cloned()
        .collect();
    not_found.sort();
    let count = replayed.ids.len();
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
            replayed_ids: replayed.ids,
            not_found,
        }),
    ))
}
