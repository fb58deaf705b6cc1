//! [`MetricsSource`] over an OpenMetrics history file (the format `promtool tsdb
//! create-blocks-from openmetrics` backfills).
//!
//! The file is parsed once into a [`History`] (see [`History::parse`] for what is accepted);
//! each question then evaluates the PromQL of [`crate::query`] over it the way Prometheus 2.42
//! does, so that a history answers the same through this source and through Prometheus after
//! a backfill. The filter of the [`Window`] is applied through [`Matchers`].
//!
//! ```no_run
//! use egi_accounting::metrics::{Filter, LookBack, MetricsSource, Window};
//! use egi_accounting::snapshot::SnapshotSource;
//!
//! # async fn run() -> egi_accounting::Result<()> {
//! let source = SnapshotSource::from_path("history.om")?;
//! let window = Window {
//!     at: source.last_timestamp().expect("history has samples"),
//!     range: LookBack::parse("24h")?,
//!     filter: Filter::default(),
//! };
//! for pod in source.pods(&window).await? {
//!     println!("{} {}/{}", pod.uid.0, pod.key.namespace, pod.key.pod);
//! }
//! # Ok(())
//! # }
//! ```

mod eval;
mod history;
mod matchers;
mod openmetrics;
mod syntax;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod openmetrics_tests;

use std::path::Path;

use crate::error::{Error, Result};
use crate::metrics::{
    BoxFuture, ByPod, ByUid, MetricsSource, PodAnnotations, PodCreated, RunningSamples, Timestamp,
    Usage, Window,
};

pub use history::{History, Labels, Series};
pub use matchers::Matchers;

/// An OpenMetrics history held in memory, answering the questions like PromQL would.
#[derive(Debug, Clone)]
pub struct SnapshotSource {
    history: History,
}

impl SnapshotSource {
    /// Reads and parses a file. An unreadable file is [`Error::Io`], a malformed one
    /// [`Error::OpenMetrics`].
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read(path)
            .map_err(|e| Error::io("cannot read OpenMetrics history", path, e))?;
        Self::from_bytes(&text)
    }

    /// Parses OpenMetrics text (see [`History::parse`]).
    pub fn from_bytes(text: &[u8]) -> Result<Self> {
        History::parse(text).map(Self::from_history)
    }

    /// Answers from an already parsed history.
    pub fn from_history(history: History) -> Self {
        Self { history }
    }

    /// The parsed history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The newest sample timestamp in the history (the default evaluation time).
    pub fn last_timestamp(&self) -> Option<Timestamp> {
        self.history.last_timestamp()
    }
}

impl MetricsSource for SnapshotSource {
    fn pods<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<PodCreated>>> {
        Box::pin(async move { eval::pods(&self.history, window) })
    }

    fn running<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<RunningSamples>>> {
        Box::pin(async move { eval::running(&self.history, window) })
    }

    fn annotations<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<PodAnnotations>>> {
        Box::pin(async move { eval::annotations(&self.history, window) })
    }

    fn images<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<String>>>> {
        Box::pin(async move { eval::images(&self.history, window) })
    }

    fn cpu_requests<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<f64>>>> {
        Box::pin(async move { eval::cpu_requests(&self.history, window) })
    }

    fn usage<'a>(&'a self, window: &'a Window, usage: Usage) -> BoxFuture<'a, Result<Vec<ByPod>>> {
        Box::pin(async move { eval::usage(&self.history, window, usage) })
    }
}
