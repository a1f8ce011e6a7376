//! The HTTP server: an accept loop over hyper's HTTP/1 connections, with a
//! header-read timeout, a request timeout (408) that also bounds how long
//! an answer may wait for its client to read it ([`WriteDeadline`]), a
//! bound on connections open at once, optional TLS (rustls, reloaded when
//! the files change) and a shutdown in two steps: stop accepting, let
//! requests in progress finish and close idle connections; then close
//! every connection still open.

use crate::api;
use crate::config::{ServerConfig, TlsConfig};
use crate::write_deadline::WriteDeadline;
use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper::{Request, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// Serves `app` on `listener` until `stop` is cancelled; then stops
/// accepting and waits for the open connections to finish what they are
/// doing, until `close` is cancelled: then every connection still open is
/// closed, answered or not.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    server: ServerConfig,
    tls: Option<Arc<TlsFiles>>,
    stop: CancellationToken,
    close: CancellationToken,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(server.max_connections));
    let connections = TaskTracker::new();
    let reloader = tls.clone().map(|files| tokio::spawn(files.watch(stop.clone())));
    loop {
        // A free slot first: past max_connections, new connections wait in
        // the kernel's backlog until one closes.
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, go on.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let stream = WriteDeadline::new(stream, server.request_timeout);
        let app = app.clone();
        let stop = stop.clone();
        let close = close.clone();
        let acceptor = tls.as_ref().map(|files| files.acceptor());
        let timeouts = Timeouts {
            header_read: server.header_read_timeout,
            request: server.request_timeout,
        };
        let served = async move {
            match acceptor {
                None => serve_connection(stream, app, timeouts, stop).await,
                Some(acceptor) => {
                    // The handshake counts against the header-read timeout.
                    match tokio::time::timeout(timeouts.header_read, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_connection(tls, app, timeouts, stop).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        };
        connections.spawn(async move {
            let _slot = slot;
            tokio::select! {
                () = served => {}
                () = close.cancelled() => tracing::debug!(%peer, "connection closed at the end of the shutdown"),
            }
        });
    }
    drop(listener);
    if let Some(reloader) = reloader {
        reloader.abort();
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// The most a connection's read buffer grows to (hyper's default is about
/// 400 KiB). A larger buffer saves few reads, and with hundreds of
/// connections sending large bodies it cost tens of MiB. It also bounds a
/// request's head: past about 110 KiB, 431. 16 KiB saved a few MiB more
/// but would refuse heads that common proxies pass (Envoy takes 60 KiB).
const READ_BUFFER_MAX: usize = 64 * 1024;

/// How long a connection may take to send a request's head, and a request
/// to be answered (its body read included; taking the answer is bounded by
/// the same time, see [`WriteDeadline`]).
#[derive(Clone, Copy)]
struct Timeouts {
    header_read: Duration,
    request: Duration,
}

async fn serve_connection<S>(stream: S, app: Router, timeouts: Timeouts, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .max_buf_size(READ_BUFFER_MAX);
    // The request timeout wraps the router's future here rather than as a
    // router layer, which would box every request's call once more.
    let service = service_fn(move |request: Request<Incoming>| {
        let answer = app.clone().call(detached(request));
        async move {
            match tokio::time::timeout(timeouts.request, answer).await {
                Ok(answered) => answered,
                Err(_) => Ok(api::request_timed_out(timeouts.request)),
            }
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => {
            // Finish the request in progress (if any), then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// The request with its URI and header values copied out of the
/// connection's read buffer. hyper hands them over as slices of that
/// buffer, which keeps the whole of it (up to [`READ_BUFFER_MAX`]) alive
/// for as long as the request, while the connection reads on into a new
/// one: a buffer more for every request waiting for room in the queue. A
/// value that cannot be copied as it is stays a slice.
fn detached<B>(request: Request<B>) -> Request<B> {
    let (mut head, body) = request.into_parts();
    if let Ok(uri) = Uri::try_from(head.uri.to_string()) {
        head.uri = uri;
    }
    for value in head.headers.values_mut() {
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
    Request::from_parts(head, body)
}

/// A certificate and key in PEM files, and the TLS configuration built from
/// them; [`TlsFiles::watch`] rebuilds it when either file changes, for new
/// connections (open ones keep theirs).
pub(crate) struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    every: Duration,
    current: ArcSwap<rustls::ServerConfig>,
}

impl TlsFiles {
    /// `None` when TLS is not configured; an error when the files do not make a configuration.
    pub(crate) fn from_config(config: &TlsConfig) -> anyhow::Result<Option<Arc<TlsFiles>>> {
        let (Some(cert), Some(key)) = (&config.cert, &config.key) else {
            return Ok(None);
        };
        let built = build(cert, key)?;
        Ok(Some(Arc::new(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            every: config.reload_interval,
            current: ArcSwap::from_pointee(built),
        })))
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Checks the files every `reload_interval`; a change that does not
    /// make a valid configuration (say, a new certificate with the old key,
    /// mid-rotation) keeps the previous one and is tried again at the next
    /// change.
    async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut seen = (stamp_of(&self.cert), stamp_of(&self.key));
        let mut ticker = tokio::time::interval(self.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let now = (stamp_of(&self.cert), stamp_of(&self.key));
            if now == seen {
                continue;
            }
            seen = now;
            match build(&self.cert, &self.key) {
                Ok(config) => {
                    self.current.store(Arc::new(config));
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot reload the TLS certificate; the previous one stays")
                }
            }
        }
    }
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn build(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot read the certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("no certificate in {}", cert.display());
    }
    let private = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot read the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .with_context(|| {
            format!(
                "{} and {} do not make a TLS identity",
                cert.display(),
                key.display()
            )
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Bytes;

    #[test]
    fn a_detached_request_holds_nothing_of_the_read_buffer() {
        // As hyper parses a head: the URI and the header values are slices
        // of the connection's read buffer.
        let buffer = Bytes::from(b"/api/v1/logs?x=1 application/json secret".repeat(1000));
        let request = Request::builder()
            .uri(Uri::from_maybe_shared(buffer.slice(0..16)).unwrap())
            .header(
                "content-type",
                HeaderValue::from_maybe_shared(buffer.slice(17..33)).unwrap(),
            )
            .header("authorization", {
                let mut value = HeaderValue::from_maybe_shared(buffer.slice(34..40)).unwrap();
                value.set_sensitive(true);
                value
            })
            .body(())
            .unwrap();
        assert!(!buffer.is_unique());

        let request = detached(request);
        assert!(buffer.is_unique(), "the request still holds the read buffer");
        assert_eq!(request.uri(), "/api/v1/logs?x=1");
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(request.headers()["authorization"], "secret");
        assert!(request.headers()["authorization"].is_sensitive());
    }
}
