//! `Content-Encoding: gzip` undone: every member of the stream (RFC 1952
//! allows any number of them one after another, as `cat a.gz b.gz` makes),
//! never more than `limits.max_body_bytes` inflated, and every byte granted
//! from the body budget before it is written. Bytes after the last member
//! that are not gzip are refused, not ignored.

use super::body::HeldBody;
use super::budget::BodyBudget;
use super::ApiError;
use axum::body::Bytes;
use axum::http::StatusCode;
use flate2::bufread::GzDecoder;
use std::io::Read;

/// The two bytes every gzip member starts with.
const MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The most deflate inflates its input by (RFC 1951: a 258-byte match in
/// about two bits), so that a member's claimed size is believed no
/// further than its compressed size allows.
const MAX_RATIO: usize = 1032;
/// The smallest buffer an inflated body starts with.
const MIN_CAPACITY: usize = 4096;

/// Inflates `compressed`, at most `limit` bytes (413 past it); 400 when it
/// is not gzip or has anything but gzip after its last member; 503 when
/// the budget has no room for it.
pub(super) async fn inflate(
    compressed: &[u8],
    limit: usize,
    budget: &BodyBudget,
) -> Result<HeldBody, ApiError> {
    let mut grant = budget.grant();
    // Zero-filled up to its length; the first `filled` bytes are the body.
    let mut inflated: Vec<u8> = Vec::new();
    let mut filled = 0;
    let mut rest = compressed;
    loop {
        let mut member = GzDecoder::new(rest);
        loop {
            if filled == inflated.len() {
                // Full: grow only for a byte that is really there.
                let mut probe = [0; 1];
                match member.read(&mut probe) {
                    Ok(0) => break,
                    Ok(_) if filled == limit => return Err(too_large(limit)),
                    Ok(_) => {}
                    Err(e) => return Err(not_gzip(&e)),
                }
                let capacity = if filled == 0 {
                    first_capacity(compressed, limit)
                } else {
                    (filled * 2).min(limit)
                };
                // While the body moves into the new buffer, the old one is
                // held too.
                grant.grow_to(inflated.len() + capacity).await?;
                inflated.resize(capacity, 0);
                grant.shrink_to(capacity);
                inflated[filled] = probe[0];
                filled += 1;
                continue;
            }
            match member.read(&mut inflated[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) => return Err(not_gzip(&e)),
            }
        }
        rest = member.into_inner();
        if rest.is_empty() {
            break;
        }
        if !rest.starts_with(&MAGIC) {
            return Err(ApiError::bad_request(format!(
                "body is not valid gzip: {} bytes after the end of the gzip data are not gzip",
                rest.len()
            )));
        }
    }
    inflated.truncate(filled);
    Ok(HeldBody::new(Bytes::from(inflated), grant))
}

/// The buffer to start with: the size the last member says it inflates to
/// (its last 4 bytes; the whole body's size when there is one member),
/// believed no further than the compressed size and the limit allow.
fn first_capacity(compressed: &[u8], limit: usize) -> usize {
    let claimed = compressed
        .len()
        .checked_sub(4)
        .and_then(|at| compressed[at..].try_into().ok())
        .map_or(0, |size: [u8; 4]| u32::from_le_bytes(size) as usize);
    claimed
        .min(compressed.len().saturating_mul(MAX_RATIO))
        .max(MIN_CAPACITY)
        .min(limit)
}

fn not_gzip(error: &std::io::Error) -> ApiError {
    ApiError::bad_request(format!("body is not valid gzip: {error}"))
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("decompressed body is larger than limits.max_body_bytes ({limit} bytes)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn plenty() -> BodyBudget {
        BodyBudget::new(1 << 40)
    }

    #[tokio::test]
    async fn every_member_is_inflated_in_order() {
        let body = [gzip(b"first,"), gzip(b""), gzip(&b"second".repeat(5000))].concat();
        let inflated = inflate(&body, 1 << 20, &plenty()).await.unwrap();
        assert_eq!(&inflated[..], [&b"first,"[..], &b"second".repeat(5000)].concat());
        let empty = inflate(&gzip(b""), 1 << 20, &plenty()).await.unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn anything_after_the_last_member_is_refused() {
        for (trailer, says) in [
            (
                &b"junk"[..],
                "4 bytes after the end of the gzip data are not gzip",
            ),
            (&[0; 3][..], "3 bytes after the end of the gzip data are not gzip"),
            (&[0x1f, 0x8b, 8][..], "body is not valid gzip"),
        ] {
            let body = [gzip(b"[]"), trailer.to_vec()].concat();
            let error = inflate(&body, 1 << 20, &plenty()).await.unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{trailer:?}");
            assert!(error.message.contains(says), "{trailer:?}: {}", error.message);
        }
        let error = inflate(b"[]", 1 << 20, &plenty()).await.unwrap_err();
        assert!(
            error.message.starts_with("body is not valid gzip"),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn the_limit_holds_across_members() {
        let exactly = [gzip(&[b'a'; 600]), gzip(&[b'b'; 424])].concat();
        assert_eq!(inflate(&exactly, 1024, &plenty()).await.unwrap().len(), 1024);
        let over = [gzip(&[b'a'; 600]), gzip(&[b'b'; 425])].concat();
        let error = inflate(&over, 1024, &plenty()).await.unwrap_err();
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(error.message.contains("(1024 bytes)"), "{}", error.message);
    }

    #[tokio::test(start_paused = true)]
    async fn a_member_is_sized_from_its_trailer_and_held_within_the_budget() {
        let budget = BodyBudget::new(1 << 20);
        let body = gzip(&vec![0; 300_000]);
        let inflated = inflate(&body, 1 << 20, &budget).await.unwrap();
        assert_eq!(inflated.len(), 300_000);
        let (bytes, grant) = inflated.into_parts();
        assert_eq!(grant.bytes(), 300_000, "one buffer of the claimed size");
        drop(bytes);
        // A false claim is believed no further than the compressed size allows.
        let mut lying = gzip(b"[]");
        let at = lying.len() - 4;
        lying[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(first_capacity(&lying, 1 << 30), lying.len() * MAX_RATIO);
        // No room for it: 503.
        let small = BodyBudget::new(100_000);
        let error = inflate(&body, 1 << 20, &small).await.unwrap_err();
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
    }
}
