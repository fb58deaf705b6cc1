//! Each PVC policy against the simulator's claims, binding and storage classes.

use egi_spawner::{PollStatus, Spawner};
use serde_json::json;

use crate::support::*;

fn claim_of(pod: &serde_json::Value) -> Option<String> {
    pod["spec"]["volumes"].as_array()?.iter().find_map(|v| {
        v["persistentVolumeClaim"]["claimName"]
            .as_str()
            .map(str::to_owned)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_claim_policy_mounts_nothing() {
    let sim = sim().await;
    let cluster = cluster(&sim, json!({ "storage": { "policy": { "type": "none" } } }));
    let spawner = cluster.spawner(user("nina"), "");
    spawner.start(request("nina", "")).await.unwrap();
    let pod = sim.object("pods", "default", "jupyter-nina").unwrap();
    assert_eq!(claim_of(&pod), None);
    assert!(sim.objects("persistentvolumeclaims", "default").is_empty());
    spawner.stop(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_claim_is_mounted_never_created_nor_deleted() {
    let sim = sim().await;
    sim.put_object(
        "persistentvolumeclaims",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "team-data", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "100Gi"}}}}),
    )
    .unwrap();
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "shared", "claim_name": "team-data" } } }),
    );
    let spawner = cluster.spawner(user("olga"), "");
    sim.reset_counters();
    spawner.start(request("olga", "")).await.unwrap();
    assert_eq!(
        count(&sim.counters(), "create", "persistentvolumeclaims"),
        0
    );
    let pod = sim.object("pods", "default", "jupyter-olga").unwrap();
    assert_eq!(claim_of(&pod).as_deref(), Some("team-data"));
    spawner.stop(true).await.unwrap();
    spawner.delete_forever().await.unwrap();
    assert!(
        sim.object("persistentvolumeclaims", "default", "team-data")
            .is_some(),
        "shared claim kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_user_claim_is_shared_by_servers_and_deleted_only_with_the_user() {
    let sim = sim().await;
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" } } }),
    );
    let named = cluster.spawner(user("pia"), "gpu");
    named.start(request("pia", "gpu")).await.unwrap();
    let pod = sim.object("pods", "default", "jupyter-pia--gpu").unwrap();
    let claim = claim_of(&pod).expect("mounted without extra configuration");
    assert_eq!(claim, "claim-pia");
    let pvc = sim
        .object("persistentvolumeclaims", "default", &claim)
        .unwrap();
    assert_eq!(
        pvc["metadata"]["annotations"]["egi.eu/created-by"],
        "egi-spawner"
    );
    assert!(
        eventually(std::time::Duration::from_secs(5), || async {
            sim.object("persistentvolumeclaims", "default", "claim-pia")
                .unwrap()["status"]["phase"]
                == "Bound"
        })
        .await
    );
    named.stop(true).await.unwrap();
    named.delete_forever().await.unwrap();
    assert!(
        sim.object("persistentvolumeclaims", "default", "claim-pia")
            .is_some(),
        "a named server's removal keeps the user's claim"
    );

    let default = cluster.spawner(user("pia"), "");
    default.start(request("pia", "")).await.unwrap();
    assert_eq!(
        claim_of(&sim.object("pods", "default", "jupyter-pia").unwrap()).as_deref(),
        Some("claim-pia")
    );
    default.stop(true).await.unwrap();
    default.delete_forever().await.unwrap();
    assert!(
        sim.object("persistentvolumeclaims", "default", "claim-pia")
            .is_none(),
        "deleting the user deletes their claim"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_server_claim_deleted_forever_but_never_someone_elses() {
    let sim = sim().await;
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-server" } } }),
    );
    let spawner = cluster.spawner(user("quinn"), "exp");
    spawner.start(request("quinn", "exp")).await.unwrap();
    assert!(
        sim.object("persistentvolumeclaims", "default", "claim-quinn--exp")
            .is_some()
    );
    spawner.stop(true).await.unwrap();
    spawner.delete_forever().await.unwrap();
    assert!(
        sim.object("persistentvolumeclaims", "default", "claim-quinn--exp")
            .is_none(),
        "named server removed: its claim goes"
    );

    // A claim of that name the operator made (no marker) is used but never deleted.
    sim.put_object(
        "persistentvolumeclaims",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "claim-rita", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}),
    )
    .unwrap();
    let rita = cluster.spawner(user("rita"), "");
    rita.start(request("rita", ""))
        .await
        .expect("409 on the claim means it exists");
    rita.stop(true).await.unwrap();
    rita.delete_forever().await.unwrap();
    assert!(
        sim.object("persistentvolumeclaims", "default", "claim-rita")
            .is_some(),
        "not ours: kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egi_reuses_the_users_claim_found_by_annotation() {
    let sim = sim().await;
    sim.put_object(
        "persistentvolumeclaims",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "old-home-4f2a", "namespace": "default",
                            "annotations": {"hub.jupyter.org/username": "sara@egi.eu"}},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}),
    )
    .unwrap();
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "reuse-by-annotation" } } }),
    );
    let spawner = cluster.spawner(user("sara@egi.eu"), "");
    spawner.start(request("sara@egi.eu", "")).await.unwrap();
    let pod_name = spawner.state().pod_name.unwrap();
    assert_eq!(
        claim_of(&sim.object("pods", "default", &pod_name).unwrap()).as_deref(),
        Some("old-home-4f2a")
    );
    assert_eq!(
        count(&sim.counters(), "create", "persistentvolumeclaims"),
        0
    );
    spawner.stop(true).await.unwrap();
    spawner.clear_state();
    sim.reset_counters();
    spawner.start(request("sara@egi.eu", "")).await.unwrap();
    assert_eq!(
        count(&sim.counters(), "list", "persistentvolumeclaims"),
        0,
        "found once, then remembered"
    );
    spawner.stop(true).await.unwrap();
    spawner.delete_forever().await.unwrap();
    assert!(
        sim.object("persistentvolumeclaims", "default", "old-home-4f2a")
            .is_some(),
        "EGI's homes are never deleted"
    );

    // A user without a claim gets a new one, found missing in the shared index: no list.
    let new = cluster.spawner(user("tom"), "");
    new.start(request("tom", "")).await.unwrap();
    assert_eq!(
        count(&sim.counters(), "list", "persistentvolumeclaims"),
        0,
        "the namespace's claim index is shared: no list per user"
    );
    let pod = sim.object("pods", "default", "jupyter-tom").unwrap();
    let claim = claim_of(&pod).expect("a claim");
    let pvc = sim
        .object("persistentvolumeclaims", "default", &claim)
        .unwrap();
    assert_eq!(
        pvc["metadata"]["annotations"]["hub.jupyter.org/username"],
        "tom"
    );
    new.stop(true).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_403_is_fine_when_the_claim_exists_and_reported_when_not() {
    let sim = sim().await;
    let cluster = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" } } }),
    );
    let first = cluster.spawner(user("uma"), "");
    first.start(request("uma", "")).await.unwrap();
    first.stop(true).await.unwrap();

    sim.faults()
        .quota_exceeded("default", "persistentvolumeclaims");
    // The hub lost the state: the create is refused by quota, but the claim exists.
    let again = cluster.spawner(user("uma"), "");
    again
        .start(request("uma", ""))
        .await
        .expect("existing claim used despite the quota");
    again.stop(true).await.unwrap();

    let newcomer = cluster.spawner(user("vera"), "");
    let error = newcomer
        .start(request("vera", ""))
        .await
        .expect_err("no claim, no room");
    assert!(
        matches!(error, egi_spawner::Error::QuotaExceeded { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("exceeded quota"), "{error}");
    assert!(
        sim.object("pods", "default", "jupyter-vera").is_none(),
        "nothing half-made"
    );
    assert_eq!(
        newcomer.poll().await.unwrap(),
        PollStatus::Exited {
            code: 0,
            reason: None
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_growth_expands_when_the_class_allows() {
    let sim = sim().await;
    let small = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" }, "capacity": "1Gi" } }),
    );
    let spawner = small.spawner(user("wim"), "");
    spawner.start(request("wim", "")).await.unwrap();
    spawner.stop(true).await.unwrap();
    let state = spawner.state();

    let big = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" }, "capacity": "5Gi" } }),
    );
    let grown = big.spawner(user("wim"), "");
    grown.load_state(state);
    grown.start(request("wim", "")).await.unwrap();
    let pvc = sim
        .object("persistentvolumeclaims", "default", "claim-wim")
        .unwrap();
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "5Gi");
    grown.stop(true).await.unwrap();

    // A class without expansion: the claim keeps its size and the start still succeeds.
    let fixed_small = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" }, "capacity": "1Gi", "storage_class": "fixed" } }),
    );
    let x = fixed_small.spawner(user("xena"), "");
    x.start(request("xena", "")).await.unwrap();
    x.stop(true).await.unwrap();
    let fixed_big = cluster(
        &sim,
        json!({ "storage": { "policy": { "type": "per-user" }, "capacity": "5Gi", "storage_class": "fixed" } }),
    );
    let y = fixed_big.spawner(user("xena"), "");
    y.load_state(x.state());
    y.start(request("xena", ""))
        .await
        .expect("start does not fail on a fixed class");
    let pvc = sim
        .object("persistentvolumeclaims", "default", "claim-xena")
        .unwrap();
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "1Gi");
    y.stop(true).await.unwrap();
}
