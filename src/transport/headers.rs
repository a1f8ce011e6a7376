//! Static extra headers of an analyzer (`headers: {X-Scope-OrgID: tenant}`),
//! sent with every delivery and with probes to the delivery endpoint's
//! origin.
//!
//! A name must be an RFC 9110 token; a value visible ASCII, spaces and tabs
//! (no line breaks, nothing that could split the request). Headers the
//! distributor sets or that decide how a request is framed or routed are
//! refused: `Host`, `Content-Length`, `Content-Type`, `Content-Encoding`,
//! `Transfer-Encoding`, `Connection` and the other hop-by-hop headers,
//! `Expect`, `Idempotency-Key`; and `Authorization`, which belongs in
//! `auth` (from a file) so that no secret sits in the configuration, which
//! `print-config` prints.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Headers the configuration may not set, lower case.
const RESERVED: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "idempotency-key",
    "authorization",
];

/// An analyzer's static extra headers, by name.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct ExtraHeaders(pub BTreeMap<String, String>);

impl ExtraHeaders {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every name legal and not reserved, every value legal, no name twice
    /// (names are case-insensitive); an error names the header.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for (name, value) in &self.0 {
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(format!("headers: {name:?} is not a header name"));
            }
            let lower = name.to_ascii_lowercase();
            if lower == "authorization" {
                return Err(
                    "headers: Authorization is set by `auth` (a token or credentials from files), not here"
                        .into(),
                );
            }
            if RESERVED.contains(&lower.as_str()) {
                return Err(format!(
                    "headers: {name} is set by the distributor and cannot be overridden"
                ));
            }
            if !seen.insert(lower) {
                return Err(format!("headers: {name} is given twice"));
            }
            if value.trim() != value {
                return Err(format!(
                    "headers.{name}: the value has leading or trailing whitespace"
                ));
            }
            if !value
                .bytes()
                .all(|b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
            {
                return Err(format!(
                    "headers.{name}: the value must be visible ASCII, spaces and tabs"
                ));
            }
        }
        Ok(())
    }

    /// Appends each header as a `Name: value\r\n` line.
    pub fn write_lines(&self, out: &mut Vec<u8>) {
        for (name, value) in &self.0 {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// RFC 9110's tchar.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> ExtraHeaders {
        ExtraHeaders(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn legal_headers_are_written_as_lines() {
        let h = headers(&[("X-Scope-OrgID", "tenant-a"), ("X-Api-Version", "2; q=1")]);
        h.check().unwrap();
        let mut out = Vec::new();
        h.write_lines(&mut out);
        assert_eq!(out, b"X-Api-Version: 2; q=1\r\nX-Scope-OrgID: tenant-a\r\n");
    }

    #[test]
    fn illegal_or_reserved_headers_are_refused_with_the_reason() {
        for (pairs, expected) in [
            (vec![("Bad Name", "v")], "\"Bad Name\" is not a header name"),
            (vec![("", "v")], "\"\" is not a header name"),
            (vec![("X-A:", "v")], "is not a header name"),
            (
                vec![("X-A", "one\r\nX-Injected: two")],
                "headers.X-A: the value must be visible ASCII",
            ),
            (vec![("X-A", "caf\u{e9}")], "visible ASCII"),
            (vec![("X-A", " padded")], "leading or trailing whitespace"),
            (
                vec![("content-length", "1")],
                "content-length is set by the distributor",
            ),
            (vec![("Host", "elsewhere")], "Host is set by the distributor"),
            (
                vec![("Content-Type", "text/plain")],
                "Content-Type is set by the distributor",
            ),
            (vec![("Transfer-Encoding", "chunked")], "cannot be overridden"),
            (vec![("Idempotency-Key", "k")], "cannot be overridden"),
            (
                vec![("authorization", "Bearer x")],
                "Authorization is set by `auth`",
            ),
            (
                vec![("X-Tenant", "a"), ("x-tenant", "b")],
                "x-tenant is given twice",
            ),
        ] {
            let error = headers(&pairs).check().unwrap_err();
            assert!(error.contains(expected), "{pairs:?}: {error}");
        }
    }
}
