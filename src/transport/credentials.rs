//! How the distributor authenticates to an analyzer: a bearer token or
//! basic credentials, read from files (or a Kubernetes Secret) and re-read
//! when they change ([`Reloading`]), sent as the `Authorization` header of
//! every delivery and of probes to the delivery endpoint's origin.
//!
//! Surrounding whitespace (a Secret's trailing newline) is trimmed. A token
//! must be visible ASCII (what a header carries unescaped: JWTs, API keys);
//! a username must not hold `:` (RFC 7617). The values are never logged
//! or printed.

use super::material::{Material, Reloading};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An analyzer's credentials, as the configuration says them: exactly one
/// of `token_file`, `username_file` with `password_file`, or
/// `credentials_file`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthOptions {
    /// A bearer token: `Authorization: Bearer <token>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<Material>,
    /// Basic credentials: the username...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username_file: Option<Material>,
    /// ...and the password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<Material>,
    /// Basic credentials in one file, `username:password`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials_file: Option<Material>,
}

impl AuthOptions {
    /// Exactly one way to authenticate; an error names the keys.
    pub fn check(&self) -> Result<(), String> {
        match (
            &self.token_file,
            &self.username_file,
            &self.password_file,
            &self.credentials_file,
        ) {
            (Some(_), None, None, None) | (None, Some(_), Some(_), None) | (None, None, None, Some(_)) => Ok(()),
            (None, None, None, None) => Err(
                "auth: give `token_file`, `username_file` with `password_file`, or `credentials_file`".into(),
            ),
            (None, Some(_), None, None) | (None, None, Some(_), None) => {
                Err("auth: basic credentials need both `username_file` and `password_file`".into())
            }
            _ => Err(
                "auth: give one of `token_file`, `username_file` with `password_file`, or `credentials_file`, not several"
                    .into(),
            ),
        }
    }
}

/// An `Authorization` header line kept current with its files.
#[derive(Debug)]
pub(crate) struct Credentials(Reloading<Vec<u8>>);

impl Credentials {
    /// Reads the files; an error when one is missing, empty or unusable.
    pub(crate) fn new(options: &AuthOptions, what: &str) -> Result<Credentials, String> {
        options.check()?;
        let what = format!("credentials of {what}");
        let line = if let Some(token) = &options.token_file {
            let name = token.describe();
            Reloading::new(what, vec![token.clone()], move |contents| {
                bearer_line(&name, &contents[0])
            })?
        } else if let Some(both) = &options.credentials_file {
            let name = both.describe();
            Reloading::new(what, vec![both.clone()], move |contents| {
                let text = trimmed(&name, &contents[0])?;
                let colon = text
                    .iter()
                    .position(|&b| b == b':')
                    .ok_or_else(|| format!("{name}: holds no `:` between username and password"))?;
                let (username, password) = (&text[..colon], &text[colon + 1..]);
                basic_line(&name, username, &name, password)
            })?
        } else {
            let (Some(username), Some(password)) = (&options.username_file, &options.password_file) else {
                return Err("auth: no credentials".into());
            };
            let (user_name, password_name) = (username.describe(), password.describe());
            Reloading::new(what, vec![username.clone(), password.clone()], move |contents| {
                let username = trimmed(&user_name, &contents[0])?;
                let password = trimmed(&password_name, &contents[1])?;
                basic_line(&user_name, username, &password_name, password)
            })?
        };
        Ok(Credentials(line))
    }

    /// The header line now (`Authorization: ...\r\n`), re-read first when
    /// a file changed.
    pub(crate) fn header_line(&self) -> Arc<Vec<u8>> {
        self.0.current().0
    }
}

fn trimmed<'a>(name: &str, bytes: &'a [u8]) -> Result<&'a [u8], String> {
    let text = bytes.trim_ascii();
    if text.is_empty() {
        return Err(format!("{name}: is empty"));
    }
    if text.iter().any(|b| b.is_ascii_control()) {
        return Err(format!("{name}: holds a control character"));
    }
    Ok(text)
}

fn bearer_line(name: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let token = trimmed(name, bytes)?;
    if !token.iter().all(u8::is_ascii_graphic) {
        return Err(format!(
            "{name}: a bearer token must be visible ASCII without spaces"
        ));
    }
    let mut line = b"Authorization: Bearer ".to_vec();
    line.extend_from_slice(token);
    line.extend_from_slice(b"\r\n");
    Ok(line)
}

fn basic_line(
    user_name: &str,
    username: &[u8],
    password_name: &str,
    password: &[u8],
) -> Result<Vec<u8>, String> {
    if username.contains(&b':') {
        return Err(format!("{user_name}: a username cannot hold `:`"));
    }
    if password.is_empty() {
        return Err(format!("{password_name}: the password is empty"));
    }
    let mut pair = Vec::with_capacity(username.len() + 1 + password.len());
    pair.extend_from_slice(username);
    pair.push(b':');
    pair.extend_from_slice(password);
    let mut line = b"Authorization: Basic ".to_vec();
    base64_into(&pair, &mut line);
    line.extend_from_slice(b"\r\n");
    Ok(line)
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64_into(bytes: &[u8], out: &mut Vec<u8>) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        let digits = group.len() + 1;
        for i in 0..4 {
            if i < digits {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3F) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(options: &AuthOptions) -> Result<String, String> {
        Credentials::new(options, "a").map(|c| String::from_utf8(c.header_line().to_vec()).unwrap())
    }

    fn inline(bytes: &str) -> Option<Material> {
        Some(Material::inline("the file", bytes.as_bytes().to_vec()))
    }

    #[test]
    fn base64_matches_rfc_4648_test_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            base64_into(plain.as_bytes(), &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), encoded, "{plain}");
        }
    }

    #[test]
    fn a_token_or_basic_credentials_make_the_authorization_header() {
        let token = AuthOptions {
            token_file: inline("  s3cr3t.token-x\n"),
            ..AuthOptions::default()
        };
        assert_eq!(line(&token).unwrap(), "Authorization: Bearer s3cr3t.token-x\r\n");
        // RFC 7617's example: Aladdin / open sesame.
        let split = AuthOptions {
            username_file: inline("Aladdin\n"),
            password_file: inline("open sesame\n"),
            ..AuthOptions::default()
        };
        let expected = "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n";
        assert_eq!(line(&split).unwrap(), expected);
        let one = AuthOptions {
            credentials_file: inline("Aladdin:open sesame\n"),
            ..AuthOptions::default()
        };
        assert_eq!(line(&one).unwrap(), expected);
    }

    #[test]
    fn unusable_credentials_are_refused_without_quoting_them() {
        let cases = [
            (AuthOptions::default(), "auth: give `token_file`"),
            (
                AuthOptions {
                    username_file: inline("u"),
                    ..AuthOptions::default()
                },
                "need both `username_file` and `password_file`",
            ),
            (
                AuthOptions {
                    token_file: inline("t"),
                    credentials_file: inline("u:p"),
                    ..AuthOptions::default()
                },
                "not several",
            ),
            (
                AuthOptions {
                    token_file: inline(" \n"),
                    ..AuthOptions::default()
                },
                "the file: is empty",
            ),
            (
                AuthOptions {
                    token_file: inline("two words"),
                    ..AuthOptions::default()
                },
                "visible ASCII without spaces",
            ),
            (
                AuthOptions {
                    token_file: inline("line\r\nX-Injected: 1"),
                    ..AuthOptions::default()
                },
                "holds a control character",
            ),
            (
                AuthOptions {
                    credentials_file: inline("no-colon"),
                    ..AuthOptions::default()
                },
                "holds no `:`",
            ),
            (
                AuthOptions {
                    username_file: inline("a:b"),
                    password_file: inline("p"),
                    ..AuthOptions::default()
                },
                "a username cannot hold `:`",
            ),
        ];
        for (options, expected) in cases {
            let error = line(&options).unwrap_err();
            assert!(error.contains(expected), "{error} (expected {expected})");
            assert!(
                !error.contains("two words") && !error.contains("X-Injected"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_rewritten_token_file_is_used_after_the_check_interval() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let credentials = Credentials::new(
            &AuthOptions {
                token_file: Some(Material::File(path.clone())),
                ..AuthOptions::default()
            },
            "a",
        )
        .unwrap();
        assert_eq!(&credentials.header_line()[..], b"Authorization: Bearer first\r\n");
        std::fs::write(&path, "second-token\n").unwrap();
        std::thread::sleep(super::super::material::CHECK_EVERY);
        assert_eq!(
            &credentials.header_line()[..],
            b"Authorization: Bearer second-token\r\n"
        );
    }
}
