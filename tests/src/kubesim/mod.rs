//! # A Kubernetes API simulator
//!
//! An HTTP server on loopback that speaks the real REST paths and JSON of kube-apiserver for
//! namespaces, pods, persistentvolumeclaims, secrets, services, events, configmaps and
//! storageclasses, with a simulated kubelet and controllers behind it (serviceaccounts,
//! deployments, cronjobs, roles and rolebindings are stored only, so that deployment
//! manifests apply; nothing acts on them). It exists because no
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
//!   history compaction, latency, API server restarts ([`Faults::restart_api`]: watches end,
//!   history is lost, requests answer 503 for a while).
//! - [`Counters`]: requests by verb and by (verb, resource, namespace), open watches.
//! - Process pods (opt-in, [`SimOptions::process_images`]): containers of mapped images run
//!   as local processes on their loopback pod IP, with their env, Secret files and volumes
//!   as real directories; they are ready when their port answers and stopped on deletion.
//! - `GET /metrics`: the pods as kube-state-metrics (`kube_pod_info`, `kube_pod_created`,
//!   `kube_pod_start_time`, `kube_pod_completion_time`, `kube_pod_deletion_timestamp`,
//!   `kube_pod_status_phase`, `kube_pod_status_ready`, `kube_pod_container_info`,
//!   `kube_pod_container_status_restarts_total`, `kube_pod_container_resource_requests`
//!   and `_limits`, `kube_pod_annotations`, `kube_pod_labels`; labels `namespace`, `pod`,
//!   `uid` first) and cAdvisor (`container_cpu_usage_seconds_total`,
//!   `container_memory_working_set_bytes`, `container_memory_usage_bytes`,
//!   `container_memory_max_usage_bytes` per container (labels `container`, `id` = cgroup
//!   path `/kubepods/<qos>/pod<uid>/<id>`, `image`, `name`, `namespace`, `pod`) and for the
//!   pod cgroup (no `container`), `container_network_{receive,transmit}_bytes_total` for
//!   the pod cgroup with `interface="eth0"`) report them, in the Prometheus text format.
//!   Process containers report the CPU seconds (utime + stime + cutime + cstime of their
//!   process group in `/proc`, over `AT_CLKTCK`) and resident memory (`VmRSS`) of their
//!   processes and no network traffic; simulated ones 10 % of their CPU request (0.01 core
//!   without one) while running, half their memory request (64 MiB without one), and
//!   1 KiB/s received, 512 B/s sent. Removed pods' cAdvisor series linger
//!   ([`SimOptions::metrics_linger`]).
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
mod metrics;
mod ops;
mod patch;
mod pod_end;
mod process;
mod procfs;
mod resources;
mod scheduler;
mod selectors;
mod status;
mod store;
mod table;
mod validation;
mod volumes;
mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use counters::{Counters, PodTimes, RequestCount, WatchCount};
pub use faults::{FaultRequest, Faults};
pub use process::ProcessImage;
pub use status::ApiError;
pub use volumes::mount_env_name;

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
    /// How long the garbage collector takes to act on an owner's deletion (default 5 ms).
    /// It acts on the dependents as it observed them when the owner went (see
    /// [`Faults::restart_api`] for the other real-world lag): a dependent replaced in place
    /// meanwhile is still deleted. A real collector runs 2-4 s behind a burst of deletions.
    pub gc_delay: Duration,
    /// Count the garbage collector's requests (its GET and DELETE of each dependent) in
    /// [`Counters`], as a real API server counts every client (default off).
    pub count_controllers: bool,
    /// How long the scheduler takes to see a new claim (default none): a pod mounting a
    /// claim younger than this is reported unschedulable with `persistentvolumeclaim "..."
    /// not found`, then scheduled at its next retry, as a real scheduler whose informer
    /// lags behind the API server does.
    pub scheduler_lag: Duration,
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
    /// Images whose containers run as local processes (default none: every container is
    /// simulated). The first [`ProcessImage`] whose `image` a container's image contains
    /// gives its command line; see [`ProcessImage`] for the placeholders. Any mapping implies
    /// [`SimOptions::loopback_pod_ips`]. For such a container the kubelet, when it would
    /// start it:
    /// - materialises the pod's volumes as directories under [`SimOptions::process_root`]
    ///   (`persistentVolumeClaim`: `claims/<namespace>/<claim>/`, kept across pods;
    ///   `secret`/`configMap`: written like the kubelet's atomic writer (a `..data` symlink
    ///   swapped by rename) and rewritten within about 200 ms of a change of the object;
    ///   `emptyDir` and others: `pods/<namespace>/<pod>-<uid>/volumes/<volume>/`);
    /// - starts the command in its own process group with this process's environment plus
    ///   the container's `envFrom` and `env` (`value` with `$(VAR)` expanded,
    ///   `secretKeyRef`/`configMapKeyRef` read at start, `fieldRef` for metadata.name,
    ///   namespace, uid, labels/annotations, spec.nodeName, status.podIP/hostIP), then
    ///   `KUBESIM_MOUNT_<PATH>` per volumeMount (see [`mount_env_name`]) = its real directory,
    ///   `KUBESIM_POD_IP`, `KUBESIM_POD_NAME`, `KUBESIM_NAMESPACE`, `KUBESIM_POD_DIR`, and
    ///   `HOME` = the real directory of the mount at the home path (the container's `HOME`
    ///   value, else `/home/jovyan`; else the mount at its `workingDir`; else the pod's
    ///   directory), which is also the working directory. Env values and arguments that
    ///   start with a mount path are rewritten to its real directory;
    /// - sends stdout and stderr to `pods/<namespace>/<pod>-<uid>/<container>.log`, also
    ///   served by `GET .../pods/{name}/log?container=...`;
    /// - reports the container waiting (pod Pending) until its port (first `containerPort`,
    ///   else `PORT`; none: at once) accepts TCP connections on the pod IP, then running
    ///   and ready; an exit is reported as `terminated` with its exit code (128 + signal),
    ///   restarted after [`SimOptions::backoff`] in `CrashLoopBackOff` with a `BackOff`
    ///   event under restartPolicy Always/OnFailure, else the pod goes Failed/Succeeded;
    /// - on pod deletion SIGTERMs the process group, SIGKILLs it after the grace period, and
    ///   removes the pod only then; a removed pod's group is stopped the same way, and every
    ///   group at [`KubeSim::shutdown`] or drop (SIGKILL after 3 s).
    pub process_images: Vec<ProcessImage>,
    /// Where process pods' directories go (default `None`: a temporary directory removed
    /// with the simulator).
    pub process_root: Option<PathBuf>,
    /// How long the cAdvisor series of a removed pod stay on `/metrics` (default 60 s); they
    /// are served at least once after the removal however short this is. kube-state-metrics
    /// series go with the pod object, as in kube-state-metrics.
    pub metrics_linger: Duration,
    /// Pod annotations exported by `kube_pod_annotations` as `annotation_<key sanitized>`
    /// (kube-state-metrics' `--metric-annotations-allowlist`; `"*"`: all). Default: the
    /// three egi-accounting reads, `hub.jupyter.org/username`, `egi.eu/primary_group` and
    /// `egi.eu/flavor`.
    pub metrics_annotations: Vec<String>,
    /// Pod labels exported by `kube_pod_labels` as `label_<key sanitized>` (default `"*"`).
    pub metrics_labels: Vec<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            ready_delay: Duration::from_millis(200),
            schedule_delay: Duration::from_millis(20),
            terminate_delay: Duration::from_millis(100),
            bind_delay: Duration::from_millis(20),
            gc_delay: Duration::from_millis(5),
            count_controllers: false,
            scheduler_lag: Duration::ZERO,
            backoff: Duration::from_secs(1),
            bookmark_interval: Duration::from_secs(1),
            history_limit: 10_000,
            watch_buffer: 10_000,
            latency: Duration::ZERO,
            loopback_pod_ips: false,
            process_images: Vec::new(),
            process_root: None,
            metrics_linger: Duration::from_secs(60),
            metrics_annotations: [
                "hub.jupyter.org/username",
                "egi.eu/primary_group",
                "egi.eu/flavor",
            ]
            .map(str::to_owned)
            .to_vec(),
            metrics_labels: vec!["*".to_owned()],
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
    /// Process pods (see [`SimOptions::process_images`]).
    procs: Mutex<process::ProcTable>,
    /// Their root directory, when process pods are on.
    process_root: Option<PathBuf>,
    /// The temporary directory behind `process_root`, if the simulator made it.
    _process_tmp: Option<tempfile::TempDir>,
    metrics: Mutex<metrics::MetricsState>,
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
        let (process_root, process_tmp) = match (&opts.process_root, opts.process_images.is_empty())
        {
            (_, true) => (None, None),
            (Some(root), false) => {
                std::fs::create_dir_all(root)?;
                (Some(root.clone()), None)
            }
            (None, false) => {
                let tmp = tempfile::Builder::new().prefix("kubesim-").tempdir()?;
                (Some(tmp.path().to_owned()), Some(tmp))
            }
        };
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
            procs: Mutex::new(process::ProcTable::default()),
            process_root,
            _process_tmp: process_tmp,
            metrics: Mutex::new(metrics::MetricsState::default()),
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

    /// The root of process pods' directories (`None` without [`SimOptions::process_images`]).
    pub fn process_root(&self) -> Option<&Path> {
        self.shared.process_root.as_deref()
    }

    /// The directory of the process pod `ns/name` (its latest incarnation), if it started.
    pub fn pod_dir(&self, ns: &str, name: &str) -> Option<PathBuf> {
        let procs = lock(&self.shared.procs);
        self.pod_uid(ns, name)
            .and_then(|uid| procs.pods.get(&uid))
            .map(|p| p.dir.clone())
            .or_else(|| {
                procs
                    .pods
                    .values()
                    .find(|p| p.ns == ns && p.name == name)
                    .map(|p| p.dir.clone())
            })
    }

    /// The directory behind claim `ns/claim` for process pods (whether it exists or not).
    pub fn claim_dir(&self, ns: &str, claim: &str) -> Option<PathBuf> {
        Some(self.process_root()?.join("claims").join(ns).join(claim))
    }

    /// The PIDs (= process group IDs) of every process started for the pod `ns/name` (its
    /// current incarnation), in start order, whether still alive or not.
    pub fn pod_pids(&self, ns: &str, name: &str) -> Vec<u32> {
        let Some(uid) = self.pod_uid(ns, name) else {
            return Vec::new();
        };
        lock(&self.shared.procs)
            .pods
            .get(&uid)
            .map(|p| p.pids.clone())
            .unwrap_or_default()
    }

    fn pod_uid(&self, ns: &str, name: &str) -> Option<String> {
        let pod = self.object("pods", ns, name)?;
        pod["metadata"]["uid"].as_str().map(str::to_owned)
    }

    /// The `/metrics` text (kube-state-metrics and cAdvisor series), as served.
    pub fn metrics_text(&self) -> String {
        metrics::render(&self.shared)
    }

    /// Stops everything and waits (at most 5 s) for the server task to end; process pods'
    /// processes get SIGTERM, and SIGKILL after 3 s.
    pub async fn shutdown(mut self) {
        self.shared.cancel.cancel();
        let sh = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            process::stop_all_blocking(&sh, Duration::from_secs(3));
        })
        .await;
        if let Some(server) = self.server.take() {
            // Connections still busy after a few seconds are cut.
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        }
    }
}

impl Drop for KubeSim {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
        process::stop_all_blocking(&self.shared, Duration::from_secs(3));
    }
}

/// A kubeconfig for a simulator at `url` (cluster, user and context `sim`).
pub fn kubeconfig(url: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: {url}\nusers:\n- name: sim\n  user:\n    token: kubesim\ncontexts:\n- name: sim\n  context:\n    cluster: sim\n    user: sim\n    namespace: default\ncurrent-context: sim\npreferences: {{}}\n"
    )
}
