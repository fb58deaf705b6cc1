//! # egi-spawner
//!
//! JupyterHub's spawner contract ([`Spawner`]: start, stop, poll, progress, state,
//! delete-forever, token updates) and a Kubernetes implementation ([`kube::KubeSpawner`]) that
//! users of KubeSpawner 7 can move to without renaming anything: the same "safe" names,
//! labels, annotations, state keys and `profile_list`, with its known pain points fixed.
//!
//! ## Contents
//!
//! - The contract, always built: [`Spawner`] (object-safe, for `Box<dyn Spawner>`),
//!   [`StartRequest`], [`PollStatus`], [`SpawnerState`] (KubeSpawner's state keys),
//!   [`ProgressEvent`] (JupyterHub's progress event, for spawners and for readers of a hub's
//!   progress stream alike), [`User`], [`UserTokens`], [`HubContext`], [`Error`], and
//!   [`follow_tokens`], which keeps any spawner's tokens current.
//! - Pure core, no I/O (feature `kubernetes`): [`config`] (KubeSpawner's options, profiles
//!   with overrides and VO-gated visibility), [`options::resolve`] (validated `user_options`
//!   → a [`SpawnPlan`]), [`naming`] (the safe scheme, exactly), [`env`](mod@env) (the
//!   `JUPYTERHUB_*` environment), [`manifest`] (pod, claim and token Secret), [`storage`]
//!   (the [`PvcPolicy`]).
//! - [`kube`] (feature `kubernetes`): [`kube::KubeCluster`] holds one client and one
//!   watch-backed pod cache per namespace, shared by every [`kube::KubeSpawner`]. A first
//!   start makes 3 API writes (claim, pod, token Secret), a returning one 2, a stop 1;
//!   readiness and `poll()` read the cache. Image-pull errors, crash loops, unschedulable and
//!   evicted pods fail the start at once with the cluster's reason.
//! - [`checkin`] (feature `checkin`): egi-checkin's tokens, memberships and token manager as
//!   this crate's [`UserTokens`], [`User`] and token updates.
//! - Tokens never sit in the pod spec: the hub's API token and the user's Check-in tokens
//!   travel in a long-lived Secret per server, owned by no pod so no garbage collector races
//!   a start (EGI's keys `access_token` and `id_token`; `access-token-{user_server}` by
//!   default; mounted read-only at `/var/run/secrets/egi.eu/`; deleted by `delete_forever`),
//!   and `Debug` output redacts them.
//!
//! ## Features
//!
//! | feature | default | gates |
//! |---|---|---|
//! | `kubernetes` | yes | [`kube`], [`config`], [`options`], [`naming`], [`env`](mod@env), [`manifest`], [`storage`], [`plan`] (kube, k8s-openapi) |
//! | `checkin` | no | [`checkin`] (egi-checkin) |
//!
//! With `default-features = false` the crate is the contract only: what a hub, a gateway or a
//! progress-stream reader (egi-monitoring) needs, without kube.
//!
//! ## Example
//!
//! ```no_run
//! # #[cfg(feature = "kubernetes")]
//! # async fn run(
//! #     hub: egi_spawner::HubContext,
//! #     tokens: egi_spawner::UserTokens,
//! #     refreshes: impl futures_util::Stream<Item = Option<egi_spawner::UserTokens>> + Send + 'static,
//! # ) -> egi_spawner::Result<()> {
//! use std::sync::Arc;
//!
//! use egi_spawner::kube::{KubeCluster, RuntimeOptions};
//! use egi_spawner::{
//!     KubeSpawnerConfig, PollStatus, Spawner, StartRequest, User, follow_tokens,
//! };
//! use futures_util::StreamExt;
//!
//! let config: KubeSpawnerConfig = serde_json::from_str(
//!     r#"{ "namespace": "notebooks", "image": "quay.io/jupyter/scipy-notebook:2025-01-01",
//!          "storage": { "policy": { "type": "per-user" }, "capacity": "10Gi" } }"#,
//! ).expect("valid configuration");
//! let cluster = KubeCluster::infer(config, RuntimeOptions::default()).await?;
//!
//! let user = User { name: "alice@egi.eu".into(), ..User::default() };
//! let spawner: Arc<dyn Spawner> = Arc::new(cluster.spawner(user, ""));
//! let mut progress = spawner.progress();
//! let start = StartRequest { hub, user_options: Default::default(), tokens: Some(tokens) };
//! let url = spawner.start(start).await?;
//! while let Some(event) = progress.next().await {
//!     print!("data: {}\n\n", event.to_sse_data()); // as JupyterHub streams it
//! }
//! println!("ready at {url}");
//! assert_eq!(spawner.poll().await?, PollStatus::Running);
//!
//! // Every refreshed token reaches the running server's Secret (with the `checkin` feature,
//! // `refreshes` is `egi_spawner::checkin::token_updates(&manager)`).
//! let follower = follow_tokens(Arc::clone(&spawner), refreshes);
//!
//! let saved = serde_json::to_string(&spawner.state()).expect("state is JSON"); // keep it
//! spawner.stop(false).await?;
//! follower.abort();
//! # let _ = saved;
//! # Ok(())
//! # }
//! //! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
// The overview links the feature-gated modules; docs are built with all features (docs.rs too).
#![cfg_attr(
    not(all(feature = "kubernetes", feature = "checkin")),
    allow(rustdoc::broken_intra_doc_links)
)]

#[cfg(feature = "checkin")]
pub mod checkin;
#[cfg(feature = "kubernetes")]
pub mod config;
#[cfg(feature = "kubernetes")]
pub mod env;
mod error;
mod hub;
#[cfg(feature = "kubernetes")]
pub mod kube;
#[cfg(feature = "kubernetes")]
pub mod manifest;
#[cfg(feature = "kubernetes")]
pub mod naming;
#[cfg(feature = "kubernetes")]
pub mod options;
#[cfg(feature = "kubernetes")]
pub mod plan;
mod progress;
pub mod spawner;
#[cfg(feature = "kubernetes")]
pub mod storage;
mod tokens;
mod user;

#[cfg(feature = "kubernetes")]
pub use config::{KubeSpawnerConfig, Settings};
pub use error::{ConfigError, Error, FailureReason, OptionsError, Result};
pub use hub::HubContext;
#[cfg(feature = "kubernetes")]
pub use options::resolve;
#[cfg(feature = "kubernetes")]
pub use plan::{ClaimPlan, SpawnPlan};
pub use progress::ProgressEvent;
pub use spawner::{PollStatus, Spawner, SpawnerState, StartRequest};
#[cfg(feature = "kubernetes")]
pub use storage::PvcPolicy;
pub use tokens::follow_tokens;
pub use user::{User, UserTokens};
