//! What real controllers do late: the garbage collector acting on what it observed, the
//! scheduler not seeing a new claim yet, and API server restarts that expire watches.

use std::time::{Duration, Instant};

use egi_test_harness::kubesim::SimOptions;
use serde_json::{Value, json};

use crate::helpers::{Api, Next, pod, pod_events, pvc, sim_with, until};

const PODS: &str = "/api/v1/namespaces/default/pods";
const SECRETS: &str = "/api/v1/namespaces/default/secrets";

fn owned_secret(name: &str, owner: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "Pod",
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}]},
        "data": {"k": "dg=="}})
}

/// A dependent replaced in place (PUT keeps its UID) after its owner went is still deleted
/// by the collector, which acts on the owners it observed; one deleted and created again (a
/// new UID) survives. With `count_controllers`, the collector's GET and DELETE are counted.
#[tokio::test]
async fn the_collector_acts_on_what_it_observed() {
    let sim = sim_with(SimOptions {
        gc_delay: Duration::from_millis(400),
        count_controllers: true,
        ..SimOptions::default()
    })
    .await;
    let api = Api::new(&sim);
    let (_, old) = api.post(PODS, &pod("gc-a", &json!({}))).await;
    for name in ["replaced", "recreated"] {
        let (code, _) = api.post(SECRETS, &owned_secret(name, &old)).await;
        assert_eq!(code, 201);
    }
    let (code, _) = api
        .delete(
            &format!("{PODS}/gc-a"),
            Some(&json!({"gracePeriodSeconds": 0})),
        )
        .await;
    assert_eq!(code, 200);
    let (_, new) = api.post(PODS, &pod("gc-b", &json!({}))).await;
    // Within the collector's delay: one Secret replaced in place, one deleted and created.
    let (code, replaced) = api
        .put(
            &format!("{SECRETS}/replaced"),
            &owned_secret("replaced", &new),
        )
        .await;
    assert_eq!(code, 200, "{replaced}");
    api.delete(&format!("{SECRETS}/recreated"), None).await;
    let (code, _) = api.post(SECRETS, &owned_secret("recreated", &new)).await;
    assert_eq!(code, 201);
    sim.reset_counters();
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        sim.object("secrets", "default", "replaced").is_none(),
        "the collector deleted the Secret replaced in place"
    );
    assert!(
        sim.object("secrets", "default", "recreated").is_some(),
        "a Secret with a new UID is not the one the collector observed"
    );
    let counters = sim.counters();
    assert_eq!(
        counters.count("get", "secrets", "default"),
        2,
        "{counters:?}"
    );
    assert_eq!(counters.count("delete", "secrets", "default"), 1);
}

/// A pod mounting a claim the scheduler has not seen yet is unschedulable ("not found"),
/// then scheduled at its next retry.
#[tokio::test]
async fn the_scheduler_sees_new_claims_late() {
    let sim = sim_with(SimOptions {
        scheduler_lag: Duration::from_millis(300),
        backoff: Duration::from_millis(200),
        ..SimOptions::default()
    })
    .await;
    let api = Api::new(&sim);
    api.post(
        "/api/v1/namespaces/default/persistentvolumeclaims",
        &pvc("claim-lag", "1Gi", None),
    )
    .await;
    let mut p = pod("lagging", &json!({}));
    p["spec"]["volumes"] =
        json!([{"name": "home", "persistentVolumeClaim": {"claimName": "claim-lag"}}]);
    api.post(PODS, &p).await;
    until(5, "pod Running", async || {
        sim.object("pods", "default", "lagging")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let events = pod_events(&sim, "default", "lagging");
    let failed: Vec<&str> = events
        .iter()
        .filter(|e| e["reason"] == "FailedScheduling")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        failed
            .iter()
            .any(|m| m.contains("persistentvolumeclaim \"claim-lag\" not found")),
        "{events:#?}"
    );
}

/// A restart ends every watch, answers 503 while down, and loses the history: a watch resumed
/// from before it gets 410 Expired; a fresh list works once the server is back.
#[tokio::test]
async fn an_api_restart_expires_watches() {
    let sim = sim_with(SimOptions::default()).await;
    let api = Api::new(&sim);
    api.post(PODS, &pod("before", &json!({}))).await;
    let (_, list) = api.get(PODS).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut watch = api
        .watch(&format!("{PODS}?watch=1&resourceVersion={rv}"))
        .await;
    let started = Instant::now();
    sim.faults().restart_api(Duration::from_millis(500));
    loop {
        match watch.next(Duration::from_secs(2)).await {
            Next::Event(e) if e["type"] != "ERROR" => continue,
            Next::Broken | Next::End => break,
            other => panic!("the watch should end: {other:?}"),
        }
    }
    let (code, status) = api.get(PODS).await;
    assert_eq!(code, 503, "{status}");
    assert_eq!(status["reason"], "ServiceUnavailable");
    while started.elapsed() < Duration::from_millis(550) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut resumed = api
        .watch(&format!("{PODS}?watch=1&resourceVersion={rv}"))
        .await;
    let e = resumed.event(2).await;
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    let (code, _) = api.get(PODS).await;
    assert_eq!(code, 200);
}
