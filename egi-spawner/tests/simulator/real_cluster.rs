//! What a real cluster does late (issue 13), reproduced by kubesim: an asynchronous garbage
//! collector, a scheduler that sees a new claim late, API server restarts that expire
//! watches, claims that never bind; and a reuse-by-annotation start with one request slot.
//! Each of these tests failed before the fix it names.

use std::sync::Arc;
use std::time::{Duration, Instant};

use egi_spawner::kube::KubeCluster;
use egi_spawner::{Error, FailureReason, Spawner};
use egi_test_harness::kubesim::SimOptions;
use futures_util::StreamExt;
use serde_json::json;

use crate::support::*;

/// Point 1: stops followed at once by starts, with a collector 1 s behind. The Secret of
/// every server must exist, with the tokens of its latest start, once the collector is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_secrets_survive_a_slow_garbage_collector() {
    let sim = sim_with(SimOptions {
        gc_delay: Duration::from_secs(1),
        ready_delay: Duration::from_millis(100),
        ..SimOptions::default()
    })
    .await;
    let cluster = cluster(&sim, json!({ "storage": { "policy": { "type": "none" } } }));
    let names: Vec<String> = (0..20).map(|i| format!("gc{i}")).collect();
    let spawners: Vec<_> = names
        .iter()
        .map(|n| Arc::new(cluster.spawner(user(n), "")))
        .collect();
    let run = |round: &'static str| {
        futures_util::future::join_all(spawners.iter().zip(&names).map(|(s, n)| {
            let mut request = request(n, "");
            request.tokens = Some(tokens(round));
            s.start(request)
        }))
    };
    for result in run("round-1").await {
        result.expect("first start");
    }
    for s in &spawners {
        s.stop(true).await.expect("stop");
        s.clear_state();
    }
    for result in run("round-2").await {
        result.expect("second start");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lost: Vec<&String> = names
        .iter()
        .filter(|n| {
            sim.object("secrets", "default", &format!("access-token-{n}"))
                .is_none_or(|s| secret_value(&s, "access_token").as_deref() != Some("round-2"))
        })
        .collect();
    assert!(lost.is_empty(), "Secrets lost or stale: {lost:?}");
}

/// Point 2: the scheduler reports the new claim "not found" for a moment; the start waits
/// for the next scheduling attempt instead of failing.
#[tokio::test]
async fn a_transient_scheduler_message_does_not_fail_the_start() {
    let sim = sim_with(SimOptions {
        scheduler_lag: Duration::from_millis(300),
        backoff: Duration::from_millis(200),
        ..SimOptions::default()
    })
    .await;
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" } } }),
    );
    let spawner = cluster.spawner(user("ana"), "");
    let url = spawner.start(request("ana", "")).await;
    assert!(url.is_ok(), "{url:?}");
    let failed = sim
        .objects("events", "default")
        .iter()
        .any(|e| e["reason"] == "FailedScheduling");
    assert!(failed, "the scheduler did report the claim missing");
}

/// Point 3: an API server restart while a start waits. The server is down 6 s and the pod
/// turns Running just after it is back: kube-runtime's default back-off (800 ms doubling, for
/// 410 too) has grown to its 6.4 s step by then, so the old code returned 5-6 s after Running;
/// ours retries every 500 ms at most and relists at once on 410. The bound (2.5 s) leaves a
/// loaded CI machine room on both sides; the goal (< 1 s) is measured by `spawn-scale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_returns_soon_after_an_api_restart() {
    let sim = sim_with(SimOptions {
        ready_delay: Duration::from_millis(6500),
        ..SimOptions::default()
    })
    .await;
    let cluster = cluster(&sim, json!({ "storage": { "policy": { "type": "none" } } }));
    let spawner = Arc::new(cluster.spawner(user("rio"), ""));
    let starting = {
        let spawner = Arc::clone(&spawner);
        tokio::spawn(async move { spawner.start(request("rio", "")).await })
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            sim.object("pods", "default", "jupyter-rio").is_some()
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    sim.faults().restart_api(Duration::from_secs(6));
    starting.await.unwrap().expect("start");
    let returned = now_ms();
    let running = sim.timeline()["default/jupyter-rio"]
        .running_ms
        .expect("Running");
    let late = returned - running;
    eprintln!("returned {late:.0} ms after Running");
    assert!(late < 2500.0, "returned {late:.0} ms after Running");
}

/// Point 5: a claim that never binds fails the start with the claim's own reason, shown in
/// progress too, instead of "volume ready" and a timeout.
#[tokio::test]
async fn a_claim_that_never_binds_fails_with_its_reason() {
    let sim = sim().await;
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" }, "storage_class": "no-such-class" } }),
    );
    let spawner = cluster.spawner(user("noa"), "");
    let progress = spawner.progress();
    let started = Instant::now();
    let result = spawner.start(request("noa", "")).await;
    match &result {
        Err(Error::SpawnFailed {
            reason: FailureReason::Unschedulable,
            message,
        }) => assert!(
            message.contains("ProvisioningFailed") && message.contains("no-such-class"),
            "{message}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let events: Vec<_> = progress.collect().await;
    let text: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert!(
        !text
            .iter()
            .any(|m| m.contains("ready") && m.contains("Volume")),
        "{text:#?}"
    );
    assert!(
        text.iter().any(|m| m.contains("ProvisioningFailed")),
        "{text:#?}"
    );
}

/// Point 9: reuse by annotation with one request slot: the claim index's list must not wait
/// for the slot the start holds.
#[tokio::test]
async fn reuse_by_annotation_with_one_request_slot_does_not_hang() {
    let sim = sim().await;
    let mut options = options();
    options.max_requests = 1;
    let cluster = KubeCluster::new(
        client(&sim),
        config(json!({ "storage": { "policy": { "type": "reuse-by-annotation" } } })),
        options,
    )
    .unwrap();
    let spawner = cluster.spawner(user("uma"), "");
    let result = tokio::time::timeout(Duration::from_secs(10), spawner.start(request("uma", "")))
        .await
        .expect("the start must not hang");
    assert!(result.is_ok(), "{result:?}");
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// Point 6: a namespace per user is created at the first spawn (it was a 404), and its pod
/// watch ends once the user's server is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_namespaces_are_created_and_their_watches_released() {
    let sim = sim().await;
    let cluster = cluster(&sim, json!({ "user_namespace_template": "nb-{username}" }));
    let spawner = cluster.spawner(user("ida"), "");
    spawner
        .start(request("ida", ""))
        .await
        .expect("first spawn");
    let namespace = sim.object("namespaces", "", "nb-ida").expect("namespace");
    assert_eq!(
        namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "egi-spawner"
    );
    assert!(sim.object("pods", "nb-ida", "jupyter-ida").is_some());
    assert_eq!(sim.counters().open_watches_on("pods", "nb-ida"), 1);
    spawner.stop(true).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            sim.counters().open_watches_on("pods", "nb-ida") == 0
        })
        .await,
        "the user namespace's pod watch ends"
    );
    spawner
        .start(request("ida", ""))
        .await
        .expect("a second spawn watches again");
    spawner.stop(true).await.unwrap();
}

/// Point 7: every request of the spawner carries its User-Agent, so an API server's audit log
/// and `apiserver_request_total` tell it from other clients.
#[tokio::test]
async fn every_request_carries_the_spawners_user_agent() {
    let sim = sim().await;
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" } } }),
    );
    let spawner = cluster.spawner(user("ua"), "");
    spawner.start(request("ua", "")).await.expect("start");
    spawner.stop(false).await.expect("stop");
    let counters = sim.counters();
    let agents: Vec<_> = counters.user_agents.keys().cloned().collect();
    assert_eq!(agents, vec![egi_spawner::kube::USER_AGENT.to_owned()]);
    assert!(counters.user_agents[egi_spawner::kube::USER_AGENT] >= 4);
    assert!(egi_spawner::kube::USER_AGENT.starts_with("egi-spawner/"));
}
