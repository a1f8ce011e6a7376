//! Kubernetes: the `Analyzer` custom resource ([`crd`]), the watch that
//! turns Analyzers into the live routing table ([`controller`]), with the
//! Secrets they reference ([`secrets`], [`resolve`]) and the endpoints of
//! the Services they name ([`endpoints`]: one analyzer per ready endpoint,
//! the Analyzer's weight split evenly among them), the leader's status
//! and Events ([`status`]) and the Lease that elects it ([`lease`]); each
//! replica's own counts in the status ([`counts`]), of which the leader
//! writes the totals ([`totals`]). A
//! label selector (`kubernetes.analyzer_selector`) picks the Analyzers of
//! one distributor, and each distributor has a Lease of its own
//! (`kubernetes.lease_name`), so several share a namespace.
//! [`start`] wires them for `--source kubernetes`.

pub(crate) mod controller;
pub(crate) mod counts;
pub mod crd;
pub(crate) mod endpoints;
pub(crate) mod handoff;
pub(crate) mod lease;
pub(crate) mod resolve;
pub(crate) mod secrets;
pub(crate) mod status;
pub(crate) mod totals;

pub use crd::{Analyzer, AnalyzerSpec, AnalyzerStatus, DeclaredHealth};

use crate::config::{KubernetesConfig, Settings};
use crate::dispatch::Dispatcher;
use crate::sync::LockUnpoisoned;
use crate::traffic::Traffic;
use endpoints::ListedEndpoint;
use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use resolve::Unbuilt;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The controller name on Events.
pub const CONTROLLER_NAME: &str = "logs-distributor";
/// A watch the API server ends after this long (then it is renewed).
pub const WATCH_TIMEOUT_SECONDS: u32 = 4;
/// Longest wait for any byte from the API server: past it, the watch and
/// the Lease treat the server as gone.
pub const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(6);

/// What the Kubernetes side knows, for `/readyz`, metrics and the writer.
#[derive(Default)]
pub struct KubeState {
    /// The watch is connected (false while the API server is unreachable).
    pub connected: AtomicBool,
    /// The first list has been applied.
    pub synced: AtomicBool,
    /// This replica holds the Lease.
    pub leader: AtomicBool,
    pub watch_errors: AtomicU64,
    /// The Analyzer resources by fleet id, as last seen.
    resources: Mutex<BTreeMap<String, Analyzer>>,
    /// Why some of them cannot be built, by fleet id.
    unbuilt: Mutex<BTreeMap<String, Unbuilt>>,
    /// The generation of each Analyzer that runs now, by fleet id (absent:
    /// none of its generations has been applied by this replica).
    applied: Mutex<BTreeMap<String, i64>>,
    /// The endpoints of each Service-backed Analyzer, by fleet id of the
    /// Analyzer, as last applied.
    endpoints: Mutex<BTreeMap<String, Vec<ListedEndpoint>>>,
}

impl KubeState {
    pub fn remember(&self, id: &str, resource: &Analyzer) {
        self.lock().insert(id.to_string(), resource.clone());
    }

    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
        self.clear_unbuilt(id);
        self.applied.lock_unpoisoned().remove(id);
        self.endpoints.lock_unpoisoned().remove(id);
    }

    /// Records the endpoints of `id`'s Service (none: it names no Service).
    pub(crate) fn set_endpoints(&self, id: &str, endpoints: Option<Vec<ListedEndpoint>>) {
        let mut all = self.endpoints.lock_unpoisoned();
        match endpoints {
            Some(endpoints) => all.insert(id.to_string(), endpoints),
            None => all.remove(id),
        };
    }

    /// The endpoints of `id`'s Service, if it names one.
    pub(crate) fn endpoints(&self, id: &str) -> Option<Vec<ListedEndpoint>> {
        self.endpoints.lock_unpoisoned().get(id).cloned()
    }

    /// Records that `generation` of `id`'s spec runs now: it was built, or
    /// its weight and health applied in place.
    pub fn set_applied(&self, id: &str, generation: Option<i64>) {
        self.clear_unbuilt(id);
        if let Some(generation) = generation {
            self.applied.lock_unpoisoned().insert(id.to_string(), generation);
        }
    }

    /// The generation of `id`'s spec that runs now, if one was applied.
    pub fn applied_generation(&self, id: &str) -> Option<i64> {
        self.applied.lock_unpoisoned().get(id).copied()
    }

    /// Records why `id` cannot be built; true when that is news.
    pub fn set_unbuilt(&self, id: &str, unbuilt: Unbuilt) -> bool {
        self.unbuilt
            .lock_unpoisoned()
            .insert(id.to_string(), unbuilt.clone())
            != Some(unbuilt)
    }

    fn clear_unbuilt(&self, id: &str) {
        self.unbuilt.lock_unpoisoned().remove(id);
    }

    /// Why `id` cannot be built, if it cannot.
    pub fn unbuilt(&self, id: &str) -> Option<Unbuilt> {
        self.unbuilt.lock_unpoisoned().get(id).cloned()
    }

    pub fn resource(&self, id: &str) -> Option<Analyzer> {
        self.lock().get(id).cloned()
    }

    pub fn resources(&self) -> Vec<(String, Analyzer)> {
        self.lock()
            .iter()
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Analyzer>> {
        self.resources.lock_unpoisoned()
    }
}

/// The tasks of the Kubernetes side.
pub struct Tasks {
    /// The watch and the status writer: aborted at shutdown.
    pub background: Vec<JoinHandle<()>>,
    /// The election and this replica's counts: they end by themselves
    /// once `stop` is cancelled, after releasing the Lease and, once the
    /// drain is over, writing the last counts (awaited at shutdown).
    pub finishing: JoinHandle<()>,
}

/// Starts the watch, the election, the status writer and the count
/// reporter; the election releases the Lease when `stop` is cancelled.
pub async fn start(
    settings: Arc<Settings>,
    dispatcher: Arc<Dispatcher>,
    traffic: Arc<Traffic>,
    state: Arc<KubeState>,
    stop: CancellationToken,
) -> anyhow::Result<Tasks> {
    let config: &KubernetesConfig = &settings.kubernetes;
    let mut kube_config = kube::Config::infer()
        .await
        .map_err(|e| anyhow::anyhow!("cannot find Kubernetes credentials (kubeconfig or in-cluster): {e}"))?;
    kube_config.read_timeout = Some(READ_TIMEOUT);
    let client = Client::try_from(kube_config)
        .map_err(|e| anyhow::anyhow!("cannot build a Kubernetes client: {e}"))?;
    let home = config
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let analyzers: Api<Analyzer> = if config.all_namespaces {
        Api::all(client.clone())
    } else {
        Api::namespaced(client.clone(), &home)
    };
    let identity = config.identity.clone();
    let selector = config.analyzer_selector.trim().to_string();
    check_selector(&analyzers, &selector).await?;
    tracing::info!(namespace = %home, all_namespaces = config.all_namespaces, %identity, analyzer_selector = %selector, lease = %config.lease_name, "reading analyzers from Analyzer resources");
    let watch = Arc::new(controller::Watch {
        client: client.clone(),
        dispatcher: dispatcher.clone(),
        settings: settings.clone(),
        state: state.clone(),
        qualify_ids: config.all_namespaces,
        selector,
        endpoint_slices: if config.all_namespaces {
            Api::all(client.clone())
        } else {
            Api::namespaced(client.clone(), &home)
        },
    });
    let election = lease::Election {
        api: Api::namespaced(client.clone(), &home),
        name: config.lease_name.clone(),
        identity: identity.clone(),
        duration: config.lease_duration,
        state: state.clone(),
    };
    let reporter = counts::CountReporter::new(
        client.clone(),
        dispatcher.clone(),
        traffic,
        state.clone(),
        identity.clone(),
        counts::Timing {
            min_interval: config.status_interval,
            stale_after: config.stale_replica_after,
            drain_timeout: settings.shutdown.drain_timeout,
        },
    );
    let writer = status::StatusWriter {
        client: client.clone(),
        dispatcher,
        state,
        recorder: Recorder::new(
            client,
            Reporter {
                controller: CONTROLLER_NAME.into(),
                instance: Some(identity),
            },
        ),
        every: config.status_interval,
        stale_after: config.stale_replica_after,
        observations: Default::default(),
        announced: Default::default(),
    };
    let finishing = tokio::spawn(async move {
        tokio::join!(election.run(stop.clone()), reporter.run(stop));
    });
    Ok(Tasks {
        background: vec![tokio::spawn(watch.run(analyzers)), tokio::spawn(writer.run())],
        finishing,
    })
}

/// Refuses a label selector the API server refuses (a typo would otherwise
/// leave the watch failing forever); an unreachable server is not an error
/// here: the watch waits for it.
async fn check_selector(analyzers: &Api<Analyzer>, selector: &str) -> anyhow::Result<()> {
    if selector.is_empty() {
        return Ok(());
    }
    let params = ListParams::default().labels(selector).limit(1);
    match analyzers.list_metadata(&params).await {
        Err(kube::Error::Api(status)) if status.code == 400 => Err(anyhow::anyhow!(
            "kubernetes.analyzer_selector {selector:?}: the API server refuses it: {}",
            status.message
        )),
        Err(e) => {
            tracing::warn!(error = %e, "cannot check kubernetes.analyzer_selector yet");
            Ok(())
        }
        Ok(_) => Ok(()),
    }
}
