//! `monitor`: the notebooks status service, a drop-in for EGI's `egi-notebooks-monitoring`.
//!
//! Runs the probes at start and then every `--interval`, keeps their last results, writes
//! EGI's `{code,msg,time}` JSON to `STATUS_FILE` (if set), and serves under the hub service
//! prefix (`JUPYTERHUB_SERVICE_PREFIX`, default `/services/status/`):
//!
//! - `{prefix}`: the JSON (when the request accepts `application/json`) or an HTML page;
//! - `{prefix}metrics`: Prometheus metrics of the probes' results and durations.
//!
//! Configured by EGI's environment variables (`SERVICE_TYPE`, `MONITORED_URL`,
//! `JUPYTERHUB_API_TOKEN`, `JUPYTERHUB_USER`, `SPAWN_TIMEOUT`, `STATUS_FILE`) or the
//! matching options. `--once` runs the probes once, prints the JSON and exits with the
//! Nagios code of the worst result (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
//!
//! ```sh
//! MONITORED_URL=https://hub.example/hub/api JUPYTERHUB_API_TOKEN=... \
//!     cargo run -p egi-examples --bin monitor -- --listen 127.0.0.1:8080
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::{Parser, ValueEnum};
use egi_monitoring::hub::HubClient;
use egi_monitoring::notebook::Notebook;
use egi_monitoring::status::{ProbeRecord, metrics_text, overall, status_html, status_json};
use egi_monitoring::{
    BinderHealth, ExecuteProbe, HubReachable, NotebookProbe, Probe, SpawnProbe, SpawnSettings,
    Timeouts,
};

/// What is monitored (EGI's `SERVICE_TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ServiceType {
    Jupyterhub,
    Binderhub,
}

/// The probes a JupyterHub is checked with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProbeKind {
    /// Version and token (`GET /hub/api/`, `GET /hub/api/user`).
    Hub,
    /// Spawn and stop a server (EGI's check).
    Spawn,
    /// Spawn, run code in a kernel, stop.
    Execute,
    /// Spawn, run `--notebook`, stop.
    Notebook,
}

#[derive(Parser)]
#[command(
    version,
    about = "Notebooks status service: probes on a schedule, JSON/HTML status, metrics"
)]
struct Args {
    /// jupyterhub or binderhub.
    #[arg(
        long,
        env = "SERVICE_TYPE",
        value_enum,
        ignore_case = true,
        default_value = "jupyterhub"
    )]
    service_type: ServiceType,

    /// The hub's API URL (https://hub/hub/api) or BinderHub's URL.
    #[arg(long, env = "MONITORED_URL")]
    url: String,

    /// The proxy's public URL, when MONITORED_URL is the hub's internal address.
    #[arg(long, env = "MONITORED_PUBLIC_URL")]
    public_url: Option<String>,

    /// The service token (admin:users, admin:servers, access:servers, list:users).
    #[arg(
        long,
        env = "JUPYTERHUB_API_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    token: String,

    /// The probe user, created if missing.
    #[arg(long, env = "JUPYTERHUB_USER", default_value = "monitor")]
    user: String,

    /// Seconds from the start request to the server's ready event.
    #[arg(long, env = "SPAWN_TIMEOUT", default_value_t = 600.0)]
    spawn_timeout: f64,

    /// Seconds for each request, kernel start and execution.
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,

    /// Where EGI's {code,msg,time} JSON is written after each round.
    #[arg(long, env = "STATUS_FILE")]
    status_file: Option<PathBuf>,

    /// Probes to run, in order (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "hub,execute")]
    probes: Vec<ProbeKind>,

    /// The notebook the `notebook` probe runs (implies that probe).
    #[arg(long, env = "MONITOR_NOTEBOOK")]
    notebook: Option<PathBuf>,

    /// Compare every cell's output with the one saved in the notebook.
    #[arg(long)]
    check_outputs: bool,

    /// Seconds between two rounds of probes (more than 0).
    #[arg(long, env = "MONITOR_INTERVAL", default_value_t = 3600.0, value_parser = positive_seconds)]
    interval: f64,

    /// Address to serve on.
    #[arg(long, env = "MONITOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// URL prefix of the pages (the hub sets it for its services).
    #[arg(
        long,
        env = "JUPYTERHUB_SERVICE_PREFIX",
        default_value = "/services/status/"
    )]
    prefix: String,

    /// Run the probes once, print the JSON, exit with the worst result's Nagios code.
    #[arg(long)]
    once: bool,
}

/// A number of seconds that is a valid, non-zero [`Duration`] (a zero interval would make
/// the scheduler panic).
fn positive_seconds(value: &str) -> std::result::Result<f64, String> {
    let secs: f64 = value
        .parse()
        .map_err(|e| format!("{value:?} is not a number of seconds: {e}"))?;
    match Duration::try_from_secs_f64(secs) {
        Ok(d) if !d.is_zero() => Ok(secs),
        Ok(_) => Err("must be more than 0 seconds".into()),
        Err(_) => Err(format!(
            "{value:?} is not a valid positive number of seconds"
        )),
    }
}

fn seconds(value: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("invalid {what}: {value}"))
}

fn probes(args: &Args) -> Result<Vec<Box<dyn Probe>>> {
    let request = seconds(args.timeout, "--timeout")?;
    if args.service_type == ServiceType::Binderhub {
        return Ok(vec![Box::new(BinderHealth::new(&args.url, request)?)]);
    }
    if args.token.is_empty() {
        bail!("no token: set JUPYTERHUB_API_TOKEN or --token");
    }
    let mut builder = HubClient::builder(&args.url)
        .token(args.token.clone())
        .request_timeout(request);
    if let Some(public) = &args.public_url {
        builder = builder.public_url(public);
    }
    let client = builder.build()?;
    let timeouts = Timeouts {
        request,
        spawn: seconds(args.spawn_timeout, "SPAWN_TIMEOUT")?,
        stop: request.max(Duration::from_secs(60)),
        kernel: request,
        execute: request,
    };
    let settings = SpawnSettings::new(&args.user).timeouts(timeouts);
    let mut kinds = args.probes.clone();
    if args.notebook.is_some() && !kinds.contains(&ProbeKind::Notebook) {
        kinds.push(ProbeKind::Notebook);
    }
    let mut list: Vec<Box<dyn Probe>> = Vec::new();
    for kind in kinds {
        list.push(match kind {
            ProbeKind::Hub => Box::new(HubReachable::new(client.clone()).timeouts(timeouts)),
            ProbeKind::Spawn => Box::new(SpawnProbe::new(client.clone(), settings.clone())),
            ProbeKind::Execute => Box::new(ExecuteProbe::new(client.clone(), settings.clone())),
            ProbeKind::Notebook => {
                let path = args
                    .notebook
                    .as_deref()
                    .context("the notebook probe needs --notebook")?;
                let notebook = Notebook::from_path(path, args.check_outputs)?;
                Box::new(NotebookProbe::new(
                    client.clone(),
                    settings.clone(),
                    notebook,
                ))
            }
        });
    }
    Ok(list)
}

struct Shared {
    records: Mutex<Vec<ProbeRecord>>,
    since: SystemTime,
    title: String,
}

impl Shared {
    fn snapshot(&self) -> Vec<ProbeRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Runs every probe once, in order, recording each result as soon as it is known.
async fn round(probes: &[Box<dyn Probe>], shared: &Shared, status_file: Option<&Path>) {
    for (i, probe) in probes.iter().enumerate() {
        let outcome = probe.run().await;
        tracing::info!(probe = probe.name(), status = %outcome.status, message = %outcome.message, "probe finished");
        shared.records.lock().unwrap_or_else(|e| e.into_inner())[i].record(outcome);
        if let Some(path) = status_file
            && let Err(e) = write_status(path, shared)
        {
            tracing::warn!("cannot write {}: {e:#}", path.display());
        }
    }
}

/// Writes the JSON to a temporary file beside `path`, then renames it over `path`.
fn write_status(path: &Path, shared: &Shared) -> Result<()> {
    let json = status_json(&shared.snapshot(), shared.since);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

async fn page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let records = shared.snapshot();
    if wants_json(&headers) {
        let body = status_json(&records, shared.since).to_string();
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        let body = status_html(&shared.title, &records, shared.since);
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = metrics_text(&shared.snapshot());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

fn router(prefix: &str, shared: Arc<Shared>) -> Router {
    let prefix = format!("/{}/", prefix.trim_matches('/')).replace("//", "/");
    let mut app = Router::new()
        .route(&prefix, get(page))
        .route(&format!("{prefix}metrics"), get(metrics));
    if prefix != "/" {
        app = app.route(prefix.trim_end_matches('/'), get(page));
    }
    app.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(shared)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let probes = probes(&args)?;
    let shared = Arc::new(Shared {
        records: Mutex::new(probes.iter().map(|p| ProbeRecord::new(p.name())).collect()),
        since: SystemTime::now(),
        title: format!("Status of {}", args.url),
    });
    let status_file = args.status_file.clone();

    if args.once {
        round(&probes, &shared, status_file.as_deref()).await;
        println!("{}", status_json(&shared.snapshot(), shared.since));
        let code = overall(&shared.snapshot(), shared.since).code;
        std::process::exit(i32::from(code.exit_code()));
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(
        "serving on http://{}{}",
        listener.local_addr()?,
        args.prefix
    );
    let app = router(&args.prefix, shared.clone());
    let interval = seconds(args.interval, "--interval")?;
    let scheduler = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            round(&probes, &shared, status_file.as_deref()).await;
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving")?;
    // A probe cut short here may leave its server running: the next start stops it first.
    scheduler.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_interval_is_rejected_when_parsing() {
        for bad in ["0", "0.0", "-1", "1e-12", "NaN", "inf", "x"] {
            let interval = format!("--interval={bad}");
            let parsed = Args::try_parse_from(["monitor", "--url", "http://h/", &interval]);
            let err = parsed.err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(err.to_string().contains("--interval"), "{err}");
        }
        let err = Args::try_parse_from(["monitor", "--url", "http://h/", "--interval", "0"])
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("must be more than 0 seconds"),
            "{err}"
        );
        let ok = Args::try_parse_from(["monitor", "--url", "http://h/", "--interval", "0.5"]);
        assert_eq!(ok.map(|a| a.interval).ok(), Some(0.5));
    }
}
