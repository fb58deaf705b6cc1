//! The Kubernetes implementation: [`KubeCluster`] (one client, one watch-backed pod cache per
//! namespace) and [`KubeSpawner`] (one per server).

mod cache;
mod claims;
mod cluster;
mod events;
mod progress;
mod ready;
mod secret;
mod spawner;
mod view;
mod wait;

pub use cluster::{KubeCluster, RuntimeOptions, USER_AGENT, client};
pub use spawner::KubeSpawner;
