//! Delivery to a real analyzer over HTTP, per the analyzer contract:
//!
//! - `POST <endpoint>`, `Content-Type: application/json`, body a JSON array
//!   of packets in the shape `/api/v1/logs` accepts (with `retry_count`),
//!   and the packet ids in `Idempotency-Key`, each percent-encoded (bytes
//!   outside `A-Z a-z 0-9 - . _ ~` as `%XX`) and comma-separated, so that
//!   the analyzer can drop duplicates: delivery is at-least-once.
//! - 2xx: every packet delivered. 408, 429, 5xx, timeouts and connection
//!   errors: retryable, honouring `Retry-After` (seconds). Other statuses:
//!   permanent, with the status and the first 1 KiB of the answer as the
//!   dead letter's `final_error`.
//! - Health: `GET <health_url>`, healthy on 2xx.
//!
//! Connections are pooled and kept alive by one client per analyzer.

use super::DeliveryFailure;
use crate::dispatch::Job;
use crate::model::LogMessage;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use std::time::Duration;

/// The header that carries the packet ids of a delivery.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How much of an analyzer's refusal is kept as `final_error`.
const ANSWER_EXCERPT_BYTES: usize = 1024;

#[derive(Debug)]
pub struct Http {
    client: reqwest::Client,
    endpoint: Url,
    health_url: Url,
    timeout: Duration,
}

/// A packet as analyzers receive it.
#[derive(Serialize)]
struct WirePacket<'a> {
    id: &'a str,
    messages: &'a [LogMessage],
    retry_count: u32,
}

impl Http {
    /// `endpoint` takes deliveries; `health_path` is resolved against it.
    pub fn new(endpoint: &str, health_path: &str, timeout: Duration) -> Result<Http, String> {
        let endpoint = Url::parse(endpoint).map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
        if endpoint.scheme() != "http" {
            return Err(format!("{endpoint} must be an http:// URL"));
        }
        let health_url = endpoint
            .join(health_path)
            .map_err(|e| format!("health path {health_path:?} does not resolve against {endpoint}: {e}"))?;
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Http {
            client,
            endpoint,
            health_url,
            timeout,
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub async fn deliver(&self, batch: &[Job]) -> Result<(), DeliveryFailure> {
        let packets: Vec<WirePacket<'_>> = batch
            .iter()
            .map(|job| WirePacket {
                id: &job.packet.id,
                messages: &job.packet.messages,
                retry_count: job.retries,
            })
            .collect();
        let body = serde_json::to_vec(&packets)
            .map_err(|e| DeliveryFailure::permanent(format!("cannot encode packets: {e}")))?;
        let ids: Vec<String> = batch.iter().map(|job| percent_encode(&job.packet.id)).collect();
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .timeout(self.timeout)
            .body(body);
        if let Ok(value) = HeaderValue::from_str(&ids.join(",")) {
            request = request.header(IDEMPOTENCY_HEADER, value);
        }
        let response = request.send().await.map_err(|e| self.transport_failure(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let excerpt = answer_excerpt(response).await;
        let message = format!("analyzer answered HTTP {}: {excerpt}", status.as_u16());
        let mut failure = if is_retryable(status) {
            DeliveryFailure::retryable(message)
        } else {
            DeliveryFailure::permanent(message)
        };
        failure.retry_after = retry_after;
        Err(failure)
    }

    pub async fn probe(&self) -> Result<(), String> {
        let response = self
            .client
            .get(self.health_url.clone())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| describe(&e, self.timeout))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!(
                "{} answered HTTP {}",
                self.health_url,
                response.status().as_u16()
            ))
        }
    }

    fn transport_failure(&self, e: &reqwest::Error) -> DeliveryFailure {
        DeliveryFailure::retryable(describe(e, self.timeout))
    }
}

/// Percent-encodes every byte but RFC 3986's unreserved ones, so that an
/// id with a comma, spaces or non-ASCII survives a header intact.
pub fn percent_encode(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {}", humantime::format_duration(timeout))
    } else if e.is_connect() {
        format!("cannot connect: {}", root_cause(e))
    } else {
        format!("request failed: {}", root_cause(e))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

async fn answer_excerpt(response: reqwest::Response) -> String {
    let bytes = response.bytes().await.unwrap_or_default();
    let cut = &bytes[..bytes.len().min(ANSWER_EXCERPT_BYTES)];
    String::from_utf8_lossy(cut).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn ids_are_percent_encoded_for_the_header() {
        assert_eq!(percent_encode("abc-123_x.y~z"), "abc-123_x.y~z");
        assert_eq!(percent_encode("a,b"), "a%2Cb");
        assert_eq!(percent_encode(" lead"), "%20lead");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
