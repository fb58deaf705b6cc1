//! A thousand spawns at once, as the scale benchmark runs them: pods with a Secret volume
//! and env reference created right after the pod, PVCs, one watch on the namespace.

use std::time::{Duration, Instant};

use egi_test_harness::kubesim::SimOptions;
use serde_json::json;

use crate::helpers::{Api, Next, pod, pvc, sim_with};

const N: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_spawns() {
    let sim = sim_with(SimOptions {
        ready_delay: Duration::from_millis(500),
        ..SimOptions::default()
    })
    .await;
    let api = Api::new(&sim);
    let mut watch = api
        .watch("/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true")
        .await;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..N {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("jupyter-user{i}");
            assert_eq!(api.post("/api/v1/namespaces/default/persistentvolumeclaims", &pvc(&format!("claim-user{i}"), "1Gi", None)).await.0, 201);
            let mut p = pod(&name, &json!({"component": "singleuser-server"}));
            p["spec"]["volumes"] = json!([{"name": "tokens", "secret": {"secretName": format!("{name}-tokens")}}, {"name": "home", "persistentVolumeClaim": {"claimName": format!("claim-user{i}")}}]);
            p["spec"]["containers"][0]["env"] = json!([{"name": "JUPYTERHUB_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": format!("{name}-tokens"), "key": "token"}}}]);
            let (code, created) = api.post("/api/v1/namespaces/default/pods", &p).await;
            assert_eq!(code, 201);
            let owner = json!([{"apiVersion": "v1", "kind": "Pod", "name": name, "uid": created["metadata"]["uid"]}]);
            let secret = json!({"metadata": {"name": format!("{name}-tokens"), "ownerReferences": owner}, "stringData": {"token": "t"}});
            assert_eq!(api.post("/api/v1/namespaces/default/secrets", &secret).await.0, 201);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let created = started.elapsed();
    let mut running = std::collections::HashSet::new();
    while running.len() < N {
        match watch.next(Duration::from_secs(60)).await {
            Next::Event(e)
                if e["object"]["status"]["phase"] == "Running"
                    && e["object"]["status"]["podIP"].is_string() =>
            {
                running.insert(e["object"]["metadata"]["name"].as_str().unwrap().to_owned());
            }
            Next::Event(_) => {}
            other => panic!("watch ended after {} running: {other:?}", running.len()),
        }
    }
    let all = started.elapsed();
    eprintln!("{N} spawns: created in {created:?}, all running in {all:?}");
    assert!(all < Duration::from_secs(60), "{all:?}");
    let events = sim.objects("events", "default").len();
    assert!(events >= 5 * N, "{events} events");
    let c = sim.counters();
    assert_eq!(c.count("create", "pods", "default"), N as u64);
    assert_eq!(c.open_watches, 1);
}
