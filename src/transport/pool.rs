//! One origin's connections (a scheme, host and port): how to open one
//! (TCP, then TLS for `https://`), and the pool of idle kept-alive ones.
//!
//! The most recently used idle connection is taken first; one the server
//! closed while idle (seen with a non-blocking read) is passed over; one
//! unused for [`POOL_IDLE_TIMEOUT`] is closed. When the TLS configuration
//! is rebuilt from changed files (a rotated CA bundle or client
//! certificate), the idle connections, made under the old one, are closed.
//! A host name is resolved on each new connection.

use super::endpoint::Endpoint;
use super::format::DeliveryBody;
use super::stream::Stream;
use super::tls::ClientTls;
use super::ExchangeError;
use crate::sync::LockUnpoisoned;
use http1::{Answer, Connection};
use std::io::IoSlice;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use url::Host;

/// How long an unused pooled connection is kept open.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How an answer's body is framed: a `HEAD` request's answer has none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    WithBody,
    HeadOnly,
}

#[derive(Debug)]
pub(crate) struct Origin {
    host: Host<String>,
    port: u16,
    /// For `https://`.
    tls: Option<ClientTls>,
    /// Kept-alive connections not in use, the most recently used last.
    idle: Mutex<Vec<IdleConnection>>,
}

#[derive(Debug)]
struct IdleConnection {
    connection: Connection<Stream>,
    since: Instant,
}

impl Origin {
    pub(crate) fn new(endpoint: &Endpoint, tls: Option<ClientTls>) -> Origin {
        Origin {
            host: endpoint.host.clone(),
            port: endpoint.port,
            tls,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// One request and its whole answer. The body is let go once it is
    /// written, not held while the server works on it.
    pub(crate) async fn exchange(
        &self,
        head: &[u8],
        body: DeliveryBody<'_>,
        answered: Answered,
    ) -> Result<Answer, ExchangeError> {
        let mut connection = self.send(head, &body.slices()).await?;
        drop(body);
        let (answer, ended) = match answered {
            Answered::WithBody => connection.receive().await,
            Answered::HeadOnly => connection.receive_bodiless().await,
        };
        let answer = answer.map_err(ExchangeError::Request)?;
        self.keep_unless(ended, connection);
        Ok(answer)
    }

    /// Sends a request on a kept-alive connection when there is one that
    /// takes it, otherwise on a new one.
    async fn send(&self, head: &[u8], body: &[IoSlice<'_>]) -> Result<Connection<Stream>, ExchangeError> {
        let connector = self.tls.as_ref().map(|tls| {
            let (connector, rebuilt) = tls.connector();
            if rebuilt {
                self.idle.lock_unpoisoned().clear();
            }
            (connector, tls.server_name())
        });
        if let Some(mut connection) = self.take_idle() {
            if connection.send_vectored(head, body).await.is_ok() {
                return Ok(connection);
            }
        }
        let mut connection = self.connect(connector).await?;
        connection
            .send_vectored(head, body)
            .await
            .map_err(ExchangeError::Request)?;
        Ok(connection)
    }

    async fn connect(
        &self,
        tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
    ) -> Result<Connection<Stream>, ExchangeError> {
        let tcp = match &self.host {
            Host::Domain(name) => TcpStream::connect((name.as_str(), self.port)).await,
            Host::Ipv4(ip) => TcpStream::connect((*ip, self.port)).await,
            Host::Ipv6(ip) => TcpStream::connect((*ip, self.port)).await,
        }
        .map_err(ExchangeError::Connect)?;
        tcp.set_nodelay(true).map_err(ExchangeError::Connect)?;
        let stream = match tls {
            None => Stream::Plain(tcp),
            Some((connector, name)) => {
                let session = connector.connect(name, tcp).await.map_err(ExchangeError::Tls)?;
                Stream::Tls(Box::new(session))
            }
        };
        Ok(Connection::new(stream))
    }

    /// The most recently used idle connection that is still open.
    fn take_idle(&self) -> Option<Connection<Stream>> {
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
    fn keep_unless(&self, ended: bool, connection: Connection<Stream>) {
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

    /// Idle connections kept now.
    #[cfg(test)]
    pub(super) fn idle_count(&self) -> usize {
        self.idle.lock_unpoisoned().len()
    }
}
