//! The questions of [`crate::query`], evaluated in one streaming pass over a history the way
//! Prometheus 2.42 evaluates that PromQL at `window.at`.
//!
//! - A range selector `[R]` takes the samples with `at - R <= t <= at` (both ends inclusive);
//!   a series without samples there is absent from the result.
//! - `last_over_time` is the last sample's value; `max_over_time` starts from the first value
//!   and takes `v` when `v > max || max is NaN` (NaN only if every value is NaN); `resets`
//!   counts the samples lower than the one before, and `> 0` drops the series without any.
//! - `sum by (l...)` and `max by (l...)` group on those labels only (a missing label groups as
//!   the empty string). Prometheus adds a group's series in storage order (sorted label sets);
//!   float addition depends on that order only from three terms on, so the label sets of a
//!   group's series are kept only when the first pass ([`Scan`]) counted three or more.
//! - The selector's matchers are `window.filter` joined to the question's own with
//!   [`Filter::with`](crate::metrics::Filter::with), the very text the PromQL carries, parsed
//!   by [`Matchers`].
//!
//! Each series is reduced sample by sample as it is read ([`Acc`]): memory grows with the
//! number of series the questions select, not with the number of samples. Only the samples of
//! series that the first pass found out of time order are buffered, then sorted.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;

use crate::error::Result;
use crate::metrics::{
    Answers, ByPod, ByUid, PodAnnotations, PodCreated, PodKey, PodUid, RunningSamples, Timestamp,
    Usage, Window,
};
use crate::query::{POD_CGROUP, Question, REAL_CONTAINERS};

use super::history::Labels;
use super::matchers::Matchers;
use super::reduce::{
    Acc, CPU, MEMORY, RECEIVED, REQUESTS, Strings, TRANSMITTED, cgroup_uid, fold_groups, max, sum,
    sum_group,
};
use super::scan::{Scan, Visitor, read};

/// Evaluates every question for `window` over the history `input`, whose first pass is
/// `scan`.
pub(super) fn answers(
    input: impl BufRead,
    path: &Path,
    scan: &Scan,
    window: &Window,
) -> Result<Answers> {
    let mut eval = Eval::new(scan, window)?;
    read(input, path, &mut eval)?;
    Ok(eval.finish())
}

/// Symbol pairs.
type Pairs = Box<[(u32, u32)]>;

/// A selected series in one question: its reduction and the label values the answer needs.
#[derive(Debug)]
struct Entry<const N: usize> {
    acc: u32,
    keys: [u32; N],
    /// The label set, kept for series of groups whose order matters.
    order: Option<Box<Labels>>,
}

/// The selectors of every question, parsed once per pass.
struct Selectors {
    pods: Matchers,
    running: Matchers,
    annotations: Matchers,
    images: Matchers,
    requests: Matchers,
    cpu: Matchers,
    memory: Matchers,
    received: Matchers,
    transmitted: Matchers,
    resets: Matchers,
}

impl Selectors {
    fn new(window: &Window) -> Result<Self> {
        let f = &window.filter;
        let of = |metric: &str, extra: &str| -> Result<Matchers> {
            let mut m = Matchers::parse(&f.with(extra))?;
            m.push_equal("__name__", metric);
            Ok(m)
        };
        let names = Usage::CounterResets.metric_names().join("|");
        Ok(Self {
            pods: of(Question::Pods.metric_names()[0], "")?,
            running: of(Question::Running.metric_names()[0], "phase='Running'")?,
            annotations: of(Question::Annotations.metric_names()[0], "")?,
            images: of(Question::Images.metric_names()[0], "container='notebook'")?,
            requests: of(REQUESTS, "resource='cpu'")?,
            cpu: of(CPU, REAL_CONTAINERS)?,
            memory: of(MEMORY, REAL_CONTAINERS)?,
            received: of(RECEIVED, "")?,
            transmitted: of(TRANSMITTED, "")?,
            resets: Matchers::parse(&f.with(&format!("__name__=~'{names}',{POD_CGROUP}")))?,
        })
    }
}

/// The second pass.
struct Eval<'s> {
    scan: &'s Scan,
    start: Timestamp,
    end: Timestamp,
    select: Selectors,
    strings: Strings,
    /// Per series id, its index in `accs`, or `u32::MAX` when no question selects it.
    slot: Vec<u32>,
    accs: Vec<Acc>,
    /// Samples of out-of-order series, by index in `accs`.
    buffered: HashMap<u32, Vec<(Timestamp, f64)>>,
    pods: Vec<Entry<3>>,
    running: Vec<Entry<1>>,
    /// With the annotation names (prefix stripped) and values.
    annotations: Vec<(Entry<1>, Pairs)>,
    images: Vec<Entry<2>>,
    requests: Vec<Entry<1>>,
    /// CPU, memory.
    usage: [Vec<Entry<3>>; 2],
    /// Received, transmitted: namespace, pod, cgroup UID, interface.
    network: [Vec<Entry<4>>; 2],
    resets: Vec<Entry<3>>,
}

impl<'s> Eval<'s> {
    fn new(scan: &'s Scan, window: &Window) -> Result<Self> {
        Ok(Self {
            scan,
            start: window.at.saturating_sub(window.range.duration()),
            end: window.at,
            select: Selectors::new(window)?,
            strings: Strings::new(),
            slot: Vec::new(),
            accs: Vec::new(),
            buffered: HashMap::new(),
            pods: Vec::new(),
            running: Vec::new(),
            annotations: Vec::new(),
            images: Vec::new(),
            requests: Vec::new(),
            usage: [Vec::new(), Vec::new()],
            network: [Vec::new(), Vec::new()],
            resets: Vec::new(),
        })
    }
}

impl Visitor for Eval<'_> {
    fn series(&mut self, id: u32, labels: &Labels) {
        debug_assert_eq!(self.slot.len(), id as usize);
        let acc = self.accs.len() as u32;
        let order = || {
            sum_group(labels)
                .filter(|&g| self.scan.large_group(g))
                .map(|_| Box::new(labels.clone()))
        };
        let s = &self.select;
        let strings = &mut self.strings;
        let mut sym = |name: &str| strings.sym(labels.get(name).unwrap_or_default());
        let mut selected = true;
        if s.pods.matches(labels) {
            let keys = [sym("uid"), sym("namespace"), sym("pod")];
            self.pods.push(Entry {
                acc,
                keys,
                order: None,
            });
        } else if s.running.matches(labels) {
            let keys = [sym("uid")];
            self.running.push(Entry {
                acc,
                keys,
                order: None,
            });
        } else if s.annotations.matches(labels) {
            let keys = [sym("uid")];
            let annotations = labels
                .iter()
                .filter_map(|(n, v)| Some((n.strip_prefix("annotation_")?, v)))
                .map(|(n, v)| (strings.sym(n), strings.sym(v)))
                .collect();
            let entry = Entry {
                acc,
                keys,
                order: None,
            };
            self.annotations.push((entry, annotations));
        } else if s.images.matches(labels) {
            let keys = [sym("uid"), sym("image")];
            self.images.push(Entry {
                acc,
                keys,
                order: None,
            });
        } else if s.requests.matches(labels) {
            let keys = [sym("uid")];
            let order = order();
            self.requests.push(Entry { acc, keys, order });
        } else {
            let pod_keys = |strings: &mut Strings| {
                [
                    strings.sym(labels.get("namespace").unwrap_or_default()),
                    strings.sym(labels.get("pod").unwrap_or_default()),
                    strings.sym(cgroup_uid(labels)),
                ]
            };
            let usage = [&s.cpu, &s.memory].iter().position(|m| m.matches(labels));
            let network = [&s.received, &s.transmitted]
                .iter()
                .position(|m| m.matches(labels));
            if let Some(i) = usage {
                let keys = pod_keys(strings);
                let order = order();
                self.usage[i].push(Entry { acc, keys, order });
            } else if let Some(i) = network {
                let [ns, pod, uid] = pod_keys(strings);
                let keys = [
                    ns,
                    pod,
                    uid,
                    strings.sym(labels.get("interface").unwrap_or_default()),
                ];
                let order = order();
                self.network[i].push(Entry { acc, keys, order });
            } else {
                selected = false;
            }
            if s.resets.matches(labels) {
                let keys = pod_keys(strings);
                self.resets.push(Entry {
                    acc,
                    keys,
                    order: None,
                });
                selected = true;
            }
        }
        if selected {
            self.slot.push(acc);
            self.accs.push(Acc::default());
            if self.scan.unsorted.contains(&id) {
                self.buffered.insert(acc, Vec::new());
            }
        } else {
            self.slot.push(u32::MAX);
        }
    }

    fn sample(&mut self, id: u32, t: Timestamp, v: f64) {
        let acc = self.slot[id as usize];
        if acc == u32::MAX || t < self.start || t > self.end {
            return;
        }
        match self.buffered.get_mut(&acc) {
            Some(samples) => samples.push((t, v)),
            None => self.accs[acc as usize].push(t, v),
        }
    }
}

/// Series left out because they lack labels an answer needs; warned about once per question.
fn warn_skipped(metric: &str, skipped: usize, needed: &str) {
    if skipped > 0 {
        tracing::warn!(
            metric,
            skipped,
            needed,
            "left out series lacking labels the answer needs"
        );
    }
}

impl Eval<'_> {
    /// Replays the buffered series in time order and builds every answer.
    fn finish(mut self) -> Answers {
        for (acc, mut samples) in std::mem::take(&mut self.buffered) {
            // Stable: of two samples with the same time, the first in the file stays.
            samples.sort_by_key(|&(t, _)| t);
            samples.dedup_by_key(|&mut (t, _)| t);
            let acc = &mut self.accs[acc as usize];
            for (t, v) in samples {
                acc.push(t, v);
            }
        }
        let [cpu, memory] = std::mem::take(&mut self.usage);
        let [received, transmitted] = std::mem::take(&mut self.network);
        Answers {
            pods: self.pods(),
            running: self.running(),
            annotations: self.annotations(),
            images: self.images(),
            cpu_requests: self.cpu_requests(),
            cpu_seconds: self.usage(CPU, &cpu),
            peak_memory: self.usage(MEMORY, &memory),
            network_received: self.network(RECEIVED, &received),
            network_transmitted: self.network(TRANSMITTED, &transmitted),
            counter_resets: self.counter_resets(),
        }
    }

    /// The reduction of an entry with samples in the window.
    fn seen<const N: usize>(&self, e: &Entry<N>) -> Option<Acc> {
        let acc = self.accs[e.acc as usize];
        (acc.n > 0).then_some(acc)
    }

    fn uid(&self, sym: u32) -> PodUid {
        PodUid(self.strings.get(sym).to_owned())
    }

    fn pods(&self) -> Vec<PodCreated> {
        let mut skipped = 0;
        let mut out = Vec::new();
        for e in &self.pods {
            let Some(acc) = self.seen(e) else { continue };
            if e.keys.contains(&0) {
                skipped += 1;
                continue;
            }
            let [uid, namespace, pod] = e.keys.map(|k| self.strings.get(k).to_owned());
            out.push(PodCreated {
                uid: PodUid(uid),
                key: PodKey { namespace, pod },
                created: acc.last,
            });
        }
        warn_skipped(
            Question::Pods.metric_names()[0],
            skipped,
            "uid, namespace, pod",
        );
        out.sort_by(|a, b| {
            (&a.uid, &a.key)
                .cmp(&(&b.uid, &b.key))
                .then(a.created.total_cmp(&b.created))
        });
        out
    }

    fn running(&self) -> Vec<RunningSamples> {
        let mut skipped = 0;
        let mut per_uid: BTreeMap<&str, (Option<Timestamp>, u64)> = BTreeMap::new();
        for e in &self.running {
            let Some(acc) = self.seen(e) else { continue };
            if e.keys[0] == 0 {
                skipped += 1;
                continue;
            }
            let entry = per_uid.entry(self.strings.get(e.keys[0])).or_default();
            entry.0 = entry.0.max(acc.last_one);
            entry.1 += acc.ones;
        }
        warn_skipped(Question::Running.metric_names()[0], skipped, "uid");
        per_uid
            .into_iter()
            .map(|(uid, (last_running, running_count))| RunningSamples {
                uid: PodUid(uid.to_owned()),
                last_running,
                running_count,
            })
            .collect()
    }

    fn annotations(&self) -> Vec<PodAnnotations> {
        let mut skipped = 0;
        let mut out = Vec::new();
        for (e, pairs) in &self.annotations {
            if self.seen(e).is_none() {
                continue;
            }
            if e.keys[0] == 0 {
                skipped += 1;
                continue;
            }
            out.push(PodAnnotations {
                uid: self.uid(e.keys[0]),
                annotations: pairs
                    .iter()
                    .map(|&(n, v)| {
                        (
                            self.strings.get(n).to_owned(),
                            self.strings.get(v).to_owned(),
                        )
                    })
                    .collect(),
            });
        }
        warn_skipped(Question::Annotations.metric_names()[0], skipped, "uid");
        out.sort_by(|a, b| (&a.uid, &a.annotations).cmp(&(&b.uid, &b.annotations)));
        out
    }

    fn images(&self) -> Vec<ByUid<String>> {
        let mut skipped = 0;
        let mut out = Vec::new();
        for e in &self.images {
            if self.seen(e).is_none() {
                continue;
            }
            if e.keys.contains(&0) {
                skipped += 1;
                continue;
            }
            out.push(ByUid {
                uid: self.uid(e.keys[0]),
                value: self.strings.get(e.keys[1]).to_owned(),
            });
        }
        warn_skipped(Question::Images.metric_names()[0], skipped, "uid, image");
        out.sort_by(|a, b| (&a.uid, &a.value).cmp(&(&b.uid, &b.value)));
        out
    }

    fn cpu_requests(&self) -> Vec<ByUid<f64>> {
        let members = (self.requests.iter())
            .filter_map(|e| Some((e.keys[0], e.order.as_deref(), self.seen(e)?.max)))
            .collect();
        let mut out = Vec::new();
        for (uid, _, value) in fold_groups(members, sum) {
            if uid == 0 {
                tracing::warn!(
                    metric = REQUESTS,
                    "left out the `sum by (uid)` group of series without uid"
                );
                continue;
            }
            out.push(ByUid {
                uid: self.uid(uid),
                value,
            });
        }
        out.sort_by(|a, b| a.uid.cmp(&b.uid));
        out
    }

    /// `sum by (namespace, pod, uid) (max_over_time(...))`.
    fn usage(&self, metric: &str, entries: &[Entry<3>]) -> Vec<ByPod> {
        let members = (entries.iter())
            .filter_map(|e| Some((e.keys, e.order.as_deref(), self.seen(e)?.max)))
            .collect();
        self.by_pod(metric, fold_groups(members, sum))
    }

    /// `max by (namespace, pod, uid, interface)` of `last_over_time`, then the interfaces
    /// summed in the order of their first series.
    fn network(&self, metric: &str, entries: &[Entry<4>]) -> Vec<ByPod> {
        let members = (entries.iter())
            .filter_map(|e| Some((e.keys, e.order.as_deref(), self.seen(e)?.last)))
            .collect();
        let interfaces = fold_groups(members, max)
            .into_iter()
            .map(|([ns, pod, uid, _], order, v)| ([ns, pod, uid], order, v))
            .collect();
        self.by_pod(metric, fold_groups(interfaces, sum))
    }

    /// `sum by (namespace, pod, uid) (resets(...) > 0)`.
    fn counter_resets(&self) -> Vec<ByPod> {
        let members = (self.resets.iter())
            .filter_map(|e| Some((e.keys, None, f64::from(self.seen(e)?.resets))))
            .filter(|&(_, _, n)| n > 0.0)
            .collect();
        self.by_pod("counter resets", fold_groups(members, sum))
    }

    /// Groups as answers, sorted; groups without namespace or pod left out.
    fn by_pod(&self, metric: &str, groups: Vec<([u32; 3], Option<&Labels>, f64)>) -> Vec<ByPod> {
        let mut skipped = 0;
        let mut out: Vec<ByPod> = Vec::with_capacity(groups.len());
        for ([namespace, pod, uid], _, value) in groups {
            if namespace == 0 || pod == 0 {
                skipped += 1;
                continue;
            }
            out.push(ByPod {
                key: PodKey {
                    namespace: self.strings.get(namespace).to_owned(),
                    pod: self.strings.get(pod).to_owned(),
                },
                uid: (uid != 0).then(|| PodUid::from_cgroup(self.strings.get(uid))),
                value,
            });
        }
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
}
