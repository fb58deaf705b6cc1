//! egi-monitoring's figures against a real JupyterHub 6 (the harness's), printed as Markdown
//! for `benches/README.md`:
//!
//! - the hub's ready event to the spawn probe noticing it (hub log "Server ... is ready",
//!   millisecond timestamps, vs. the end of the probe's `ready` phase);
//! - a leftover server: the probe's `leftover` phase vs. the hub's own stop time ("server
//!   took X seconds to stop");
//! - a failing spawn: the hub's error log line to the probe's report, and the message;
//! - 503 from the proxy with the hub down, a silent endpoint, 500 on the start request;
//! - the `probe` check's own peak RSS and CPU per run (`/usr/bin/time -v`), reading a status
//!   endpoint and running a spawn directly.
//!
//! `cargo bench -p egi-benches --bench monitoring` (runs: `EGI_BENCH_RUNS`, default 10).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use egi_monitoring::hub::HubClient;
use egi_monitoring::{HubReachable, Outcome, Probe, SpawnProbe, SpawnSettings, Timeouts};
use egi_test_harness::jupyterhub::{BROKEN_USER_PREFIX, JupyterHub, Options};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let runs: usize = std::env::var("EGI_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let hub = JupyterHub::start().map_err(|e| format!("{e:#}"))?;
    let client = client(&hub, hub.token(), Duration::from_secs(60))?;
    println!("JupyterHub: {}", rt.block_on(client.version())?);
    println!("runs: {runs}\n");

    ready_latency(&rt, &hub, &client, runs)?;
    leftover(&rt, &hub, &client, runs)?;
    failing_spawn(&rt, &hub, &client, runs)?;
    faults(&rt)?;
    probe_cost(&hub, runs)?;
    Ok(())
}

fn client(hub: &JupyterHub, token: &str, timeout: Duration) -> Result<HubClient> {
    Ok(HubClient::builder(hub.api_url())
        .token(token)
        .request_timeout(timeout)
        .build()?)
}

fn settings(user: &str) -> SpawnSettings {
    SpawnSettings::new(user).timeouts(Timeouts {
        request: Duration::from_secs(60),
        spawn: Duration::from_secs(180),
        stop: Duration::from_secs(90),
        kernel: Duration::from_secs(90),
        execute: Duration::from_secs(90),
    })
}

/// Wall-clock time at which the phase `name` ended (phases run back to back).
fn phase_end(outcome: &Outcome, name: &str) -> Option<SystemTime> {
    let mut t = outcome.started;
    for p in &outcome.phases {
        t += p.duration;
        if p.name == name {
            return Some(t);
        }
    }
    None
}

/// Timestamps (and messages) of the hub log lines containing `needle`, logged after `since`.
fn log_lines(hub: &JupyterHub, needle: &str, since: SystemTime) -> Vec<(SystemTime, String)> {
    let text = std::fs::read_to_string(hub.log_path()).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains(needle))
        .filter_map(|l| {
            // [I 2026-11-26 07:30:00.123 JupyterHub users:1105] Server monitor is ready
            let l = &l[l.find('[')?..];
            let mut parts = l.split_whitespace();
            let (_, date, time) = (parts.next()?, parts.next()?, parts.next()?);
            let naive = chrono::NaiveDateTime::parse_from_str(
                &format!("{date} {time}"),
                "%Y-%m-%d %H:%M:%S%.3f",
            )
            .ok()?;
            let local = naive.and_local_timezone(chrono::Local).single()?;
            let at = SystemTime::UNIX_EPOCH
                + Duration::from_millis(u64::try_from(local.timestamp_millis()).ok()?);
            (at >= since - Duration::from_millis(1)).then(|| (at, l.to_owned()))
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Signed difference a - b in milliseconds.
fn diff_ms(a: SystemTime, b: SystemTime) -> f64 {
    match a.duration_since(b) {
        Ok(d) => ms(d),
        Err(e) => -ms(e.duration()),
    }
}

fn stats(name: &str, unit: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    if values.is_empty() {
        println!("| {name} | no data | | |");
        return;
    }
    let median = values[values.len() / 2];
    println!(
        "| {name} | {:.1} {unit} | {median:.1} {unit} | {:.1} {unit} |",
        values[0],
        values[values.len() - 1]
    );
}

fn ready_latency(
    rt: &tokio::runtime::Runtime,
    hub: &JupyterHub,
    client: &HubClient,
    runs: usize,
) -> Result<()> {
    let probe = SpawnProbe::new(client.clone(), settings("monitor"));
    let (mut latency, mut spawn, mut total) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let outcome = rt.block_on(probe.run());
        assert_eq!(outcome.status, egi_monitoring::Status::Ok, "{outcome:#?}");
        let noticed = phase_end(&outcome, "ready").ok_or("no ready phase")?;
        let ready = log_lines(hub, "Server monitor is ready", outcome.started);
        let (at, _) = ready.first().ok_or("no 'is ready' log line")?;
        latency.push(diff_ms(noticed, *at));
        spawn
            .push(ms(outcome.phase("start").unwrap_or_default()
                + outcome.phase("ready").unwrap_or_default()));
        total.push(ms(outcome.duration));
    }
    println!("### Spawn probe\n\n| figure | min | median | max |\n|---|---|---|---|");
    stats(
        "hub's ready log line to the probe's ready notice",
        "ms",
        latency,
    );
    stats("spawn (start request to ready event)", "ms", spawn);
    stats("whole probe run (user, start, ready, stop)", "ms", total);
    println!();
    Ok(())
}

async fn leave_a_server_running(client: &HubClient, user: &str) -> Result<()> {
    client.start_server(user, "").await?;
    let mut events = client.progress(user, "").await?;
    while let Some(event) = events.next_event().await? {
        if event.ready {
            return Ok(());
        }
        if event.failed {
            return Err(format!("leftover spawn failed: {}", event.message).into());
        }
    }
    Err("progress stream ended".into())
}

fn leftover(
    rt: &tokio::runtime::Runtime,
    hub: &JupyterHub,
    client: &HubClient,
    runs: usize,
) -> Result<()> {
    let probe = SpawnProbe::new(client.clone(), settings("monitor"));
    let (mut phase, mut hub_stop, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        rt.block_on(leave_a_server_running(client, "monitor"))?;
        let outcome = rt.block_on(probe.run());
        assert_eq!(outcome.status, egi_monitoring::Status::Ok, "{outcome:#?}");
        let took = outcome.phase("leftover").ok_or("no leftover phase")?;
        let lines = log_lines(hub, "server took", outcome.started);
        let (_, line) = lines.first().ok_or("no 'server took' log line")?;
        let seconds: f64 = line
            .split("server took ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .ok_or("unparsable stop time")?;
        phase.push(ms(took));
        hub_stop.push(seconds * 1000.0);
        overhead.push(ms(took) - seconds * 1000.0);
    }
    println!("### Leftover server\n\n| figure | min | median | max |\n|---|---|---|---|");
    stats(
        "probe's `leftover` phase (DELETE, poll every 100 ms until gone)",
        "ms",
        phase,
    );
    stats(
        "hub's own stop time (log: server took X seconds to stop)",
        "ms",
        hub_stop,
    );
    stats("leftover phase minus the hub's stop time", "ms", overhead);
    println!();
    Ok(())
}

fn failing_spawn(
    rt: &tokio::runtime::Runtime,
    hub: &JupyterHub,
    client: &HubClient,
    runs: usize,
) -> Result<()> {
    let user = format!("{BROKEN_USER_PREFIX}monitor");
    let probe = SpawnProbe::new(client.clone(), settings(&user));
    let (mut report, mut total) = (Vec::new(), Vec::new());
    let mut message = String::new();
    for _ in 0..runs {
        let outcome = rt.block_on(probe.run());
        assert_eq!(
            outcome.status,
            egi_monitoring::Status::Critical,
            "{outcome:#?}"
        );
        let noticed = phase_end(&outcome, "ready").ok_or("no ready phase")?;
        let failed = log_lines(
            hub,
            &format!("Unhandled error starting {user}'s server"),
            outcome.started,
        );
        let (at, _) = failed.first().ok_or("no failure log line")?;
        report.push(diff_ms(noticed, *at));
        total.push(ms(outcome.duration));
        message = outcome.message;
    }
    println!(
        "### Failing spawn (spawner command does not exist)\n\n| figure | min | median | max |\n|---|---|---|---|"
    );
    stats("hub's error log line to the probe's CRITICAL", "ms", report);
    stats("whole probe run", "ms", total);
    println!("\nMessage: `{message}`\n");
    Ok(())
}

fn faults(rt: &tokio::runtime::Runtime) -> Result<()> {
    println!("### Faults\n\n| fault | status | time to report | message |\n|---|---|---|---|");
    let row = |fault: &str, outcome: &Outcome| {
        println!(
            "| {fault} | {} | {:.0} ms | `{}` |",
            outcome.status,
            ms(outcome.duration),
            outcome.message
        );
    };

    let mut down = JupyterHub::start().map_err(|e| format!("{e:#}"))?;
    let c = client(&down, down.token(), Duration::from_secs(10))?;
    down.crash();
    row(
        "hub process killed, proxy up (503)",
        &rt.block_on(SpawnProbe::new(c, settings("monitor")).run()),
    );
    drop(down);

    let slow = JupyterHub::start_with(&Options {
        slow_spawn_timeout: Duration::from_secs(10),
        ..Options::default()
    })
    .map_err(|e| format!("{e:#}"))?;
    let c = client(&slow, slow.token(), Duration::from_secs(60))?;
    let user = format!("{BROKEN_USER_PREFIX}slow");
    row(
        "spawn failing within slow_spawn_timeout (POST answers 500)",
        &rt.block_on(SpawnProbe::new(c, settings(&user)).run()),
    );
    drop(slow);

    let wrong = JupyterHub::start().map_err(|e| format!("{e:#}"))?;
    let c = client(&wrong, "wrong-token", Duration::from_secs(10))?;
    row(
        "wrong token",
        &rt.block_on(SpawnProbe::new(c.clone(), settings("monitor")).run()),
    );
    drop(wrong);
    row(
        "hub stopped (connection refused)",
        &rt.block_on(HubReachable::new(c).run()),
    );

    // A silent endpoint: accepts, reads, never answers.
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let url = format!("http://{}/hub/api", listener.local_addr()?);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    for seconds in [2, 5] {
        let timeout = Duration::from_secs(seconds);
        let c = HubClient::builder(&url)
            .token("t")
            .request_timeout(timeout)
            .build()?;
        let s = SpawnSettings::new("monitor").timeouts(Timeouts {
            request: timeout,
            ..Timeouts::default()
        });
        row(
            &format!("silent endpoint, {seconds} s timeout"),
            &rt.block_on(SpawnProbe::new(c, s).run()),
        );
    }
    println!();
    Ok(())
}

/// Serves one status JSON on loopback, forever (the bench process exits after).
fn status_server() -> Result<String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let url = format!("http://{}/services/status/", listener.local_addr()?);
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            let body = format!(
                r#"{{"code": "OK", "msg": "Spawned server in 3.2 s", "time": {}}}"#,
                now.as_secs_f64() - 60.0
            );
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(url)
}

/// Builds the release `probe` (cargo is not holding its lock while benches run).
fn probe_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("target/release")?;
    let target_dir = profile_dir.parent().ok_or("target")?;
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "egi-examples",
            "--bin",
            "probe",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() {
        return Err("cargo build --release --bin probe failed".into());
    }
    Ok(target_dir.join("release/probe"))
}

/// Peak RSS (kB), user + system CPU (s) and wall time (s) of one run under `/usr/bin/time -v`.
fn time_v(probe: &Path, args: &[&str], token: &str) -> Result<(f64, f64, f64, i32)> {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(probe)
        .args(args)
        .env("JUPYTERHUB_API_TOKEN", token)
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    let report = String::from_utf8_lossy(&out.stderr);
    let field = |name: &str| -> f64 {
        report
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    let rss = field("Maximum resident set size (kbytes):");
    let cpu = field("User time (seconds):") + field("System time (seconds):");
    Ok((rss, cpu, wall, out.status.code().unwrap_or(-1)))
}

fn probe_cost(hub: &JupyterHub, runs: usize) -> Result<()> {
    let probe = probe_binary()?;
    let status_url = status_server()?;
    let api = hub.api_url();
    println!("### The `probe` check's own cost per run (`/usr/bin/time -v`, release build)\n");
    println!(
        "| mode | exit | peak RSS min / median / max | CPU (user+sys) min / median / max | wall median |\n|---|---|---|---|---|"
    );
    let modes: [(&str, Vec<&str>); 3] = [
        (
            "`probe -t 10 --url STATUS` (Nagios, reads the status service)",
            vec!["-t", "10", "--url", &status_url],
        ),
        (
            "`probe --hub URL --run hub` (version + token)",
            vec!["--hub", &api, "--run", "hub"],
        ),
        (
            "`probe --hub URL --run spawn -t 60` (whole spawn)",
            vec!["--hub", &api, "--run", "spawn", "-t", "60"],
        ),
    ];
    for (name, args) in modes {
        let (mut rss, mut cpu, mut wall, mut exit) = (Vec::new(), Vec::new(), Vec::new(), -1);
        for _ in 0..runs {
            let (r, c, w, e) = time_v(&probe, &args, hub.token())?;
            rss.push(r / 1024.0);
            cpu.push(c);
            wall.push(w);
            exit = e;
        }
        for v in [&mut rss, &mut cpu, &mut wall] {
            v.sort_by(f64::total_cmp);
        }
        let (lo, mid, hi) = (0, runs / 2, runs - 1);
        println!(
            "| {name} | {exit} | {:.1} / {:.1} / {:.1} MB | {:.2} / {:.2} / {:.2} s | {:.2} s |",
            rss[lo], rss[mid], rss[hi], cpu[lo], cpu[mid], cpu[hi], wall[mid]
        );
    }
    // /usr/bin/time counts in 10 ms steps: time 100 runs in one go for the average.
    let script =
        format!("for i in $(seq 100); do \"$0\" -t 10 --url {status_url} >/dev/null; done");
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%U %S", "sh", "-c", &script])
        .arg(&probe)
        .output()?;
    let wall = started.elapsed().as_secs_f64();
    let report = String::from_utf8_lossy(&out.stderr);
    let cpu: f64 = report
        .split_whitespace()
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    println!(
        "\n100 Nagios-mode runs in a row (`/usr/bin/time -f '%U %S' sh -c 'for i in $(seq 100); do probe -t 10 --url STATUS; done'`): \
         {:.1} ms CPU and {:.1} ms wall per run (shell included).\n",
        cpu * 10.0,
        wall * 10.0
    );
    Ok(())
}
