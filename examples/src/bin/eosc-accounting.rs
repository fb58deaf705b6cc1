//! `eosc-accounting`: EOSC EU Node accounting for notebook pods, a drop-in for the Python
//! `egi-notebooks-eosc-accounting` (its own CronJob in the chart, hence its own binary: the
//! chart runs `egi-notebooks-eosc-accounting -c /etc/egi-notebooks-accounting/config.ini`
//! apart from the APEL job, on its own schedule).
//!
//! It reads the same INI file (`-c`) and environment variables, sums per day the hours each
//! user and group ran each flavor mapped in `[eosc.flavors]` from the notebooks database
//! that `accounting` writes (`notebooks_db`), and posts one metric each to the EOSC
//! accounting API with a client-credentials token. Without dates it reports every whole
//! day since the timestamp file's time (or yesterday) up to today 00:00 UTC; the timestamp
//! file moves on after each day is accepted, so a missed day is sent later and no metric
//! is sent twice. `--dry-run` prints the metrics (JSON lines) and sends nothing.
//!
//! Exit status: 0 done; 1 permanent failure (metric refused, credentials refused, unreadable
//! database); 2 bad command line; 75 transient failure (API or token endpoint unreachable,
//! slow or overloaded: retry later); 78 configuration error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use egi_accounting::eosc::{self, EoscConfig, Error, Metric, Options, Progress, Sender};
use egi_accounting::notebooks_db::NotebooksDb;
use tracing_subscriber::EnvFilter;

const EXIT_PERMANENT: u8 = 1;
const EXIT_TRANSIENT: u8 = 75;
const EXIT_CONFIG: u8 = 78;

/// Push daily notebook usage per flavor to the EOSC accounting API.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The Python tool's INI configuration file; environment variables override it.
    #[arg(short, long, value_name = "FILE", default_value = "config.ini")]
    config: PathBuf,

    /// Do not send anything: print the metrics on standard output.
    #[arg(long)]
    dry_run: bool,

    /// Start date to report from (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ; default: the
    /// timestamp file, else yesterday).
    #[arg(long, value_name = "DATE")]
    from_date: Option<String>,

    /// End date to report to (default: today 00:00 UTC).
    #[arg(long, value_name = "DATE")]
    to_date: Option<String>,

    /// Log level or tracing filter (default: info, or debug with `verbose = 1`).
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = EoscConfig::load(Some(&args.config), |k| std::env::var(k).ok());
    let level = match (&args.log_level, &config) {
        (Some(l), _) => l.clone(),
        (None, Ok(c)) if c.verbose => "debug".to_owned(),
        _ => "info".to_owned(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&level).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    if let Ok(c) = &config {
        c.warnings.iter().for_each(|w| tracing::warn!("{w}"));
    }
    let outcome = config.and_then(|config| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Config(format!("cannot start the async runtime: {e}")))?
            .block_on(run(&args, &config))
    });
    match outcome {
        Ok(r) => {
            eprintln!(
                "{} days, {} metrics: {} sent, {} sent before",
                r.periods, r.metrics, r.sent, r.already_sent
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            let text = egi_examples::with_sources(&e);
            tracing::error!("{text}");
            ExitCode::from(match e {
                Error::Config(_) => EXIT_CONFIG,
                ref e if e.is_transient() => EXIT_TRANSIENT,
                _ => EXIT_PERMANENT,
            })
        }
    }
}

async fn run(args: &Args, config: &EoscConfig) -> eosc::Result<eosc::Report> {
    let date = |d: &Option<String>| d.as_deref().map(eosc::report::parse_date).transpose();
    let options = Options {
        from: date(&args.from_date)?,
        to: date(&args.to_date)?,
        dry_run: args.dry_run,
        now: chrono::Utc::now().timestamp(),
    };
    if !config.notebooks_db.is_file() {
        return Err(Error::Config(format!(
            "notebooks_db {} does not exist (the accounting job writes it)",
            config.notebooks_db.display()
        )));
    }
    let db = NotebooksDb::open(&config.notebooks_db).map_err(Error::Database)?;
    let sender = if args.dry_run {
        None
    } else {
        Some(Sender::new(config)?)
    };
    let progress = config.timestamp_file.as_ref().map(Progress::new);
    let mut print = |m: &Metric| {
        if args.dry_run {
            println!("{}", serde_json::to_string(m).unwrap_or_default());
        } else {
            tracing::debug!(metric = %serde_json::to_string(m).unwrap_or_default(), "metric");
        }
    };
    eosc::run(
        config,
        &db,
        sender.as_ref(),
        progress.as_ref(),
        options,
        &mut print,
    )
    .await
}
