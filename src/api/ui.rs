//! The status page: framework-free HTML, CSS and JS from `ui/`, compiled
//! into the binary and served at `/` and `/ui/{file}`. The page polls the
//! JSON API; it holds no state of its own on the server.
//!
//! Every response may be stored but must be revalidated (`Cache-Control:
//! no-cache`) against an ETag computed from the bytes at compile time, so a
//! new binary never serves a page with an old script, and an unchanged
//! asset costs a 304.

use super::ApiError;
use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One file of the page.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
    /// FNV-1a of `body`: changes whenever the file does.
    hash: u64,
}

const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("../../ui/", $name));
        Asset {
            name: $name,
            content_type: $content_type,
            body: BODY,
            hash: fnv1a(BODY),
        }
    }};
}

const INDEX: Asset = asset!("index.html", "text/html; charset=utf-8");

/// What `/ui/{file}` serves.
const ASSETS: &[Asset] = &[
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
];

/// The page loads only its own files and talks only to its own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /`: the status page.
pub(super) async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

/// `GET /ui/{file}`: the page's script, style sheet and icon.
pub(super) async fn asset(file: Result<Path<String>, PathRejection>, headers: HeaderMap) -> Response {
    let name = match file {
        Ok(Path(name)) => name,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => serve(asset, &headers),
        None => ApiError::not_found(format!("no such file of the status page: /ui/{name}")).into_response(),
    }
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.hash);
    let mut response = if matches(request, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("a quoted hex ETag is a valid header value"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    response
}

/// Whether `If-None-Match` names `etag` (weak or strong) or is `*`.
fn matches(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    async fn get(file: &str, if_none_match: Option<&str>) -> Response {
        let mut headers = HeaderMap::new();
        if let Some(tag) = if_none_match {
            headers.insert(header::IF_NONE_MATCH, HeaderValue::from_str(tag).unwrap());
        }
        if file.is_empty() {
            index(headers).await
        } else {
            asset(Ok(Path(file.to_string())), headers).await
        }
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response.headers().get(name).unwrap().to_str().unwrap()
    }

    #[tokio::test]
    async fn every_file_has_its_type_and_revalidates() {
        for (file, content_type) in [
            ("", "text/html; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("style.css", "text/css; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let response = get(file, None).await;
            assert_eq!(response.status(), StatusCode::OK, "{file}");
            assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            let etag = header_of(&response, header::ETAG).to_string();
            let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
            assert!(!body.is_empty(), "{file} is empty");

            let again = get(file, Some(&etag)).await;
            assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{file}");
            assert_eq!(header_of(&again, header::ETAG), etag);
            assert!(to_bytes(again.into_body(), usize::MAX).await.unwrap().is_empty());

            let weak_in_a_list = format!("\"other\", W/{etag}");
            assert_eq!(
                get(file, Some(&weak_in_a_list)).await.status(),
                StatusCode::NOT_MODIFIED
            );
            assert_eq!(get(file, Some("\"stale\"")).await.status(), StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn the_page_has_a_strict_content_security_policy() {
        let response = get("", None).await;
        let policy = header_of(&response, header::CONTENT_SECURITY_POLICY);
        assert!(policy.contains("script-src 'self'"), "{policy}");
        assert!(policy.contains("connect-src 'self'"), "{policy}");
        assert_eq!(header_of(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    }

    #[tokio::test]
    async fn unknown_files_are_404() {
        for file in ["nope.js", "index.html", "..%2FCargo.toml", ""] {
            let response = asset(Ok(Path(file.to_string())), HeaderMap::new()).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{file:?}");
        }
    }

    #[test]
    fn the_page_links_only_files_that_are_served() {
        let html = std::str::from_utf8(INDEX.body).unwrap();
        let linked: Vec<&str> = html
            .split("\"/ui/")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        assert!(linked.len() >= 3, "{linked:?}");
        for name in linked {
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "index.html links /ui/{name}"
            );
        }
    }

    #[test]
    fn etags_differ_between_files() {
        let mut hashes: Vec<u64> = ASSETS.iter().chain([&INDEX]).map(|a| a.hash).collect();
        hashes.sort();
        hashes.dedup();
        assert_eq!(hashes.len(), ASSETS.len() + 1);
    }
}
