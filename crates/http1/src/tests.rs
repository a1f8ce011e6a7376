//! Tests of the client against real servers on loopback that answer
//! from scripts.

use super::*;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A real server on loopback that, for each script, reads one request
/// and writes the script's pieces with pauses between them (so that the
/// client meets them in separate reads); then it closes. It returns the
/// requests it read.
async fn connect_to(scripts: Vec<Vec<&'static str>>) -> (Connection, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut requests = Vec::new();
        for script in scripts {
            let mut request = Vec::new();
            while !is_whole_request(&request) {
                let mut chunk = [0u8; 4096];
                match socket.read(&mut chunk).await.unwrap() {
                    0 => return requests,
                    n => request.extend_from_slice(&chunk[..n]),
                }
            }
            requests.push(String::from_utf8(request).unwrap());
            for piece in script {
                socket.write_all(piece.as_bytes()).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        requests
    });
    (Connection::new(TcpStream::connect(addr).await.unwrap()), server)
}

fn is_whole_request(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .map_or(0, |n| n.parse::<usize>().unwrap());
    body.len() >= length
}

const HEAD: &[u8] = b"POST /api/v1/logs HTTP/1.1\r\nHost: test\r\n";

#[tokio::test]
async fn answers_framed_by_length_arrive_in_pieces_over_one_kept_connection() {
    let (mut connection, server) = connect_to(vec![
        vec!["HTTP/1.1 202 Accepted\r\nConte", "nt-Length: 5\r\n\r\nhe", "llo"],
        vec!["HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"],
    ])
    .await;
    let (answer, ended) = connection.exchange(HEAD, b"[1]").await;
    let answer = answer.unwrap();
    assert_eq!(
        (answer.status, &answer.body[..], ended),
        (202, &b"hello"[..], false)
    );
    assert!(!connection.has_ended());
    let (answer, ended) = connection.exchange(HEAD, b"").await;
    assert_eq!((answer.unwrap().status, ended), (200, false));
    let requests = server.await.unwrap();
    assert_eq!(
        requests,
        [
            "POST /api/v1/logs HTTP/1.1\r\nHost: test\r\nContent-Length: 3\r\n\r\n[1]",
            "POST /api/v1/logs HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n"
        ]
    );
    // The server has closed since: seen without sending anything.
    assert!(connection.has_ended());
}

#[tokio::test]
async fn a_body_in_more_pieces_than_one_writev_takes_arrives_whole_and_in_order() {
    let (mut connection, server) =
        connect_to(vec![vec!["HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"]]).await;
    let numbers: Vec<String> = (0..3000).map(|n| format!("{n},")).collect();
    let pieces: Vec<IoSlice<'_>> = numbers
        .iter()
        .flat_map(|n| [IoSlice::new(n.as_bytes()), IoSlice::new(b"")])
        .collect();
    connection.send_vectored(HEAD, &pieces).await.unwrap();
    let (answer, _) = connection.receive().await;
    assert_eq!(answer.unwrap().status, 202);
    let body = numbers.concat();
    let requests = server.await.unwrap();
    assert_eq!(
        requests,
        [format!(
            "POST /api/v1/logs HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )]
    );
}

#[tokio::test]
async fn a_chunked_answer_is_joined_and_its_trailers_skipped() {
    let (mut connection, _server) = connect_to(vec![vec![
        "HTTP/1.1 207 Multi-Status\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        "A;name=value\r\n0123456789\r\n0\r\n",
        "X-Trailer: t\r\n\r\n",
    ]])
    .await;
    let (answer, ended) = connection.exchange(HEAD, b"x").await;
    let answer = answer.unwrap();
    assert_eq!(
        (answer.status, &answer.body[..], ended),
        (207, &b"abc0123456789"[..], false)
    );
}

#[tokio::test]
async fn the_answer_to_head_is_its_head_alone_and_the_connection_stays() {
    let answers = [
        "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n",
        "HTTP/1.1 204 No Content\r\n\r\n",
    ];
    let (mut connection, server) = connect_to(answers.map(|answer| vec![answer]).to_vec()).await;
    let probe = b"HEAD /health HTTP/1.1\r\nHost: test\r\n";
    for status in [200, 204] {
        connection.send(probe, b"").await.unwrap();
        let (answer, ended) = connection.receive_bodiless().await;
        let answer = answer.unwrap();
        assert_eq!((answer.status, answer.body.len(), ended), (status, 0, false));
    }
    assert_eq!(server.await.unwrap().len(), 2);
}

#[tokio::test]
async fn interim_answers_are_skipped() {
    let (mut connection, _server) = connect_to(vec![vec![
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok",
    ]])
    .await;
    let (answer, _) = connection.exchange(HEAD, b"x").await;
    assert_eq!(answer.unwrap().status, 202);
}

#[tokio::test]
async fn close_and_http_1_0_end_the_connection_after_the_answer() {
    let (mut connection, _server) = connect_to(vec![vec![
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n",
    ]])
    .await;
    let (answer, ended) = connection.exchange(HEAD, b"x").await;
    let answer = answer.unwrap();
    assert_eq!(
        (answer.status, answer.retry_after, ended),
        (503, Some(Duration::from_secs(3)), true)
    );

    let (mut connection, _server) = connect_to(vec![vec!["HTTP/1.0 200 OK\r\n\r\nuntil ", "the end"]]).await;
    let (answer, ended) = connection.exchange(HEAD, b"x").await;
    let answer = answer.unwrap();
    assert_eq!((&answer.body[..], ended), (&b"until the end"[..], true));
}

#[tokio::test]
async fn a_connection_runs_over_any_byte_stream() {
    let (client, mut server) = tokio::io::duplex(64 * 1024);
    let mut connection = Connection::new(client);
    let (answer, ended) = tokio::join!(connection.exchange(HEAD, b"[1]"), async {
        let mut request = Vec::new();
        while !is_whole_request(&request) {
            let mut chunk = [0u8; 4096];
            let read = server.read(&mut chunk).await.unwrap();
            request.extend_from_slice(&chunk[..read]);
        }
        server
            .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
    })
    .0;
    let answer = answer.unwrap();
    assert_eq!((answer.status, &answer.body[..], ended), (202, &b"ok"[..], false));
    assert!(!connection.has_ended());
    drop(server);
    assert!(connection.has_ended());
}

#[test]
fn errors_are_std_errors_that_say_what_went_wrong() {
    fn std_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> String {
        error.to_string()
    }
    assert_eq!(
        std_error(Error::Protocol("no status".into())),
        "invalid HTTP answer: no status"
    );
    assert_eq!(
        std_error(Error::Closed),
        "the server closed the connection before answering"
    );
}

#[test]
fn retry_after_is_read_in_seconds_or_as_an_http_date() {
    assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
    let ahead = SystemTime::now() + Duration::from_secs(90);
    let until = parse_retry_after(&httpdate::fmt_http_date(ahead)).unwrap();
    assert!(
        (Duration::from_secs(88)..=Duration::from_secs(90)).contains(&until),
        "{until:?}"
    );
    assert_eq!(
        parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(Duration::ZERO),
        "a date past: no wait"
    );
    assert_eq!(parse_retry_after("soon"), None);
    assert_eq!(parse_retry_after("-5"), None);
}

#[tokio::test]
async fn a_missing_or_cut_answer_is_an_error() {
    let (mut connection, _server) = connect_to(vec![vec![]]).await;
    let (answer, ended) = connection.exchange(HEAD, b"x").await;
    assert!(matches!(answer, Err(Error::Closed)), "{answer:?}");
    assert!(ended);

    let (mut connection, _server) = connect_to(vec![vec![
        "HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nshort",
    ]])
    .await;
    let (answer, _) = connection.exchange(HEAD, b"x").await;
    assert!(matches!(answer, Err(Error::Truncated)), "{answer:?}");

    let (mut connection, _server) = connect_to(vec![vec![
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFF\r\n",
    ]])
    .await;
    let (answer, _) = connection.exchange(HEAD, b"x").await;
    assert!(matches!(answer, Err(Error::Protocol(_))), "{answer:?}");

    let (mut connection, _server) = connect_to(vec![vec!["SMTP ready\r\n\r\n"]]).await;
    let (answer, _) = connection.exchange(HEAD, b"x").await;
    assert!(matches!(answer, Err(Error::Protocol(_))), "{answer:?}");
}
