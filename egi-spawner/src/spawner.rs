//! JupyterHub's spawner contract, as an object-safe trait a hub holds as `Box<dyn Spawner>`.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};

use crate::{HubContext, ProgressEvent, Result, UserTokens};

/// What [`Spawner::poll`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PollStatus {
    /// Running or starting (JupyterHub's `None`).
    Running,
    /// Stopped, with an exit status (0 if never started or no code is known).
    Exited {
        /// The exit status JupyterHub records.
        code: i32,
        /// Why, when the cluster said (`Evicted`, `Completed`, `pod gone`, ...).
        reason: Option<String>,
    },
}

impl PollStatus {
    /// The value JupyterHub's `poll()` returns: `None` while running, else the exit status.
    pub fn as_jupyterhub(&self) -> Option<i32> {
        match self {
            Self::Running => None,
            Self::Exited { code, .. } => Some(*code),
        }
    }
}

/// What must survive a hub restart (JupyterHub's `get_state`/`load_state`). Stored by the hub as
/// JSON; the keys are KubeSpawner's (`pod_name`, `namespace`, `dns_name`, `pvc_name`), so state
/// saved by KubeSpawner loads here and the other way round.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnerState {
    /// Pod name at the last start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Namespace at the last start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// DNS name of the server, if a service was made (KubeSpawner's key; kept as is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// The claim, once it is known to exist (so later template changes don't orphan it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_name: Option<String>,
    /// The server's token Secret (this spawner's key), for token updates after a hub restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<String>,
    /// The capacity the claim was ensured with (this spawner's key): a configuration asking
    /// for more makes the next start check the claim and expand it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc_capacity: Option<String>,
    /// Keys written by other spawners, kept and written back untouched.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The options of one start: what the hub passes besides the configuration.
#[derive(Clone, Debug)]
pub struct StartRequest {
    /// The hub's values for the server's environment, and its API token.
    pub hub: HubContext,
    /// `user_options` from the spawn form or the REST API (validated by the spawner).
    pub user_options: serde_json::Map<String, serde_json::Value>,
    /// The user's Check-in tokens to place in the token Secret, if any.
    pub tokens: Option<UserTokens>,
}

/// JupyterHub's spawner contract for one server of one user.
///
/// Object-safe, so its methods return boxed futures ([`BoxFuture`]) rather than `impl Future`:
/// a hub holds one `Box<dyn Spawner>` or `Arc<dyn Spawner>` per server, whatever the
/// implementation.
pub trait Spawner: Send + Sync + std::fmt::Debug {
    /// Starts the server and returns its URL once it is ready. Fails fast with the cluster's
    /// reason when the server cannot start.
    fn start(&self, request: StartRequest) -> BoxFuture<'_, Result<String>>;

    /// Stops the server and returns once it is gone. `now` skips the grace period.
    fn stop(&self, now: bool) -> BoxFuture<'_, Result<()>>;

    /// Whether the server runs: [`PollStatus::Running`] while running or starting, otherwise
    /// its exit status (0 if it was never started).
    fn poll(&self) -> BoxFuture<'_, Result<PollStatus>>;

    /// Progress events of the current start, ending with its ready or failed event
    /// ([`ProgressEvent::is_final`]). Late subscribers first get the events so far.
    fn progress(&self) -> BoxStream<'static, ProgressEvent>;

    /// The state to save (JupyterHub's `get_state`).
    fn state(&self) -> SpawnerState;

    /// Restores saved state (JupyterHub's `load_state`), e.g. after a hub restart.
    fn load_state(&self, state: SpawnerState);

    /// Forgets the state (JupyterHub's `clear_state`), after the server stopped.
    fn clear_state(&self);

    /// Deletes what outlives the server (the claims the PVC policy says to delete), when the
    /// user or the named server is removed for good.
    fn delete_forever(&self) -> BoxFuture<'_, Result<()>>;

    /// Gives the server the user's new tokens (after a refresh): returns `true` when they
    /// were written to a running server, `false` when no server runs (the next
    /// [`start`](Spawner::start) uses its own [`StartRequest::tokens`]). Never logs them.
    /// [`crate::follow_tokens`] calls it for every refresh.
    fn update_tokens(&self, tokens: &UserTokens) -> BoxFuture<'_, Result<bool>>;
}
