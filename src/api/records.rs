//! `POST /api/v1/records`: log shippers' JSON records (Vector, Fluent Bit,
//! Logstash, syslog-style objects), mapped to messages by the `records`
//! rules (`model::records`), packed in order, and admitted as
//! `/api/v1/logs` admits packets: the answer goes out once they are in the
//! write-ahead log.
//!
//! A record that cannot be mapped is never dropped: it goes to the dead
//! letter with its reason (`records.invalid: dead_letter`, the default), or
//! the whole request is refused naming it (`refuse`). Every shipper treats
//! the answers right: 200 when everything is kept (dead letters included),
//! 503 with `Retry-After` while full, recovering or shutting down (retried
//! by all of them), 413 for a request the queue could never hold, 400 only
//! when nothing in the body is usable.

use super::ingest::{self, media_type, refused, NDJSON_TYPES, RETRY_AFTER_SHUTDOWN};
use super::{ApiError, AppState};
use crate::dispatch::Admitted;
use crate::model::records::{pack, pieces, Framing, InvalidRecord, InvalidRecords, Packed, RecordsError};
use crate::model::LogPacket;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Serialize;

/// Bodies larger than this are mapped on a blocking thread, so that the
/// request threads stay free meanwhile.
const MAP_INLINE_BYTES: usize = 64 * 1024;
/// Invalid records listed by name in an answer; the count says how many.
const LISTED_INVALID: usize = 100;

#[derive(Serialize)]
struct Report {
    total_records: usize,
    accepted_records: usize,
    invalid_records: usize,
    /// Invalid records written to the dead letter (all of them).
    dead_lettered: usize,
    /// The ids of the packets the accepted records went into, in order.
    packets: Admitted,
    /// The first invalid records, with their reasons.
    errors: Vec<RecordVerdict>,
}

#[derive(Serialize)]
struct Refusal {
    error: String,
    total_records: usize,
    invalid_records: usize,
    errors: Vec<RecordVerdict>,
}

#[derive(Serialize)]
struct RecordVerdict {
    index: usize,
    error: String,
}

fn listed(invalid: &[InvalidRecord]) -> Vec<RecordVerdict> {
    invalid
        .iter()
        .take(LISTED_INVALID)
        .map(|record| RecordVerdict {
            index: record.index,
            error: record.reason.clone(),
        })
        .collect()
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

fn framing(headers: &HeaderMap) -> Result<Framing, ApiError> {
    match media_type(headers).as_deref() {
        None | Some("application/json") => Ok(Framing::Json),
        Some(ndjson) if NDJSON_TYPES.contains(&ndjson) => Ok(Framing::Lines),
        Some(other) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {other:?} is not supported: send application/json (an array of records, \
                 records one after another, or one record) or application/x-ndjson (one record per line)"
            ),
        )),
    }
}

async fn accept(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let (framing, body) = ingest::read_body(state, headers, body, framing).await?;
    let rules = &state.records;
    // No room for this request (after `queue.full_wait`): refused before
    // its records are mapped, so that overload costs a scan of the body,
    // not the mapping.
    let records = pieces(&body, framing).count();
    let packets_at_least = records.div_ceil(rules.messages_per_packet(&state.limits));
    let deadline = state
        .dispatcher
        .wait_for_room(packets_at_least, body.len())
        .await
        .map_err(|e| refused(state, e, packets_at_least))?;

    let bounds = state.dispatcher.queue_bounds();
    let now = Utc::now();
    let packed = if body.len() > MAP_INLINE_BYTES {
        let shared = state.clone();
        tokio::task::spawn_blocking(move || {
            pack(&body, framing, &shared.records, &shared.limits, bounds, now)
        })
        .await
        .map_err(|e| ApiError::internal(format!("mapping the records failed: {e}")))?
    } else {
        let packed = pack(&body, framing, rules, &state.limits, bounds, now);
        drop(body);
        packed
    };
    let Packed {
        total,
        accepted,
        packets,
        invalid,
    } = packed.map_err(|e| match e {
        RecordsError::LargerThanQueue(too_large) => refused(state, too_large.into(), packets_at_least),
        unusable => unusable_body(state, unusable),
    })?;

    let metrics = state.dispatcher.metrics();
    if let (Some(first), InvalidRecords::Refuse) = (invalid.first(), rules.invalid) {
        metrics
            .records_invalid
            .with_label_values(&["refused"])
            .inc_by(invalid.len() as u64);
        let refusal = Refusal {
            error: format!(
                "record {}: {}; nothing from this request was kept (records.invalid: refuse)",
                first.index, first.reason
            ),
            total_records: total,
            invalid_records: invalid.len(),
            errors: listed(&invalid),
        };
        return Ok((StatusCode::BAD_REQUEST, Json(refusal)).into_response());
    }
    let count = packets.len();
    let admitted = if packets.is_empty() {
        Admitted::default()
    } else {
        state
            .dispatcher
            .admit_until(packets, deadline)
            .await
            .map_err(|e| refused(state, e, count))?
    };
    if !invalid.is_empty() {
        keep_in_dead_letter(state, &invalid, !admitted.is_empty()).await?;
    }
    let report = Report {
        total_records: total,
        accepted_records: accepted,
        invalid_records: invalid.len(),
        dead_lettered: invalid.len(),
        packets: admitted,
        errors: listed(&invalid),
    };
    Ok((StatusCode::OK, Json(report)).into_response())
}

/// 400 for a body with nothing usable.
fn unusable_body(state: &AppState, e: RecordsError) -> ApiError {
    state
        .dispatcher
        .metrics()
        .packets_rejected
        .with_label_values(&["invalid"])
        .inc();
    ApiError::bad_request(e.to_string())
}

/// Writes the invalid records to the dead letter, durably. When that fails
/// the answer says so: a 503 that nothing was kept when no record was
/// accepted, otherwise a 500 saying the accepted ones are on their way.
async fn keep_in_dead_letter(
    state: &AppState,
    invalid: &[InvalidRecord],
    accepted_some: bool,
) -> Result<(), ApiError> {
    let now = Utc::now();
    let entries: Vec<(LogPacket, String)> = invalid
        .iter()
        .map(|record| {
            (
                record.dead_letter_packet(&state.records, now),
                record.final_error(),
            )
        })
        .collect();
    let file = state.dispatcher.dead_letter().clone();
    let written = tokio::task::spawn_blocking(move || file.append(entries))
        .await
        .map_err(std::io::Error::other)
        .and_then(|appended| appended);
    let metrics = state.dispatcher.metrics();
    match written {
        Ok(_) => {
            metrics.packets_dead_lettered.inc_by(invalid.len() as u64);
            metrics
                .records_invalid
                .with_label_values(&["dead_lettered"])
                .inc_by(invalid.len() as u64);
            Ok(())
        }
        Err(e) if accepted_some => Err(ApiError::internal(format!(
            "the valid records were accepted and will be delivered, but the invalid records ({}) could not \
             be written to the dead letter: {e}; sending the request again delivers the valid ones again",
            invalid.len()
        ))),
        Err(e) => Err(ApiError::unavailable(
            format!(
                "storage unavailable: cannot write the dead letter: {e}; nothing from this request was kept"
            ),
            RETRY_AFTER_SHUTDOWN,
        )),
    }
}
