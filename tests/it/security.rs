//! Access control and transport hardening: bearer tokens and their scopes,
//! token file rotation, the header-read and request timeouts, the bound on
//! connections, and TLS with certificate rotation.

use crate::support::config::{write_config, Config};
use crate::support::distributor::Distributor;
use crate::support::http::Reply;
use crate::support::in_process::Server;
use crate::support::packets::packets;
use crate::support::pki::Pki;
use crate::support::poll::{eventually, DEADLINE};
use crate::support::processes::command;
use crate::support::serial::beside_others;
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

const INGEST: &str = "ingest-secret-1";
const ADMIN: &str = "admin-secret-1";

/// A server whose tokens live in files (as a mounted Secret would).
async fn with_tokens(auth_extra: &str) -> (Server, tempfile::TempDir, PathBuf, PathBuf) {
    let secrets = tempfile::tempdir().unwrap();
    let ingest = secrets.path().join("ingest-token");
    let admin = secrets.path().join("admin-token");
    std::fs::write(&ingest, format!("{INGEST}\n")).unwrap();
    std::fs::write(&admin, ADMIN).unwrap();
    let auth = format!(
        "{{ingest_token_file: {:?}, admin_token_file: {:?}{auth_extra}}}",
        ingest.display().to_string(),
        admin.display().to_string()
    );
    let server = Server::start(&Config::four(0).section("auth", &auth)).await;
    (server, secrets, ingest, admin)
}

async fn get_as(server: &Server, path: &str, token: Option<&str>) -> Reply {
    let mut request = server.http.get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    server.send(request).await
}

async fn post_as(server: &Server, path: &str, token: Option<&str>, body: serde_json::Value) -> Reply {
    let mut request = server.http.post(server.url(path)).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    server.send(request).await
}

#[tokio::test]
async fn tokens_guard_ingestion_and_admin_operations() {
    let (server, _secrets, _, _) = with_tokens("").await;

    let missing = post_as(&server, "/api/v1/logs", None, packets("no-token", 1)).await;
    missing.expect(401);
    assert!(missing.error().contains("bearer token"));
    assert!(missing.header("www-authenticate").unwrap().starts_with("Bearer"));
    let basic = server
        .send(
            server
                .http
                .post(server.url("/api/v1/logs"))
                .basic_auth("user", Some("pass"))
                .json(&packets("basic", 1)),
        )
        .await;
    basic.expect(401);
    post_as(&server, "/api/v1/logs", Some("guess"), packets("wrong", 1))
        .await
        .expect(403)
        .error();
    post_as(&server, "/api/v1/logs", Some(INGEST), packets("ingest", 1))
        .await
        .expect(202);
    post_as(&server, "/api/v1/logs", Some(ADMIN), packets("admin", 1))
        .await
        .expect(202);

    // Admin operations: the admin token only; the ingestion token is the wrong scope.
    let health = "/api/v1/analyzers/analyzer-a1/health";
    post_as(&server, health, None, json!({"mode": "auto"}))
        .await
        .expect(401);
    let scope = post_as(&server, health, Some(INGEST), json!({"mode": "auto"})).await;
    scope.expect(403);
    assert!(scope.error().contains("scope"));
    post_as(&server, health, Some(ADMIN), json!({"mode": "auto"}))
        .await
        .expect(200);
    get_as(&server, "/api/v1/dead-letter", None).await.expect(401);
    get_as(&server, "/api/v1/dead-letter", Some(INGEST))
        .await
        .expect(403);
    get_as(&server, "/api/v1/dead-letter", Some(ADMIN))
        .await
        .expect(200);
    post_as(&server, "/api/v1/dead-letter/replay", Some(INGEST), json!({}))
        .await
        .expect(403);
    post_as(&server, "/api/v1/dead-letter/replay", Some(ADMIN), json!({}))
        .await
        .expect(202);

    // Reads stay open by default.
    for path in [
        "/api/v1/health",
        "/api/v1/stats",
        "/api/v1/analyzers",
        "/api/v1/traffic",
        "/api/v1/openapi.json",
        "/metrics",
        "/healthz",
        "/readyz",
        "/",
        "/ui/app.js",
    ] {
        get_as(&server, path, None).await.expect(200);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn protect_reads_closes_the_reads_but_not_the_probes() {
    let (server, _secrets, _, _) = with_tokens(", protect_reads: true").await;
    for path in [
        "/api/v1/stats",
        "/api/v1/analyzers",
        "/metrics",
        "/",
        "/api/v1/openapi.json",
    ] {
        get_as(&server, path, None).await.expect(401);
        get_as(&server, path, Some("guess")).await.expect(403);
        get_as(&server, path, Some(INGEST)).await.expect(200);
        get_as(&server, path, Some(ADMIN)).await.expect(200);
    }
    for path in ["/healthz", "/readyz"] {
        get_as(&server, path, None).await.expect(200);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_rotated_token_file_is_picked_up_without_a_restart() {
    let (server, _secrets, ingest, admin) = with_tokens("").await;
    get_as(&server, "/api/v1/dead-letter", Some(ADMIN))
        .await
        .expect(200);
    // As a Secret update does: a new file swapped in by rename.
    let staged = admin.with_extension("new");
    std::fs::write(&staged, "admin-secret-2\n").unwrap();
    std::fs::rename(&staged, &admin).unwrap();
    std::fs::write(&ingest, "ingest-secret-2").unwrap();
    eventually("the new admin token accepted", DEADLINE, || async {
        let reply = get_as(&server, "/api/v1/dead-letter", Some("admin-secret-2")).await;
        if reply.status == 200 {
            Ok(())
        } else {
            Err(format!("{}", reply.status))
        }
    })
    .await;
    get_as(&server, "/api/v1/dead-letter", Some(ADMIN))
        .await
        .expect(403);
    eventually("the new ingestion token accepted", DEADLINE, || async {
        let reply = post_as(&server, "/api/v1/logs", Some("ingest-secret-2"), packets("r", 1)).await;
        if reply.status == 202 {
            Ok(())
        } else {
            Err(format!("{}", reply.status))
        }
    })
    .await;
    post_as(&server, "/api/v1/logs", Some(INGEST), packets("old", 1))
        .await
        .expect(403);
    server.shutdown().await;
}

/// Whether the server closed `stream` (end of file or reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0; 512];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408 or the like before the close
        }
    }
}

#[tokio::test]
async fn a_connection_trickling_its_headers_is_closed_after_the_header_read_timeout() {
    let _gate = beside_others().await;
    let server = Server::start(&Config::four(0).section("server", "{header_read_timeout: 1s}")).await;
    let addr = server.running().addr();
    let mut loris = TcpStream::connect(addr).await.unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let trickle = b"GET /api/v1/health HTTP/1.1\r\nHost: loris\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut_after = None;
    for byte in trickle {
        if loris.write_all(&[*byte]).await.is_err() {
            cut_after = Some(started.elapsed());
            break;
        }
        // Others are served meanwhile.
        server.get("/api/v1/health").await.expect(200);
        if started.elapsed() > Duration::from_secs(4) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let closed = cut_after.is_some() || closed_within(&mut loris, Duration::from_secs(2)).await;
    assert!(
        closed,
        "the trickling connection is still open after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(6));
    assert!(
        closed_within(&mut silent, Duration::from_millis(500)).await,
        "a connection that never sent a byte is still open"
    );
    // An idle keep-alive connection is closed after the same time.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: idle\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut idle, Duration::from_secs(3)).await,
        "an idle keep-alive connection is still open"
    );
    server.get("/api/v1/health").await.expect(200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_slower_than_the_request_timeout_is_answered_408() {
    let _gate = beside_others().await;
    let server = Server::start(&Config::four(0).section("server", "{request_timeout: 1s}")).await;
    let mut slow = TcpStream::connect(server.running().addr()).await.unwrap();
    slow.write_all(
        b"POST /api/v1/logs HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{\"messages\":",
    )
    .await
    .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.stats().await["total_packets_received"], 0);
    server.shutdown().await;
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_until_one_closes() {
    let _gate = beside_others().await;
    let server = Server::start(&Config::four(0).section("server", "{max_connections: 3}")).await;
    let addr = server.running().addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let fourth = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: fourth\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !fourth.is_finished(),
        "a 4th connection was served while 3 were open"
    );
    held.pop();
    let answer = tokio::time::timeout(Duration::from_secs(3), fourth)
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
    server.shutdown().await;
}

// ---------------------------------------------------------------- clients that never read

/// A client that pipelines requests for a 58 KB document and never reads an
/// answer, its receive buffer small so that the server's writes stall at
/// once. The task holds the connection open until it is aborted.
async fn non_reader(addr: std::net::SocketAddr) -> tokio::task::JoinHandle<()> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    tokio::spawn(async move {
        let requests = b"GET /api/v1/openapi.json HTTP/1.1\r\nHost: non-reader\r\n\r\n".repeat(2000);
        let _ = stream.write_all(&requests).await;
        std::future::pending::<()>().await;
        drop(stream);
    })
}

/// The binary with `server` and `shutdown` settings, and its directory.
/// Its idle keep-alive connections close after `header_read_timeout`
/// (1 s here), so that the readiness probe's connection has let go of its
/// slot when this returns.
async fn binary_with(server: &str, shutdown: &str) -> (Distributor, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    // Unset, the wait for room stays below the request timeouts these
    // tests set (half of them).
    let config = Config::four(0).section("server", server).shutdown(shutdown);
    let path = write_config(dir.path(), "config.yaml", &config);
    let process = Distributor::start(&path, &dir.path().join("data"), dir.path()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    (process, dir)
}

/// A `GET /healthz` on a fresh connection: the answer's first line.
async fn health_on_a_new_connection(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: fourth\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Takes the three connections `max_connections: 3` allows with clients
/// that never read their answers, and gives them time to fill the socket.
async fn fill_with_non_readers(port: u16) -> Vec<tokio::task::JoinHandle<()>> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut non_readers = Vec::new();
    for _ in 0..3 {
        non_readers.push(non_reader(addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    non_readers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_their_answers_are_closed_and_free_their_connections() {
    let _gate = beside_others().await;
    let (process, _dir) = binary_with(
        "{max_connections: 3, header_read_timeout: 1s, request_timeout: 1s}",
        "{drain_timeout: 1s}",
    )
    .await;
    let non_readers = fill_with_non_readers(process.port).await;
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(5), health_on_a_new_connection(process.port))
        .await
        .unwrap_or_else(|_| {
            panic!("three clients that never read their answers (max_connections: 3) still lock a fourth out after 5 s")
        });
    assert_eq!(answer, "HTTP/1.1 200 OK");
    eprintln!("a fourth client served after {:?}", started.elapsed());
    for task in non_readers {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_process_within_the_drain_timeout_while_clients_never_read() {
    let _gate = beside_others().await;
    let (mut process, _dir) = binary_with(
        "{max_connections: 3, header_read_timeout: 1s}",
        "{drain_timeout: 1s}",
    )
    .await;
    let non_readers = fill_with_non_readers(process.port).await;
    let signalled = Instant::now();
    process.sigterm();
    // The drain timeout, and a margin for the final checkpoint and exit.
    let status = process.wait_exit(Duration::from_secs(4)).await;
    assert!(status.success(), "{status}: {}", process.stderr());
    eprintln!("exited {:?} after SIGTERM", signalled.elapsed());
    for task in non_readers {
        task.abort();
    }
}

// ---------------------------------------------------------------- TLS

/// One HTTPS request; answers the response text and the server's certificate.
async fn https_get(
    connector: &tokio_rustls::TlsConnector,
    addr: std::net::SocketAddr,
    path: &str,
) -> std::io::Result<(String, Vec<u8>)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    let presented = tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec();
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer).await;
    Ok((String::from_utf8_lossy(&answer).into_owned(), presented))
}

#[tokio::test]
async fn tls_serves_https_refuses_plain_http_and_picks_up_a_new_certificate() {
    let pki = Pki::new();
    let files = tempfile::tempdir().unwrap();
    let (cert, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    let first = pki.issue("first", 1, &cert, &key);
    let tls = format!(
        "{{cert: {:?}, key: {:?}, reload_interval: 200ms}}",
        cert.display().to_string(),
        key.display().to_string()
    );
    let config = Config::four(0)
        .section("tls", &tls)
        .section("server", "{header_read_timeout: 1s}");
    let server = Server::start(&config).await;
    let addr = server.running().addr();
    let connector = pki.connector();
    // A connection that never starts its handshake is closed after the header-read timeout.
    let mut silent = TcpStream::connect(addr).await.unwrap();

    let (answer, presented) = https_get(&connector, addr, "/api/v1/health").await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(presented, first);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: plain\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    assert!(
        closed_within(&mut silent, Duration::from_secs(3)).await,
        "a connection without a TLS handshake is still open"
    );

    // Rotation: a new certificate (new key, serial and name) for new connections.
    let kept = {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        connector.connect(name, tcp).await.unwrap()
    };
    let second = pki.issue("second", 2, &cert, &key);
    assert_ne!(first, second);
    let started = Instant::now();
    eventually("the new certificate presented", DEADLINE, || async {
        match https_get(&connector, addr, "/api/v1/health").await {
            Ok((answer, presented)) if presented == second && answer.starts_with("HTTP/1.1 200") => Ok(()),
            Ok((answer, _)) => Err(format!(
                "still the old certificate; {}",
                answer.lines().next().unwrap_or("")
            )),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // A connection made before the rotation keeps working.
    let mut kept = kept;
    kept.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = kept.read_to_end(&mut answer).await;
    assert!(answer.starts_with(b"HTTP/1.1 200"));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_security_settings_are_refused_at_start() {
    use logs_distributor::config::Settings;
    let err = Settings::from_yaml("tls: {cert: /x.pem}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls"), "{err}");
    let err = Settings::from_yaml("auth: {protect_reads: true}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("auth.protect_reads"), "{err}");
    let err = Settings::from_yaml("server: {max_connections: 0}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.max_connections"), "{err}");
    let err = Settings::from_yaml("server: {worker_threads: 0}\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("server.worker_threads"), "{err}");
    let threads = Settings::from_yaml("server: {worker_threads: 3}\n").unwrap();
    assert_eq!(threads.server.worker_threads, Some(3));
    // A token file that is not there stops the start.
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::from_yaml(&format!(
        "auth: {{admin_token_file: {:?}}}\n",
        dir.path().join("missing").display().to_string()
    ))
    .unwrap();
    settings.listen = "127.0.0.1:0".into();
    settings.data_dir = dir.path().join("data");
    let err = match logs_distributor::service::start(settings).await {
        Ok(_) => panic!("started without its token file"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("token file"), "{err}");
}

#[tokio::test]
async fn the_binary_takes_tokens_from_the_environment_and_token_files_from_flags() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "config.yaml", &Config::four(0));
    let admin = dir.path().join("admin-token");
    std::fs::write(&admin, "from-a-file").unwrap();
    let data = dir.path().join("data");
    let process = Distributor::start_with(dir.path(), |command, port| {
        command
            .args(["--listen", &format!("127.0.0.1:{port}"), "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data)
            .arg("--admin-token-file")
            .arg(&admin)
            .env("LD_INGEST_TOKEN", "from-the-env");
    })
    .await;
    let api = &process.api;
    let post = |token: &str| {
        api.http
            .post(api.url("/api/v1/logs"))
            .bearer_auth(token)
            .json(&packets("bin", 1))
    };
    api.post_logs(&packets("none", 1)).await.expect(401);
    api.send(post("from-the-env")).await.expect(202);
    api.send(post("from-a-file")).await.expect(202);
    api.send(
        api.http
            .get(api.url("/api/v1/dead-letter"))
            .bearer_auth("from-the-env"),
    )
    .await
    .expect(403);
    api.send(
        api.http
            .get(api.url("/api/v1/dead-letter"))
            .bearer_auth("from-a-file"),
    )
    .await
    .expect(200);
    // The token itself never appears in the printed configuration.
    let printed = command()
        .args(["print-config", "--admin-token-file"])
        .arg(&admin)
        .env("LD_INGEST_TOKEN", "from-the-env")
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("admin_token_file"), "{printed}");
    assert!(!printed.contains("from-the-env"), "{printed}");
    drop(process);
}
