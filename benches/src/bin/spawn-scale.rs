//! The egi-spawner scale benchmark: N concurrent spawns in one namespace, against the
//! Kubernetes API simulator running in another process (`kubesim`, `--api URL`) or against
//! any cluster in `KUBECONFIG` (no `--api`), so this process holds only what a hub holds: the
//! spawners, their shared pod cache and the client.
//!
//! ```text
//! spawn-scale [--api http://127.0.0.1:PORT] [--namespace default] [--users 1000]
//!             [--failing 20] [--rounds 0] [--settle-ms 5000] [--max-requests 32]
//! ```
//!
//! Prints one JSON object: requests per first spawn, per returning spawn and per stop, open
//! watches (peak), the lag from each pod turning Running to its `start()` returning, the time
//! until an image that cannot be pulled fails `start()`, this process's resident memory with
//! every server running, and with `--rounds R`, R rounds of stopping every server and starting
//! it again at once, counting failed starts and token Secrets lost or stale once the garbage
//! collector had `--settle-ms` to act. On kubesim, requests come from its counters (every
//! client, the collector too when kubesim runs with `--count-controllers`), Running and
//! `ErrImagePull` times from its kubelet, and an API server restart during a start is timed
//! too; on a real cluster, requests come from the API server's `apiserver_request_total`
//! (`GET /metrics`, when readable: every client of the cluster is counted, so run it on a quiet
//! one), the image-pull failure is timed from the start, and figures needing the simulator are
//! `null`. `benches/scripts/spawn-scale.sh` builds both and runs it on kubesim.

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
    api: Option<String>,
    namespace: String,
    users: usize,
    failing: usize,
    rounds: usize,
    settle: Duration,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        api: None,
        namespace: "default".to_owned(),
        max_requests: egi_spawner::kube::RuntimeOptions::default().max_requests,
        users: 1000,
        failing: 20,
        rounds: 0,
        settle: Duration::from_secs(5),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--api" => out.api = Some(value),
            "--namespace" => out.namespace = value,
            "--rounds" => out.rounds = value.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--settle-ms" => {
                out.settle =
                    Duration::from_millis(value.parse().map_err(|e| format!("--settle-ms: {e}"))?)
            }
            "--users" => out.users = value.parse().map_err(|e| format!("--users: {e}"))?,
            "--failing" => out.failing = value.parse().map_err(|e| format!("--failing: {e}"))?,
            "--max-requests" => {
                out.max_requests = value.parse().map_err(|e| format!("--max-requests: {e}"))?
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    Ok(out)
}

fn unix_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

fn request(user: &str, marker: &str) -> StartRequest {
    StartRequest {
        hub: HubContext::for_server(
            user,
            "",
            "http://hub:8081/hub/api",
            SecretString::from(format!("token-{user}")),
            8888,
        ),
        user_options: serde_json::Map::new(),
        tokens: Some(egi_spawner::UserTokens {
            access_token: SecretString::from(marker.to_owned()),
            id_token: None,
        }),
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

/// Requests by (verb, resource), summed over namespaces: kube verbs (`create`, `get`, ...).
type Requests = BTreeMap<(String, String), u64>;

/// Where request counts come from.
enum Source {
    /// kubesim's counters (`/simulator/counters`).
    Sim(Control),
    /// The API server's `apiserver_request_total` (`GET /metrics` with the cluster's client).
    Cluster(kube::Client),
}

impl Source {
    /// Requests so far (`None` when the cluster's metrics cannot be read).
    async fn requests(&self) -> Option<Requests> {
        match self {
            Source::Sim(control) => {
                let c = control.counters().await;
                let mut out = Requests::new();
                for r in c.requests {
                    *out.entry((r.verb, r.resource)).or_default() += r.count;
                }
                Some(out)
            }
            Source::Cluster(client) => {
                let request = axum::http::Request::get("/metrics").body(Vec::new()).ok()?;
                let text = client.request_text(request).await.ok()?;
                Some(parse_apiserver_requests(&text))
            }
        }
    }

    fn sim(&self) -> Option<&Control> {
        match self {
            Source::Sim(control) => Some(control),
            Source::Cluster(_) => None,
        }
    }
}

/// `apiserver_request_total` samples, by kube verb and resource. Pure.
fn parse_apiserver_requests(text: &str) -> Requests {
    let mut out = Requests::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        let label = |key: &str| {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        let verb = match label("verb").as_deref() {
            Some("POST") => "create",
            Some("PUT") => "update",
            Some("PATCH" | "APPLY") => "patch",
            Some("DELETE") => "delete",
            Some("DELETECOLLECTION") => "deletecollection",
            Some("GET") => "get",
            Some("LIST") => "list",
            Some("WATCH") => "watch",
            _ => continue,
        };
        let mut resource = label("resource").unwrap_or_default();
        if let Some(sub) = label("subresource").filter(|s| !s.is_empty()) {
            resource = format!("{resource}/{sub}");
        }
        let count = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *out.entry((verb.to_owned(), resource)).or_default() += count;
    }
    out
}

/// Requests per operation between two snapshots.
fn per_op(before: Option<&Requests>, after: Option<&Requests>, n: usize) -> serde_json::Value {
    let (Some(before), Some(after)) = (before, after) else {
        return serde_json::Value::Null;
    };
    let n = n.max(1) as f64;
    let diff: BTreeMap<String, u64> = after
        .iter()
        .map(|((verb, resource), count)| {
            let was = before
                .get(&(verb.clone(), resource.clone()))
                .copied()
                .unwrap_or(0);
            (format!("{verb} {resource}"), count.saturating_sub(was))
        })
        .filter(|(_, d)| *d > 0)
        .collect();
    let verb = |v: &str| -> u64 {
        diff.iter()
            .filter(|(k, _)| k.split(' ').next() == Some(v))
            .map(|(_, d)| d)
            .sum()
    };
    let writes = ["create", "update", "patch", "delete", "deletecollection"]
        .iter()
        .map(|v| verb(v))
        .sum::<u64>();
    let all: u64 = diff
        .iter()
        .filter(|(k, _)| !k.starts_with("watch "))
        .map(|(_, d)| d)
        .sum();
    json!({
        "writes": writes as f64 / n,
        "get": verb("get") as f64 / n,
        "list": verb("list") as f64 / n,
        "all_but_watches": all as f64 / n,
        "by_verb_and_resource": diff,
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
    start_all_with(spawners, "default", "round-0").await
}

/// Starts every spawner at once with that profile; returns each pod name, outcome and the
/// wall-clock time the start returned.
async fn start_all_with(
    spawners: &[Arc<KubeSpawner>],
    profile: &'static str,
    marker: &str,
) -> Vec<(String, Result<String, Error>, SystemTime)> {
    let tasks: Vec<_> = spawners
        .iter()
        .map(|s| {
            let s = Arc::clone(s);
            let marker = marker.to_owned();
            tokio::spawn(async move {
                let mut start = request(&s.user().name, &marker);
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
    // The client a hub gets from KubeCluster::infer (its User-Agent and retries).
    let config = match &args.api {
        Some(api) => Ok(kube::Config::new(api.parse().expect("--api URL"))),
        None => kube::Config::infer().await.map_err(|e| e.to_string()),
    };
    let client = config.and_then(|c| egi_spawner::kube::client(c).map_err(|e| e.to_string()));
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            eprintln!("no Kubernetes client: {e}");
            return ExitCode::from(69);
        }
    };
    let source = match &args.api {
        Some(api) => Source::Sim(Control {
            http: reqwest::Client::new(),
            base: api.trim_end_matches('/').to_owned(),
        }),
        None => Source::Cluster(client.clone()),
    };
    let ns = args.namespace.clone();
    let config: KubeSpawnerConfig = serde_json::from_value(json!({
        "namespace": ns,
        "storage": { "policy": { "type": "per-user" } },
        // The failing spawns of the last phase pick this profile (same cluster, same watches):
        // on kubesim a fault fails its pulls, on a real cluster the registry does not exist.
        "profile_list": [
            { "display_name": "Default", "slug": "default", "default": true },
            { "display_name": "Broken", "slug": "broken", "kubespawner_override": { "image": "registry.invalid/broken/notebook:1" } }
        ]
    }))
    .expect("config");
    let mut options = RuntimeOptions::default();
    options.start_timeout = Duration::from_secs(120);
    options.stop_timeout = Duration::from_secs(120);
    options.max_requests = args.max_requests;
    let cluster = KubeCluster::new(client.clone(), config, options).expect("cluster");
    cluster.watch_namespace(&ns).await.expect("watch");

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
    if let Some(sim) = source.sim() {
        sim.reset().await;
    }
    let before_first = source.requests().await;
    let began = std::time::Instant::now();
    let started = start_all(&spawners).await;
    let first_wall = began.elapsed();
    let after_first = source.requests().await;
    let failed_first = started.iter().filter(|(_, r, _)| r.is_err()).count();
    if let Some((name, Err(e), _)) = started.iter().find(|(_, r, _)| r.is_err()) {
        let cause = std::error::Error::source(e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        eprintln!("first failure: {name}: {e}{cause}");
    }
    let rss_running = rss_kb("VmRSS:");
    let hwm_running = rss_kb("VmHWM:");
    let cached = cluster.cached_pods(&ns);

    // Lag: the kubelet's Running time to start() returning (kubesim's clock only).
    let timeline = match source.sim() {
        Some(sim) => Some(sim.timeline().await),
        None => None,
    };
    let mut lags: Vec<f64> = started
        .iter()
        .filter(|(_, r, _)| r.is_ok())
        .filter_map(|(name, _, at)| {
            let running =
                timeline.as_ref()?["pods"][format!("{ns}/{name}")]["running_ms"].as_f64()?;
            Some(unix_ms(*at) - running)
        })
        .collect();
    lags.sort_by(f64::total_cmp);

    // Stops.
    let before_stops = source.requests().await;
    let failed_stops = stop_all(&spawners).await;
    let after_stops = source.requests().await;

    // Returning spawns (the hub cleared the state after the stop; the claim is remembered).
    for s in &spawners {
        s.clear_state();
    }
    let before_again = source.requests().await;
    let again = start_all_with(&spawners, "default", "round-0").await;
    let after_again = source.requests().await;
    let failed_again = again.iter().filter(|(_, r, _)| r.is_err()).count();
    let peak_watches = match source.sim() {
        Some(sim) => Some(sim.counters().await.peak_open_watches),
        None => None,
    };

    // Rounds: every server stopped, then every one started again at once, as a hub does
    // after a burst of culls; the Secrets are checked once the collector had time to act.
    let mut rounds = Vec::new();
    for round in 1..=args.rounds {
        let marker = format!("round-{round}");
        let before = source.requests().await;
        let failed_stops = stop_all(&spawners).await;
        for s in &spawners {
            s.clear_state();
        }
        let results = start_all_with(&spawners, "default", &marker).await;
        let failed = results.iter().filter(|(_, r, _)| r.is_err()).count();
        tokio::time::sleep(args.settle).await;
        let lost = lost_secrets(&client, &ns, &spawners, &marker).await;
        let after = source.requests().await;
        rounds.push(json!({
            "round": round, "failed_stops": failed_stops, "failed_starts": failed,
            "secrets_lost_or_stale": lost,
            "requests_per_cycle": per_op(before.as_ref(), after.as_ref(), spawners.len()),
        }));
    }
    stop_all(&spawners).await;

    // Image-pull failures: on kubesim from the kubelet's first ErrImagePull, else from the
    // start, to start() failing.
    if let Some(sim) = source.sim() {
        sim.fault(json!({ "action": "fail_image_pull", "pattern": "broken/notebook" }))
            .await;
    }
    let broken: Vec<Arc<KubeSpawner>> = (0..args.failing)
        .map(|i| {
            let user = User {
                name: format!("broken{i:03}"),
                ..User::default()
            };
            Arc::new(cluster.spawner(user, ""))
        })
        .collect();
    let asked = SystemTime::now();
    let failed = start_all_with(&broken, "broken", "broken").await;
    let timeline = match source.sim() {
        Some(sim) => Some(sim.timeline().await),
        None => None,
    };
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
        .map(|(name, _, at)| {
            let first = timeline
                .as_ref()
                .and_then(|t| t["pods"][format!("{ns}/{name}")]["err_image_pull_ms"].as_f64())
                .unwrap_or_else(|| unix_ms(asked));
            unix_ms(*at) - first
        })
        .collect();
    pull_reports.sort_by(f64::total_cmp);
    stop_all(&broken).await;
    for s in spawners.iter().chain(&broken) {
        let _ = s.delete_forever().await;
    }

    // An API server restart while a start waits (kubesim only): the start must return soon
    // after its pod turns Running once the server is back.
    let restart = match source.sim() {
        Some(sim) => Some(restart_lag(sim, &cluster, &ns).await),
        None => None,
    };

    let n = args.users;
    let report = json!({
        "cluster": if source.sim().is_some() { "kubesim" } else { "KUBECONFIG" },
        "users": n,
        "max_requests": args.max_requests,
        "first_spawns": { "failed": failed_first, "wall_s": first_wall.as_secs_f64(), "requests_per_spawn": per_op(before_first.as_ref(), after_first.as_ref(), n) },
        "returning_spawns": { "failed": failed_again, "requests_per_spawn": per_op(before_again.as_ref(), after_again.as_ref(), n) },
        "stops": { "failed": failed_stops, "requests_per_stop": per_op(before_stops.as_ref(), after_stops.as_ref(), n) },
        "rounds": rounds,
        "watches": { "peak_open": peak_watches },
        "lag_running_to_start_ms": {
            "n": lags.len(), "min": percentile(&lags, 0.0), "median": percentile(&lags, 0.5),
            "p90": percentile(&lags, 0.9), "p99": percentile(&lags, 0.99), "max": percentile(&lags, 1.0),
        },
        "image_pull_failure_reported_ms": {
            "from": if timeline.is_some() { "first ErrImagePull" } else { "start()" },
            "n": pull_reports.len(), "of": args.failing, "median": percentile(&pull_reports, 0.5), "max": percentile(&pull_reports, 1.0),
        },
        "api_restart_start_returned_after_running_ms": restart,
        "memory": { "rss_kb_all_running": rss_running, "hwm_kb": hwm_running, "cached_pods": cached },
    });
    println!("{}", serde_json::to_string_pretty(&report).expect("json"));
    let lost: u64 = rounds
        .iter()
        .map(|r| {
            r["secrets_lost_or_stale"].as_u64().unwrap_or(0)
                + r["failed_starts"].as_u64().unwrap_or(0)
        })
        .sum();
    if failed_first + failed_again > 0 || lost > 0 {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// Token Secrets of `spawners` missing or not holding `marker` (one LIST).
async fn lost_secrets(
    client: &kube::Client,
    ns: &str,
    spawners: &[Arc<KubeSpawner>],
    marker: &str,
) -> usize {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), ns);
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let holding: std::collections::HashSet<String> = list
        .into_iter()
        .filter(|s| {
            s.data
                .as_ref()
                .and_then(|d| d.get("access_token"))
                .is_some_and(|v| v.0 == marker.as_bytes())
        })
        .filter_map(|s| s.metadata.name)
        .collect();
    spawners
        .iter()
        .filter(|s| !holding.contains(&format!("access-token-{}", s.user().name)))
        .count()
}

/// Starts one server whose pod takes 2.5 s to run, restarts the API server (down 2 s) while
/// it waits, and returns how long after its pod turned Running the start returned (ms).
async fn restart_lag(sim: &Control, cluster: &KubeCluster, ns: &str) -> serde_json::Value {
    sim.fault(json!({ "action": "ready_delay", "ms": 2500 }))
        .await;
    let spawner = Arc::new(cluster.spawner(
        User {
            name: "restarted".to_owned(),
            ..User::default()
        },
        "",
    ));
    let task = {
        let spawner = Arc::clone(&spawner);
        tokio::spawn(async move { spawner.start(request("restarted", "restart")).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.fault(json!({ "action": "restart_api", "down_ms": 2000 }))
        .await;
    let result = task.await.expect("start task");
    let returned = unix_ms(SystemTime::now());
    let timeline = sim.timeline().await;
    let running = timeline["pods"][format!("{ns}/jupyter-restarted")]["running_ms"].as_f64();
    let _ = spawner.stop(true).await;
    let _ = spawner.delete_forever().await;
    match (result, running) {
        (Ok(_), Some(running)) => json!(returned - running),
        (Err(e), _) => json!(format!("start failed: {e}")),
        (Ok(_), None) => serde_json::Value::Null,
    }
}
