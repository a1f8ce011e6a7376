//! Reading a request body whole, held once, within the body budget.
//!
//! axum's `Bytes` extractor keeps every chunk the body arrived in and then
//! copies them into one buffer: twice the body's size at the peak, for each
//! of the requests being read at once. Here each chunk is copied into one
//! buffer, and let go, as it arrives. The buffer doubles as the body grows
//! and takes the size `Content-Length` announced once an eighth of it has
//! arrived (so a false length reserves little, and a large body moves from
//! buffer to buffer only while it is small). A body that arrives in one
//! chunk is not copied at all.
//!
//! Every byte held is granted first from the [`BodyBudget`] shared by all
//! connections, the old buffer and the new one both while the body moves,
//! and the grant goes with the body ([`HeldBody`]).

use super::budget::{BodyBudget, Grant};
use super::{ApiError, AppState};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// `Content-Length` is believed once it is at most this many times what
/// has arrived.
const RESERVE_AHEAD: usize = 8;

/// A body in memory and the share of the body budget that covers it.
pub(super) struct HeldBody {
    bytes: Bytes,
    grant: Grant,
}

impl HeldBody {
    /// `bytes`, covered by `grant`.
    pub(super) fn new(bytes: Bytes, grant: Grant) -> HeldBody {
        HeldBody { bytes, grant }
    }

    /// The bytes, and the grant to keep for as long as they are.
    pub(super) fn into_parts(self) -> (Bytes, Grant) {
        (self.bytes, self.grant)
    }
}

impl std::fmt::Debug for HeldBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldBody")
            .field("bytes", &self.bytes.len())
            .field("granted", &self.grant.bytes())
            .finish()
    }
}

impl std::ops::Deref for HeldBody {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// The body, at most `limit` bytes: 413 once more has been read (not on
/// `Content-Length` alone: a client still sending when the answer comes
/// could lose it to the connection's reset). 503 when the budget has no
/// room for it: the rest of the body is then read and dropped before the
/// answer, for the same reason.
pub(super) async fn read_whole(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    budget: &BodyBudget,
) -> Result<HeldBody, ApiError> {
    let expected = declared_length(headers).unwrap_or(0).min(limit);
    let mut body = body;
    let mut gathered = Gathered::new(budget, limit, expected);
    let mut no_room = None;
    let mut received = 0;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        received += chunk.len();
        if received > limit {
            return Err(ApiError::body_too_large());
        }
        if no_room.is_some() {
            continue;
        }
        if let Err(refused) = gathered.add(chunk, received).await {
            gathered = Gathered::new(budget, limit, expected);
            no_room = Some(refused);
        }
    }
    match no_room {
        Some(refused) => Err(refused),
        None => Ok(gathered.into_body()),
    }
}

/// Middleware for routes whose handlers take their body through axum's
/// extractors: the body is read here, within the budget, and its grant
/// held until the handler has answered.
pub(super) async fn within_budget(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let held = match read_whole(
        &parts.headers,
        body,
        state.limits.max_body_bytes,
        &state.body_budget,
    )
    .await
    {
        Ok(held) => held,
        Err(error) => return error.into_response(),
    };
    let (bytes, grant) = held.into_parts();
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    drop(grant);
    response
}

/// The chunks of a body so far: the first one as it came, or all of them
/// joined.
struct Gathered {
    grant: Grant,
    /// The most the body may hold.
    limit: usize,
    /// What `Content-Length` announced (within `limit`), or 0.
    expected: usize,
    first: Option<Bytes>,
    joined: Vec<u8>,
}

impl Gathered {
    fn new(budget: &BodyBudget, limit: usize, expected: usize) -> Gathered {
        Gathered {
            grant: budget.grant(),
            limit,
            expected,
            first: None,
            joined: Vec::new(),
        }
    }

    /// Keeps `chunk`, which makes `received` bytes in all.
    async fn add(&mut self, chunk: Bytes, received: usize) -> Result<(), ApiError> {
        if self.first.is_none() && self.joined.is_empty() {
            self.grant.grow_to(chunk.len()).await?;
            self.first = Some(chunk);
            return Ok(());
        }
        if self.joined.capacity() < received {
            let believed =
                received <= self.expected && self.expected <= received.saturating_mul(RESERVE_AHEAD);
            let capacity = if believed {
                self.expected
            } else {
                (self.joined.capacity() * 2).max(received).min(self.limit)
            };
            // While the body moves into the new buffer, what held it so far
            // is held too.
            let moving = self.joined.capacity() + self.first.as_ref().map_or(0, Bytes::len);
            self.grant.grow_to(moving + capacity).await?;
            self.joined.reserve_exact(capacity - self.joined.len());
        }
        if let Some(earlier) = self.first.take() {
            self.joined.extend_from_slice(&earlier);
        }
        self.joined.extend_from_slice(&chunk);
        self.grant.shrink_to(self.joined.capacity());
        Ok(())
    }

    fn into_body(self) -> HeldBody {
        let bytes = self.first.unwrap_or_else(|| Bytes::from(self.joined));
        HeldBody::new(bytes, self.grant)
    }
}

/// `Content-Length`, when given (hyper has already refused a malformed one).
fn declared_length(headers: &HeaderMap) -> Option<usize> {
    let text = headers.get(header::CONTENT_LENGTH)?.to_str().ok()?;
    let length: u64 = text.trim().parse().ok()?;
    Some(usize::try_from(length).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, StatusCode};

    fn chunked(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<_> = chunks
            .iter()
            .map(|chunk| Ok::<_, std::convert::Infallible>(Bytes::from_static(chunk)))
            .collect();
        Body::from_stream(futures_util::stream::iter(frames))
    }

    fn declaring(length: usize) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        headers
    }

    fn plenty() -> BodyBudget {
        BodyBudget::new(1 << 40)
    }

    #[tokio::test]
    async fn chunks_are_joined_in_order() {
        let body = chunked(&[b"[{\"a\"", b":1},", b"", b"{\"b\":2}]"]);
        let whole = read_whole(&declaring(17), body, 1024, &plenty()).await.unwrap();
        assert_eq!(&whole[..], b"[{\"a\":1},{\"b\":2}]");
        // Without Content-Length, and with one that lies.
        let whole = read_whole(
            &HeaderMap::new(),
            chunked(&[b"ab", b"cd", b"ef"]),
            1024,
            &plenty(),
        )
        .await
        .unwrap();
        assert_eq!(&whole[..], b"abcdef");
        let whole = read_whole(&declaring(1 << 30), chunked(&[b"ab", b"cd"]), 1 << 31, &plenty())
            .await
            .unwrap();
        assert_eq!(&whole[..], b"abcd");
    }

    #[tokio::test]
    async fn a_body_in_one_chunk_is_not_copied() {
        static TEXT: &[u8] = b"[{\"messages\":[]}]";
        let whole = read_whole(&declaring(TEXT.len()), chunked(&[TEXT]), 1024, &plenty())
            .await
            .unwrap();
        assert_eq!(whole.as_ptr(), TEXT.as_ptr());
    }

    #[tokio::test]
    async fn more_than_the_limit_is_413_whichever_chunk_crosses_it() {
        for chunks in [&[&b"12345"[..]][..], &[b"12", b"34", b"5"], &[b"1234", b"5"]] {
            let error = read_whole(&HeaderMap::new(), chunked(chunks), 4, &plenty())
                .await
                .unwrap_err();
            assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE, "{chunks:?}");
        }
        let exactly = read_whole(&HeaderMap::new(), chunked(&[b"12", b"34"]), 4, &plenty())
            .await
            .unwrap();
        assert_eq!(&exactly[..], b"1234");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_covers_what_a_body_holds_until_it_is_dropped() {
        let budget = BodyBudget::new(64);
        let one = read_whole(&declaring(5), chunked(&[b"12345"]), 1024, &budget)
            .await
            .unwrap();
        let joined = read_whole(
            &declaring(12),
            chunked(&[b"1234", b"5678", b"9abc"]),
            1024,
            &budget,
        )
        .await
        .unwrap();
        // Held: the one chunk (5) and the joined body, sized once from
        // Content-Length (12).
        // Without Content-Length, 24 bytes in 24 chunks move from a buffer
        // of 16 to one of 32: 48 held then, one more than is left.
        let second = read_whole(&HeaderMap::new(), chunked(&[&b"1"[..]; 24]), 1024, &budget).await;
        assert_eq!(second.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        drop(one);
        drop(joined);
        let second = read_whole(&HeaderMap::new(), chunked(&[&b"1"[..]; 24]), 1024, &budget)
            .await
            .unwrap();
        assert_eq!(second.len(), 24);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_without_room_is_read_to_its_end_then_refused_with_503() {
        use futures_util::StreamExt;
        let budget = BodyBudget::new(8);
        let read_to_the_end = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = read_to_the_end.clone();
        let frames = futures_util::stream::iter([&b"1234"[..], b"5678", b"9abc", b"defg"])
            .map(|chunk| Ok::<_, std::convert::Infallible>(Bytes::from_static(chunk)))
            .chain(futures_util::stream::once(async move {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(Bytes::new())
            }));
        let error = read_whole(&declaring(16), Body::from_stream(frames), 1024, &budget)
            .await
            .unwrap_err();
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(error.retry_after, Some(1));
        assert!(read_to_the_end.load(std::sync::atomic::Ordering::SeqCst));
        // Nothing of it is held any more.
        let whole = read_whole(&declaring(8), chunked(&[b"12345678"]), 1024, &budget)
            .await
            .unwrap();
        assert_eq!(&whole[..], b"12345678");
    }
}
