//! PLACEHOLDER (owned by the pure-core work): KubeSpawner's safe naming scheme.
#![allow(missing_docs)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names { pub username: String, pub servername: String, pub user: String, pub server: String, pub user_server: String }
