//! [`KubeSpawner`]: the spawner of one server, on a shared [`KubeCluster`].
//!
//! API requests per operation (the scale benchmark counts them): a first start creates the
//! claim, the pod and its token Secret (3); a returning start, whose claim is in the saved
//! state, creates the pod and the Secret (2); a stop deletes the pod (1) and the Secret goes
//! with it by owner reference. Readiness, `poll()` and the wait for a pod to be gone read the
//! namespace's watch-backed cache: no per-user GET or LIST.

use std::sync::{Mutex, MutexGuard, PoisonError};

use futures_util::stream::BoxStream;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use tokio::sync::watch;
use tokio::time::Instant;

use super::cache::{NamespaceCache, Slot};
use super::cluster::{KubeCluster, api_error, status_code};
use super::events::Listener;
use super::progress::Progress;
use super::view::Readiness;
use crate::spawner::{BoxFuture, StartRequest};
use crate::{
    Error, PollStatus, ProgressEvent, Result, SpawnPlan, Spawner, SpawnerState, UserInfo, manifest,
};

/// The spawner of one server of one user on Kubernetes (JupyterHub's `KubeSpawner`).
pub struct KubeSpawner {
    pub(crate) cluster: KubeCluster,
    pub(crate) user: UserInfo,
    pub(crate) server: String,
    state: Mutex<SpawnerState>,
    progress: Progress,
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
    pub(crate) fn new(cluster: KubeCluster, user: UserInfo, server: &str) -> KubeSpawner {
        KubeSpawner {
            cluster,
            user,
            server: server.to_owned(),
            state: Mutex::new(SpawnerState::default()),
            progress: Progress::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, SpawnerState> {
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
        Ok(plan)
    }

    /// Where the server's pod is (namespace, name), from the state or the templates.
    fn location(&self) -> Result<(String, String)> {
        let state = self.lock().clone();
        match (state.namespace, state.pod_name) {
            (Some(namespace), Some(pod)) => Ok((namespace, pod)),
            _ => {
                let plan = crate::resolve(
                    &self.cluster.shared.config,
                    &self.user,
                    &self.server,
                    &Default::default(),
                )?;
                Ok((plan.namespace, plan.pod_name))
            }
        }
    }

    async fn start_inner(&self, request: StartRequest) -> Result<String> {
        let options = &self.cluster.shared.options;
        let deadline = Instant::now() + options.start_timeout;
        let plan = self.plan(&request.user_options)?;
        self.progress.reset(format!(
            "Starting server {} in namespace {}",
            plan.pod_name, plan.namespace
        ));
        let cache = self.cluster.cache(&plan.namespace).await?;

        let claim = self.ensure_claim(&plan).await?;
        if let Some(claim) = &claim {
            self.progress.step(format!("Volume {claim} ready"));
        }

        let pod = manifest::pod(&plan, &request.hub, claim.as_deref());
        let mut listener = cache.events.listen(&plan.pod_name).await;
        let mut rx = cache.subscribe(&plan.pod_name);
        let created = self
            .create_pod(&cache, &plan, &pod, &mut rx, deadline)
            .await;
        let created = match created {
            Ok(created) => created,
            Err(error) => {
                cache.release(&plan.pod_name);
                return Err(error);
            }
        };
        let uid = created.metadata.uid.clone().unwrap_or_default();
        {
            let mut state = self.lock();
            state.pod_name = Some(plan.pod_name.clone());
            state.namespace = Some(plan.namespace.clone());
            state.token_secret = Some(plan.secret_name.clone());
        }
        self.progress.step(format!("Pod {} created", plan.pod_name));

        let owner = OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Pod".to_owned(),
            name: plan.pod_name.clone(),
            uid: uid.clone(),
            block_owner_deletion: None,
            controller: None,
        };
        let secret = manifest::token_secret(&plan, &request.hub, request.tokens.as_ref(), owner);
        if let Err(error) = self.put_secret(&plan.namespace, &secret).await {
            // Without its Secret the pod can never start: take it away again.
            let api: Api<Pod> =
                Api::namespaced(self.cluster.shared.client.clone(), &plan.namespace);
            let _ = api
                .delete(&plan.pod_name, &delete_params(0, Some(&uid)))
                .await;
            self.progress.finish(format!("Spawn failed: {error}"), true);
            return Err(error);
        }

        let outcome = self
            .wait_ready(&mut rx, &mut listener, &uid, deadline)
            .await;
        drop(rx);
        cache.release(&plan.pod_name);
        match outcome {
            Ok(ip) => {
                let url = format!("http://{ip}:{}", plan.settings.port);
                self.progress
                    .finish(format!("Server ready at {url}"), false);
                Ok(url)
            }
            Err(error) => {
                self.progress.finish(format!("Spawn failed: {error}"), true);
                Err(error)
            }
        }
    }

    /// Creates the pod. A 409 means a pod of that name exists: an old server of ours (stale,
    /// or still terminating) is deleted with a UID precondition, waited for, and replaced; a
    /// pod that is not a notebook server is never touched.
    async fn create_pod(
        &self,
        cache: &NamespaceCache,
        plan: &SpawnPlan,
        pod: &Pod,
        rx: &mut watch::Receiver<Slot>,
        deadline: Instant,
    ) -> Result<Pod> {
        let shared = &self.cluster.shared;
        let api: Api<Pod> = Api::namespaced(shared.client.clone(), &plan.namespace);
        let action = || format!("create pod {}", plan.pod_name);
        for _ in 0..3 {
            let error = match api.create(&PostParams::default(), pod).await {
                Ok(created) => return Ok(created),
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
            if !old.terminating {
                tracing::info!(pod = %plan.pod_name, uid = %old.uid, "replacing a stale server pod");
                match api
                    .delete(&plan.pod_name, &delete_params(0, Some(&old.uid)))
                    .await
                {
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
                return Err(Error::Timeout(shared.options.start_timeout));
            }
            let _ = cache;
        }
        Err(Error::Api {
            action: action(),
            code: 409,
            reason: "AlreadyExists".to_owned(),
            message: "the pod name stayed taken after replacing the old pod".to_owned(),
        })
    }

    /// Creates the token Secret; one left over from an earlier pod (garbage collection is
    /// asynchronous) is replaced.
    async fn put_secret(&self, namespace: &str, secret: &Secret) -> Result<()> {
        let api: Api<Secret> = Api::namespaced(self.cluster.shared.client.clone(), namespace);
        let name = secret.metadata.name.clone().unwrap_or_default();
        for _ in 0..3 {
            match api.create(&PostParams::default(), secret).await {
                Ok(_) => return Ok(()),
                Err(error) if status_code(&error) == Some(409) => {}
                Err(error) => {
                    return Err(api_error(format!("create secret {name}"), namespace, error));
                }
            }
            match api.replace(&name, &PostParams::default(), secret).await {
                Ok(_) => return Ok(()),
                // Collected between our two requests: create again.
                Err(error) if status_code(&error) == Some(404) => {}
                Err(error) => {
                    return Err(api_error(
                        format!("replace secret {name}"),
                        namespace,
                        error,
                    ));
                }
            }
        }
        Err(Error::Api {
            action: format!("create secret {name}"),
            code: 409,
            reason: "Conflict".to_owned(),
            message: "the secret kept appearing and disappearing".to_owned(),
        })
    }

    /// Waits for the pod `uid` to be ready, turning its events into progress, and fails as
    /// soon as the cluster reports a reason it cannot start.
    async fn wait_ready(
        &self,
        rx: &mut watch::Receiver<Slot>,
        listener: &mut Listener,
        uid: &str,
        deadline: Instant,
    ) -> Result<String> {
        let shared = &self.cluster.shared;
        let mut seen = false;
        let mut events_open = true;
        loop {
            let slot = rx.borrow_and_update().clone();
            match slot {
                Some(view) if view.uid == uid => {
                    seen = true;
                    match view.readiness(shared.options.fail_unschedulable) {
                        Readiness::Ready(ip) => return Ok(ip),
                        Readiness::Failed(reason, message) => {
                            return Err(Error::SpawnFailed { reason, message });
                        }
                        Readiness::Starting => {}
                    }
                }
                None if seen => {
                    return Err(Error::SpawnFailed {
                        reason: crate::FailureReason::Deleted,
                        message: "the pod disappeared while starting".to_owned(),
                    });
                }
                _ => {}
            }
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(Error::CacheUnavailable { namespace: self.lock().namespace.clone().unwrap_or_default() });
                    }
                }
                event = listener.rx.recv(), if events_open => match event {
                    Some(event) if event.uid.as_deref().is_none_or(|u| u == uid) => self.progress.event(&event),
                    Some(_) => {}
                    None => events_open = false,
                },
                () = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Timeout(shared.options.start_timeout));
                }
            }
        }
    }

    async fn stop_inner(&self, now: bool) -> Result<()> {
        let (namespace, name) = {
            let state = self.lock();
            match (&state.namespace, &state.pod_name) {
                (Some(namespace), Some(pod)) => (namespace.clone(), pod.clone()),
                _ => return Ok(()),
            }
        };
        let shared = &self.cluster.shared;
        let cache = self.cluster.cache(&namespace).await?;
        let mut rx = cache.subscribe(&name);
        let known = rx.borrow().clone();
        let api: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
        let grace = if now {
            0
        } else {
            shared.options.delete_grace_period
        };
        let mut result = api
            .delete(
                &name,
                &delete_params(grace, known.as_ref().map(|v| v.uid.as_str())),
            )
            .await;
        if matches!(&result, Err(e) if status_code(e) == Some(409)) {
            // The cache knew an older pod: delete what is there now.
            result = api.delete(&name, &delete_params(grace, None)).await;
        }
        match result {
            Ok(_) => {}
            Err(error) if status_code(&error) == Some(404) => {}
            Err(error) => {
                drop(rx);
                cache.release(&name);
                return Err(api_error(format!("delete pod {name}"), &namespace, error));
            }
        }
        let deadline = Instant::now() + shared.options.stop_timeout;
        let gone = wait_for(&mut rx, Option::is_none, deadline).await;
        drop(rx);
        cache.release(&name);
        match gone {
            Some(_) => Ok(()),
            None => Err(Error::Timeout(shared.options.stop_timeout)),
        }
    }

    async fn poll_inner(&self) -> Result<PollStatus> {
        let has_state = self.lock().pod_name.is_some();
        let (namespace, name) = self.location()?;
        let cache = self.cluster.cache(&namespace).await?;
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
            if !view.belongs_to(&self.user.name, &self.server) {
                // Someone else's pod under our template name: not our server.
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
        }
        Ok(match view.exit_status() {
            None => PollStatus::Running,
            Some((code, reason)) => PollStatus::Exited {
                code,
                reason: Some(reason),
            },
        })
    }

    /// Writes new Check-in tokens into the running server's token Secret (a merge patch of its
    /// two token keys). Returns `false` when the server has no Secret (not running).
    pub async fn update_tokens(&self, tokens: &crate::UserTokens) -> Result<bool> {
        let (namespace, secret) = {
            let state = self.lock();
            match (&state.namespace, &state.token_secret) {
                (Some(namespace), Some(secret)) => (namespace.clone(), secret.clone()),
                _ => return Ok(false),
            }
        };
        let api: Api<Secret> = Api::namespaced(self.cluster.shared.client.clone(), &namespace);
        let patch = serde_json::json!({ "data": manifest::token_data(tokens) });
        match api
            .patch(
                &secret,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if status_code(&error) == Some(404) => Ok(false),
            Err(error) => Err(api_error(
                format!("update secret {secret}"),
                &namespace,
                error,
            )),
        }
    }

    /// The user this spawner serves.
    pub fn user(&self) -> &UserInfo {
        &self.user
    }

    /// The server name (empty for the default server).
    pub fn server_name(&self) -> &str {
        &self.server
    }
}

/// Delete options: grace period and an optional UID precondition (never delete a newer pod
/// that took the name).
fn delete_params(grace: i64, uid: Option<&str>) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: u32::try_from(grace.max(0)).ok(),
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

/// Waits until the slot satisfies `done`; `None` at the deadline.
async fn wait_for(
    rx: &mut watch::Receiver<Slot>,
    done: impl Fn(&Slot) -> bool,
    deadline: Instant,
) -> Option<Slot> {
    tokio::time::timeout_at(deadline, rx.wait_for(|slot| done(slot)))
        .await
        .ok()?
        .ok()
        .map(|slot| slot.clone())
}

impl Spawner for KubeSpawner {
    fn start(&self, request: StartRequest) -> BoxFuture<'_, Result<String>> {
        Box::pin(self.start_inner(request))
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
        Box::pin(self.delete_claim_forever())
    }
}
