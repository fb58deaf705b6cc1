//! `apel-send`: sends the APEL spool as the Python SSM sender (`ssmsend`) does, from the same
//! `sender.cfg`: signs each message with the host certificate and publishes it to AMS or a
//! STOMP broker; an element leaves the spool only once the broker confirmed it.
//!
//! It locks elements as SSM does, so both can run on one spool while moving from one to
//! the other.
//!
//! Exit status: 0 done (elements refused one by one, such as a corrupt one, are kept and
//! logged); 1 permanent failure (credentials, refused login, unknown topic); 2 bad command
//! line; 75 transient failure (broker unreachable or not confirming: run again later); 78
//! configuration error.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use egi_accounting::send::config::SenderConfig;
use egi_accounting::send::stomp::Timeouts;
use egi_accounting::send::{self, Backoff, Error, Options};
use tracing_subscriber::EnvFilter;

const EXIT_PERMANENT: u8 = 1;
const EXIT_TRANSIENT: u8 = 75;
const EXIT_CONFIG: u8 = 78;

/// Send APEL messages from the spool, as the APEL SSM sender does.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// SSM's sender configuration file.
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "/etc/apel/sender.cfg"
    )]
    config: PathBuf,

    /// Check, lock and sign every message, but send and remove nothing.
    #[arg(long)]
    dry_run: bool,

    /// Tries per message on transient failures.
    #[arg(long, default_value_t = 4, value_name = "N")]
    attempts: u32,

    /// First wait before a retry, in seconds (doubling each time, at most 30 s).
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    retry_wait: f64,

    /// How long to wait for the STOMP broker's receipt of each message, in seconds.
    #[arg(long, default_value_t = 30.0, value_name = "SECONDS")]
    receipt_timeout: f64,

    /// Log level or tracing filter.
    #[arg(long, default_value = "info", value_name = "LEVEL")]
    log_level: String,
}

fn seconds(name: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("--{name} {v}: not a duration"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(&args.log_level))
        .with_writer(std::io::stderr)
        .init();
    let durations = seconds("retry-wait", args.retry_wait)
        .and_then(|w| Ok((w, seconds("receipt-timeout", args.receipt_timeout)?)));
    let (retry_wait, receipt) = match durations {
        Ok(d) => d,
        Err(e) => {
            eprintln!("apel-send: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match SenderConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("apel-send: {}", egi_examples::with_sources(&e));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let options = Options::default()
        .dry_run(args.dry_run)
        .backoff(Backoff {
            attempts: args.attempts.max(1),
            first: retry_wait,
            max: Duration::from_secs(30).max(retry_wait),
        })
        .stomp_timeouts(Timeouts {
            receipt,
            ..Timeouts::default()
        });
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("apel-send: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_PERMANENT);
        }
    };
    match runtime.block_on(send::run(&config, &options)) {
        Ok(report) => {
            if args.dry_run {
                eprintln!(
                    "apel-send: dry run: {} messages would be sent, {} locked by another sender, {} kept",
                    report.would_send,
                    report.locked_elsewhere,
                    report.kept.len()
                );
            } else {
                eprintln!(
                    "apel-send: {} messages sent, {} locked by another sender, {} kept",
                    report.sent,
                    report.locked_elsewhere,
                    report.kept.len()
                );
            }
            for e in &report.kept {
                eprintln!("apel-send: kept: {e}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("apel-send: {}", egi_examples::with_sources(&e));
            ExitCode::from(match e {
                Error::Config(_) => EXIT_CONFIG,
                e if e.is_transient() => EXIT_TRANSIENT,
                _ => EXIT_PERMANENT,
            })
        }
    }
}
