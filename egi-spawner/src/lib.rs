//! # egi-spawner
//!
//! JupyterHub's spawner contract ([`Spawner`]) and a Kubernetes implementation
//! ([`kube::KubeSpawner`]) that users of KubeSpawner can move to without renaming anything.

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
