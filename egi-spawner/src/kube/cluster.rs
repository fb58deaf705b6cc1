//! [`KubeCluster`]: what every spawner of one hub shares (the client, the configuration and
//! one pod cache per namespace), and the mapping of API errors to [`Error`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::kube::cache::NamespaceCache;
use crate::kube::spawner::KubeSpawner;
use crate::{Error, KubeSpawnerConfig, Result, User};

/// Timeouts and failure policy of the Kubernetes spawner (what KubeSpawner calls
/// `start_timeout`, `delete_grace_period`, ...).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RuntimeOptions {
    /// How long `start()` waits for the pod to be ready (KubeSpawner's `start_timeout`).
    pub start_timeout: Duration,
    /// How long `stop()` (and a start replacing an old pod) waits for the pod to be gone.
    pub stop_timeout: Duration,
    /// Grace period of a normal stop, in seconds (KubeSpawner's `delete_grace_period`).
    pub delete_grace_period: i64,
    /// Fail a start as soon as the scheduler says no node fits. Turn off with a cluster
    /// autoscaler, where unschedulable pods wait for a new node.
    pub fail_unschedulable: bool,
    /// How long a start waits out a reason that real clusters report for a moment and take
    /// back (the scheduler not seeing a new claim yet; a claim whose provisioning failed,
    /// which provisioners retry) before it fails with that reason.
    pub transient_grace: Duration,
    /// How long the first list of a namespace may take before a start gives up (`poll`
    /// waits as long as it takes, as KubeSpawner's does).
    pub sync_timeout: Duration,
    /// Writes in flight at once, for all spawners of the cluster: a start holds one slot
    /// for its claim, pod and Secret (so its Secret follows its pod at once), a stop or a
    /// token update one for its request; watches are not counted. Bounds the connections,
    /// the memory and the load a burst of spawns puts on the API server.
    pub max_requests: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            start_timeout: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(60),
            delete_grace_period: 1,
            fail_unschedulable: true,
            transient_grace: Duration::from_secs(10),
            sync_timeout: Duration::from_secs(30),
            max_requests: 32,
        }
    }
}

pub(crate) struct Shared {
    pub(crate) client: kube::Client,
    pub(crate) config: KubeSpawnerConfig,
    pub(crate) options: RuntimeOptions,
    caches: Mutex<HashMap<String, Arc<NamespaceCache>>>,
    requests: tokio::sync::Semaphore,
    /// User namespaces known to exist (created by us or found there).
    namespaces: Mutex<std::collections::HashSet<String>>,
    /// Per namespace: when it was listed, and raw user name → the user's oldest claim.
    claim_index: tokio::sync::Mutex<HashMap<String, ClaimIndex>>,
}

/// The User-Agent of [`KubeCluster::infer`]'s client: API server audit logs and
/// `apiserver_request_total` then tell our requests from other clients'.
pub const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// Retries of a request answered 429, 503 or 504: the first after [`RETRY_MIN`], doubling up
/// to [`RETRY_MAX`], at most this many.
const RETRIES: u32 = 15;
/// First pause of [`client`]'s retries.
const RETRY_MIN: Duration = Duration::from_millis(5);
/// Longest pause of [`client`]'s retries.
const RETRY_MAX: Duration = Duration::from_millis(500);

/// The Kubernetes client [`KubeCluster::infer`] builds, from any client configuration (a hub
/// that loads its own `kube::Config` gets the same behaviour). Two differences from
/// `kube::Client::try_from(config)`:
/// - requests carry the User-Agent [`USER_AGENT`];
/// - a request answered 429, 503 or 504 is retried after 5 ms doubling to at most 500 ms (15
///   times). kube's default doubles up to 1,000 s: behind a load balancer that answers 503
///   while the API server restarts, a watch retried that way came back seconds after the
///   server did, and every start in flight returned that late.
///
/// The client's request buffer is a task: call this inside a Tokio runtime.
pub fn client(mut config: kube::Config) -> Result<kube::Client> {
    let transport =
        |action: &str, source: Box<dyn std::error::Error + Send + Sync>| Error::Transport {
            action: action.to_owned(),
            source,
        };
    // Both parse (constant, valid header text); typed by `headers`, so no `http` import.
    if let (Ok(name), Ok(value)) = ("user-agent".parse(), USER_AGENT.parse()) {
        config.headers.push((name, value));
    }
    config.default_retry = false;
    let policy = kube::client::retry::RetryPolicy::new(RETRY_MIN, RETRY_MAX, RETRIES, true)
        .map_err(|e| transport("configure the Kubernetes client's retries", Box::new(e)))?;
    let builder = kube::client::ClientBuilder::try_from(config)
        .map_err(|e| transport("build the Kubernetes client", Box::new(e)))?;
    // The retry layer clones the service per request; the buffer makes the boxed stack
    // cloneable (as kube's own retry example does). Requests still run concurrently: the
    // buffer only hands each one to the stack.
    Ok(builder
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&tower::retry::RetryLayer::new(policy))
        .build())
}

/// When a namespace's claims were listed, and raw user name → that user's oldest claim.
type ClaimIndex = (tokio::time::Instant, HashMap<String, String>);

/// How long a listed claim index answers "this user has no claim" before a new list.
const CLAIM_INDEX_TTL: Duration = Duration::from_secs(30);

/// The Kubernetes side of a hub: one client, one configuration, one watch-backed pod cache per
/// namespace. Cheap to clone; make one per hub and a [`KubeSpawner`] per server from it.
#[derive(Clone)]
pub struct KubeCluster {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("namespace", &self.shared.config.namespace)
            .field("options", &self.shared.options)
            .finish_non_exhaustive()
    }
}

impl KubeCluster {
    /// A cluster from a client; the configuration is validated first.
    pub fn new(
        client: kube::Client,
        config: KubeSpawnerConfig,
        options: RuntimeOptions,
    ) -> Result<KubeCluster> {
        config.validate()?;
        Ok(KubeCluster {
            shared: Arc::new(Shared {
                client,
                config,
                requests: tokio::sync::Semaphore::new(options.max_requests.max(1)),
                claim_index: tokio::sync::Mutex::new(HashMap::new()),
                namespaces: Mutex::new(std::collections::HashSet::new()),
                options,
                caches: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// A cluster from the environment: `KUBECONFIG` or `~/.kube/config`, else the in-cluster
    /// service account. Its requests carry the User-Agent [`USER_AGENT`] (a client given to
    /// [`KubeCluster::new`] keeps its own headers).
    pub async fn infer(config: KubeSpawnerConfig, options: RuntimeOptions) -> Result<KubeCluster> {
        let transport =
            |action: &str, source: Box<dyn std::error::Error + Send + Sync>| Error::Transport {
                action: action.to_owned(),
                source,
            };
        let kube_config = kube::Config::infer()
            .await
            .map_err(|e| transport("load the Kubernetes client configuration", Box::new(e)))?;
        KubeCluster::new(client(kube_config)?, config, options)
    }

    /// The spawner of one server (`server_name` empty for the default server).
    pub fn spawner(&self, user: User, server_name: &str) -> KubeSpawner {
        KubeSpawner::new(self.clone(), user, server_name)
    }

    /// The configuration.
    pub fn config(&self) -> &KubeSpawnerConfig {
        &self.shared.config
    }

    /// The client (for a hub's own calls).
    pub fn client(&self) -> &kube::Client {
        &self.shared.client
    }

    /// Starts watching `namespace` now, instead of at the first spawn there, and waits for its
    /// first list (hubs call this at startup, before polling the servers they recorded).
    pub async fn watch_namespace(&self, namespace: &str) -> Result<()> {
        self.cache(namespace).await.map(|_| ())
    }

    /// Number of server pods in the cache of `namespace` (0 if it is not watched).
    pub fn cached_pods(&self, namespace: &str) -> usize {
        self.lock().get(namespace).map_or(0, |c| c.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<NamespaceCache>>> {
        self.shared
            .caches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs one API request when a slot is free (see [`RuntimeOptions::max_requests`]).
    pub(crate) async fn limited<T>(&self, request: impl Future<Output = T>) -> T {
        self.limited_with(|| request).await
    }

    /// Like [`KubeCluster::limited`], but the future is made only once a slot is free, so a
    /// queue of waiting spawns holds no request state.
    pub(crate) async fn limited_with<F, T>(&self, make: impl FnOnce() -> F) -> T
    where
        F: Future<Output = T>,
    {
        let _permit = self.shared.requests.acquire().await.ok();
        make().await
    }

    /// The claim of `username` (its raw name in the annotation `hub.jupyter.org/username`,
    /// EGI's way), the oldest if several: from an index built by one metadata-only list per
    /// namespace, shared by concurrent starts (single flight) and listed again on a miss once
    /// it is older than 30 s.
    pub(crate) async fn claim_by_annotation(
        &self,
        namespace: &str,
        username: &str,
    ) -> Result<Option<String>> {
        let mut index = self.shared.claim_index.lock().await;
        if let Some((at, by_user)) = index.get(namespace) {
            if let Some(claim) = by_user.get(username) {
                return Ok(Some(claim.clone()));
            }
            if at.elapsed() < CLAIM_INDEX_TTL {
                return Ok(None);
            }
        }
        let api: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
            kube::Api::namespaced(self.shared.client.clone(), namespace);
        // Not through `limited`: the start asking holds a request slot for its whole write
        // phase already, and waiting for a second one deadlocked (with `max_requests = 1`
        // at once; with 32 slots as soon as 32 first starts wait on a stale index).
        let list = api
            .list_metadata(&kube::api::ListParams::default())
            .await
            .map_err(|e| api_error("list persistentvolumeclaims", namespace, e))?;
        let mut claims: Vec<(String, String, String)> = list
            .items
            .into_iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter_map(|c| {
                let user = c
                    .metadata
                    .annotations
                    .as_ref()?
                    .get(crate::storage::USERNAME_ANNOTATION)?
                    .clone();
                let created = c
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                Some((user, created, c.metadata.name?))
            })
            .collect();
        // Oldest first, so the user's original home wins when there are several.
        claims.sort_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
        let mut by_user: HashMap<String, String> = HashMap::new();
        for (user, _, name) in claims {
            by_user.entry(user).or_insert(name);
        }
        let found = by_user.get(username).cloned();
        index.insert(namespace.to_owned(), (tokio::time::Instant::now(), by_user));
        Ok(found)
    }

    /// Makes sure a user namespace exists (KubeSpawner creates it too; without this the first
    /// spawn got 404): created once, 409 meaning it is there. The hub's own namespace is
    /// never created. A 403 (no right to create namespaces) lets the start go on: the
    /// namespace may exist and the pod's create says so if not.
    pub(crate) async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        if namespace == self.shared.config.namespace
            || self.shared.config.user_namespace_template.is_none()
            || self.known_namespaces().contains(namespace)
        {
            return Ok(());
        }
        let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(self.shared.client.clone());
        let manifest = k8s_openapi::api::core::v1::Namespace {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(namespace.to_owned()),
                labels: Some(std::collections::BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    crate::manifest::MANAGED_BY.to_owned(),
                )])),
                ..Default::default()
            },
            ..Default::default()
        };
        match self
            .limited(api.create(&kube::api::PostParams::default(), &manifest))
            .await
        {
            Ok(_) => {}
            Err(error) if status_code(&error) == Some(409) => {}
            Err(error) if status_code(&error) == Some(403) => {
                tracing::warn!(%namespace, %error, "cannot create the user namespace; assuming it exists");
            }
            Err(error) => return Err(api_error("create namespace", namespace, error)),
        }
        self.known_namespaces().insert(namespace.to_owned());
        Ok(())
    }

    fn known_namespaces(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.shared
            .namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Releases the cache of a user namespace (its watches end) once it holds no server pod
    /// and no spawn follows a pod in it; the hub's own namespace stays watched. Without this,
    /// with a namespace per user, the hub kept one pod watch per user who ever spawned.
    pub(crate) fn release_cache(&self, namespace: &str) {
        if namespace == self.shared.config.namespace {
            return;
        }
        let mut caches = self.lock();
        if caches.get(namespace).is_some_and(|c| c.idle()) {
            // Dropping the last reference aborts its watch task.
            caches.remove(namespace);
        }
    }

    /// The cache of a namespace, started on first use, synced or not.
    pub(crate) fn cache_started(&self, namespace: &str) -> Arc<NamespaceCache> {
        let mut caches = self.lock();
        Arc::clone(
            caches
                .entry(namespace.to_owned())
                .or_insert_with(|| NamespaceCache::start(self.shared.client.clone(), namespace)),
        )
    }

    /// The synced cache of a namespace, started on first use.
    pub(crate) async fn cache(&self, namespace: &str) -> Result<Arc<NamespaceCache>> {
        let cache = self.cache_started(namespace);
        tokio::time::timeout(self.shared.options.sync_timeout, cache.wait_synced())
            .await
            .map_err(|_| Error::CacheUnavailable {
                namespace: namespace.to_owned(),
            })?;
        Ok(cache)
    }
}

/// Maps a client error to the crate's error: API statuses keep their code, reason and message;
/// a quota refusal becomes [`Error::QuotaExceeded`].
pub(crate) fn api_error(action: impl Into<String>, namespace: &str, error: kube::Error) -> Error {
    let action = action.into();
    match error {
        kube::Error::Api(status) => {
            if status.code == 403 && status.message.contains("exceeded quota") {
                Error::QuotaExceeded {
                    namespace: namespace.to_owned(),
                    message: status.message,
                }
            } else {
                Error::Api {
                    action,
                    code: status.code,
                    reason: status.reason,
                    message: status.message,
                }
            }
        }
        source => Error::Transport {
            action,
            source: Box::new(source),
        },
    }
}

/// The HTTP status of an API error (`None` for transport errors).
pub(crate) fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}
