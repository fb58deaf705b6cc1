//! The REST and watch protocol, checked over plain HTTP.

use std::time::Duration;

use egi_test_harness::kubesim::SimOptions;
use serde_json::json;

use crate::helpers::{Api, Next, pod, pvc, sim, sim_with, until};

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn discovery_and_version() {
    let sim = sim().await;
    let api = Api::new(&sim);
    let (code, v) = api.get("/api/v1").await;
    assert_eq!(code, 200);
    let pods = v["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap()
        .clone();
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(pods["namespaced"], true);
    assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
    let (_, v) = api.get("/apis").await;
    assert_eq!(v["groups"][0]["name"], "storage.k8s.io");
    let (_, v) = api.get("/apis/storage.k8s.io/v1/storageclasses").await;
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fixed", "standard"]);
    let (code, v) = api.get("/version").await;
    assert_eq!((code, v["major"].as_str()), (200, Some("1")));
    assert_eq!(api.get("/healthz").await, (200, json!("ok")));
    assert_eq!(api.get("/nope").await.0, 404);
    assert!(sim.counters().non_resource >= 5);
}

#[tokio::test]
async fn create_get_list_and_errors() {
    let sim = sim().await;
    let api = Api::new(&sim);
    let (code, created) = api.post(PODS, &pod("a", &json!({"app": "x"}))).await;
    assert_eq!(code, 201);
    let uid = created["metadata"]["uid"].as_str().unwrap().to_owned();
    assert_eq!(uid.len(), 36);
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert!(created["metadata"].get("managedFields").is_none());
    assert_eq!(created["status"]["phase"], "Pending");

    let (code, s) = api.post(PODS, &pod("a", &json!({}))).await;
    assert_eq!(code, 409);
    assert_eq!(s["reason"], "AlreadyExists");
    assert_eq!(s["message"], "pods \"a\" already exists");
    assert_eq!(s["details"], json!({"name": "a", "kind": "pods"}));

    let (code, s) = api.post(PODS, &pod("Bad_Name", &json!({}))).await;
    assert_eq!(code, 422);
    assert_eq!(s["kind"], "Status");
    assert_eq!(s["reason"], "Invalid");
    assert_eq!(s["details"]["causes"][0]["field"], "metadata.name");
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .starts_with("Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\"")
    );
    let (code, s) = api
        .post("/api/v1/namespaces", &json!({"metadata": {"name": "a.b"}}))
        .await;
    assert_eq!(code, 422);
    assert!(s["message"].as_str().unwrap().contains("RFC 1123 label"));

    let (code, s) = api.get(&format!("{PODS}/missing")).await;
    assert_eq!(
        (code, s["reason"].as_str(), s["message"].as_str()),
        (404, Some("NotFound"), Some("pods \"missing\" not found"))
    );
    let (code, s) = api
        .post("/api/v1/namespaces/nowhere/pods", &pod("b", &json!({})))
        .await;
    assert_eq!(
        (code, s["message"].as_str()),
        (404, Some("namespaces \"nowhere\" not found"))
    );

    let mut generated = pod("", &json!({"app": "y"}));
    generated["metadata"]["generateName"] = json!("jupyter-");
    let (code, g) = api.post(PODS, &generated).await;
    assert_eq!(code, 201);
    assert!(
        g["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("jupyter-")
    );
    assert_eq!(
        g["metadata"]["name"].as_str().unwrap().len(),
        "jupyter-".len() + 5
    );

    let (_, list) = api.get(&format!("{PODS}?labelSelector=app%3Dx")).await;
    assert_eq!(list["kind"], "PodList");
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let list_rv: u64 = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        list_rv
            >= created["metadata"]["resourceVersion"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
    );
    let (_, list) = api
        .get(&format!("{PODS}?labelSelector=app%20in%20(x,y),app!=z"))
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (_, list) = api
        .get("/api/v1/pods?fieldSelector=metadata.name%3Da")
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let (code, s) = api
        .get(&format!("{PODS}?fieldSelector=spec.bogus%3Dx"))
        .await;
    assert_eq!(
        (code, s["reason"].as_str(), s["message"].as_str()),
        (
            400,
            Some("BadRequest"),
            Some("field label not supported: spec.bogus")
        )
    );

    // Paging.
    let (_, page) = api.get(&format!("{PODS}?limit=1")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cont = page["metadata"]["continue"].as_str().unwrap().to_owned();
    assert_eq!(page["metadata"]["remainingItemCount"], 1);
    let (_, page2) = api.get(&format!("{PODS}?limit=1&continue={cont}")).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_ne!(
        page["items"][0]["metadata"]["name"],
        page2["items"][0]["metadata"]["name"]
    );
    assert!(page2["metadata"].get("continue").is_none());

    let c = sim.counters();
    assert_eq!(c.count("create", "pods", "default"), 4);
    assert_eq!(c.count("create", "pods", "nowhere"), 1);
    assert_eq!(c.count("create", "namespaces", ""), 1);
    assert_eq!(c.count("list", "pods", ""), 1);
    assert_eq!(c.count("get", "pods", "default"), 1);
    assert_eq!(c.verb("list"), 6);
}

#[tokio::test]
async fn replace_patch_and_status() {
    let sim = sim().await;
    let api = Api::new(&sim);
    let (_, s) = api
        .post(
            "/api/v1/namespaces/default/secrets",
            &json!({"metadata": {"name": "s", "labels": {"a": "1"}}, "stringData": {"k": "hello"}}),
        )
        .await;
    assert_eq!(s["data"]["k"], "aGVsbG8=");
    assert_eq!(s["type"], "Opaque");
    let path = "/api/v1/namespaces/default/secrets/s";
    let mut stale = s.clone();
    let (code, s2) = api.put(path, &json!({"metadata": {"name": "s", "resourceVersion": s["metadata"]["resourceVersion"]}, "data": {"k": "eA=="}})).await;
    assert_eq!(code, 200);
    assert_eq!(s2["metadata"]["uid"], s["metadata"]["uid"]);
    assert_ne!(
        s2["metadata"]["resourceVersion"],
        s["metadata"]["resourceVersion"]
    );
    stale["data"]["k"] = json!("eQ==");
    let (code, c) = api.put(path, &stale).await;
    assert_eq!((code, c["reason"].as_str()), (409, Some("Conflict")));
    assert_eq!(
        c["message"],
        "Operation cannot be fulfilled on secrets \"s\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // Without a resourceVersion, a replace is unconditional.
    stale["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert_eq!(api.put(path, &stale).await.0, 200);

    let (code, m) = api
        .patch(
            path,
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"a": null, "b": "2"}}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(m["metadata"]["labels"], json!({"b": "2"}));
    let (_, j) = api
        .patch(
            path,
            "application/json-patch+json",
            &json!([{"op": "add", "path": "/metadata/labels/c", "value": "3"}]),
        )
        .await;
    assert_eq!(j["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    let (code, _) = api
        .patch(
            path,
            "application/json-patch+json",
            &json!([{"op": "test", "path": "/metadata/labels/c", "value": "4"}]),
        )
        .await;
    assert_eq!(code, 422);
    let (code, _) = api
        .patch(path, "application/apply-patch+yaml", &json!({}))
        .await;
    assert_eq!(code, 415);

    // Pods: strategic merge by container name, status only through /status.
    api.post(PODS, &pod("p", &json!({}))).await;
    let (code, p) = api
        .patch(
            &format!("{PODS}/p"),
            "application/strategic-merge-patch+json",
            &json!({
                "metadata": {"annotations": {"x": "y"}},
                "spec": {"containers": [{"name": "notebook", "image": "other:1"}]},
                "status": {"phase": "Failed"}
            }),
        )
        .await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["spec"]["containers"].as_array().unwrap().len(), 1);
    assert_eq!(p["spec"]["containers"][0]["image"], "other:1");
    assert_eq!(
        p["spec"]["containers"][0]["ports"][0]["containerPort"],
        8888
    );
    assert_ne!(p["status"]["phase"], "Failed");
    let (code, s) = api
        .patch(
            &format!("{PODS}/p"),
            "application/merge-patch+json",
            &json!({"spec": {"restartPolicy": "Never"}}),
        )
        .await;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
    let (code, st) = api
        .patch(
            &format!("{PODS}/p/status"),
            "application/merge-patch+json",
            &json!({"status": {"message": "hi"}, "metadata": {"labels": {"ignored": "1"}}}),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(st["status"]["message"], "hi");
    assert!(st["metadata"]["labels"].get("ignored").is_none());
    let c = sim.counters();
    assert_eq!(c.count("patch", "pods/status", "default"), 1);
    assert_eq!(c.verb("update"), 3);
}

#[tokio::test]
async fn delete_preconditions_and_grace() {
    let sim = sim_with(SimOptions {
        terminate_delay: Duration::from_secs(3),
        ..SimOptions::default()
    })
    .await;
    let api = Api::new(&sim);
    let (_, p) = api.post(PODS, &pod("t", &json!({}))).await;
    until(5, "pod scheduled", async || {
        sim.object("pods", "default", "t")
            .filter(|p| p["spec"]["nodeName"].is_string())
    })
    .await;
    let (code, s) = api.delete(&format!("{PODS}/t"), Some(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "wrong"}}))).await;
    assert_eq!(code, 409);
    assert_eq!(s["reason"], "Conflict");
    assert_eq!(
        s["message"],
        format!(
            "Operation cannot be fulfilled on pods \"t\": Precondition failed: UID in precondition: wrong, UID in object meta: {}",
            p["metadata"]["uid"].as_str().unwrap()
        )
    );
    let (code, d) = api
        .delete(
            &format!("{PODS}/t"),
            Some(
                &json!({"preconditions": {"uid": p["metadata"]["uid"]}, "gracePeriodSeconds": 30}),
            ),
        )
        .await;
    assert_eq!(code, 200);
    assert!(d["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(d["metadata"]["deletionGracePeriodSeconds"], 30);
    // Still terminating: the name is taken, and a second delete answers the object.
    let (code, s) = api.post(PODS, &pod("t", &json!({}))).await;
    assert_eq!((code, s["reason"].as_str()), (409, Some("AlreadyExists")));
    let (code, again) = api.delete(&format!("{PODS}/t"), None).await;
    assert_eq!((code, again["metadata"]["name"].as_str()), (200, Some("t")));
    // Grace 0 removes it at once.
    let (code, _) = api
        .delete(&format!("{PODS}/t?gracePeriodSeconds=0"), None)
        .await;
    assert_eq!(code, 200);
    assert!(sim.object("pods", "default", "t").is_none());
    assert_eq!(api.delete(&format!("{PODS}/t"), None).await.0, 404);
    // Unscheduled pods go at once; secrets answer a Success Status.
    sim.faults().unschedulable("default", "u");
    api.post(PODS, &pod("u", &json!({}))).await;
    api.delete(&format!("{PODS}/u"), None).await;
    assert!(sim.object("pods", "default", "u").is_none());
    api.post(
        "/api/v1/namespaces/default/secrets",
        &json!({"metadata": {"name": "s"}}),
    )
    .await;
    let (code, s) = api
        .delete("/api/v1/namespaces/default/secrets/s", None)
        .await;
    assert_eq!(
        (code, s["status"].as_str(), s["details"]["name"].as_str()),
        (200, Some("Success"), Some("s"))
    );
}

#[tokio::test]
async fn watch_replays_selects_and_expires() {
    let sim = sim().await;
    let api = Api::new(&sim);
    let (_, list) = api.get(PODS).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut w = api
        .watch(&format!(
            "{PODS}?watch=1&labelSelector=app%3Dx&resourceVersion={rv}"
        ))
        .await;
    assert_eq!(sim.counters().open_watches_on("pods", "default"), 1);
    api.post(PODS, &pod("w", &json!({"app": "x"}))).await;
    let e = w.event(5).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("w"))
    );
    // Stops matching: DELETED for this watcher.
    api.patch(
        &format!("{PODS}/w"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"app": "y"}}}),
    )
    .await;
    let e = w.until(5, "DELETED", "w").await;
    assert_eq!(e["object"]["metadata"]["labels"]["app"], "y");
    // Matches again: ADDED.
    api.patch(
        &format!("{PODS}/w"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"app": "x"}}}),
    )
    .await;
    w.until(5, "ADDED", "w").await;

    // Resuming from the list version replays everything since.
    let mut replay = api
        .watch(&format!("{PODS}?watch=true&resourceVersion={rv}"))
        .await;
    let first = replay.event(5).await;
    assert_eq!(first["type"], "ADDED");
    let mut last_rv: u64 = 0;
    for _ in 0..3 {
        let e = replay.event(5).await;
        let this: u64 = e["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(this > last_rv);
        last_rv = this;
    }

    // After compaction, an old version gets an ERROR event with 410 Expired, and the end.
    sim.faults().compact_history();
    let mut old = api
        .watch(&format!("{PODS}?watch=1&resourceVersion={rv}"))
        .await;
    let Next::Event(e) = old.next(Duration::from_secs(5)).await else {
        panic!("no error event")
    };
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(
        e["object"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("too old resource version: {rv} ("))
    );
    assert_eq!(old.next(Duration::from_secs(5)).await, Next::End);

    // resourceVersion 0: current objects as ADDED first.
    let mut fresh = api
        .watch(&format!(
            "{PODS}?watch=1&resourceVersion=0&fieldSelector=metadata.name%3Dw"
        ))
        .await;
    let e = fresh.event(5).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("w"))
    );
    let c = sim.counters();
    assert_eq!(c.verb("watch"), 4);
    assert!(c.peak_open_watches >= 3);
}

#[tokio::test]
async fn bookmarks_timeouts_and_dropped_watches() {
    let sim = sim().await;
    let api = Api::new(&sim);
    let mut w = api
        .watch(&format!(
            "{PODS}?watch=1&allowWatchBookmarks=true&resourceVersion=0"
        ))
        .await;
    api.post(PODS, &pod("b", &json!({}))).await;
    let rv_after = sim.resource_version();
    let bm = loop {
        match w.next(Duration::from_secs(5)).await {
            Next::Event(e) if e["type"] == "BOOKMARK" => break e,
            Next::Event(_) => continue,
            other => panic!("no bookmark: {other:?}"),
        }
    };
    assert_eq!(bm["object"]["kind"], "Pod");
    assert_eq!(bm["object"]["apiVersion"], "v1");
    let bm_rv: u64 = bm["object"]["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bm_rv >= rv_after.min(bm_rv) && bm_rv > 0);

    // sendInitialEvents: the initial ADDED, then a bookmark marking their end.
    let mut s = api.watch(&format!("{PODS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")).await;
    let e = s.next(Duration::from_secs(5)).await;
    assert!(
        matches!(&e, Next::Event(e) if e["type"] == "ADDED"),
        "{e:?}"
    );
    let Next::Event(end) = s.next(Duration::from_secs(5)).await else {
        panic!("no bookmark")
    };
    assert_eq!(end["type"], "BOOKMARK");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    let mut t = api
        .watch(&format!(
            "{PODS}?watch=1&timeoutSeconds=1&resourceVersion={rv_after}"
        ))
        .await;
    let started = std::time::Instant::now();
    loop {
        match t.next(Duration::from_secs(5)).await {
            Next::Event(_) => continue,
            Next::End => break,
            other => panic!("timeout did not end the watch cleanly: {other:?}"),
        }
    }
    assert!(started.elapsed() >= Duration::from_millis(900));

    assert_eq!(sim.counters().open_watches, 2);
    sim.faults().drop_watches();
    let mut ends = Vec::new();
    for mut x in [w, s] {
        loop {
            match x.next(Duration::from_secs(5)).await {
                Next::Event(_) => continue,
                other => {
                    ends.push(other);
                    break;
                }
            }
        }
    }
    assert_eq!(ends, [Next::Broken, Next::Broken]);
    until(5, "watches closed", async || {
        (sim.counters().open_watches == 0).then_some(())
    })
    .await;
    assert_eq!(sim.counters().peak_open_watches, 3);
}

#[tokio::test]
async fn slow_watchers_are_ended_not_waited_for() {
    let sim = sim_with(SimOptions {
        watch_buffer: 16,
        ..SimOptions::default()
    })
    .await;
    let api = Api::new(&sim);
    // Opened but never read: writers must not block on it.
    let mut idle = api
        .watch("/api/v1/namespaces/default/secrets?watch=1")
        .await;
    let started = std::time::Instant::now();
    for i in 0..2000 {
        let big = "x".repeat(4096);
        sim.put_object("secrets", json!({"metadata": {"name": format!("s{i}"), "namespace": "default"}, "data": {"k": big}})).unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(20));
    // It lagged more than the buffer: its stream ends once the buffered lines are read.
    let mut seen = 0;
    loop {
        match idle.next(Duration::from_secs(10)).await {
            Next::Event(_) => seen += 1,
            Next::End => break,
            other => panic!("{other:?}"),
        }
    }
    assert!(seen < 2000, "saw {seen}");
}

#[tokio::test]
async fn quota_and_latency_faults() {
    let sim = sim().await;
    let api = Api::new(&sim);
    sim.faults().quota_exceeded("default", "pvc");
    let (code, s) = api
        .post(
            "/api/v1/namespaces/default/persistentvolumeclaims",
            &pvc("claim-x", "10Gi", None),
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(s["reason"], "Forbidden");
    assert_eq!(
        s["message"],
        "persistentvolumeclaims \"claim-x\" is forbidden: exceeded quota: storage, requested: requests.storage=10Gi, used: requests.storage=100Gi, limited: requests.storage=100Gi"
    );
    assert_eq!(s["details"]["kind"], "persistentvolumeclaims");
    sim.faults()
        .clear_quota("default", "persistentvolumeclaims");
    assert_eq!(
        api.post(
            "/api/v1/namespaces/default/persistentvolumeclaims",
            &pvc("claim-x", "10Gi", None)
        )
        .await
        .0,
        201
    );

    sim.faults().set_latency(Duration::from_millis(300));
    let started = std::time::Instant::now();
    api.get("/api/v1/namespaces/default/persistentvolumeclaims/claim-x")
        .await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    sim.faults().set_latency(Duration::ZERO);

    // The same faults over the admin API, as the binary is driven.
    let (code, _) = api
        .post(
            "/simulator/faults",
            &json!({"action": "quota_exceeded", "namespace": "default", "resource": "pods"}),
        )
        .await;
    assert_eq!(code, 200);
    let (code, s) = api.post(PODS, &pod("q", &json!({}))).await;
    assert_eq!((code, s["reason"].as_str()), (403, Some("Forbidden")));
    assert_eq!(
        api.post("/simulator/faults", &json!({"action": "nope"}))
            .await
            .0,
        400
    );
    let (_, counters) = api.get("/simulator/counters").await;
    assert_eq!(counters["verbs"]["create"], 3);
    api.post("/simulator/reset-counters", &json!({})).await;
    assert_eq!(sim.counters().verb("create"), 0);
}

#[tokio::test]
async fn pvcs_bind_and_expand() {
    let sim = sim().await;
    let api = Api::new(&sim);
    let base = "/api/v1/namespaces/default/persistentvolumeclaims";
    let (_, c) = api.post(base, &pvc("claim-a", "1Gi", None)).await;
    assert_eq!(c["spec"]["storageClassName"], "standard");
    let bound = until(5, "claim-a bound", async || {
        sim.object("pvc", "default", "claim-a")
            .filter(|p| p["status"]["phase"] == "Bound")
    })
    .await;
    assert_eq!(bound["status"]["capacity"]["storage"], "1Gi");
    assert_eq!(
        bound["spec"]["volumeName"],
        format!("pvc-{}", c["metadata"]["uid"].as_str().unwrap())
    );

    let (code, _) = api
        .patch(
            &format!("{base}/claim-a"),
            "application/merge-patch+json",
            &json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}}),
        )
        .await;
    assert_eq!(code, 200);
    until(5, "capacity 2Gi", async || {
        sim.object("pvc", "default", "claim-a")
            .filter(|p| p["status"]["capacity"]["storage"] == "2Gi")
    })
    .await;
    let (code, s) = api
        .patch(
            &format!("{base}/claim-a"),
            "application/merge-patch+json",
            &json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
        )
        .await;
    assert_eq!(code, 422);
    assert_eq!(
        s["message"],
        "PersistentVolumeClaim \"claim-a\" is invalid: spec.resources.requests.storage: Forbidden: field can not be less than previous value"
    );

    api.post(base, &pvc("claim-f", "1Gi", Some("fixed"))).await;
    until(5, "claim-f bound", async || {
        sim.object("pvc", "default", "claim-f")
            .filter(|p| p["status"]["phase"] == "Bound")
    })
    .await;
    let (code, s) = api
        .patch(
            &format!("{base}/claim-f"),
            "application/strategic-merge-patch+json",
            &json!({"spec": {"resources": {"requests": {"storage": "5Gi"}}}}),
        )
        .await;
    assert_eq!(code, 403);
    assert_eq!(
        s["message"],
        "persistentvolumeclaims \"claim-f\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
    );

    let (code, s) = api
        .post(
            base,
            &json!({"metadata": {"name": "bad"}, "spec": {"accessModes": ["ReadWriteOnce"]}}),
        )
        .await;
    assert_eq!((code, s["reason"].as_str()), (422, Some("Invalid")));
    api.post(base, &pvc("claim-none", "1Gi", Some("nonexistent")))
        .await;
    until(5, "ProvisioningFailed", async || {
        sim.objects("events", "default").into_iter().find(|e| {
            e["reason"] == "ProvisioningFailed" && e["involvedObject"]["name"] == "claim-none"
        })
    })
    .await;
    assert_eq!(
        sim.object("pvc", "default", "claim-none").unwrap()["status"]["phase"],
        "Pending"
    );
}

#[tokio::test]
async fn garbage_collection_and_namespaces() {
    let sim = sim().await;
    let api = Api::new(&sim);
    let (_, p) = api.post(PODS, &pod("owner", &json!({}))).await;
    let owner = json!([{"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": p["metadata"]["uid"], "blockOwnerDeletion": true}]);
    api.post(
        "/api/v1/namespaces/default/secrets",
        &json!({"metadata": {"name": "owned", "ownerReferences": owner}}),
    )
    .await;
    api.post("/api/v1/namespaces/default/secrets", &json!({"metadata": {"name": "orphan", "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "gone", "uid": "no-such-uid"}]}})).await;
    until(5, "orphan collected", async || {
        sim.object("secret", "default", "orphan")
            .is_none()
            .then_some(())
    })
    .await;
    assert!(sim.object("secret", "default", "owned").is_some());
    api.delete(&format!("{PODS}/owner?gracePeriodSeconds=0"), None)
        .await;
    until(5, "owned secret collected", async || {
        sim.object("secret", "default", "owned")
            .is_none()
            .then_some(())
    })
    .await;

    // Namespace deletion empties it, then it goes.
    assert_eq!(
        api.post(
            "/api/v1/namespaces",
            &json!({"metadata": {"name": "user-ns"}})
        )
        .await
        .0,
        201
    );
    api.post("/api/v1/namespaces/user-ns/pods", &pod("p", &json!({})))
        .await;
    let (code, ns) = api.delete("/api/v1/namespaces/user-ns", None).await;
    assert_eq!(
        (code, ns["status"]["phase"].as_str()),
        (200, Some("Terminating"))
    );
    let (code, s) = api
        .post(
            "/api/v1/namespaces/user-ns/secrets",
            &json!({"metadata": {"name": "late"}}),
        )
        .await;
    assert_eq!((code, s["reason"].as_str()), (403, Some("Forbidden")));
    until(5, "namespace gone", async || {
        sim.object("ns", "", "user-ns").is_none().then_some(())
    })
    .await;
    assert!(sim.objects("pods", "user-ns").is_empty());
}

#[tokio::test]
async fn binary_serves_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubesim"))
        .args([
            "--port",
            "0",
            "--ready-delay-ms",
            "50",
            "--bookmark-interval-ms",
            "100",
            "--kubeconfig",
        ])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let url = first
        .strip_prefix("listening on ")
        .expect("first line")
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"));
    assert!(
        std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains(&format!("server: {url}"))
    );
    let client = reqwest::Client::new();
    let v: serde_json::Value = client
        .get(format!("{url}/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["major"], "1");
    let r = client
        .post(format!("{url}/simulator/faults"))
        .body(r#"{"action":"fail_image_pull","pattern":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_racing_the_kubelet_lose_nothing() {
    let sim = sim().await;
    let api = Api::new(&sim);
    api.post(PODS, &pod("race", &json!({}))).await;
    let mut i = 0;
    let p = until(5, "Running", async || {
        i += 1;
        let (code, _) = api
            .patch(
                &format!("{PODS}/race"),
                "application/merge-patch+json",
                &json!({"metadata": {"labels": {format!("l{i}"): "x"}}}),
            )
            .await;
        assert_eq!(code, 200);
        sim.object("pods", "default", "race")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    assert_eq!(p["spec"]["nodeName"], "sim-node");
    assert_eq!(p["metadata"]["labels"].as_object().unwrap().len(), i);
}
