//! The simulated scheduler and kubelet, and the pod faults.

use std::time::{Duration, Instant};

use egi_test_harness::kubesim::SimOptions;
use serde_json::{Value, json};

use crate::helpers::{Api, pod, pod_events, pvc, sim, sim_with, until};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn reasons(evs: &[Value]) -> Vec<&str> {
    evs.iter().map(|e| e["reason"].as_str().unwrap()).collect()
}

fn waiting_reason(p: &Value) -> Option<String> {
    p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn pods_become_ready_with_events() {
    let sim = sim_with(SimOptions {
        ready_delay: Duration::from_millis(300),
        ..SimOptions::default()
    })
    .await;
    let api = Api::new(&sim);
    let started = Instant::now();
    api.post(PODS, &pod("ready", &json!({}))).await;
    let p = until(5, "pod Running", async || {
        sim.object("pods", "default", "ready")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );
    let st = &p["status"];
    assert!(st["podIP"].as_str().unwrap().starts_with("10."));
    assert!(st["hostIP"].is_string());
    assert!(st["startTime"].is_string());
    assert_eq!(p["spec"]["nodeName"], "sim-node");
    let cs = &st["containerStatuses"][0];
    assert_eq!(
        (
            cs["name"].as_str(),
            cs["ready"].as_bool(),
            cs["started"].as_bool()
        ),
        (Some("notebook"), Some(true), Some(true))
    );
    assert!(cs["state"]["running"]["startedAt"].is_string());
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://")
    );
    for t in ["Initialized", "Ready", "ContainersReady", "PodScheduled"] {
        let c = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap();
        assert_eq!(c["status"], "True", "{t}");
    }
    let evs = pod_events(&sim, "default", "ready");
    assert_eq!(
        reasons(&evs),
        ["Scheduled", "Pulling", "Pulled", "Created", "Started"]
    );
    let e = &evs[1];
    assert_eq!(e["type"], "Normal");
    assert_eq!(e["source"]["component"], "kubelet");
    assert_eq!(
        e["involvedObject"]["fieldPath"],
        "spec.containers{notebook}"
    );
    assert_eq!(e["involvedObject"]["uid"], p["metadata"]["uid"]);
    assert_eq!(e["involvedObject"]["apiVersion"], "v1");
    assert_eq!(e["count"], 1);
    assert!(e["firstTimestamp"].is_string() && e["lastTimestamp"].is_string());
    assert_eq!(
        evs[0]["message"],
        "Successfully assigned default/ready to sim-node"
    );
    // Events are listable by field selector, as spawners ask for them.
    let uid = p["metadata"]["uid"].as_str().unwrap();
    let (_, list) = api.get(&format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.kind%3DPod,involvedObject.uid%3D{uid}")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
    // IPs are unique.
    api.post(PODS, &pod("ready2", &json!({}))).await;
    let p2 = until(5, "second pod Running", async || {
        sim.object("pods", "default", "ready2")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    assert_ne!(p2["status"]["podIP"], st["podIP"]);
}

#[tokio::test]
async fn missing_secret_and_pvc_hold_pods_back() {
    let sim = sim().await;
    let api = Api::new(&sim);
    let mut p = pod("needs", &json!({}));
    p["spec"]["volumes"] = json!([{"name": "tokens", "secret": {"secretName": "tok"}}, {"name": "home", "persistentVolumeClaim": {"claimName": "claim-needs"}}]);
    p["spec"]["containers"][0]["env"] = json!([{"name": "JUPYTERHUB_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "token"}}}]);
    api.post(PODS, &p).await;
    until(5, "FailedScheduling", async || {
        pod_events(&sim, "default", "needs")
            .into_iter()
            .find(|e| e["reason"] == "FailedScheduling")
    })
    .await;
    let pending = sim.object("pods", "default", "needs").unwrap();
    assert_eq!(
        pending["status"]["conditions"][0]["reason"],
        "Unschedulable"
    );
    api.post(
        "/api/v1/namespaces/default/persistentvolumeclaims",
        &pvc("claim-needs", "1Gi", None),
    )
    .await;
    until(5, "FailedMount", async || {
        pod_events(&sim, "default", "needs")
            .into_iter()
            .find(|e| e["reason"] == "FailedMount" && e["type"] == "Warning")
    })
    .await;
    let p = sim.object("pods", "default", "needs").unwrap();
    assert_eq!(waiting_reason(&p).as_deref(), Some("ContainerCreating"));
    assert_eq!(p["status"]["phase"], "Pending");
    api.post(
        "/api/v1/namespaces/default/secrets",
        &json!({"metadata": {"name": "tok"}, "stringData": {"token": "t"}}),
    )
    .await;
    until(5, "pod Running", async || {
        sim.object("pods", "default", "needs")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let evs = pod_events(&sim, "default", "needs");
    let r: Vec<&str> = reasons(&evs)
        .into_iter()
        .filter(|r| !r.starts_with("Failed"))
        .collect();
    assert_eq!(r, ["Scheduled", "Pulling", "Pulled", "Created", "Started"]);
}

#[tokio::test]
async fn image_pull_failures() {
    let sim = sim().await;
    let api = Api::new(&sim);
    sim.faults().fail_image_pull("does-not-exist");
    let mut p = pod("pull", &json!({}));
    p["spec"]["containers"][0]["image"] = json!("quay.io/does-not-exist:1");
    let started = Instant::now();
    api.post(PODS, &p).await;
    let p = until(5, "ErrImagePull", async || {
        sim.object("pods", "default", "pull")
            .filter(|p| waiting_reason(p).as_deref() == Some("ErrImagePull"))
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(
        p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    assert_eq!(p["status"]["phase"], "Pending");
    let failed = pod_events(&sim, "default", "pull")
        .into_iter()
        .find(|e| e["reason"] == "Failed")
        .unwrap();
    assert_eq!(failed["type"], "Warning");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .starts_with("Failed to pull image \"quay.io/does-not-exist:1\": ")
    );
    until(5, "ImagePullBackOff", async || {
        sim.object("pods", "default", "pull")
            .filter(|p| waiting_reason(p).as_deref() == Some("ImagePullBackOff"))
    })
    .await;
    let backoff = pod_events(&sim, "default", "pull")
        .into_iter()
        .find(|e| e["reason"] == "BackOff")
        .unwrap();
    assert_eq!(
        backoff["message"],
        "Back-off pulling image \"quay.io/does-not-exist:1\""
    );
    // The cycle repeats; repeated events are counted, not duplicated.
    until(5, "second Failed", async || {
        pod_events(&sim, "default", "pull")
            .into_iter()
            .find(|e| e["reason"] == "Failed" && e["count"].as_i64() > Some(1))
    })
    .await;
    sim.faults().clear_image_pull();
    until(5, "Running once pulls work", async || {
        sim.object("pods", "default", "pull")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
}

#[tokio::test]
async fn unschedulable_crash_loop_exit_and_eviction() {
    let sim = sim().await;
    let api = Api::new(&sim);
    sim.faults().unschedulable("default", "jupyter-");
    api.post(PODS, &pod("jupyter-big", &json!({}))).await;
    let e = until(5, "FailedScheduling", async || {
        pod_events(&sim, "default", "jupyter-big")
            .into_iter()
            .find(|e| e["reason"] == "FailedScheduling")
    })
    .await;
    assert_eq!(e["type"], "Warning");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("0/1 nodes are available: 1 Insufficient cpu.")
    );
    let p = sim.object("pods", "default", "jupyter-big").unwrap();
    let cond = &p["status"]["conditions"][0];
    assert_eq!(
        (
            cond["type"].as_str(),
            cond["status"].as_str(),
            cond["reason"].as_str()
        ),
        (Some("PodScheduled"), Some("False"), Some("Unschedulable"))
    );
    assert!(p["spec"].get("nodeName").is_none());

    sim.faults().crash_loop("crashy");
    let mut c = pod("crash", &json!({}));
    c["spec"]["containers"][0]["image"] = json!("crashy:1");
    api.post(PODS, &c).await;
    let p = until(5, "CrashLoopBackOff", async || {
        sim.object("pods", "default", "crash")
            .filter(|p| waiting_reason(p).as_deref() == Some("CrashLoopBackOff"))
    })
    .await;
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(cs["restartCount"], 1);
    assert_eq!(cs["ready"], false);
    let e = pod_events(&sim, "default", "crash")
        .into_iter()
        .find(|e| e["reason"] == "BackOff")
        .unwrap();
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .starts_with("Back-off restarting failed container notebook in pod crash_default(")
    );
    until(5, "restartCount 2", async || {
        sim.object("pods", "default", "crash")
            .filter(|p| p["status"]["containerStatuses"][0]["restartCount"] == 2)
    })
    .await;

    api.post(PODS, &pod("done", &json!({}))).await;
    api.post(PODS, &pod("oom", &json!({}))).await;
    for name in ["done", "oom"] {
        until(5, "Running", async || {
            sim.object("pods", "default", name)
                .filter(|p| p["status"]["phase"] == "Running")
        })
        .await;
    }
    sim.faults().exit_container("default", "done", 3).unwrap();
    let p = sim.object("pods", "default", "done").unwrap();
    assert_eq!(p["status"]["phase"], "Failed");
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    sim.faults().evict("default", "oom").unwrap();
    let p = sim.object("pods", "default", "oom").unwrap();
    assert_eq!(
        (
            p["status"]["phase"].as_str(),
            p["status"]["reason"].as_str()
        ),
        (Some("Failed"), Some("Evicted"))
    );
    assert!(
        p["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The node was low on resource: memory.")
    );
    assert!(p["status"]["containerStatuses"][0]["state"]["terminated"].is_object());
    assert!(
        pod_events(&sim, "default", "oom")
            .iter()
            .any(|e| e["reason"] == "Evicted")
    );
    // Finished pods are deleted at once, whatever the grace period.
    api.delete(&format!("{PODS}/oom"), None).await;
    assert!(sim.object("pods", "default", "oom").is_none());
    assert_eq!(sim.faults().evict("default", "oom").unwrap_err().code, 404);
}

#[tokio::test]
async fn seeded_objects_and_runtime_delays() {
    let sim = sim().await;
    let api = Api::new(&sim);
    // A pod left by an earlier hub, already running on the node.
    let stale = json!({
        "metadata": {"name": "jupyter-old", "namespace": "default", "labels": {"component": "singleuser-server"}},
        "spec": {"nodeName": "sim-node", "containers": [{"name": "notebook", "image": "x:1"}]},
        "status": {"phase": "Running", "podIP": "10.1.2.3"}
    });
    let stored = sim.put_object("pods", stale).unwrap();
    assert!(stored["metadata"]["uid"].is_string());
    let (_, got) = api.get(&format!("{PODS}/jupyter-old")).await;
    assert_eq!(got["status"]["podIP"], "10.1.2.3");
    assert_eq!(sim.objects("pods", "default").len(), 1);
    assert_eq!(sim.objects("pods", "").len(), 1);
    assert!(
        sim.put_object("widgets", json!({"metadata": {"name": "w"}}))
            .is_err()
    );

    sim.set_ready_delay(Duration::from_millis(800));
    let started = Instant::now();
    api.post(PODS, &pod("slow", &json!({}))).await;
    until(5, "slow pod Running", async || {
        sim.object("pods", "default", "slow")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(780));
}
