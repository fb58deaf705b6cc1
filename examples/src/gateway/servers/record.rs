//! One server's record: its spawner, phase, upstream, token hash, activity and the task that
//! writes its user's new tokens into it.

use std::sync::{Arc, Mutex, PoisonError};

use egi_spawner::{Spawner, UserTokens};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::TokenUpdates;
use crate::gateway::metrics::Metrics;
use crate::gateway::proxy::Upstream;

/// Where a server is in its life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The spawner is starting it.
    Starting,
    /// It answers at its upstream.
    Running,
    /// It is being stopped.
    Stopping,
    /// The last start failed, with the cluster's reason.
    Failed(String),
}

/// One server of one user.
pub struct Server {
    /// The user's name.
    pub user: String,
    /// The server's name (`""`: the default server).
    pub name: String,
    pub(super) spawner: Arc<dyn Spawner>,
    pub(super) phase: watch::Sender<Phase>,
    pub(super) upstream: Mutex<Option<(String, Upstream)>>,
    pub(super) token_sha256: Mutex<String>,
    pub(super) started: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    pub(super) user_options: Mutex<serde_json::Map<String, serde_json::Value>>,
    pub(super) follower: Mutex<Option<JoinHandle<()>>>,
    pub(super) last_activity: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("user", &self.user)
            .field("name", &self.name)
            .field("phase", &*self.phase.borrow())
            .finish_non_exhaustive()
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Server {
    /// Its phase now.
    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// Where to proxy to, once running.
    pub fn upstream(&self) -> Option<Upstream> {
        lock(&self.upstream).as_ref().map(|(_, u)| u.clone())
    }

    /// When it was started.
    pub fn started(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *lock(&self.started)
    }

    /// Records activity the server reported (the newest time wins).
    pub fn record_activity(&self, at: chrono::DateTime<chrono::Utc>) {
        let mut last = lock(&self.last_activity);
        if last.is_none_or(|l| l < at) {
            *last = Some(at);
        }
    }

    /// The `user_options` it was started with (JupyterHub's server model shows them).
    pub fn user_options(&self) -> serde_json::Map<String, serde_json::Value> {
        lock(&self.user_options).clone()
    }

    /// The last activity the server reported.
    pub fn last_activity(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *lock(&self.last_activity)
    }

    /// Whether `hash` is this server's API token's hash.
    pub fn has_token_hash(&self, hash: &str) -> bool {
        !hash.is_empty() && *lock(&self.token_sha256) == hash
    }

    /// The spawner (for token updates and state).
    pub fn spawner(&self) -> &Arc<dyn Spawner> {
        &self.spawner
    }

    /// Writes every token of `updates` into the running server (replacing an earlier
    /// follower).
    /// `written` is what the server already holds (the tokens its start wrote): a first update
    /// equal to it is skipped, saving one API write per server.
    pub fn follow(
        &self,
        updates: TokenUpdates,
        metrics: Arc<Metrics>,
        written: Option<UserTokens>,
    ) {
        let spawner = self.spawner.clone();
        let mut written = written;
        let updates = updates.filter(move |update| {
            let same = match (written.take(), update) {
                (Some(w), Some(u)) => {
                    w.access_token.expose_secret() == u.access_token.expose_secret()
                }
                _ => false,
            };
            std::future::ready(!same)
        });
        let counted = updates.inspect(move |_| metrics.token_pushes.inc()).boxed();
        let handle = egi_spawner::follow_tokens(spawner, counted);
        if let Some(old) = lock(&self.follower).replace(handle) {
            old.abort();
        }
    }

    pub(super) fn stop_following(&self) {
        if let Some(handle) = lock(&self.follower).take() {
            handle.abort();
        }
    }
}
