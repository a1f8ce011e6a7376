//! `POST /api/v1/logs`: parse, validate packet by packet, admit.
//!
//! Bodies are a JSON array of packets (`application/json`, also when no
//! content type is given) or NDJSON (`application/x-ndjson`, one packet per
//! line), optionally `Content-Encoding: gzip`. The answer lists every
//! accepted id and every refused packet with its reason: 202 when all were
//! accepted, 207 when some, 400 when none.

use super::body::{self, HeldBody};
use super::budget::BodyBudget;
use super::{gzip, ApiError, AppState};
use crate::dispatch::{AdmitError, Admitted};
use crate::model::{read_json_array, read_ndjson, BodyError, LargerThanQueue, PacketError, RawPacket};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Serialize;

/// Seconds a client is asked to wait when the distributor is full.
pub(super) const RETRY_AFTER_FULL: u32 = 1;
/// Seconds a client is asked to wait while the distributor shuts down.
pub(super) const RETRY_AFTER_SHUTDOWN: u32 = 5;

#[derive(Serialize)]
struct SubmitReport {
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    total_packets: usize,
    successful: usize,
    failed: usize,
    processed_packets: Admitted,
    errors: Vec<PacketVerdict>,
}

#[derive(Serialize)]
struct PacketVerdict {
    index: usize,
    id: Option<String>,
    error: String,
}

impl From<PacketError> for PacketVerdict {
    fn from(e: PacketError) -> Self {
        PacketVerdict {
            index: e.index,
            id: e.id,
            error: e.reason,
        }
    }
}

enum BodyFormat {
    JsonArray,
    Ndjson,
}

pub(super) async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let timer = state.dispatcher.metrics().ingest_duration.start_timer();
    let response = match accept(&state, &headers, body).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    timer.observe_duration();
    response
}

/// The request's body, read whole and decoded, once the distributor is
/// ready and accepting; `content` is checked in between (415).
pub(super) async fn read_body<T>(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    content: impl FnOnce(&HeaderMap) -> Result<T, ApiError>,
) -> Result<(T, HeldBody), ApiError> {
    // Read whole before any answer: one given while the client is still
    // sending could be lost to the connection's reset. (Its own error, such
    // as 413, comes after the checks below.)
    let body = body::read_whole(headers, body, state.limits.max_body_bytes, &state.body_budget).await;
    state.require_ready()?;
    if !state.dispatcher.is_accepting() {
        return Err(ApiError::unavailable(
            "the distributor is shutting down; send to another replica or retry",
            RETRY_AFTER_SHUTDOWN,
        ));
    }
    let content = content(headers)?;
    let body = decode(headers, body?, state.limits.max_body_bytes, &state.body_budget).await?;
    Ok((content, body))
}

async fn accept(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let (format, body) = read_body(state, headers, body, body_format).await?;
    let bounds = state.dispatcher.queue_bounds();
    let configured = state.limits.max_packets_per_request.unwrap_or(usize::MAX);
    let max_packets = configured.min(bounds.max_packets);
    let mut raw = match format {
        BodyFormat::JsonArray => read_json_array(&body, max_packets),
        BodyFormat::Ndjson => read_ndjson(&body, max_packets),
    }
    .map_err(|e| match e {
        BodyError::TooManyPackets { .. } if configured <= bounds.max_packets => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{e} (limits.max_packets_per_request)"),
        ),
        BodyError::TooManyPackets { max } => {
            let too_large = LargerThanQueue::Packets { max };
            refused(state, too_large.into(), max + 1)
        }
        other => ApiError::bad_request(other.to_string()),
    })?;
    // No room for this request: wait for some (`queue.full_wait`), or
    // refuse, before validating, so that overload does not burn the time
    // the deliveries need on packets that cannot be kept. (The body's
    // length stands in for the packets' encoded size.) A request that
    // waits holds its packets' text only: what was read of them is, beside
    // the body, most of its memory; they are read again once it gets room.
    if !state.dispatcher.fits_now(raw.len(), body.len()) {
        raw.iter_mut().for_each(RawPacket::forget_reading);
    }
    let deadline = state
        .dispatcher
        .wait_for_room(raw.len(), body.len())
        .await
        .map_err(|e| refused(state, e, raw.len()))?;

    let now = Utc::now();
    let total = raw.len();
    let mut packets = Vec::with_capacity(total);
    let mut errors = Vec::new();
    for (index, packet) in raw.into_iter().enumerate() {
        match state.limits.validate(index, packet, now) {
            Ok(packet) => packets.push(packet),
            Err(error) => errors.push(PacketVerdict::from(error)),
        }
    }
    let metrics = state.dispatcher.metrics();
    if !errors.is_empty() {
        metrics
            .packets_rejected
            .with_label_values(&["invalid"])
            .inc_by(errors.len() as u64);
    }
    // The body is not needed past validation: not kept while the packets
    // wait for the log (it is most of a request's memory under overload).
    drop(body);
    if packets.is_empty() {
        let report = SubmitReport {
            error: Some(format!(
                "no packet was accepted: packet {}: {}",
                errors[0].index, errors[0].error
            )),
            total_packets: total,
            successful: 0,
            failed: errors.len(),
            processed_packets: Admitted::default(),
            errors,
        };
        return Ok((StatusCode::BAD_REQUEST, Json(report)).into_response());
    }
    let count = packets.len();
    let admitted = state
        .dispatcher
        .admit_until(packets, deadline)
        .await
        .map_err(|e| refused(state, e, count))?;
    let status = if errors.is_empty() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::MULTI_STATUS
    };
    let report = SubmitReport {
        error: None,
        total_packets: total,
        successful: admitted.len(),
        failed: errors.len(),
        processed_packets: admitted,
        errors,
    };
    Ok((status, Json(report)).into_response())
}

/// The answer for packets the dispatcher did not take, counted by reason:
/// 503 with `Retry-After` while it may take them later, 413 for a request
/// larger than the whole queue.
pub(super) fn refused(state: &AppState, e: AdmitError, count: usize) -> ApiError {
    let reason = match e {
        AdmitError::Full { .. } => "overloaded",
        AdmitError::ShuttingDown => "shutting_down",
        AdmitError::Recovering => "recovering",
        AdmitError::StorageUnavailable(_) => "storage_unavailable",
        AdmitError::LargerThanQueue(_) => "too_large",
    };
    state
        .dispatcher
        .metrics()
        .packets_rejected
        .with_label_values(&[reason])
        .inc_by(count as u64);
    let wait = match e {
        AdmitError::LargerThanQueue(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{e}; nothing from this request was kept"),
            )
        }
        AdmitError::Full { .. } => RETRY_AFTER_FULL,
        AdmitError::ShuttingDown | AdmitError::Recovering | AdmitError::StorageUnavailable(_) => {
            RETRY_AFTER_SHUTDOWN
        }
    };
    ApiError::unavailable(format!("{e}; nothing from this request was kept"), wait)
}

/// The media type of `Content-Type` (lower case, without parameters), or
/// `None` when there is none.
pub(super) fn media_type(headers: &HeaderMap) -> Option<String> {
    let text = headers.get(header::CONTENT_TYPE)?.to_str().unwrap_or_default();
    Some(
        text.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase(),
    )
}

/// The media types taken as NDJSON.
pub(super) const NDJSON_TYPES: [&str; 4] = [
    "application/x-ndjson",
    "application/jsonl",
    "application/jsonlines",
    "application/x-jsonlines",
];

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let Some(essence) = media_type(headers) else {
        return Ok(BodyFormat::JsonArray);
    };
    let text = headers[header::CONTENT_TYPE].to_str().unwrap_or_default();
    match essence.as_str() {
        "application/json" => Ok(BodyFormat::JsonArray),
        ndjson if NDJSON_TYPES.contains(&ndjson) => Ok(BodyFormat::Ndjson),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {text:?} is not supported: send application/json (an array of packets) or application/x-ndjson (one packet per line)"),
        )),
    }
}

/// Undoes `Content-Encoding`, never inflating past `limit` bytes; the
/// compressed body is let go once inflated.
pub(super) async fn decode(
    headers: &HeaderMap,
    body: HeldBody,
    limit: usize,
    budget: &BodyBudget,
) -> Result<HeldBody, ApiError> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or_default().trim().to_ascii_lowercase());
    match encoding.as_deref() {
        None | Some("") | Some("identity") => Ok(body),
        Some("gzip") | Some("x-gzip") => gzip::inflate(&body, limit, budget).await,
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {other:?} is not supported: send gzip or no encoding"),
        )),
    }
}
