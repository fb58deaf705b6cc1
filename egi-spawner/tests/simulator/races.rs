//! Stops during starts, cancelled starts, and claims that vanish: nothing is left running
//! that the hub believes stopped, and no start waits out its timeout for a known failure.

use std::time::Duration;

use egi_spawner::{Error, FailureReason, PollStatus, Spawner};
use egi_test_harness::kubesim::SimOptions;
use futures_util::StreamExt;
use serde_json::json;

use crate::support::*;

fn slow() -> SimOptions {
    SimOptions {
        ready_delay: Duration::from_secs(3),
        ..SimOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_during_start_cancels_it_and_removes_the_pod() {
    let sim = sim_with(slow()).await;
    let cluster = cluster(&sim, json!({}));
    let spawner = std::sync::Arc::new(cluster.spawner(user("lea"), ""));
    let starting = {
        let spawner = std::sync::Arc::clone(&spawner);
        tokio::spawn(async move { spawner.start(request("lea", "")).await })
    };
    assert!(
        eventually(Duration::from_secs(5), || async {
            sim.object("pods", "default", "jupyter-lea").is_some()
        })
        .await
    );
    assert_eq!(
        spawner.poll().await.unwrap(),
        PollStatus::Running,
        "starting counts as running"
    );
    spawner.stop(true).await.expect("stop");
    assert!(
        sim.object("pods", "default", "jupyter-lea").is_none(),
        "gone when stop returns"
    );
    let result = starting.await.unwrap();
    assert!(matches!(result, Err(Error::Stopped)), "{result:?}");
    let events: Vec<_> = spawner.progress().collect().await;
    assert!(events.last().unwrap().failed, "progress ends: {events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_dropped_by_the_hubs_timeout_can_still_be_stopped() {
    let sim = sim_with(slow()).await;
    let cluster = cluster(&sim, json!({}));
    let spawner = cluster.spawner(user("max"), "");
    let progress = spawner.progress();
    let outcome = tokio::time::timeout(
        Duration::from_millis(800),
        spawner.start(request("max", "")),
    )
    .await;
    assert!(outcome.is_err(), "the hub gave up first");
    // The progress stream of the abandoned start ends instead of hanging.
    let events: Vec<_> = tokio::time::timeout(Duration::from_secs(2), progress.collect::<Vec<_>>())
        .await
        .expect("progress ends");
    assert!(events.last().is_some_and(|e| e.failed), "{events:?}");
    // JupyterHub then calls stop(): the pod the create made is found by its recorded name.
    assert!(sim.object("pods", "default", "jupyter-max").is_some());
    spawner.stop(true).await.unwrap();
    assert!(sim.object("pods", "default", "jupyter-max").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_pull_failure_fails_fast_too() {
    let sim = sim().await;
    // (Init containers are covered by the unit tests of the pod view: the simulator runs
    // them as completed.)
    sim.faults().fail_image_pull("missing/sidecar");
    let cluster = cluster(
        &sim,
        json!({ "extra_containers": [ { "name": "fetch-data", "image": "missing/sidecar:3" } ] }),
    );
    let spawner = cluster.spawner(user("ned"), "");
    let started = std::time::Instant::now();
    match spawner.start(request("ned", "")).await {
        Err(Error::SpawnFailed {
            reason: FailureReason::ImagePull,
            message,
        }) => {
            assert!(message.contains("fetch-data"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    spawner.stop(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_deleted_behind_our_back_is_reported_then_recreated() {
    let sim = sim().await;
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" } } }),
    );
    let spawner = cluster.spawner(user("oli"), "");
    spawner.start(request("oli", "")).await.unwrap();
    spawner.stop(true).await.unwrap();
    spawner.clear_state();
    let api: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        kube::Api::namespaced(client(&sim), "default");
    api.delete("claim-oli", &Default::default()).await.unwrap();

    let started = std::time::Instant::now();
    match spawner.start(request("oli", "")).await {
        Err(Error::SpawnFailed {
            reason: FailureReason::Unschedulable,
            message,
        }) => {
            assert!(message.contains("not found"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "not at the timeout"
    );
    spawner.stop(true).await.unwrap();
    assert_eq!(
        spawner.state().pvc_name,
        None,
        "the state forgets the claim"
    );
    spawner
        .start(request("oli", ""))
        .await
        .expect("the claim is made again");
    assert!(
        sim.object("persistentvolumeclaims", "default", "claim-oli")
            .is_some()
    );
    spawner.stop(true).await.unwrap();
}
