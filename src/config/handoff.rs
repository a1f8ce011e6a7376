//! The `handoff` section: what a replica stopped for good does with the
//! packets it still holds (see `crate::handoff`), and its checks.

use super::{ConfigError, TlsOptions};
use crate::transport::endpoint::Endpoint;
use clap::ValueEnum;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Whether a stop hands what is left after the drain to a peer.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum HandoffOnStop {
    /// With `--source kubernetes`: when the StatefulSet's `spec.replicas`
    /// no longer counts this pod's ordinal (a scale-in); never otherwise.
    #[default]
    Auto,
    /// At every stop (a replica that never comes back, whatever the source).
    Always,
    /// Never: what is left stays on the volume for the next start.
    Never,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HandoffConfig {
    pub on_stop: HandoffOnStop,
    /// Base URLs of the peers to hand to (`http://10.0.0.7:8080`). Empty
    /// with `--source kubernetes`: the ready endpoints of the StatefulSet's
    /// headless Service (its EndpointSlices), this pod left out.
    pub peers: Vec<String>,
    /// How `https://` peers are trusted: the CA of their certificate and
    /// the name in it (peers from EndpointSlices are reached by address).
    /// The Service's peers are reached over `https://` when this is set or
    /// when this replica serves HTTPS (`tls`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    /// The StatefulSet this pod belongs to; empty: the identity
    /// (`kubernetes.identity`, the pod's name) without its `-<ordinal>`.
    pub statefulset: String,
    /// How long a stop may spend handing off, after the drain.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Packets per handoff request, at most.
    pub batch_packets: usize,
    /// Bytes of packets per handoff request, at most (a larger packet goes
    /// alone); a request also stays within `limits.max_body_bytes`, which
    /// the peer applies (the replicas share the configuration).
    pub batch_bytes: usize,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        HandoffConfig {
            on_stop: HandoffOnStop::Auto,
            peers: Vec::new(),
            tls: None,
            statefulset: String::new(),
            timeout: Duration::from_secs(30),
            batch_packets: 500,
            batch_bytes: 1024 * 1024,
        }
    }
}

impl HandoffConfig {
    /// Checks the section.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: String| Err(ConfigError(format!("handoff.{key}: {why}")));
        if self.batch_packets == 0 {
            return bad("batch_packets", "must be at least 1".into());
        }
        if self.batch_bytes == 0 {
            return bad("batch_bytes", "must be above 0".into());
        }
        for (i, peer) in self.peers.iter().enumerate() {
            Endpoint::parse(peer).map_err(|why| ConfigError(format!("handoff.peers[{i}]: {why}")))?;
        }
        if let Some(tls) = &self.tls {
            tls.check().map_err(|why| ConfigError(format!("handoff.{why}")))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;

    fn error_of(yaml: &str) -> String {
        Settings::from_yaml(yaml).expect_err(yaml).to_string()
    }

    #[test]
    fn bad_handoff_settings_are_refused_naming_the_key() {
        assert!(error_of("handoff: {batch_packets: 0}\n").contains("handoff.batch_packets"));
        assert!(error_of("handoff: {batch_bytes: 0}\n").contains("handoff.batch_bytes"));
        assert!(error_of("handoff: {timeout: 0s}\n").contains("handoff.timeout"));
        assert!(error_of("handoff: {peers: [\"not a url\"]}\n").contains("handoff.peers[0]"));
        assert!(error_of("handoff: {tls: {cert_file: /c.pem}}\n").contains("handoff.tls"));
        assert!(error_of("handoff: {on_stop: sometimes}\n").contains("sometimes"));
        let fine =
            Settings::from_yaml("handoff: {on_stop: always, peers: [\"http://10.0.0.7:8080\"]}\n").unwrap();
        assert_eq!(fine.handoff.peers, ["http://10.0.0.7:8080"]);
    }
}
