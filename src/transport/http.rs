//! Delivery to a real analyzer over HTTP, per the analyzer contract:
//!
//! - `POST <endpoint>`, a body in the analyzer's [`DeliveryFormat`] (by
//!   default a JSON array of packets in the shape `/api/v1/logs` accepts,
//!   with `retry_count`), each packet with its `id`: the analyzer drops duplicates by those ids, as
//!   delivery is at-least-once. One bounded `Idempotency-Key` names the
//!   delivery: the packet's id percent-encoded (bytes outside
//!   `A-Z a-z 0-9 - . _ ~` as `%XX`) when it holds one packet, otherwise
//!   `sha256:` and the hex SHA-256 of its ids, each followed by a zero byte,
//!   in the body's order (see [`idempotency_key`]).
//! - 2xx: every packet delivered. 408, 429, 5xx, timeouts and connection
//!   errors: retryable, honouring `Retry-After` (seconds or an HTTP-date).
//!   413 and 431: too large, 400: a bad packet (the dispatcher splits a
//!   batch on both). Other statuses: permanent. A refusal keeps the status
//!   and the first 1 KiB of the answer as the dead letter's `final_error`.
//! - Health: `GET <health_url>`, healthy on 2xx.
//!
//! Each analyzer keeps its own pool of kept-alive connections ([`http1`]),
//! the most recently used taken first, closed after 90 s unused.

use super::endpoint::Endpoint;
use super::format::DeliveryFormat;
use super::{DeliveryFailure, ExchangeError, FailureClass, ProbeError};
use crate::dispatch::job::Job;
use crate::sync::LockUnpoisoned;
use http1::{Answer, Connection};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use url::{Host, Position, Url};

/// The header that names a delivery's packets (see [`idempotency_key`]).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// What starts the key of a delivery of several packets; `:` is always
/// percent-encoded in a one-packet key, so the two kinds never meet.
const BATCH_KEY_PREFIX: &str = "sha256:";
/// How much of an analyzer's refusal is kept as `final_error`.
const ANSWER_EXCERPT_BYTES: usize = 1024;
/// How long an unused pooled connection is kept open.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug)]
pub struct Http {
    endpoint: Url,
    health_url: Url,
    host: Host<String>,
    port: u16,
    /// The heads of a delivery and of a probe, up to the headers each
    /// request adds itself.
    delivery_head: Vec<u8>,
    probe_head: Vec<u8>,
    format: DeliveryFormat,
    timeout: Duration,
    /// Kept-alive connections not in use, the most recently used last.
    idle: Mutex<Vec<IdleConnection>>,
}

#[derive(Debug)]
struct IdleConnection {
    connection: Connection,
    since: Instant,
}

impl Http {
    /// `endpoint` takes deliveries; `health_path` is resolved against it.
    pub fn new(
        endpoint: &str,
        health_path: &str,
        format: DeliveryFormat,
        timeout: Duration,
    ) -> Result<Http, String> {
        let Endpoint {
            url: endpoint,
            health_url,
            host,
            port,
        } = Endpoint::parse(endpoint, health_path)?;
        let head = |method: &str, url: &Url| {
            http1::request_head(
                method,
                &url[Position::BeforePath..Position::AfterQuery],
                &url[Position::BeforeHost..Position::AfterPort],
            )
            .into_bytes()
        };
        let mut delivery_head = head("POST", &endpoint);
        delivery_head.extend_from_slice(format!("Content-Type: {}\r\n", format.content_type()).as_bytes());
        Ok(Http {
            probe_head: head("GET", &health_url),
            delivery_head,
            format,
            endpoint,
            health_url,
            host,
            port,
            timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    pub async fn deliver(&self, batch: &[Job]) -> Result<(), DeliveryFailure> {
        let body = self.format.write_body(batch);
        let mut head = self.delivery_head.clone();
        head.extend_from_slice(IDEMPOTENCY_HEADER.as_bytes());
        head.extend_from_slice(b": ");
        idempotency_key(batch.iter().map(|job| job.packet.id()), &mut head);
        head.extend_from_slice(b"\r\n");
        match tokio::time::timeout(self.timeout, self.exchange(&head, body)).await {
            Err(_) => Err(ExchangeError::NoAnswer(self.timeout).into()),
            Ok(Err(e)) => Err(e.into()),
            Ok(Ok(answer)) if is_success(answer.status) => Ok(()),
            Ok(Ok(answer)) => Err(refusal(answer)),
        }
    }

    pub async fn probe(&self) -> Result<(), ProbeError> {
        let answer = tokio::time::timeout(self.timeout, self.exchange(&self.probe_head, Vec::new()))
            .await
            .map_err(|_| ExchangeError::NoAnswer(self.timeout))??;
        if is_success(answer.status) {
            Ok(())
        } else {
            Err(ProbeError::Status {
                url: self.health_url.clone(),
                status: answer.status,
            })
        }
    }

    /// One request and its whole answer. The body is let go once it is
    /// written, not held while the analyzer works on it.
    async fn exchange(&self, head: &[u8], body: Vec<u8>) -> Result<Answer, ExchangeError> {
        let mut connection = self.send(head, &body).await?;
        drop(body);
        let (answer, ended) = connection.receive().await;
        let answer = answer.map_err(ExchangeError::Request)?;
        self.keep_unless(ended, connection);
        Ok(answer)
    }

    /// Sends a request on a kept-alive connection when there is one that
    /// takes it, otherwise on a new one.
    async fn send(&self, head: &[u8], body: &[u8]) -> Result<Connection, ExchangeError> {
        if let Some(mut connection) = self.take_idle() {
            if connection.send(head, body).await.is_ok() {
                return Ok(connection);
            }
        }
        let mut connection = self.connect().await?;
        connection
            .send(head, body)
            .await
            .map_err(ExchangeError::Request)?;
        Ok(connection)
    }

    async fn connect(&self) -> Result<Connection, ExchangeError> {
        let stream = match &self.host {
            Host::Domain(name) => TcpStream::connect((name.as_str(), self.port)).await,
            Host::Ipv4(ip) => TcpStream::connect((*ip, self.port)).await,
            Host::Ipv6(ip) => TcpStream::connect((*ip, self.port)).await,
        }
        .map_err(ExchangeError::Connect)?;
        stream.set_nodelay(true).map_err(ExchangeError::Connect)?;
        Ok(Connection::new(stream))
    }

    /// The most recently used idle connection that is still open.
    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock_unpoisoned();
        while let Some(IdleConnection {
            mut connection,
            since,
        }) = idle.pop()
        {
            if since.elapsed() < POOL_IDLE_TIMEOUT && !connection.has_ended() {
                return Some(connection);
            }
        }
        None
    }

    /// Puts `connection` back for the next request unless it has `ended`;
    /// closes those idle for longer than [`POOL_IDLE_TIMEOUT`].
    fn keep_unless(&self, ended: bool, connection: Connection) {
        let now = Instant::now();
        let mut idle = self.idle.lock_unpoisoned();
        // Oldest first: those put back longest ago.
        let expired = idle.partition_point(|entry| now.duration_since(entry.since) >= POOL_IDLE_TIMEOUT);
        idle.drain(..expired);
        if !ended {
            idle.push(IdleConnection {
                connection,
                since: now,
            });
        }
    }
}

fn is_success(status: u16) -> bool {
    (200..300).contains(&status)
}

/// What a non-2xx answer means: retryable or not, the analyzer's
/// `Retry-After`, and the start of its answer.
fn refusal(answer: Answer) -> DeliveryFailure {
    let excerpt = &answer.body[..answer.body.len().min(ANSWER_EXCERPT_BYTES)];
    let message = format!(
        "analyzer answered HTTP {}: {}",
        answer.status,
        String::from_utf8_lossy(excerpt).trim()
    );
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

/// Writes the `Idempotency-Key` of a delivery of the packets with `ids`:
/// the id, percent-encoded, for one packet (at most three times
/// `limits.max_id_bytes`); for several, `sha256:` and 64 hex digits, the
/// SHA-256 of the ids, each followed by a zero byte (no id holds one). A
/// retry sends the same packets in the same order, so it has the same key.
fn idempotency_key<'a>(mut ids: impl ExactSizeIterator<Item = &'a str>, out: &mut Vec<u8>) {
    if ids.len() == 1 {
        if let Some(id) = ids.next() {
            percent_encode_into(id, out);
        }
        return;
    }
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    for id in ids {
        digest.update(id.as_bytes());
        digest.update(&[0]);
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(BATCH_KEY_PREFIX.as_bytes());
    for byte in digest.finish().as_ref() {
        out.extend_from_slice(&[HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xF)]]);
    }
}

/// Percent-encodes every byte but RFC 3986's unreserved ones, so that an
/// id with a comma, spaces or non-ASCII survives a header intact.
fn percent_encode_into(id: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xF)]]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{idempotency_key, percent_encode_into, Http};
    use crate::transport::format::DeliveryFormat;
    use crate::transport::{ExchangeError, ProbeError};
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

    /// What the scripted analyzer does with a request.
    enum Then {
        Answer(&'static str),
        AnswerAndClose(&'static str),
        Close,
    }

    /// A real analyzer on loopback that does `plan(c, r)` with the `r`th
    /// request on its `c`th connection. It answers the number of requests
    /// it has read on each connection.
    async fn scripted(plan: fn(usize, usize) -> Then) -> (SocketAddr, Arc<Mutex<Vec<usize>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            for c in 0.. {
                let (mut socket, _) = listener.accept().await.unwrap();
                seen.lock().unwrap().push(0);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    // Probes carry no body: each head ends with an empty line.
                    while let Ok(n @ 1..) = socket.read(&mut buffer).await {
                        assert!(buffer[..n].ends_with(b"\r\n\r\n"));
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
        (addr, requests)
    }

    fn client(addr: SocketAddr) -> Http {
        Http::new(
            &format!("http://{addr}/ingest"),
            "/health",
            DeliveryFormat::Packets,
            Duration::from_secs(5),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn requests_share_one_kept_connection() {
        let (addr, requests) = scripted(|_, _| Then::Answer(OK)).await;
        let http = client(addr);
        for _ in 0..3 {
            http.probe().await.unwrap();
        }
        assert_eq!(*requests.lock().unwrap(), [3]);
    }

    #[tokio::test]
    async fn a_kept_connection_the_analyzer_closed_while_idle_is_not_used() {
        let (addr, requests) = scripted(|_, _| Then::AnswerAndClose(OK)).await;
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
        let (addr, requests) = scripted(|c, r| {
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
        let (addr, requests) = scripted(|_, _| {
            Then::Answer("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        })
        .await;
        let http = client(addr);
        http.probe().await.unwrap();
        http.probe().await.unwrap();
        assert_eq!(http.idle.lock().unwrap().len(), 0);
        assert_eq!(*requests.lock().unwrap(), [1, 1]);
    }

    #[tokio::test]
    async fn a_bad_answer_is_an_error() {
        let (addr, requests) =
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
        let http = Http::new(
            &endpoint,
            "/health",
            DeliveryFormat::Packets,
            Duration::from_millis(200),
        )
        .unwrap();
        assert_eq!(
            http.probe().await.unwrap_err().to_string(),
            "no answer within 200ms"
        );
    }

    #[test]
    fn ids_are_percent_encoded_for_the_header() {
        let encode = |id: &str| {
            let mut out = Vec::new();
            percent_encode_into(id, &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(encode("abc-123_x.y~z"), "abc-123_x.y~z");
        assert_eq!(encode("a,b"), "a%2Cb");
        assert_eq!(encode(" lead"), "%20lead");
        assert_eq!(encode("é"), "%C3%A9");
    }

    #[test]
    fn a_batch_key_is_a_bounded_hash_of_its_ids_in_order() {
        let key = |ids: &[&str]| {
            let mut out = Vec::new();
            idempotency_key(ids.iter().copied(), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(key(&["a,b"]), "a%2Cb", "one packet: its id");
        // SHA-256 of "a\0b\0", by sha256sum.
        assert_eq!(
            key(&["a", "b"]),
            "sha256:8fb20ef63ced4145fc2e983ffe597d1dcff39154c3bf21f0fa9dde6a0c50fdc9"
        );
        assert_ne!(key(&["a", "b"]), key(&["b", "a"]), "the order counts");
        assert_ne!(key(&["ab", ""]), key(&["a", "b"]), "ids stay apart");
        let long: Vec<String> = (0..256).map(|i| format!("{i:0>256}")).collect();
        let long: Vec<&str> = long.iter().map(String::as_str).collect();
        assert_eq!(key(&long).len(), 7 + 64);
    }
}
