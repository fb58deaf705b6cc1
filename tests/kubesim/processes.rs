//! Process pods (containers run as local processes) and `/metrics`.

use std::collections::HashMap;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use egi_test_harness::kubesim::{KubeSim, ProcessImage, SimOptions};
use egi_test_harness::prometheus::{Prometheus, ScrapeTarget};
use serde_json::{Value, json};

use crate::helpers::{Api, pod_events, pvc, sim_with, until};

const PODS: &str = "/api/v1/namespaces/default/pods";

/// `sh -c SCRIPT` for images containing `image`.
fn shell(image: &str, script: &str) -> ProcessImage {
    ProcessImage::new(image, ["sh", "-c", script])
}

async fn process_sim(images: Vec<ProcessImage>) -> KubeSim {
    sim_with(SimOptions {
        backoff: Duration::from_millis(300),
        ready_delay: Duration::from_millis(50),
        process_images: images,
        metrics_linger: Duration::from_secs(30),
        ..SimOptions::default()
    })
    .await
}

/// A notebook-like pod of `image` with a claim at /home/jovyan, a Secret volume at
/// /var/run/secrets/egi.eu and TOKEN from the Secret.
fn notebook(name: &str, image: &str, claim: &str, restart: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"component": "singleuser-server"},
            "annotations": {"hub.jupyter.org/username": "alice", "egi.eu/primary_group": "vo.example.eu", "other/annotation": "x"}},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "notebook", "image": image,
                "ports": [{"name": "notebook-port", "containerPort": free_port()}],
                "env": [
                    {"name": "PYTHONUNBUFFERED", "value": "1"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "tokens", "key": "access_token"}}},
                    {"name": "TOKEN_FILE", "value": "/var/run/secrets/egi.eu/access_token"},
                    {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                ],
                "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}},
                "volumeMounts": [
                    {"name": "home", "mountPath": "/home/jovyan"},
                    {"name": "egi", "mountPath": "/var/run/secrets/egi.eu", "readOnly": true},
                ],
            }],
            "volumes": [
                {"name": "home", "persistentVolumeClaim": {"claimName": claim}},
                {"name": "egi", "secret": {"secretName": "tokens"}},
            ],
        }
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn secret(token: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "tokens"},
        "stringData": {"access_token": token}})
}

/// Whether a process lives (not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().chars().next())
        })
        .flatten()
        .is_some_and(|state| state != 'Z' && state != 'X')
}

async fn http_get(url: &str) -> Option<String> {
    let resp = reqwest::get(url).await.ok()?;
    resp.status()
        .is_success()
        .then_some(resp.text().await.ok()?)
}

fn addr(p: &Value) -> String {
    format!(
        "{}:{}",
        p["status"]["podIP"].as_str().unwrap(),
        p["spec"]["containers"][0]["ports"][0]["containerPort"]
    )
}

#[tokio::test]
async fn process_pod_runs_with_env_files_and_stops_on_delete() {
    // Serves its home after a second, having written what it was given there.
    let script = "echo \"$TOKEN $MY_POD\" > env.txt; echo \"$KUBESIM_MOUNT_VAR_RUN_SECRETS_EGI_EU\" > mount.txt; \
        echo \"$TOKEN_FILE\" > token_file.txt; ln -sfn \"$KUBESIM_MOUNT_VAR_RUN_SECRETS_EGI_EU\" secrets; \
        [ -f persisted.txt ] || echo first > persisted.txt; sleep 1; \
        exec python3 -m http.server {port} --bind {pod_ip}";
    let sim = process_sim(vec![shell("kubesim/served", script)]).await;
    let api = Api::new(&sim);
    api.post("/api/v1/namespaces/default/secrets", &secret("t0k3n"))
        .await;
    api.post(
        "/api/v1/namespaces/default/persistentvolumeclaims",
        &pvc("claim-alice", "1Gi", None),
    )
    .await;
    let (code, _) = api
        .post(
            PODS,
            &notebook(
                "jupyter-alice",
                "kubesim/served:1",
                "claim-alice",
                "OnFailure",
            ),
        )
        .await;
    assert_eq!(code, 201);
    // Started but not listening yet: Pending.
    let pid = until(10, "a process", async || {
        sim.pod_pids("default", "jupyter-alice").first().copied()
    })
    .await;
    assert!(alive(pid));
    let p = sim.object("pods", "default", "jupyter-alice").unwrap();
    assert_eq!(p["status"]["phase"], "Pending", "{p}");
    // Running once the port answers, at the pod IP.
    let p = until(15, "pod Running", async || {
        sim.object("pods", "default", "jupyter-alice")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let ip = p["status"]["podIP"].as_str().unwrap();
    assert!(ip.starts_with("127.244."), "{ip}");
    assert_eq!(p["status"]["containerStatuses"][0]["ready"], true);
    assert!(TcpStream::connect(addr(&p)).is_ok());
    let base = format!("http://{}", addr(&p));
    let env = http_get(&format!("{base}/env.txt")).await.unwrap();
    assert_eq!(env.trim(), "t0k3n jupyter-alice");
    // The Secret's files, under the directory the mount variable names.
    let mount = http_get(&format!("{base}/mount.txt")).await.unwrap();
    let mount = std::path::PathBuf::from(mount.trim());
    assert!(mount.is_dir(), "{}", mount.display());
    assert_eq!(
        std::fs::read_to_string(mount.join("access_token")).unwrap(),
        "t0k3n"
    );
    let token_file = http_get(&format!("{base}/token_file.txt")).await.unwrap();
    assert_eq!(
        token_file.trim(),
        mount.join("access_token").to_str().unwrap()
    );
    assert_eq!(
        http_get(&format!("{base}/secrets/access_token"))
            .await
            .unwrap(),
        "t0k3n"
    );
    // A Secret update reaches the files (the ..data swap).
    let (code, _) = api
        .patch(
            "/api/v1/namespaces/default/secrets/tokens",
            "application/merge-patch+json",
            &json!({"stringData": {"access_token": "n3w"}}),
        )
        .await;
    assert_eq!(code, 200);
    until(5, "the new token in the file", async || {
        (std::fs::read_to_string(mount.join("access_token")).ok()? == "n3w").then_some(())
    })
    .await;
    assert!(mount.join("..data").is_symlink());
    // The log, through the API.
    let log = reqwest::get(format!("{}{PODS}/jupyter-alice/log", sim.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(log.contains("GET /env.txt"), "{log}");
    // Deletion: the process gets SIGTERM and the pod goes once it is gone.
    api.delete(&format!("{PODS}/jupyter-alice"), None).await;
    until(10, "pod gone", async || {
        sim.object("pods", "default", "jupyter-alice")
            .is_none()
            .then_some(())
    })
    .await;
    until(5, "process gone", async || (!alive(pid)).then_some(())).await;
    // The claim's directory outlives the pod: the next pod finds its file.
    api.post(
        PODS,
        &notebook(
            "jupyter-alice",
            "kubesim/served:1",
            "claim-alice",
            "OnFailure",
        ),
    )
    .await;
    let p = until(15, "second pod Running", async || {
        sim.object("pods", "default", "jupyter-alice")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let persisted = http_get(&format!("http://{}/persisted.txt", addr(&p)))
        .await
        .unwrap();
    assert_eq!(persisted.trim(), "first");
    let claim = sim.claim_dir("default", "claim-alice").unwrap();
    assert!(claim.join("persisted.txt").is_file());
    let pid2 = sim.pod_pids("default", "jupyter-alice")[0];
    assert_ne!(pid, pid2);
    sim.shutdown().await;
    assert!(!alive(pid2), "shutdown stops the processes");
}

#[tokio::test]
async fn process_that_exits_fails_the_container_with_its_code() {
    let sim = process_sim(vec![shell("kubesim/exit3", "echo bye; exit 3")]).await;
    let api = Api::new(&sim);
    api.post("/api/v1/namespaces/default/secrets", &secret("x"))
        .await;
    api.post(
        "/api/v1/namespaces/default/persistentvolumeclaims",
        &pvc("claim-x", "1Gi", None),
    )
    .await;
    let started = Instant::now();
    api.post(
        PODS,
        &notebook("never", "kubesim/exit3", "claim-x", "Never"),
    )
    .await;
    api.post(
        PODS,
        &notebook("onfailure", "kubesim/exit3", "claim-x", "OnFailure"),
    )
    .await;
    let p = until(5, "pod Failed", async || {
        sim.object("pods", "default", "never")
            .filter(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), t["reason"].as_str()),
        (Some(3), Some("Error"))
    );
    let p = until(5, "CrashLoopBackOff", async || {
        sim.object("pods", "default", "onfailure").filter(|p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        })
    })
    .await;
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(cs["ready"], false);
    assert!(cs["restartCount"].as_i64().unwrap() >= 1);
    assert!(
        pod_events(&sim, "default", "onfailure")
            .iter()
            .any(|e| e["reason"] == "BackOff" && e["type"] == "Warning")
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let log = reqwest::get(format!("{}{PODS}/never/log?container=notebook", sim.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(log.trim(), "bye");
}

/// Samples of the simulator's `/metrics`, parsed with prometheus-parse.
async fn scrape(sim: &KubeSim) -> Vec<prometheus_parse::Sample> {
    let resp = reqwest::get(format!("{}/metrics", sim.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = resp.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines)
        .expect("exposition parses")
        .samples
}

fn value(s: &prometheus_parse::Sample) -> f64 {
    match s.value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        _ => f64::NAN,
    }
}

fn find<'a>(
    samples: &'a [prometheus_parse::Sample],
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

fn cpu(samples: &[prometheus_parse::Sample], pod: &str) -> f64 {
    find(
        samples,
        "container_cpu_usage_seconds_total",
        &[("pod", pod), ("container", "notebook")],
    )
    .map_or(0.0, value)
}

const BURN: &str = "python3 -m http.server {port} --bind {pod_ip} & \
    python3 -c 'import time\nwhile time.process_time() < 1.2: pass'; wait";

#[tokio::test]
async fn metrics_report_pods_and_real_cpu() {
    let sim = process_sim(vec![shell("kubesim/burn", BURN)]).await;
    let api = Api::new(&sim);
    api.post("/api/v1/namespaces/default/secrets", &secret("x"))
        .await;
    api.post(
        "/api/v1/namespaces/default/persistentvolumeclaims",
        &pvc("claim-b", "1Gi", None),
    )
    .await;
    api.post(
        PODS,
        &notebook("jupyter-burn", "kubesim/burn", "claim-b", "OnFailure"),
    )
    .await;
    // A simulated pod next to it.
    api.post(
        PODS,
        &notebook(
            "jupyter-sim",
            "quay.io/jupyter/base:1",
            "claim-b",
            "OnFailure",
        ),
    )
    .await;
    let p = until(15, "pods Running", async || {
        let sim_pod = sim.object("pods", "default", "jupyter-sim")?;
        (sim_pod["status"]["phase"] == "Running").then_some(())?;
        sim.object("pods", "default", "jupyter-burn")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let uid = p["metadata"]["uid"].as_str().unwrap().to_owned();
    let first = scrape(&sim).await;
    let info = find(&first, "kube_pod_info", &[("pod", "jupyter-burn")]).expect("kube_pod_info");
    assert_eq!(info.labels.get("namespace"), Some("default"));
    assert_eq!(info.labels.get("uid"), Some(uid.as_str()));
    assert_eq!(info.labels.get("pod_ip"), p["status"]["podIP"].as_str());
    assert_eq!(info.labels.get("node"), Some("sim-node"));
    let running = find(
        &first,
        "kube_pod_status_phase",
        &[("pod", "jupyter-burn"), ("phase", "Running")],
    )
    .unwrap();
    assert!((value(running) - 1.0).abs() < f64::EPSILON);
    let pending = find(
        &first,
        "kube_pod_status_phase",
        &[("pod", "jupyter-burn"), ("phase", "Pending")],
    )
    .unwrap();
    assert!(value(pending).abs() < f64::EPSILON);
    let created = find(&first, "kube_pod_created", &[("uid", &uid)]).unwrap();
    assert!(value(created) > 1.6e9);
    assert!(find(&first, "kube_pod_start_time", &[("uid", &uid)]).is_some());
    let ann = find(&first, "kube_pod_annotations", &[("uid", &uid)]).unwrap();
    assert_eq!(
        ann.labels.get("annotation_egi_eu_primary_group"),
        Some("vo.example.eu")
    );
    assert_eq!(
        ann.labels.get("annotation_hub_jupyter_org_username"),
        Some("alice")
    );
    assert_eq!(ann.labels.get("annotation_other_annotation"), None);
    let labels = find(&first, "kube_pod_labels", &[("uid", &uid)]).unwrap();
    assert_eq!(
        labels.labels.get("label_component"),
        Some("singleuser-server")
    );
    let image = find(
        &first,
        "kube_pod_container_info",
        &[("uid", &uid), ("container", "notebook")],
    )
    .unwrap();
    assert_eq!(image.labels.get("image"), Some("kubesim/burn"));
    let req = find(
        &first,
        "kube_pod_container_resource_requests",
        &[("uid", &uid), ("resource", "cpu")],
    )
    .unwrap();
    assert!((value(req) - 0.5).abs() < 1e-9);
    assert_eq!(req.labels.get("unit"), Some("core"));
    let mem = find(
        &first,
        "container_memory_working_set_bytes",
        &[("pod", "jupyter-burn"), ("container", "notebook")],
    )
    .unwrap();
    assert!(value(mem) > 1e6, "real resident memory: {}", value(mem));
    let id = mem.labels.get("id").unwrap();
    assert!(id.contains(&format!("pod{uid}/")), "{id}");
    for metric in [
        "container_network_receive_bytes_total",
        "container_network_transmit_bytes_total",
    ] {
        let net = find(&first, metric, &[("pod", "jupyter-sim")]).unwrap();
        assert_eq!(net.labels.get("interface"), Some("eth0"));
    }
    assert!(cpu(&first, "jupyter-sim") >= 0.0);
    // The burner's CPU seconds grow to its 1.2 s of CPU time.
    let c0 = cpu(&first, "jupyter-burn");
    let c1 = until(10, "CPU seconds grow", async || {
        let c = cpu(&scrape(&sim).await, "jupyter-burn");
        (c >= 1.0).then_some(c)
    })
    .await;
    assert!(c1 > c0, "{c0} -> {c1}");
    // A removed pod's cAdvisor series linger; its kube-state-metrics series go.
    api.delete(&format!("{PODS}/jupyter-burn"), None).await;
    until(10, "pod gone", async || {
        sim.object("pods", "default", "jupyter-burn")
            .is_none()
            .then_some(())
    })
    .await;
    let after = scrape(&sim).await;
    assert!(find(&after, "kube_pod_info", &[("pod", "jupyter-burn")]).is_none());
    assert!(cpu(&after, "jupyter-burn") >= c1);
}

#[tokio::test]
async fn prometheus_scrapes_the_simulator() {
    let sim = process_sim(vec![shell("kubesim/burn", BURN)]).await;
    let api = Api::new(&sim);
    api.post("/api/v1/namespaces/default/secrets", &secret("x"))
        .await;
    api.post(
        "/api/v1/namespaces/default/persistentvolumeclaims",
        &pvc("claim-p", "1Gi", None),
    )
    .await;
    api.post(
        PODS,
        &notebook("jupyter-prom", "kubesim/burn", "claim-p", "OnFailure"),
    )
    .await;
    until(15, "pod Running", async || {
        sim.object("pods", "default", "jupyter-prom")
            .filter(|p| p["status"]["phase"] == "Running")
    })
    .await;
    let target = ScrapeTarget::new("kubesim", sim.addr(), Duration::from_millis(500));
    let prom = tokio::task::spawn_blocking(move || Prometheus::scraping(&[target]))
        .await
        .unwrap()
        .expect("prometheus starts");
    let prom = std::sync::Arc::new(prom);
    let query = |q: &'static str| {
        let prom = prom.clone();
        async move {
            let now = chrono::Utc::now().timestamp();
            tokio::task::spawn_blocking(move || prom.query(q, now))
                .await
                .unwrap()
        }
    };
    let info = until(30, "kube_pod_info scraped", async || {
        let r = query("kube_pod_info{pod='jupyter-prom'}").await.ok()?;
        r["result"].as_array().filter(|a| !a.is_empty()).cloned()
    })
    .await;
    let m: HashMap<String, String> = serde_json::from_value(info[0]["metric"].clone()).unwrap();
    assert_eq!(m["namespace"], "default");
    assert_eq!(m["job"], "kubesim");
    let cpu = until(30, "CPU seconds scraped", async || {
        let r = query(
            "max_over_time(container_cpu_usage_seconds_total{pod='jupyter-prom',container='notebook'}[1m])",
        )
        .await
        .ok()?;
        let v: f64 = r["result"][0]["value"][1].as_str()?.parse().ok()?;
        (v >= 1.0).then_some(v)
    })
    .await;
    assert!(cpu < 60.0, "{cpu}");
    assert!(
        prom.log_tail(50).contains("Server is ready"),
        "{}",
        prom.log_tail(50)
    );
}
