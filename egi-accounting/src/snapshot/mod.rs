//! [`MetricsSource`] over an OpenMetrics history file (the format `promtool tsdb
//! create-blocks-from openmetrics` backfills).
//!
//! SKELETON: implementation in progress.

use std::path::Path;

use crate::error::Result;
use crate::metrics::{
    BoxFuture, ByPod, ByUid, MetricsSource, PodAnnotations, PodCreated, RunningSamples, Timestamp,
    Usage, Window,
};

/// An OpenMetrics history held in memory, answering the questions like PromQL would.
#[derive(Debug)]
pub struct SnapshotSource {
    last: Option<Timestamp>,
}

impl SnapshotSource {
    /// Reads and parses a file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let _ = path;
        Ok(Self { last: None })
    }

    /// Parses OpenMetrics text.
    pub fn from_bytes(text: &[u8]) -> Result<Self> {
        let _ = text;
        Ok(Self { last: None })
    }

    /// The newest sample timestamp in the history (the default evaluation time).
    pub fn last_timestamp(&self) -> Option<Timestamp> {
        self.last
    }
}

impl MetricsSource for SnapshotSource {
    fn pods<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<PodCreated>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn running<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<RunningSamples>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn annotations<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<PodAnnotations>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn images<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<String>>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn cpu_requests<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<f64>>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn usage<'a>(&'a self, _w: &'a Window, _u: Usage) -> BoxFuture<'a, Result<Vec<ByPod>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
