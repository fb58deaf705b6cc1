//! `accounting`: the APEL accounting job for notebook pods, a drop-in for the Python
//! `egi-notebooks-accounting-dump`.
//!
//! It reads the same INI file (`--config`) and environment variables, asks Prometheus (or,
//! with `--snapshot`, an OpenMetrics history file) about the pods of the look-back window,
//! and writes APEL cloud messages to the spool (`apel_spool`) or to standard output.
//! With `notebooks_db` set, it also upserts every pod into that SQLite file, as the Python
//! tool does (the `eosc-accounting` job reads it).
//!
//! Exit status: 0 done; 1 permanent failure (bad data, unwritable spool: retrying will not
//! help); 2 bad command line; 75 transient failure (Prometheus unreachable, slow or
//! overloaded: retry later); 78 configuration error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use egi_accounting::config::Config;
use egi_accounting::metrics::{MetricsSource, Timestamp};
use egi_accounting::notebooks_db::NotebooksDb;
use egi_accounting::prometheus::PrometheusSource;
use egi_accounting::snapshot::SnapshotSource;
use egi_accounting::spool::{DirqSpool, Sink, WriterSink};
use egi_accounting::{Error, job};
use tracing_subscriber::EnvFilter;

const EXIT_PERMANENT: u8 = 1;
const EXIT_TRANSIENT: u8 = 75;
const EXIT_CONFIG: u8 = 78;

/// Write APEL cloud accounting records for Jupyter notebook pods.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The Python tool's INI configuration file; environment variables override it.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Read an OpenMetrics history file instead of querying Prometheus.
    #[arg(long, value_name = "FILE")]
    snapshot: Option<PathBuf>,

    /// Evaluation time, epoch seconds (default: now, or the snapshot's last sample).
    #[arg(long, value_name = "EPOCH")]
    at: Option<f64>,

    /// Print the messages on standard output even if a spool is configured.
    #[arg(long, visible_alias = "stdout")]
    dry_run: bool,

    /// Log level or tracing filter (default: info, or debug with `verbose = 1`).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The configuration is read before logging starts (it holds the log level), so loading
    // returns its warnings as values and they are reported here, once logging is up.
    let config = Config::load(args.config.as_deref(), |k| std::env::var(k).ok());
    let level = match (&args.log_level, &config) {
        (Some(l), _) => l.clone(),
        (None, Ok(c)) if c.verbose => "debug".to_owned(),
        _ => "info".to_owned(),
    };
    let filter = EnvFilter::try_new(&level);
    tracing_subscriber::fmt()
        .with_env_filter(
            filter
                .as_ref()
                .map_or_else(|_| EnvFilter::new("info"), Clone::clone),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = &filter {
        warn(&format!(
            "--log-level {level:?} is not a tracing filter ({e}): info is used"
        ));
    }
    if let Ok(config) = &config {
        config.warnings.iter().for_each(|w| warn(&w.to_string()));
    }
    let outcome = config.and_then(|config| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))?
            .block_on(run(&args, config))
    });
    match outcome {
        Ok(report) => {
            eprintln!(
                "{} pods, {} records in {} messages, {} skipped, {} with lower-bound counters",
                report.pods, report.records, report.messages, report.skipped, report.lower_bounds
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let text = egi_examples::with_sources(&e);
            if tracing::enabled!(tracing::Level::ERROR) {
                tracing::error!("{text}");
            } else {
                eprintln!("error: {text}");
            }
            ExitCode::from(match e {
                Error::Config(_) | Error::ConfigFile { .. } => EXIT_CONFIG,
                ref e if e.is_transient() => EXIT_TRANSIENT,
                _ => EXIT_PERMANENT,
            })
        }
    }
}

/// Logs a warning, or prints it on standard error if the log level hides warnings: a
/// configuration warning is never lost.
fn warn(text: &str) {
    if tracing::enabled!(tracing::Level::WARN) {
        tracing::warn!("{text}");
    } else {
        eprintln!("warning: {text}");
    }
}

async fn run(args: &Args, config: Config) -> egi_accounting::Result<job::Report> {
    let at = args
        .at
        .map(|s| {
            Timestamp::from_secs_f64(s)
                .ok_or_else(|| Error::Config(format!("--at {s}: not a time")))
        })
        .transpose()?;
    let (source, at): (Box<dyn MetricsSource>, Timestamp) = match &args.snapshot {
        Some(path) => {
            let snapshot = SnapshotSource::from_path(path)?;
            let last = snapshot.last_timestamp();
            let at = at.or(last).ok_or_else(|| {
                Error::Config(format!(
                    "{} holds no samples and --at is not given",
                    path.display()
                ))
            })?;
            (Box::new(snapshot), at)
        }
        None => (
            Box::new(PrometheusSource::new(config.prometheus.clone())?),
            at.unwrap_or_else(Timestamp::now),
        ),
    };
    let window = config.window(at);
    let mut sink: Box<dyn Sink> = match (&config.spool, args.dry_run) {
        (Some(path), false) => Box::new(DirqSpool::open(path)?),
        _ => Box::new(WriterSink::new(std::io::stdout().lock(), "standard output")),
    };
    // The notebooks database (read by the EOSC job), opened before any question is asked
    // so that an unusable file fails the run before anything is delivered. A dry run
    // leaves it alone.
    match (&config.notebooks_db, args.dry_run) {
        (Some(path), false) => {
            let mut db = NotebooksDb::open(path)?;
            job::run_with_db(
                source.as_ref(),
                &window,
                &config.records,
                config.limits,
                sink.as_mut(),
                &mut db,
            )
            .await
        }
        _ => {
            job::run(
                source.as_ref(),
                &window,
                &config.records,
                config.limits,
                sink.as_mut(),
            )
            .await
        }
    }
}
