//! # egi-spawner
//!
//! JupyterHub's spawner contract ([`Spawner`]: start, stop, poll, progress, state,
//! delete-forever) and a Kubernetes implementation ([`kube::KubeSpawner`]) that users of
//! KubeSpawner 7 can move to without renaming anything: the same "safe" names, labels,
//! annotations, state keys and `profile_list`, with its known pain points fixed.
//!
//! ## Contents
//!
//! - Pure core, no I/O: [`config`] (KubeSpawner's options, profiles with overrides and
//!   VO-gated visibility), [`options::resolve`] (validated `user_options` → a [`SpawnPlan`]),
//!   [`naming`] (the safe scheme, exactly), [`env`](mod@env) (the `JUPYTERHUB_*` environment),
//!   [`manifest`] (pod, claim and token Secret), [`storage`] (the [`PvcPolicy`]).
//! - [`kube`]: [`kube::KubeCluster`] holds one client and one watch-backed pod cache per
//!   namespace, shared by every [`kube::KubeSpawner`]. A first start makes 3 API writes (claim,
//!   pod, token Secret), a returning one 2, a stop 1; readiness and `poll()` read the cache.
//!   Image-pull errors, crash loops, unschedulable and evicted pods fail the start at once with
//!   the cluster's reason. [`kube::follow_tokens`] keeps the token Secret current as
//!   egi-checkin refreshes.
//! - Tokens never sit in the pod spec: the hub's API token and the user's Check-in tokens
//!   travel in a Secret owned by the pod (EGI's keys `access_token` and `id_token`; one Secret
//!   per server, `access-token-{user_server}` by default; mounted read-only at
//!   `/var/run/secrets/egi.eu/`), and `Debug` output redacts them.
//!
//! ## Example
//!
//! ```no_run
//! use egi_spawner::kube::{KubeCluster, RuntimeOptions};
//! use egi_spawner::spawner::StartRequest;
//! use egi_spawner::{HubContext, KubeSpawnerConfig, PollStatus, Spawner, UserInfo};
//!
//! # async fn run(hub: HubContext) -> egi_spawner::Result<()> {
//! let config: KubeSpawnerConfig = serde_json::from_str(
//!     r#"{ "namespace": "notebooks", "image": "quay.io/jupyter/scipy-notebook:2025-01-01",
//!          "storage": { "policy": { "type": "per-user" }, "capacity": "10Gi" } }"#,
//! ).expect("valid configuration");
//! let cluster = KubeCluster::infer(config, RuntimeOptions::default()).await?;
//!
//! let user = UserInfo { name: "alice@egi.eu".into(), ..UserInfo::default() };
//! let spawner: Box<dyn Spawner> = Box::new(cluster.spawner(user, ""));
//! let url = spawner
//!     .start(StartRequest { hub, user_options: Default::default(), tokens: None })
//!     .await?;
//! println!("ready at {url}");
//! assert_eq!(spawner.poll().await?, PollStatus::Running);
//! let saved = serde_json::to_string(&spawner.state()).expect("state is JSON"); // keep it
//! spawner.stop(false).await?;
//! # let _ = saved;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod env;
mod error;
pub mod kube;
pub mod manifest;
pub mod naming;
pub mod options;
pub mod plan;
pub mod spawner;
pub mod storage;

pub use config::{ConfigError, KubeSpawnerConfig, Settings};
pub use error::{Error, FailureReason, Result};
pub use options::{OptionsError, resolve};
pub use plan::{ClaimPlan, HubContext, SpawnPlan, UserInfo, UserTokens};
pub use spawner::{PollStatus, ProgressEvent, Spawner, SpawnerState};
pub use storage::PvcPolicy;
