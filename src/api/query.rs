//! Read-only endpoints: health, stats, analyzers, dead letter. Field names
//! are the original service's, with more fields after them.

use super::{format_uptime, ApiError, AppState};
use crate::dispatch::fleet::Analyzer;
use crate::dispatch::health::{HealthMode, HealthReason};
use crate::storage::dead_letter::Window;
use crate::traffic::{RatePoint, SHARE_WINDOW};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Entries a dead-letter page holds unless `limit` says otherwise.
const DEFAULT_PAGE: usize = 100;
/// The largest page one request may ask for.
const MAX_PAGE: usize = 10_000;
/// The most bytes of entries one page holds.
const MAX_PAGE_BYTES: usize = 4 << 20;

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Serialize)]
struct HealthReport {
    status: &'static str,
    uptime: String,
    active_analyzers: usize,
    total_analyzers: usize,
    timestamp: String,
}

pub(super) async fn health(State(state): State<AppState>) -> Response {
    let analyzers = state.dispatcher.fleet().all();
    let active = analyzers.iter().filter(|a| a.in_rotation()).count();
    // An analyzer weighted 0 is out of rotation by choice, not a fault.
    let expected = analyzers.iter().filter(|a| a.weight() > 0).count();
    let (status, code) = match active {
        0 => ("unhealthy", StatusCode::SERVICE_UNAVAILABLE),
        n if n >= expected => ("healthy", StatusCode::OK),
        _ => ("degraded", StatusCode::OK),
    };
    let report = HealthReport {
        status,
        uptime: format_uptime(state.started.elapsed(), false),
        active_analyzers: active,
        total_analyzers: analyzers.len(),
        timestamp: now(),
    };
    (code, Json(report)).into_response()
}

#[derive(Serialize)]
struct Stats {
    total_packets_received: u64,
    total_messages_routed: u64,
    active_analyzers: usize,
    packet_channel_util_percent: f64,
    result_channel_util_percent: f64,
    retry_channel_util_percent: f64,
    uptime: String,
    timestamp: String,
    analyzers: BTreeMap<String, AnalyzerStats>,
    total_messages_received: u64,
    total_packets_routed: u64,
    total_retries: u64,
    total_dead_lettered: u64,
    in_flight: usize,
    queue_capacity: usize,
    waiting_for_analyzer: usize,
}

#[derive(Serialize)]
struct AnalyzerStats {
    name: String,
    is_healthy: bool,
    processed_count: u64,
    error_count: u64,
    weight: u32,
    share_percent: f64,
    /// Share of the packets routed over the last minute.
    recent_share_percent: f64,
    routed_count: u64,
    queued: usize,
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

pub(super) async fn stats(State(state): State<AppState>) -> Json<impl Serialize> {
    let dispatcher = &state.dispatcher;
    let metrics = dispatcher.metrics();
    let analyzers = dispatcher.fleet().all();
    let pipeline = dispatcher.pipeline();
    let routed_total: u64 = analyzers.iter().map(|a| a.metrics.routed.get()).sum();
    let capacity = pipeline.capacity as u64;
    let recent = state.traffic.recent_shares();
    let per_analyzer = analyzers
        .iter()
        .map(|a| {
            let routed = a.metrics.routed.get();
            let stats = AnalyzerStats {
                name: a.name.clone(),
                is_healthy: a.health.is_healthy(),
                processed_count: a.metrics.delivered.get(),
                error_count: a.metrics.errors.get(),
                weight: a.weight(),
                share_percent: percent(routed, routed_total),
                recent_share_percent: recent.get(&a.id).copied().unwrap_or(0.0),
                routed_count: routed,
                queued: a.queued.load(std::sync::atomic::Ordering::Relaxed),
            };
            (a.id.clone(), stats)
        })
        .collect();
    Json(Stats {
        total_packets_received: metrics.packets_received.get(),
        total_messages_routed: analyzers.iter().map(|a| a.metrics.messages_routed.get()).sum(),
        active_analyzers: analyzers.iter().filter(|a| a.in_rotation()).count(),
        packet_channel_util_percent: percent((pipeline.queued + pipeline.no_analyzer) as u64, capacity),
        result_channel_util_percent: percent(pipeline.delivering as u64, capacity),
        retry_channel_util_percent: percent(pipeline.retry_wait as u64, capacity),
        uptime: format_uptime(state.started.elapsed(), true),
        timestamp: now(),
        analyzers: per_analyzer,
        total_messages_received: metrics.messages_received.get(),
        total_packets_routed: routed_total,
        total_retries: metrics.packets_retried.get(),
        total_dead_lettered: metrics.packets_dead_lettered.get(),
        in_flight: pipeline.in_flight,
        queue_capacity: pipeline.capacity,
        waiting_for_analyzer: pipeline.no_analyzer,
    })
}

/// One analyzer as `/api/v1/analyzers` and the admin endpoint show it.
#[derive(Serialize)]
pub(super) struct AnalyzerInfo {
    id: String,
    name: String,
    weight: u32,
    is_healthy: bool,
    in_rotation: bool,
    processed_count: u64,
    error_count: u64,
    last_health_check: Option<DateTime<Utc>>,
    health_mode: HealthMode,
    health_reason: HealthReason,
    health_detail: Option<String>,
    healthy_since: DateTime<Utc>,
    endpoint: String,
}

impl AnalyzerInfo {
    pub(super) fn of(a: &Analyzer) -> AnalyzerInfo {
        let health = a.health.snapshot();
        AnalyzerInfo {
            id: a.id.clone(),
            name: a.name.clone(),
            weight: a.weight(),
            is_healthy: health.healthy,
            in_rotation: a.in_rotation(),
            processed_count: a.metrics.delivered.get(),
            error_count: a.metrics.errors.get(),
            last_health_check: health.last_check,
            health_mode: health.mode,
            health_reason: health.reason,
            health_detail: health.detail,
            healthy_since: health.since,
            endpoint: a.transport.endpoint(),
        }
    }
}

#[derive(Serialize)]
struct AnalyzerList {
    analyzers: BTreeMap<String, AnalyzerInfo>,
    total_count: usize,
    active_count: usize,
    timestamp: String,
}

pub(super) async fn analyzers(State(state): State<AppState>) -> Json<impl Serialize> {
    let all = state.dispatcher.fleet().all();
    Json(AnalyzerList {
        analyzers: all.iter().map(|a| (a.id.clone(), AnalyzerInfo::of(a))).collect(),
        total_count: all.len(),
        active_count: all.iter().filter(|a| a.in_rotation()).count(),
        timestamp: now(),
    })
}

#[derive(Serialize)]
struct TrafficReport {
    window_seconds: u64,
    /// Each analyzer's share of the packets routed over the window.
    recent_share_percent: BTreeMap<String, f64>,
    /// Packets and messages accepted per second, oldest first (five minutes).
    history: Vec<RatePoint>,
    timestamp: String,
}

/// The last minutes of traffic: recent shares and the rate history.
pub(super) async fn traffic(State(state): State<AppState>) -> Json<impl Serialize> {
    Json(TrafficReport {
        window_seconds: SHARE_WINDOW.as_secs(),
        recent_share_percent: state.traffic.recent_shares(),
        history: state.traffic.history(),
        timestamp: now(),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Page {
    limit: Option<usize>,
    offset: Option<usize>,
}

#[derive(Serialize)]
struct DeadLetterPage {
    message: String,
    count: usize,
    total: usize,
    offset: usize,
    /// The entries' own text from the file, not parsed again.
    packets: Box<serde_json::value::RawValue>,
    file: String,
    timestamp: String,
}

/// A page of the dead letter, oldest first; by default the newest 100.
/// A page holds at most [`MAX_PAGE_BYTES`] of entries (one at least).
pub(super) async fn dead_letter(
    State(state): State<AppState>,
    page: Result<Query<Page>, QueryRejection>,
) -> Result<Json<impl Serialize>, ApiError> {
    let Query(page) = page?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is above the maximum of {MAX_PAGE}"
        )));
    }
    let file = state.dispatcher.dead_letter().clone();
    let window = Window {
        offset: page.offset,
        limit,
        max_bytes: MAX_PAGE_BYTES,
    };
    let page = tokio::task::spawn_blocking(move || file.page(window))
        .await
        .map_err(|e| ApiError::internal(format!("dead-letter reader failed: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot read the dead letter: {e}")))?;
    let packets = serde_json::value::RawValue::from_string(page.json)
        .map_err(|e| ApiError::internal(format!("the dead letter holds an unreadable entry: {e}")))?;
    let path = state.dispatcher.dead_letter().path().display().to_string();
    let cut = if page.count < limit.min(page.total.saturating_sub(page.offset)) {
        format!(" (the page stops at {} MiB)", MAX_PAGE_BYTES >> 20)
    } else {
        String::new()
    };
    Ok(Json(DeadLetterPage {
        message: format!("{} of {} failed packets{cut}", page.count, page.total),
        count: page.count,
        total: page.total,
        offset: page.offset,
        packets,
        file: path,
        timestamp: now(),
    }))
}
