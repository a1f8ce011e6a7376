//! An analyzer's addresses: the URL that takes deliveries and the URL its
//! health is probed at, checked once. Configuration validation and the
//! HTTP transport read the same rules from here.
//!
//! Both are `http://` or `https://` URLs without credentials in them
//! (credentials go in `auth`, from files: a URL is shown by the API, the
//! status page and the logs). The probe URL is `health_check.url` when
//! given, absolute (another port or host: an OpenTelemetry Collector's
//! health_check extension on :13133) or relative to the endpoint; else
//! `health_path` resolved against the endpoint.

use url::{Host, Url};

/// A checked URL and the host and port to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub url: Url,
    pub host: Host<String>,
    pub port: u16,
}

impl Endpoint {
    /// A delivery endpoint.
    pub(crate) fn parse(endpoint: &str) -> Result<Endpoint, String> {
        let url = Url::parse(endpoint).map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
        Endpoint::from_url(url)
    }

    fn from_url(url: Url) -> Result<Endpoint, String> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{}://{}... holds credentials: give them in `auth` (from files), not in the URL",
                url.scheme(),
                url.host_str().unwrap_or_default()
            ));
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("{url} must be an http:// or https:// URL"));
        }
        let host = url
            .host()
            .ok_or_else(|| format!("{url} names no host"))?
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| format!("{url} has no port"))?;
        Ok(Endpoint { url, host, port })
    }

    pub(crate) fn is_https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// The URL probes go to: `url` (absolute, or relative to this endpoint)
    /// when given, else `path` resolved against this endpoint.
    pub(crate) fn health(&self, path: &str, url: Option<&str>) -> Result<Endpoint, String> {
        let (text, key) = match url {
            Some(url) => (url, "health_check.url"),
            None => (path, "health_path"),
        };
        let resolved = self
            .url
            .join(text)
            .map_err(|e| format!("{key}: {text:?} does not resolve against {}: {e}", self.url))?;
        Endpoint::from_url(resolved).map_err(|e| format!("{key}: {e}"))
    }

    /// Whether `other` is reached at the same scheme, host and port: the
    /// same connections, TLS settings and credentials serve both.
    pub(crate) fn same_origin(&self, other: &Endpoint) -> bool {
        self.url.scheme() == other.url.scheme() && self.host == other.host && self.port == other.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_endpoints_with_their_ports() {
        let plain = Endpoint::parse("http://analyzer:9000/ingest/logs").unwrap();
        assert_eq!((plain.port, plain.is_https()), (9000, false));
        let secure = Endpoint::parse("https://collector.example/v1/logs").unwrap();
        assert_eq!((secure.port, secure.is_https()), (443, true));
        assert_eq!(secure.host, Host::Domain("collector.example".to_string()));
        let ip = Endpoint::parse("https://[::1]:4318/").unwrap();
        assert_eq!(ip.port, 4318);
    }

    #[test]
    fn the_health_path_resolves_against_the_endpoint() {
        let endpoint = Endpoint::parse("http://analyzer:9000/ingest/logs").unwrap();
        assert_eq!(
            endpoint.health("/health", None).unwrap().url.as_str(),
            "http://analyzer:9000/health"
        );
        let relative = Endpoint::parse("http://analyzer/ingest/logs").unwrap();
        let ready = relative.health("ready", None).unwrap();
        assert_eq!(ready.url.as_str(), "http://analyzer/ingest/ready");
        assert_eq!(ready.port, 80);
        assert!(relative.same_origin(&ready));
    }

    #[test]
    fn a_health_url_may_name_another_port_host_or_scheme() {
        let endpoint = Endpoint::parse("https://collector:4318/v1/logs").unwrap();
        let extension = endpoint
            .health("/health", Some("http://collector:13133/"))
            .unwrap();
        assert_eq!(extension.url.as_str(), "http://collector:13133/");
        assert!(!endpoint.same_origin(&extension));
        let path = endpoint.health("/health", Some("/status?verbose=1")).unwrap();
        assert_eq!(path.url.as_str(), "https://collector:4318/status?verbose=1");
        assert!(endpoint.same_origin(&path));
        let same_host_other_port = endpoint.health("/", Some("https://collector:8443/")).unwrap();
        assert!(!endpoint.same_origin(&same_host_other_port));
        let error = endpoint.health("/", Some("ftp://collector/")).unwrap_err();
        assert!(
            error.starts_with("health_check.url: ftp://collector/ must be an http:// or https:// URL"),
            "{error}"
        );
    }

    #[test]
    fn what_cannot_be_delivered_to_is_refused_with_the_reason() {
        for (endpoint, reason) in [
            ("analyzer:9000", "must be an http:// or https:// URL"),
            ("not a url", "is not a URL"),
            ("ftp://analyzer/", "must be an http:// or https:// URL"),
            (
                "https://user:pass@analyzer/",
                "holds credentials: give them in `auth`",
            ),
            ("http://token@analyzer/", "holds credentials"),
        ] {
            let error = Endpoint::parse(endpoint).unwrap_err();
            assert!(error.contains(reason), "{endpoint}: {error}");
            assert!(!error.contains("pass@"), "the password is not repeated: {error}");
        }
    }
}
