//! The questions of [`crate::query`], evaluated over a [`History`] the way Prometheus 2.42
//! evaluates that PromQL at `window.at`.
//!
//! - A range selector `[R]` takes the samples with `at - R <= t <= at` (both ends inclusive);
//!   a series without samples there is absent from the result.
//! - `last_over_time` is the last sample's value; `max_over_time` starts from the first value
//!   and takes `v` when `v > max || max is NaN` (NaN only if every value is NaN); `resets`
//!   counts the samples lower than the one before.
//! - `sum by (l...)` and `max by (l...)` group on those labels only (a missing label groups as
//!   the empty string), visiting series in storage order (sorted label sets) so that float
//!   sums add up in the same order; `sum` starts from the first value and propagates NaN,
//!   `max` replaces a NaN by any later value.
//! - The selector's matchers are `window.filter` joined to the question's own with
//!   [`Filter::with`](crate::metrics::Filter::with), the very text the PromQL carries, parsed
//!   by [`Matchers`].

use std::collections::{BTreeMap, HashMap};

use crate::error::Result;
use crate::metrics::{
    ByPod, ByUid, PodAnnotations, PodCreated, PodKey, PodUid, RunningSamples, Timestamp, Usage,
    Window,
};
use crate::query::{CGROUP_UID_REGEX, Question, REAL_CONTAINERS};

use super::history::{History, Labels, Series};
use super::matchers::Matchers;

type Sample = (Timestamp, f64);

/// The series a range selector picks, each with its samples in the window, in storage order.
fn select<'h>(
    history: &'h History,
    window: &Window,
    metric: Option<&str>,
    extra: &str,
) -> Result<Vec<(&'h Series, &'h [Sample])>> {
    let mut matchers = Matchers::parse(&window.filter.with(extra))?;
    if let Some(name) = metric {
        matchers.push_equal("__name__", name);
    }
    let end = window.at;
    let start = end.saturating_sub(window.range.duration());
    // Indices into the history are storage order: sorting them orders series of several
    // metric names the way Prometheus visits them.
    let mut ids: Vec<usize> = history
        .metric_names()
        .filter(|n| matchers.matches_label("__name__", n))
        .flat_map(|n| history.ids_named(n).iter().copied())
        .collect();
    ids.sort_unstable();
    let series = history.series();
    let picked = ids
        .into_iter()
        .map(|i| &series[i])
        .filter(|s| matchers.matches(s.labels()))
        .filter_map(|s| {
            let samples = s.samples();
            let from = samples.partition_point(|&(t, _)| t < start);
            let to = samples.partition_point(|&(t, _)| t <= end);
            (from < to).then(|| (s, &samples[from..to]))
        })
        .collect();
    Ok(picked)
}

/// `last_over_time`: callers only pass non-empty windows.
fn last(samples: &[Sample]) -> f64 {
    samples.last().map_or(f64::NAN, |&(_, v)| v)
}

/// `max_over_time` as Prometheus computes it.
fn max_over_time(samples: &[Sample]) -> f64 {
    let mut max = samples.first().map_or(f64::NAN, |&(_, v)| v);
    for &(_, v) in samples {
        if v > max || max.is_nan() {
            max = v;
        }
    }
    max
}

/// `resets`: how many samples are lower than the one before.
fn resets(samples: &[Sample]) -> f64 {
    samples.windows(2).filter(|w| w[1].1 < w[0].1).count() as f64
}

/// Series skipped because they lack labels an answer needs; warned about once per question.
struct Skipped<'a> {
    what: &'a str,
    count: usize,
    example: String,
}

impl<'a> Skipped<'a> {
    fn new(what: &'a str) -> Self {
        Self {
            what,
            count: 0,
            example: String::new(),
        }
    }

    fn note(&mut self, missing: &[&str], labels: &Labels) {
        if self.count == 0 {
            self.example = format!("{} missing in {labels}", missing.join(", "));
        }
        self.count += 1;
    }

    fn warn(&self) {
        if self.count > 0 {
            tracing::warn!(
                metric = self.what,
                skipped = self.count,
                first = %self.example,
                "left out series lacking labels the answer needs"
            );
        }
    }
}

/// The labels among `needed` that the series lacks (or has empty: the same in Prometheus).
fn missing<'n>(series: &Series, needed: &[&'n str]) -> Vec<&'n str> {
    needed
        .iter()
        .copied()
        .filter(|n| series.label(n).is_none())
        .collect()
}

/// Groups of an aggregation, in order of first appearance like Prometheus' output.
struct Groups<K> {
    index: HashMap<K, usize>,
    groups: Vec<(K, f64)>,
}

impl<K: std::hash::Hash + Eq + Clone> Groups<K> {
    fn new() -> Self {
        Self {
            index: HashMap::new(),
            groups: Vec::new(),
        }
    }

    fn slot(&mut self, key: K, v: f64) -> Option<&mut f64> {
        match self.index.get(&key) {
            Some(&i) => Some(&mut self.groups[i].1),
            None => {
                self.index.insert(key.clone(), self.groups.len());
                self.groups.push((key, v));
                None
            }
        }
    }

    /// `sum`: first value, then `+=`.
    fn sum(&mut self, key: K, v: f64) {
        if let Some(acc) = self.slot(key, v) {
            *acc += v;
        }
    }

    /// `max`: first value, then any greater value, and any value replaces NaN.
    fn max(&mut self, key: K, v: f64) {
        if let Some(acc) = self.slot(key, v)
            && (*acc < v || acc.is_nan())
        {
            *acc = v;
        }
    }
}

/// The `(namespace, pod)` grouping key, the empty string for a missing label.
fn pod_of(s: &Series) -> (&str, &str) {
    (
        s.label("namespace").unwrap_or_default(),
        s.label("pod").unwrap_or_default(),
    )
}

/// The `(namespace, pod, uid)` grouping key of the usage questions: `uid` is what
/// `label_replace(..., "uid", "$1", "id", CGROUP_UID_REGEX)` puts there (the empty string
/// when the cgroup path names no pod).
fn pod_uid_of(s: &Series) -> (&str, &str, &str) {
    static RE: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(&format!("^(?:{CGROUP_UID_REGEX})$")).ok());
    let (namespace, pod) = pod_of(s);
    let uid = s
        .label("id")
        .zip(RE.as_ref())
        .and_then(|(id, re)| re.captures(id))
        .and_then(|c| c.get(1))
        .map_or("", |m| m.as_str());
    (namespace, pod, uid)
}

/// `sum by (namespace, pod, uid)` of per-series values, groups without namespace or pod left
/// out.
fn sum_by_pod<'h>(
    metric: &str,
    values: impl Iterator<Item = ((&'h str, &'h str, &'h str), f64)>,
) -> Vec<ByPod> {
    let mut groups = Groups::new();
    for (key, v) in values {
        groups.sum(key, v);
    }
    let mut skipped = 0;
    let mut out: Vec<ByPod> = groups
        .groups
        .into_iter()
        .filter_map(|((namespace, pod, uid), value)| {
            if namespace.is_empty() || pod.is_empty() {
                skipped += 1;
                return None;
            }
            Some(ByPod {
                key: PodKey {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                },
                uid: (!uid.is_empty()).then(|| PodUid::from_cgroup(uid)),
                value,
            })
        })
        .collect();
    if skipped > 0 {
        tracing::warn!(
            metric,
            skipped,
            "left out `sum by (namespace, pod)` groups without namespace or pod"
        );
    }
    out.sort_by(|a, b| {
        (&a.key, &a.uid)
            .cmp(&(&b.key, &b.uid))
            .then(a.value.total_cmp(&b.value))
    });
    out
}

/// [`crate::MetricsSource::pods`].
pub(super) fn pods(h: &History, w: &Window) -> Result<Vec<PodCreated>> {
    const METRIC: &str = Question::Pods.metric_names()[0];
    let mut skipped = Skipped::new(METRIC);
    let mut out = Vec::new();
    for (s, samples) in select(h, w, Some(METRIC), "")? {
        match (s.label("uid"), s.label("namespace"), s.label("pod")) {
            (Some(uid), Some(namespace), Some(pod)) => out.push(PodCreated {
                uid: PodUid(uid.to_owned()),
                key: PodKey {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                },
                created: last(samples),
            }),
            _ => skipped.note(&missing(s, &["uid", "namespace", "pod"]), s.labels()),
        }
    }
    skipped.warn();
    out.sort_by(|a, b| a.uid.cmp(&b.uid).then_with(|| a.key.cmp(&b.key)));
    Ok(out)
}

/// [`crate::MetricsSource::running`].
pub(super) fn running(h: &History, w: &Window) -> Result<Vec<RunningSamples>> {
    const METRIC: &str = Question::Running.metric_names()[0];
    let mut skipped = Skipped::new(METRIC);
    let mut per_uid: BTreeMap<&str, (Option<Timestamp>, u64)> = BTreeMap::new();
    for (s, samples) in select(h, w, Some(METRIC), "phase='Running'")? {
        let Some(uid) = s.label("uid") else {
            skipped.note(&["uid"], s.labels());
            continue;
        };
        let last_running = samples
            .iter()
            .rev()
            .find(|&&(_, v)| v == 1.0)
            .map(|&(t, _)| t);
        let count = samples.iter().filter(|&&(_, v)| v == 1.0).count() as u64;
        let entry = per_uid.entry(uid).or_default();
        entry.0 = entry.0.max(last_running);
        entry.1 += count;
    }
    skipped.warn();
    Ok(per_uid
        .into_iter()
        .map(|(uid, (last_running, running_count))| RunningSamples {
            uid: PodUid(uid.to_owned()),
            last_running,
            running_count,
        })
        .collect())
}

/// [`crate::MetricsSource::annotations`].
pub(super) fn annotations(h: &History, w: &Window) -> Result<Vec<PodAnnotations>> {
    const METRIC: &str = Question::Annotations.metric_names()[0];
    let mut skipped = Skipped::new(METRIC);
    let mut out = Vec::new();
    for (s, _) in select(h, w, Some(METRIC), "")? {
        let Some(uid) = s.label("uid") else {
            skipped.note(&["uid"], s.labels());
            continue;
        };
        let annotations = s
            .labels()
            .iter()
            .filter_map(|(n, v)| Some((n.strip_prefix("annotation_")?.to_owned(), v.to_owned())))
            .collect();
        out.push(PodAnnotations {
            uid: PodUid(uid.to_owned()),
            annotations,
        });
    }
    skipped.warn();
    // Stable: series of one uid stay in storage order.
    out.sort_by(|a, b| a.uid.cmp(&b.uid));
    Ok(out)
}

/// [`crate::MetricsSource::images`].
pub(super) fn images(h: &History, w: &Window) -> Result<Vec<ByUid<String>>> {
    const METRIC: &str = Question::Images.metric_names()[0];
    let mut skipped = Skipped::new(METRIC);
    let mut out = Vec::new();
    for (s, _) in select(h, w, Some(METRIC), "container='notebook'")? {
        match (s.label("uid"), s.label("image")) {
            (Some(uid), Some(image)) => out.push(ByUid {
                uid: PodUid(uid.to_owned()),
                value: image.to_owned(),
            }),
            _ => skipped.note(&missing(s, &["uid", "image"]), s.labels()),
        }
    }
    skipped.warn();
    out.sort_by(|a, b| a.uid.cmp(&b.uid).then_with(|| a.value.cmp(&b.value)));
    Ok(out)
}

/// [`crate::MetricsSource::cpu_requests`].
pub(super) fn cpu_requests(h: &History, w: &Window) -> Result<Vec<ByUid<f64>>> {
    const METRIC: &str = Question::CpuRequests.metric_names()[0];
    let mut groups = Groups::new();
    for (s, samples) in select(h, w, Some(METRIC), "resource='cpu'")? {
        groups.sum(s.label("uid").unwrap_or_default(), max_over_time(samples));
    }
    let mut skipped = 0;
    let mut out: Vec<ByUid<f64>> = groups
        .groups
        .into_iter()
        .filter_map(|(uid, value)| {
            if uid.is_empty() {
                skipped += 1;
                return None;
            }
            Some(ByUid {
                uid: PodUid(uid.to_owned()),
                value,
            })
        })
        .collect();
    if skipped > 0 {
        tracing::warn!(
            metric = METRIC,
            "left out the `sum by (uid)` group of series without uid"
        );
    }
    out.sort_by(|a, b| a.uid.cmp(&b.uid));
    Ok(out)
}

/// [`crate::MetricsSource::usage`].
pub(super) fn usage(h: &History, w: &Window, usage: Usage) -> Result<Vec<ByPod>> {
    let names = usage.metric_names();
    let metric = names[0];
    Ok(match usage {
        Usage::CpuSeconds | Usage::PeakMemoryBytes => {
            let picked = select(h, w, Some(metric), REAL_CONTAINERS)?;
            sum_by_pod(
                metric,
                picked
                    .into_iter()
                    .map(|(s, v)| (pod_uid_of(s), max_over_time(v))),
            )
        }
        Usage::NetworkReceivedBytes | Usage::NetworkTransmittedBytes => {
            // max by (namespace, pod, interface) dedupes the pod's network namespace seen
            // from several cgroups, then the interfaces are summed.
            let mut per_interface = Groups::new();
            for (s, samples) in select(h, w, Some(metric), "")? {
                let (namespace, pod, uid) = pod_uid_of(s);
                let interface = s.label("interface").unwrap_or_default();
                per_interface.max((namespace, pod, uid, interface), last(samples));
            }
            let groups = per_interface.groups.into_iter();
            sum_by_pod(
                metric,
                groups.map(|((ns, pod, uid, _), v)| ((ns, pod, uid), v)),
            )
        }
        Usage::CounterResets => {
            // The PromQL joins the three counters' resets with `or` (each tagged with its
            // metric so they don't collide): the sum per pod of every counter's resets.
            let extra = format!("__name__=~'{}'", names.join("|"));
            let picked = select(h, w, None, &extra)?;
            sum_by_pod(
                "counter resets",
                picked.into_iter().map(|(s, v)| (pod_uid_of(s), resets(v))),
            )
        }
    })
}
