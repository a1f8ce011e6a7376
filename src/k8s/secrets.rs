//! The Secrets and ConfigMaps that Analyzers reference (`spec.tls`,
//! `spec.auth`): read when an Analyzer first needs one, held in memory only
//! (never written to disk), and watched one by one, so that a rotated
//! Secret reaches the analyzer within moments.
//!
//! Each object is watched with a field selector on its name: what RBAC
//! allows when a Role lists Secrets by `resourceNames` (a Role cannot say
//! "the Secrets that Analyzers name", and a wildcard would be every
//! Secret). An object that no Analyzer references any more is forgotten and
//! its watch stopped. When the watch cannot reach the API server, the last
//! value read stays in use.

use super::WATCH_TIMEOUT_SECONDS;
use crate::sync::LockUnpoisoned;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Which kind of object holds the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Secret,
    ConfigMap,
}

/// A Secret or ConfigMap, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn secret(namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: Kind::Secret,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn config_map(namespace: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: Kind::ConfigMap,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        };
        write!(f, "{kind} {}/{}", self.namespace, self.name)
    }
}

/// An object's keys and values.
type Data = BTreeMap<String, Arc<[u8]>>;

/// What is known of an object.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    Found(Data),
    NotFound,
    /// RBAC refused the read.
    Forbidden(String),
    /// Any other failure to read it.
    Failed(String),
}

/// Why a referenced value cannot be had.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unresolved {
    #[error("{0} does not exist")]
    NotFound(ObjectRef),
    #[error("{object} has no key {key:?}")]
    NoKey { object: ObjectRef, key: String },
    #[error("{object} may not be read by the distributor (list it in the chart's analyzerSecrets or analyzerConfigMaps): {why}")]
    Forbidden { object: ObjectRef, why: String },
    #[error("cannot read {object}: {why}")]
    Failed { object: ObjectRef, why: String },
}

impl Unresolved {
    /// The reason of the Analyzer's Ready condition.
    pub fn reason(&self) -> &'static str {
        let object = match self {
            Unresolved::NotFound(object) | Unresolved::NoKey { object, .. } => object,
            Unresolved::Forbidden { .. } => return "SecretForbidden",
            Unresolved::Failed { .. } => return "SecretUnreadable",
        };
        match object.kind {
            Kind::Secret => "SecretNotFound",
            Kind::ConfigMap => "ConfigMapNotFound",
        }
    }
}

/// The objects read so far, their watches, and where changes are told.
pub(crate) struct Store {
    client: Client,
    entries: Arc<Mutex<BTreeMap<ObjectRef, Entry>>>,
    watches: BTreeMap<ObjectRef, JoinHandle<()>>,
    changes: mpsc::UnboundedSender<ObjectRef>,
}

impl Store {
    /// A store reading through `client`, and the receiver of the objects
    /// whose content changed.
    pub(crate) fn new(client: Client) -> (Store, mpsc::UnboundedReceiver<ObjectRef>) {
        let (changes, receiver) = mpsc::unbounded_channel();
        let store = Store {
            client,
            entries: Arc::default(),
            watches: BTreeMap::new(),
            changes,
        };
        (store, receiver)
    }

    /// The value of `key` in `object`; the object is read, and watched from
    /// then on, the first time it is asked for.
    pub(crate) async fn value(&mut self, object: &ObjectRef, key: &str) -> Result<Arc<[u8]>, Unresolved> {
        let known = self.entries.lock_unpoisoned().get(object).cloned();
        let entry = match known {
            Some(entry) => entry,
            None => {
                let entry = self.read(object).await;
                self.entries
                    .lock_unpoisoned()
                    .insert(object.clone(), entry.clone());
                self.watch(object);
                entry
            }
        };
        match entry {
            Entry::Found(data) => data.get(key).cloned().ok_or_else(|| Unresolved::NoKey {
                object: object.clone(),
                key: key.into(),
            }),
            Entry::NotFound => Err(Unresolved::NotFound(object.clone())),
            Entry::Forbidden(why) => Err(Unresolved::Forbidden {
                object: object.clone(),
                why,
            }),
            Entry::Failed(why) => Err(Unresolved::Failed {
                object: object.clone(),
                why,
            }),
        }
    }

    /// Forgets, and stops watching, every object `keep` does not hold.
    pub(crate) fn retain(&mut self, keep: &BTreeSet<ObjectRef>) {
        self.watches.retain(|object, watch| {
            let kept = keep.contains(object);
            if !kept {
                watch.abort();
            }
            kept
        });
        self.entries
            .lock_unpoisoned()
            .retain(|object, _| keep.contains(object));
    }

    async fn read(&self, object: &ObjectRef) -> Entry {
        let read = match object.kind {
            Kind::Secret => Api::<Secret>::namespaced(self.client.clone(), &object.namespace)
                .get_opt(&object.name)
                .await
                .map(|found| found.as_ref().map(secret_data)),
            Kind::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), &object.namespace)
                .get_opt(&object.name)
                .await
                .map(|found| found.as_ref().map(config_map_data)),
        };
        match read {
            Ok(Some(data)) => Entry::Found(data),
            Ok(None) => Entry::NotFound,
            Err(kube::Error::Api(status)) if status.is_forbidden() => {
                Entry::Forbidden(status.message.clone())
            }
            Err(e) => Entry::Failed(e.to_string()),
        }
    }

    fn watch(&mut self, object: &ObjectRef) {
        let (entries, changes) = (self.entries.clone(), self.changes.clone());
        let task = match object.kind {
            Kind::Secret => {
                let api = Api::<Secret>::namespaced(self.client.clone(), &object.namespace);
                tokio::spawn(follow(api, object.clone(), secret_data, entries, changes))
            }
            Kind::ConfigMap => {
                let api = Api::<ConfigMap>::namespaced(self.client.clone(), &object.namespace);
                tokio::spawn(follow(api, object.clone(), config_map_data, entries, changes))
            }
        };
        if let Some(old) = self.watches.insert(object.clone(), task) {
            old.abort();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        for watch in self.watches.values() {
            watch.abort();
        }
    }
}

/// Watches one object by name; records each new content and tells
/// `changes` when it differs from what was known.
async fn follow<K>(
    api: Api<K>,
    object: ObjectRef,
    data_of: fn(&K) -> Data,
    entries: Arc<Mutex<BTreeMap<ObjectRef, Entry>>>,
    changes: mpsc::UnboundedSender<ObjectRef>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + fmt::Debug + Send + 'static,
{
    let config = watcher::Config::default()
        .fields(&format!("metadata.name={}", object.name))
        .timeout(WATCH_TIMEOUT_SECONDS);
    let stream = watcher::watcher(api, config).default_backoff();
    futures_util::pin_mut!(stream);
    let mut listing: Option<Data> = None;
    while let Some(event) = stream.next().await {
        let now = match event {
            Ok(Event::Init) => {
                listing = None;
                continue;
            }
            Ok(Event::InitApply(found)) => {
                listing = Some(data_of(&found));
                continue;
            }
            Ok(Event::InitDone) => listing.take().map_or(Entry::NotFound, Entry::Found),
            Ok(Event::Apply(found)) => Entry::Found(data_of(&found)),
            Ok(Event::Delete(_)) => Entry::NotFound,
            Err(e) => {
                tracing::debug!(object = %object, error = %e, "watching a referenced object; the last value read stays");
                continue;
            }
        };
        let changed = match entries.lock_unpoisoned().get_mut(&object) {
            Some(entry) if *entry != now => {
                *entry = now;
                true
            }
            _ => false,
        };
        if changed && changes.send(object.clone()).is_err() {
            return;
        }
    }
}

fn secret_data(secret: &Secret) -> Data {
    secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), Arc::from(value.0.as_slice())))
        .collect()
}

fn config_map_data(map: &ConfigMap) -> Data {
    let text = map
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), Arc::from(value.as_bytes())));
    let binary = map
        .binary_data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), Arc::from(value.0.as_slice())));
    text.chain(binary).collect()
}
