/// Opens the workers' connections up front, so connecting is not timed as
/// latency. They are handed over as plain sockets: each is registered with
/// the runtime of the thread that drives it.
async fn open_connections(
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

async fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Where requests go: the resolved socket address plus what goes in each request line.
struct Target {
    addr: SocketAddr,
    /// The `Host` header: the URL's authority.
    host: String,
    path: Uri,
}

impl Target {
    async fn resolve(url: &Uri) -> anyhow::Result<Self> {
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
