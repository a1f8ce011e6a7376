//! TLS to an analyzer (`https://` endpoints): rustls with the ring
//! provider, TLS 1.2 and 1.3, HTTP/1.1 by ALPN.
//!
//! The server's certificate is verified against the system's roots (read
//! once, by rustls-native-certs: the platform store, or `SSL_CERT_FILE` /
//! `SSL_CERT_DIR` when set) plus an optional PEM bundle of the analyzer's
//! own CAs, for the name it is reached by: the URL's host, or `server_name`
//! when given (it is also the SNI sent). An optional client certificate and
//! key (PEM) answer a server that asks for one (mTLS).
//!
//! The files are re-read when they change ([`Reloading`]): a rotated CA
//! bundle or client certificate is used for the connections opened after
//! it is seen; the caller drops its idle connections then.

use super::material::{Material, Reloading};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, OnceLock};

/// An analyzer's TLS settings, as the configuration says them.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsOptions {
    /// PEM bundle of CA certificates trusted besides the system's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<Material>,
    /// PEM certificate chain presented when the analyzer asks for one (mTLS), with `key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<Material>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `cert_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<Material>,
    /// The name the certificate must carry, and the SNI sent; default: the URL's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
}

impl TlsOptions {
    /// The rules the types cannot say; an error names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(
                "tls: give both `cert_file` and `key_file` (a client certificate), or neither".into(),
            );
        }
        if let Some(name) = &self.server_name {
            ServerName::try_from(name.as_str())
                .map_err(|_| format!("tls.server_name: {name:?} is not a DNS name or an IP address"))?;
        }
        Ok(())
    }

    /// The same trust, without the client identity and name: for a
    /// probe to another host.
    pub fn trust_only(&self) -> TlsOptions {
        TlsOptions {
            ca_file: self.ca_file.clone(),
            ..TlsOptions::default()
        }
    }
}

/// A client TLS configuration kept current with its files, and the name
/// the server is verified against.
#[derive(Debug)]
pub(crate) struct ClientTls {
    config: Reloading<ClientConfig>,
    server_name: ServerName<'static>,
}

impl ClientTls {
    /// Reads the files and builds the configuration for a server reached
    /// as `host` (unless `server_name` overrides it).
    pub(crate) fn new(options: &TlsOptions, host: &str, what: &str) -> Result<ClientTls, String> {
        options.check()?;
        let name = options.server_name.clone().unwrap_or_else(|| host.to_string());
        let server_name =
            ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']').to_string())
                .map_err(|_| format!("{name:?} is not a DNS name or an IP address"))?;
        let mut sources = Vec::new();
        let ca_name = options.ca_file.as_ref().map(|ca| {
            sources.push(ca.clone());
            ca.describe()
        });
        let identity_names = match (&options.cert_file, &options.key_file) {
            (Some(cert), Some(key)) => {
                sources.push(cert.clone());
                sources.push(key.clone());
                Some((cert.describe(), key.describe()))
            }
            _ => None,
        };
        let config = Reloading::new(format!("TLS files of {what}"), sources, move |contents| {
            // In the order the sources were pushed: the CA bundle, then the
            // certificate and its key.
            let mut contents = contents.iter().map(Vec::as_slice);
            let mut next = |name| Pem {
                name,
                bytes: contents.next().unwrap_or_default(),
            };
            let ca = ca_name.as_deref().map(&mut next);
            let identity = identity_names
                .as_ref()
                .map(|(cert, key)| (next(cert.as_str()), next(key.as_str())));
            build(ca, identity)
        })?;
        Ok(ClientTls { config, server_name })
    }

    /// The connector for a new connection, and whether the configuration
    /// was rebuilt from changed files by this call.
    pub(crate) fn connector(&self) -> (tokio_rustls::TlsConnector, bool) {
        let (config, rebuilt) = self.config.current();
        (tokio_rustls::TlsConnector::from(config), rebuilt)
    }

    pub(crate) fn server_name(&self) -> ServerName<'static> {
        self.server_name.clone()
    }
}

/// The system's trust anchors, read once.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "cannot read some of the system's CA certificates");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "system CA certificates for HTTPS to analyzers");
        roots
    })
}

/// A PEM file's name (for messages) and bytes.
#[derive(Clone, Copy)]
struct Pem<'a> {
    name: &'a str,
    bytes: &'a [u8],
}

/// A client configuration: the system's roots plus the CA bundle `ca`, and
/// a client identity (a certificate chain and its key).
fn build(ca: Option<Pem<'_>>, identity: Option<(Pem<'_>, Pem<'_>)>) -> Result<ClientConfig, String> {
    let mut roots = system_roots().clone();
    if let Some(ca) = ca {
        let certificates = certificates(ca)?;
        let (added, _) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(format!("{}: no usable CA certificate", ca.name));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let private = PrivateKeyDer::from_pem_slice(key.bytes)
                .map_err(|e| format!("{}: no private key in PEM ({e})", key.name))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                format!(
                    "{} and {} do not make a client identity: {e}",
                    cert.name, key.name
                )
            })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Every certificate of a PEM bundle; at least one.
fn certificates(pem: Pem<'_>) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem.bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate bundle ({e})", pem.name))?;
    if certificates.is_empty() {
        return Err(format!("{}: no certificate in it", pem.name));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(name: &str, pem: String) -> Option<Material> {
        Some(Material::inline(name, pem.into_bytes()))
    }

    #[test]
    fn a_bundle_a_client_identity_and_a_server_name_make_a_configuration() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
        let options = TlsOptions {
            ca_file: inline("ca", ca.cert.pem()),
            cert_file: inline("cert", client.cert.pem()),
            key_file: inline("key", client.signing_key.serialize_pem()),
            server_name: Some("collector.internal".into()),
        };
        let tls = ClientTls::new(&options, "10.0.0.5", "a").unwrap();
        assert_eq!(
            tls.server_name(),
            ServerName::try_from("collector.internal").unwrap()
        );
        let (_, rebuilt) = tls.connector();
        assert!(!rebuilt);
        let by_ip = ClientTls::new(&TlsOptions::default(), "[::1]", "a").unwrap();
        assert_eq!(by_ip.server_name(), ServerName::try_from("::1").unwrap());
    }

    #[test]
    fn what_does_not_make_a_configuration_is_refused_with_the_file_named() {
        let client = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
        let other = rcgen::generate_simple_self_signed(vec!["other.test".into()]).unwrap();
        let cases = [
            (
                TlsOptions {
                    ca_file: inline("the CA", "not PEM".into()),
                    ..TlsOptions::default()
                },
                "the CA: no certificate in it",
            ),
            (
                TlsOptions {
                    cert_file: inline("the cert", client.cert.pem()),
                    ..TlsOptions::default()
                },
                "give both `cert_file` and `key_file`",
            ),
            (
                TlsOptions {
                    cert_file: inline("the cert", client.cert.pem()),
                    key_file: inline("the key", client.cert.pem()),
                    ..TlsOptions::default()
                },
                "the key: no private key in PEM",
            ),
            (
                TlsOptions {
                    cert_file: inline("the cert", client.cert.pem()),
                    key_file: inline("the key", other.signing_key.serialize_pem()),
                    ..TlsOptions::default()
                },
                "the cert and the key do not make a client identity",
            ),
            (
                TlsOptions {
                    server_name: Some("not a name!".into()),
                    ..TlsOptions::default()
                },
                "tls.server_name: \"not a name!\" is not a DNS name",
            ),
        ];
        for (options, expected) in cases {
            let error = ClientTls::new(&options, "analyzer", "a").unwrap_err();
            assert!(error.contains(expected), "{error} (expected {expected})");
            assert!(
                !error.contains("PRIVATE KEY"),
                "the key's content is never quoted: {error}"
            );
        }
    }
}
