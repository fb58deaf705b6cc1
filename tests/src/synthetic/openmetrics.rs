//! Rendering a [`plan`](super::plan) as OpenMetrics text, family by family.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

use super::{Generation, Params, Pod, Runtime, plan, rng_for};

/// What [`write`](fn@write) produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pods planned.
    pub pods: usize,
    /// Series written (distinct label sets).
    pub series: u64,
    /// Samples written.
    pub samples: u64,
    /// Bytes written.
    pub bytes: u64,
}

/// The whole history as a string: for small parameters such as [`Params::sample`].
pub fn generate(params: &Params) -> io::Result<String> {
    let mut out = Vec::new();
    write(params, &mut out)?;
    String::from_utf8(out).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Streams the history of `pods` pods over 24 h ending at `end` ([`Params::large`], with
/// `seed`) to `out`, for load tests of 10,000 or 100,000 pods. Memory stays at the size of
/// the plan (about 1 KiB per pod); `out` is buffered here.
pub fn generate_large(pods: usize, end: i64, seed: u64, out: impl Write) -> io::Result<Stats> {
    write(
        &Params {
            seed,
            ..Params::large(pods, end)
        },
        out,
    )
}

/// Plans the pods for `params` and streams their history to `out`.
pub fn write(params: &Params, out: impl Write) -> io::Result<Stats> {
    let pods = plan(params)?;
    write_pods(params, &pods, out)
}

/// Streams the history of already planned `pods` (from [`plan`] with the same `params`).
pub fn write_pods(params: &Params, pods: &[Pod], out: impl Write) -> io::Result<Stats> {
    let mut w = Writer {
        out: BufWriter::with_capacity(1 << 16, out),
        prefix: String::new(),
        open: false,
        stats: Stats {
            pods: pods.len(),
            ..Stats::default()
        },
    };
    w.family(
        "kube_pod_created",
        "gauge",
        "[STABLE] Unix creation timestamp",
    )?;
    for p in pods {
        w.series("kube_pod_created", &ksm_labels(p, &[]));
        for t in p.ksm_times() {
            w.sample(p.created as f64, t)?;
        }
    }
    w.family(
        "kube_pod_status_phase",
        "gauge",
        "[STABLE] The pods current phase.",
    )?;
    for p in pods {
        for phase in ["Pending", "Running", "Succeeded"] {
            w.series("kube_pod_status_phase", &ksm_labels(p, &[("phase", phase)]));
            for t in p.ksm_times() {
                w.sample(f64::from(u8::from(phase_at(p, t) == phase)), t)?;
            }
        }
    }
    w.family(
        "kube_pod_annotations",
        "gauge",
        "Kubernetes annotations converted to Prometheus labels.",
    )?;
    for p in pods {
        let mut extra = Vec::new();
        if let Some(flavor) = &p.flavor {
            extra.push(("annotation_egi_eu_flavor", flavor.as_str()));
        }
        if let Some(group) = &p.primary_group {
            extra.push(("annotation_egi_eu_primary_group", group.as_str()));
        }
        extra.push(("annotation_hub_jupyter_org_username", p.user.as_str()));
        w.series("kube_pod_annotations", &ksm_labels(p, &extra));
        for t in p.ksm_times() {
            w.sample(1.0, t)?;
        }
    }
    w.family(
        "kube_pod_container_info",
        "gauge",
        "[STABLE] Information about a container in a pod.",
    )?;
    for p in pods {
        let runtime = match p.runtime {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
        };
        for (k, g) in p.containers.iter().enumerate() {
            // Reported from the container's start until the next one starts (or the pod goes).
            let until = p.containers.get(k + 1).map_or(p.gone, |n| n.start - 1);
            let container_id = format!("{runtime}://{}", g.id);
            let labels = ksm_labels(
                p,
                &[
                    ("container", p.container.as_str()),
                    ("container_id", container_id.as_str()),
                    ("image", p.image.as_str()),
                    ("image_id", p.image_id.as_str()),
                    ("image_spec", p.image.as_str()),
                ],
            );
            w.series("kube_pod_container_info", &labels);
            for t in p.ksm_times().filter(|&t| g.start <= t && t <= until) {
                w.sample(1.0, t)?;
            }
        }
    }
    w.family(
        "kube_pod_container_resource_requests",
        "gauge",
        "The number of requested request resource by a container.",
    )?;
    for p in pods {
        for (resource, unit, value) in [
            ("cpu", "core", p.cpu_request),
            ("memory", "byte", p.memory_request),
        ] {
            let labels = ksm_labels(
                p,
                &[
                    ("container", p.container.as_str()),
                    ("node", p.node.as_str()),
                    ("resource", resource),
                    ("unit", unit),
                ],
            );
            w.series("kube_pod_container_resource_requests", &labels);
            for t in p.ksm_times() {
                w.sample(value, t)?;
            }
        }
    }
    for family in Cadvisor::ALL {
        let (name, kind, help) = family.declaration();
        w.family(name, kind, help)?;
        let sample_name = family.sample_name();
        for p in pods {
            for s in cadvisor_series(params, p, family) {
                let labels: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                w.series(sample_name, &labels);
                for (t, v) in s.samples {
                    w.sample(v, t)?;
                }
            }
        }
    }
    w.out.write_all(b"# EOF\n")?;
    w.stats.bytes += 6;
    w.out.flush()?;
    Ok(w.stats)
}

/// The phase kube-state-metrics reports at scrape time `t`.
fn phase_at(p: &Pod, t: i64) -> &'static str {
    let ready = p.containers.first().map(|g| g.start);
    match (ready, p.exited) {
        (_, Some(x)) if t >= x => "Succeeded",
        (Some(r), _) if t >= r => "Running",
        _ => "Pending",
    }
}

fn ksm_labels<'a>(p: &'a Pod, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![
        ("namespace", p.namespace.as_str()),
        ("pod", p.name.as_str()),
        ("uid", p.uid.as_str()),
    ];
    labels.extend_from_slice(extra);
    labels
}

struct Writer<W: Write> {
    out: BufWriter<W>,
    /// `name{labels}` of the current series.
    prefix: String,
    /// Whether the current series has had a sample (series are counted at their first).
    open: bool,
    stats: Stats,
}

impl<W: Write> Writer<W> {
    fn family(&mut self, name: &str, kind: &str, help: &str) -> io::Result<()> {
        let text = format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
        self.stats.bytes += text.len() as u64;
        self.out.write_all(text.as_bytes())
    }

    /// Starts a series; labels with empty values are left out, as Prometheus stores them.
    fn series(&mut self, name: &str, labels: &[(&str, &str)]) {
        self.prefix.clear();
        self.prefix.push_str(name);
        let mut sep = '{';
        for (k, v) in labels.iter().filter(|(_, v)| !v.is_empty()) {
            self.prefix.push(sep);
            self.prefix.push_str(k);
            self.prefix.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.prefix.push_str("\\\\"),
                    '"' => self.prefix.push_str("\\\""),
                    '\n' => self.prefix.push_str("\\n"),
                    c => self.prefix.push(c),
                }
            }
            self.prefix.push('"');
            sep = ',';
        }
        if sep == ',' {
            self.prefix.push('}');
        }
        self.open = false;
    }

    fn sample(&mut self, value: f64, t: i64) -> io::Result<()> {
        if !self.open {
            self.open = true;
            self.stats.series += 1;
        }
        self.stats.samples += 1;
        let start = self.prefix.len();
        // Reuse the prefix buffer for the whole line, then cut it back.
        let _ = writeln!(self.prefix, " {value} {t}");
        self.stats.bytes += self.prefix.len() as u64;
        let result = self.out.write_all(self.prefix.as_bytes());
        self.prefix.truncate(start);
        result
    }
}

/// The cAdvisor families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cadvisor {
    Cpu,
    Memory,
    Receive,
    Transmit,
}

impl Cadvisor {
    const ALL: [Cadvisor; 4] = [
        Cadvisor::Cpu,
        Cadvisor::Memory,
        Cadvisor::Receive,
        Cadvisor::Transmit,
    ];

    /// Family name, type and help.
    fn declaration(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Cadvisor::Cpu => (
                "container_cpu_usage_seconds",
                "counter",
                "Cumulative cpu time consumed in seconds.",
            ),
            Cadvisor::Memory => (
                "container_memory_max_usage_bytes",
                "gauge",
                "Maximum memory usage recorded in bytes",
            ),
            Cadvisor::Receive => (
                "container_network_receive_bytes",
                "counter",
                "Cumulative count of bytes received",
            ),
            Cadvisor::Transmit => (
                "container_network_transmit_bytes",
                "counter",
                "Cumulative count of bytes transmitted",
            ),
        }
    }

    fn sample_name(self) -> &'static str {
        match self {
            Cadvisor::Cpu => "container_cpu_usage_seconds_total",
            Cadvisor::Memory => "container_memory_max_usage_bytes",
            Cadvisor::Receive => "container_network_receive_bytes_total",
            Cadvisor::Transmit => "container_network_transmit_bytes_total",
        }
    }
}

/// One series being built: labels (cAdvisor order) and samples.
struct Series {
    labels: Vec<(&'static str, String)>,
    samples: Vec<(i64, f64)>,
}

/// Which cgroup a cAdvisor series describes.
enum Cgroup<'a> {
    Pod,
    Sandbox(usize, &'a Generation),
    Container(usize, &'a Generation),
}

fn cadvisor_labels(p: &Pod, cgroup: &Cgroup<'_>, family: Cadvisor) -> Vec<(&'static str, String)> {
    let pod_cgroup = format!("/kubepods/burstable/pod{}", p.uid);
    let docker_name = |container: &str, restart: usize| {
        format!(
            "k8s_{container}_{}_{}_{}_{restart}",
            p.name, p.namespace, p.uid
        )
    };
    let (container, id, image, name) = match (cgroup, p.runtime) {
        (Cgroup::Pod, _) => (String::new(), pod_cgroup, String::new(), String::new()),
        (Cgroup::Sandbox(k, g), Runtime::Docker) => (
            "POD".to_owned(),
            format!("{pod_cgroup}/{}", g.id),
            "k8s.gcr.io/pause:3.5".to_owned(),
            docker_name("POD", *k),
        ),
        (Cgroup::Sandbox(_, g), Runtime::Containerd) => (
            String::new(),
            format!("{pod_cgroup}/{}", g.id),
            "registry.k8s.io/pause:3.9".to_owned(),
            g.id.clone(),
        ),
        (Cgroup::Container(k, g), runtime) => (
            p.container.clone(),
            format!("{pod_cgroup}/{}", g.id),
            p.image.clone(),
            match runtime {
                Runtime::Docker => docker_name(&p.container, *k),
                Runtime::Containerd => g.id.clone(),
            },
        ),
    };
    let mut labels = vec![("container", container)];
    if family == Cadvisor::Cpu {
        labels.push(("cpu", "total".to_owned()));
    }
    labels.push(("id", id));
    labels.push(("image", image));
    if matches!(family, Cadvisor::Receive | Cadvisor::Transmit) {
        labels.push(("interface", "eth0".to_owned()));
    }
    labels.push(("name", name));
    labels.push(("namespace", p.namespace.clone()));
    labels.push(("pod", p.name.clone()));
    labels
}

/// The index of the generation alive at `t`, if any.
fn alive(gens: &[Generation], t: i64) -> Option<usize> {
    gens.iter().position(|g| g.start <= t && t < g.end)
}

/// Rounds down to a multiple of 4 KiB (memory is counted in pages).
fn pages(bytes: f64) -> f64 {
    (bytes / 4096.0).floor() * 4096.0
}

/// The cAdvisor series of one pod for one family, simulated from the pod's own random
/// stream: the same every time it is asked.
fn cadvisor_series(params: &Params, p: &Pod, family: Cadvisor) -> Vec<Series> {
    if p.containers.is_empty() {
        return Vec::new();
    }
    let tag = match family {
        Cadvisor::Cpu => 10,
        Cadvisor::Memory => 11,
        Cadvisor::Receive => 12,
        Cadvisor::Transmit => 13,
    };
    let mut rng = rng_for(params.seed, p.index, tag);
    let new = |cgroup: Cgroup<'_>| Series {
        labels: cadvisor_labels(p, &cgroup, family),
        samples: Vec::new(),
    };
    let mut pod = new(Cgroup::Pod);
    let mut containers: Vec<Series> = (p.containers.iter().enumerate())
        .map(|(k, g)| new(Cgroup::Container(k, g)))
        .collect();
    let mut sandboxes: Vec<Series> = (p.sandboxes.iter().enumerate())
        .map(|(k, g)| new(Cgroup::Sandbox(k, g)))
        .collect();
    // Per generation: the counter (CPU in 1/64 s, bytes) or the peak memory.
    let mut container_value = vec![0.0_f64; containers.len()];
    let mut sandbox_value = vec![0.0_f64; sandboxes.len()];
    let mut pod_peak = 0.0_f64;
    let mut last_t: Option<i64> = None;
    let receive_rate = p.net_rate;
    let rate = if family == Cadvisor::Transmit {
        receive_rate / 3.0
    } else {
        receive_rate
    };
    let sandbox_memory = pages(600_000.0 + 400_000.0 * rng.f64());

    for t in p.cadvisor_times(p.created, p.gone) {
        let c = alive(&p.containers, t);
        let s = alive(&p.sandboxes, t);
        let since = |start: i64| t - last_t.map_or(start, |l| l.max(start));
        match family {
            Cadvisor::Cpu => {
                if let Some(k) = c {
                    let dt = since(p.containers[k].start) as f64;
                    let ticks = (p.load * dt * 64.0 * (0.5 + rng.f64())).round();
                    container_value[k] += ticks.max(1.0);
                    containers[k].samples.push((t, container_value[k] / 64.0));
                }
                if let Some(k) = s {
                    sandbox_value[k] += f64::from(rng.u8(..3));
                    sandboxes[k].samples.push((t, sandbox_value[k] / 64.0));
                }
                let total: f64 = container_value.iter().chain(&sandbox_value).sum();
                pod.samples.push((t, total / 64.0));
            }
            Cadvisor::Memory => {
                let mut current = 0.0;
                if let Some(k) = c {
                    let wanted = p.memory_base * (0.6 + 0.6 * rng.f64());
                    container_value[k] = pages(container_value[k].max(wanted));
                    if rng.u8(..10) == 0 {
                        let spike = p.memory_request * (0.5 + 0.45 * rng.f64());
                        container_value[k] = pages(container_value[k].max(spike));
                    }
                    containers[k].samples.push((t, container_value[k]));
                    current += container_value[k];
                }
                if let Some(k) = s {
                    sandboxes[k].samples.push((t, sandbox_memory));
                    current += sandbox_memory;
                }
                pod_peak = pod_peak.max(current);
                pod.samples.push((t, pod_peak));
            }
            Cadvisor::Receive | Cadvisor::Transmit => {
                // The counters belong to the network namespace, i.e. the sandbox: the pod
                // cgroup reports the same values (and resets when the sandbox is recreated).
                if let Some(k) = s {
                    let dt = since(p.sandboxes[k].start) as f64;
                    let mut bytes = (rate * dt * (0.5 + rng.f64())).round();
                    if c.is_some() && rng.u8(..20) == 0 {
                        bytes += f64::from(rng.u32(1_000_000..50_000_000));
                    }
                    sandbox_value[k] += bytes;
                    sandboxes[k].samples.push((t, sandbox_value[k]));
                    pod.samples.push((t, sandbox_value[k]));
                }
            }
        }
        last_t = Some(t);
    }
    // Network counters are reported for the pod cgroup and the sandbox only, as cAdvisor
    // under the kubelet does.
    let mut all = vec![pod];
    all.append(&mut sandboxes);
    if matches!(family, Cadvisor::Cpu | Cadvisor::Memory) {
        all.append(&mut containers);
    }
    all.retain(|s| !s.samples.is_empty());
    all
}
