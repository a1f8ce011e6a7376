//! `POST /v1/logs`: OTLP/HTTP logs, protobuf (`application/x-protobuf`) or
//! OTLP/JSON (`application/json`), optionally `Content-Encoding: gzip`.
//! The records become packets ([`crate::otlp`]) that are admitted as
//! `POST /api/v1/logs` admits its own: the 200 goes out once they are in
//! the write-ahead log, a full, recovering or stopping distributor
//! answers 503 with `Retry-After`, and a request larger than the whole
//! queue 413 (the mapping stops at the queue's bounds), counted as that
//! route counts them.
//!
//! Every answer is in the request's encoding, as the OTLP specification
//! asks: an `ExportLogsServiceResponse` (with `partial_success` when
//! records were rejected) or a `google.rpc.Status`; JSON when the request's
//! content type is neither.

use super::body;
use super::ingest::{decode, refused};
use super::{ApiError, AppState};
use crate::otlp::response::{code_of, export_body, status_body, Encoding};
use crate::otlp::{self, RequestError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;

pub(super) async fn export(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let metrics = state.dispatcher.metrics();
    let timer = metrics.ingest_duration.start_timer();
    let encoding = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(Encoding::of_content_type);
    let response = match accept(&state, &headers, body, encoding).await {
        Ok(response) => response,
        Err(error) => status_answer(error, encoding.unwrap_or(Encoding::Json)),
    };
    timer.observe_duration();
    response
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    encoding: Option<Encoding>,
) -> Result<Response, ApiError> {
    // Read whole before any answer, as POST /api/v1/logs does: an answer
    // given while the client is still sending could be lost to the
    // connection's reset.
    let body = body::read_whole(headers, body, state.limits.max_body_bytes, &state.body_budget).await;
    state.require_ready()?;
    let dispatcher = &state.dispatcher;
    if !dispatcher.is_accepting() {
        return Err(refused(state, crate::dispatch::AdmitError::ShuttingDown, 0));
    }
    let Some(encoding) = encoding else {
        let sent = headers
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            match sent {
                Some(sent) => format!(
                    "Content-Type {sent:?} is not supported: send application/x-protobuf or application/json"
                ),
                None => "no Content-Type: send application/x-protobuf or application/json".into(),
            },
        ));
    };
    let body = decode(headers, body?, state.limits.max_body_bytes, &state.body_budget).await?;
    // No room (after `queue.full_wait`): refused before the records are
    // read, as one packet (their number is not known yet).
    let deadline = dispatcher
        .wait_for_room(1, body.len())
        .await
        .map_err(|e| refused(state, e, 1))?;

    let (limits, bounds, now) = (&state.limits, dispatcher.queue_bounds(), Utc::now());
    let mapped = match encoding {
        Encoding::Protobuf => otlp::from_protobuf(&body, limits, bounds, now),
        Encoding::Json => otlp::from_json(&body, limits, bounds, now),
    }
    .map_err(|e| match e {
        RequestError::Invalid(reason) => ApiError::bad_request(reason),
        RequestError::LargerThanQueue(too_large) => refused(state, too_large.into(), 1),
    })?;
    // The body is not needed past the mapping: not kept while the packets
    // wait for the log.
    drop(body);
    let answer = export_body(
        encoding,
        mapped.rejected_records,
        mapped.rejection_message().as_deref(),
    );
    if !mapped.packets.is_empty() {
        let count = mapped.packets.len();
        dispatcher
            .admit_until(mapped.packets, deadline)
            .await
            .map_err(|e| refused(state, e, count))?;
    }
    let records = &dispatcher.metrics().otlp_log_records;
    records
        .with_label_values(&["accepted"])
        .inc_by(mapped.accepted_records as u64);
    records
        .with_label_values(&["rejected"])
        .inc_by(mapped.rejected_records as u64);
    Ok(encoded(StatusCode::OK, encoding, answer))
}

/// An error as a `google.rpc.Status` in `encoding`, with its status code
/// and `Retry-After`.
fn status_answer(error: ApiError, encoding: Encoding) -> Response {
    let body = status_body(encoding, code_of(error.status.as_u16()), &error.message);
    let mut response = encoded(error.status, encoding, body);
    if let Some(seconds) = error.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

fn encoded(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(encoding.content_type()),
        )],
        body,
    )
        .into_response()
}
