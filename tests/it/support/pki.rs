//! Certificates for TLS tests, made in the test with rcgen: a CA, server
//! certificates for `localhost` and `127.0.0.1` signed by it, and client
//! certificates for mTLS.

use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// A certificate authority of one test.
pub(crate) struct Pki {
    ca_cert: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    ca_params: rcgen::CertificateParams,
}

/// A certificate signed by a [`Pki`], and its key, in PEM.
pub(crate) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// Writes the key, then the certificate.
    pub(crate) fn write(&self, cert: &Path, key: &Path) {
        std::fs::write(key, &self.key_pem).unwrap();
        std::fs::write(cert, &self.cert_pem).unwrap();
    }
}

impl Pki {
    pub(crate) fn new() -> Pki {
        Pki::named("logs-distributor test CA")
    }

    /// A CA with the common name `name` (two CAs of one name would be told
    /// apart by their signatures only).
    pub(crate) fn named(name: &str) -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        Pki {
            ca_cert,
            ca_key,
            ca_params,
        }
    }

    /// The CA's certificate, PEM.
    pub(crate) fn ca_pem(&self) -> String {
        self.ca_cert.pem()
    }

    /// The CA's certificate as a root store of its own.
    pub(crate) fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_cert.der().clone()).unwrap();
        roots
    }

    fn sign(&self, names: Vec<String>, cn: &str, serial: u64, usage: rcgen::ExtendedKeyUsagePurpose) -> Leaf {
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.serial_number = Some(rcgen::SerialNumber::from(serial));
        params.extended_key_usages = vec![usage];
        let issuer = rcgen::Issuer::from_params(&self.ca_params, &self.ca_key);
        let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
        Leaf {
            cert_pem: leaf.pem(),
            key_pem: leaf_key.serialize_pem(),
        }
    }

    /// A server certificate for localhost and 127.0.0.1 named `cn`.
    pub(crate) fn server(&self, cn: &str, serial: u64) -> Leaf {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        self.sign(names, cn, serial, rcgen::ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `cn`, for mTLS.
    pub(crate) fn client(&self, cn: &str) -> Leaf {
        self.sign(Vec::new(), cn, 1000, rcgen::ExtendedKeyUsagePurpose::ClientAuth)
    }

    /// A server certificate for localhost and 127.0.0.1 named `cn`, written
    /// to `cert` and `key` (the key first); answers the certificate's DER.
    pub(crate) fn issue(&self, cn: &str, serial: u64, cert: &Path, key: &Path) -> Vec<u8> {
        let leaf = self.server(cn, serial);
        leaf.write(cert, key);
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        der.to_vec()
    }

    /// A client that trusts this CA only.
    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}
