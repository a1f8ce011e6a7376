//! `POST /internal/v1/handoff`: packets a peer replica (or the adopt
//! command) hands over, taken in durably before the answer, each once
//! (see `crate::handoff::receive`). Guarded like ingestion.

use super::{ingest, ApiError, AppState};
use crate::handoff::wire::{HandoffAnswer, HandoffRequest};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::Json;

pub(super) async fn take(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<HandoffAnswer>, ApiError> {
    state.require_ready()?;
    let body = body?;
    let request: HandoffRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "body must be {{\"origin\": \"<replica>\", \"packets\": [{{\"seq\": n, \"id\": ..., \"messages\": [...], \"retry_count\": n}}]}}: {e}"
        ))
    })?;
    if request.origin.trim().is_empty() {
        return Err(ApiError::bad_request(
            "`origin` must name the replica the packets come from",
        ));
    }
    let count = request.packets.len();
    if count == 0 {
        return Ok(Json(HandoffAnswer {
            adopted: 0,
            duplicates: 0,
        }));
    }
    state
        .handoffs
        .adopt(&state.dispatcher, request)
        .await
        .map(Json)
        .map_err(|e| ingest::refused(&state, e, count))
}
