//! # egi-accounting
//!
//! APEL cloud usage records for Jupyter notebook pods, built from the metrics that
//! kube-state-metrics and cAdvisor put into Prometheus, and written where the APEL SSM
//! sender picks them up. A drop-in replacement for the Python
//! `egi-notebooks-accounting-dump` job: it reads the same INI file and environment
//! variables and asks Prometheus the same questions, but joins usage on namespace + pod,
//! maps VOs correctly, sends cASO's units, validates every record and bounds message size.
//!
//! The pipeline, each step a module:
//!
//! 1. [`metrics`]: the questions, asked of a [`MetricsSource`]: [`prometheus::PrometheusSource`]
//!    (HTTP API) or [`snapshot::SnapshotSource`] (an OpenMetrics history file).
//! 2. [`record`]: pure functions that turn the answers into validated [`record::CloudRecord`]s.
//! 3. [`apel`]: APEL `v0.4` messages of bounded size, ASCII only.
//! 4. [`spool`]: a python-dirq `QueueSimple` spool written atomically, or any [`spool::Sink`].
//!
//! [`config`] reads the Python tool's configuration and [`job`] runs the whole pipeline.
//!
//! ```no_run
//! use egi_accounting::{config::Config, job, snapshot::SnapshotSource};
//!
//! # async fn run() -> egi_accounting::Result<()> {
//! let config = Config::from_ini_str("[default]\nsite=MY-SITE\n", |_| None)?;
//! let source = SnapshotSource::from_path("history.om")?;
//! let window = config.window(source.last_timestamp().expect("history has samples"));
//! let report = job::run(&source, &window, &config.records, &mut std::io::stdout().lock()).await?;
//! eprintln!("{} records in {} messages", report.records, report.messages);
//! # Ok(())
//! # }
//! ```

pub mod apel;
pub mod config;
mod error;
pub mod job;
pub mod metrics;
pub mod prometheus;
pub mod query;
pub mod record;
pub mod snapshot;
pub mod spool;

pub use error::{Error, Result};
pub use metrics::{MetricsSource, Window};
