//! # egi-monitoring
//!
//! Probes of a notebooks deployment that check what users do: spawn a server, compute in a
//! kernel, run a whole notebook. A replacement for EGI's `egi-notebooks-monitoring` (which
//! only spawns, polls every 5 s and sleeps 60 s around a leftover server) and its Nagios
//! plugin (which does not check how old the result is).
//!
//! - [`Probe`]: one object-safe trait; `run` returns an [`Outcome`] (Nagios [`Status`],
//!   message, timed phases, details) and never fails.
//! - [`hub::HubClient`]: the JupyterHub REST API for a service token: users, default and
//!   named servers, the spawn progress event stream (of [`egi_spawner::ProgressEvent`], the one
//!   type for JupyterHub's progress events), stop, version, health, metrics.
//! - [`probes`]: [`HubReachable`], [`SpawnProbe`] (follows the progress stream, stops a
//!   leftover server first without a blind sleep), [`ExecuteProbe`] (kernel websocket,
//!   Jupyter messaging protocol 5.3), [`NotebookProbe`] (an `.ipynb`'s code cells in order,
//!   with papermill-style parameters, returning what the executed notebook needs),
//!   [`BinderHealth`]. Every phase has a timeout and a started server is always stopped.
//! - [`notebook`]: nbformat 4 notebooks, papermill's parameters ([`notebook::params`]) and
//!   injected cell, the executed notebook with outputs and per-cell timings.
//! - Pure rendering: [`status`] (EGI's `{code,msg,time}` JSON, an HTML page, Prometheus
//!   metrics) and [`nagios`] (plugin line, staleness).
//!
//! The `monitor` and `probe` binaries of `egi-examples` are built on these.
//!
//! ```no_run
//! use egi_monitoring::{ExecuteProbe, Probe, SpawnSettings, hub::HubClient};
//!
//! # async fn run() -> egi_monitoring::Result<()> {
//! let client = HubClient::builder("https://notebooks.example.org/hub/api")
//!     .token(std::env::var("JUPYTERHUB_API_TOKEN").unwrap_or_default())
//!     .build()?;
//! let probes: Vec<Box<dyn Probe>> = vec![
//!     Box::new(ExecuteProbe::new(client.clone(), SpawnSettings::new("monitor"))),
//! ];
//! for probe in &probes {
//!     let outcome = probe.run().await;
//!     println!("{}: {} {}", probe.name(), outcome.status, outcome.message);
//! }
//! # Ok(())
//! # }
//! ```

mod error;
pub mod hub;
pub mod kernel;
pub mod limits;
pub mod nagios;
pub mod notebook;
mod outcome;
pub mod probes;
pub mod sse;
pub mod status;

pub use error::{Error, Result};
pub use outcome::{Outcome, Phase, Status, Timeline, epoch_seconds, seconds};
pub use probes::{
    BinderHealth, ExecuteProbe, HubReachable, NotebookProbe, Probe, ProbeFuture, SpawnProbe,
    SpawnSettings, Timeouts,
};
