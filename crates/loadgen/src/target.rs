//! Where the load goes: the `--target` URL resolved to a socket address,
//! and the connections to it (`TCP_NODELAY`, opened up front).

use anyhow::{bail, Context};
use http::Uri;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// Opens the workers' connections up front, so connecting is not timed as
/// latency. They are handed over as plain sockets: each is registered with
/// the runtime of the thread that drives it.
pub(crate) async fn open_connections(
    addr: SocketAddr,
    count: u32,
    timeout: Duration,
) -> Vec<anyhow::Result<std::net::TcpStream>> {
    let mut opening = JoinSet::new();
    for _ in 0..count {
        opening.spawn(async move {
            let stream = tokio::time::timeout(timeout, connect(addr))
                .await
                .with_context(|| format!("connecting to {addr} took longer than --timeout"))??;
            Ok(stream.into_std()?)
        });
    }
    let mut connections = Vec::new();
    while let Some(opened) = opening.join_next().await {
        connections.push(opened.unwrap_or_else(|panic| Err(anyhow::anyhow!(panic))));
    }
    connections
}

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Where requests go: the resolved socket address plus what goes in each request line.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// The `Host` header: the URL's authority.
    pub(crate) host: String,
    pub(crate) path: Uri,
}

impl Target {
    pub(crate) async fn resolve(url: &Uri) -> anyhow::Result<Self> {
        if url.scheme_str() != Some("http") {
            bail!("--target must be a plain http:// URL, got {url}");
        }
        let authority = url.authority().context("--target has no host")?;
        let host = authority.host().trim_start_matches('[').trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(80);
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {authority}"))?
            .next()
            .with_context(|| format!("{authority} resolves to no address"))?;
        let path = url.path_and_query().map_or("/", |path| path.as_str());
        Ok(Self {
            addr,
            host: authority.as_str().to_owned(),
            path: path.parse()?,
        })
    }
}
