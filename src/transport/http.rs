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
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use url::Url;

/// The header that carries the packet ids of a delivery.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How much of an analyzer's refusal is kept as `final_error`.
const ANSWER_EXCERPT_BYTES: usize = 1024;
/// How long an unused pooled connection is kept open.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    endpoint: Url,
    /// `endpoint` and the health URL, parsed once for every request.
    endpoint_uri: Uri,
    health_uri: Uri,
    timeout: Duration,
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
        let as_uri = |url: &Url| {
            url.as_str()
                .parse::<Uri>()
                .map_err(|e| format!("{url} is not a usable URL: {e}"))
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Http {
            client,
            endpoint_uri: as_uri(&endpoint)?,
            health_uri: as_uri(&health_url)?,
            endpoint,
            timeout,
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub async fn deliver(&self, batch: &[Job]) -> Result<(), DeliveryFailure> {
        let mut request = Request::post(self.endpoint_uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(Full::new(Bytes::from(encode_body(batch))))
            .map_err(|e| DeliveryFailure::permanent(format!("cannot build the request: {e}")))?;
        let ids: Vec<String> = batch.iter().map(|job| percent_encode(job.packet.id())).collect();
        if let Ok(value) = HeaderValue::from_str(&ids.join(",")) {
            request.headers_mut().insert(IDEMPOTENCY_HEADER, value);
        }
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| describe(&e))?;
            let status = response.status();
            if status.is_success() {
                // Read to the end, so that the connection goes back to the pool.
                response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| format!("reading the answer failed: {e}"))?;
                return Ok::<_, String>(None);
            }
            Ok(Some(refusal(response).await))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(DeliveryFailure::retryable(self.no_answer())),
            Ok(Err(message)) => Err(DeliveryFailure::retryable(message)),
            Ok(Ok(None)) => Ok(()),
            Ok(Ok(Some(failure))) => Err(failure),
        }
    }

    pub async fn probe(&self) -> Result<(), String> {
        let request = Request::get(self.health_uri.clone())
            .body(Full::new(Bytes::new()))
            .map_err(|e| format!("cannot build the probe: {e}"))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| describe(&e))?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer failed: {e}"))?;
            Ok::<_, String>(status)
        };
        let status = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| self.no_answer())??;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("{} answered HTTP {}", self.health_uri, status.as_u16()))
        }
    }

    fn no_answer(&self) -> String {
        format!("no answer within {}", humantime::format_duration(self.timeout))
    }
}

/// What a non-2xx answer means: retryable or not, the analyzer's
/// `Retry-After`, and the start of its answer.
async fn refusal(response: Response<Incoming>) -> DeliveryFailure {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let excerpt = answer_excerpt(response.into_body()).await;
    let message = format!("analyzer answered HTTP {}: {excerpt}", status.as_u16());
    let mut failure = if is_retryable(status) {
        DeliveryFailure::retryable(message)
    } else {
        DeliveryFailure::permanent(message)
    };
    failure.retry_after = retry_after;
    failure
}

/// The delivery's body: a JSON array of the packets, each with its retry
/// count, from the text they were encoded to when accepted.
fn encode_body(batch: &[Job]) -> Vec<u8> {
    let size: usize = batch.iter().map(|job| job.packet.json_bytes() + 1).sum();
    let mut body = Vec::with_capacity(size + 2);
    body.push(b'[');
    for (n, job) in batch.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        job.packet.write_json(job.retries, &mut body);
    }
    body.push(b']');
    body
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

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    if e.is_connect() {
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

/// The first [`ANSWER_EXCERPT_BYTES`] of an answer, as text; reading stops there.
async fn answer_excerpt(mut body: Incoming) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < ANSWER_EXCERPT_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    bytes.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(ANSWER_EXCERPT_BYTES);
    String::from_utf8_lossy(&bytes).trim().to_string()
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
