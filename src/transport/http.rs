//! Delivery to a real analyzer over HTTP or HTTPS, per the analyzer contract:
//!
//! - `POST <endpoint>`, a body in the analyzer's [`DeliveryFormat`] (by
//!   default a JSON array of packets in the shape `/api/v1/logs` accepts,
//!   with `retry_count`), each packet with its `id`: the analyzer drops duplicates by those ids, as
//!   delivery is at-least-once. One bounded `Idempotency-Key` names the
//!   delivery: the packet's id percent-encoded (bytes outside
//!   `A-Z a-z 0-9 - . _ ~` as `%XX`) when it holds one packet, otherwise
//!   `sha256:` and the hex SHA-256 of its ids, each followed by a zero byte,
//!   in the body's order (see [`idempotency`]). The analyzer's static
//!   extra headers and its `Authorization` ([`Credentials`], re-read when
//!   their files change) go with it.
//! - 2xx: every packet delivered. 408, 429, 5xx, timeouts and connection
//!   errors (a failed TLS handshake too), and 401 and 403 when the analyzer
//!   has credentials (they may be mid-rotation): retryable, honouring
//!   `Retry-After` (seconds or an HTTP-date).
//!   413 and 431: too large, 400: a bad packet (the dispatcher splits a
//!   batch on both). Other statuses: permanent. A refusal keeps the status
//!   and the first 1 KiB of the answer as the dead letter's `final_error`.
//! - Health: `GET` or `HEAD` of the probe URL, healthy on an expected
//!   status (any 2xx by default). A probe to the endpoint's origin shares
//!   its connections and carries its headers and credentials; a probe to
//!   another origin has connections of its own, carries neither, and for
//!   `https://` uses the analyzer's TLS settings when it is the same host
//!   (only its CA bundle otherwise).
//!
//! Each origin keeps its own pool of kept-alive connections ([`Origin`]).

use super::credentials::{AuthOptions, Credentials};
use super::endpoint::Endpoint;
use super::format::{DeliveryBody, DeliveryFormat};
use super::headers::ExtraHeaders;
use super::idempotency;
use super::otlp::answer::{self as otlp_answer, PartialSuccessTally};
use super::pool::{Answered, Origin};
use super::probe::{ExpectedStatuses, ProbeMethod};
use super::tls::{ClientTls, TlsOptions};
use super::{DeliveryFailure, ExchangeError, FailureClass, ProbeError};
use crate::dispatch::job::Job;
use http1::Answer;
use std::sync::Arc;
use std::time::Duration;
use url::{Position, Url};

/// How much of an analyzer's refusal is kept as `final_error`.
const ANSWER_EXCERPT_BYTES: usize = 1024;

/// An HTTP analyzer as its configuration describes it.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions<'a> {
    /// The analyzer's id, for logs.
    pub id: &'a str,
    /// Where deliveries go: an `http://` or `https://` URL.
    pub endpoint: &'a str,
    pub format: DeliveryFormat,
    /// Longest wait for an answer.
    pub timeout: Duration,
    /// Only with an `https://` endpoint.
    pub tls: Option<&'a TlsOptions>,
    pub auth: Option<&'a AuthOptions>,
    pub headers: &'a ExtraHeaders,
    pub probe: ProbeOptions<'a>,
}

/// How an HTTP analyzer's health is probed.
#[derive(Debug, Clone, Copy)]
pub struct ProbeOptions<'a> {
    /// Resolved against the endpoint, unless `url` is given.
    pub path: &'a str,
    /// Absolute, or relative to the endpoint.
    pub url: Option<&'a str>,
    pub method: ProbeMethod,
    pub expected: &'a ExpectedStatuses,
}

#[derive(Debug)]
pub struct Http {
    endpoint: Url,
    deliveries: Arc<Origin>,
    /// The head of a delivery up to the headers each request adds itself
    /// (credentials, `Idempotency-Key`).
    delivery_head: Vec<u8>,
    credentials: Option<Credentials>,
    format: DeliveryFormat,
    timeout: Duration,
    probe: Probe,
    /// Reads an OTLP receiver's partial successes (`format: otlp`).
    partial_success: Option<PartialSuccessTally>,
}

#[derive(Debug)]
struct Probe {
    url: Url,
    /// Up to the credentials, when they go.
    head: Vec<u8>,
    answered: Answered,
    expected: ExpectedStatuses,
    /// The deliveries' own origin when it is the same.
    origin: Arc<Origin>,
    with_credentials: bool,
}

impl Http {
    /// Checks the addresses and reads the TLS and credential files.
    pub fn new(options: HttpOptions<'_>) -> Result<Http, String> {
        let endpoint = Endpoint::parse(options.endpoint)?;
        options.headers.check()?;
        let host = endpoint.url.host_str().unwrap_or_default().to_string();
        let tls = match (options.tls, endpoint.is_https()) {
            (Some(_), false) => {
                return Err(format!(
                    "tls: {} is an http:// endpoint; TLS settings need https://",
                    endpoint.url
                ))
            }
            (tls, true) => Some(ClientTls::new(
                &tls.cloned().unwrap_or_default(),
                &host,
                options.id,
            )?),
            (None, false) => None,
        };
        let credentials = options
            .auth
            .map(|auth| Credentials::new(auth, options.id))
            .transpose()?;
        let health = endpoint.health(options.probe.path, options.probe.url)?;
        let deliveries = Arc::new(Origin::new(&endpoint, tls));
        let same_origin = endpoint.same_origin(&health);
        let probe_origin = if same_origin {
            deliveries.clone()
        } else {
            let tls = if health.is_https() {
                let own = options.tls.cloned().unwrap_or_default();
                let probe_tls = if health.host == endpoint.host {
                    own
                } else {
                    own.trust_only()
                };
                let probe_host = health.url.host_str().unwrap_or_default();
                let what = format!("{} (probes)", options.id);
                Some(ClientTls::new(&probe_tls, probe_host, &what)?)
            } else {
                None
            };
            Arc::new(Origin::new(&health, tls))
        };
        let mut delivery_head = request_head("POST", &endpoint.url);
        delivery_head
            .extend_from_slice(format!("Content-Type: {}\r\n", options.format.content_type()).as_bytes());
        options.headers.write_lines(&mut delivery_head);
        let mut probe_head = request_head(options.probe.method.as_str(), &health.url);
        if same_origin {
            options.headers.write_lines(&mut probe_head);
        }
        Ok(Http {
            endpoint: endpoint.url,
            deliveries,
            delivery_head,
            credentials,
            format: options.format,
            timeout: options.timeout,
            probe: Probe {
                url: health.url,
                head: probe_head,
                answered: match options.probe.method {
                    ProbeMethod::Get => Answered::WithBody,
                    ProbeMethod::Head => Answered::HeadOnly,
                },
                expected: options.probe.expected.clone(),
                origin: probe_origin,
                with_credentials: same_origin,
            },
            partial_success: None,
        })
    }

    /// Has the 2xx answers read for an OTLP receiver's partial successes.
    pub(crate) fn count_partial_success(&mut self, tally: PartialSuccessTally) {
        self.partial_success = Some(tally);
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub async fn deliver(&self, batch: &[Job]) -> Result<(), DeliveryFailure> {
        let body = self.format.write_body_off_thread(batch).await;
        let mut head = self.delivery_head.clone();
        if let Some(credentials) = &self.credentials {
            head.extend_from_slice(&credentials.header_line());
        }
        idempotency::write_header_line(batch.iter().map(|job| job.packet.id()), &mut head);
        let exchange = self.deliveries.exchange(&head, body, Answered::WithBody);
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(ExchangeError::NoAnswer(self.timeout).into()),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(answer)) if is_success(answer.status) => {
                if let Some(tally) = &self.partial_success {
                    tally.record(&answer.body);
                }
                Ok(())
            }
            Ok(Ok(answer)) => {
                let mut failure = refusal(&answer, self.format);
                if self.credentials.is_some() && matches!(answer.status, 401 | 403) {
                    // Credentials being rotated: the files or the analyzer
                    // may be a moment ahead of the other.
                    failure.class = FailureClass::Retryable;
                }
                Err(failure)
            }
        }
    }

    pub async fn probe(&self) -> Result<(), ProbeError> {
        let probe = &self.probe;
        let mut head = probe.head.clone();
        if let (true, Some(credentials)) = (probe.with_credentials, &self.credentials) {
            head.extend_from_slice(&credentials.header_line());
        }
        let exchange = probe
            .origin
            .exchange(&head, DeliveryBody::whole(Vec::new()), probe.answered);
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| ExchangeError::NoAnswer(self.timeout))??;
        if probe.expected.contains(answer.status) {
            Ok(())
        } else {
            Err(ProbeError::Status {
                url: probe.url.clone(),
                status: answer.status,
                expected: probe.expected.to_string(),
            })
        }
    }
}

/// The request line and `Host` header of a request to `url`.
fn request_head(method: &str, url: &Url) -> Vec<u8> {
    http1::request_head(
        method,
        &url[Position::BeforePath..Position::AfterQuery],
        &url[Position::BeforeHost..Position::AfterPort],
    )
    .into_bytes()
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// What a non-2xx answer means: retryable or not, the analyzer's
/// `Retry-After`, and the start of its answer (an OTLP receiver's
/// `Status` message when it sent one).
fn refusal(answer: &Answer, format: DeliveryFormat) -> DeliveryFailure {
    let excerpt = &answer.body[..answer.body.len().min(ANSWER_EXCERPT_BYTES)];
    let reason = match format {
        DeliveryFormat::Otlp => otlp_answer::status_message(&answer.body, ANSWER_EXCERPT_BYTES),
        _ => None,
    }
    .unwrap_or_else(|| String::from_utf8_lossy(excerpt).trim().to_owned());
    let message = format!("analyzer answered HTTP {}: {reason}", answer.status);
    let class = match answer.status {
        408 | 429 | 500..=599 => FailureClass::Retryable,
        413 | 431 => FailureClass::TooLarge,
        400 => FailureClass::BadPacket,
        _ => FailureClass::Permanent,
    };
    let mut failure = DeliveryFailure::of_class(class, message);
    failure.retry_after = answer.retry_after;
    failure
}

#[cfg(test)]
mod tests {
    use super::{Http, HttpOptions, ProbeOptions};
    use crate::transport::credentials::AuthOptions;
    use crate::transport::format::DeliveryFormat;
    use crate::transport::headers::ExtraHeaders;
    use crate::transport::material::Material;
    use crate::transport::probe::{ExpectedStatuses, ProbeMethod};
    use crate::transport::{ExchangeError, ProbeError};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    const NO_CONTENT: &str = "HTTP/1.1 204 No Content\r\n\r\n";

    /// What the scripted analyzer does with a request.
    enum Then {
        Answer(&'static str),
        AnswerAndClose(&'static str),
        Close,
    }

    /// A real analyzer on loopback that does `plan(c, r)` with the `r`th
    /// request on its `c`th connection. It answers the number of requests
    /// it has read on each connection.
    async fn scripted(plan: fn(usize, usize) -> Then) -> (SocketAddr, Arc<Mutex<Vec<usize>>>, Heads) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let heads = Heads::default();
        let seen = requests.clone();
        let read = heads.clone();
        tokio::spawn(async move {
            for c in 0.. {
                let (mut socket, _) = listener.accept().await.unwrap();
                seen.lock().unwrap().push(0);
                let seen = seen.clone();
                let read = read.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    // Probes carry no body: each head ends with an empty line.
                    while let Ok(n @ 1..) = socket.read(&mut buffer).await {
                        assert!(buffer[..n].ends_with(b"\r\n\r\n"));
                        read.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&buffer[..n]).into_owned());
                        let r = {
                            let mut seen = seen.lock().unwrap();
                            seen[c] += 1;
                            seen[c] - 1
                        };
                        match plan(c, r) {
                            Then::Answer(answer) => socket.write_all(answer.as_bytes()).await.unwrap(),
                            Then::AnswerAndClose(answer) => {
                                socket.write_all(answer.as_bytes()).await.unwrap();
                                return;
                            }
                            Then::Close => return,
                        }
                    }
                });
            }
        });
        (addr, requests, heads)
    }

    /// Every request head a scripted analyzer read, in order.
    type Heads = Arc<Mutex<Vec<String>>>;

    fn options<'a>(
        endpoint: &'a str,
        expected: &'a ExpectedStatuses,
        headers: &'a ExtraHeaders,
    ) -> HttpOptions<'a> {
        HttpOptions {
            id: "test",
            endpoint,
            format: DeliveryFormat::Packets,
            timeout: Duration::from_secs(5),
            tls: None,
            auth: None,
            headers,
            probe: ProbeOptions {
                path: "/health",
                url: None,
                method: ProbeMethod::Get,
                expected,
            },
        }
    }

    fn client(addr: SocketAddr) -> Http {
        let endpoint = format!("http://{addr}/ingest");
        Http::new(options(
            &endpoint,
            &ExpectedStatuses::default(),
            &ExtraHeaders::default(),
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn requests_share_one_kept_connection() {
        let (addr, requests, _) = scripted(|_, _| Then::Answer(OK)).await;
        let http = client(addr);
        for _ in 0..3 {
            http.probe().await.unwrap();
        }
        assert_eq!(*requests.lock().unwrap(), [3]);
    }

    #[tokio::test]
    async fn a_kept_connection_the_analyzer_closed_while_idle_is_not_used() {
        let (addr, requests, _) = scripted(|_, _| Then::AnswerAndClose(OK)).await;
        let http = client(addr);
        for _ in 0..3 {
            http.probe().await.unwrap();
            // Time for the analyzer's close to arrive.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(*requests.lock().unwrap(), [1, 1, 1]);
    }

    #[tokio::test]
    async fn a_connection_closed_after_the_request_went_out_fails_that_request_only() {
        let (addr, requests, _) = scripted(|c, r| {
            if (c, r) == (0, 1) {
                Then::Close
            } else {
                Then::Answer(OK)
            }
        })
        .await;
        let http = client(addr);
        http.probe().await.unwrap();
        let error = http.probe().await.unwrap_err();
        assert!(
            matches!(error, ProbeError::Exchange(ExchangeError::Request(_))),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            "request failed: the server closed the connection before answering"
        );
        http.probe().await.unwrap();
        assert_eq!(*requests.lock().unwrap(), [2, 1]);
    }

    #[tokio::test]
    async fn an_answer_that_says_close_is_not_kept() {
        let (addr, requests, _) = scripted(|_, _| {
            Then::Answer("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        })
        .await;
        let http = client(addr);
        http.probe().await.unwrap();
        http.probe().await.unwrap();
        assert_eq!(http.deliveries.idle_count(), 0);
        assert_eq!(*requests.lock().unwrap(), [1, 1]);
    }

    #[tokio::test]
    async fn a_bad_answer_is_an_error() {
        let (addr, requests, _) =
            scripted(|_, r| Then::Answer(if r == 0 { OK } else { "SMTP ready\r\n\r\n" })).await;
        let http = client(addr);
        http.probe().await.unwrap();
        let error = http.probe().await.unwrap_err().to_string();
        assert!(
            error.starts_with("request failed: invalid HTTP answer"),
            "{error}"
        );
        assert_eq!(*requests.lock().unwrap(), [2]);
    }

    #[tokio::test]
    async fn no_listener_cannot_be_connected_to_and_a_silent_one_gives_no_answer() {
        let gone = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = gone.local_addr().unwrap();
        drop(gone);
        let error = client(addr).probe().await.unwrap_err();
        assert!(
            matches!(error, ProbeError::Exchange(ExchangeError::Connect(_))),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("cannot connect: "), "{error}");

        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}/", silent.local_addr().unwrap());
        let (expected, headers) = (ExpectedStatuses::default(), ExtraHeaders::default());
        let mut options = options(&endpoint, &expected, &headers);
        options.timeout = Duration::from_millis(200);
        let http = Http::new(options).unwrap();
        assert_eq!(
            http.probe().await.unwrap_err().to_string(),
            "no answer within 200ms"
        );
    }

    #[tokio::test]
    async fn a_head_probe_reads_no_body_and_keeps_its_connection() {
        // The answer announces 42 bytes a HEAD answer never carries.
        let (addr, requests, heads) =
            scripted(|_, _| Then::Answer("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n")).await;
        let endpoint = format!("http://{addr}/ingest");
        let expected = ExpectedStatuses::default();
        let headers = ExtraHeaders::default();
        let mut options = options(&endpoint, &expected, &headers);
        options.probe.method = ProbeMethod::Head;
        options.timeout = Duration::from_secs(2);
        let http = Http::new(options).unwrap();
        for _ in 0..3 {
            http.probe().await.unwrap();
        }
        assert_eq!(*requests.lock().unwrap(), [3]);
        assert!(heads.lock().unwrap()[0].starts_with("HEAD /health HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn only_the_expected_statuses_pass_a_probe() {
        let (addr, _, _) = scripted(|_, r| Then::Answer(if r == 0 { NO_CONTENT } else { OK })).await;
        let endpoint = format!("http://{addr}/ingest");
        let expected: ExpectedStatuses = serde_json::from_str("[204]").unwrap();
        let headers = ExtraHeaders::default();
        let http = Http::new(options(&endpoint, &expected, &headers)).unwrap();
        http.probe().await.unwrap();
        let error = http.probe().await.unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("http://{addr}/health answered HTTP 200, expected 204")
        );
    }

    #[tokio::test]
    async fn headers_and_credentials_go_to_the_endpoints_origin_only() {
        let (delivery, _, delivery_heads) = scripted(|_, _| Then::Answer(OK)).await;
        let (elsewhere, _, elsewhere_heads) = scripted(|_, _| Then::Answer(OK)).await;
        let endpoint = format!("http://{delivery}/ingest");
        let expected = ExpectedStatuses::default();
        let headers: ExtraHeaders = serde_json::from_str(r#"{"X-Scope-OrgID": "tenant-a"}"#).unwrap();
        let auth = AuthOptions {
            token_file: Some(Material::inline("test", b"t0ken\n".to_vec())),
            ..AuthOptions::default()
        };
        let mut same = options(&endpoint, &expected, &headers);
        same.auth = Some(&auth);
        same.probe.url = Some("/ready");
        Http::new(same).unwrap().probe().await.unwrap();
        let other_url = format!("http://{elsewhere}/");
        let mut other = same;
        other.probe.url = Some(&other_url);
        Http::new(other).unwrap().probe().await.unwrap();
        assert_eq!(
            delivery_heads.lock().unwrap()[0],
            format!("GET /ready HTTP/1.1\r\nHost: {delivery}\r\nX-Scope-OrgID: tenant-a\r\nAuthorization: Bearer t0ken\r\nContent-Length: 0\r\n\r\n")
        );
        assert_eq!(
            elsewhere_heads.lock().unwrap()[0],
            format!("GET / HTTP/1.1\r\nHost: {elsewhere}\r\nContent-Length: 0\r\n\r\n")
        );
    }

    #[test]
    fn tls_settings_need_an_https_endpoint() {
        let expected = ExpectedStatuses::default();
        let headers = ExtraHeaders::default();
        let tls = crate::transport::tls::TlsOptions::default();
        let mut plain = options("http://analyzer:9000/", &expected, &headers);
        plain.tls = Some(&tls);
        let error = Http::new(plain).unwrap_err();
        assert_eq!(
            error,
            "tls: http://analyzer:9000/ is an http:// endpoint; TLS settings need https://"
        );
    }
}
