//! The gateway scale benchmark (issue 9): one release `gateway` process holding N logged-in
//! users with fresh Check-in tokens and N running servers, measured from outside.
//!
//! ```text
//! gateway-scale --gateway PATH --kubesim PATH --dir DIR [--users 1000] [--access-ttl 60]
//!               [--concurrency 16] [--wait-lifetimes 1.5] [--ready-delay-ms 200]
//! ```
//!
//! It starts the test OpenID provider (npm oidc-provider, refresh-token rotation on, the
//! given access-token lifetime, the gateway's callback registered), the Kubernetes API
//! simulator binary and the gateway binary, each in its own process, all on loopback. Users
//! `user00000`... log in through the gateway with a scripted browser (one cookie jar per user
//! and per origin, redirects followed by hand, `login_hint` appended at the provider), then
//! each starts its default server through its session (`POST hub/spawn`); readiness is read
//! from the gateway's own gauges (`hub/metrics`, admin service token) and confirmed once with
//! `GET hub/api/users`. It then waits until `--wait-lifetimes` access-token lifetimes have
//! passed since the last login, so every user's token was refreshed in the background by
//! egi-checkin's `TokenRegistry` and pushed into the server's Secret.
//!
//! Figures: the gateway's `VmRSS`/`VmHWM` from `/proc/PID/status` after the logins, with all
//! servers running and after the refreshes; refresh grants at the provider
//! (`OidcProvider::token_requests`), sampled every second for their spread; each user's
//! background refreshes from the gateway's debug log (`egi_checkin::fresh`), checked against
//! the bound "one refresh per token": no user refreshed more often than its tokens enter their
//! refresh margin; Secrets whose token changed. Prints a markdown table and exits non-zero if
//! a check fails. Every process it started is stopped by PID (SIGTERM).
//! `benches/scripts/gateway-scale.sh` builds everything and runs it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use egi_examples::gateway::config::loopback_toml;
use egi_test_harness::oidc::{self, OidcProvider};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use tokio::io::AsyncBufReadExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The admin service's token (service `status`, `admin = true`).
const ADMIN_TOKEN: &str = "status-service-token-0123456789";
/// The cookie key handed to the gateway (32 bytes of 7, URL-safe base64).
const COOKIE_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc";
/// egi-checkin's default refresh margin: `max(30 s, 0.1 × lifetime)`, at most half of it.
fn refresh_margin(lifetime: Duration) -> Duration {
    Duration::from_secs(30)
        .max(lifetime.mul_f64(0.1))
        .min(lifetime / 2)
}

type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn fail<T>(message: impl Into<String>) -> Fallible<T> {
    Err(message.into().into())
}

struct Args {
    gateway: PathBuf,
    kubesim: PathBuf,
    dir: PathBuf,
    users: usize,
    access_ttl: Duration,
    concurrency: usize,
    wait_lifetimes: f64,
    ready_delay_ms: u64,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        gateway: PathBuf::new(),
        kubesim: PathBuf::new(),
        dir: PathBuf::new(),
        users: 1000,
        access_ttl: Duration::from_secs(60),
        concurrency: 16,
        wait_lifetimes: 1.5,
        ready_delay_ms: 200,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        let number = |what: &str| format!("{what}: not a number: {value}");
        match arg.as_str() {
            "--gateway" => out.gateway = value.into(),
            "--kubesim" => out.kubesim = value.into(),
            "--dir" => out.dir = value.into(),
            "--users" => out.users = value.parse().map_err(|_| number("--users"))?,
            "--access-ttl" => {
                out.access_ttl =
                    Duration::from_secs(value.parse().map_err(|_| number("--access-ttl"))?)
            }
            "--concurrency" => {
                out.concurrency = value.parse().map_err(|_| number("--concurrency"))?
            }
            "--wait-lifetimes" => {
                out.wait_lifetimes = value.parse().map_err(|_| number("--wait-lifetimes"))?
            }
            "--ready-delay-ms" => {
                out.ready_delay_ms = value.parse().map_err(|_| number("--ready-delay-ms"))?
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if out.gateway.as_os_str().is_empty()
        || out.kubesim.as_os_str().is_empty()
        || out.dir.as_os_str().is_empty()
    {
        return Err(
            "usage: gateway-scale --gateway PATH --kubesim PATH --dir DIR [--users N] \
                    [--access-ttl S] [--concurrency N] [--wait-lifetimes X] [--ready-delay-ms MS]"
                .to_owned(),
        );
    }
    out.concurrency = out.concurrency.max(1);
    Ok(out)
}

/// Memory figures of a process, in kB, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default)]
struct Memory {
    rss: u64,
    hwm: u64,
    anon: u64,
    threads: u64,
    fds: usize,
}

fn memory(pid: u32) -> Memory {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("VmRSS:"),
        hwm: field("VmHWM:"),
        anon: field("RssAnon:"),
        threads: field("Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
    }
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

/// Sends SIGTERM to `pid` (the shell's `kill`: no unsafe) and waits up to 10 s for the
/// child, then kills it.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Cookies of one origin: names and values, as a browser would send them back.
#[derive(Debug, Default, Clone)]
struct Jar(Vec<(String, String)>);

impl Jar {
    fn absorb(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(SET_COOKIE) {
            let Ok(value) = value.to_str() else { continue };
            let mut parts = value.split(';');
            let Some((name, val)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, val) = (name.trim().to_owned(), val.trim().to_owned());
            let expired = parts.any(|a| {
                let a = a.trim().to_ascii_lowercase();
                a == "max-age=0" || a.starts_with("expires=thu, 01 jan 1970")
            });
            self.0.retain(|(k, _)| *k != name);
            if !expired && !val.is_empty() {
                self.0.push((name, val));
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn location(r: &reqwest::Response) -> Fallible<String> {
    match r.headers().get(LOCATION).and_then(|v| v.to_str().ok()) {
        Some(l) => Ok(l.to_owned()),
        None => fail(format!("HTTP {} without Location", r.status())),
    }
}

/// `scheme://host:port` of an absolute URL.
fn origin(url: &str) -> &str {
    let after = url.find("://").map_or(0, |i| i + 3);
    let end = url[after..].find('/').map_or(url.len(), |i| after + i);
    &url[..end]
}

/// A scripted browser of one user: the shared client, a cookie jar for the gateway and one
/// for the provider.
struct Browser {
    http: reqwest::Client,
    gateway: String,
    at_gateway: Jar,
    at_provider: Jar,
}

impl Browser {
    async fn get(&self, url: &str, jar: &Jar) -> Fallible<reqwest::Response> {
        Ok(self
            .http
            .get(url)
            .header(COOKIE, jar.header())
            .send()
            .await?)
    }

    /// Logs in as `login`: `/hub/login`, the provider's pages, the callback, the home page.
    async fn login(&mut self, login: &str) -> Fallible<()> {
        let r = self
            .get(&format!("{}hub/login", self.gateway), &self.at_gateway)
            .await?;
        if !r.status().is_redirection() {
            return fail(format!("/hub/login answered {}", r.status()));
        }
        self.at_gateway.absorb(&r);
        let mut target = format!("{}&login_hint={login}", location(&r)?);
        let mut callback = None;
        for _ in 0..10 {
            let r = self.get(&target, &self.at_provider).await?;
            self.at_provider.absorb(&r);
            if !r.status().is_redirection() {
                return fail(format!(
                    "the provider stopped at {}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                ));
            }
            let next = location(&r)?;
            let next = if next.starts_with('/') {
                format!("{}{next}", origin(&target))
            } else {
                next
            };
            if next.starts_with(&self.gateway) {
                callback = Some(next);
                break;
            }
            target = next;
        }
        let Some(callback) = callback else {
            return fail("too many redirects at the provider");
        };
        let r = self.get(&callback, &self.at_gateway).await?;
        self.at_gateway.absorb(&r);
        if !r.status().is_redirection() {
            return fail(format!(
                "the callback answered {}: {}",
                r.status(),
                r.text().await.unwrap_or_default()
            ));
        }
        let home = format!("{}{}", origin(&self.gateway), location(&r)?);
        let r = self.get(&home, &self.at_gateway).await?;
        if r.status() != StatusCode::OK {
            return fail(format!("the home page answered {}", r.status()));
        }
        // Read the page: the connection goes back to the pool.
        r.bytes().await?;
        // The provider's cookies are not needed any more (a browser would keep them).
        self.at_provider = Jar::default();
        Ok(())
    }

    /// `POST hub/spawn` for the default server.
    async fn spawn(&self) -> Fallible<()> {
        let r = self
            .http
            .post(format!("{}hub/spawn", self.gateway))
            .header(COOKIE, self.at_gateway.header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body("profile=&server=")
            .send()
            .await?;
        let status = r.status();
        let next = location(&r).unwrap_or_default();
        if !status.is_redirection() || !next.contains("spawn-pending") {
            return fail(format!("POST hub/spawn answered {status} (to {next:?})"));
        }
        Ok(())
    }
}

/// The gateway's metrics page, as `name{labels}` → value.
async fn metrics(http: &reqwest::Client, gateway: &str) -> Fallible<BTreeMap<String, f64>> {
    let text = http
        .get(format!("{gateway}hub/metrics"))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
        .collect())
}

fn metric(m: &BTreeMap<String, f64>, name: &str) -> u64 {
    m.get(name).copied().unwrap_or(0.0) as u64
}

/// The `access_token` of every token Secret in the simulator, by Secret name.
async fn secrets(http: &reqwest::Client, sim: &str) -> Fallible<BTreeMap<String, String>> {
    let list: serde_json::Value = http
        .get(format!("{sim}/api/v1/namespaces/default/secrets"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let name = s["metadata"]["name"].as_str()?;
            let token = s["data"]["access_token"].as_str()?;
            Some((name.to_owned(), token.to_owned()))
        })
        .collect())
}

/// One sample of the refresh counters.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Duration,
    refreshes: u64,
    pushes: u64,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Unix seconds of an RFC 3339 UTC timestamp `YYYY-MM-DDTHH:MM:SS.fffZ`.
fn unix_seconds(ts: &str) -> Option<f64> {
    let (date, time) = ts.trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let days = days_from_civil(d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let h: f64 = t.next()?.parse().ok()?;
    let m: f64 = t.next()?.parse().ok()?;
    let s: f64 = t.next()?.parse().ok()?;
    Some(days as f64 * 86_400.0 + h * 3600.0 + m * 60.0 + s)
}

/// Removes ANSI colour sequences.
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Each user's background refreshes (unix seconds) from the gateway's log, and the number of
/// failed background refreshes and grants found gone.
fn refreshes_in_log(log: &Path) -> (BTreeMap<String, Vec<f64>>, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut failed = 0;
    for line in text.lines().map(plain) {
        if line.contains("background refresh failed") || line.contains("the grant is gone") {
            failed += 1;
            continue;
        }
        if !line.contains("refreshed in the background") {
            continue;
        }
        let Some(at) = line.split_whitespace().next().and_then(unix_seconds) else {
            continue;
        };
        let Some(key) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("key="))
            .map(|k| k.trim_matches('"').to_owned())
        else {
            continue;
        };
        out.entry(key).or_default().push(at);
    }
    (out, failed)
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

fn free_port() -> Fallible<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs `phase` on every user with at most `concurrency` at once; returns the failures.
async fn for_each_user<F, Fut>(
    browsers: Vec<Browser>,
    concurrency: usize,
    phase: F,
) -> (Vec<Browser>, Vec<String>)
where
    F: Fn(usize, Browser) -> Fut,
    Fut: std::future::Future<Output = (usize, Browser, Fallible<()>)> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    let n = browsers.len();
    for (i, b) in browsers.into_iter().enumerate() {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let task = phase(i, b);
        set.spawn(async move {
            let out = task.await;
            drop(permit);
            out
        });
    }
    let mut slots: Vec<Option<Browser>> = (0..n).map(|_| None).collect();
    let mut failures = Vec::new();
    while let Some(done) = set.join_next().await {
        let (i, b, result) = done.expect("user task");
        if let Err(e) = result {
            failures.push(format!("user{i:05}: {e}"));
        }
        slots[i] = Some(b);
    }
    (slots.into_iter().flatten().collect(), failures)
}

struct Report {
    rows: Vec<(String, String)>,
    failed: Vec<String>,
}

impl Report {
    fn row(&mut self, what: &str, value: impl Into<String>) {
        self.rows.push((what.to_owned(), value.into()));
    }
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.failed.push(what.into());
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("gateway-scale: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Fallible<bool> {
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}/");
    let callback = format!("{url}hub/oauth_callback");
    let ttl = args.access_ttl;
    eprintln!("starting the OpenID provider (access tokens {ttl:?}, rotation on)");
    let provider = Arc::new(
        tokio::task::spawn_blocking(move || {
            OidcProvider::start_with_redirects(
                oidc::Options {
                    rotate: true,
                    access_ttl: ttl,
                },
                &[callback],
            )
        })
        .await??,
    );

    let kubeconfig = args.dir.join("kubeconfig");
    let mut sim = tokio::process::Command::new(&args.kubesim)
        .args(["--port", "0", "--ready-delay-ms"])
        .arg(args.ready_delay_ms.to_string())
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(args.dir.join("kubesim.err"))?)
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(sim.stdout.take().ok_or("kubesim's stdout")?).lines();
    let sim_url = match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        Ok(Ok(Some(line))) => line
            .strip_prefix("listening on ")
            .ok_or(format!("kubesim said {line:?}"))?
            .to_owned(),
        _ => return fail("kubesim did not start"),
    };
    // Keep reading (and dropping) its stdout so it never blocks.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let outcome = with_stack(
        &args,
        &provider,
        &mut sim,
        &sim_url,
        &url,
        port,
        &kubeconfig,
    )
    .await;
    terminate(&mut sim).await;
    let provider = Arc::try_unwrap(provider).ok();
    tokio::task::spawn_blocking(move || drop(provider)).await?;
    outcome
}

async fn with_stack(
    args: &Args,
    provider: &Arc<OidcProvider>,
    sim: &mut tokio::process::Child,
    sim_url: &str,
    url: &str,
    port: u16,
    kubeconfig: &Path,
) -> Fallible<bool> {
    let config = args.dir.join("gateway.toml");
    std::fs::write(
        &config,
        loopback_toml(
            &format!("127.0.0.1:{port}"),
            url,
            &provider.issuer(),
            oidc::CLIENT_ID,
            "vo.notebooks.egi.eu",
            &args.dir.join("state.json"),
        ),
    )?;
    let log = args.dir.join("gateway.log");
    let mut gateway = tokio::process::Command::new(&args.gateway)
        .arg("--config")
        .arg(&config)
        .env("KUBECONFIG", kubeconfig)
        .env("GATEWAY_CLIENT_SECRET", oidc::CLIENT_SECRET)
        .env("GATEWAY_SERVICE_STATUS_TOKEN", ADMIN_TOKEN)
        .env("GATEWAY_COOKIE_KEY", COOKIE_KEY)
        .env("GATEWAY_LOG", "info,egi_checkin::fresh=debug")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()?;
    let pid = gateway.id().ok_or("the gateway's pid")?;
    let outcome = measure(args, provider, sim, sim_url, url, pid, &log).await;
    terminate(&mut gateway).await;
    if outcome.is_err() {
        eprintln!("gateway log tail:");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        for l in &lines[lines.len().saturating_sub(20)..] {
            eprintln!("  {l}");
        }
    }
    outcome
}

async fn measure(
    args: &Args,
    provider: &Arc<OidcProvider>,
    sim: &tokio::process::Child,
    sim_url: &str,
    url: &str,
    pid: u32,
    log: &Path,
) -> Fallible<bool> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()?;
    let began = Instant::now();
    // Ready: the health route answers.
    loop {
        if let Ok(r) = http.get(format!("{url}hub/health")).send().await
            && r.status().is_success()
        {
            break;
        }
        if began.elapsed() > Duration::from_secs(60) {
            return fail("the gateway did not answer /hub/health within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let idle = memory(pid);
    let n = args.users;
    let mut report = Report {
        rows: Vec::new(),
        failed: Vec::new(),
    };

    // Refresh counters every second, from the first login to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (provider, http, url, stop) =
            (provider.clone(), http.clone(), url.to_owned(), stop.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let p = provider.clone();
                let refreshes = tokio::task::spawn_blocking(move || {
                    p.token_requests(oidc::REFRESH_GRANT).unwrap_or(0)
                })
                .await
                .unwrap_or(0);
                let pushes = metrics(&http, &url)
                    .await
                    .map(|m| metric(&m, "egi_gateway_token_pushes_total{outcome=\"ok\"}"))
                    .unwrap_or(0);
                samples.push(Sample {
                    at: t0.elapsed(),
                    refreshes,
                    pushes,
                });
            }
            samples
        })
    };

    // Logins.
    eprintln!("logging in {n} users, {} at a time", args.concurrency);
    let browsers: Vec<Browser> = (0..n)
        .map(|_| Browser {
            http: http.clone(),
            gateway: url.to_owned(),
            at_gateway: Jar::default(),
            at_provider: Jar::default(),
        })
        .collect();
    let logins_began = Instant::now();
    let login_times = Arc::new(std::sync::Mutex::new(vec![0.0f64; n]));
    let (browsers, login_failures) = {
        let login_times = login_times.clone();
        for_each_user(browsers, args.concurrency, move |i, mut b| {
            let login_times = login_times.clone();
            async move {
                let result = b.login(&format!("user{i:05}")).await;
                login_times.lock().expect("times")[i] = unix_now();
                (i, b, result)
            }
        })
        .await
    };
    let logins_wall = logins_began.elapsed();
    let last_login = Instant::now();
    let after_logins = memory(pid);
    let m = metrics(&http, url).await?;
    let logged_in = metric(&m, "egi_gateway_logins_total{outcome=\"ok\"}");
    for f in login_failures.iter().take(5) {
        eprintln!("login failed: {f}");
    }
    report.check(
        login_failures.is_empty() && logged_in == n as u64,
        format!(
            "{} logins failed; the gateway counted {logged_in} of {n}",
            login_failures.len()
        ),
    );

    // Servers.
    eprintln!("starting {n} servers");
    let spawns_began = Instant::now();
    let (_browsers, spawn_failures) =
        for_each_user(browsers, args.concurrency, |i, b| async move {
            let result = b.spawn().await;
            (i, b, result)
        })
        .await;
    let spawn_requests_wall = spawns_began.elapsed();
    for f in spawn_failures.iter().take(5) {
        eprintln!("spawn failed: {f}");
    }
    let mut running = 0;
    while spawns_began.elapsed() < Duration::from_secs(300) {
        let m = metrics(&http, url).await?;
        running = metric(&m, "egi_gateway_servers_running");
        let failed = metric(&m, "egi_gateway_spawns_total{outcome=\"failed\"}");
        if running as usize + failed as usize >= n - spawn_failures.len() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let spawns_wall = spawns_began.elapsed();
    let with_servers = memory(pid);
    let listed: serde_json::Value = http
        .get(format!("{url}hub/api/users"))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ready = listed
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["servers"][""]["ready"].as_bool() == Some(true))
        .count();
    report.check(
        ready == n && running as usize == n,
        format!("{ready} of {n} servers ready (gauge {running})"),
    );
    let first_secrets = secrets(&http, sim_url).await?;

    // Refreshes: wait until `wait_lifetimes` lifetimes after the last login.
    let until = last_login + args.access_ttl.mul_f64(args.wait_lifetimes);
    eprintln!(
        "waiting {:.0} s for the background refreshes",
        until
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
    );
    tokio::time::sleep_until(until.into()).await;
    let after_refreshes = memory(pid);
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await?;
    let p = provider.clone();
    let refreshes =
        tokio::task::spawn_blocking(move || p.token_requests(oidc::REFRESH_GRANT)).await??;
    let end_unix = unix_now();
    let m = metrics(&http, url).await?;
    let pushes = metric(&m, "egi_gateway_token_pushes_total{outcome=\"ok\"}");
    let push_errors = metric(&m, "egi_gateway_token_pushes_total{outcome=\"failed\"}");
    let login_needed = metric(&m, "egi_gateway_users_login_needed");
    let last_secrets = secrets(&http, sim_url).await?;
    let changed = last_secrets
        .iter()
        .filter(|(k, v)| first_secrets.get(*k).is_some_and(|f| f != *v))
        .count();
    let sim_memory = sim.id().map(memory).unwrap_or_default();

    // Per user, from the gateway's log: count against the bound, and the least gap.
    let (per_user, failed_in_log) = refreshes_in_log(log);
    let lifetime = args.access_ttl.as_secs_f64();
    let margin = refresh_margin(args.access_ttl).as_secs_f64();
    let times = login_times.lock().expect("times").clone();
    let mut over_bound = 0;
    let mut over_brief_bound = 0;
    let mut bound_total = 0u64;
    let mut least_gap = f64::INFINITY;
    let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, login) in times.iter().enumerate() {
        let elapsed = end_unix - login;
        // A token enters its margin `lifetime - margin` after it was issued; each refresh
        // issues a new one: at most this many refreshes, one per token.
        let bound = (elapsed / (lifetime - margin)).floor() as usize;
        let brief_bound = (elapsed / lifetime).floor() as usize + 1;
        bound_total += bound as u64;
        let mut ts = per_user
            .get(&format!("user{i:05}"))
            .cloned()
            .unwrap_or_default();
        ts.sort_by(f64::total_cmp);
        *counts.entry(ts.len()).or_default() += 1;
        if ts.len() > bound {
            over_bound += 1;
        }
        if ts.len() > brief_bound {
            over_brief_bound += 1;
        }
        let mut previous = *login;
        for t in ts {
            least_gap = least_gap.min(t - previous);
            previous = t;
        }
    }
    let logged: usize = per_user.values().map(Vec::len).sum();
    let users_refreshed = per_user.len();

    // Spread: refreshes per second at the provider.
    let per_second: Vec<u64> = samples
        .windows(2)
        .map(|w| w[1].refreshes.saturating_sub(w[0].refreshes))
        .collect();
    let busiest = per_second.iter().copied().max().unwrap_or(0);
    let active: Vec<u64> = per_second.iter().copied().filter(|&c| c > 0).collect();
    let first_refresh = samples.iter().find(|s| s.refreshes > 0).map(|s| s.at);
    let last_change = samples
        .windows(2)
        .filter(|w| w[1].refreshes > w[0].refreshes)
        .map(|w| w[1].at)
        .next_back();
    let busiest_pushes = samples
        .windows(2)
        .map(|w| w[1].pushes.saturating_sub(w[0].pushes))
        .max()
        .unwrap_or(0);

    report.check(
        users_refreshed == n,
        format!("{users_refreshed} of {n} users refreshed in the background"),
    );
    report.check(
        over_bound == 0,
        format!("{over_bound} users refreshed more often than once per token"),
    );
    report.check(
        refreshes <= bound_total,
        format!("{refreshes} refresh grants at the provider, bound {bound_total}"),
    );
    report.check(
        login_needed == 0 && push_errors == 0 && failed_in_log == 0,
        format!(
            "{login_needed} users must log in again, {push_errors} token pushes failed, \
             {failed_in_log} background refreshes failed"
        ),
    );
    report.check(
        changed == n,
        format!("{changed} of {n} Secrets got a new token"),
    );

    report.row(
        "users logged in / servers ready",
        format!("{logged_in} / {ready} of {n}"),
    );
    report.row(
        "wall time: logins / spawn requests / all servers ready",
        format!(
            "{:.1} s ({:.0} logins/s, {} at a time) / {:.1} s / {:.1} s",
            logins_wall.as_secs_f64(),
            n as f64 / logins_wall.as_secs_f64(),
            args.concurrency,
            spawn_requests_wall.as_secs_f64(),
            spawns_wall.as_secs_f64()
        ),
    );
    for (what, m) in [
        ("gateway idle (before the first login)", idle),
        ("after the logins", after_logins),
        ("with every server running", with_servers),
        ("after the refreshes", after_refreshes),
    ] {
        report.row(
            &format!("gateway RSS, {what}"),
            format!(
                "{} (anon {}, peak {}; {} threads, {} fds)",
                mb(m.rss),
                mb(m.anon),
                mb(m.hwm),
                m.threads,
                m.fds
            ),
        );
    }
    report.row(
        "refresh grants at the provider",
        format!(
            "{refreshes} for {n} users in {:.0} s after the last login ({:.1} access-token lifetimes of {lifetime:.0} s, margin {margin:.0} s)",
            args.access_ttl.mul_f64(args.wait_lifetimes).as_secs_f64(),
            args.wait_lifetimes
        ),
    );
    report.row(
        "background refreshes in the gateway's log, users with 0/1/2/3/4+",
        format!(
            "{logged} ({}); {users_refreshed} users",
            (0..5)
                .map(|k| {
                    let c = if k < 4 {
                        counts.get(&k).copied().unwrap_or(0)
                    } else {
                        counts.range(4..).map(|(_, c)| c).sum()
                    };
                    c.to_string()
                })
                .collect::<Vec<_>>()
                .join("/")
        ),
    );
    report.row(
        "bound: one refresh per token (a token enters its margin lifetime - margin after issue)",
        format!(
            "{over_bound} users over it; total bound {bound_total}; least gap login→refresh or refresh→refresh {least_gap:.1} s (≥ {:.0} s expected)",
            lifetime - margin
        ),
    );
    report.row(
        "brief's bound: one per lifetime elapsed, + 1",
        format!("{over_brief_bound} users over it"),
    );
    report.row(
        "spread at the provider (1 s samples)",
        format!(
            "max {busiest}/s, mean {:.1}/s over {} seconds with refreshes; first at {:.0} s, last at {:.0} s after the first login",
            active.iter().sum::<u64>() as f64 / active.len().max(1) as f64,
            active.len(),
            first_refresh.unwrap_or_default().as_secs_f64(),
            last_change.unwrap_or_default().as_secs_f64()
        ),
    );
    report.row(
        "tokens pushed into Secrets (gateway counter) / Secrets with a new token",
        format!(
            "{pushes} (max {busiest_pushes}/s, {push_errors} failed) / {changed} of {}",
            first_secrets.len()
        ),
    );
    report.row(
        "users whose grant is gone (login needed)",
        login_needed.to_string(),
    );
    report.row(
        "kubesim (own process, not counted) RSS / peak",
        format!("{} / {}", mb(sim_memory.rss), mb(sim_memory.hwm)),
    );

    println!("| figure | value |");
    println!("|---|---|");
    for (what, value) in &report.rows {
        println!("| {what} | {value} |");
    }
    if !report.failed.is_empty() {
        for f in &report.failed {
            println!("\nFAILED: {f}");
        }
        return Ok(false);
    }
    Ok(true)
}
