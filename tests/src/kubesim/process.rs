//! Process pods: containers whose image matches a [`ProcessImage`] run as local child
//! processes (see [`super::SimOptions::process_images`] for the contract).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::kubelet::{Ctr, PodRef, container_event, current, write_status};
use super::resources::PODS;
use super::store::meta_str;
use super::volumes::{PodDirs, container_env, mount_env_name, rewrite_path};
use super::{Shared, lock, procfs, status};

/// A local command that stands in for the containers of an image.
///
/// `argv` (program first, looked up on `PATH`) may hold placeholders, expanded per
/// container at start: `{pod_ip}`, `{port}` (the container's first `containerPort`, else its
/// `PORT` variable, else empty), `{pod_name}`, `{namespace}`, `{pod_uid}`, `{container}`,
/// `{pod_dir}` (the pod's directory) and `{home}` (the real directory of the home mount, else
/// the pod's directory). Arguments starting with a mount path are rewritten to its real
/// directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessImage {
    /// Matches a container whose image equals it or contains it (`"notebook"` matches
    /// `"ghcr.io/egi/notebook:1.0"`).
    pub image: String,
    /// The command line.
    pub argv: Vec<String>,
}

impl ProcessImage {
    /// A mapping of `image` to `argv`.
    pub fn new<S: Into<String>>(
        image: impl Into<String>,
        argv: impl IntoIterator<Item = S>,
    ) -> Self {
        Self {
            image: image.into(),
            argv: argv.into_iter().map(Into::into).collect(),
        }
    }

    /// Whether a container with `image` runs this command.
    pub fn matches(&self, image: &str) -> bool {
        !self.image.is_empty() && image.contains(&self.image)
    }
}

/// What the simulator knows of one process container (for stopping and for metrics).
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcCtr {
    /// The process group (= PID of the process started) of the current run, while alive.
    pub(crate) pgid: Option<u32>,
    /// Cumulative CPU seconds of the current run (never decreasing).
    pub(crate) cpu: f64,
    /// Resident bytes at the last sample, and the peak.
    pub(crate) mem: u64,
    pub(crate) peak: u64,
    /// The `containerID` of the current run.
    pub(crate) container_id: String,
}

/// A process pod.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProcPod {
    pub(crate) ns: String,
    pub(crate) name: String,
    pub(crate) dir: PathBuf,
    pub(crate) ctrs: BTreeMap<String, ProcCtr>,
    /// Every process group started for the pod, pruned once empty.
    groups: Vec<u32>,
    /// Leader PIDs of every run.
    pub(crate) pids: Vec<u32>,
}

/// Process pods by UID.
#[derive(Debug, Default)]
pub(crate) struct ProcTable {
    pub(crate) pods: HashMap<String, ProcPod>,
}

impl ProcTable {
    /// Samples CPU and memory of every live group.
    pub(crate) fn sample(&mut self) {
        let groups: Vec<u32> = self
            .pods
            .values()
            .flat_map(|p| p.ctrs.values().filter_map(|c| c.pgid))
            .collect();
        let usage = procfs::groups_usage(&groups);
        for p in self.pods.values_mut() {
            for c in p.ctrs.values_mut() {
                if let Some((cpu, mem)) = c.pgid.and_then(|g| usage.get(&g)) {
                    c.cpu = c.cpu.max(*cpu);
                    c.mem = *mem;
                    c.peak = c.peak.max(*mem);
                }
            }
        }
    }
}

fn table(sh: &Shared) -> std::sync::MutexGuard<'_, ProcTable> {
    lock(&sh.procs)
}

/// The mapping of each container of `specs`, when process pods are on.
pub(crate) fn plan(sh: &Shared, specs: &[Value]) -> Option<Vec<Option<ProcessImage>>> {
    let images = sh.opts().process_images;
    let plan: Vec<Option<ProcessImage>> = specs
        .iter()
        .map(|c| {
            let image = c["image"].as_str().unwrap_or("");
            images.iter().find(|m| m.matches(image)).cloned()
        })
        .collect();
    plan.iter().any(Option::is_some).then_some(plan)
}

/// A started process.
#[derive(Debug)]
struct Run {
    port: Option<u16>,
    exit: Arc<Mutex<Option<i32>>>,
    started_at: String,
}

fn start(
    sh: &Arc<Shared>,
    pod: &Value,
    spec: &Value,
    image: &ProcessImage,
    ip: &str,
    dirs: &PodDirs,
    container_id: &str,
) -> Result<Run, String> {
    let mounts = dirs.mounts(spec);
    let env = container_env(sh, pod, spec, ip, &mounts);
    let cname = spec["name"].as_str().unwrap_or("");
    let port = spec["ports"][0]["containerPort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .or_else(|| {
            env.iter()
                .rev()
                .find(|(k, _)| k == "PORT")
                .and_then(|(_, v)| v.parse().ok())
        });
    let home_path = spec["env"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == "HOME")
        .and_then(|e| e["value"].as_str())
        .unwrap_or("/home/jovyan")
        .trim_end_matches('/')
        .to_owned();
    let home = mounts
        .iter()
        .find(|(p, _)| *p == home_path)
        .or_else(|| {
            let wd = spec["workingDir"].as_str()?.trim_end_matches('/');
            mounts.iter().find(|(p, _)| p == wd)
        })
        .map_or_else(|| dirs.pod_dir.clone(), |(_, d)| d.clone());
    let vars = [
        ("{pod_ip}", ip.to_owned()),
        ("{port}", port.map(|p| p.to_string()).unwrap_or_default()),
        ("{pod_name}", meta_str(pod, "name").to_owned()),
        ("{namespace}", meta_str(pod, "namespace").to_owned()),
        ("{pod_uid}", meta_str(pod, "uid").to_owned()),
        ("{container}", cname.to_owned()),
        ("{pod_dir}", dirs.pod_dir.display().to_string()),
        ("{home}", home.display().to_string()),
    ];
    let argv: Vec<String> = image
        .argv
        .iter()
        .map(|a| {
            let a = vars.iter().fold(a.clone(), |a, (k, v)| a.replace(k, v));
            rewrite_path(&a, &mounts)
        })
        .collect();
    let Some((program, args)) = argv.split_first() else {
        return Err("no command configured for the image".to_owned());
    };
    let log = dirs.pod_dir.join(format!("{cname}.log"));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| format!("opening {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(&home)
        .envs(env)
        .env("HOME", &home)
        .env("KUBESIM_POD_IP", ip)
        .env("KUBESIM_POD_NAME", meta_str(pod, "name"))
        .env("KUBESIM_NAMESPACE", meta_str(pod, "namespace"))
        .env("KUBESIM_POD_DIR", &dirs.pod_dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    for (path, dir) in &mounts {
        cmd.env(mount_env_name(path), dir);
    }
    let mut child = cmd.spawn().map_err(|e| {
        format!("failed to create containerd task: failed to create shim task: OCI runtime create failed: exec: \"{program}\": {e}")
    })?;
    let pgid = child.id().ok_or("the process exited at once")?;
    let exit = Arc::new(Mutex::new(None));
    let exit2 = exit.clone();
    let (sh2, uid, cname2) = (
        sh.clone(),
        meta_str(pod, "uid").to_owned(),
        cname.to_owned(),
    );
    sh.rt.spawn(async move {
        use std::os::unix::process::ExitStatusExt;
        let code = match child.wait().await {
            Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(9)),
            Err(_) => 1,
        };
        *lock(&exit2) = Some(code);
        // A last sample while stragglers of the group may still live.
        let mut t = table(&sh2);
        t.sample();
        if let Some(c) = t.pods.get_mut(&uid).and_then(|p| p.ctrs.get_mut(&cname2))
            && c.pgid == Some(pgid)
        {
            c.pgid = None;
        }
    });
    let mut t = table(sh);
    let entry = t
        .pods
        .entry(meta_str(pod, "uid").to_owned())
        .or_insert_with(|| ProcPod {
            ns: meta_str(pod, "namespace").to_owned(),
            name: meta_str(pod, "name").to_owned(),
            dir: dirs.pod_dir.clone(),
            ..ProcPod::default()
        });
    entry.groups.push(pgid);
    entry.pids.push(pgid);
    entry.ctrs.insert(
        cname.to_owned(),
        ProcCtr {
            pgid: Some(pgid),
            container_id: container_id.to_owned(),
            ..ProcCtr::default()
        },
    );
    Ok(Run {
        port,
        exit,
        started_at: status::now(),
    })
}

fn port_open(ip: &str, port: Option<u16>) -> bool {
    let Some(port) = port else { return true };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_millis(200)).is_ok()
}

/// The phase the kubelet computes from container states.
fn phase_of(ctrs: &[Ctr]) -> &'static str {
    let never_ran =
        |c: &Ctr| c.state.get("waiting").is_some() && c.last.get("terminated").is_none();
    if ctrs.iter().any(never_ran) {
        "Pending"
    } else if ctrs
        .iter()
        .any(|c| c.state.get("running").is_some() || c.state.get("waiting").is_some())
    {
        "Running"
    } else if ctrs
        .iter()
        .all(|c| c.state["terminated"]["exitCode"].as_i64() == Some(0))
    {
        "Succeeded"
    } else {
        "Failed"
    }
}

/// Runs the pod's containers from the moment the kubelet starts them: process containers
/// as processes (ready once their port accepts connections on the pod IP, restarted after
/// the back-off by the pod's restart policy), the others simulated as running and ready.
pub(crate) async fn run(
    sh: &Arc<Shared>,
    p: &PodRef,
    ctrs: &mut [Ctr],
    specs: &[Value],
    plan: Vec<Option<ProcessImage>>,
    ip: &str,
) -> Option<()> {
    let backoff = sh.opts().backoff;
    let pod = current(sh, p)?;
    let policy = pod["spec"]["restartPolicy"]
        .as_str()
        .unwrap_or("Always")
        .to_owned();
    let root = sh.process_root.clone()?;
    let mut dirs = match PodDirs::prepare(sh, &root, &pod) {
        Ok(d) => d,
        Err(e) => {
            let msg = format!("MountVolume.SetUp failed: {e}");
            super::events::emit_event(sh, &pod, "Warning", "FailedMount", &msg, "kubelet", None);
            return None;
        }
    };
    let n = ctrs.len();
    let mut runs: Vec<Option<Run>> = (0..n).map(|_| None).collect();
    let mut due: Vec<Option<Instant>> = vec![None; n];
    for i in 0..n {
        if plan[i].is_some() {
            due[i] = Some(Instant::now());
        } else {
            ctrs[i].running();
        }
    }
    let mut seen_running = false;
    let mut tick = 0u64;
    loop {
        let Some(pod) = current(sh, p) else {
            stop_if_finished(sh, p);
            return None;
        };
        let mut changed = false;
        for i in 0..n {
            let Some(image) = &plan[i] else { continue };
            let fp = format!("spec.containers{{{}}}", ctrs[i].name);
            if due[i].is_some_and(|at| Instant::now() >= at) {
                due[i] = None;
                if ctrs[i].restarts > 0 {
                    let name = ctrs[i].name.clone();
                    let msg = format!(
                        "Container image \"{}\" already present on machine",
                        ctrs[i].image
                    );
                    container_event(sh, &pod, "Normal", "Pulled", &msg, &fp);
                    container_event(
                        sh,
                        &pod,
                        "Normal",
                        "Created",
                        &format!("Created container {name}"),
                        &fp,
                    );
                    container_event(
                        sh,
                        &pod,
                        "Normal",
                        "Started",
                        &format!("Started container {name}"),
                        &fp,
                    );
                }
                ctrs[i].id = format!("containerd://{}", status::hex(64));
                match start(sh, &pod, &specs[i], image, ip, &dirs, &ctrs[i].id) {
                    Ok(r) => {
                        if ctrs[i].restarts > 0 {
                            ctrs[i].state = json!({"running": {"startedAt": r.started_at}});
                            ctrs[i].started = true;
                            changed = true;
                        }
                        runs[i] = Some(r);
                    }
                    Err(msg) => {
                        let now = status::now();
                        let term = json!({"terminated": {"exitCode": 128, "reason": "StartError", "message": msg, "startedAt": now, "finishedAt": now, "containerID": ctrs[i].id}});
                        container_event(
                            sh,
                            &pod,
                            "Warning",
                            "Failed",
                            &format!("Error: {msg}"),
                            &fp,
                        );
                        changed |= exited(
                            sh,
                            p,
                            &pod,
                            &mut ctrs[i],
                            term,
                            128,
                            &policy,
                            backoff,
                            &mut due[i],
                        );
                    }
                }
            }
            let Some(r) = &runs[i] else { continue };
            let code = *lock(&r.exit);
            if let Some(code) = code {
                let reason = if code == 0 { "Completed" } else { "Error" };
                let term = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": r.started_at, "finishedAt": status::now(), "containerID": ctrs[i].id}});
                runs[i] = None;
                changed |= exited(
                    sh,
                    p,
                    &pod,
                    &mut ctrs[i],
                    term,
                    code,
                    &policy,
                    backoff,
                    &mut due[i],
                );
            } else if !ctrs[i].ready && port_open(ip, r.port) {
                ctrs[i].state = json!({"running": {"startedAt": r.started_at}});
                ctrs[i].ready = true;
                ctrs[i].started = true;
                changed = true;
            }
        }
        if changed {
            let phase = phase_of(ctrs);
            write_status(sh, p, phase, ctrs, ip)?;
            if phase == "Running" && !seen_running {
                seen_running = true;
                sh.counters().pod_running(&p.ns, &p.name, &p.uid);
            }
            if matches!(phase, "Succeeded" | "Failed") {
                return Some(());
            }
        }
        tick += 1;
        if tick.is_multiple_of(4) {
            dirs.refresh(sh);
        }
        if tick.is_multiple_of(10) {
            table(sh).sample();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A container's process ended (or never started): by the restart policy, it is restarted
/// after the back-off (CrashLoopBackOff, a BackOff event) or stays terminated.
#[allow(clippy::too_many_arguments)]
fn exited(
    sh: &Shared,
    p: &PodRef,
    pod: &Value,
    c: &mut Ctr,
    term: Value,
    code: i32,
    policy: &str,
    backoff: Duration,
    due: &mut Option<Instant>,
) -> bool {
    c.ready = false;
    c.started = false;
    if policy == "Always" || (policy == "OnFailure" && code != 0) {
        c.last = term;
        c.restarts += 1;
        let msg = format!(
            "back-off {}s restarting failed container={} pod={}_{}({})",
            10 * c.restarts,
            c.name,
            p.name,
            p.ns,
            p.uid
        );
        c.waiting("CrashLoopBackOff", Some(&msg));
        let ev = format!(
            "Back-off restarting failed container {} in pod {}_{}({})",
            c.name, p.name, p.ns, p.uid
        );
        let fp = format!("spec.containers{{{}}}", c.name);
        container_event(sh, pod, "Warning", "BackOff", &ev, &fp);
        *due = Some(Instant::now() + backoff);
    } else {
        c.state = term;
    }
    true
}

/// Stops the processes of a pod that went Succeeded or Failed (a fault) without deletion.
fn stop_if_finished(sh: &Arc<Shared>, p: &PodRef) {
    let finished = sh.lock().get(PODS, &p.ns, &p.name).is_some_and(|pod| {
        meta_str(pod, "uid") == p.uid
            && !pod["metadata"]["deletionTimestamp"].is_string()
            && matches!(
                pod["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            )
    });
    if finished {
        let (sh2, uid) = (sh.clone(), p.uid.clone());
        sh.rt
            .spawn(async move { stop_pod(&sh2, &uid, Duration::from_secs(5)).await });
    }
}

/// Whether the pod with `uid` has processes still alive.
pub(crate) fn has_processes(sh: &Shared, uid: &str) -> bool {
    let groups = table(sh)
        .pods
        .get(uid)
        .map(|p| p.groups.clone())
        .unwrap_or_default();
    groups
        .into_iter()
        .any(|g| !procfs::group_members(g).is_empty())
}

fn live_groups(sh: &Shared, uid: Option<&str>) -> Vec<u32> {
    let mut t = table(sh);
    t.sample();
    let mut out = Vec::new();
    for (u, p) in &mut t.pods {
        if uid.is_some_and(|w| w != u) {
            continue;
        }
        p.groups.retain(|&g| !procfs::group_members(g).is_empty());
        out.extend(p.groups.iter().copied());
    }
    out
}

/// SIGTERM to each group, SIGKILL to what is left after `grace`.
fn signal_and_wait_blocking(groups: &[u32], grace: Duration) {
    for &g in groups {
        procfs::signal_group(g, "TERM");
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && groups.iter().any(|&g| !procfs::group_members(g).is_empty())
    {
        std::thread::sleep(Duration::from_millis(25));
    }
    for &g in groups {
        procfs::signal_group(g, "KILL");
    }
}

/// Stops the processes of the pod with `uid`: SIGTERM to each process group, SIGKILL after
/// `grace`; returns once they are gone.
pub(crate) async fn stop_pod(sh: &Shared, uid: &str, grace: Duration) {
    let groups = live_groups(sh, Some(uid));
    if groups.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || signal_and_wait_blocking(&groups, grace)).await;
    live_groups(sh, Some(uid));
}

/// Stops every process of the simulator (blocking at most `grace` plus a moment).
pub(crate) fn stop_all_blocking(sh: &Shared, grace: Duration) {
    let groups = live_groups(sh, None);
    if !groups.is_empty() {
        signal_and_wait_blocking(&groups, grace);
    }
}

/// The grace period of a pod being deleted (its `deletionGracePeriodSeconds`, else its
/// `terminationGracePeriodSeconds`, else 30 s).
pub(crate) fn grace_of(pod: &Value) -> Duration {
    let secs = pod["metadata"]["deletionGracePeriodSeconds"]
        .as_u64()
        .or_else(|| pod["spec"]["terminationGracePeriodSeconds"].as_u64())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// A pod left the store: its processes are stopped in the background.
pub(crate) fn pod_removed(sh: &Arc<Shared>, pod: &Value) {
    let uid = meta_str(pod, "uid").to_owned();
    if !table(sh).pods.contains_key(&uid) {
        return;
    }
    let grace = grace_of(pod).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let sh2 = sh.clone();
    sh.rt.spawn(async move {
        stop_pod(&sh2, &uid, grace).await;
        table(&sh2).pods.remove(&uid);
    });
}

/// The log of a process container of `pod` (`container`: its first container by default;
/// empty for simulated containers).
pub(crate) fn log_text(sh: &Shared, pod: &Value, container: Option<&str>) -> Vec<u8> {
    let first = pod["spec"]["containers"][0]["name"].as_str().unwrap_or("");
    let cname = container.unwrap_or(first);
    let dir = table(sh)
        .pods
        .get(meta_str(pod, "uid"))
        .map(|p| p.dir.clone());
    dir.and_then(|d| std::fs::read(d.join(format!("{cname}.log"))).ok())
        .unwrap_or_default()
}
