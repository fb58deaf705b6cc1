//! A deterministic, synthetic Prometheus history of JupyterHub notebook pods.
//!
//! [`plan`] decides, from [`Params`] alone, what every pod does (when it is created, starts,
//! restarts and goes away, who owns it, how much it uses); [`write`](fn@write) renders that plan as the
//! series kube-state-metrics and cAdvisor would have left in Prometheus, in the OpenMetrics
//! text that `promtool tsdb create-blocks-from openmetrics` backfills:
//!
//! - timestamps in whole seconds, all within `[end - span, end]`;
//! - counter families declared without `_total` (`# TYPE container_cpu_usage_seconds counter`)
//!   and their samples named with it;
//! - every family contiguous, each series' samples in time order, `# EOF` last.
//!
//! The output is streamed family by family, pod by pod, so 100,000 pods need no more memory
//! than the plan itself (see [`generate_large`]).
//!
//! Pods follow a fixed cycle of [`Kind`]s, so that any history of 25 pods or more holds every
//! case the accounting has to get right: pods still running at the end, pods created before the
//! history starts, finished pods, pods whose notebook container restarted (a new cAdvisor series
//! whose counter starts again at 0), a pod whose sandbox was recreated (the pod-level network
//! counter resets), short-lived pods never seen Running, a pod still Pending at the end, a user's
//! second session under the same pod name, and a pod outside the default `pod=~'jupyter-.*'`
//! filter. Usernames include non-ASCII ones, primary groups include several VOs, an
//! entitlement URN and none at all.
//!
//! All values are exact in binary floating point (CPU seconds are multiples of 1/64, bytes are
//! integers), so sums do not depend on the order in which a query engine adds them.
//!
//! ```
//! use egi_test_harness::synthetic::{self, Params};
//!
//! let text = synthetic::generate(&Params::sample()).unwrap();
//! assert!(text.ends_with("# EOF\n"));
//! ```

use std::io;
use std::time::Duration;

use fastrand::Rng;

mod openmetrics;
#[cfg(test)]
mod tests;

pub use openmetrics::{Stats, generate, generate_large, write, write_pods};

/// The namespace of every synthetic pod.
pub const NAMESPACE: &str = "hub";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    /// Number of pods (at least 1).
    pub pods: usize,
    /// Length of the history: at least one hour, and a multiple of `scrape_interval` at
    /// least 12 times it.
    pub span: Duration,
    /// Time of the last scrape, epoch seconds: no sample is later.
    pub end: i64,
    /// Time between two scrapes, whole seconds, from 30 s to 30 min.
    pub scrape_interval: Duration,
    /// Seed of every random choice: the same parameters give the same bytes.
    pub seed: u64,
}

impl Params {
    /// End of the bundled sample history: 2025-11-03T12:00:00Z.
    pub const SAMPLE_END: i64 = 1_762_171_200;

    /// The parameters of the bundled `examples/data/notebooks.om`: 25 pods over 12 h,
    /// scraped every 20 minutes (about 640 kB; every 5 minutes would be 2.4 MB), ending at
    /// [`Params::SAMPLE_END`], seed 2025.
    pub fn sample() -> Self {
        Self {
            pods: 25,
            span: Duration::from_secs(12 * 3600),
            end: Self::SAMPLE_END,
            scrape_interval: Duration::from_secs(1200),
            seed: 2025,
        }
    }

    /// The parameters of a load test: `pods` pods over 24 h ending at `end` (epoch seconds,
    /// rounded down to the interval), scraped every 5 minutes, seed 1.
    pub fn large(pods: usize, end: i64) -> Self {
        Self {
            pods,
            span: Duration::from_secs(24 * 3600),
            end: end - end.rem_euclid(300),
            scrape_interval: Duration::from_secs(300),
            seed: 1,
        }
    }

    /// First scrape time, epoch seconds.
    pub fn start(&self) -> i64 {
        self.end - self.span_secs()
    }

    fn span_secs(&self) -> i64 {
        i64::try_from(self.span.as_secs()).unwrap_or(i64::MAX)
    }

    fn interval_secs(&self) -> i64 {
        i64::try_from(self.scrape_interval.as_secs()).unwrap_or(i64::MAX)
    }

    /// Checks the constraints documented on each field.
    pub fn validate(&self) -> io::Result<()> {
        let bad = |why: String| Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        let (span, interval) = (self.span, self.scrape_interval);
        if self.pods == 0 {
            return bad("at least one pod is needed".to_owned());
        }
        if span.subsec_nanos() != 0 || interval.subsec_nanos() != 0 {
            return bad(format!(
                "span {span:?} and interval {interval:?} must be whole seconds"
            ));
        }
        if !(30..=1800).contains(&interval.as_secs()) {
            return bad(format!(
                "scrape interval {interval:?} must be from 30 s to 30 min"
            ));
        }
        if span.as_secs() < 3600 || span.as_secs() > 400 * 86_400 {
            return bad(format!("span {span:?} must be from 1 h to 400 days"));
        }
        if span.as_secs() % interval.as_secs() != 0 || span.as_secs() < 12 * interval.as_secs() {
            return bad(format!(
                "span {span:?} must be a multiple of the interval {interval:?}, at least 12 times"
            ));
        }
        if self
            .end
            .checked_sub(self.span_secs() + 4 * 86_400)
            .is_none()
        {
            return bad(format!("end {} is out of range", self.end));
        }
        Ok(())
    }
}

/// What happens to a pod. [`plan`] assigns kinds in a fixed cycle of 25 (see [`Kind::CYCLE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// Created during the history, still running at the end.
    Running,
    /// Created up to 3 days before the history starts, still running at the end.
    LongRunning,
    /// Created up to 2 days before the history starts, finished during it.
    Inherited,
    /// Stopped by JupyterHub during the history: deleted while Running.
    Finished,
    /// The notebook exited on its own: reported `Succeeded` for one more scrape, then deleted.
    Exited,
    /// The notebook container restarted once or twice (new container id, counters from 0);
    /// still running at the end.
    Restarted,
    /// The pod sandbox was recreated (and the notebook container with it): the pod-level
    /// network counters reset; finished during the history.
    SandboxRestarted,
    /// Lived less than 90 s and was only ever seen Pending; no container usage.
    ShortLived,
    /// Created less than 90 s before the end, still Pending at the last scrape.
    Pending,
    /// The previous pod's user started a new server: same pod name, new uid, after the previous
    /// one was deleted; finished, or still running if it started late.
    Resumed,
    /// A `dask-worker-…` pod in the same namespace: outside the default `pod=~'jupyter-.*'`
    /// filter.
    OutsideFilter,
}

impl Kind {
    /// The kinds of pods 0 to 24; pod `i` has kind `CYCLE[i % 25]`.
    pub const CYCLE: [Kind; 25] = [
        Kind::Running,
        Kind::Finished,
        Kind::Restarted,
        Kind::ShortLived,
        Kind::Finished,
        Kind::Resumed,
        Kind::LongRunning,
        Kind::OutsideFilter,
        Kind::Exited,
        Kind::Running,
        Kind::Finished,
        Kind::SandboxRestarted,
        Kind::Running,
        Kind::ShortLived,
        Kind::Finished,
        Kind::Pending,
        Kind::Running,
        Kind::Inherited,
        Kind::Exited,
        Kind::Finished,
        Kind::Restarted,
        Kind::Running,
        Kind::Finished,
        Kind::Exited,
        Kind::Finished,
    ];
}

/// The primary-group annotation values, cycled over pods (`None`: no annotation).
pub const PRIMARY_GROUPS: [Option<&str>; 6] = [
    Some("vo.notebooks.egi.eu"),
    Some("vo.access.egi.eu"),
    None,
    Some("urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"),
    Some("vo.example.org"),
    Some("vo.notebooks.egi.eu"),
];

/// Usernames of the first pods; pod `i` beyond the list is `user<i>`.
pub const USERNAMES: [&str; 24] = [
    "zoë",
    "José Müller",
    "alice",
    "bob",
    "0c8a1d3e5f7b9d2c4e6a8b0d2f4a6c8e@egi.eu",
    "carol",
    "dmitri",
    "eva",
    "farid",
    "grace",
    "hiro",
    "ines",
    "jakub",
    "kwame",
    "lena",
    "mateo",
    "nadia",
    "oskar",
    "priya",
    "quentin",
    "rosa",
    "Søren",
    "tomás",
    "uma",
];

/// Flavor annotation, CPU request (cores) and memory request (bytes), cycled over pods.
const FLAVORS: [(&str, f64, f64); 3] = [
    ("small", 0.5, 2.0 * GIB),
    ("medium", 2.0, 4.0 * GIB),
    ("large", 4.0, 16.0 * GIB),
];

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Notebook images, cycled over pods.
const IMAGES: [&str; 3] = [
    "docker.io/eginotebooks/single-user:sha-8c6b2a1",
    "docker.io/eginotebooks/datascience-notebook:2.3.0",
    "docker.io/eginotebooks/phenomenal-notebook:1.4.1",
];

/// The image of [`Kind::OutsideFilter`] pods.
const DASK_IMAGE: &str = "ghcr.io/dask/dask:2024.1.0";

/// The pod name KubeSpawner gives a user's server: `jupyter-` followed by the username with
/// every byte outside `[a-z0-9]` written `-xx` (lower-case hex; its legacy "escape" scheme).
pub fn pod_name(user: &str) -> String {
    let mut name = String::from("jupyter-");
    escape_into(&mut name, user);
    name
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("-{b:02x}"));
            }
        }
    }
}

/// How the container runtime names things: dockershim (cAdvisor `name` like
/// `k8s_notebook_<pod>_<ns>_<uid>_<restart>`, sandbox `container="POD"`) or containerd
/// (`name` is the container id, the sandbox has no `container` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Runtime {
    Docker,
    Containerd,
}

/// A period during which a container (or sandbox) existed: `[start, end)`, epoch seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Generation {
    pub(crate) start: i64,
    pub(crate) end: i64,
    /// 64 hex digits.
    pub(crate) id: String,
}

/// One planned pod: what it is and when things happen to it. Times are epoch seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Pod {
    /// Position in the plan.
    pub index: usize,
    /// What happens to it.
    pub kind: Kind,
    /// Namespace ([`NAMESPACE`]).
    pub namespace: String,
    /// Pod name (`jupyter-<escaped user>`, or `dask-worker-…` outside the filter).
    pub name: String,
    /// Pod UID (UUID v4 form).
    pub uid: String,
    /// `hub.jupyter.org/username` annotation.
    pub user: String,
    /// `egi.eu/primary_group` annotation, if any.
    pub primary_group: Option<String>,
    /// `egi.eu/flavor` annotation, if any.
    pub flavor: Option<String>,
    /// Image of the main container.
    pub image: String,
    /// Name of the main container (`notebook`, or `dask-worker`).
    pub container: String,
    /// CPU request of the main container, cores.
    pub cpu_request: f64,
    /// Memory request of the main container, bytes.
    pub memory_request: f64,
    /// Creation time: the value of `kube_pod_created` (may be before the history starts).
    pub created: i64,
    /// First kube-state-metrics sample.
    pub first_seen: i64,
    /// Last kube-state-metrics sample.
    pub last_seen: i64,
    /// First and last kube-state-metrics samples with `phase="Running"` equal to 1.
    pub running: Option<(i64, i64)>,
    /// Number of notebook container restarts.
    pub restarts: usize,
    pub(crate) interval: i64,
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) gone: i64,
    pub(crate) exited: Option<i64>,
    pub(crate) runtime: Runtime,
    pub(crate) node: String,
    pub(crate) image_id: String,
    pub(crate) containers: Vec<Generation>,
    pub(crate) sandboxes: Vec<Generation>,
    /// Average CPU use, cores.
    pub(crate) load: f64,
    /// Memory the notebook settles at, bytes.
    pub(crate) memory_base: f64,
    /// Average network receive rate, bytes per second.
    pub(crate) net_rate: f64,
}

impl Pod {
    /// Whether the default filter `pod=~'jupyter-.*'` selects this pod.
    pub fn in_default_filter(&self) -> bool {
        self.name.starts_with("jupyter-")
    }

    /// Times of its kube-state-metrics samples.
    pub fn ksm_times(&self) -> impl Iterator<Item = i64> + '_ {
        grid(self.start, self.interval, self.first_seen, self.last_seen)
    }

    /// Whether kube-state-metrics reported it at some time in `[from, to]` (a closed
    /// interval, like a PromQL range selector).
    pub fn seen_in(&self, from: i64, to: i64) -> bool {
        self.ksm_times().any(|t| from <= t && t <= to)
    }

    /// The Running samples (value 1) in `[from, to]`: how many, and the last one.
    pub fn running_in(&self, from: i64, to: i64) -> (u64, Option<i64>) {
        let Some((first, last)) = self.running else {
            return (0, None);
        };
        let times = grid(self.start, self.interval, first.max(from), last.min(to));
        times.fold((0, None), |(n, _), t| (n + 1, Some(t)))
    }

    /// Whether cAdvisor reported its main container at some time in `[from, to]`.
    pub fn container_seen_in(&self, from: i64, to: i64) -> bool {
        self.containers.iter().any(|g| {
            self.cadvisor_times(g.start, g.end)
                .any(|t| from <= t && t <= to)
        })
    }

    /// Whether cAdvisor reported its pod's network (the sandbox) at some time in `[from, to]`.
    pub fn sandbox_seen_in(&self, from: i64, to: i64) -> bool {
        self.sandboxes.iter().any(|g| {
            self.cadvisor_times(g.start, g.end)
                .any(|t| from <= t && t <= to)
        })
    }

    /// Whether the pod-level network counters reset (the sandbox was recreated) within
    /// `(from, to]`, with a sample on each side of the reset inside `[from, to]`.
    pub fn network_reset_in(&self, from: i64, to: i64) -> bool {
        let inside = |g: &Generation| {
            self.cadvisor_times(g.start, g.end)
                .any(|t| from <= t && t <= to)
        };
        self.sandboxes
            .windows(2)
            .any(|w| inside(&w[0]) && inside(&w[1]))
    }

    /// The cAdvisor scrape times in `[from, until)`: each kube-state-metrics scrape time less
    /// a small offset (cAdvisor is another scrape job), never before the history starts.
    pub(crate) fn cadvisor_times(&self, from: i64, until: i64) -> impl Iterator<Item = i64> {
        let offset = cadvisor_offset(self.interval);
        let (start, interval) = (self.start, self.interval);
        let last = until.saturating_sub(1).min(self.end);
        grid(
            start,
            interval,
            from.saturating_add(offset),
            last.saturating_add(offset),
        )
        .map(move |t| t - offset)
        .filter(move |&t| t >= start)
    }
}

/// How much earlier than kube-state-metrics cAdvisor is scraped.
fn cadvisor_offset(interval: i64) -> i64 {
    (interval / 4).min(13)
}

/// The scrape times `start + k * interval` within `[from, to]`.
fn grid(start: i64, interval: i64, from: i64, to: i64) -> impl Iterator<Item = i64> {
    let first = if from <= start {
        start
    } else {
        start + (from - start + interval - 1) / interval * interval
    };
    (0..)
        .map(move |k| first + k * interval)
        .take_while(move |&t| t <= to)
}

/// Decides every pod. Fails if the parameters are invalid.
pub fn plan(params: &Params) -> io::Result<Vec<Pod>> {
    params.validate()?;
    let mut pods: Vec<Pod> = Vec::with_capacity(params.pods);
    for index in 0..params.pods {
        let pod = plan_pod(params, index, pods.last());
        pods.push(pod);
    }
    Ok(pods)
}

/// splitmix64: spreads a seed so that neighbouring pods get unrelated random streams.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A random stream for pod `index` and purpose `tag`.
pub(crate) fn rng_for(seed: u64, index: usize, tag: u64) -> Rng {
    Rng::with_seed(splitmix(seed ^ splitmix((index as u64) << 8 | tag)))
}

fn hex(rng: &mut Rng, n: usize) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    (0..n)
        .map(|_| char::from(DIGITS[rng.usize(..16)]))
        .collect()
}

fn uuid(rng: &mut Rng) -> String {
    let variant = char::from(b"89ab"[rng.usize(..4)]);
    format!(
        "{}-{}-4{}-{variant}{}-{}",
        hex(rng, 8),
        hex(rng, 4),
        hex(rng, 3),
        hex(rng, 3),
        hex(rng, 12)
    )
}

/// A random number in `[lo.min(hi), hi]`.
fn between(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    rng.i64(lo.min(hi)..=hi)
}

fn plan_pod(params: &Params, index: usize, prev: Option<&Pod>) -> Pod {
    let mut rng = rng_for(params.seed, index, 1);
    let (b, e, i, s) = (
        params.start(),
        params.end,
        params.interval_secs(),
        params.span_secs(),
    );
    let never = i64::MAX;
    let late_end = e - 2 * i - 60;
    let mut kind = Kind::CYCLE[index % Kind::CYCLE.len()];
    let prev_session = prev.filter(|p| p.kind == Kind::Finished && p.in_default_filter());
    if kind == Kind::Resumed && prev_session.is_none() {
        kind = Kind::Running;
    }
    let mut restarts_at = Vec::new();
    let mut sandbox_restart = None;
    let mut exited = None;
    let (created, ready, gone) = match kind {
        Kind::Running => {
            let c = e - between(&mut rng, 600, (3 * 3600).min(s * 8 / 10));
            (c, Some(c + rng.i64(8..=150)), never)
        }
        Kind::LongRunning => {
            let c = b - rng.i64(3600..=3 * 86_400);
            (c, Some(c + rng.i64(8..=150)), never)
        }
        Kind::Inherited => {
            let c = b - rng.i64(3600..=2 * 86_400);
            (
                c,
                Some(c + rng.i64(8..=150)),
                b + between(&mut rng, 1800, (4 * 3600).min(s / 2)),
            )
        }
        Kind::OutsideFilter => {
            let c = e - between(&mut rng, 3600.min(s / 2), (4 * 3600).min(s * 8 / 10));
            (c, Some(c + rng.i64(8..=60)), never)
        }
        Kind::Finished | Kind::Exited => {
            let c = b + rng.i64(0..=s * 6 / 10);
            let r = c + rng.i64(8..=150);
            let stop = (c + rng.i64(900..=2 * 3600)).min(late_end).max(r + i + 1);
            if kind == Kind::Exited {
                exited = Some(stop);
                (c, Some(r), stop + i + 10)
            } else {
                (c, Some(r), stop)
            }
        }
        Kind::Restarted => {
            let c = e - between(&mut rng, (2 * 3600).min(s / 2), (6 * 3600).min(s * 7 / 10));
            let r = c + rng.i64(8..=150);
            let (lo, hi) = (r + (e - r) / 5, e - 2 * i);
            restarts_at = (0..1 + rng.usize(..2)).map(|_| rng.i64(lo..=hi)).collect();
            restarts_at.sort_unstable();
            (c, Some(r), never)
        }
        Kind::SandboxRestarted => {
            let c = b + rng.i64(0..=s * 3 / 10);
            let r = c + rng.i64(8..=150);
            let stop = (c + rng.i64(2 * 3600..=4 * 3600)).min(late_end);
            let x = r + (stop - r) / 2 + rng.i64(-300..=300);
            sandbox_restart = Some(x);
            restarts_at.push(x);
            (c, Some(r), stop)
        }
        Kind::ShortLived => {
            let t = b + rng.i64(2..=s / i - 2) * i;
            let c = t - rng.i64(5..=25);
            (c, None, c + rng.i64(45..=85))
        }
        Kind::Pending => (e - rng.i64(10..=80), None, never),
        Kind::Resumed => {
            let p_gone = prev_session.map_or(b, |p| p.gone);
            let c = p_gone + rng.i64(60..=((e - p_gone) / 2).clamp(60, 1800));
            let stop = c + rng.i64(1200..=2 * 3600);
            (
                c,
                Some(c + rng.i64(8..=60)),
                if stop > late_end { never } else { stop },
            )
        }
    };

    let outside = kind == Kind::OutsideFilter;
    let user = match prev_session {
        Some(p) if kind == Kind::Resumed => p.user.clone(),
        _ => USERNAMES
            .get(index)
            .map_or_else(|| format!("user{index}"), |u| (*u).to_owned()),
    };
    let name = if outside {
        let mut n = String::from("dask-worker-");
        escape_into(&mut n, &user);
        n.push('-');
        n.push_str(&hex(&mut rng, 5));
        n
    } else {
        pod_name(&user)
    };
    let primary_group = match prev_session {
        Some(p) if kind == Kind::Resumed => p.primary_group.clone(),
        _ => PRIMARY_GROUPS[index % PRIMARY_GROUPS.len()].map(str::to_owned),
    };
    let (flavor, cpu_request, memory_request) = FLAVORS[index % FLAVORS.len()];
    let image_index = if outside {
        IMAGES.len()
    } else {
        index % IMAGES.len()
    };
    let image = IMAGES.get(image_index).copied().unwrap_or(DASK_IMAGE);
    let image_id = {
        let mut digest = rng_for(params.seed, image_index, 2);
        let repo = image.split(':').next().unwrap_or(image);
        format!("{repo}@sha256:{}", hex(&mut digest, 64))
    };
    let uid = uuid(&mut rng);
    let runtime = if index % 5 == 2 {
        Runtime::Docker
    } else {
        Runtime::Containerd
    };

    // Notebook container generations: one per start, each ending at the next restart.
    let mut containers = Vec::new();
    let container_end = exited.unwrap_or(gone);
    if let Some(r) = ready.filter(|&r| r < container_end) {
        let mut start = r;
        for &x in &restarts_at {
            if x < start + 60 || x >= container_end {
                continue;
            }
            containers.push(Generation {
                start,
                end: x,
                id: hex(&mut rng, 64),
            });
            start = x + rng.i64(10..=40);
        }
        containers.push(Generation {
            start,
            end: container_end,
            id: hex(&mut rng, 64),
        });
    }
    // Sandboxes (network namespaces): only for pods whose container ever started.
    let mut sandboxes = Vec::new();
    if !containers.is_empty() {
        let mut start = created + rng.i64(1..=3);
        if let Some(x) = sandbox_restart {
            sandboxes.push(Generation {
                start,
                end: x,
                id: hex(&mut rng, 64),
            });
            start = x + 3;
        }
        sandboxes.push(Generation {
            start,
            end: gone,
            id: hex(&mut rng, 64),
        });
    }

    let first_seen = grid(b, i, created.max(b), e).next().unwrap_or(e);
    let last_seen = grid(b, i, created.max(b), gone.min(e))
        .last()
        .unwrap_or(first_seen);
    let running = ready.and_then(|r| {
        let stop = exited.map_or(gone.min(e), |x| (x - 1).min(e));
        let mut times = grid(b, i, r.max(b), stop);
        let first = times.next()?;
        Some((first, times.last().unwrap_or(first)))
    });
    let load = cpu_request * (0.002 + 0.7 * rng.f64().powi(3));
    let memory_base = (0.05 + 0.4 * rng.f64()) * memory_request;
    let net_rate = 20.0 + 2000.0 * rng.f64().powi(2);

    Pod {
        index,
        kind,
        namespace: NAMESPACE.to_owned(),
        name,
        uid,
        user,
        primary_group,
        flavor: (!outside).then(|| flavor.to_owned()),
        image: image.to_owned(),
        container: if outside { "dask-worker" } else { "notebook" }.to_owned(),
        cpu_request,
        memory_request,
        created,
        first_seen,
        last_seen,
        running,
        restarts: containers.len().saturating_sub(1),
        interval: i,
        start: b,
        end: e,
        gone,
        exited,
        runtime,
        node: format!("worker-{:02}", 1 + rng.usize(..8)),
        image_id,
        containers,
        sandboxes,
        load,
        memory_base,
        net_rate,
    }
}
