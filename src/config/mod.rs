//! Configuration: the [`Settings`] as the YAML file spells them, the
//! defaults that reproduce the original service, and every rule they must
//! meet. The command line's flags are applied onto them by `crate::cli`.
//!
//! Everything is checked once, at start-up, by [`Settings::check`]: a bad
//! file stops the process with one line naming the key at fault.

mod analyzer;
mod handoff;
#[cfg(test)]
mod tests;
mod validate;

use crate::model::records::RecordRules;
use crate::model::Limits;
use crate::storage::wal::FsyncMode;
pub use crate::transport::probe::{ExpectedStatuses, ProbeMethod};
pub use crate::transport::{
    credentials::AuthOptions, headers::ExtraHeaders, tls::TlsOptions, DeliveryFormat,
};
pub use analyzer::{AnalyzerConfig, AnalyzerHealthCheck, SimulatedConfig};
use clap::ValueEnum;
pub use handoff::{HandoffConfig, HandoffOnStop};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest weight an analyzer may have.
pub const MAX_WEIGHT: i64 = 1000;

/// Longest any duration setting may be: far past any useful interval,
/// timeout or wait, and within what the timers can hold (a retry waits in
/// a `DelayQueue`, which takes at most about two years; a deadline is an
/// `Instant` plus the duration, which overflows long before `u64` seconds).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Most permits a `tokio::sync::Semaphore` takes: the bound of every
/// setting that sizes one (connections, deliveries at once).
const MAX_SLOTS: usize = tokio::sync::Semaphore::MAX_PERMITS;

/// Bearer tokens. A scope without a token is open; see docs/security.md.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// File with the ingestion token (POST /api/v1/logs, /api/v1/records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingest_token_file: Option<PathBuf>,
    /// File with the admin token (health overrides, dead letter); it may ingest too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// Reads (stats, metrics, status page, ...) need either token too.
    pub protect_reads: bool,
    /// The ingestion token itself (LD_INGEST_TOKEN); never written out.
    #[serde(skip)]
    pub ingest_token: Option<String>,
    /// The admin token itself (LD_ADMIN_TOKEN); never written out.
    #[serde(skip)]
    pub admin_token: Option<String>,
}

impl AuthConfig {
    pub fn any_token(&self) -> bool {
        self.ingest_token_file.is_some()
            || self.admin_token_file.is_some()
            || self.ingest_token.is_some()
            || self.admin_token.is_some()
    }
}

/// The HTTP server's own timeouts and limits.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// A connection that has not sent a whole request head (or a TLS handshake) by then is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Longest a request may take, body included; then 408. Also the
    /// longest its answer may wait for the client to read it; then the
    /// connection is closed.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections open at once; past it, new ones wait in the listen backlog.
    pub max_connections: usize,
    /// Bytes request bodies may hold in memory at once, all connections
    /// together, compressed and inflated; past it a body waits briefly,
    /// then 503. Unset: 4 x `limits.max_body_bytes`; at least 3 x (the
    /// most one request holds: a gzip body, what it inflates to, and a
    /// buffer growing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_memory: Option<usize>,
    /// Threads that serve requests and run deliveries; unset: one per CPU
    /// the process may use. Fewer can be faster where the distributor
    /// shares its CPUs with other busy processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_body_memory: None,
            worker_threads: None,
        }
    }
}

/// HTTPS from PEM files, reloaded when they change.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// How often the files are checked for a change.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: None,
            key: None,
            reload_interval: Duration::from_secs(5),
        }
    }
}

/// Where the analyzers come from.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The `analyzers` list of the configuration.
    #[default]
    Config,
    /// `Analyzer` custom resources, watched live.
    Kubernetes,
}

/// Reading analyzers from Kubernetes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub all_namespaces: bool,
    /// This replica's name in the leader Lease.
    pub identity: String,
    /// The Analyzers this distributor routes to: a label selector as `kubectl -l` takes it
    /// (`logs-distributor.dev/release=blue`, `tier in (a, b)`); empty: every Analyzer.
    pub analyzer_selector: String,
    /// The Lease that elects the replica writing status: one per distributor (release).
    pub lease_name: String,
    /// A leader that has not renewed for this long loses the Lease.
    #[serde(with = "humantime_serde")]
    pub lease_duration: Duration,
    /// How often the leader writes Analyzer counters (health changes go at once), and the
    /// shortest time between two writes of one replica's entry in an Analyzer's status.
    #[serde(with = "humantime_serde")]
    pub status_interval: Duration,
    /// A replica's entry in an Analyzer's status that has not changed for this long is
    /// removed by the leader, its counts kept in `status.retired`.
    #[serde(with = "humantime_serde")]
    pub stale_replica_after: Duration,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        let identity = std::env::var("POD_NAME")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| format!("logs-distributor-{}", std::process::id()));
        KubernetesConfig {
            namespace: None,
            all_namespaces: false,
            identity,
            analyzer_selector: String::new(),
            lease_name: "logs-distributor-leader".into(),
            lease_duration: Duration::from_secs(15),
            status_interval: Duration::from_secs(10),
            stale_replica_after: Duration::from_secs(15 * 60),
        }
    }
}

/// What start-up does with a corrupt write-ahead log.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
#[value(rename_all = "kebab-case")]
pub enum WalRecover {
    #[default]
    Strict,
    SkipCorrupt,
}

/// The write-ahead log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WalConfig {
    /// `always`, `interval:<ms>` or `never`.
    #[serde(with = "fsync_text")]
    pub fsync: FsyncMode,
    /// A segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    pub recover: WalRecover,
    /// With `fsync: always`, how long a commit waits for more appends to
    /// share its fdatasync while appends arrive concurrently (never when
    /// they come one at a time). Fewer fsyncs under load, for this much
    /// latency at most; 0s: never wait.
    #[serde(with = "humantime_serde")]
    pub commit_delay: Duration,
}

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            fsync: FsyncMode::Always,
            segment_bytes: 64 * 1024 * 1024,
            recover: WalRecover::Strict,
            commit_delay: Duration::ZERO,
        }
    }
}

/// `FsyncMode` as the text `--fsync` takes.
mod fsync_text {
    use crate::storage::wal::FsyncMode;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(mode: &FsyncMode, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(mode)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<FsyncMode, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The whole configuration, as the YAML file spells it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub listen: String,
    pub data_dir: PathBuf,
    pub log_format: LogFormat,
    pub analyzers: Vec<AnalyzerConfig>,
    pub retry: RetryConfig,
    pub health: HealthConfig,
    pub checkpoint: CheckpointConfig,
    pub limits: Limits,
    /// How `POST /api/v1/records` maps shippers' records to messages.
    pub records: RecordRules,
    pub queue: QueueConfig,
    pub shutdown: ShutdownConfig,
    pub http: HttpConfig,
    pub batch: BatchConfig,
    pub wal: WalConfig,
    pub source: Source,
    pub kubernetes: KubernetesConfig,
    /// What a replica stopped for good does with what it still holds.
    pub handoff: HandoffConfig,
    pub auth: AuthConfig,
    pub server: ServerConfig,
    pub tls: TlsConfig,
}

/// Settings of the HTTP transport, for every analyzer with an `endpoint`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Longest wait for an analyzer's answer to one delivery.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Wait before the first retry; the k-th retry waits base_delay * factor^(k-1).
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    pub factor: f64,
    /// Retries after the first attempt; then the packet goes to the dead letter.
    pub max_retries: u32,
    /// Longest wait, whatever the factor says.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Full jitter: wait a random time between 0 and the computed delay.
    pub jitter: bool,
    /// Retry budget (Envoy's): retries out at once stay under this percent of
    /// the deliveries out at once; a retry over budget waits another backoff
    /// step. Unset: no budget.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_percent: Option<f64>,
    /// Retries always allowed at once, whatever the budget.
    pub budget_min_concurrent: usize,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            base_delay: Duration::from_secs(2),
            factor: 2.0,
            max_retries: 3,
            max_delay: Duration::from_secs(300),
            jitter: false,
            budget_percent: None,
            budget_min_concurrent: 3,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Consecutive failed probes that take an analyzer out.
    pub unhealthy_threshold: u32,
    /// Consecutive passed probes that bring it back.
    pub healthy_threshold: u32,
    /// Consecutive failed deliveries that take an analyzer out until a probe passes (0: never).
    pub ejection_threshold: u32,
    /// Window over which an analyzer coming back ramps from a tenth of its
    /// weight to all of it (0s: off, it takes its full share at once).
    #[serde(with = "humantime_serde")]
    pub slow_start: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            unhealthy_threshold: 1,
            healthy_threshold: 1,
            ejection_threshold: 5,
            slow_start: Duration::ZERO,
        }
    }
}

/// Batching of packets bound for one analyzer into one delivery.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most packets per delivery (1: one packet per request); an analyzer's
    /// `max_batch_packets` lowers it for that analyzer.
    pub max_packets: usize,
    /// Most bytes of packet JSON per delivery.
    pub max_bytes: usize,
    /// How long a delivery waits for more packets to fill it (0s: never).
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_packets: 256,
            max_bytes: 1024 * 1024,
            linger: Duration::from_millis(2),
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: Duration::from_secs(30),
        }
    }
}

/// `queue.full_wait` when neither it nor a short `server.request_timeout`
/// says otherwise.
const DEFAULT_FULL_WAIT: Duration = Duration::from_secs(1);

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Packets accepted and not yet delivered or dead-lettered; past it,
    /// a request waits for room (`full_wait`), then 503.
    pub max_in_flight: usize,
    /// The same, in bytes of packet JSON.
    pub max_in_flight_bytes: usize,
    /// How long a request waits for room in a full queue before its 503.
    /// Unset: 1 s, or half of `server.request_timeout` when that is
    /// shorter ([`Settings::full_wait`]).
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub full_wait: Option<Duration>,
    /// Deliveries running at once per analyzer.
    pub analyzer_concurrency: usize,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            max_in_flight: 20_000,
            max_in_flight_bytes: 32 * 1024 * 1024,
            full_wait: None,
            analyzer_concurrency: 256,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long SIGTERM waits for in-flight packets before checkpointing the rest.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let simulated = AnalyzerConfig::default_simulated;
        Settings {
            listen: "0.0.0.0:8080".into(),
            data_dir: PathBuf::from("./data"),
            log_format: LogFormat::Text,
            analyzers: vec![
                simulated("analyzer-a1", "Analyzer A", 40, 100),
                simulated("analyzer-a2", "Analyzer B", 30, 150),
                simulated("analyzer-a3", "Analyzer C", 20, 80),
                simulated("analyzer-a4", "Analyzer D", 10, 200),
            ],
            retry: RetryConfig::default(),
            health: HealthConfig::default(),
            checkpoint: CheckpointConfig::default(),
            limits: Limits::default(),
            records: RecordRules::default(),
            queue: QueueConfig::default(),
            shutdown: ShutdownConfig::default(),
            http: HttpConfig::default(),
            batch: BatchConfig::default(),
            wal: WalConfig::default(),
            source: if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
                Source::Kubernetes
            } else {
                Source::Config
            },
            kubernetes: KubernetesConfig::default(),
            handoff: HandoffConfig::default(),
            auth: AuthConfig::default(),
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// A configuration problem, said in one line that names the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(String);

impl Settings {
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
        Self::from_yaml(&text).map_err(|ConfigError(e)| ConfigError(format!("{}: {e}", path.display())))
    }

    pub fn from_yaml(text: &str) -> Result<Settings, ConfigError> {
        let settings: Settings = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError(e.to_string().lines().next().unwrap_or_default().to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    /// `server.max_body_memory`, or its default: 4 x `limits.max_body_bytes`.
    pub fn max_body_memory(&self) -> usize {
        self.server
            .max_body_memory
            .unwrap_or_else(|| self.limits.max_body_bytes.saturating_mul(4))
    }

    /// `queue.full_wait`, or its default: 1 s, or half of
    /// `server.request_timeout` when that is shorter, so that a request
    /// refused for want of room hears so before its timeout.
    pub fn full_wait(&self) -> Duration {
        self.queue
            .full_wait
            .unwrap_or_else(|| DEFAULT_FULL_WAIT.min(self.server.request_timeout / 2))
    }

    pub fn to_yaml(&self) -> String {
        serde_saphyr::to_string(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}
