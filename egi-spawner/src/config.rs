//! PLACEHOLDER (owned by the pure-core work): `KubeSpawnerConfig`, `Settings`, `ConfigError`.
#![allow(missing_docs)]
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct KubeSpawnerConfig { pub namespace: String }
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings { pub port: u16 }
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError { #[error("invalid")] Invalid }
