//! `GET /api/v1/openapi.json`: the OpenAPI document of the API, the
//! committed `docs/openapi.json` compiled into the binary.
//!
//! `tests/it/openapi.rs` keeps the document and the router in step: every
//! route is documented, and real answers validate against the schemas.

use axum::http::header;
use axum::response::IntoResponse;

/// The document, exactly as committed.
pub(super) const DOCUMENT: &str = include_str!("../../docs/openapi.json");

pub(super) async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
