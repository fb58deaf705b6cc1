//! The Kubernetes implementation: a shared watch-backed cache per namespace and the spawner.
