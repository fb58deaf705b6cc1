//! start / poll / stop, progress, state across a hub restart, adoption, stale pods.

use std::time::Duration;

use egi_spawner::{PollStatus, Spawner};
use futures_util::StreamExt;
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_poll_stop_with_progress_and_three_writes() {
    let sim = sim().await;
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-server" } } }),
    );
    let spawner = cluster.spawner(user("alice"), "");
    assert_eq!(
        spawner.poll().await.unwrap(),
        PollStatus::Exited {
            code: 0,
            reason: None
        },
        "never started"
    );
    cluster.watch_namespace("default").await.unwrap();
    sim.reset_counters();

    let progress = spawner.progress();
    let url = spawner
        .start(request("alice", ""))
        .await
        .expect("server starts");
    assert!(
        url.starts_with("http://10.") && url.ends_with(":8888"),
        "{url}"
    );

    let counters = sim.counters();
    assert_eq!(count(&counters, "create", "persistentvolumeclaims"), 1);
    assert_eq!(count(&counters, "create", "pods"), 1);
    assert_eq!(count(&counters, "create", "secrets"), 1);
    assert_eq!(
        count_verb(&counters, "get"),
        0,
        "no per-user GET: {counters:?}"
    );
    assert_eq!(writes(&counters), 3, "{counters:?}");

    // Whatever subscribed before the start sees the events of the start, in order, to 100.
    let events: Vec<_> = spawner.progress().collect().await;
    let early: Vec<_> = tokio::time::timeout(Duration::from_secs(1), progress.collect::<Vec<_>>())
        .await
        .unwrap_or_default();
    assert!(early.is_empty() || early.last() == events.last());
    let text: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    for reason in [
        "Successfully assigned",
        "Pulling image",
        "Started container",
    ] {
        assert!(
            text.iter().any(|m| m.contains(reason)),
            "no {reason:?} in {text:#?}"
        );
    }
    assert!(
        events.windows(2).all(|w| w[0].progress <= w[1].progress),
        "{events:?}"
    );
    // The last event is JupyterHub's ready event, naming the public path, not the pod's address.
    assert_eq!(
        events.last().unwrap(),
        &egi_spawner::ProgressEvent::ready("/user/alice/")
    );
    assert!(events[..events.len() - 1].iter().all(|e| !e.is_final()));

    let pod = sim.object("pods", "default", "jupyter-alice").expect("pod");
    let pod_text = pod.to_string();
    assert!(
        !pod_text.contains(API_TOKEN),
        "the API token is in the pod spec"
    );
    assert!(
        !pod_text.contains("access-1"),
        "the access token is in the pod spec"
    );
    assert_eq!(pod["metadata"]["labels"]["component"], "singleuser-server");
    let secret = sim
        .object("secrets", "default", "access-token-alice")
        .expect("token secret");
    assert_eq!(
        secret_value(&secret, "jupyterhub-api-token").as_deref(),
        Some(API_TOKEN)
    );
    assert_eq!(
        secret_value(&secret, "access_token").as_deref(),
        Some("access-1")
    );
    assert!(
        secret["metadata"]["ownerReferences"].is_null(),
        "owned by no pod: no garbage collector races the next start"
    );

    assert_eq!(spawner.poll().await.unwrap(), PollStatus::Running);
    let state = spawner.state();
    assert_eq!(state.pod_name.as_deref(), Some("jupyter-alice"));
    assert_eq!(state.pvc_name.as_deref(), Some("claim-alice"));

    sim.reset_counters();
    spawner.stop(false).await.expect("stops");
    let counters = sim.counters();
    assert_eq!(writes(&counters), 1, "one DELETE per stop: {counters:?}");
    assert_eq!(count(&counters, "delete", "pods"), 1);
    assert!(
        sim.object("pods", "default", "jupyter-alice").is_none(),
        "stop returns when the pod is gone"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        sim.object("secrets", "default", "access-token-alice")
            .is_some(),
        "the token Secret is long-lived: the next start writes it in place"
    );
    assert!(matches!(
        spawner.poll().await.unwrap(),
        PollStatus::Exited { code: 1, .. }
    ));
    spawner.clear_state();
    assert_eq!(
        spawner.state().pvc_name.as_deref(),
        Some("claim-alice"),
        "the claim is remembered"
    );

    // A returning spawn: the claim is known, so only the pod and its Secret are written.
    sim.reset_counters();
    spawner
        .start(request("alice", ""))
        .await
        .expect("starts again");
    let counters = sim.counters();
    assert_eq!(writes(&counters), 2, "{counters:?}");
    assert_eq!(count(&counters, "create", "persistentvolumeclaims"), 0);
    assert_eq!(count(&counters, "update", "secrets"), 1, "{counters:?}");
    spawner.stop(true).await.unwrap();
    spawner.delete_forever().await.unwrap();
    assert!(
        sim.object("secrets", "default", "access-token-alice")
            .is_none(),
        "delete_forever deletes the Secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_restart_with_saved_state_and_adoption_without_it() {
    let sim = sim().await;
    let first = cluster(&sim, json!({}));
    let spawner = first.spawner(user("bob"), "lab");
    spawner.start(request("bob", "lab")).await.unwrap();
    let saved = serde_json::to_value(spawner.state()).unwrap();
    assert_eq!(saved["pod_name"], "jupyter-bob--lab");
    assert_eq!(saved["namespace"], "default");
    drop(spawner);
    drop(first);

    // The hub restarts: a new cluster (new watch), state loaded from the hub's database.
    let second = cluster(&sim, json!({ "pod_name_template": "nb-{user_server}" }));
    let restored = second.spawner(user("bob"), "lab");
    restored.load_state(serde_json::from_value(saved).unwrap());
    assert_eq!(
        restored.poll().await.unwrap(),
        PollStatus::Running,
        "the saved pod name wins over the new template"
    );

    // Without state (lost), the pod is found by the template name and adopted by its annotations.
    let third = cluster(&sim, json!({}));
    let adopted = third.spawner(user("bob"), "lab");
    assert_eq!(adopted.poll().await.unwrap(), PollStatus::Running);
    assert_eq!(
        adopted.state().pod_name.as_deref(),
        Some("jupyter-bob--lab")
    );
    restored.stop(true).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            matches!(
                adopted.poll().await.unwrap(),
                PollStatus::Exited { code: 1, .. }
            )
        })
        .await,
        "every cache sees the pod go"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_replaces_a_terminating_pod_after_its_409() {
    let sim = sim_with(egi_test_harness::kubesim::SimOptions {
        terminate_delay: Duration::from_millis(1500),
        ..Default::default()
    })
    .await;
    let cluster = cluster(&sim, json!({}));
    let spawner = cluster.spawner(user("carol"), "");
    spawner.start(request("carol", "")).await.unwrap();
    let old_uid =
        sim.object("pods", "default", "jupyter-carol").unwrap()["metadata"]["uid"].clone();

    // Someone deletes the pod with a grace period: it terminates for a while.
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(client(&sim), "default");
    api.delete(
        "jupyter-carol",
        &kube::api::DeleteParams::default().grace_period(30),
    )
    .await
    .unwrap();
    assert!(
        sim.object("pods", "default", "jupyter-carol").unwrap()["metadata"]["deletionTimestamp"]
            .is_string()
    );

    sim.reset_counters();
    let url = spawner
        .start(request("carol", ""))
        .await
        .expect("starts after the old pod is gone");
    let counters = sim.counters();
    assert!(
        count(&counters, "create", "pods") >= 2,
        "a 409 first: {counters:?}"
    );
    let pod = sim.object("pods", "default", "jupyter-carol").unwrap();
    assert_ne!(pod["metadata"]["uid"], old_uid);
    assert!(url.starts_with("http://"));
    spawner.stop(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_running_pod_is_replaced_on_start() {
    let sim = sim().await;
    let cluster = cluster(&sim, json!({}));
    let first = cluster.spawner(user("dave"), "");
    first.start(request("dave", "")).await.unwrap();
    let old_uid = sim.object("pods", "default", "jupyter-dave").unwrap()["metadata"]["uid"].clone();
    // The hub forgot the server (no state) and starts it again.
    let second = cluster.spawner(user("dave"), "");
    second
        .start(request("dave", ""))
        .await
        .expect("replaces the stale pod");
    let pod = sim.object("pods", "default", "jupyter-dave").unwrap();
    assert_ne!(pod["metadata"]["uid"], old_uid);
    second.stop(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_user_options_are_refused_before_any_request() {
    let sim = sim().await;
    let cluster = cluster(&sim, json!({}));
    cluster.watch_namespace("default").await.unwrap();
    sim.reset_counters();
    let spawner = cluster.spawner(user("eve"), "");
    let mut request = request("eve", "");
    // A key no profile knows is ignored (KubeSpawner's behaviour); a profile that does not
    // exist, or a value with control characters, is refused.
    request
        .user_options
        .insert("profile".to_owned(), json!("evil/miner:latest"));
    let error = spawner
        .start(request)
        .await
        .expect_err("unknown profile refused");
    assert!(matches!(error, egi_spawner::Error::Options(_)), "{error:?}");
    assert_eq!(writes(&sim.counters()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_user_names_still_get_valid_pods() {
    let sim = sim().await;
    let cluster = cluster(&sim, json!({}));
    for name in ["../../etc/passwd", "Zoë Ünïcode", "user@email.com", "a--b"] {
        let spawner = cluster.spawner(user(name), "");
        spawner
            .start(request("x", ""))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let pod_name = spawner.state().pod_name.unwrap();
        let pod = sim.object("pods", "default", &pod_name).expect("pod");
        assert_eq!(
            pod["metadata"]["annotations"]["hub.jupyter.org/username"],
            name
        );
        spawner.stop(true).await.unwrap();
    }
}
