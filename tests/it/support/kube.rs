//! The tests against a real kube-apiserver (`kubernetes`): the control
//! plane of `scripts/envtest.sh` (shared, or private to one test), kubectl,
//! one namespace per test, Analyzer manifests and the distributor binary
//! started with `--source kubernetes`.
//!
//! kubectl runs on the blocking pool with a deadline, so a hung API server
//! fails a test instead of hanging it.

use crate::support::distributor::Distributor;
use crate::support::http::Api;
use crate::support::poll::{eventually, eventually_every, DEADLINE};
use crate::support::processes::{run, Finished};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The most one kubectl invocation may take.
pub(crate) const KUBECTL_DEADLINE: Duration = Duration::from_secs(20);

/// The Lease the replicas compete for (`src/k8s/mod.rs`).
pub(crate) const LEASE: &str = "logs-distributor-leader";

/// A distributor configuration with short timings for tests; `extra` is
/// appended (more top-level sections).
pub(crate) fn distributor_yaml(extra: &str) -> String {
    format!(
        "kubernetes: {{lease_duration: 3s, status_interval: 1s}}\n\
         retry: {{base_delay: 20ms}}\n\
         checkpoint: {{interval: 1h}}\n\
         shutdown: {{drain_timeout: 200ms}}\n\
         health: {{interval: 100ms}}\n\
         {extra}"
    )
}

// ---------------------------------------------------------------- the control plane

/// A running kube-apiserver + etcd of `scripts/envtest.sh`, with the
/// Analyzer CRD established.
#[derive(Debug, Clone)]
pub(crate) struct Cluster {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    /// The run directory (pids, logs, certificates).
    pub run_dir: PathBuf,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/envtest.sh")
}

fn crd_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/analyzer.yaml")
}

/// `scripts/envtest.sh ARG`, with the run directory `run_dir` when given;
/// otherwise the shared one: `LD_ENVTEST_DIR` when set (the one
/// `scripts/test.sh` started and stops), or the script's default.
fn envtest(arg: &str, run_dir: Option<&Path>) -> Finished {
    let mut command = Command::new("bash");
    command.arg(script()).arg(arg);
    if let Some(dir) = run_dir {
        command.env("LD_ENVTEST_DIR", dir);
    }
    // A cold cache builds the binaries first: that can take long.
    run(&mut command, None, Duration::from_secs(1800))
}

/// The value of `export NAME=VALUE` in the output of `envtest.sh env`.
fn exported(env: &str, name: &str) -> PathBuf {
    let prefix = format!("export {name}=");
    let value = env
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("`envtest.sh env` does not export {name}:\n{env}"));
    let value = value.trim();
    let value = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    PathBuf::from(value.replace("\\ ", " "))
}

impl Cluster {
    /// Starts (or finds) the control plane with run directory `run_dir`
    /// (the script's default when `None`) and establishes the CRD.
    fn up(run_dir: Option<&Path>) -> Cluster {
        envtest("up", run_dir).ok("scripts/envtest.sh up");
        let env = envtest("env", run_dir);
        let env = env.ok("scripts/envtest.sh env");
        let kubeconfig = exported(env, "KUBECONFIG");
        let cluster = Cluster {
            run_dir: kubeconfig
                .parent()
                .expect("kubeconfig in the run dir")
                .to_path_buf(),
            kubectl: exported(env, "LD_KUBECTL"),
            kubeconfig,
        };
        let crd = crd_file();
        cluster
            .kubectl_blocking(&["apply", "-f", crd.to_str().expect("UTF-8 path")], None)
            .ok("kubectl apply -f crds/analyzer.yaml");
        cluster
            .kubectl_blocking(
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=30s",
                    "crd/analyzers.logs-distributor.dev",
                ],
                None,
            )
            .ok("waiting for the Analyzer CRD to be established");
        cluster
    }

    /// The control plane every test of the binary shares (started once).
    pub(crate) fn shared() -> Cluster {
        static SHARED: OnceLock<Cluster> = OnceLock::new();
        SHARED.get_or_init(|| Cluster::up(None)).clone()
    }

    /// `kubectl ARGS` against this control plane, on the calling thread.
    pub(crate) fn kubectl_blocking(&self, args: &[&str], stdin: Option<&str>) -> Finished {
        let mut command = Command::new(&self.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=15s")
            .args(args);
        run(&mut command, stdin, KUBECTL_DEADLINE)
    }

    /// `kubectl ARGS` on the blocking pool.
    pub(crate) async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Finished {
        let cluster = self.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cluster.kubectl_blocking(&args, stdin.as_deref())
        })
        .await
        .expect("kubectl task")
    }

    /// The pid of the kube-apiserver process.
    pub(crate) fn apiserver_pid(&self) -> u32 {
        let path = self.run_dir.join("kube-apiserver.pid");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
            .trim()
            .parse()
            .expect("a pid")
    }
}

/// A control plane of its own for one test (for a test that stops the API
/// server without disturbing anyone else); taken down when dropped.
pub(crate) struct PrivateCluster {
    pub cluster: Cluster,
    dir: PathBuf,
}

impl PrivateCluster {
    pub(crate) async fn up(name: &str) -> PrivateCluster {
        let dir = std::env::temp_dir().join(format!("ld-envtest-{name}-{}", std::process::id()));
        let for_task = dir.clone();
        let cluster = tokio::task::spawn_blocking(move || Cluster::up(Some(&for_task)))
            .await
            .expect("envtest up task");
        PrivateCluster { cluster, dir }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let out = envtest("down", Some(&self.dir));
        if !out.status.success() {
            eprintln!("envtest down {} failed: {}", self.dir.display(), out.stderr);
        }
        // The script's lock file, next to the run directory.
        let mut lock = self.dir.clone().into_os_string();
        lock.push(".lock");
        let _ = std::fs::remove_file(lock);
    }
}

// ---------------------------------------------------------------- namespaces

/// A namespace of one test: created empty, emptied and deleted when
/// dropped (best effort). envtest runs no namespace controller, so the
/// namespace is finalized by hand once its contents are gone.
pub(crate) struct Namespace {
    pub cluster: Cluster,
    pub name: String,
}

impl Namespace {
    pub(crate) async fn create(cluster: &Cluster, prefix: &str) -> Namespace {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let name = format!("ld-{prefix}-{}", &suffix[..8]);
        cluster
            .kubectl(&["create", "namespace", &name], None)
            .await
            .ok("kubectl create namespace");
        Namespace {
            cluster: cluster.clone(),
            name,
        }
    }

    /// `kubectl -n NS ARGS`.
    pub(crate) async fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Finished {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        self.cluster.kubectl(&all, stdin).await
    }

    /// `kubectl apply -f -` of one manifest (JSON); answers the output.
    pub(crate) async fn apply(&self, manifest: &Value) -> Finished {
        self.kubectl(&["apply", "-f", "-"], Some(&manifest.to_string()))
            .await
    }

    /// Applies `manifest` and fails the test if the API server refuses it.
    pub(crate) async fn apply_ok(&self, manifest: &Value) {
        self.apply(manifest).await.ok("kubectl apply");
    }

    /// `kubectl patch az NAME --type merge -p PATCH`.
    pub(crate) async fn patch_analyzer(&self, name: &str, patch: &Value) {
        self.kubectl(
            &[
                "patch",
                "analyzer",
                name,
                "--type",
                "merge",
                "-p",
                &patch.to_string(),
            ],
            None,
        )
        .await
        .ok("kubectl patch analyzer");
    }

    /// `kubectl get KIND NAME -o json`, parsed.
    pub(crate) async fn get_json(&self, kind: &str, name: &str) -> Value {
        let out = self.kubectl(&["get", kind, name, "-o", "json"], None).await;
        serde_json::from_str(out.ok("kubectl get -o json")).expect("kubectl prints JSON")
    }

    /// The holder of the leader Lease, if there is a Lease.
    pub(crate) async fn lease_holder(&self) -> Option<String> {
        let out = self
            .kubectl(
                &["get", "lease", LEASE, "-o", "jsonpath={.spec.holderIdentity}"],
                None,
            )
            .await;
        out.status.success().then(|| out.stdout.trim().to_string())
    }

    /// Makes `holder` hold the leader Lease for an hour, so that no
    /// distributor of this namespace leads (writes status or Events).
    pub(crate) async fn hold_lease(&self, holder: &str) {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
        self.apply_ok(&json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 3600,
                "acquireTime": now,
                "renewTime": now,
            }
        }))
        .await;
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let k = |args: &[&str], stdin: Option<&str>| self.cluster.kubectl_blocking(args, stdin);
        let _ = k(
            &[
                "delete",
                "-n",
                &self.name,
                "analyzers,leases,events,rolebindings,roles,serviceaccounts,secrets,configmaps,endpointslices",
                "--all",
                "--wait=false",
            ],
            None,
        );
        let _ = k(&["delete", "namespace", &self.name, "--wait=false"], None);
        let finalized = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": self.name},
            "spec": {"finalizers": []},
        });
        let path = format!("/api/v1/namespaces/{}/finalize", self.name);
        let _ = k(
            &["replace", "--raw", &path, "-f", "-"],
            Some(&finalized.to_string()),
        );
    }
}

// ---------------------------------------------------------------- status and Events

/// Between two kubectl polls.
pub(crate) const KUBECTL_POLL: Duration = Duration::from_millis(200);

/// Waits for an Event about Analyzer `name` with `type_` and `reason`.
pub(crate) async fn event_about(ns: &Namespace, name: &str, type_: &str, reason: &str) -> Value {
    eventually_every(
        &format!("a {type_} {reason} Event about {name}"),
        DEADLINE,
        KUBECTL_POLL,
        || async {
            let out = ns.kubectl(&["get", "events", "-o", "json"], None).await;
            let events: Value = serde_json::from_str(out.ok("kubectl get events")).expect("JSON");
            let items = events["items"].as_array().cloned().unwrap_or_default();
            items
                .iter()
                .find(|e| {
                    e["involvedObject"]["kind"] == "Analyzer"
                        && e["involvedObject"]["name"] == name
                        && e["type"] == type_
                        && e["reason"] == reason
                })
                .cloned()
                .ok_or_else(|| {
                    let seen: Vec<String> = items
                        .iter()
                        .map(|e| {
                            format!(
                                "{} {} {} {}",
                                e["involvedObject"]["name"], e["type"], e["reason"], e["message"]
                            )
                        })
                        .collect();
                    format!("{seen:?}")
                })
        },
    )
    .await
}

/// The Events (`events.k8s.io/v1`) regarding Analyzer `name` with `reason`.
pub(crate) async fn events_about(ns: &Namespace, name: &str, reason: &str) -> Vec<Value> {
    let out = ns
        .kubectl(&["get", "events.v1.events.k8s.io", "-o", "json"], None)
        .await;
    let events: Value = serde_json::from_str(out.ok("kubectl get events")).expect("JSON");
    events["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e["regarding"]["kind"] == "Analyzer" && e["regarding"]["name"] == name && e["reason"] == reason
        })
        .collect()
}

// ---------------------------------------------------------------- kubectl output

/// `kubectl get` output as rows of named cells, cut at the header's column
/// starts (cells may be empty).
pub(crate) fn table(text: &str) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let mut starts = Vec::new();
    let mut names = Vec::new();
    let mut previous = ' ';
    for (i, c) in header.char_indices() {
        if c != ' ' && previous == ' ' {
            starts.push(i);
        }
        previous = c;
    }
    for (n, start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(header.len());
        names.push(header[*start..end].trim().to_string());
    }
    let rows = lines
        .map(|line| {
            names
                .iter()
                .enumerate()
                .map(|(n, name)| {
                    let start = starts[n].min(line.len());
                    let end = starts.get(n + 1).copied().unwrap_or(line.len()).min(line.len());
                    (name.clone(), line[start..end].trim().to_string())
                })
                .collect()
        })
        .collect();
    (names, rows)
}

// ---------------------------------------------------------------- manifests

/// An Analyzer simulated in the distributor, never failing.
pub(crate) fn simulated(name: &str, weight: i64, processing_ms: u64) -> Value {
    json!({
        "apiVersion": "logs-distributor.dev/v1alpha1",
        "kind": "Analyzer",
        "metadata": {"name": name},
        "spec": {
            "weight": weight,
            "simulated": {"processingTimeMs": processing_ms, "failureRate": 0, "healthFailureRate": 0},
        }
    })
}

/// The four default analyzers: a/b/c/d weighted 40/30/20/10.
pub(crate) fn four_defaults(processing_ms: u64) -> Vec<Value> {
    [("a", 40), ("b", 30), ("c", 20), ("d", 10)]
        .into_iter()
        .map(|(name, weight)| simulated(name, weight, processing_ms))
        .collect()
}

// ---------------------------------------------------------------- the distributor

/// Starts the binary with `--source kubernetes` on `ns` as `identity`,
/// with [`distributor_yaml`]`(extra)`; files go to `dir`. Waits for
/// `/readyz` (200 once the first list of Analyzers has been applied).
pub(crate) async fn distributor(
    cluster: &Cluster,
    ns: &str,
    identity: &str,
    dir: &Path,
    extra: &str,
) -> Distributor {
    distributor_with_config(cluster, ns, identity, dir, &distributor_yaml(extra)).await
}

/// [`distributor`] with a configuration of the test's own.
pub(crate) async fn distributor_with_config(
    cluster: &Cluster,
    ns: &str,
    identity: &str,
    dir: &Path,
    yaml: &str,
) -> Distributor {
    let config = dir.join(format!("config-{identity}.yaml"));
    std::fs::write(&config, yaml).expect("write config");
    Distributor::start_with(dir, |command, port| {
        kube_flags(command, cluster, ns, identity, dir, port)
    })
    .await
}

/// Starts `d` again (after it stopped or was killed) with the flags,
/// configuration and data directory it had; waits for `/readyz`.
pub(crate) async fn restart_distributor(
    d: &mut Distributor,
    cluster: &Cluster,
    ns: &str,
    identity: &str,
    dir: &Path,
) {
    d.kill9();
    d.spawn_with(|command, port| kube_flags(command, cluster, ns, identity, dir, port));
    d.wait_ready()
        .await
        .unwrap_or_else(|e| panic!("{identity} again: {e}"));
}

/// The flags of a distributor of `ns` named `identity`, with its
/// configuration and data in `dir`.
fn kube_flags(command: &mut Command, cluster: &Cluster, ns: &str, identity: &str, dir: &Path, port: u16) {
    command
        .env("KUBECONFIG", &cluster.kubeconfig)
        .args([
            "--source",
            "kubernetes",
            "--namespace",
            ns,
            "--identity",
            identity,
        ])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.join(format!("data-{identity}")))
        .arg("--config")
        .arg(dir.join(format!("config-{identity}.yaml")));
}

/// `/readyz`'s `kubernetes` object.
pub(crate) async fn kube_readiness(api: &Api) -> Value {
    let reply = api.get("/readyz").await;
    reply.json["kubernetes"].clone()
}

/// Waits until `/api/v1/analyzers` satisfies `check` (given the
/// `analyzers` object by id); answers it.
pub(crate) async fn analyzers_where(
    api: &Api,
    what: &str,
    timeout: Duration,
    check: impl Fn(&Value) -> bool,
) -> Value {
    eventually(what, timeout, || async {
        let reply = api.get("/api/v1/analyzers").await;
        reply.expect(200);
        let analyzers = reply.json["analyzers"].clone();
        if check(&analyzers) {
            Ok(analyzers)
        } else {
            Err(analyzers.to_string())
        }
    })
    .await
}

/// The weights of `/api/v1/analyzers`, by id.
pub(crate) fn weights(analyzers: &Value) -> Vec<(String, u64)> {
    analyzers
        .as_object()
        .map(|all| {
            all.iter()
                .map(|(id, a)| (id.clone(), a["weight"].as_u64().unwrap_or(u64::MAX)))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------- EndpointSlices

/// This machine's address on its default route (no packet is sent): what
/// an EndpointSlice may name, unlike 127.0.0.1.
pub(crate) fn host_address() -> Ipv4Addr {
    let socket = UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
    socket
        .connect("10.255.255.255:9")
        .expect("a default route: the EndpointSlices need a non-loopback address");
    match socket.local_addr().expect("local address").ip() {
        IpAddr::V4(address) if !address.is_loopback() => address,
        other => panic!("no non-loopback IPv4 address on this machine ({other})"),
    }
}

// ---------------------------------------------------------------- RBAC

/// A file of the repository, by its path from the root.
pub(crate) fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

impl Namespace {
    /// `kubectl apply -n NS -f FILE`.
    pub(crate) async fn apply_file(&self, file: &Path) {
        let file = file.to_str().expect("UTF-8 path");
        self.kubectl(&["apply", "-f", file], None)
            .await
            .ok("kubectl apply -f");
    }

    /// A kubeconfig in `dir` that authenticates as the ServiceAccount
    /// `account` of this namespace, with a token from the TokenRequest API
    /// (served by the API server itself: no controller-manager needed).
    /// Answers the control plane as seen through it.
    pub(crate) async fn as_service_account(&self, account: &str, dir: &Path) -> Cluster {
        let token = self
            .kubectl(&["create", "token", account, "--duration=1h"], None)
            .await;
        let token = token.ok("kubectl create token").trim().to_string();
        let admin = self
            .cluster
            .kubectl(&["config", "view", "--raw", "--minify", "-o", "json"], None)
            .await;
        let admin: Value = serde_json::from_str(admin.ok("kubectl config view")).expect("JSON");
        let server = admin["clusters"][0]["cluster"].clone();
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": server}],
            "users": [{"name": account, "user": {"token": token}}],
            "contexts": [{"name": account, "context": {"cluster": "envtest", "user": account, "namespace": self.name}}],
            "current-context": account,
        });
        let path = dir.join(format!("kubeconfig-{account}"));
        std::fs::write(&path, config.to_string()).expect("write kubeconfig");
        Cluster {
            kubeconfig: path,
            ..self.cluster.clone()
        }
    }
}
