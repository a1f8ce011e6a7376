//! The command line: the subcommands, and `serve`'s flags (each with an
//! `LD_*` environment twin) applied onto the [`Settings`]. Precedence: flag
//! or env var, then the YAML file, then the default.

use crate::config::{ConfigError, HandoffOnStop, LogFormat, Settings, Source, WalRecover};
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
    /// Hand the unfinished packets of a data directory no distributor runs on (a former
    /// replica's volume) to a running distributor, then exit (1 if some could not be handed).
    Handoff(HandoffArgs),
}

#[derive(Args, Debug, Clone)]
pub struct HandoffArgs {
    /// The orphaned data directory (its wal/ and state.json.gz)
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Base URL of a running distributor to hand to (repeat for several; taken in turn)
    #[arg(long = "to", value_name = "URL", required = true)]
    pub to: Vec<String>,
    /// The name the peers know these packets' origin by: the same on a second run, so that
    /// packets sent again are recognised [default: the directory's absolute path]
    #[arg(long)]
    pub origin: Option<String>,
    /// How long to keep trying to hand every packet over
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// File holding the peers' ingestion token; the token itself may come from LD_INGEST_TOKEN
    #[arg(long, env = "LD_INGEST_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM bundle of the CA that signed https:// peers' certificates (besides the system's roots)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The name https:// peers' certificates carry [default: the --to URL's host]
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Packets per request, at most
    #[arg(long, default_value_t = 500)]
    pub batch_packets: usize,
    /// Bytes of packets per request, at most (at most the peers' limits.max_body_bytes)
    #[arg(long, default_value_t = 1024 * 1024)]
    pub batch_bytes: usize,
    /// What to do with a corrupt write-ahead log: strict (refuse) or skip-corrupt
    #[arg(long, value_enum, default_value = "strict")]
    pub wal_recover: WalRecover,
}

impl HandoffArgs {
    /// The adoption these flags ask for.
    pub fn orphan(&self) -> anyhow::Result<crate::handoff::Orphan> {
        anyhow::ensure!(self.batch_packets > 0, "--batch-packets must be at least 1");
        anyhow::ensure!(self.batch_bytes > 0, "--batch-bytes must be above 0");
        for url in &self.to {
            crate::transport::endpoint::Endpoint::parse(url).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
        }
        let token = match &self.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read token file {}: {e}", path.display()))?;
                Some(text.trim().to_string())
            }
            None => std::env::var("LD_INGEST_TOKEN").ok(),
        }
        .filter(|token| !token.is_empty());
        Ok(crate::handoff::Orphan {
            data_dir: self.data_dir.clone(),
            to: self.to.clone(),
            origin: self.origin.clone(),
            token,
            tls: (self.ca_file.is_some() || self.server_name.is_some()).then(|| crate::config::TlsOptions {
                ca_file: self
                    .ca_file
                    .clone()
                    .map(crate::transport::material::Material::File),
                server_name: self.server_name.clone(),
                ..Default::default()
            }),
            timeout: self.timeout,
            batch_packets: self.batch_packets,
            batch_bytes: self.batch_bytes,
            recover: match self.wal_recover {
                WalRecover::Strict => crate::storage::wal::RecoverMode::Strict,
                WalRecover::SkipCorrupt => crate::storage::wal::RecoverMode::SkipCorrupt,
            },
        })
    }
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
    /// Whether a stop hands what the drain left to a peer: auto (a StatefulSet scale-in),
    /// always, never [default: handoff.on_stop]
    #[arg(long, env = "LD_HANDOFF_ON_STOP", value_enum)]
    pub handoff_on_stop: Option<HandoffOnStop>,
    /// The StatefulSet this pod belongs to [default: handoff.statefulset, else the identity
    /// without its -<ordinal>]
    #[arg(long, env = "LD_STATEFULSET")]
    pub statefulset: Option<String>,
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
        if let Some(on_stop) = self.handoff_on_stop {
            settings.handoff.on_stop = on_stop;
        }
        if let Some(statefulset) = &self.statefulset {
            settings.handoff.statefulset = statefulset.clone();
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
