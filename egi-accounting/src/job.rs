//! One accounting run: ask, join, render, deliver. [`run`] only moves data between the pure
//! steps: answers are folded into a [`Joiner`] batch by batch while they stream in, records are
//! rendered into messages one at a time and each message is handed to the sink as soon as
//! it is full. So a run over 10,000 pods needs a few megabytes, not a copy of every answer,
//! record and message at once.

use std::sync::{Mutex, PoisonError};

use futures_util::StreamExt;

use crate::apel::{Limits, MessageBuilder};
use crate::error::Result;
use crate::metrics::{Answer, MetricsSource, Window};
use crate::query::Question;
use crate::record::{self, Joiner, RecordConfig};
use crate::spool::Sink;

/// Questions asked at the same time. Prometheus evaluates them on its own cores; more in
/// flight would mostly add answers waiting in memory (measured in benches/README.md).
pub const QUESTIONS_IN_FLIGHT: usize = 2;

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Pods seen in the window.
    pub pods: usize,
    /// Records delivered.
    pub records: usize,
    /// Pods skipped (each logged with its reason).
    pub skipped: usize,
    /// Records whose network figures are lower bounds (the pod's network counters were reset:
    /// its sandbox was recreated).
    pub lower_bounds: usize,
    /// Messages delivered.
    pub messages: usize,
}

/// Asks `source` every question for `window`, joins the answers, validates the records,
/// packs them into messages within `limits` and delivers them to `sink`, all or nothing:
/// nothing is written if any question fails, and a sink failure rolls back what this run
/// wrote.
///
/// The future is `Send` when the sink is (as [`DirqSpool`](crate::spool::DirqSpool) is), so
/// a gateway can `tokio::spawn` a run; a sink that is not `Send` (a locked standard output,
/// `&mut dyn Sink`) still works on a current-thread runtime.
pub async fn run<S: Sink + ?Sized>(
    source: &dyn MetricsSource,
    window: &Window,
    config: &RecordConfig,
    limits: Limits,
    sink: &mut S,
) -> Result<Report> {
    let joiner = ask(source, window).await?;
    deliver(&joiner, window, config, limits, sink)
}

/// [`run`], also upserting every pod's row into the notebooks database `db` (the Python
/// tool's `notebooks_db`) before the messages are delivered. The rows are written in one
/// transaction: if that fails, nothing is written there nor delivered; if delivery fails
/// afterwards, the rows stay (the next run upserts them again, as APEL replaces records).
#[cfg(feature = "notebooks-db")]
pub async fn run_with_db<S: Sink + ?Sized>(
    source: &dyn MetricsSource,
    window: &Window,
    config: &RecordConfig,
    limits: Limits,
    sink: &mut S,
    db: &mut crate::notebooks_db::NotebooksDb,
) -> Result<Report> {
    let joiner = ask(source, window).await?;
    let rows = crate::notebooks_db::rows(&joiner, config, window.at);
    let written = db.upsert(&rows)?;
    tracing::info!(rows = written, db = %db.path().display(), "notebooks database updated");
    deliver(&joiner, window, config, limits, sink)
}

/// Asks every question, folding the answers into one table as they arrive.
async fn ask(source: &dyn MetricsSource, window: &Window) -> Result<Joiner> {
    let joiner = Mutex::new(Joiner::new());
    let fold = |batch: Answer| {
        joiner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(batch);
    };
    let mut asked = futures_util::stream::iter(Question::ALL)
        .map(|q| async move {
            let mut sink = fold;
            source.stream(window, q, &mut sink).await
        })
        .buffer_unordered(QUESTIONS_IN_FLIGHT);
    while let Some(outcome) = asked.next().await {
        outcome?;
    }
    drop(asked);
    Ok(joiner.into_inner().unwrap_or_else(PoisonError::into_inner))
}

/// Renders the records of `joiner` into messages and delivers them, all or nothing.
fn deliver<S: Sink + ?Sized>(
    joiner: &Joiner,
    window: &Window,
    config: &RecordConfig,
    limits: Limits,
    sink: &mut S,
) -> Result<Report> {
    let mut report = Report {
        pods: joiner.pod_count(),
        ..Report::default()
    };
    let mut builder = MessageBuilder::new(limits);
    let written = (|| {
        for (outcome, lower_bound) in joiner.records(config, window.at) {
            match outcome {
                Ok(r) => {
                    report.records += 1;
                    report.lower_bounds += usize::from(lower_bound);
                    if lower_bound {
                        tracing::warn!(uid = %r.vm_uuid, pod = %r.machine_name, "network counter reset in the window (sandbox recreated): network figures are lower bounds");
                    }
                    if let Some(m) = builder.push(&r) {
                        sink.write(&m)?;
                        report.messages += 1;
                    }
                }
                Err(skipped) => {
                    record::log_skipped(&skipped);
                    report.skipped += 1;
                }
            }
        }
        if let Some(m) = builder.finish() {
            sink.write(&m)?;
            report.messages += 1;
        }
        sink.commit()
    })();
    if let Err(e) = written {
        sink.roll_back();
        return Err(e);
    }
    tracing::info!(
        pods = report.pods,
        records = report.records,
        skipped = report.skipped,
        messages = report.messages,
        "accounting run done"
    );
    Ok(report)
}
