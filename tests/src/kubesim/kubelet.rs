//! The simulated scheduler and kubelet: pods go Pending -> Scheduled -> Running with the
//! events and status a real node reports, or fail the way the injected faults say.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Shared;
use super::events::emit_event;
use super::resources::{PODS, SECRETS};
use super::status;
use super::store::meta_str;

/// The node every pod lands on.
pub(crate) const NODE: &str = "sim-node";
const HOST_IP: &str = "192.168.49.2";

#[derive(Debug, Clone)]
pub(crate) struct PodRef {
    pub(crate) ns: String,
    pub(crate) name: String,
    pub(crate) uid: String,
}

/// Per-container state the kubelet reports.
#[derive(Debug, Clone)]
pub(crate) struct Ctr {
    pub(crate) name: String,
    pub(crate) image: String,
    pub(crate) state: Value,
    pub(crate) last: Value,
    pub(crate) ready: bool,
    pub(crate) started: bool,
    pub(crate) restarts: i64,
    pub(crate) id: String,
}

impl Ctr {
    pub(crate) fn waiting(&mut self, reason: &str, message: Option<&str>) {
        let mut w = json!({"reason": reason});
        if let Some(m) = message {
            w["message"] = json!(m);
        }
        self.state = json!({"waiting": w});
        self.ready = false;
        self.started = false;
    }

    pub(crate) fn running(&mut self) {
        self.id = format!("containerd://{}", status::hex(64));
        self.state = json!({"running": {"startedAt": status::now()}});
        self.ready = true;
        self.started = true;
    }

    fn terminated(&mut self, code: i32, reason: &str) -> Value {
        let started = self.state["running"]["startedAt"].clone();
        json!({"terminated": {
            "exitCode": code, "reason": reason, "startedAt": started,
            "finishedAt": status::now(), "containerID": self.id,
        }})
    }

    fn to_json(&self) -> Value {
        let image_id = if self.id.is_empty() {
            String::new()
        } else {
            format!("docker.io/{}@sha256:{}", self.image, "0".repeat(64))
        };
        let mut s = json!({
            "name": self.name, "image": self.image, "imageID": image_id,
            "ready": self.ready, "restartCount": self.restarts, "started": self.started,
            "state": self.state, "lastState": self.last,
        });
        if !self.id.is_empty() {
            s["containerID"] = json!(self.id);
        }
        s
    }
}

pub(crate) fn condition(
    ctype: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<&str>,
) -> Value {
    let mut c = json!({"type": ctype, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": status::now()});
    if let Some(r) = reason {
        c["reason"] = json!(r);
    }
    if let Some(m) = message {
        c["message"] = json!(m);
    }
    c
}

/// Sets conditions, keeping the transition time of those whose status did not change.
pub(crate) fn set_conditions(pod: &mut Value, conds: Vec<Value>) {
    let old = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let merged: Vec<Value> = conds
        .into_iter()
        .map(|mut c| {
            if let Some(o) = old
                .iter()
                .find(|o| o["type"] == c["type"] && o["status"] == c["status"])
            {
                c["lastTransitionTime"] = o["lastTransitionTime"].clone();
            }
            c
        })
        .collect();
    pod["status"]["conditions"] = json!(merged);
}

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// The pod if it is still this one, not terminating and not finished.
pub(crate) fn current(sh: &Shared, p: &PodRef) -> Option<Arc<Value>> {
    let store = sh.lock();
    let pod = store.get(PODS, &p.ns, &p.name)?;
    (meta_str(pod, "uid") == p.uid
        && !pod["metadata"]["deletionTimestamp"].is_string()
        && !is_terminal(pod))
    .then(|| pod.clone())
}

/// Changes the pod (as the kubelet, bypassing API validation) if it is still live.
pub(crate) fn write(sh: &Shared, p: &PodRef, f: impl FnOnce(&mut Value)) -> Option<Arc<Value>> {
    let mut store = sh.lock();
    let pod = store.get(PODS, &p.ns, &p.name)?;
    if meta_str(pod, "uid") != p.uid
        || pod["metadata"]["deletionTimestamp"].is_string()
        || is_terminal(pod)
    {
        return None;
    }
    let mut pod = (**pod).clone();
    f(&mut pod);
    Some(store.put(PODS, pod))
}

pub(crate) fn write_status(
    sh: &Shared,
    p: &PodRef,
    phase: &str,
    ctrs: &[Ctr],
    ip: &str,
) -> Option<Arc<Value>> {
    let all_ready = ctrs.iter().all(|c| c.ready);
    let unready: Vec<&str> = ctrs
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let msg = format!("containers with unready status: [{}]", unready.join(" "));
    write(sh, p, |pod| {
        let (r, m) = if all_ready {
            (None, None)
        } else {
            (Some("ContainersNotReady"), Some(msg.as_str()))
        };
        set_conditions(
            pod,
            vec![
                condition("PodReadyToStartContainers", !ip.is_empty(), None, None),
                condition("Initialized", true, None, None),
                condition("Ready", all_ready, r, m),
                condition("ContainersReady", all_ready, r, m),
                condition("PodScheduled", true, None, None),
            ],
        );
        let st = &mut pod["status"];
        st["phase"] = json!(phase);
        st["hostIP"] = json!(HOST_IP);
        st["hostIPs"] = json!([{"ip": HOST_IP}]);
        if !ip.is_empty() {
            st["podIP"] = json!(ip);
            st["podIPs"] = json!([{"ip": ip}]);
        }
        if st["startTime"].is_null() {
            st["startTime"] = json!(status::now());
        }
        st["containerStatuses"] = json!(ctrs.iter().map(Ctr::to_json).collect::<Vec<_>>());
    })
}

/// Starts the scheduler and kubelet work for a new pod (pods already bound to a node, e.g.
/// seeded ones, are left as they are).
pub(crate) fn start_pod(sh: &Arc<Shared>, pod: &Value) {
    if pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty())
        || is_terminal(pod)
    {
        return;
    }
    let p = PodRef {
        ns: meta_str(pod, "namespace").to_owned(),
        name: meta_str(pod, "name").to_owned(),
        uid: meta_str(pod, "uid").to_owned(),
    };
    let sh2 = sh.clone();
    sh.spawn(async move {
        run_pod(&sh2, &p).await;
    });
}

/// Waits for a Secret or PVC change, or `d`.
pub(crate) async fn wait_change(
    notified: std::pin::Pin<&mut tokio::sync::futures::Notified<'_>>,
    d: Duration,
) {
    tokio::select! {
        () = notified => {}
        () = tokio::time::sleep(d) => {}
    }
}

/// (volume, secret) of the first secret volume whose Secret is missing.
fn missing_volume_secret(sh: &Shared, pod: &Value) -> Option<(String, String)> {
    let ns = meta_str(pod, "namespace");
    let store = sh.lock();
    for v in pod["spec"]["volumes"].as_array().into_iter().flatten() {
        let s = &v["secret"];
        if let Some(secret) = s["secretName"].as_str()
            && s["optional"] != true
            && store.get(SECRETS, ns, secret).is_none()
        {
            return Some((
                v["name"].as_str().unwrap_or("").to_owned(),
                secret.to_owned(),
            ));
        }
    }
    None
}

/// The error of the first env reference to a missing Secret or key of a container.
fn missing_env_secret(sh: &Shared, ns: &str, c: &Value) -> Option<String> {
    let store = sh.lock();
    for e in c["env"].as_array().into_iter().flatten() {
        let r = &e["valueFrom"]["secretKeyRef"];
        if let Some(secret) = r["name"].as_str()
            && r["optional"] != true
        {
            let key = r["key"].as_str().unwrap_or("");
            match store.get(SECRETS, ns, secret) {
                None => return Some(format!("secret \"{secret}\" not found")),
                Some(s) if s["data"].get(key).is_none() => {
                    return Some(format!("couldn't find key {key} in Secret {ns}/{secret}"));
                }
                Some(_) => {}
            }
        }
    }
    for e in c["envFrom"].as_array().into_iter().flatten() {
        let r = &e["secretRef"];
        if let Some(secret) = r["name"].as_str()
            && r["optional"] != true
            && store.get(SECRETS, ns, secret).is_none()
        {
            return Some(format!("secret \"{secret}\" not found"));
        }
    }
    None
}

fn next_ip(sh: &Shared) -> String {
    let n = sh.next_ip.fetch_add(1, Ordering::Relaxed);
    let opts = sh.opts();
    let base = if opts.loopback_pod_ips || !opts.process_images.is_empty() {
        0x7ff4_0002u32
    } else {
        0x0af4_0002u32
    };
    let n = base.wrapping_add(n);
    std::net::Ipv4Addr::from(n).to_string()
}

async fn run_pod(sh: &Arc<Shared>, p: &PodRef) -> Option<()> {
    let opts = sh.opts();
    let t0 = Instant::now();
    let sched = opts.schedule_delay.min(opts.ready_delay);
    tokio::time::sleep(sched).await;
    super::scheduler::schedule(sh, p, opts.backoff).await?;
    let pod = current(sh, p)?;
    let specs: Vec<Value> = pod["spec"]["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut ctrs: Vec<Ctr> = specs
        .iter()
        .map(|c| Ctr {
            name: c["name"].as_str().unwrap_or("").to_owned(),
            image: c["image"].as_str().unwrap_or("").to_owned(),
            state: json!({"waiting": {"reason": "ContainerCreating"}}),
            last: json!({}),
            ready: false,
            started: false,
            restarts: 0,
            id: String::new(),
        })
        .collect();
    write_status(sh, p, "Pending", &ctrs, "")?;
    // Volumes: a missing Secret keeps the pod in ContainerCreating.
    loop {
        let notified = sh.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Some((volume, secret)) = missing_volume_secret(sh, &*current(sh, p)?) else {
            break;
        };
        let pod = current(sh, p)?;
        emit_event(
            sh,
            &pod,
            "Warning",
            "FailedMount",
            &format!(
                "MountVolume.SetUp failed for volume \"{volume}\" : secret \"{secret}\" not found"
            ),
            "kubelet",
            None,
        );
        wait_change(notified, opts.backoff).await;
    }
    let ip = next_ip(sh);
    write_status(sh, p, "Pending", &ctrs, &ip)?;
    let n = u32::try_from(specs.len().max(1)).unwrap_or(1);
    let step = opts.ready_delay.saturating_sub(t0.elapsed()) / (3 * n + 1);
    for (i, spec) in specs.iter().enumerate() {
        let fp = format!("spec.containers{{{}}}", ctrs[i].name);
        let image = ctrs[i].image.clone();
        let pulled_at = Instant::now();
        container_event(
            sh,
            &*current(sh, p)?,
            "Normal",
            "Pulling",
            &format!("Pulling image \"{image}\""),
            &fp,
        );
        tokio::time::sleep(step).await;
        while sh.faults().pull_fails(&image) {
            let err = format!(
                "rpc error: code = NotFound desc = failed to pull and unpack image \"{image}\": failed to resolve reference \"{image}\": \"{image}\": not found"
            );
            ctrs[i].waiting("ErrImagePull", Some(&err));
            let pod = write_status(sh, p, "Pending", &ctrs, &ip)?;
            sh.counters().pod_err_image_pull(&p.ns, &p.name, &p.uid);
            container_event(
                sh,
                &pod,
                "Warning",
                "Failed",
                &format!("Failed to pull image \"{image}\": {err}"),
                &fp,
            );
            container_event(sh, &pod, "Warning", "Failed", "Error: ErrImagePull", &fp);
            tokio::time::sleep(opts.backoff).await;
            current(sh, p)?;
            let msg = format!("Back-off pulling image \"{image}\"");
            ctrs[i].waiting("ImagePullBackOff", Some(&msg));
            let pod = write_status(sh, p, "Pending", &ctrs, &ip)?;
            container_event(sh, &pod, "Normal", "BackOff", &msg, &fp);
            container_event(
                sh,
                &pod,
                "Warning",
                "Failed",
                "Error: ImagePullBackOff",
                &fp,
            );
            tokio::time::sleep(opts.backoff).await;
            container_event(
                sh,
                &*current(sh, p)?,
                "Normal",
                "Pulling",
                &format!("Pulling image \"{image}\""),
                &fp,
            );
        }
        let took = pulled_at.elapsed().as_secs_f64();
        container_event(
            sh,
            &*current(sh, p)?,
            "Normal",
            "Pulled",
            &format!(
                "Successfully pulled image \"{image}\" in {took:.3}s ({took:.3}s including waiting). Image size: 123456789 bytes."
            ),
            &fp,
        );
        loop {
            let notified = sh.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let Some(err) = missing_env_secret(sh, &p.ns, spec) else {
                break;
            };
            ctrs[i].waiting("CreateContainerConfigError", Some(&err));
            let pod = write_status(sh, p, "Pending", &ctrs, &ip)?;
            container_event(sh, &pod, "Warning", "Failed", &format!("Error: {err}"), &fp);
            wait_change(notified, opts.backoff).await;
        }
        if !matches!(
            ctrs[i]
                .state
                .get("waiting")
                .and_then(|w| w["reason"].as_str()),
            Some("ContainerCreating")
        ) {
            ctrs[i].waiting("ContainerCreating", None);
            write_status(sh, p, "Pending", &ctrs, &ip)?;
        }
        tokio::time::sleep(step).await;
        let name = ctrs[i].name.clone();
        container_event(
            sh,
            &*current(sh, p)?,
            "Normal",
            "Created",
            &format!("Created container {name}"),
            &fp,
        );
        tokio::time::sleep(step).await;
        container_event(
            sh,
            &*current(sh, p)?,
            "Normal",
            "Started",
            &format!("Started container {name}"),
            &fp,
        );
    }
    tokio::time::sleep(opts.ready_delay.saturating_sub(t0.elapsed())).await;
    if let Some(plan) = super::process::plan(sh, &specs) {
        return super::process::run(sh, p, &mut ctrs, &specs, plan, &ip).await;
    }
    for c in &mut ctrs {
        c.running();
        // A container that exits at once is never seen ready.
        c.ready = !sh.faults().crashes(&c.image);
    }
    write_status(sh, p, "Running", &ctrs, &ip)?;
    sh.counters().pod_running(&p.ns, &p.name, &p.uid);
    crash_loop(sh, p, &mut ctrs, &ip, opts.backoff).await
}

/// Containers whose image is marked crashing exit 1 and restart with back-off, for ever.
async fn crash_loop(
    sh: &Shared,
    p: &PodRef,
    ctrs: &mut [Ctr],
    ip: &str,
    backoff: Duration,
) -> Option<()> {
    loop {
        let crashing: Vec<usize> = (0..ctrs.len())
            .filter(|&i| sh.faults().crashes(&ctrs[i].image))
            .collect();
        if crashing.is_empty() {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let pod = current(sh, p)?;
        for &i in &crashing {
            ctrs[i].last = ctrs[i].terminated(1, "Error");
            ctrs[i].restarts += 1;
            let msg = format!(
                "back-off {}s restarting failed container={} pod={}_{}({})",
                10 * ctrs[i].restarts,
                ctrs[i].name,
                p.name,
                p.ns,
                p.uid
            );
            ctrs[i].waiting("CrashLoopBackOff", Some(&msg));
            let fp = format!("spec.containers{{{}}}", ctrs[i].name);
            let ev = format!(
                "Back-off restarting failed container {} in pod {}_{}({})",
                ctrs[i].name, p.name, p.ns, p.uid
            );
            container_event(sh, &pod, "Warning", "BackOff", &ev, &fp);
        }
        write_status(sh, p, "Running", ctrs, ip)?;
        tokio::time::sleep(backoff).await;
        let pod = current(sh, p)?;
        for &i in &crashing {
            let fp = format!("spec.containers{{{}}}", ctrs[i].name);
            let image = ctrs[i].image.clone();
            container_event(
                sh,
                &pod,
                "Normal",
                "Pulled",
                &format!("Container image \"{image}\" already present on machine"),
                &fp,
            );
            container_event(
                sh,
                &pod,
                "Normal",
                "Created",
                &format!("Created container {}", ctrs[i].name),
                &fp,
            );
            container_event(
                sh,
                &pod,
                "Normal",
                "Started",
                &format!("Started container {}", ctrs[i].name),
                &fp,
            );
            ctrs[i].running();
            ctrs[i].ready = !sh.faults().crashes(&image);
        }
        write_status(sh, p, "Running", ctrs, ip)?;
    }
}

/// An event of the kubelet about one container (`fp` is its field path) of the pod.
pub(crate) fn container_event(
    sh: &Shared,
    pod: &Value,
    kind: &str,
    reason: &str,
    message: &str,
    fp: &str,
) {
    emit_event(sh, pod, kind, reason, message, "kubelet", Some(fp));
}
