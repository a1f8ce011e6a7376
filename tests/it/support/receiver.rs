//! A receiver an analyzer endpoint points at, hosted in the test on
//! loopback: real HTTP/1.1 (hyper), over TLS (rustls) when given a
//! certificate, with what real receivers ask of a client (a required
//! `Authorization`, a client certificate) and health served where they
//! serve it (a path, or a listener of its own as the OpenTelemetry
//! Collector's health_check extension does).
//!
//! It keeps what it saw: every delivery's packet ids and headers, every
//! probe's method and headers, the connections it accepted and the first
//! byte each sent (a TLS handshake starts with 0x16: nothing in clear text).

use crate::support::pki::Leaf;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::{any, post};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::rustls;
use tower_service::Service;

/// What a receiver asks of its clients and how it answers.
#[derive(Default)]
pub(crate) struct ReceiverOptions {
    /// Serve HTTPS with this certificate.
    pub tls: Option<Leaf>,
    /// Require a client certificate signed by this CA.
    pub client_ca: Option<String>,
    /// Require this `Authorization` header on deliveries.
    pub authorization: Option<String>,
    /// Serve health on a listener of its own (`GET /`), not on the
    /// delivery port's `/health`: plain HTTP...
    pub health_listener: bool,
    /// ...or over TLS as the delivery port is (the same certificate and
    /// client CA).
    pub health_over_tls: bool,
}

/// One delivery as the receiver took it.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub ids: Vec<String>,
    pub headers: HeaderMap,
}

/// One probe as the receiver answered it.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub method: Method,
    pub headers: HeaderMap,
}

#[derive(Default)]
struct Seen {
    /// Delivery requests, taken or not.
    attempts: usize,
    deliveries: Vec<Delivery>,
    refused: Vec<HeaderMap>,
    probes: Vec<Probe>,
    /// The first byte of each accepted connection, in order.
    first_bytes: Vec<u8>,
    /// Connections whose TLS handshake failed.
    handshake_failures: usize,
}

struct Shared {
    authorization: Mutex<Option<String>>,
    delivery_status: AtomicU16,
    health_status: AtomicU16,
    seen: Mutex<Seen>,
}

/// A running receiver; its listeners stop when it is dropped.
pub(crate) struct Receiver {
    pub addr: SocketAddr,
    /// The health listener's address, with `health_listener`.
    pub health_addr: Option<SocketAddr>,
    https: bool,
    health_over_tls: bool,
    shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub(crate) async fn start(options: ReceiverOptions) -> Receiver {
        let shared = Arc::new(Shared {
            authorization: Mutex::new(options.authorization.clone()),
            delivery_status: AtomicU16::new(200),
            health_status: AtomicU16::new(200),
            seen: Mutex::default(),
        });
        let mut app = Router::new().route("/ingest", post(deliver));
        if !options.health_listener {
            app = app.route("/health", any(health));
        }
        let app = app.with_state(shared.clone());
        let acceptor = options
            .tls
            .as_ref()
            .map(|leaf| acceptor(leaf, options.client_ca.as_deref()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut tasks = vec![tokio::spawn(accept_loop(
            listener,
            app,
            acceptor.clone(),
            Some(shared.clone()),
        ))];
        let mut health_addr = None;
        if options.health_listener {
            let health_app = Router::new().route("/", any(health)).with_state(shared.clone());
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            health_addr = Some(listener.local_addr().unwrap());
            let health_acceptor = acceptor.clone().filter(|_| options.health_over_tls);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                health_app,
                health_acceptor,
                None,
            )));
        }
        Receiver {
            addr,
            health_addr,
            https: options.tls.is_some(),
            health_over_tls: options.tls.is_some() && options.health_over_tls,
            shared,
            tasks,
        }
    }

    /// The delivery endpoint.
    pub(crate) fn endpoint(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/ingest", self.addr.port())
    }

    /// The health listener's URL, with `health_listener`.
    pub(crate) fn health_url(&self) -> String {
        self.health_url_at("127.0.0.1")
    }

    /// The health listener's URL with `host` (`localhost` names the same
    /// listener as another host).
    pub(crate) fn health_url_at(&self, host: &str) -> String {
        let scheme = if self.health_over_tls { "https" } else { "http" };
        let port = self.health_addr.expect("a health listener").port();
        format!("{scheme}://{host}:{port}/")
    }

    /// From now on, require this `Authorization` (or none).
    pub(crate) fn require(&self, authorization: Option<&str>) {
        *self.shared.authorization.lock().unwrap() = authorization.map(String::from);
    }

    /// The status deliveries are answered with (after the auth check); 200 takes them.
    pub(crate) fn answer_deliveries(&self, status: u16) {
        self.shared.delivery_status.store(status, Ordering::Relaxed);
    }

    /// The status probes are answered with.
    pub(crate) fn answer_probes(&self, status: u16) {
        self.shared.health_status.store(status, Ordering::Relaxed);
    }

    /// Delivery requests received, taken or refused.
    pub(crate) fn attempts(&self) -> usize {
        self.shared.seen.lock().unwrap().attempts
    }

    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.shared.seen.lock().unwrap().deliveries.clone()
    }

    /// Every packet id taken, in order.
    pub(crate) fn ids(&self) -> Vec<String> {
        self.deliveries().into_iter().flat_map(|d| d.ids).collect()
    }

    /// The headers of deliveries refused for their `Authorization`.
    pub(crate) fn refused(&self) -> Vec<HeaderMap> {
        self.shared.seen.lock().unwrap().refused.clone()
    }

    pub(crate) fn probes(&self) -> Vec<Probe> {
        self.shared.seen.lock().unwrap().probes.clone()
    }

    /// The first byte each connection to the delivery port sent, in order.
    pub(crate) fn first_bytes(&self) -> Vec<u8> {
        self.shared.seen.lock().unwrap().first_bytes.clone()
    }

    pub(crate) fn handshake_failures(&self) -> usize {
        self.shared.seen.lock().unwrap().handshake_failures
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A server configuration with `leaf`, asking for a client certificate
/// signed by `client_ca` when given.
fn acceptor(leaf: &Leaf, client_ca: Option<&str>) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = vec![CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
                .unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// Serves `app` on `listener`, over TLS with `acceptor`; notes each
/// connection's first byte and failed handshakes in `seen` when given.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    seen: Option<Arc<Shared>>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut first = [0u8; 1];
            let first = match tcp.peek(&mut first).await {
                Ok(1) => first[0],
                _ => return,
            };
            if let Some(shared) = &seen {
                shared.seen.lock().unwrap().first_bytes.push(first);
            }
            match acceptor {
                None => serve(tcp, app).await,
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(tls) => serve(tls, app).await,
                    Err(_) => {
                        if let Some(shared) = &seen {
                            shared.seen.lock().unwrap().handshake_failures += 1;
                        }
                    }
                },
            }
        });
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S, app: Router) {
    let service =
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| app.clone().call(request));
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn deliver(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    shared.seen.lock().unwrap().attempts += 1;
    let required = shared.authorization.lock().unwrap().clone();
    let presented = headers.get("authorization").and_then(|v| v.to_str().ok());
    if required.is_some() && presented != required.as_deref() {
        shared.seen.lock().unwrap().refused.push(headers);
        return StatusCode::UNAUTHORIZED;
    }
    let status = shared.delivery_status.load(Ordering::Relaxed);
    if status != 200 {
        return StatusCode::from_u16(status).unwrap();
    }
    let packets: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
    let ids = packets
        .iter()
        .map(|p| p["id"].as_str().unwrap_or_default().to_string())
        .collect();
    shared
        .seen
        .lock()
        .unwrap()
        .deliveries
        .push(Delivery { ids, headers });
    StatusCode::OK
}

async fn health(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
) -> (StatusCode, &'static str) {
    shared.seen.lock().unwrap().probes.push(Probe { method, headers });
    let status = StatusCode::from_u16(shared.health_status.load(Ordering::Relaxed)).unwrap();
    (status, "{\"status\": \"Server available\"}")
}
