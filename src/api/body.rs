//! Reading a request body whole, held once.
//!
//! axum's `Bytes` extractor keeps every chunk the body arrived in and then
//! copies them into one buffer: twice the body's size at the peak, for each
//! of the requests being read at once. Here the buffer is sized from
//! `Content-Length` once a second chunk arrives (never more than a few
//! times what has arrived, so a false length reserves little) and each chunk
//! is copied in, and let go, as it arrives. A body that arrives in one chunk
//! is not copied at all.

use super::ApiError;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;

/// Room reserved for a body, at most this many times what has arrived.
const RESERVE_AHEAD: usize = 8;

/// The body, at most `limit` bytes: 413 once more has been read (not on
/// `Content-Length` alone: a client still sending when the answer comes
/// could lose it to the connection's reset).
pub async fn read_whole(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = declared_length(headers);
    let mut body = body;
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let received = first.as_ref().map_or(0, Bytes::len) + joined.len() + chunk.len();
        if received > limit {
            return Err(ApiError::body_too_large());
        }
        if first.is_none() && joined.is_empty() {
            first = Some(chunk);
            continue;
        }
        if let Some(earlier) = first.take() {
            let expected = declared.unwrap_or(0).min(limit);
            joined.reserve_exact(expected.min(received * RESERVE_AHEAD).max(received));
            joined.extend_from_slice(&earlier);
        }
        joined.extend_from_slice(&chunk);
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
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

    #[tokio::test]
    async fn chunks_are_joined_in_order() {
        let body = chunked(&[b"[{\"a\"", b":1},", b"", b"{\"b\":2}]"]);
        let whole = read_whole(&declaring(17), body, 1024).await.unwrap();
        assert_eq!(&whole[..], b"[{\"a\":1},{\"b\":2}]");
        // Without Content-Length, and with one that lies.
        let whole = read_whole(&HeaderMap::new(), chunked(&[b"ab", b"cd", b"ef"]), 1024)
            .await
            .unwrap();
        assert_eq!(&whole[..], b"abcdef");
        let whole = read_whole(&declaring(1 << 30), chunked(&[b"ab", b"cd"]), 1 << 31)
            .await
            .unwrap();
        assert_eq!(&whole[..], b"abcd");
    }

    #[tokio::test]
    async fn a_body_in_one_chunk_is_not_copied() {
        static TEXT: &[u8] = b"[{\"messages\":[]}]";
        let whole = read_whole(&declaring(TEXT.len()), chunked(&[TEXT]), 1024)
            .await
            .unwrap();
        assert_eq!(whole.as_ptr(), TEXT.as_ptr());
    }

    #[tokio::test]
    async fn more_than_the_limit_is_413_whichever_chunk_crosses_it() {
        for chunks in [&[&b"12345"[..]][..], &[b"12", b"34", b"5"], &[b"1234", b"5"]] {
            let error = read_whole(&HeaderMap::new(), chunked(chunks), 4)
                .await
                .unwrap_err();
            assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE, "{chunks:?}");
        }
        let exactly = read_whole(&HeaderMap::new(), chunked(&[b"12", b"34"]), 4)
            .await
            .unwrap();
        assert_eq!(&exactly[..], b"1234");
    }
}
