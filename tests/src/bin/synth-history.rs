//! Writes a synthetic notebook-pod history as OpenMetrics text for
//! `promtool tsdb create-blocks-from openmetrics` (see `egi_test_harness::synthetic`).
//!
//! ```text
//! synth-history --sample --out examples/data/notebooks.om
//! synth-history --pods 10000 --hours 24 --interval 300 --out /tmp/history.om
//! ```

use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::Parser;
use egi_test_harness::synthetic::{self, Params};

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(about = "Writes a synthetic notebook-pod history (OpenMetrics, for promtool backfill)")]
struct Args {
    /// Write the bundled sample (25 pods, 12 h, 20 min scrapes, fixed end and seed);
    /// the other generation options are ignored.
    #[arg(long)]
    sample: bool,
    /// Number of pods.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    /// Length of the history, hours.
    #[arg(long, default_value_t = 24)]
    hours: u64,
    /// Scrape interval, seconds.
    #[arg(long, default_value_t = 300)]
    interval: u64,
    /// Time of the last scrape, epoch seconds (default: now, rounded down to the interval).
    #[arg(long)]
    end: Option<i64>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the plan (one pod per line: kind, name, uid, user, primary group, created,
    /// first and last Running sample) instead of the history.
    #[arg(long)]
    list: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let params = if args.sample {
        Params::sample()
    } else {
        let interval = i64::try_from(args.interval).context("interval")?;
        let end = match args.end {
            Some(end) => end,
            None => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
                let now = i64::try_from(now)?;
                now - now.rem_euclid(interval.max(1))
            }
        };
        Params {
            pods: args.pods,
            span: Duration::from_secs(args.hours * 3600),
            end,
            scrape_interval: Duration::from_secs(args.interval),
            seed: args.seed,
        }
    };
    if args.list {
        let mut out = io::stdout().lock();
        for p in synthetic::plan(&params)? {
            let running = p
                .running
                .map_or("-".to_owned(), |(a, b)| format!("{a}..{b}"));
            writeln!(
                out,
                "{:?}\t{}\t{}\t{}\t{}\t{}\t{running}",
                p.kind,
                p.name,
                p.uid,
                p.user,
                p.primary_group.as_deref().unwrap_or("-"),
                p.created
            )?;
        }
        return Ok(());
    }
    let started = Instant::now();
    let stats = match &args.out {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            synthetic::write(&params, file)?
        }
        None => synthetic::write(&params, io::stdout().lock())?,
    };
    let mut err = io::stderr().lock();
    writeln!(
        err,
        "{} pods, {} series, {} samples, {} bytes, from {} to {} every {} s, in {:.1} s",
        stats.pods,
        stats.series,
        stats.samples,
        stats.bytes,
        params.start(),
        params.end,
        params.scrape_interval.as_secs(),
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}
