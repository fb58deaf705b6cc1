//! One accounting run: ask, build, render, deliver. The only function here that does IO
//! is [`run`], and it only moves data between the pure steps.

use crate::apel::{self, Limits};
use crate::error::Result;
use crate::metrics::{self, MetricsSource, Window};
use crate::record::{self, RecordConfig};
use crate::spool::Sink;

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Pods seen in the window.
    pub pods: usize,
    /// Records delivered.
    pub records: usize,
    /// Pods skipped (each logged with its reason).
    pub skipped: usize,
    /// Records whose CPU or network figures are lower bounds (counter reset).
    pub lower_bounds: usize,
    /// Messages delivered.
    pub messages: usize,
}

/// Asks `source` every question for `window`, builds and validates the records, splits
/// them into messages within `limits` and delivers them to `sink`, all or nothing.
/// Nothing is delivered if any question fails.
pub async fn run(
    source: &dyn MetricsSource,
    window: &Window,
    config: &RecordConfig,
    limits: Limits,
    sink: &mut dyn Sink,
) -> Result<Report> {
    let answers = metrics::ask_all(source, window).await?;
    let built = record::build_records(&answers, config, window.at);
    let messages = apel::messages(&built.records, limits);
    let delivered = sink.deliver(&messages)?;
    let report = Report {
        pods: built.records.len() + built.skipped.len(),
        records: built.records.len(),
        skipped: built.skipped.len(),
        lower_bounds: built.lower_bounds.len(),
        messages: delivered,
    };
    tracing::info!(
        pods = report.pods,
        records = report.records,
        skipped = report.skipped,
        messages = report.messages,
        "accounting run done"
    );
    Ok(report)
}
