//! PLACEHOLDER (owned by the pure-core work): `resolve`, `OptionsError`.
#![allow(missing_docs)]
use crate::{KubeSpawnerConfig, SpawnPlan, UserInfo};
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError { #[error("invalid")] Invalid }
pub fn resolve(_c: &KubeSpawnerConfig, _u: &UserInfo, _s: &str, _o: &serde_json::Map<String, serde_json::Value>) -> Result<SpawnPlan, OptionsError> { Err(OptionsError::Invalid) }
