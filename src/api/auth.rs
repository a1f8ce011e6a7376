//! Bearer tokens: one for ingestion, one for admin operations, both
//! optional. A token comes from a file (a Kubernetes Secret, re-read when it
//! changes, checked at most once a second) or from the environment.
//!
//! Which scope a request needs is decided by its route:
//! - ingest: `POST /api/v1/logs`, `POST /api/v1/records`, `POST /v1/logs`
//!   (OTLP) and `POST /internal/v1/handoff` (packets from a peer replica) —
//!   the ingestion or the admin token;
//! - admin: `POST /api/v1/analyzers/{id}/health`, `POST /api/v1/dead-letter/replay`,
//!   `GET /api/v1/dead-letter` — the admin token only;
//! - read: everything else — open, unless `auth.protect_reads` (then either
//!   token); `/healthz` and `/readyz` stay open always, for the kubelet.
//!
//! A scope whose token is not configured is open. No token: 401 with
//! `WWW-Authenticate: Bearer`; a token that is not the scope's: 403.

use super::{ApiError, AppState};
use crate::config::AuthConfig;
use crate::sync::LockUnpoisoned;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};
use subtle::ConstantTimeEq;

/// How often a token file is looked at for a change, at most.
const FILE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    Ingest,
    Admin,
    Read,
    /// Probes: never checked.
    Open,
}

/// The scope of a request, from its matched route and method.
pub(crate) fn scope_of(method: &Method, route: Option<&str>) -> Scope {
    let reading = method == Method::GET || method == Method::HEAD;
    match route {
        Some("/api/v1/logs")
        | Some("/api/v1/records")
        | Some("/v1/logs")
        | Some(crate::handoff::HANDOFF_PATH)
            if method == Method::POST =>
        {
            Scope::Ingest
        }
        Some("/api/v1/analyzers/{id}/health") | Some("/api/v1/dead-letter/replay")
            if method == Method::POST =>
        {
            Scope::Admin
        }
        Some("/api/v1/dead-letter") if reading => Scope::Admin,
        Some("/healthz") | Some("/readyz") => Scope::Open,
        _ => Scope::Read,
    }
}

/// The configured tokens.
pub(crate) struct Auth {
    ingest: Option<Token>,
    admin: Option<Token>,
    protect_reads: bool,
}

impl Auth {
    /// Reads the token files once; a missing or empty file stops the start.
    pub(crate) fn from_config(config: &AuthConfig) -> anyhow::Result<Auth> {
        let token = |file: &Option<PathBuf>, value: &Option<String>| -> anyhow::Result<Option<Token>> {
            Ok(match (file, value) {
                (Some(path), _) => Some(Token::File(TokenFile::open(path)?)),
                (None, Some(value)) => Some(Token::Fixed(value.trim().as_bytes().to_vec())),
                (None, None) => None,
            })
        };
        let auth = Auth {
            ingest: token(&config.ingest_token_file, &config.ingest_token)?,
            admin: token(&config.admin_token_file, &config.admin_token)?,
            protect_reads: config.protect_reads,
        };
        match (&auth.ingest, &auth.admin) {
            (Some(_), None) => {
                tracing::warn!("an ingestion token but no admin token: admin operations are open")
            }
            (None, Some(_)) => {
                tracing::warn!("an admin token but no ingestion token: ingestion is open")
            }
            _ => {}
        }
        Ok(auth)
    }

    /// No tokens at all: everything open.
    #[cfg(test)]
    pub(crate) fn open() -> Auth {
        Auth {
            ingest: None,
            admin: None,
            protect_reads: false,
        }
    }

    /// The ingestion token as it is now: what this replica presents to its
    /// peers when it hands packets over (they share the configuration).
    pub(crate) fn ingest_token(&self) -> Option<String> {
        let token = self.ingest.as_ref()?;
        let bytes = match token {
            Token::Fixed(bytes) => bytes.clone(),
            Token::File(file) => file.with_current(<[u8]>::to_vec),
        };
        String::from_utf8(bytes).ok()
    }

    /// Whether every request passes: no token is set and reads are open.
    pub(crate) fn is_open(&self) -> bool {
        self.ingest.is_none() && self.admin.is_none() && !self.protect_reads
    }

    /// `Ok` when the presented token (if any) may use `scope`.
    pub(crate) fn check(&self, scope: Scope, presented: Option<&[u8]>) -> Result<(), Denied> {
        let accepted: &[&Option<Token>] = match scope {
            Scope::Open => return Ok(()),
            Scope::Read if !self.protect_reads => return Ok(()),
            Scope::Read => &[&self.ingest, &self.admin],
            Scope::Ingest if self.ingest.is_none() => return Ok(()),
            Scope::Ingest => &[&self.ingest, &self.admin],
            // Never more open than a read.
            Scope::Admin if self.admin.is_none() => return self.check(Scope::Read, presented),
            Scope::Admin => &[&self.admin],
        };
        let Some(presented) = presented else {
            return Err(Denied::Missing);
        };
        // Every configured token is compared, whichever matches, so the time
        // taken does not tell which one (or whether any) did.
        let mut matched = false;
        for token in accepted.iter().copied().flatten() {
            matched |= token.matches(presented);
        }
        if matched {
            Ok(())
        } else {
            Err(Denied::Wrong)
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No bearer token: 401.
    Missing,
    /// A token, but not one this route takes: 403.
    Wrong,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Missing => {
                let mut response = ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "this endpoint needs a bearer token (Authorization: Bearer <token>)",
                )
                .into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"logs-distributor\""),
                );
                response
            }
            Denied::Wrong => ApiError::new(
                StatusCode::FORBIDDEN,
                "the bearer token is not valid for this endpoint (wrong token or wrong scope)",
            )
            .into_response(),
        }
    }
}

/// The middleware: checks the request's token against its route's scope.
pub(crate) async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str());
    let scope = scope_of(request.method(), route);
    let presented = bearer(&request);
    match state.auth.check(scope, presented) {
        Ok(()) => next.run(request).await,
        Err(denied) => denied.into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = token.trim_ascii();
    (!token.is_empty()).then_some(token)
}

enum Token {
    Fixed(Vec<u8>),
    File(TokenFile),
}

impl Token {
    fn matches(&self, presented: &[u8]) -> bool {
        let equal = |expected: &[u8]| bool::from(expected.ct_eq(presented));
        match self {
            Token::Fixed(expected) => equal(expected),
            Token::File(file) => file.with_current(equal),
        }
    }
}

/// A token file, re-read when its modification time or size changes.
struct TokenFile {
    path: PathBuf,
    state: Mutex<FileState>,
}

struct FileState {
    token: Vec<u8>,
    stamp: Option<Stamp>,
    checked: Instant,
}

impl TokenFile {
    fn open(path: &Path) -> anyhow::Result<TokenFile> {
        let (token, stamp) = read_token(path)?;
        Ok(TokenFile {
            path: path.to_path_buf(),
            state: Mutex::new(FileState {
                token,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    fn with_current<T>(&self, use_token: impl FnOnce(&[u8]) -> T) -> T {
        let mut state = self.state.lock_unpoisoned();
        if state.checked.elapsed() >= FILE_CHECK_EVERY {
            state.checked = Instant::now();
            let stamp = stamp_of(&self.path);
            if stamp.is_some() && stamp != state.stamp {
                match read_token(&self.path) {
                    Ok((token, stamp)) => {
                        state.token = token;
                        state.stamp = stamp;
                        tracing::info!(path = %self.path.display(), "token file changed; new token in use");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot re-read the token file; the previous token stays")
                    }
                }
            }
        }
        use_token(&state.token)
    }
}

/// A file's modification time and size: a change in either means a new token.
type Stamp = (SystemTime, u64);

fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_token(path: &Path) -> anyhow::Result<(Vec<u8>, Option<Stamp>)> {
    let stamp = stamp_of(path);
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", path.display()))?;
    let token = bytes.trim_ascii().to_vec();
    if token.is_empty() {
        anyhow::bail!("token file {} is empty", path.display());
    }
    Ok((token, stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(ingest: Option<&str>, admin: Option<&str>, protect_reads: bool) -> Auth {
        Auth::from_config(&AuthConfig {
            ingest_token: ingest.map(String::from),
            admin_token: admin.map(String::from),
            protect_reads,
            ..AuthConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn open_means_every_scope_passes_without_a_token() {
        // `app` leaves the layer out when `is_open`: that must be exactly
        // when the layer would let every request through.
        for ingest in [None, Some("i")] {
            for admin in [None, Some("a")] {
                for protect_reads in [false, true] {
                    let auth = auth(ingest, admin, protect_reads);
                    let all_pass = [Scope::Open, Scope::Read, Scope::Ingest, Scope::Admin]
                        .into_iter()
                        .all(|scope| auth.check(scope, None).is_ok());
                    assert_eq!(auth.is_open(), all_pass, "{ingest:?} {admin:?} {protect_reads}");
                }
            }
        }
        assert!(Auth::open().is_open());
    }

    #[test]
    fn scopes_follow_the_routes() {
        assert_eq!(scope_of(&Method::POST, Some("/api/v1/logs")), Scope::Ingest);
        assert_eq!(scope_of(&Method::POST, Some("/api/v1/records")), Scope::Ingest);
        assert_eq!(scope_of(&Method::POST, Some("/v1/logs")), Scope::Ingest);
        assert_eq!(scope_of(&Method::GET, Some("/api/v1/dead-letter")), Scope::Admin);
        assert_eq!(
            scope_of(&Method::POST, Some("/api/v1/dead-letter/replay")),
            Scope::Admin
        );
        assert_eq!(
            scope_of(&Method::POST, Some("/api/v1/analyzers/{id}/health")),
            Scope::Admin
        );
        assert_eq!(scope_of(&Method::GET, Some("/api/v1/stats")), Scope::Read);
        assert_eq!(scope_of(&Method::GET, Some("/readyz")), Scope::Open);
        assert_eq!(scope_of(&Method::GET, None), Scope::Read);
    }

    #[test]
    fn tokens_and_scopes() {
        let a = auth(Some("in"), Some("ad"), false);
        assert_eq!(a.check(Scope::Ingest, None), Err(Denied::Missing));
        assert_eq!(a.check(Scope::Ingest, Some(b"in")), Ok(()));
        assert_eq!(a.check(Scope::Ingest, Some(b"ad")), Ok(()));
        assert_eq!(a.check(Scope::Ingest, Some(b"nope")), Err(Denied::Wrong));
        assert_eq!(a.check(Scope::Admin, Some(b"in")), Err(Denied::Wrong));
        assert_eq!(a.check(Scope::Admin, Some(b"ad")), Ok(()));
        assert_eq!(a.check(Scope::Read, None), Ok(()));
        let closed = auth(Some("in"), None, true);
        assert_eq!(closed.check(Scope::Read, None), Err(Denied::Missing));
        assert_eq!(closed.check(Scope::Read, Some(b"in")), Ok(()));
        assert_eq!(closed.check(Scope::Admin, None), Err(Denied::Missing));
        assert_eq!(Auth::open().check(Scope::Admin, None), Ok(()));
    }
}
