//! Failures the cluster reports: fail fast with its reason; evictions and dropped watches.

use std::time::{Duration, Instant};

use egi_spawner::{Error, FailureReason, PollStatus, Spawner};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_failure_is_reported_in_seconds_not_at_the_timeout() {
    let sim = sim().await;
    sim.faults().fail_image_pull("no-such/image");
    let cluster = cluster(&sim, json!({ "image": "no-such/image:1.0" }));
    let spawner = cluster.spawner(user("ann"), "");
    let started = Instant::now();
    let error = spawner
        .start(request("ann", ""))
        .await
        .expect_err("cannot pull");
    let took = started.elapsed();
    match &error {
        Error::SpawnFailed {
            reason: FailureReason::ImagePull,
            message,
        } => {
            assert!(message.contains("no-such/image"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} (timeout is 20 s)"
    );
    let events: Vec<_> = futures_util::StreamExt::collect::<Vec<_>>(spawner.progress()).await;
    let last = events.last().unwrap();
    assert!(last.failed && last.message.contains("image"), "{last:?}");
    // JupyterHub calls stop() after a failed start: it removes the pod.
    spawner.stop(true).await.unwrap();
    assert!(sim.object("pods", "default", "jupyter-ann").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_and_crash_loop_fail_fast_with_the_reason() {
    let sim = sim().await;
    sim.faults().unschedulable("default", "jupyter-ben");
    sim.faults().crash_loop("crashy/notebook");
    let plain = cluster(&sim, json!({}));
    let ben = plain.spawner(user("ben"), "");
    match ben.start(request("ben", "")).await {
        Err(Error::SpawnFailed {
            reason: FailureReason::Unschedulable,
            message,
        }) => {
            assert!(message.contains("Insufficient"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    ben.stop(true).await.unwrap();

    let crashy = cluster(&sim, json!({ "image": "crashy/notebook:2" }));
    let cleo = crashy.spawner(user("cleo"), "");
    match cleo.start(request("cleo", "")).await {
        Err(Error::SpawnFailed {
            reason: FailureReason::CrashLoop,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    cleo.stop(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_and_exit_are_seen_by_poll() {
    let sim = sim().await;
    let cluster = cluster(&sim, json!({}));
    let dan = cluster.spawner(user("dan"), "");
    dan.start(request("dan", "")).await.unwrap();
    sim.faults().evict("default", "jupyter-dan").unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            matches!(dan.poll().await.unwrap(), PollStatus::Exited { code, reason: Some(ref r) } if code != 0 && r == "Evicted")
        })
        .await,
        "poll sees the eviction: {:?}",
        dan.poll().await
    );
    dan.stop(true).await.expect("stop removes the evicted pod");

    let eli = cluster.spawner(user("eli"), "");
    eli.start(request("eli", "")).await.unwrap();
    sim.faults()
        .exit_container("default", "jupyter-eli", 3)
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            matches!(
                eli.poll().await.unwrap(),
                PollStatus::Exited { code: 3, .. }
            )
        })
        .await,
        "{:?}",
        eli.poll().await
    );
    eli.stop(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_and_expired_watches_are_recovered() {
    let sim = sim().await;
    let cluster = cluster(&sim, json!({}));
    let fay = cluster.spawner(user("fay"), "");
    fay.start(request("fay", "")).await.unwrap();

    sim.faults().drop_watches();
    // Changes made while the watch reconnects are not lost.
    let gus = cluster.spawner(user("gus"), "");
    gus.start(request("gus", ""))
        .await
        .expect("start after a dropped watch");
    sim.faults().evict("default", "jupyter-fay").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            matches!(fay.poll().await.unwrap(), PollStatus::Exited { .. })
        })
        .await
    );

    // History compacted under the watch: it resumes with 410 Gone, lists again, goes on.
    sim.faults().compact_history();
    sim.faults().drop_watches();
    let hal = cluster.spawner(user("hal"), "");
    hal.start(request("hal", ""))
        .await
        .expect("start after a 410");
    assert_eq!(cluster.cached_pods("default"), 3);
    for s in [&fay, &gus, &hal] {
        s.stop(true).await.unwrap();
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            open_watches(&sim.counters()) <= 2
        })
        .await,
        "at most 2 watches per namespace"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_api_gives_a_typed_error() {
    let sim = sim().await;
    let url = sim.url();
    sim.shutdown().await;
    let config = kube::Config::new(url.parse().unwrap());
    let cluster = egi_spawner::kube::KubeCluster::new(
        kube::Client::try_from(config).unwrap(),
        config_default(),
        {
            let mut o = options();
            o.sync_timeout = Duration::from_secs(2);
            o
        },
    )
    .unwrap();
    let spawner = cluster.spawner(user("ida"), "");
    let error = spawner.start(request("ida", "")).await.expect_err("no API");
    assert!(matches!(error, Error::CacheUnavailable { .. }), "{error:?}");
    assert!(error.is_transient() || matches!(error, Error::CacheUnavailable { .. }));
}

fn config_default() -> egi_spawner::KubeSpawnerConfig {
    config(json!({}))
}
