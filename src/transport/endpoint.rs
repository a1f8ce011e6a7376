//! An analyzer's address: the URL that takes deliveries and the health URL
//! resolved against it, checked once. Configuration validation and the
//! HTTP transport read the same rules from here.

use url::{Host, Url};

/// A checked delivery endpoint and the host and port to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: Url,
    pub health_url: Url,
    pub host: Host<String>,
    pub port: u16,
}

impl Endpoint {
    /// `endpoint` takes deliveries; `health_path` is resolved against it.
    pub fn parse(endpoint: &str, health_path: &str) -> Result<Endpoint, String> {
        let url = Url::parse(endpoint).map_err(|e| format!("{endpoint:?} is not a URL: {e}"))?;
        if url.scheme() != "http" {
            return Err(format!("{url} must be an http:// URL"));
        }
        let health_url = url
            .join(health_path)
            .map_err(|e| format!("health path {health_path:?} does not resolve against {url}: {e}"))?;
        let host = url
            .host()
            .ok_or_else(|| format!("{url} names no host"))?
            .to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        Ok(Endpoint {
            url,
            health_url,
            host,
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_path_resolves_against_the_endpoint() {
        let endpoint = Endpoint::parse("http://analyzer:9000/ingest/logs", "/health").unwrap();
        assert_eq!(endpoint.health_url.as_str(), "http://analyzer:9000/health");
        assert_eq!(endpoint.port, 9000);
        let relative = Endpoint::parse("http://analyzer/ingest/logs", "ready").unwrap();
        assert_eq!(relative.health_url.as_str(), "http://analyzer/ingest/ready");
        assert_eq!(relative.port, 80);
    }

    #[test]
    fn what_cannot_be_delivered_to_is_refused_with_the_reason() {
        for (endpoint, reason) in [
            ("analyzer:9000", "must be an http:// URL"),
            ("not a url", "is not a URL"),
            ("ftp://analyzer/", "must be an http:// URL"),
            ("https://analyzer/", "must be an http:// URL"),
        ] {
            let error = Endpoint::parse(endpoint, "/health").unwrap_err();
            assert!(error.contains(reason), "{endpoint}: {error}");
        }
    }
}
