//! The probes, behind one object-safe [`Probe`] trait.
//!
//! | probe | phases |
//! |---|---|
//! | [`HubReachable`] | `version` (`GET /hub/api/`), `token` (`GET /hub/api/user`) |
//! | [`SpawnProbe`] | `user`, `busy` (only while another probe run uses the server), `leftover` (only if a server is there), `start`, `reason` (only if the start request failed with 5xx), `ready` (progress stream), `stop` |
//! | [`ExecuteProbe`] | spawn phases, then `route`, `kernel`, `websocket`, `execute`, `kernel delete`, before `stop` |
//! | [`NotebookProbe`] | spawn phases, then `route`, `kernel`, `websocket`, `cell N` per code cell, `kernel delete`, before `stop` |
//!
//! A phase that finished but found a failure (a cell that raised, a wrong output) is marked
//! failed too. A server a probe starts carries a run marker in its `user_options`, so that
//! another run with the same user waits for it rather than stopping it as a leftover.
//! `route` decides where kernel requests go: through the proxy, or, when the hub API URL is
//! the hub's own address (EGI's chart), straight to the server at the proxy's target for it.
//! | [`BinderHealth`] | `health` (`GET {url}/health`) |
//!
//! Every phase runs under a timeout from [`Timeouts`]; once a server start was requested,
//! the server is stopped whatever happens later.

mod binder;
mod kernel;
mod reachable;
mod server;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use binder::{BinderHealth, binder_outcome};
pub use kernel::{DEFAULT_CODE, ExecuteProbe, NotebookProbe};
pub use reachable::{HubReachable, REQUIRED_SCOPES, missing_scopes};
pub use server::SpawnProbe;

use crate::outcome::Outcome;

/// The future a [`Probe`] returns: boxed so that probes of different types can be kept
/// together as `Box<dyn Probe>` (a scheduler runs a list of them), which `async fn` in a
/// trait does not allow.
pub type ProbeFuture<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// A check of one aspect of the service. Object-safe: `Box<dyn Probe>` works.
///
/// `run` never fails: every error becomes an [`Outcome`] (CRITICAL for the service's faults,
/// UNKNOWN for the probe's own).
pub trait Probe: fmt::Debug + Send + Sync {
    /// A short name, such as `spawn` (used as metric label and in the status page).
    fn name(&self) -> &str;

    /// Runs the probe once.
    fn run(&self) -> ProbeFuture<'_>;
}

/// The timeout of each phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Each plain request (user, version, token, create kernel...): 30 s.
    pub request: Duration,
    /// From the start request to the ready event (EGI's `SPAWN_TIMEOUT`): 600 s.
    pub spawn: Duration,
    /// Stopping a server (a leftover one, or ours at the end): 120 s.
    pub stop: Duration,
    /// Creating a kernel and opening its websocket: 60 s.
    pub kernel: Duration,
    /// One execution (a code snippet, or one notebook cell): 120 s.
    pub execute: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            request: Duration::from_secs(30),
            spawn: Duration::from_secs(600),
            stop: Duration::from_secs(120),
            kernel: Duration::from_secs(60),
            execute: Duration::from_secs(120),
        }
    }
}

/// Which server of which user the spawn-based probes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnSettings {
    /// The probe user (EGI's `JUPYTERHUB_USER`, `monitor` by default); created if missing.
    pub user: String,
    /// The server name: `""` is the default server, else a named server.
    pub server: String,
    /// Phase timeouts.
    pub timeouts: Timeouts,
    /// How often a stopping server is checked (default 100 ms).
    pub stop_poll: Duration,
}

impl SpawnSettings {
    /// The default server of `user`, default timeouts.
    pub fn new(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            server: String::new(),
            timeouts: Timeouts::default(),
            stop_poll: Duration::from_millis(100),
        }
    }

    /// Uses the named server `name` instead of the default one.
    #[must_use]
    pub fn named_server(mut self, name: impl Into<String>) -> Self {
        self.server = name.into();
        self
    }

    /// Sets the timeouts.
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }
}
