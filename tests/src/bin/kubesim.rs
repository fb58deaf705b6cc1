//! A standalone Kubernetes API simulator on loopback (see `egi_test_harness::kubesim`),
//! for kubectl, the Python client, benchmarks and the example binaries. Prints
//! `listening on http://127.0.0.1:PORT` on its first stdout line and runs until SIGTERM or
//! SIGINT. Faults: `POST /simulator/faults`; counters: `GET /simulator/counters`; metrics
//! (kube-state-metrics and cAdvisor series): `GET /metrics`.
//!
//! Process pods: `--process 'notebook=python3 -m http.server {port} --bind {pod_ip}'` runs
//! containers whose image contains `notebook` as `sh -c COMMAND` (placeholders expanded
//! first; see `egi_test_harness::kubesim::ProcessImage`).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use egi_test_harness::kubesim::{KubeSim, ProcessImage, SimOptions};

/// Kubernetes API simulator.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Loopback port (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Milliseconds from pod creation to Running and ready.
    #[arg(long, default_value_t = 200)]
    ready_delay_ms: u64,
    /// Milliseconds from pod creation to Scheduled.
    #[arg(long, default_value_t = 20)]
    schedule_delay_ms: u64,
    /// Milliseconds a gracefully deleted pod stays terminating (at most its grace period).
    #[arg(long, default_value_t = 100)]
    terminate_delay_ms: u64,
    /// Milliseconds between watch bookmarks.
    #[arg(long, default_value_t = 1000)]
    bookmark_interval_ms: u64,
    /// Milliseconds the garbage collector takes to act on an owner's deletion (it acts on
    /// what it observed then; a real one runs 2-4 s behind a burst of deletions).
    #[arg(long, default_value_t = 5)]
    gc_delay_ms: u64,
    /// Count the garbage collector's GET and DELETE requests in the counters.
    #[arg(long)]
    count_controllers: bool,
    /// Milliseconds before the scheduler sees a new claim ("not found" until then).
    #[arg(long, default_value_t = 0)]
    scheduler_lag_ms: u64,
    /// Changes kept per resource for watch resumption.
    #[arg(long, default_value_t = 10_000)]
    history_limit: usize,
    /// Writes a kubeconfig for the simulator to this path.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Pod IPs from 127.244.0.0/16 (implied by --process).
    #[arg(long)]
    loopback_pod_ips: bool,
    /// `IMAGE=COMMAND`: containers whose image contains IMAGE run `sh -c COMMAND` as a local
    /// process (repeatable; the first match wins).
    #[arg(long = "process", value_name = "IMAGE=COMMAND")]
    processes: Vec<String>,
    /// Directory for process pods' files (default: a temporary directory).
    #[arg(long)]
    process_root: Option<PathBuf>,
    /// Seconds the cAdvisor series of a removed pod stay on /metrics.
    #[arg(long, default_value_t = 60)]
    metrics_linger_secs: u64,
    /// Pod annotations exported by kube_pod_annotations (comma-separated; `*`: all).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "hub.jupyter.org/username,egi.eu/primary_group,egi.eu/flavor"
    )]
    metrics_annotations: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let process_images = args
        .processes
        .iter()
        .map(|p| {
            let (image, command) = p
                .split_once('=')
                .with_context(|| format!("--process {p:?}: expected IMAGE=COMMAND"))?;
            Ok(ProcessImage::new(image, ["sh", "-c", command]))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = SimOptions {
        loopback_pod_ips: args.loopback_pod_ips,
        process_images,
        process_root: args.process_root.clone(),
        metrics_linger: Duration::from_secs(args.metrics_linger_secs),
        metrics_annotations: args.metrics_annotations.clone(),
        ready_delay: Duration::from_millis(args.ready_delay_ms),
        gc_delay: Duration::from_millis(args.gc_delay_ms),
        count_controllers: args.count_controllers,
        scheduler_lag: Duration::from_millis(args.scheduler_lag_ms),
        schedule_delay: Duration::from_millis(args.schedule_delay_ms),
        terminate_delay: Duration::from_millis(args.terminate_delay_ms),
        bookmark_interval: Duration::from_millis(args.bookmark_interval_ms),
        history_limit: args.history_limit,
        ..SimOptions::default()
    };
    let sim = KubeSim::start_on(opts, args.port).await?;
    if let Some(path) = &args.kubeconfig {
        sim.write_kubeconfig(path)?;
    }
    // Handlers first: a SIGTERM right after the first line must stop the simulator cleanly.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ctrl_c = tokio::signal::ctrl_c();
    let mut out = std::io::stdout();
    writeln!(out, "listening on {}", sim.url())?;
    out.flush()?;
    tokio::select! {
        _ = term.recv() => {}
        _ = ctrl_c => {}
    }
    sim.shutdown().await;
    Ok(())
}
