//! [`KubeSpawner`]: the spawner of one server, on a shared [`KubeCluster`].
//!
//! API requests per operation (the scale benchmark counts them): a first start creates the
//! claim, the token Secret and the pod (3); a returning start, whose claim is in the saved
//! state, replaces the Secret and creates the pod (2); a stop deletes the pod (1). The Secret
//! is long-lived and owned by no pod, so no garbage collector works after a stop (see
//! `secret.rs` for why). Readiness, `poll()` and the wait for a pod to be gone read the
//! namespace's watch-backed cache: no per-user GET or LIST.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

use super::cache::{NamespaceCache, Slot};
use super::cluster::{KubeCluster, api_error, status_code};
use super::progress::Progress;
use super::ready::Listeners;
use super::wait::{FinishOnDrop, Watched, deadline_after, delete_params, server_url, wait_for};
use crate::spawner::StartRequest;
use crate::{
    Error, PollStatus, ProgressEvent, Result, SpawnPlan, Spawner, SpawnerState, User, manifest,
};

/// The spawner of one server of one user on Kubernetes (JupyterHub's `KubeSpawner`).
pub struct KubeSpawner {
    pub(crate) cluster: KubeCluster,
    pub(crate) user: User,
    pub(crate) server: String,
    state: Mutex<SpawnerState>,
    pub(crate) progress: Progress,
    /// Held for the whole of a start: starts of one server never overlap, and `stop` waits
    /// for a start it cancelled to let go.
    starting: tokio::sync::Mutex<()>,
    /// Bumped by every `stop`: a start running at that moment gives up.
    stops: watch::Sender<u64>,
    /// The latest tokens given to `start` or `update_tokens`, so a refresh that lands while
    /// a start runs is not lost.
    tokens: Mutex<Option<crate::UserTokens>>,
    /// This spawner wrote the token Secret (so the next start replaces it in one request).
    secret_known: AtomicBool,
}

impl std::fmt::Debug for KubeSpawner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSpawner")
            .field("user", &self.user.name)
            .field("server", &self.server)
            .field("state", &*self.lock())
            .finish_non_exhaustive()
    }
}

impl KubeSpawner {
    pub(crate) fn new(cluster: KubeCluster, user: User, server: &str) -> KubeSpawner {
        KubeSpawner {
            cluster,
            user,
            server: server.to_owned(),
            state: Mutex::new(SpawnerState::default()),
            progress: Progress::new(),
            starting: tokio::sync::Mutex::new(()),
            stops: watch::channel(0).0,
            tokens: Mutex::new(None),
            secret_known: AtomicBool::new(false),
        }
    }

    /// Whether the token Secret should exist: written by this spawner, or named by a loaded
    /// state (a hub restart).
    pub(crate) fn secret_known(&self) -> bool {
        self.secret_known.load(Ordering::Relaxed) || self.lock().token_secret.is_some()
    }

    pub(crate) fn set_secret_known(&self, known: bool) {
        self.secret_known.store(known, Ordering::Relaxed);
    }

    /// Keeps the latest tokens for the next start.
    pub(crate) fn remember_tokens(&self, tokens: &crate::UserTokens) {
        *self.tokens.lock().unwrap_or_else(PoisonError::into_inner) = Some(tokens.clone());
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, SpawnerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plan with the user's options; names saved in the state win over the templates, so a
    /// template change does not orphan a running pod or a claim.
    pub(crate) fn plan(
        &self,
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<SpawnPlan> {
        let mut plan = crate::resolve(
            &self.cluster.shared.config,
            &self.user,
            &self.server,
            options,
        )?;
        let state = self.lock();
        if let (Some(pod), Some(namespace)) = (&state.pod_name, &state.namespace) {
            plan.pod_name.clone_from(pod);
            plan.namespace.clone_from(namespace);
        }
        if let Some(secret) = &state.token_secret {
            plan.secret_name.clone_from(secret);
        }
        // A claim that exists keeps its name (KubeSpawner's `pvc_name` in the state), whatever
        // the template says now.
        if let (Some(pvc), crate::ClaimPlan::Ensure { manifest, .. }) =
            (&state.pvc_name, &mut plan.claim)
        {
            manifest.metadata.name = Some(pvc.clone());
        }
        Ok(plan)
    }

    /// Runs a start under the start lock; a `stop` meanwhile cancels it.
    async fn start_guarded(&self, request: Box<StartRequest>) -> Result<String> {
        let _starting = self.starting.lock().await;
        let mut stops = self.stops.subscribe();
        stops.mark_unchanged();
        // JupyterHub's ready event names the server's public path, not the pod's address.
        let prefix = request.hub.service_prefix.clone();
        let result = tokio::select! {
            result = self.start_inner(request) => result,
            _ = stops.changed() => Err(Error::Stopped),
        };
        match &result {
            Ok(url) => self
                .progress
                .finish(ProgressEvent::ready(if prefix.is_empty() {
                    url
                } else {
                    &prefix
                })),
            Err(error) => {
                if let Error::SpawnFailed { message, .. } = error
                    && message.contains("persistentvolumeclaim")
                    && message.contains("not found")
                {
                    // The claim was deleted behind our back: ensure it again next time.
                    self.forget_claim();
                }
                self.progress.finish(ProgressEvent::failed(match error {
                    Error::Stopped => "Spawn cancelled".to_owned(),
                    error => format!("Spawn failed: {error}"),
                }));
            }
        }
        result
    }

    async fn start_inner(&self, request: Box<StartRequest>) -> Result<String> {
        let options = &self.cluster.shared.options;
        let deadline = deadline_after(options.start_timeout);
        let namespace = self.plan(&request.user_options)?.namespace;
        // Boxed: their request futures are large, and in the wait below they would still
        // take room in every waiting start.
        Box::pin(self.cluster.ensure_namespace(&namespace)).await?;
        let cache = Box::pin(self.cluster.cache(&namespace)).await?;
        // Everything big (plan, manifests, the hub's context) is dropped before the wait, so
        // a thousand waiting spawns hold little more than their cache subscription.
        // One request slot for the whole write phase: a spawn's Secret follows its pod at
        // once instead of queueing behind other spawns' pods (the kubelet waits for it).
        let (uid, port, mut listeners, watched) = self
            .cluster
            // Boxed and made late: the write phase's (large) state exists only while it runs.
            .limited_with(|| Box::pin(self.create(request, &cache, deadline)))
            .await?;
        let mut rx = watched.rx.clone();
        let ip = self
            .wait_ready(&mut rx, &mut listeners, &uid, deadline)
            .await?;
        Ok(server_url(&ip, port))
    }

    /// The writes of a start: claim, token Secret, pod. Returns the pod's UID and port, and
    /// the subscriptions the wait needs (made before the writes, so nothing is missed).
    async fn create(
        &self,
        request: Box<StartRequest>,
        cache: &Arc<NamespaceCache>,
        deadline: Instant,
    ) -> Result<(String, u16, Listeners, Watched)> {
        let plan = self.plan(&request.user_options)?;
        let tokens = {
            let mut latest = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
            if request.tokens.is_some() {
                latest.clone_from(&request.tokens);
            }
            latest.clone()
        };
        self.progress.step(format!(
            "Server {} in namespace {}",
            plan.pod_name, plan.namespace
        ));
        // Listening before the claim is written: its binding failures come right after.
        let claim_name = manifest::claim(&plan).and_then(|c| c.metadata.name);
        let events = cache
            .events
            .listen(&plan.pod_name, claim_name.as_deref())
            .await;
        let known = self.lock().pvc_name.clone();
        let claim = self.ensure_claim(&plan).await?;
        if let Some(claim) = &claim {
            // Requested, not ready: it may still have to bind (its events follow).
            self.progress.step(format!("Volume {claim} claimed"));
        }

        let watched = Watched::new(cache, &plan.pod_name);
        let mut rx = watched.rx.clone();
        // The Secret first: owned by no pod, it needs no pod UID, and the kubelet never
        // finds the pod's Secret missing.
        let secret = manifest::token_secret(&plan, &request.hub, tokens.as_ref());
        self.put_secret(&plan.namespace, &secret).await?;
        // Known before the create: a stop from now on deletes the pod even if the create's
        // answer never reaches us.
        {
            let mut state = self.lock();
            state.pod_name = Some(plan.pod_name.clone());
            state.namespace = Some(plan.namespace.clone());
            state.token_secret = Some(plan.secret_name.clone());
        }
        let build = || manifest::pod(&plan, &request.hub, claim.as_deref());
        let uid = self.create_pod(&plan, build, &mut rx, deadline).await?;
        self.progress.step(format!("Pod {} created", plan.pod_name));
        let listeners = Listeners {
            events,
            claim: claim.clone().filter(|_| claim == claim_name),
            // Written (or looked up) by this start, so a scheduler may not see it yet.
            fresh_claim: claim.is_some() && claim != known,
        };
        Ok((uid, plan.settings.port, listeners, watched))
    }

    /// Creates the pod. A 409 means a pod of that name exists: an old server of ours (stale,
    /// or still terminating) is deleted with a UID precondition, waited for, and replaced; a
    /// pod that is not a notebook server is never touched.
    async fn create_pod(
        &self,
        plan: &SpawnPlan,
        build: impl Fn() -> Pod,
        rx: &mut watch::Receiver<Slot>,
        deadline: Instant,
    ) -> Result<String> {
        let shared = &self.cluster.shared;
        let api: Api<Pod> = Api::namespaced(shared.client.clone(), &plan.namespace);
        let action = || format!("create pod {}", plan.pod_name);
        for _ in 0..3 {
            // The manifest exists only while its request runs.
            let created = api.create(&PostParams::default(), &build()).await;
            let error = match created {
                Ok(created) => return Ok(created.metadata.uid.unwrap_or_default()),
                Err(error) if status_code(&error) == Some(409) => error,
                Err(error) => return Err(api_error(action(), &plan.namespace, error)),
            };
            // Seen by the cache (label-scoped, so only notebook servers)? Wait briefly for it.
            let old = wait_for(
                rx,
                |slot| slot.is_some(),
                Instant::now() + std::time::Duration::from_secs(2),
            )
            .await
            .flatten();
            let Some(old) = old else {
                return Err(api_error(action(), &plan.namespace, error));
            };
            if !old.belongs_to(&self.user.name, &self.server) {
                // Another user's server took the name (a template collision): never touch it.
                return Err(api_error(action(), &plan.namespace, error));
            }
            if !old.terminating {
                tracing::info!(pod = %plan.pod_name, uid = %old.uid, "replacing a stale server pod");
                let params = delete_params(0, Some(&old.uid));
                match api.delete(&plan.pod_name, &params).await {
                    Ok(_) => {}
                    Err(e) if matches!(status_code(&e), Some(404 | 409)) => {}
                    Err(e) => {
                        return Err(api_error(
                            format!("delete stale pod {}", plan.pod_name),
                            &plan.namespace,
                            e,
                        ));
                    }
                }
            }
            self.progress
                .step(format!("Waiting for the old pod {} to go", plan.pod_name));
            let uid = old.uid.clone();
            let gone = wait_for(
                rx,
                |slot| slot.as_ref().is_none_or(|v| v.uid != uid),
                deadline,
            )
            .await;
            if gone.is_none() {
                return Err(Error::Timeout {
                    what: "the old pod to be gone",
                    after: shared.options.start_timeout,
                });
            }
        }
        Err(Error::Api {
            action: action(),
            code: 409,
            reason: "AlreadyExists".to_owned(),
            message: "the pod name stayed taken after replacing the old pod".to_owned(),
        })
    }

    async fn stop_inner(&self, now: bool) -> Result<()> {
        // Cancel a running start and wait until it has let go: its pod name is in the state.
        self.stops.send_modify(|n| *n += 1);
        let _starting = self.starting.lock().await;
        let (namespace, name) = {
            let state = self.lock();
            match (&state.namespace, &state.pod_name) {
                (Some(namespace), Some(pod)) => (namespace.clone(), pod.clone()),
                _ => return Ok(()),
            }
        };
        let shared = &self.cluster.shared;
        // The DELETE goes first and needs no cache; the cache only tells when the pod is gone.
        let cache = self.cluster.cache_started(&namespace);
        let watched = Watched::new(&cache, &name);
        let mut rx = watched.rx.clone();
        let known = rx.borrow().clone();
        let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
        let grace = if now {
            0
        } else {
            shared.options.delete_grace_period
        };
        // Boxed, keeping only the deleted pod's UID: the request future and the whole Pod
        // it returns, inline, made every stop's future 7 KB for the whole wait that follows
        // (the peak of a thousand stops at once).
        let delete = |uid: Option<&str>| {
            let params = delete_params(grace, uid);
            let (api, name) = (&api, &name);
            Box::pin(async move {
                let deleted = self.cluster.limited(api.delete(name, &params)).await?;
                Ok::<_, kube::Error>(deleted.left().and_then(|pod| pod.metadata.uid))
            })
        };
        let mut result = delete(known.as_ref().map(|v| v.uid.as_str())).await;
        if matches!(&result, Err(e) if status_code(e) == Some(409)) {
            // The cache knew an older pod: delete what is there now.
            result = delete(None).await;
        }
        let deleted_uid = match result {
            Ok(uid) => uid,
            Err(error) if status_code(&error) == Some(404) => None,
            Err(error) => {
                return Err(api_error(format!("delete pod {name}"), &namespace, error));
            }
        };
        let deadline = deadline_after(shared.options.stop_timeout);
        let synced = tokio::time::timeout_at(deadline, cache.wait_synced()).await;
        // Gone means: no pod of that name, or a newer one (a restart right after the stop).
        let gone = synced.is_ok()
            && wait_for(
                &mut rx,
                |slot| match (slot, &deleted_uid) {
                    (None, _) => true,
                    (Some(view), Some(uid)) => &view.uid != uid,
                    (Some(_), None) => false,
                },
                deadline,
            )
            .await
            .is_some();
        if gone {
            // Not running: token updates skip it until its next start (the Secret stays).
            self.lock().token_secret = None;
            drop(watched);
            drop(rx);
            drop(cache);
            self.cluster.release_cache(&namespace);
            Ok(())
        } else {
            Err(Error::Timeout {
                what: "the pod to be gone",
                after: shared.options.stop_timeout,
            })
        }
    }

    async fn poll_inner(&self) -> Result<PollStatus> {
        if self.starting.try_lock().is_err() {
            // A start is running: JupyterHub's "running or starting".
            return Ok(PollStatus::Running);
        }
        let has_state = self.lock().pod_name.is_some();
        // The saved names, or the templates' for a server the hub lost track of.
        let plan = self.plan(&serde_json::Map::new())?;
        let (namespace, name) = (plan.namespace, plan.pod_name);
        // As KubeSpawner, poll waits for the first list however long it takes: answering
        // "stopped" for a server that runs would make the hub forget it.
        let cache = self.cluster.cache_started(&namespace);
        cache.wait_synced().await;
        let Some(view) = cache.get(&name) else {
            return Ok(if has_state {
                PollStatus::Exited {
                    code: 1,
                    reason: Some("the pod is gone".to_owned()),
                }
            } else {
                PollStatus::Exited {
                    code: 0,
                    reason: None,
                }
            });
        };
        if !has_state {
            if view.terminating || !view.belongs_to(&self.user.name, &self.server) {
                // Going away, or someone else's pod under our template name: not our server.
                return Ok(PollStatus::Exited {
                    code: 0,
                    reason: None,
                });
            }
            // A pod of ours the hub lost track of (state cleared, hub restarted): adopt it.
            tracing::info!(pod = %name, "adopting a running server pod");
            let mut state = self.lock();
            state.pod_name = Some(name);
            state.namespace = Some(namespace);
            state.token_secret = Some(plan.secret_name);
        }
        Ok(match view.exit_status() {
            None => PollStatus::Running,
            Some((code, reason)) => PollStatus::Exited {
                code,
                reason: Some(reason),
            },
        })
    }

    /// The user this spawner serves.
    pub fn user(&self) -> &User {
        &self.user
    }

    /// The server name (empty for the default server).
    pub fn server_name(&self) -> &str {
        &self.server
    }
}

impl Spawner for KubeSpawner {
    fn start(&self, request: StartRequest) -> BoxFuture<'_, Result<String>> {
        // At once, not at the first poll of the future: a progress stream opened right after
        // this call follows this start, not the previous one.
        self.progress.reset("Starting server".to_owned());
        // The request boxed once: every layer of the start (and the write phase's closure)
        // would otherwise hold its own slot for it for the whole start, waits included
        // (a start's future was 7.7 KB, 1.1 KB with it and the two calls below boxed).
        let request = Box::new(request);
        Box::pin(async move {
            let _finish = FinishOnDrop(&self.progress);
            self.start_guarded(request).await
        })
    }

    fn stop(&self, now: bool) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.stop_inner(now))
    }

    fn poll(&self) -> BoxFuture<'_, Result<PollStatus>> {
        Box::pin(self.poll_inner())
    }

    fn progress(&self) -> BoxStream<'static, ProgressEvent> {
        self.progress.stream()
    }

    fn state(&self) -> SpawnerState {
        self.lock().clone()
    }

    fn load_state(&self, state: SpawnerState) {
        *self.lock() = state;
    }

    fn clear_state(&self) {
        let mut state = self.lock();
        // The claim outlives the server: keep knowing it (KubeSpawner keeps pvc_name too).
        let pvc = state.pvc_name.take();
        let capacity = state.pvc_capacity.take();
        *state = SpawnerState {
            pvc_name: pvc,
            pvc_capacity: capacity,
            ..SpawnerState::default()
        };
    }

    fn delete_forever(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let plan = self.plan(&serde_json::Map::new())?;
            self.delete_secret(&plan.namespace, &plan.secret_name)
                .await?;
            self.delete_claim_forever().await
        })
    }

    fn update_tokens(&self, tokens: &crate::UserTokens) -> BoxFuture<'_, Result<bool>> {
        let tokens = tokens.clone();
        Box::pin(async move { self.write_tokens(&tokens).await })
    }
}
