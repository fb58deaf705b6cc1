//! `GET /metrics`: the pods as kube-state-metrics and cAdvisor would report them, in the
//! Prometheus text format 0.0.4 (see [`super::SimOptions::metrics_linger`] and the crate
//! documentation of [`super`] for the series).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde_json::Value;

use super::process::ProcPod;
use super::resources::PODS;
use super::status::parse_quantity;
use super::store::meta_str;
use super::{Shared, SimOptions, lock};

/// The families served, in order: name, type, help.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("kube_pod_info", "gauge", "[STABLE] Information about pod."),
    (
        "kube_pod_created",
        "gauge",
        "[STABLE] Unix creation timestamp",
    ),
    (
        "kube_pod_start_time",
        "gauge",
        "[STABLE] Start time in unix timestamp for a pod.",
    ),
    (
        "kube_pod_completion_time",
        "gauge",
        "[STABLE] Completion time in unix timestamp for a pod.",
    ),
    (
        "kube_pod_deletion_timestamp",
        "gauge",
        "Unix deletion timestamp",
    ),
    (
        "kube_pod_status_phase",
        "gauge",
        "[STABLE] The pods current phase.",
    ),
    (
        "kube_pod_status_ready",
        "gauge",
        "[STABLE] Describes whether the pod is ready to serve requests.",
    ),
    (
        "kube_pod_container_info",
        "gauge",
        "[STABLE] Information about a container in a pod.",
    ),
    (
        "kube_pod_container_status_restarts_total",
        "counter",
        "[STABLE] The number of container restarts per container.",
    ),
    (
        "kube_pod_container_resource_requests",
        "gauge",
        "The number of requested request resource by a container.",
    ),
    (
        "kube_pod_container_resource_limits",
        "gauge",
        "The number of requested limit resource by a container.",
    ),
    (
        "kube_pod_annotations",
        "gauge",
        "Kubernetes annotations converted to Prometheus labels.",
    ),
    (
        "kube_pod_labels",
        "gauge",
        "[STABLE] Kubernetes labels converted to Prometheus labels.",
    ),
    (
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed in seconds.",
    ),
    (
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set in bytes.",
    ),
    (
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
    ),
    (
        "container_memory_max_usage_bytes",
        "gauge",
        "Maximum memory usage recorded in bytes",
    ),
    (
        "container_network_receive_bytes_total",
        "counter",
        "Cumulative count of bytes received",
    ),
    (
        "container_network_transmit_bytes_total",
        "counter",
        "Cumulative count of bytes transmitted",
    ),
];

/// The first cAdvisor family in [`FAMILIES`].
const CADVISOR: usize = 13;

/// One sample line (`name{labels} value`) of family `FAMILIES[.0]`.
type Line = (usize, String);

/// cAdvisor series of removed pods, served until their linger period is over and they
/// were served at least once.
#[derive(Debug, Default)]
pub(crate) struct MetricsState {
    lingering: Vec<(Instant, bool, Vec<Line>)>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn line(out: &mut Vec<Line>, name: &str, labels: &[(&str, &str)], value: f64) {
    let fam = FAMILIES.iter().position(|f| f.0 == name).unwrap_or(0);
    let mut s = format!("{name}{{");
    let mut first = true;
    for (k, v) in labels.iter().filter(|(_, v)| !v.is_empty()) {
        if !first {
            s.push(',');
        }
        first = false;
        let _ = write!(s, "{k}=\"{}\"", escape(v));
    }
    let _ = write!(s, "}} {value}");
    out.push((fam, s));
}

fn epoch(t: &Value) -> Option<f64> {
    let t = chrono::DateTime::parse_from_rfc3339(t.as_str()?).ok()?;
    Some(t.timestamp() as f64)
}

/// kube-state-metrics' label name for a key: other characters than `[a-zA-Z0-9_]` as `_`.
fn sanitize(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn allowed(list: &[String], key: &str) -> bool {
    list.iter().any(|a| a == "*" || a == key)
}

fn ksm(pod: &Value, opts: &SimOptions, out: &mut Vec<Line>) {
    let m = &pod["metadata"];
    let st = &pod["status"];
    let (ns, name, uid) = (
        meta_str(pod, "namespace"),
        meta_str(pod, "name"),
        meta_str(pod, "uid"),
    );
    let base = [("namespace", ns), ("pod", name), ("uid", uid)];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
        base.iter()
            .chain(extra)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let push = |out: &mut Vec<Line>, n: &str, l: Vec<(String, String)>, v: f64| {
        let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        line(out, n, &l, v);
    };
    let owner = &m["ownerReferences"][0];
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
    push(
        out,
        "kube_pod_info",
        with(&[
            ("host_ip", st["hostIP"].as_str().unwrap_or("")),
            ("pod_ip", st["podIP"].as_str().unwrap_or("")),
            ("node", node),
            (
                "created_by_kind",
                owner["kind"].as_str().unwrap_or("<none>"),
            ),
            (
                "created_by_name",
                owner["name"].as_str().unwrap_or("<none>"),
            ),
            (
                "priority_class",
                pod["spec"]["priorityClassName"].as_str().unwrap_or(""),
            ),
            (
                "host_network",
                if pod["spec"]["hostNetwork"] == true {
                    "true"
                } else {
                    "false"
                },
            ),
        ]),
        1.0,
    );
    if let Some(t) = epoch(&m["creationTimestamp"]) {
        push(out, "kube_pod_created", with(&[]), t);
    }
    if let Some(t) = epoch(&st["startTime"]) {
        push(out, "kube_pod_start_time", with(&[]), t);
    }
    let statuses = st["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let done = statuses
        .iter()
        .filter_map(|c| epoch(&c["state"]["terminated"]["finishedAt"]))
        .reduce(f64::max);
    if let Some(t) = done {
        push(out, "kube_pod_completion_time", with(&[]), t);
    }
    if let Some(t) = epoch(&m["deletionTimestamp"]) {
        push(out, "kube_pod_deletion_timestamp", with(&[]), t);
    }
    if let Some(phase) = st["phase"].as_str() {
        for p in ["Pending", "Succeeded", "Failed", "Unknown", "Running"] {
            push(
                out,
                "kube_pod_status_phase",
                with(&[("phase", p)]),
                f64::from(u8::from(p == phase)),
            );
        }
    }
    let ready = st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["status"].as_str());
    if let Some(ready) = ready {
        for (cond, want) in [("true", "True"), ("false", "False"), ("unknown", "Unknown")] {
            push(
                out,
                "kube_pod_status_ready",
                with(&[("condition", cond)]),
                f64::from(u8::from(ready == want)),
            );
        }
    }
    for c in &statuses {
        let cname = c["name"].as_str().unwrap_or("");
        push(
            out,
            "kube_pod_container_info",
            with(&[
                ("container", cname),
                ("image_spec", c["image"].as_str().unwrap_or("")),
                ("image", c["image"].as_str().unwrap_or("")),
                ("image_id", c["imageID"].as_str().unwrap_or("")),
                ("container_id", c["containerID"].as_str().unwrap_or("")),
            ]),
            1.0,
        );
        let restarts = c["restartCount"].as_f64().unwrap_or(0.0);
        push(
            out,
            "kube_pod_container_status_restarts_total",
            with(&[("container", cname)]),
            restarts,
        );
    }
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let cname = c["name"].as_str().unwrap_or("");
        for (field, fam) in [
            ("requests", "kube_pod_container_resource_requests"),
            ("limits", "kube_pod_container_resource_limits"),
        ] {
            for (res, q) in c["resources"][field].as_object().into_iter().flatten() {
                let Some(v) = q.as_str().and_then(parse_quantity).or_else(|| q.as_f64()) else {
                    continue;
                };
                let unit = match res.as_str() {
                    "cpu" => "core",
                    "memory" | "ephemeral-storage" => "byte",
                    _ => "integer",
                };
                let res = sanitize(res);
                push(
                    out,
                    fam,
                    with(&[
                        ("container", cname),
                        ("node", node),
                        ("resource", &res),
                        ("unit", unit),
                    ]),
                    v,
                );
            }
        }
    }
    for (field, prefix, list, fam) in [
        (
            "annotations",
            "annotation_",
            &opts.metrics_annotations,
            "kube_pod_annotations",
        ),
        ("labels", "label_", &opts.metrics_labels, "kube_pod_labels"),
    ] {
        let mut labels = with(&[]);
        for (k, v) in m[field].as_object().into_iter().flatten() {
            if allowed(list, k) {
                labels.push((
                    format!("{prefix}{}", sanitize(k)),
                    v.as_str().unwrap_or("").to_owned(),
                ));
            }
        }
        labels[3..].sort();
        push(out, fam, labels, 1.0);
    }
}

/// The cgroup of a pod by QoS class, as the kubelet's cgroupfs driver names it.
fn pod_cgroup(pod: &Value) -> String {
    let ctrs: Vec<&Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let res = |c: &Value, f: &str, r: &str| c["resources"][f][r].as_str().and_then(parse_quantity);
    let none = ctrs.iter().all(|c| {
        c["resources"]["requests"]
            .as_object()
            .is_none_or(|o| o.is_empty())
            && c["resources"]["limits"]
                .as_object()
                .is_none_or(|o| o.is_empty())
    });
    let guaranteed = !ctrs.is_empty()
        && ctrs.iter().all(|c| {
            ["cpu", "memory"].iter().all(|r| {
                let l = res(c, "limits", r);
                l.is_some() && res(c, "requests", r).is_none_or(|q| Some(q) == l)
            })
        });
    let uid = meta_str(pod, "uid");
    match (none, guaranteed) {
        (true, _) => format!("/kubepods/besteffort/pod{uid}"),
        (_, true) => format!("/kubepods/pod{uid}"),
        _ => format!("/kubepods/burstable/pod{uid}"),
    }
}

/// Seconds a container status has been (or was) running.
fn running_secs(c: &Value) -> f64 {
    let now = chrono::Utc::now().timestamp() as f64;
    if let Some(s) = epoch(&c["state"]["running"]["startedAt"]) {
        return (now - s).max(0.0);
    }
    let t = &c["state"]["terminated"];
    match (epoch(&t["startedAt"]), epoch(&t["finishedAt"])) {
        (Some(s), Some(f)) => (f - s).max(0.0),
        _ => 0.0,
    }
}

fn cadvisor(pod: &Value, procs: Option<&ProcPod>, out: &mut Vec<Line>) {
    let (ns, name) = (meta_str(pod, "namespace"), meta_str(pod, "name"));
    let cgroup = pod_cgroup(pod);
    let specs: BTreeMap<&str, &Value> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| (c["name"].as_str().unwrap_or(""), c))
        .collect();
    let (mut cpu_sum, mut mem_sum, mut peak_sum, mut secs_max) = (0.0, 0.0, 0.0, 0.0f64);
    let mut any = false;
    for c in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(id) = c["containerID"]
            .as_str()
            .and_then(|i| i.split("://").nth(1))
        else {
            continue;
        };
        let cname = c["name"].as_str().unwrap_or("");
        let spec = specs.get(cname).copied().unwrap_or(&Value::Null);
        let secs = running_secs(c);
        let (cpu, mem, peak) = match procs
            .and_then(|p| p.ctrs.get(cname))
            .filter(|p| c["containerID"].as_str() == Some(p.container_id.as_str()))
        {
            Some(p) => (p.cpu, p.mem as f64, p.peak as f64),
            None => {
                // Simulated: 10 % of the CPU request (0.01 core without one) while running;
                // memory half the memory request (64 MiB without one).
                let req = |r: &str| {
                    spec["resources"]["requests"][r]
                        .as_str()
                        .and_then(parse_quantity)
                };
                let cpu = secs * 0.1 * req("cpu").unwrap_or(0.1);
                let mem =
                    (req("memory").map_or(64.0 * 1048576.0, |m| m / 2.0) / 4096.0).floor() * 4096.0;
                (cpu, mem, mem)
            }
        };
        any = true;
        cpu_sum += cpu;
        mem_sum += mem;
        peak_sum += peak;
        secs_max = secs_max.max(secs);
        let id_path = format!("{cgroup}/{id}");
        let image = c["image"].as_str().unwrap_or("");
        let l = |extra: Option<(&'static str, &'static str)>| -> Vec<(&str, String)> {
            let mut v = vec![("container", cname.to_owned())];
            if let Some((k, x)) = extra {
                v.push((k, x.to_owned()));
            }
            v.extend([
                ("id", id_path.clone()),
                ("image", image.to_owned()),
                ("name", id.to_owned()),
                ("namespace", ns.to_owned()),
                ("pod", name.to_owned()),
            ]);
            v
        };
        let put = |out: &mut Vec<Line>, fam: &str, labels: Vec<(&str, String)>, v: f64| {
            let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            line(out, fam, &labels, v);
        };
        put(
            out,
            "container_cpu_usage_seconds_total",
            l(Some(("cpu", "total"))),
            cpu,
        );
        put(out, "container_memory_working_set_bytes", l(None), mem);
        put(out, "container_memory_usage_bytes", l(None), mem);
        put(out, "container_memory_max_usage_bytes", l(None), peak);
    }
    if !any {
        return;
    }
    // The pod's cgroup: sums of its containers, and the pod network namespace's counters
    // (simulated: 1 KiB/s received and 512 B/s sent while it runs; 0 for process pods, whose
    // traffic cannot be told apart on loopback).
    let base = [("id", cgroup.as_str()), ("namespace", ns), ("pod", name)];
    let mut l: Vec<(&str, &str)> = vec![("cpu", "total")];
    l.extend(base);
    line(out, "container_cpu_usage_seconds_total", &l, cpu_sum);
    line(out, "container_memory_working_set_bytes", &base, mem_sum);
    line(out, "container_memory_usage_bytes", &base, mem_sum);
    line(out, "container_memory_max_usage_bytes", &base, peak_sum);
    let (rx, tx) = if procs.is_some() {
        (0.0, 0.0)
    } else {
        (secs_max.floor() * 1024.0, secs_max.floor() * 512.0)
    };
    let mut l: Vec<(&str, &str)> = vec![("id", cgroup.as_str()), ("interface", "eth0")];
    l.extend([("namespace", ns), ("pod", name)]);
    line(out, "container_network_receive_bytes_total", &l, rx);
    line(out, "container_network_transmit_bytes_total", &l, tx);
}

/// Keeps the last cAdvisor series of a removed pod for the linger period.
pub(crate) fn pod_removed(sh: &Shared, pod: &Value) {
    let opts = sh.opts();
    let mut lines = Vec::new();
    {
        let procs = lock(&sh.procs);
        cadvisor(pod, procs.pods.get(meta_str(pod, "uid")), &mut lines);
    }
    if !lines.is_empty() {
        let until = Instant::now() + opts.metrics_linger;
        lock(&sh.metrics).lingering.push((until, false, lines));
    }
}

/// The exposition text.
pub(crate) fn render(sh: &Shared) -> String {
    let opts = sh.opts();
    let pods: Vec<std::sync::Arc<Value>> = sh.lock().iter(PODS, None).cloned().collect();
    let mut lines = Vec::new();
    {
        let mut procs = lock(&sh.procs);
        procs.sample();
        for pod in &pods {
            ksm(pod, &opts, &mut lines);
            cadvisor(pod, procs.pods.get(meta_str(pod, "uid")), &mut lines);
        }
    }
    {
        let mut st = lock(&sh.metrics);
        let now = Instant::now();
        st.lingering
            .retain(|(until, served, _)| !*served || *until > now);
        for (_, served, l) in &mut st.lingering {
            *served = true;
            lines.extend(l.iter().filter(|(f, _)| *f >= CADVISOR).cloned());
        }
    }
    lines.sort_by_key(|(f, _)| *f);
    let mut out = String::with_capacity(lines.len() * 160);
    let mut fam = usize::MAX;
    for (f, l) in lines {
        if f != fam {
            fam = f;
            let (n, t, h) = FAMILIES[f];
            let _ = writeln!(out, "# HELP {n} {h}\n# TYPE {n} {t}");
        }
        out.push_str(&l);
        out.push('\n');
    }
    apiserver_requests(sh, &mut out);
    out
}

/// `apiserver_request_total` as kube-apiserver exports it (verb in its upper-case HTTP form,
/// resource, subresource, scope), from the request counters (zeroed by a counter reset),
/// so a client can count requests the same way on kubesim and on a real cluster.
fn apiserver_requests(sh: &Shared, out: &mut String) {
    let counters = sh.counters().snapshot();
    if counters.requests.is_empty() {
        return;
    }
    out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.\n# TYPE apiserver_request_total counter\n");
    for r in &counters.requests {
        let verb = match r.verb.as_str() {
            "create" => "POST",
            "update" => "PUT",
            "patch" => "PATCH",
            "delete" => "DELETE",
            "deletecollection" => "DELETECOLLECTION",
            "get" => "GET",
            "list" => "LIST",
            "watch" => "WATCH",
            other => other,
        };
        let (resource, sub) = r.resource.split_once('/').unwrap_or((&r.resource, ""));
        let scope = if r.namespace.is_empty() {
            "cluster"
        } else {
            "namespace"
        };
        let _ = writeln!(
            out,
            "apiserver_request_total{{component=\"apiserver\",resource=\"{resource}\",scope=\"{scope}\",subresource=\"{sub}\",verb=\"{verb}\",version=\"v1\"}} {}",
            r.count
        );
    }
}
