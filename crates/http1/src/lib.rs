//! The client's side of an HTTP/1.1 keep-alive connection, for the load
//! generator and for delivery to analyzers: one request at a time, written
//! with one vectored `write` (head and body together, the body, whole or in
//! pieces, not copied),
//! the answer's head parsed by `httparse` and its body framed by
//! `Content-Length`, chunked encoding, or the connection's end.
//!
//! A [`Connection`] runs over any byte stream that is `AsyncRead +
//! AsyncWrite + Unpin`: a `TcpStream` (the default), or a TLS stream
//! wrapping one.
//!
//! It is the least a client can do per request. The load generator costs
//! the machine it shares with the server little more than wrk does (hyper's
//! client spent about 4x wrk's user time per request here), and an idle
//! delivery connection holds a socket and a small read buffer, where hyper's
//! pooled client also kept a task and a request channel per connection.

use bytes::{Buf, Bytes, BytesMut};
use std::future::Future as _;
use std::io::{IoSlice, Write as _};
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Headers an answer may carry; more is a protocol error.
const MAX_HEADERS: usize = 64;
/// The most an answer's head may take.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The longest answer body read; a longer one is a protocol error.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Room made for each read from the socket: answers here are short, and a
/// long body gets room for all of it at once.
const READ_CHUNK: usize = 4 * 1024;

/// What the server answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The answer's `Retry-After`: its seconds, or the time until its
    /// HTTP-date (zero for a date already past); `None` when there is none
    /// or it is neither.
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// Why an exchange got no (whole) answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed; the message carries the I/O error's own.
    #[error("connection error: {0}")]
    Io(std::io::Error),
    /// The answer is not HTTP/1.1 as this client reads it.
    #[error("invalid HTTP answer: {0}")]
    Protocol(String),
    /// The server closed the connection before answering.
    #[error("the server closed the connection before answering")]
    Closed,
    /// The server closed the connection in the middle of its answer.
    #[error("the server closed the connection in the middle of its answer")]
    Truncated,
}

/// How the answer's body ends.
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

/// What the head of an answer says, owned (the parse borrows the buffer).
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
    retry_after: Option<Duration>,
}

/// The request line and `Host` header of a request, for
/// [`Connection::exchange`]'s `head`; the caller adds its own headers.
pub fn request_head(method: &str, target: &str, host: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n")
}

/// One keep-alive connection to a server, over the byte stream `S`.
#[derive(Debug)]
pub struct Connection<S = TcpStream> {
    stream: S,
    /// What has been read and not yet used.
    received: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub fn new(stream: S) -> Connection<S> {
        Connection {
            stream,
            received: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// Whether the server closed the connection (or sent something
    /// unasked) while it was idle between requests: it looks without
    /// waiting. One read is attempted; on a live, quiet connection it finds
    /// nothing ready. It runs outside the task's cooperative budget, which
    /// would otherwise make the stream answer "not ready" when spent.
    pub fn has_ended(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let stream = &mut self.stream;
        let read = std::future::poll_fn(|context| Pin::new(&mut *stream).poll_read(context, &mut probe));
        let read = std::pin::pin!(tokio::task::unconstrained(read));
        read.poll(&mut Context::from_waker(Waker::noop())).is_ready()
    }

    /// Sends `head` (every header line but `Content-Length`, each ending in
    /// CRLF) with `body`, and reads the whole answer. `true` with it when
    /// the connection cannot carry another request.
    pub async fn exchange(&mut self, head: &[u8], body: &[u8]) -> (Result<Answer, Error>, bool) {
        if let Err(error) = self.send(head, body).await {
            return (Err(error), true);
        }
        self.receive().await
    }

    /// The first half of [`Connection::exchange`]: sends the request, so
    /// that the caller can let its body go before the answer comes. After
    /// an error the connection cannot be used.
    pub async fn send(&mut self, head: &[u8], body: &[u8]) -> Result<(), Error> {
        self.send_vectored(head, &[IoSlice::new(body)]).await
    }

    /// [`Connection::send`] of a body in pieces, written in order as one
    /// body without being joined first.
    pub async fn send_vectored(&mut self, head: &[u8], body: &[IoSlice<'_>]) -> Result<(), Error> {
        self.received.clear();
        self.write_request(head, body).await.map_err(Error::Io)
    }

    /// The second half of [`Connection::exchange`]: reads the whole answer
    /// to the request sent.
    pub async fn receive(&mut self) -> (Result<Answer, Error>, bool) {
        self.receive_framed(true).await
    }

    /// [`Connection::receive`] after a `HEAD` request: a head alone, whatever its `Content-Length`.
    pub async fn receive_bodiless(&mut self) -> (Result<Answer, Error>, bool) {
        self.receive_framed(false).await
    }

    async fn receive_framed(&mut self, with_body: bool) -> (Result<Answer, Error>, bool) {
        match self.read_answer(with_body).await {
            Ok((answer, keep_alive)) => (Ok(answer), !keep_alive),
            Err(error) => (Err(error), true),
        }
    }

    async fn read_answer(&mut self, with_body: bool) -> Result<(Answer, bool), Error> {
        let head = loop {
            let head = self.read_head().await?;
            // 1xx answers (100 Continue, 103 Early Hints) precede the real one.
            if !(100..200).contains(&head.status) {
                break head;
            }
        };
        let bodiless = !with_body || head.status == 204 || head.status == 304;
        let body = match head.framing {
            _ if bodiless => Bytes::new(),
            Framing::Length(length) => self.read_exactly(length).await?,
            Framing::Chunked => self.read_chunked().await?,
            Framing::UntilClose => self.read_to_end().await?,
        };
        let keep_alive = head.keep_alive && (bodiless || !matches!(head.framing, Framing::UntilClose));
        Ok((
            Answer {
                status: head.status,
                retry_after: head.retry_after,
                body,
            },
            keep_alive,
        ))
    }

    /// Writes `head`, the `Content-Length` line and `body`, in as few
    /// vectored writes as the socket takes, copying none of them.
    async fn write_request(&mut self, head: &[u8], body: &[IoSlice<'_>]) -> std::io::Result<()> {
        let length: usize = body.iter().map(|piece| piece.len()).sum();
        let mut length_line = std::io::Cursor::new([0u8; 48]);
        write!(length_line, "Content-Length: {length}\r\n\r\n")?;
        let length_line_end = length_line.position() as usize;
        let mut buffers = Vec::with_capacity(2 + body.len());
        buffers.push(IoSlice::new(head));
        buffers.push(IoSlice::new(&length_line.get_ref()[..length_line_end]));
        buffers.extend(
            body.iter()
                .filter(|piece| !piece.is_empty())
                .map(|piece| IoSlice::new(piece)),
        );
        let mut remaining = &mut buffers[..];
        while !remaining.is_empty() {
            // More pieces than the kernel takes at once (IOV_MAX) are
            // written in turns: std hands it as many as it takes.
            let written = self.stream.write_vectored(remaining).await?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut remaining, written);
        }
        // A TLS stream may hold its last records until flushed.
        self.stream.flush().await
    }

    async fn read_head(&mut self) -> Result<Head, Error> {
        loop {
            if !self.received.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut answer = httparse::Response::new(&mut headers);
                match answer.parse(&self.received) {
                    Ok(httparse::Status::Complete(length)) => {
                        let head = describe(&answer)?;
                        self.received.advance(length);
                        return Ok(head);
                    }
                    Ok(httparse::Status::Partial) if self.received.len() > MAX_HEAD_BYTES => {
                        return Err(Error::Protocol(format!(
                            "head longer than {MAX_HEAD_BYTES} bytes"
                        )));
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(error) => return Err(Error::Protocol(error.to_string())),
                }
            }
            let before = self.received.len();
            if !self.fill().await? {
                return Err(if before == 0 {
                    Error::Closed
                } else {
                    Error::Truncated
                });
            }
        }
    }

    /// Reads more into `received`; `false` at the connection's end.
    async fn fill(&mut self) -> Result<bool, Error> {
        self.received.reserve(READ_CHUNK);
        let read = self
            .stream
            .read_buf(&mut self.received)
            .await
            .map_err(Error::Io)?;
        Ok(read > 0)
    }

    async fn read_exactly(&mut self, length: usize) -> Result<Bytes, Error> {
        if length > MAX_BODY_BYTES {
            return Err(too_long());
        }
        while self.received.len() < length {
            self.received.reserve((length - self.received.len()).min(1 << 20));
            if !self.fill().await? {
                return Err(Error::Truncated);
            }
        }
        Ok(self.received.split_to(length).freeze())
    }

    async fn read_to_end(&mut self) -> Result<Bytes, Error> {
        while self.fill().await? {
            if self.received.len() > MAX_BODY_BYTES {
                return Err(too_long());
            }
        }
        Ok(self.received.split().freeze())
    }

    async fn read_chunked(&mut self) -> Result<Bytes, Error> {
        let mut body = BytesMut::new();
        loop {
            let line = self.read_line().await?;
            let size_text = line.split(|&b| b == b';').next().unwrap_or_default();
            let size = std::str::from_utf8(size_text)
                .ok()
                .and_then(|text| usize::from_str_radix(text.trim(), 16).ok())
                .ok_or_else(|| {
                    Error::Protocol(format!(
                        "bad chunk size line {:?}",
                        String::from_utf8_lossy(&line)
                    ))
                })?;
            if size == 0 {
                // Trailers, if any, up to the empty line.
                while !self.read_line().await?.is_empty() {}
                return Ok(body.freeze());
            }
            let with_crlf = size
                .checked_add(2)
                .ok_or_else(|| Error::Protocol(format!("chunk of {size} bytes")))?;
            let chunk = self.read_exactly(with_crlf).await?;
            if !chunk.ends_with(b"\r\n") {
                return Err(Error::Protocol("a chunk does not end with CRLF".into()));
            }
            if body.len() + size > MAX_BODY_BYTES {
                return Err(too_long());
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    /// One CRLF-ended line, without its CRLF.
    async fn read_line(&mut self) -> Result<Bytes, Error> {
        loop {
            if let Some(end) = self.received.windows(2).position(|pair| pair == b"\r\n") {
                let line = self.received.split_to(end + 2).freeze();
                return Ok(line.slice(..end));
            }
            if self.received.len() > MAX_HEAD_BYTES {
                return Err(Error::Protocol("a chunk line is too long".into()));
            }
            if !self.fill().await? {
                return Err(Error::Truncated);
            }
        }
    }
}

fn too_long() -> Error {
    Error::Protocol(format!("body longer than {MAX_BODY_BYTES} bytes"))
}

/// A `Retry-After` value (RFC 9110): a number of seconds, or an HTTP-date
/// read as the time from now until then.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// The status, framing, keep-alive and `Retry-After` of a parsed head.
fn describe(answer: &httparse::Response<'_, '_>) -> Result<Head, Error> {
    let status = answer.code.ok_or_else(|| Error::Protocol("no status".into()))?;
    let mut length = None;
    let mut chunked = false;
    let mut retry_after = None;
    // HTTP/1.1 keeps the connection unless told to close; 1.0 the reverse.
    let mut keep_alive = answer.version == Some(1);
    for header in answer.headers.iter() {
        let value = std::str::from_utf8(header.value).unwrap_or_default().trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let parsed = value
                .parse::<usize>()
                .map_err(|_| Error::Protocol(format!("Content-Length {value:?}")))?;
            if length.is_some_and(|earlier| earlier != parsed) {
                return Err(Error::Protocol("two different Content-Lengths".into()));
            }
            length = Some(parsed);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("retry-after") {
            retry_after = parse_retry_after(value);
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = match (chunked, length) {
        (true, _) => Framing::Chunked,
        (false, Some(length)) => Framing::Length(length),
        (false, None) => Framing::UntilClose,
    };
    Ok(Head {
        status,
        framing,
        keep_alive,
        retry_after,
    })
}

#[cfg(test)]
mod tests;
