//! # A Kubernetes API simulator
//!
//! An HTTP server on loopback that speaks the real REST paths and JSON of kube-apiserver for
//! namespaces, pods, persistentvolumeclaims, secrets, services, events, configmaps and
//! storageclasses, with a simulated kubelet and controllers behind it. It exists because no
//! API server, kind, k3s or container engine runs on the test machines; kubectl and the
//! Python `kubernetes` client work against it (see the `kubesim` test target).
//!
//! - Verbs: get, list, watch, create, update (PUT), patch (merge, strategic merge, JSON
//!   patch), delete (grace period, UID and resourceVersion preconditions), deletecollection;
//!   `/status` subresources for pods, PVCs, namespaces and services.
//! - Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!key`) and field selectors
//!   (`metadata.name`, `metadata.namespace`, pod `status.phase`/`spec.nodeName`/..., event
//!   `involvedObject.*`/`reason`/`type`/`source`, secret `type`; others answer 400).
//! - One global resourceVersion; watches replay a bounded per-resource log and answer an
//!   `ERROR` event with a 410 `Expired` Status for versions older than it; bookmarks;
//!   selector transitions sent as ADDED/DELETED; `timeoutSeconds`; `sendInitialEvents`.
//! - Status bodies as the real server sends them (404 NotFound, 409 AlreadyExists and
//!   Conflict, 403 Forbidden, 422 Invalid with causes, 400 BadRequest, 410 Expired).
//! - A kubelet: pods go Pending -> Scheduled -> Running with events (Scheduled, Pulling,
//!   Pulled, Created, Started), a pod IP and ready containers, after
//!   [`SimOptions::ready_delay`]; missing Secrets and unbound PVCs hold them back;
//!   graceful termination. Controllers: PVCs bind (and expand when their class allows it),
//!   owner-reference garbage collection, namespace deletion.
//! - Faults ([`Faults`], or `POST /simulator/faults` for the binary): image pull errors,
//!   unschedulable pods, crash loops, container exits, evictions, quota, dropped watches,
//!   history compaction, latency.
//! - [`Counters`]: requests by verb and by (verb, resource, namespace), open watches.
//!
//! ```no_run
//! use egi_test_harness::kubesim::{KubeSim, SimOptions};
//!
//! # async fn run() -> std::io::Result<()> {
//! let sim = KubeSim::start(SimOptions::default()).await?;
//! sim.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?;
//! println!("API server at {}", sim.url());
//! sim.faults().fail_image_pull("broken/image");
//! assert_eq!(sim.counters().verb("create"), 0);
//! # Ok(())
//! # }
//! ```

mod controllers;
mod counters;
mod defaults;
mod events;
mod faults;
mod http;
mod kubelet;
mod ops;
mod patch;
mod pod_end;
mod resources;
mod selectors;
mod status;
mod store;
mod table;
mod validation;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use counters::{Counters, PodTimes, RequestCount, WatchCount};
pub use faults::{FaultRequest, Faults};
pub use status::ApiError;

use counters::CounterState;
use faults::FaultState;
use resources::{NAMESPACES, STORAGECLASSES};
use store::Store;

/// Timings and limits of a simulator; [`Default`] suits tests.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// From pod creation to Running and ready (default 200 ms); the kubelet's steps
    /// (pulling, pulled, created, started) are spread inside it.
    pub ready_delay: Duration,
    /// From pod creation to Scheduled (default 20 ms; capped by `ready_delay`).
    pub schedule_delay: Duration,
    /// How long a gracefully deleted pod stays terminating, at most its grace period
    /// (default 100 ms).
    pub terminate_delay: Duration,
    /// From PVC creation to Bound, and from expansion to the new capacity (default 20 ms).
    pub bind_delay: Duration,
    /// Retry period of failing steps: image pull back-off, crash loop back-off,
    /// unschedulable retries (default 1 s).
    pub backoff: Duration,
    /// Interval between watch bookmarks when a watcher allows them (default 1 s).
    pub bookmark_interval: Duration,
    /// Changes kept per resource for watch resumption (default 10,000); older versions
    /// get 410 Expired.
    pub history_limit: usize,
    /// Changes a watcher may lag behind before its watch is ended (default 10,000).
    pub watch_buffer: usize,
    /// Latency added to every API request (default none).
    pub latency: Duration,
    /// Pod IPs from the loopback range (`127.244.x.y`) instead of the cluster range
    /// (`10.244.x.y`), so a test can serve a pod's address on this machine and a gateway
    /// under test can proxy to it (default off: cluster IPs are never to be contacted).
    pub loopback_pod_ips: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            ready_delay: Duration::from_millis(200),
            schedule_delay: Duration::from_millis(20),
            terminate_delay: Duration::from_millis(100),
            bind_delay: Duration::from_millis(20),
            backoff: Duration::from_secs(1),
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
            watch_buffer: 10_000,
            latency: Duration::ZERO,
            loopback_pod_ips: false,
        }
    }
}

/// State shared by the server, the controllers and the handles.
#[derive(Debug)]
pub(crate) struct Shared {
    store: Mutex<Store>,
    opts: Mutex<SimOptions>,
    faults: Mutex<FaultState>,
    counters: Mutex<CounterState>,
    /// Woken on every Secret or PVC change (the kubelet waits on it).
    changed: Notify,
    cancel: CancellationToken,
    /// Bumped to end every open watch abruptly.
    drops: tokio::sync::watch::Sender<u64>,
    rt: tokio::runtime::Handle,
    next_ip: AtomicU32,
    addr: SocketAddr,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn opts(&self) -> SimOptions {
        lock(&self.opts).clone()
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.faults)
    }

    pub(crate) fn counters(&self) -> MutexGuard<'_, CounterState> {
        lock(&self.counters)
    }

    pub(crate) fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) {
        let cancel = self.cancel.clone();
        self.rt.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = f => {}
            }
        });
    }
}

/// A running simulator; dropping it (or [`KubeSim::shutdown`]) stops the server, the
/// kubelet and the controllers, and ends open watches.
#[derive(Debug)]
pub struct KubeSim {
    shared: Arc<Shared>,
    server: Option<tokio::task::JoinHandle<()>>,
}

fn seed(store: &mut Store) {
    let now = status::now();
    for ns in ["default", "kube-system", "kube-public"] {
        let mut obj = json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {
            "name": ns, "uid": status::uuid(), "creationTimestamp": now,
        }});
        defaults::on_create(NAMESPACES, &mut obj, None);
        store.put(NAMESPACES, obj);
    }
    for (name, expand, default) in [("standard", true, true), ("fixed", false, false)] {
        let mut obj = json!({
            "kind": "StorageClass", "apiVersion": "storage.k8s.io/v1",
            "metadata": {"name": name, "uid": status::uuid(), "creationTimestamp": now},
            "provisioner": "kubesim.io/hostpath",
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": expand,
        });
        if default {
            obj["metadata"]["annotations"] =
                json!({"storageclass.kubernetes.io/is-default-class": "true"});
        }
        store.put(STORAGECLASSES, obj);
    }
}

impl KubeSim {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime. Namespaces `default`,
    /// `kube-system` and `kube-public` exist, and storage classes `standard` (the default,
    /// expandable) and `fixed` (not expandable).
    pub async fn start(opts: SimOptions) -> std::io::Result<KubeSim> {
        Self::start_on(opts, 0).await
    }

    /// Like [`KubeSim::start`] on a given loopback port (0 for a free one).
    pub async fn start_on(opts: SimOptions, port: u16) -> std::io::Result<KubeSim> {
        let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).await?;
        let addr = listener.local_addr()?;
        let mut store = Store::new(opts.history_limit, opts.watch_buffer);
        seed(&mut store);
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            faults: Mutex::new(FaultState {
                latency: opts.latency,
                ..FaultState::default()
            }),
            opts: Mutex::new(opts),
            counters: Mutex::new(CounterState::default()),
            changed: Notify::new(),
            cancel: CancellationToken::new(),
            drops: tokio::sync::watch::channel(0).0,
            rt: tokio::runtime::Handle::current(),
            next_ip: AtomicU32::new(0),
            addr,
        });
        let server = http::serve(shared.clone(), listener);
        Ok(KubeSim {
            shared,
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// Writes a kubeconfig with cluster, user and context `sim` (namespace `default`).
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, kubeconfig(&self.url()))
    }

    /// A snapshot of the request and watch counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters().snapshot()
    }

    /// When each pod was first Running and first failed to pull its image (see [`PodTimes`]).
    pub fn timeline(&self) -> std::collections::BTreeMap<String, PodTimes> {
        self.shared.counters().timeline()
    }

    /// Zeroes the request counters (open watches stay; the peak restarts from them). The
    /// timeline is kept.
    pub fn reset_counters(&self) {
        self.shared.counters().reset();
    }

    /// The fault injection handle.
    pub fn faults(&self) -> Faults {
        Faults::new(self.shared.clone())
    }

    /// Changes the kubelet's ready delay for pods created from now on.
    pub fn set_ready_delay(&self, delay: Duration) {
        lock(&self.shared.opts).ready_delay = delay;
    }

    /// Changes the kubelet's schedule delay for pods created from now on.
    pub fn set_schedule_delay(&self, delay: Duration) {
        lock(&self.shared.opts).schedule_delay = delay;
    }

    /// One object, read without going through HTTP or the counters (`resource`: plural,
    /// singular, short name or kind; `ns` ignored for cluster-scoped resources).
    pub fn object(&self, resource: &str, ns: &str, name: &str) -> Option<Value> {
        let res = resources::lookup(resource)?;
        let ns = if resources::RESOURCES[res].namespaced {
            ns
        } else {
            ""
        };
        self.shared.lock().get(res, ns, name).map(|o| (**o).clone())
    }

    /// Every object of a resource in a namespace (`""`: all namespaces), by name.
    pub fn objects(&self, resource: &str, ns: &str) -> Vec<Value> {
        let Some(res) = resources::lookup(resource) else {
            return Vec::new();
        };
        let ns = if !resources::RESOURCES[res].namespaced {
            Some("")
        } else if ns.is_empty() {
            None
        } else {
            Some(ns)
        };
        self.shared
            .lock()
            .iter(res, ns)
            .map(|o| (**o).clone())
            .collect()
    }

    /// Stores an object as is (creating or replacing it, namespace taken from the object,
    /// uid and creationTimestamp added if missing, status kept), emitting the watch event,
    /// and lets the controllers react as to a create (a seeded pod without `spec.nodeName`
    /// goes through the kubelet; one with it is left as given; a PVC without status gets the
    /// default storage class if it names none, and is bound). For seeding state such as a
    /// pod left by an earlier hub. Returns the stored object, or an error for an unknown
    /// resource or a nameless object.
    pub fn put_object(&self, resource: &str, mut obj: Value) -> Result<Value, ApiError> {
        let res = resources::lookup(resource).ok_or_else(|| {
            ApiError::bad_request(format!(
                "the server doesn't have a resource type \"{resource}\""
            ))
        })?;
        let r = &resources::RESOURCES[res];
        if obj["metadata"]["name"].as_str().is_none_or(str::is_empty) {
            return Err(ApiError::bad_request("metadata.name is required"));
        }
        obj["kind"] = json!(r.kind);
        obj["apiVersion"] = json!(r.api_version());
        if r.namespaced
            && obj["metadata"]["namespace"]
                .as_str()
                .is_none_or(str::is_empty)
        {
            obj["metadata"]["namespace"] = json!("default");
        }
        if obj["metadata"]["uid"].as_str().is_none_or(str::is_empty) {
            obj["metadata"]["uid"] = json!(status::uuid());
        }
        if obj["metadata"]["creationTimestamp"].is_null() {
            obj["metadata"]["creationTimestamp"] = json!(status::now());
        }
        if res == resources::PVCS
            && obj["status"]["phase"].is_null()
            && obj["spec"]["storageClassName"].is_null()
        {
            let default = self
                .shared
                .lock()
                .iter(STORAGECLASSES, Some(""))
                .find(|c| {
                    c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
                        == "true"
                })
                .map(|c| c["metadata"]["name"].clone());
            if let Some(class) = default {
                obj["spec"]["storageClassName"] = class;
            }
        }
        let stored = self.shared.lock().put(res, obj);
        controllers::on_created(&self.shared, res, &stored);
        Ok((*stored).clone())
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Stops everything and waits (at most 5 s) for the server task to end.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        if let Some(server) = self.server.take() {
            // Connections still busy after a few seconds are cut.
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

/// A kubeconfig for a simulator at `url` (cluster, user and context `sim`).
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {url}\nusers:\n- name: sim\n  user:\n    token: kubesim\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\npreferences: {{}}\n"
    )
}
