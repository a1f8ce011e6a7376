//! logs-distributor: accepts batches of log packets over HTTP and hands each
//! packet to exactly one analyzer, in proportion to the analyzers' weights.
//!
//! A map of the crate, in the order a packet meets it:
//!
//! - [`api`]: the axum router; `POST /api/v1/logs` parses and validates
//!   ([`model`]) and admits packets to the [`dispatch::Dispatcher`];
//!   `POST /api/v1/records` maps shippers' records into packets
//!   ([`model::records`]) and admits them the same way; `POST /v1/logs` takes
//!   OTLP/HTTP logs, turned into packets by [`otlp`].
//! - [`dispatch`]: picks an analyzer ([`dispatch::fleet`] over a [`dispatch::routing`] table),
//!   queues the packet on that analyzer's lane, delivers it through its
//!   [`transport`], and on failure asks [`dispatch::retry`] when to try again or
//!   writes it to the dead letter ([`storage`]).
//! - [`dispatch::health`]: probes and passive ejection decide who is in rotation.
//! - [`storage`]: `failed_packets.json` and the gzip checkpoint.
//! - [`metrics`]: the Prometheus registry behind `/metrics` and `/stats`.
//! - [`traffic`]: the last minutes of traffic (recent shares, rates).
//! - [`k8s`]: the `Analyzer` custom resource.
//! - [`handoff`]: a replica stopped for good hands what it still holds to a
//!   peer; the adopt command does the same for an orphaned data directory.
//! - [`config`]: the settings (the YAML file), their defaults and checks;
//!   [`cli`] applies the command line's flags and env vars onto them.
//! - `offload`: CPU work of milliseconds (OTLP bodies) on blocking threads.
//! - [`server`]: the accept loop (timeouts, connection bound, TLS); the
//!   bearer tokens are [`api::auth`]; [`write_deadline`] cuts off clients
//!   that do not read their answers.
//! - [`service`]: wires it all together, start to orderly shutdown;
//!   [`shutdown`] is the signal that starts it.
//!
//! Beside this crate in the workspace: [`http1`] (the HTTP/1.1 client
//! connection that delivery uses), [`reference_analyzer`] (the server that
//! `logs-distributor analyzer` runs) and `crates/loadgen` (the load
//! generator, a binary of its own that the service does not link).

pub(crate) mod api;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod handoff;
pub mod k8s;
pub(crate) mod metrics;
pub mod model;
pub(crate) mod offload;
pub mod otlp;
pub(crate) mod server;
pub mod service;
pub mod shutdown;
pub mod storage;
pub(crate) mod sync;
pub(crate) mod traffic;
pub(crate) mod transport;
pub(crate) mod write_deadline;
