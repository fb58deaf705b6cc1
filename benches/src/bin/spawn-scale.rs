//! The egi-spawner scale benchmark: N concurrent spawns in one namespace against the
//! Kubernetes API simulator running in another process (`kubesim`), so this process holds
//! only what a hub holds: the spawners, their shared pod cache and the client.
//!
//! ```text
//! spawn-scale --api http://127.0.0.1:PORT [--users 1000] [--failing 20]
//! ```
//!
//! Prints one JSON object: requests per first spawn, per returning spawn and per stop (from
//! the simulator's counters), open watches (peak), the lag from each pod turning Running (the
//! simulator's kubelet clock) to its `start()` returning, the time from the first
//! `ErrImagePull` to `start()` failing, and this process's resident memory with every server
//! running. `benches/scripts/spawn-scale.sh` builds both and runs it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use egi_spawner::kube::{KubeCluster, KubeSpawner, RuntimeOptions};
use egi_spawner::spawner::StartRequest;
use egi_spawner::{Error, FailureReason, HubContext, KubeSpawnerConfig, Spawner, User};
use egi_test_harness::kubesim::Counters;
use secrecy::SecretString;
use serde_json::json;

struct Args {
    max_requests: usize,
    api: String,
    users: usize,
    failing: usize,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        api: String::new(),
        max_requests: egi_spawner::kube::RuntimeOptions::default().max_requests,
        users: 1000,
        failing: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--api" => out.api = value,
            "--users" => out.users = value.parse().map_err(|e| format!("--users: {e}"))?,
            "--failing" => out.failing = value.parse().map_err(|e| format!("--failing: {e}"))?,
            "--max-requests" => {
                out.max_requests = value.parse().map_err(|e| format!("--max-requests: {e}"))?
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if out.api.is_empty() {
        return Err("usage: spawn-scale --api URL [--users N] [--failing N]".to_owned());
    }
    Ok(out)
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

fn request(user: &str) -> StartRequest {
    StartRequest {
        hub: HubContext::for_server(
            user,
            "",
            "http://hub:8081/hub/api",
            SecretString::from(format!("token-{user}")),
            8888,
        ),
        user_options: serde_json::Map::new(),
        tokens: None,
    }
}

/// The simulator's control API.
struct Control {
    http: reqwest::Client,
    base: String,
}

impl Control {
    async fn counters(&self) -> Counters {
        let url = format!("{}/simulator/counters", self.base);
        self.http
            .get(url)
            .send()
            .await
            .expect("counters")
            .json()
            .await
            .expect("counters JSON")
    }
    async fn reset(&self) {
        let url = format!("{}/simulator/reset-counters", self.base);
        self.http
            .post(url)
            .send()
            .await
            .expect("reset")
            .error_for_status()
            .expect("reset");
    }
    async fn fault(&self, body: serde_json::Value) {
        let url = format!("{}/simulator/faults", self.base);
        self.http
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("fault")
            .error_for_status()
            .expect("fault");
    }
    /// When the kubelet set each pod Running and first reported ErrImagePull (unix ms).
    async fn timeline(&self) -> serde_json::Value {
        let url = format!("{}/simulator/timeline", self.base);
        self.http
            .get(url)
            .send()
            .await
            .expect("timeline")
            .json()
            .await
            .expect("timeline JSON")
    }
}

fn writes(c: &Counters) -> u64 {
    ["create", "update", "patch", "delete"]
        .iter()
        .map(|v| c.verb(v))
        .sum()
}

fn per_op(c: &Counters, n: usize) -> serde_json::Value {
    let n = n.max(1) as f64;
    json!({
        "writes": writes(c) as f64 / n,
        "get": c.verb("get") as f64 / n,
        "list": c.verb("list") as f64 / n,
        "by_verb_and_resource": c.requests.iter().map(|r| (format!("{} {}", r.verb, r.resource), r.count)).collect::<BTreeMap<_, _>>(),
    })
}

fn rss_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

async fn start_all(
    spawners: &[Arc<KubeSpawner>],
) -> Vec<(String, Result<String, Error>, SystemTime)> {
    start_all_with(spawners, "default").await
}

/// Starts every spawner at once with that profile; returns each pod name, outcome and the
/// wall-clock time the start returned.
async fn start_all_with(
    spawners: &[Arc<KubeSpawner>],
    profile: &'static str,
) -> Vec<(String, Result<String, Error>, SystemTime)> {
    let tasks: Vec<_> = spawners
        .iter()
        .map(|s| {
            let s = Arc::clone(s);
            tokio::spawn(async move {
                let mut start = request(&s.user().name);
                start
                    .user_options
                    .insert("profile".to_owned(), json!(profile));
                let result = s.start(start).await;
                let name = s.state().pod_name.unwrap_or_default();
                (name, result, SystemTime::now())
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.expect("start task"));
    }
    out
}

async fn stop_all(spawners: &[Arc<KubeSpawner>]) -> usize {
    let tasks: Vec<_> = spawners
        .iter()
        .map(|s| {
            let s = Arc::clone(s);
            tokio::spawn(async move { s.stop(false).await })
        })
        .collect();
    let mut failed = 0;
    for t in tasks {
        if t.await.expect("stop task").is_err() {
            failed += 1;
        }
    }
    failed
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
    let control = Control {
        http: reqwest::Client::new(),
        base: args.api.trim_end_matches('/').to_owned(),
    };
    let client = kube::Client::try_from(kube::Config::new(args.api.parse().expect("--api URL")))
        .expect("client");
    let config: KubeSpawnerConfig =
        serde_json::from_value(json!({
            "storage": { "policy": { "type": "per-user" } },
            // The failing spawns of the last phase pick this profile (same cluster, same watches).
            "profile_list": [
                { "display_name": "Default", "slug": "default", "default": true },
                { "display_name": "Broken", "slug": "broken", "kubespawner_override": { "image": "broken/notebook:1" } }
            ]
        }))
        .expect("config");
    let mut options = RuntimeOptions::default();
    options.start_timeout = Duration::from_secs(120);
    options.stop_timeout = Duration::from_secs(120);
    options.max_requests = args.max_requests;
    let cluster = KubeCluster::new(client, config, options).expect("cluster");
    cluster.watch_namespace("default").await.expect("watch");

    let spawners: Vec<Arc<KubeSpawner>> = (0..args.users)
        .map(|i| {
            let user = User {
                name: format!("user{i:05}"),
                ..User::default()
            };
            Arc::new(cluster.spawner(user, ""))
        })
        .collect();

    // First spawns, all at once.
    control.reset().await;
    let began = std::time::Instant::now();
    let started = start_all(&spawners).await;
    let first_wall = began.elapsed();
    let first = control.counters().await;
    let failed_first = started.iter().filter(|(_, r, _)| r.is_err()).count();
    if let Some((name, Err(e), _)) = started.iter().find(|(_, r, _)| r.is_err()) {
        let cause = std::error::Error::source(e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        eprintln!("first failure: {name}: {e}{cause}");
    }
    let rss_running = rss_kb("VmRSS:");
    let hwm_running = rss_kb("VmHWM:");
    let cached = cluster.cached_pods("default");

    // Lag: kubelet's Running time to start() returning.
    let timeline = control.timeline().await;
    let mut lags: Vec<f64> = started
        .iter()
        .filter(|(_, r, _)| r.is_ok())
        .filter_map(|(name, _, at)| {
            let running = timeline["pods"][format!("default/{name}")]["running_ms"].as_f64()?;
            Some(unix_ms(*at) - running)
        })
        .collect();
    lags.sort_by(f64::total_cmp);

    // Stops.
    control.reset().await;
    let failed_stops = stop_all(&spawners).await;
    let stops = control.counters().await;

    // Returning spawns (the hub cleared the state after the stop; the claim is remembered).
    for s in &spawners {
        s.clear_state();
    }
    control.reset().await;
    let again = start_all(&spawners).await;
    let returning = control.counters().await;
    let failed_again = again.iter().filter(|(_, r, _)| r.is_err()).count();
    let peak_watches = returning
        .peak_open_watches
        .max(first.peak_open_watches)
        .max(stops.peak_open_watches);
    stop_all(&spawners).await;

    // Image-pull failures: time from the kubelet's first ErrImagePull to start() failing.
    control
        .fault(json!({ "action": "fail_image_pull", "pattern": "broken/notebook" }))
        .await;
    let broken: Vec<Arc<KubeSpawner>> = (0..args.failing)
        .map(|i| {
            let user = User {
                name: format!("broken{i:03}"),
                ..User::default()
            };
            Arc::new(cluster.spawner(user, ""))
        })
        .collect();
    let failed = start_all_with(&broken, "broken").await;
    let timeline = control.timeline().await;
    let mut pull_reports: Vec<f64> = failed
        .iter()
        .filter(|(_, r, _)| {
            matches!(
                r,
                Err(Error::SpawnFailed {
                    reason: FailureReason::ImagePull,
                    ..
                })
            )
        })
        .filter_map(|(name, _, at)| {
            let first =
                timeline["pods"][format!("default/{name}")]["err_image_pull_ms"].as_f64()?;
            Some(unix_ms(*at) - first)
        })
        .collect();
    pull_reports.sort_by(f64::total_cmp);
    stop_all(&broken).await;

    let n = args.users;
    let report = json!({
        "users": n,
        "max_requests": args.max_requests,
        "first_spawns": { "failed": failed_first, "wall_s": first_wall.as_secs_f64(), "requests_per_spawn": per_op(&first, n) },
        "returning_spawns": { "failed": failed_again, "requests_per_spawn": per_op(&returning, n) },
        "stops": { "failed": failed_stops, "requests_per_stop": per_op(&stops, n) },
        "watches": { "peak_open": peak_watches, "open_after": control.counters().await.open_watches },
        "lag_running_to_start_ms": {
            "n": lags.len(), "min": percentile(&lags, 0.0), "median": percentile(&lags, 0.5),
            "p90": percentile(&lags, 0.9), "p99": percentile(&lags, 0.99), "max": percentile(&lags, 1.0),
        },
        "image_pull_failure_reported_ms": {
            "n": pull_reports.len(), "of": args.failing, "median": percentile(&pull_reports, 0.5), "max": percentile(&pull_reports, 1.0),
        },
        "memory": { "rss_kb_all_running": rss_running, "hwm_kb": hwm_running, "cached_pods": cached },
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    if failed_first + failed_again > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
