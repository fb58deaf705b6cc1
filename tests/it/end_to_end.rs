//! The whole service, from a Check-in login to an APEL record, on real peers: the npm
//! oidc-provider (Check-in shaped, rotating refresh tokens), kubesim running each notebook pod
//! as the real `jupyterhub-singleuser` on its own loopback address, the `gateway` binary, a
//! real Prometheus scraping kubesim's kube-state-metrics and cAdvisor series, egi-monitoring's
//! client and probes, and egi-accounting's job. The crates must agree with each other: the VO
//! from Check-in's entitlements is the pod's annotation and the record's FQAN; the tokens go
//! from the token manager to the Secret to the file the server reads.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use egi_accounting::apel::{self, Limits};
use egi_accounting::config::Config;
use egi_accounting::job;
use egi_accounting::metrics::{Filter, LookBack, Timestamp, Window};
use egi_accounting::prometheus::{PrometheusConfig, PrometheusSource};
use egi_accounting::spool::WriterSink;
use egi_examples::gateway::config::loopback_toml;
use egi_monitoring::hub::HubClient;
use egi_monitoring::kernel::{self, Channels};
use egi_monitoring::notebook::Notebook;
use egi_monitoring::{ExecuteProbe, NotebookProbe, Probe, SpawnSettings, Status};
use egi_test_harness::Prometheus;
use egi_test_harness::jupyterhub::Tools;
use egi_test_harness::kubesim::{KubeSim, ProcessImage, SimOptions};
use egi_test_harness::oidc::{self, OidcProvider};
use egi_test_harness::prometheus::ScrapeTarget;
use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::helpers::example_bin;

const SERVICE_TOKEN: &str = "e2e-status-service-token-0123456789";
const VO: &str = "vo.notebooks.egi.eu";
const IMAGE: &str = "quay.io/jupyter/minimal-notebook:2025-01-01";
const BROKEN_IMAGE: &str = "example.org/broken-notebook:1";

/// The secret mount of the token Secret, as kubesim names its directory in the environment.
const TOKEN_DIR_VAR: &str = "KUBESIM_MOUNT_VAR_RUN_SECRETS_EGI_EU";

fn now_s() -> i64 {
    i64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
    )
    .unwrap_or(i64::MAX)
}

/// A browser: cookie jar, redirects followed by hand.
struct Browser {
    http: reqwest::Client,
    origin: String,
}

impl Browser {
    fn new(origin: &str) -> Self {
        Browser {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            origin: origin.trim_end_matches('/').to_owned(),
        }
    }

    fn absolute(&self, current: &str, location: &str) -> Result<String> {
        Ok(url::Url::parse(current)?.join(location)?.to_string())
    }

    /// GETs `url` and follows redirects; `login` is added as `login_hint` at the provider.
    async fn walk(&self, url: &str, login: &str) -> Result<reqwest::Response> {
        let mut target = url.to_owned();
        for _ in 0..15 {
            let r = self.http.get(&target).send().await?;
            if !r.status().is_redirection() {
                return Ok(r);
            }
            let location = r
                .headers()
                .get(LOCATION)
                .context("redirect without Location")?
                .to_str()?
                .to_owned();
            let mut next = self.absolute(&target, &location)?;
            if !next.starts_with(&self.origin)
                && next.contains("client_id=")
                && !next.contains("login_hint")
            {
                next.push_str(&format!("&login_hint={login}"));
            }
            target = next;
        }
        bail!("too many redirects from {url}")
    }
}

/// Starts alice's server `server` with `profile` from the home page's form and reads its
/// progress stream to the end.
async fn start(
    browser: &Browser,
    url: &str,
    profile: &str,
    server: &str,
) -> Result<Vec<serde_json::Value>> {
    let r = browser
        .http
        .post(format!("{url}hub/spawn"))
        .form(&[("profile", profile), ("server", server)])
        .send()
        .await?;
    if !r.status().is_redirection() {
        bail!("the start form answered {}", r.status());
    }
    let stream = if server.is_empty() {
        format!("{url}hub/api/users/alice/server/progress")
    } else {
        format!("{url}hub/api/users/alice/servers/{server}/progress")
    };
    progress(browser, &stream).await
}

/// Reads an SSE progress stream to its end.
async fn progress(browser: &Browser, url: &str) -> Result<Vec<serde_json::Value>> {
    let r = browser.http.get(url).send().await?;
    let text = tokio::time::timeout(Duration::from_secs(120), r.text()).await??;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect())
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}

fn gateway_config(listen: &str, issuer: &str, state: &Path) -> String {
    let url = format!("http://{listen}/");
    loopback_toml(listen, &url, issuer, oidc::CLIENT_ID, VO, state)
        + &format!(
            r#"
[spawner]
namespace = "default"
image = "{IMAGE}"
cpu_guarantee = 0.5
[spawner.storage]
capacity = "1Gi"
[spawner.storage.policy]
type = "per-user"
[[spawner.profile_list]]
display_name = "Python"
slug = "python"
default = true
[[spawner.profile_list]]
display_name = "Notebooks VO lab"
slug = "vo-lab"
vo_claims = ["{VO}"]
[spawner.profile_list.kubespawner_override]
cpu_guarantee = 1.0
[[spawner.profile_list]]
display_name = "Broken"
slug = "broken"
[spawner.profile_list.kubespawner_override]
image = "{BROKEN_IMAGE}"
"#
        )
}

/// Runs `code` in a new kernel of the server at `path` through the gateway with `hub`'s token.
async fn run_code(hub: &HubClient, path: &str, user: &str, code: &str) -> Result<String> {
    let id = kernel::create(hub, path, "python3").await?;
    let mut channels = Channels::connect(hub, path, &id, user).await?;
    let execution = channels.execute(code).await?;
    channels.close().await;
    kernel::delete(hub, path, &id).await?;
    if let Some(error) = execution.error {
        bail!("the kernel raised {error:?}");
    }
    Ok(execution.stdout())
}

#[tokio::test(flavor = "multi_thread")]
async fn from_a_checkin_login_to_an_apel_record() -> Result<()> {
    let tools = Tools::find()?;
    let gateway_bin: PathBuf = example_bin("gateway");

    // Peers.
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let url = format!("http://{listen}/");
    let callback = format!("{url}hub/oauth_callback");
    let provider = tokio::task::spawn_blocking(move || {
        OidcProvider::start_with_redirects(
            oidc::Options {
                rotate: true,
                access_ttl: Duration::from_secs(10),
            },
            &[callback],
        )
    })
    .await??;
    let sim = KubeSim::start(SimOptions {
        process_images: vec![
            tools.singleuser_pods("minimal-notebook"),
            ProcessImage::new(
                "broken-notebook",
                ["sh", "-c", "echo 'cannot start: broken image' >&2; exit 3"],
            ),
        ],
        ..SimOptions::default()
    })
    .await?;
    let prometheus = tokio::task::spawn_blocking({
        let addr = sim.addr();
        move || Prometheus::scraping(&[ScrapeTarget::new("kubesim", addr, Duration::from_secs(1))])
    })
    .await??;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        gateway_config(&listen, &provider.issuer(), &dir.path().join("state.json")),
    )?;
    let log = dir.path().join("gateway.log");
    let mut gateway = tokio::process::Command::new(&gateway_bin)
        .arg("--config")
        .arg(&config)
        .env("KUBECONFIG", &kubeconfig)
        .env("GATEWAY_CLIENT_SECRET", oidc::CLIENT_SECRET)
        .env("GATEWAY_SERVICE_STATUS_TOKEN", SERVICE_TOKEN)
        .env("GATEWAY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true)
        .spawn()?;
    let gateway_pid = gateway.id().context("gateway pid")?;
    let plain = reqwest::Client::new();
    eventually(Duration::from_secs(60), "the gateway", || async {
        plain.get(format!("{url}hub/health")).send().await.is_ok()
    })
    .await?;
    let hub = HubClient::builder(format!("{url}hub/api"))
        .token(SERVICE_TOKEN)
        .request_timeout(Duration::from_secs(60))
        .build()?;

    // A user without an allowed VO is refused.
    let outsider = Browser::new(&url);
    let refused = outsider
        .walk(&format!("{url}hub/login"), "outsider")
        .await?;
    let where_ = refused.url().to_string();
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "{where_}: {}",
        refused.text().await?
    );

    // Alice logs in (code + PKCE through the gateway) and starts a server with the VO profile.
    let t_login = Instant::now();
    let alice = Browser::new(&url);
    let home = alice.walk(&format!("{url}hub/login"), "alice").await?;
    assert_eq!(home.status(), StatusCode::OK);
    let home = home.text().await?;
    assert!(home.contains("Notebooks VO lab"), "{home}");
    let logged_in = t_login.elapsed();
    let requests_before = sim.counters();
    let t_spawn = Instant::now();
    let spawn_epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64() * 1000.0;
    let events = start(&alice, &url, "vo-lab", "").await?;
    let last = events.last().context("no progress")?;
    assert_eq!(
        last["ready"],
        true,
        "{events:?}\n{}",
        std::fs::read_to_string(&log)?
    );
    assert!(events.len() >= 3, "{events:?}");
    let ready = t_spawn.elapsed();
    // jupyterhub-singleuser's own start: from the spawn request to the pod Running (kubesim
    // says Running once the server's port answers); the rest of `ready` is the gateway's.
    let server_start_ms = sim
        .timeline()
        .values()
        .filter_map(|t| t.running_ms)
        .fold(f64::INFINITY, f64::min)
        - spawn_epoch_ms;
    let requests_after = sim.counters();

    // The pod: the VO from Check-in for accounting, the profile's CPU request.
    let pod = sim
        .objects("pods", "default")
        .into_iter()
        .find(|p| p["metadata"]["name"] == "jupyter-alice")
        .context("alice's pod")?;
    assert_eq!(pod["metadata"]["annotations"]["egi.eu/primary_group"], VO);

    // The server runs code, through the gateway, for the monitor's service token.
    let t_cell = Instant::now();
    let out = run_code(&hub, "/user/alice/", "alice", "print(6 * 7)").await?;
    assert_eq!(out.trim(), "42");
    let first_cell = t_cell.elapsed();
    // A file in the home directory (the claim).
    run_code(
        &hub,
        "/user/alice/",
        "alice",
        "open('kept.txt', 'w').write('still here')",
    )
    .await?;

    // Alice's own browser reaches her server: jupyterhub-singleuser sends it through the
    // gateway's OAuth provider and back.
    let file = alice
        .walk(&format!("{url}user/alice/files/kept.txt"), "alice")
        .await?;
    assert_eq!(file.status(), StatusCode::OK);
    assert_eq!(file.text().await?, "still here");
    // Bob does not.
    let bob = Browser::new(&url);
    assert_eq!(
        bob.walk(&format!("{url}hub/login"), "bob").await?.status(),
        StatusCode::OK
    );
    let r = bob
        .http
        .get(format!("{url}user/alice/files/kept.txt"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // egi-monitoring's probes, unchanged, run their own servers through the gateway.
    let execute = ExecuteProbe::new(hub.clone(), SpawnSettings::new("monitor"))
        .run()
        .await;
    assert_eq!(
        execute.status,
        Status::Ok,
        "{}: {:?}",
        execute.message,
        execute.details
    );
    let notebook = Notebook::parse(
        "e2e.ipynb",
        r#"{"cells":[{"cell_type":"code","source":"import sys\nprint(sum(range(10)))","outputs":[{"output_type":"stream","name":"stdout","text":"45\n"}],"metadata":{}}],"metadata":{},"nbformat":4,"nbformat_minor":5}"#,
        true,
    )?;
    let nb = NotebookProbe::new(hub.clone(), SpawnSettings::new("monitor"), notebook)
        .run()
        .await;
    assert_eq!(nb.status, Status::Ok, "{}: {:?}", nb.message, nb.details);

    // Tokens: the provider rotates the refresh token and expires access tokens after 10 s; the
    // server's mounted token file gets each new access token.
    let read_token =
        format!("import os; print(open(os.environ['{TOKEN_DIR_VAR}'] + '/access_token').read())");
    let first = run_code(&hub, "/user/alice/", "alice", &read_token).await?;
    assert!(first.trim().len() > 20, "{first}");
    let mut seen = vec![first.trim().to_owned()];
    let t_refresh = Instant::now();
    while seen.len() < 3 {
        if t_refresh.elapsed() > Duration::from_secs(40) {
            bail!(
                "only {} access tokens reached the server in 40 s",
                seen.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = run_code(&hub, "/user/alice/", "alice", &read_token).await?;
        if seen.last().is_some_and(|t| t != now.trim()) {
            seen.push(now.trim().to_owned());
        }
    }
    assert!(provider.token_requests(oidc::REFRESH_GRANT)? >= 2);

    // CPU: burn some in the kernel, then have the server's process tree say what it used
    // (the jupyter server, its reaped kernels, this kernel), read from /proc by Python.
    let burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 6: pass\nprint('ok')";
    run_code(&hub, "/user/alice/", "alice", burn).await?;
    let measure = "import os\n\
        tick = os.sysconf('SC_CLK_TCK')\n\
        server = open(f'/proc/{os.getppid()}/stat').read().rsplit(')', 1)[1].split()\n\
        me = open('/proc/self/stat').read().rsplit(')', 1)[1].split()\n\
        print((sum(int(x) for x in server[11:15]) + sum(int(x) for x in me[11:13])) / tick)";
    let cpu_used: f64 = run_code(&hub, "/user/alice/", "alice", measure)
        .await?
        .trim()
        .parse()?;
    assert!(cpu_used > 6.0, "{cpu_used}");

    // Stop, start again: the file is still there (the claim); stop.
    hub.stop_server_and_wait("alice", "", Duration::from_secs(60))
        .await?;
    let events = start(&alice, &url, "vo-lab", "").await?;
    assert_eq!(
        events.last().context("no progress")?["ready"],
        true,
        "{events:?}"
    );
    let out = run_code(
        &hub,
        "/user/alice/",
        "alice",
        "print(open('kept.txt').read())",
    )
    .await?;
    assert_eq!(out.trim(), "still here");
    hub.stop_server_and_wait("alice", "", Duration::from_secs(60))
        .await?;

    // A broken image fails the start within 5 s, with the reason.
    let t_broken = Instant::now();
    let events = start(&alice, &url, "broken", "broken").await?;
    let last = events.last().context("no progress")?;
    assert_eq!(last["failed"], true, "{events:?}");
    let message = last["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("container crashed") && message.contains("CrashLoopBackOff"),
        "{message}"
    );
    let broken = t_broken.elapsed();
    assert!(broken < Duration::from_secs(5), "{broken:?}");

    let rss = rss_kib(gateway_pid, "VmRSS:");
    let hwm = rss_kib(gateway_pid, "VmHWM:");

    // Accounting over what Prometheus scraped: one record per session of alice, with her VO.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let vo_section =
        format!("[VO]\n{VO} = urn:mace:egi.eu:group:{VO}:role=member#aai.egi.eu, {VO}\n");
    let records_config = Config::from_ini_str(&vo_section, |_| None)?.records;
    let source = PrometheusSource::new(PrometheusConfig::new(prometheus.url().parse()?))?;
    let window = Window {
        // Evaluated 2 minutes ahead: the sessions ended more than 90 s before, so they are
        // `completed` by the Python tool's rule, without waiting.
        at: Timestamp::from_millis((now_s() + 120) * 1000),
        range: LookBack::parse("1h")?,
        filter: Filter::default(),
    };
    let mut sink = WriterSink::new(Vec::new(), "buffer");
    let report = job::run(
        &source,
        &window,
        &records_config,
        Limits::default(),
        &mut sink,
    )
    .await?;
    let text = String::from_utf8(sink.into_inner())?;
    let records = apel::parse_message(&text)
        .map_err(|e| anyhow::anyhow!("the loader rejects the message: {e}\n{text}"))?;
    let field = |r: &apel::ParsedRecord, k: &str| {
        r.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let alices: Vec<_> = records
        .iter()
        .filter(|r| field(r, "MachineName") == "jupyter-alice")
        .collect();
    assert_eq!(alices.len(), 2, "{report:?}\n{text}");
    for r in &alices {
        assert_eq!(field(r, "FQAN"), VO, "{text}");
        assert_eq!(field(r, "GlobalUserName"), "alice", "{text}");
        assert_eq!(field(r, "ImageId"), IMAGE, "{text}");
        assert_eq!(field(r, "Status"), "completed", "{text}");
    }
    let first_session: f64 = alices
        .iter()
        .map(|r| field(r, "CpuDuration").parse::<f64>().unwrap_or(0.0))
        .fold(0.0, f64::max);
    assert!(
        (first_session - cpu_used).abs() <= 0.1 * cpu_used,
        "record CPU {first_session} s vs used {cpu_used} s\n{text}"
    );

    // SIGTERM by PID; the gateway exits cleanly.
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(gateway_pid.to_string())
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(20), gateway.wait()).await??;
    assert_eq!(status.code(), Some(0));

    eprintln!(
        "end to end: login {logged_in:?}, spawn to ready {ready:?} (of which the server's own start \
         {server_start_ms:.0} ms), first cell {first_cell:?}, \
         API requests for the spawn {:?}, broken image failed after {broken:?}, gateway RSS {rss} KiB \
         (peak {hwm} KiB), alice's first session {cpu_used:.2} CPU s (record {first_session} s)",
        requests_after
            .verbs
            .values()
            .sum::<u64>()
            .saturating_sub(requests_before.verbs.values().sum::<u64>()),
    );
    drop(provider);
    sim.shutdown().await;
    Ok(())
}
