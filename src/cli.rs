//! The command line: the subcommands, and `serve`'s flags (each with an
//! `LD_*` environment twin) applied onto the [`Settings`]. Precedence: flag
//! or env var, then the YAML file, then the default.

use crate::config::{ConfigError, LogFormat, Settings, Source, WalRecover};
use crate::storage::wal::FsyncMode;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "logs-distributor",
    version,
    about = "Distributes log packets to analyzers by smooth weighted round-robin, \
             with health checks, retries and a dead letter.",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Running without a subcommand is the same as `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the distributor (the default).
    Serve(ServeArgs),
    /// Print the effective configuration as YAML (defaults, file, flags) and exit.
    PrintConfig(ServeArgs),
    /// Run the reference analyzer: an HTTP server speaking the analyzer contract.
    Analyzer(reference_analyzer::AnalyzerArgs),
    /// Print the Analyzer CustomResourceDefinition as YAML.
    Crd,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 0.0.0.0:8080]
    #[arg(long, env = "LD_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory for the checkpoint and failed_packets.json (created if missing) [default: ./data]
    #[arg(long, env = "LD_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// YAML configuration file (analyzers, retry, health, checkpoint, limits, queue).
    #[arg(long, env = "LD_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log output format [default: text]
    #[arg(long, env = "LD_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// When accepted packets reach the disk: always (fsync before the 202; group commit),
    /// interval:<ms> (at most that window lost on power loss), never (process crash only)
    /// [default: always]
    #[arg(long, env = "LD_FSYNC", value_name = "MODE")]
    pub fsync: Option<FsyncMode>,
    /// What start-up does with a corrupt write-ahead log: strict (refuse to start) or
    /// skip-corrupt (skip the damaged part, report it) [default: strict]
    #[arg(long, env = "LD_WAL_RECOVER", value_enum)]
    pub wal_recover: Option<WalRecover>,
    /// Where analyzers come from: config (the YAML file) or kubernetes (Analyzer resources)
    /// [default: kubernetes inside a pod, config elsewhere]
    #[arg(long, env = "LD_SOURCE", value_enum)]
    pub source: Option<Source>,
    /// Namespace to watch Analyzers in (and hold the Lease in) [default: the kubeconfig's or
    /// the pod's]
    #[arg(long, env = "LD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Watch Analyzers in every namespace (ids become namespace/name)
    #[arg(long, env = "LD_ALL_NAMESPACES")]
    pub all_namespaces: bool,
    /// This replica's name in the leader Lease [default: $POD_NAME or $HOSTNAME]
    #[arg(long, env = "LD_IDENTITY")]
    pub identity: Option<String>,
    /// Route to the Analyzers this label selector picks (as `kubectl -l`; empty: every one)
    /// [default: kubernetes.analyzer_selector]
    #[arg(long, env = "LD_ANALYZER_SELECTOR")]
    pub analyzer_selector: Option<String>,
    /// The leader Lease's name, one per distributor [default: kubernetes.lease_name]
    #[arg(long, env = "LD_LEASE_NAME")]
    pub lease_name: Option<String>,
    /// File holding the bearer token for ingestion (re-read when it changes); the token itself
    /// may come from LD_INGEST_TOKEN instead
    #[arg(long, env = "LD_INGEST_TOKEN_FILE", value_name = "FILE")]
    pub ingest_token_file: Option<PathBuf>,
    /// File holding the bearer token for admin operations (re-read when it changes); the token
    /// itself may come from LD_ADMIN_TOKEN instead
    #[arg(long, env = "LD_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// PEM certificate chain: serve HTTPS (with --tls-key); reloaded when it changes
    #[arg(long, env = "LD_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, env = "LD_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// Defaults, overlaid by the file (if any), overlaid by flags and env vars; then checked.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut settings = match &self.config {
            Some(path) => Settings::from_file(path)?,
            None => Settings::default(),
        };
        self.apply(&mut settings);
        // Tokens by value come from the environment only (never argv, never the file).
        let token = |name: &str| std::env::var(name).ok().filter(|t| !t.trim().is_empty());
        settings.auth.ingest_token = token("LD_INGEST_TOKEN");
        settings.auth.admin_token = token("LD_ADMIN_TOKEN");
        settings.check()?;
        Ok(settings)
    }

    /// Sets what each given flag names, over what `settings` holds.
    fn apply(&self, settings: &mut Settings) {
        if let Some(listen) = &self.listen {
            settings.listen = listen.clone();
        }
        if let Some(dir) = &self.data_dir {
            settings.data_dir = dir.clone();
        }
        if let Some(format) = self.log_format {
            settings.log_format = format;
        }
        if let Some(fsync) = self.fsync {
            settings.wal.fsync = fsync;
        }
        if let Some(recover) = self.wal_recover {
            settings.wal.recover = recover;
        }
        if let Some(source) = self.source {
            settings.source = source;
        }
        if let Some(namespace) = &self.namespace {
            settings.kubernetes.namespace = Some(namespace.clone());
        }
        if self.all_namespaces {
            settings.kubernetes.all_namespaces = true;
        }
        if let Some(identity) = &self.identity {
            settings.kubernetes.identity = identity.clone();
        }
        if let Some(selector) = &self.analyzer_selector {
            settings.kubernetes.analyzer_selector = selector.clone();
        }
        if let Some(name) = &self.lease_name {
            settings.kubernetes.lease_name = name.clone();
        }
        if let Some(file) = &self.ingest_token_file {
            settings.auth.ingest_token_file = Some(file.clone());
        }
        if let Some(file) = &self.admin_token_file {
            settings.auth.admin_token_file = Some(file.clone());
        }
        if let Some(cert) = &self.tls_cert {
            settings.tls.cert = Some(cert.clone());
        }
        if let Some(key) = &self.tls_key {
            settings.tls.key = Some(key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "listen: 127.0.0.1:9000\ndata_dir: /from/file\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            data_dir: Some(PathBuf::from("/from/flag")),
            ..ServeArgs::default()
        };
        let s = args.settings().unwrap();
        assert_eq!(s.listen, "127.0.0.1:9000");
        assert_eq!(s.data_dir, PathBuf::from("/from/flag"));
    }
}
