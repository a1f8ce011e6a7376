//! How packets reach an analyzer, and how a failed delivery is classified.
//!
//! [`Transport`] is a closed set: [`Simulated`] runs in-process (the demo and
//! the benchmarks); [`Http`] reaches real analyzers. Each one
//! delivers a batch of packets bound for one analyzer and answers a health
//! probe; each says whether a failure is worth retrying ([`FailureClass`]).

pub(crate) mod credentials;
pub(crate) mod endpoint;
pub(crate) mod format;
pub(crate) mod headers;
mod http;
mod idempotency;
pub(crate) mod material;
mod messages;
mod ndjson;
pub(crate) mod otlp;
pub(crate) mod pool;
pub(crate) mod probe;
mod simulated;
mod stream;
pub(crate) mod tls;

pub use format::DeliveryFormat;
pub(crate) use http::{Http, HttpOptions, ProbeOptions};
pub(crate) use simulated::Simulated;

use crate::dispatch::job::Job;
use std::time::Duration;

/// Whether trying again can help, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// Timeouts, refused connections, 408, 429, 5xx, simulated crashes.
    Retryable,
    /// The request was too large for the analyzer (413, 431): a smaller one,
    /// with fewer packets, may pass.
    TooLarge,
    /// The analyzer refused a packet of the request (400): a request
    /// without that packet may pass.
    BadPacket,
    /// The analyzer refused the request (any other 4xx): straight to the dead letter.
    Permanent,
}

impl FailureClass {
    /// Whether a delivery of several packets that failed this way is worth
    /// splitting into smaller ones, to deliver the packets that can pass.
    pub fn splits_a_batch(self) -> bool {
        matches!(self, FailureClass::TooLarge | FailureClass::BadPacket)
    }
}

/// Why an exchange with an analyzer brought no answer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    #[error("request failed: {0}")]
    Request(#[source] http1::Error),
    #[error("no answer within {}", humantime::format_duration(*.0))]
    NoAnswer(Duration),
}

/// Why a health probe found an analyzer unfit.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    #[error("{url} answered HTTP {status}, expected {expected}")]
    Status {
        url: url::Url,
        status: u16,
        /// The statuses that pass, as the configuration lists them.
        expected: String,
    },
    #[error("simulated health check failure")]
    Simulated,
}

/// A failed delivery: its class, a message for the dead letter (its
/// `final_error`, part of that file's contract), and the analyzer's own
/// `Retry-After` when it gave one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryFailure {
    pub class: FailureClass,
    pub message: String,
    pub retry_after: Option<Duration>,
}

impl DeliveryFailure {
    pub fn retryable(message: impl Into<String>) -> Self {
        DeliveryFailure::of_class(FailureClass::Retryable, message)
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        DeliveryFailure::of_class(FailureClass::Permanent, message)
    }

    pub fn of_class(class: FailureClass, message: impl Into<String>) -> Self {
        DeliveryFailure {
            class,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<ExchangeError> for DeliveryFailure {
    /// No answer: the analyzer may not have seen the packets, so it is
    /// worth trying again.
    fn from(e: ExchangeError) -> Self {
        DeliveryFailure::retryable(e.to_string())
    }
}

/// The ways to reach an analyzer.
#[derive(Debug)]
pub enum Transport {
    Simulated(Simulated),
    Http(Box<Http>),
}

impl Transport {
    /// Delivers every job of the batch, or fails them all.
    pub async fn deliver(&self, batch: &[Job]) -> Result<(), DeliveryFailure> {
        match self {
            Transport::Simulated(s) => s.deliver(batch).await,
            Transport::Http(h) => h.deliver(batch).await,
        }
    }

    /// One health probe.
    pub async fn probe(&self) -> Result<(), ProbeError> {
        match self {
            Transport::Simulated(s) => s.probe().await,
            Transport::Http(h) => h.probe().await,
        }
    }

    /// Where packets go: an endpoint URL, or "simulated".
    pub fn endpoint(&self) -> String {
        match self {
            Transport::Simulated(_) => "simulated".into(),
            Transport::Http(h) => h.endpoint().to_string(),
        }
    }
}
