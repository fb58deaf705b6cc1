//! # egi-accounting
//!
//! APEL cloud usage records for Jupyter notebook pods, built from the metrics that
//! kube-state-metrics and cAdvisor put into Prometheus, and written where the APEL SSM
//! sender picks them up. A drop-in replacement for the Python
//! `egi-notebooks-accounting-dump` job: it reads the same INI file and environment
//! variables and asks Prometheus the same questions, but joins usage on namespace + pod (and
//! the pod UID of the cgroup path), maps VOs correctly, sends cASO's units, validates every
//! record and bounds message size.
//!
//! The pipeline, each step a module:
//!
//! 1. [`metrics`]: the questions ([`query`] holds their PromQL), asked of a [`MetricsSource`]:
//!    [`prometheus::PrometheusSource`] (HTTP API, answers streamed in batches) or
//!    [`snapshot::SnapshotSource`] (an OpenMetrics history file).
//! 2. [`record`]: pure functions that turn the answers into validated [`record::CloudRecord`]s;
//!    [`record::Joiner`] folds answers in as they arrive, in any order.
//! 3. [`apel`]: APEL `v0.4` messages of bounded size, ASCII only.
//! 4. [`spool`]: a python-dirq `QueueSimple` spool written atomically (a run's messages become
//!    elements only once all are written), or any [`spool::Sink`].
//!
//! [`config`] reads the Python tool's configuration and [`job`] runs the whole pipeline.
//! [`job::run`]'s future is `Send` when its sink is (a [`spool::DirqSpool`] is), so a gateway
//! can `tokio::spawn` it.
//!
//! ## Features
//!
//! | Feature | Default | What it adds |
//! |---|---|---|
//! | `snapshot` | yes | [`snapshot::SnapshotSource`]: the questions answered from an OpenMetrics history by evaluating their PromQL locally (the `regex` and `memchr` dependencies). A job that only asks Prometheus can leave it out. |
//! | `send` | no | the module `send`: the APEL sender (SSM's `ssmsend`): reads the spool, signs with S/MIME and publishes to AMS or a STOMP broker. Needs OpenSSL (the `openssl` crate, as SSM calls `openssl smime`) and turns on `rustls-tls` for AMS. |
//! | `notebooks-db` | yes | [`notebooks_db`]: the Python tool's SQLite copy of the records (`notebooks_db`), written by [`job::run_with_db`] (rusqlite with SQLite compiled in). |
//! | `eosc` | no | the module `eosc`: the EOSC EU Node accounting job (hours per flavor, user and group per day, from the notebooks database), with a client-credentials token from egi-checkin. |
//! | `rustls-tls` | yes | HTTPS to Prometheus with rustls and the Web PKI roots (reqwest's `rustls-tls`), needed for `https://` URLs, `verify = false` and `ca_cert`. |
//!
//! Without `rustls-tls`, [`prometheus::PrometheusSource::new`] accepts only `http://` URLs
//! and no CA file ([`Error::Config`] otherwise).
//!
//! ```no_run
//! # #[cfg(feature = "snapshot")]
//! # async fn run() -> egi_accounting::Result<()> {
//! use egi_accounting::{config::Config, job, snapshot::SnapshotSource, spool::WriterSink};
//!
//! // The Python tool's configuration, environment variables taking precedence.
//! let config = Config::from_ini_str("[default]\nsite=MY-SITE\n", |k| std::env::var(k).ok())?;
//! let source = SnapshotSource::from_path("examples/data/notebooks.om")?;
//! let at = source.last_timestamp().expect("the history has samples");
//! let mut stdout = WriterSink::new(std::io::stdout().lock(), "standard output");
//! let report = job::run(&source, &config.window(at), &config.records, config.limits, &mut stdout).await?;
//! eprintln!("{} records in {} messages", report.records, report.messages);
//! # Ok(())
//! # }
//! ```

pub mod apel;
pub mod config;
#[cfg(feature = "eosc")]
pub mod eosc;
mod error;
pub mod job;
pub mod metrics;
#[cfg(feature = "notebooks-db")]
pub mod notebooks_db;
pub mod prometheus;
pub mod query;
pub mod record;
#[cfg(feature = "send")]
pub mod send;
#[cfg(feature = "snapshot")]
pub mod snapshot;
pub mod spool;
#[cfg(feature = "rustls-tls")]
mod tls;

pub use error::{Error, Result};
pub use metrics::{MetricsSource, Window};
