//! `monitor`: the notebooks status service, a drop-in for EGI's `egi-notebooks-monitoring`.
//!
//! Runs the probes at start and then every `--interval`, keeps their last results, writes
//! EGI's `{code,msg,time}` JSON to `STATUS_FILE` (if set; `time` is when the result was
//! known) and serves it until the first round is over after a restart. It serves under the
//! hub service prefix (`JUPYTERHUB_SERVICE_PREFIX`; else `{base}services/{name}/`, with the
//! hub's base URL taken from `MONITORED_URL` and the name from `JUPYTERHUB_SERVICE_NAME`,
//! default `status`):
//!
//! - `{prefix}`: EGI's `{code,msg,time}` JSON (when the request accepts `application/json`)
//!   or an HTML page, each probe summarised the same way: public, no kernel output or ids;
//! - `{prefix}details`: phases, timings and details, for viewers the hub authenticates (its
//!   OAuth, `{prefix}oauth_callback`) whose token has the `access:services` scope;
//! - `{prefix}metrics`: Prometheus metrics of the probes' results and durations.
//!
//! Configured by EGI's environment variables (`SERVICE_TYPE`, `MONITORED_URL`,
//! `JUPYTERHUB_API_TOKEN`, `JUPYTERHUB_USER`, `SPAWN_TIMEOUT`, `STATUS_FILE`) or the
//! matching options; `MONITOR_TIMEOUT` (default 10 s) bounds every request, so a hub that
//! does not answer is reported within it (the other probes are then not run). A
//! misconfiguration is UNKNOWN, served and written like any result. `--once` runs the
//! probes once, prints the JSON and exits with the Nagios code of the worst result (0 OK,
//! 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
//!
//! ```sh
//! MONITORED_URL=https://hub.example/hub/api JUPYTERHUB_API_TOKEN=... \
//!     cargo run -p egi-examples --bin monitor -- --listen 127.0.0.1:8080
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::{Parser, ValueEnum};
use egi_monitoring::hub::HubClient;
use egi_monitoring::notebook::Notebook;
use egi_monitoring::status::{
    Audience, ProbeRecord, StatusRecord, metrics_text, overall_or, status_html_for, status_json_for,
};
use egi_monitoring::{
    BinderHealth, ExecuteProbe, HubReachable, NotebookProbe, Outcome, Probe, SpawnProbe,
    SpawnSettings, Status, Timeouts,
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
    #[arg(long, env = "MONITORED_URL", default_value = "")]
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
    #[arg(long, env = "SPAWN_TIMEOUT", default_value = "600")]
    spawn_timeout: String,

    /// Seconds for each request (kernel start and each execution: at least 60).
    #[arg(long, env = "MONITOR_TIMEOUT", default_value = "10")]
    timeout: String,

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

    /// URL prefix of the pages (the hub sets it for the services it starts); default
    /// `{base}services/{service name}/`, the base being MONITORED_URL's.
    #[arg(long, env = "JUPYTERHUB_SERVICE_PREFIX")]
    prefix: Option<String>,

    /// The service's name in the hub (its OAuth client is `service-{name}`).
    #[arg(long, env = "JUPYTERHUB_SERVICE_NAME", default_value = "status")]
    service_name: String,

    /// The service's OAuth client id (default `service-{name}`).
    #[arg(long, env = "JUPYTERHUB_CLIENT_ID")]
    client_id: Option<String>,

    /// The OAuth redirect URI registered for the service (default `{prefix}oauth_callback`).
    #[arg(long, env = "JUPYTERHUB_OAUTH_CALLBACK_URL")]
    oauth_callback: Option<String>,

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

/// `value` seconds, from a flag or variable called `what`.
fn seconds_of(value: &str, what: &str) -> Result<Duration> {
    let secs: f64 = value
        .trim()
        .parse()
        .with_context(|| format!("{what}={value:?} is not a number of seconds"))?;
    seconds(secs, what)
}

/// The hub's base URL path (`/jhub/` of `http://hub:8081/jhub/hub/api`), `/` if unknown.
fn hub_base_path(args: &Args) -> String {
    let url = args.public_url.as_deref().unwrap_or(&args.url);
    egi_monitoring::hub::base_url(url)
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| "/".into())
}

/// `/{prefix}/`, given or derived ([`Args::prefix`]).
fn prefix_of(args: &Args) -> String {
    let prefix = match &args.prefix {
        Some(p) if !p.trim().is_empty() => p.clone(),
        _ if args.service_type == ServiceType::Binderhub => "/services/status/".into(),
        _ => format!("{}services/{}/", hub_base_path(args), args.service_name),
    };
    format!("/{}/", prefix.trim_matches('/')).replace("//", "/")
}

fn probes(args: &Args) -> Result<Vec<Box<dyn Probe>>> {
    let request = seconds_of(&args.timeout, "MONITOR_TIMEOUT (--timeout)")?;
    if args.url.trim().is_empty() {
        bail!("no URL: set MONITORED_URL or --url");
    }
    if args.service_type == ServiceType::Binderhub {
        return Ok(vec![Box::new(BinderHealth::new(&args.url, request)?)]);
    }
    if args.token.is_empty() {
        bail!("no token: set JUPYTERHUB_API_TOKEN or --token");
    }
    let mut builder = HubClient::builder(&args.url)
        .token(args.token.clone())
        .request_timeout(request)
        .connect_timeout(request.min(Duration::from_secs(10)));
    if let Some(public) = &args.public_url {
        builder = builder.public_url(public);
    }
    let client = builder.build()?;
    let slow = request.max(Duration::from_secs(60));
    let timeouts = Timeouts {
        request,
        spawn: seconds_of(&args.spawn_timeout, "SPAWN_TIMEOUT")?,
        stop: slow,
        kernel: slow,
        execute: slow,
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
    /// The status file found at start: it stands until every probe ran.
    previous: Option<StatusRecord>,
    title: String,
    prefix: String,
    oauth: Option<OAuth>,
}

impl Shared {
    fn snapshot(&self) -> Vec<ProbeRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn json(&self, audience: Audience) -> serde_json::Value {
        status_json_for(
            &self.snapshot(),
            self.since,
            self.previous.as_ref(),
            audience,
        )
    }
}

/// Runs every probe once, in order, recording each result as soon as it is known. When the
/// `hub` probe fails (CRITICAL or UNKNOWN), the others are not run: they would wait for the
/// same silent or failing hub, and the result would come late.
async fn round(probes: &[Box<dyn Probe>], shared: &Shared, status_file: Option<&Path>) {
    let mut hub_failed: Option<Outcome> = None;
    for (i, probe) in probes.iter().enumerate() {
        let outcome = match &hub_failed {
            Some(hub) => {
                let mut skipped = Outcome::new(hub.status, "not run: the hub probe failed");
                skipped.started = hub.started + hub.duration;
                skipped
            }
            None => probe.run().await,
        };
        tracing::info!(probe = probe.name(), status = %outcome.status, message = %outcome.message, "probe finished");
        if probe.name() == "hub" && matches!(outcome.status, Status::Critical | Status::Unknown) {
            hub_failed = Some(outcome.clone());
        }
        shared.records.lock().unwrap_or_else(|e| e.into_inner())[i].record(outcome);
        if let Some(path) = status_file
            && let Err(e) = write_status(path, shared)
        {
            tracing::warn!("cannot write {}: {e:#}", path.display());
        }
    }
}

/// Writes EGI's summary JSON to a temporary file beside `path`, then renames it over `path`.
fn write_status(path: &Path, shared: &Shared) -> Result<()> {
    let json = shared.json(Audience::Public);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json.to_string()).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// The `{code,msg,time}` of a status file written before a restart, if readable.
fn read_status(path: &Path) -> Option<StatusRecord> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/json"))
}

fn render(shared: &Shared, headers: &HeaderMap, audience: Audience, footer: &str) -> Response {
    if wants_json(headers) {
        let body = shared.json(audience).to_string();
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    } else {
        let body = status_html_for(
            &shared.title,
            &shared.snapshot(),
            shared.since,
            shared.previous.as_ref(),
            audience,
            footer,
        );
        ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
    }
}

async fn page(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let footer = if shared.oauth.is_some() {
        format!(
            "<p><a href=\"{}details\">Details</a> (hub login)</p>\n",
            shared.prefix
        )
    } else {
        String::new()
    };
    render(&shared, &headers, Audience::Public, &footer)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let body = metrics_text(&shared.snapshot());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The session cookie of viewers the hub authenticated.
const SESSION_COOKIE: &str = "egi-monitoring-session";
/// How long a login lasts.
const SESSION_LIFETIME: Duration = Duration::from_secs(3600);
/// How long a login may take (from the redirect to the hub to the callback).
const LOGIN_LIFETIME: Duration = Duration::from_secs(600);

/// JupyterHub's OAuth for services: the hub authenticates the viewer, the service checks
/// the viewer's token has `access:services` (for all services, or this one).
struct OAuth {
    http: reqwest::Client,
    /// `{hub}hub/api/` as the service reaches it (MONITORED_URL's base).
    api: url::Url,
    /// `{base}hub/api/oauth2/authorize` as browsers reach it (a path on the proxy).
    authorize: String,
    client_id: String,
    client_secret: String,
    redirect_uri: String,
    service: String,
    /// Login states handed to the hub, with their deadline.
    states: Mutex<HashMap<String, Instant>>,
    /// Session id to (viewer, deadline).
    sessions: Mutex<HashMap<String, (String, Instant)>>,
}

impl OAuth {
    fn new(args: &Args, prefix: &str) -> Result<Self> {
        let api = egi_monitoring::hub::base_url(&args.url)?.join("hub/api/")?;
        Ok(Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(seconds_of(&args.timeout, "MONITOR_TIMEOUT")?)
                .build()?,
            api,
            authorize: format!("{}hub/api/oauth2/authorize", hub_base_path(args)),
            client_id: args
                .client_id
                .clone()
                .unwrap_or_else(|| format!("service-{}", args.service_name)),
            client_secret: args.token.clone(),
            redirect_uri: args
                .oauth_callback
                .clone()
                .unwrap_or_else(|| format!("{prefix}oauth_callback")),
            service: args.service_name.clone(),
            states: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn viewer(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, (_, deadline)| *deadline > Instant::now());
        sessions.get(&id).map(|(name, _)| name.clone())
    }

    fn login_url(&self) -> String {
        let state = random_id();
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states.retain(|_, deadline| *deadline > Instant::now());
        states.insert(state.clone(), Instant::now() + LOGIN_LIFETIME);
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("state", &state)
            .finish();
        format!("{}?{query}", self.authorize)
    }

    /// Exchanges the code for the viewer's token, and checks its scopes; returns the
    /// viewer's name.
    async fn finish(&self, code: &str, state: &str) -> Result<String> {
        let known = self
            .states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(state)
            .is_some_and(|deadline| deadline > Instant::now());
        if !known {
            bail!("unknown or expired login state");
        }
        let token: serde_json::Value = self
            .http
            .post(self.api.join("oauth2/token")?)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", &self.redirect_uri),
                ("client_id", &self.client_id),
                ("client_secret", &self.client_secret),
            ])
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let access = token["access_token"]
            .as_str()
            .context("no access_token from the hub")?;
        let viewer: serde_json::Value = self
            .http
            .get(self.api.join("user")?)
            .header(header::AUTHORIZATION, format!("token {access}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let name = viewer["name"].as_str().unwrap_or_default().to_owned();
        let this = format!("access:services!service={}", self.service);
        let allowed = viewer["scopes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .any(|s| s == "access:services" || s == this);
        if !allowed {
            bail!("{name} may not see the details (no access:services scope)");
        }
        Ok(name)
    }
}

fn random_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_owned())]).into_response()
}

async fn details(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let Some(oauth) = &shared.oauth else {
        return (StatusCode::NOT_FOUND, "no hub login configured\n").into_response();
    };
    match oauth.viewer(&headers) {
        Some(_) => render(&shared, &headers, Audience::Authenticated, ""),
        None => redirect(&oauth.login_url()),
    }
}

#[derive(serde::Deserialize)]
struct Callback {
    code: String,
    state: String,
}

async fn oauth_callback(
    State(shared): State<Arc<Shared>>,
    Query(callback): Query<Callback>,
) -> Response {
    let Some(oauth) = &shared.oauth else {
        return (StatusCode::NOT_FOUND, "no hub login configured\n").into_response();
    };
    match oauth.finish(&callback.code, &callback.state).await {
        Ok(name) => {
            let id = random_id();
            oauth
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone(), (name, Instant::now() + SESSION_LIFETIME));
            let cookie = format!(
                "{SESSION_COOKIE}={id}; Path={}; HttpOnly; SameSite=Lax; Max-Age={}",
                shared.prefix,
                SESSION_LIFETIME.as_secs()
            );
            let mut response = redirect(&format!("{}details", shared.prefix));
            if let Ok(value) = cookie.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => {
            tracing::info!("hub login refused: {e:#}");
            (StatusCode::FORBIDDEN, format!("not allowed: {e:#}\n")).into_response()
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let prefix = shared.prefix.clone();
    let mut app = Router::new()
        .route(&prefix, get(page))
        .route(&format!("{prefix}metrics"), get(metrics))
        .route(&format!("{prefix}details"), get(details))
        .route(&format!("{prefix}oauth_callback"), get(oauth_callback));
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
    let prefix = prefix_of(&args);
    // A misconfiguration is a result like any other: UNKNOWN, served and written.
    let (probes, records) = match probes(&args) {
        Ok(probes) => {
            let records = probes.iter().map(|p| ProbeRecord::new(p.name())).collect();
            (probes, records)
        }
        Err(e) => {
            tracing::error!("misconfigured: {e:#}");
            let mut record = ProbeRecord::new("configuration");
            record.record(Outcome::new(
                Status::Unknown,
                format!("misconfigured: {e:#}"),
            ));
            (Vec::new(), vec![record])
        }
    };
    let oauth = if args.service_type == ServiceType::Jupyterhub && !args.token.is_empty() {
        OAuth::new(&args, &prefix)
            .inspect_err(|e| tracing::warn!("no hub login for the details: {e:#}"))
            .ok()
    } else {
        None
    };
    let status_file = args.status_file.clone();
    let shared = Arc::new(Shared {
        records: Mutex::new(records),
        since: SystemTime::now(),
        previous: status_file.as_deref().and_then(read_status),
        title: format!("Status of {}", args.url),
        prefix: prefix.clone(),
        oauth,
    });
    if probes.is_empty()
        && let Some(path) = &status_file
        && let Err(e) = write_status(path, &shared)
    {
        tracing::warn!("cannot write {}: {e:#}", path.display());
    }

    if args.once {
        round(&probes, &shared, status_file.as_deref()).await;
        println!("{}", shared.json(Audience::Public));
        let code = overall_or(&shared.snapshot(), shared.since, None).code;
        std::process::exit(i32::from(code.exit_code()));
    }

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!("serving on http://{}{prefix}", listener.local_addr()?);
    let app = router(shared.clone());
    let interval = seconds(args.interval, "--interval")?;
    let scheduler = tokio::spawn(async move {
        if probes.is_empty() {
            return;
        }
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
