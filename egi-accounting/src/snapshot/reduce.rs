//! Pure pieces of the snapshot evaluation: a series' samples reduced as they come, label
//! values stored once, groups folded in Prometheus' order, and the group a series is summed in.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::LazyLock;

use crate::metrics::{Timestamp, Usage};
use crate::query::{CGROUP_UID_REGEX, Question, REAL_CONTAINERS};

use super::history::Labels;
use super::matchers::Matchers;

pub(super) const CPU: &str = Question::Usage(Usage::CpuSeconds).metric_names()[0];
pub(super) const MEMORY: &str = Question::Usage(Usage::PeakMemoryBytes).metric_names()[0];
pub(super) const RECEIVED: &str = Question::Usage(Usage::NetworkReceivedBytes).metric_names()[0];
pub(super) const TRANSMITTED: &str =
    Question::Usage(Usage::NetworkTransmittedBytes).metric_names()[0];
pub(super) const REQUESTS: &str = Question::CpuRequests.metric_names()[0];

/// The pod UID in cAdvisor's `id` label: what `label_replace(..., "uid", "$1", "id",
/// CGROUP_UID_REGEX)` puts in `uid` (the empty string when the cgroup path names no pod).
pub(super) fn cgroup_uid(labels: &Labels) -> &str {
    static RE: LazyLock<Option<regex::Regex>> =
        LazyLock::new(|| regex::Regex::new(&format!("^(?:{CGROUP_UID_REGEX})$")).ok());
    labels
        .get("id")
        .zip(RE.as_ref())
        .and_then(|(id, re)| re.captures(id))
        .and_then(|c| c.get(1))
        .map_or("", |m| m.as_str())
}

/// The group a series is summed in, whatever the filter, as a hash: the CPU request's pod
/// UID, or the metric, namespace, pod and cgroup UID of container usage. `None` for series
/// no question sums.
pub(super) fn sum_group(labels: &Labels) -> Option<u64> {
    static REAL: LazyLock<Option<Matchers>> =
        LazyLock::new(|| Matchers::parse(REAL_CONTAINERS).ok());
    let hash = |key: &dyn Fn(&mut DefaultHasher)| {
        BuildHasherDefault::<DefaultHasher>::default().hash_one(HashWith(key))
    };
    let get = |n| labels.get(n).unwrap_or_default();
    let name = labels.get("__name__")?;
    let usage = |h: &mut DefaultHasher| {
        use std::hash::Hash;
        (name, get("namespace"), get("pod"), cgroup_uid(labels)).hash(h);
    };
    match name {
        REQUESTS if get("resource") == "cpu" => Some(hash(&|h| {
            use std::hash::Hash;
            (name, get("uid")).hash(h);
        })),
        CPU | MEMORY if REAL.as_ref().is_some_and(|m| m.matches(labels)) => Some(hash(&usage)),
        RECEIVED | TRANSMITTED => Some(hash(&usage)),
        _ => None,
    }
}

/// Hashes through a closure.
struct HashWith<'a>(&'a dyn Fn(&mut DefaultHasher));

impl std::hash::Hash for HashWith<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut h = DefaultHasher::new();
        (self.0)(&mut h);
        state.write_u64(std::hash::Hasher::finish(&h));
    }
}

/// One series' samples in the window, reduced as they come (in time order).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Acc {
    /// Samples seen.
    pub(super) n: u32,
    /// `max_over_time`.
    pub(super) max: f64,
    /// `last_over_time`.
    pub(super) last: f64,
    /// `resets`.
    pub(super) resets: u32,
    /// The last sample whose value is 1.
    pub(super) last_one: Option<Timestamp>,
    /// Samples whose value is 1.
    pub(super) ones: u64,
}

impl Acc {
    pub(super) fn push(&mut self, t: Timestamp, v: f64) {
        if self.n == 0 {
            self.max = v;
        } else {
            if v > self.max || self.max.is_nan() {
                self.max = v;
            }
            if v < self.last {
                self.resets += 1;
            }
        }
        self.last = v;
        self.n += 1;
        if v == 1.0 {
            self.last_one = Some(t);
            self.ones += 1;
        }
    }
}

/// Label values, each stored once; symbol 0 is the empty string (a missing label).
#[derive(Debug, Default)]
pub(super) struct Strings {
    index: HashMap<String, u32>,
    names: Vec<String>,
}

impl Strings {
    pub(super) fn new() -> Self {
        let mut s = Self::default();
        s.sym("");
        s
    }

    pub(super) fn sym(&mut self, text: &str) -> u32 {
        if let Some(&i) = self.index.get(text) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(text.to_owned());
        self.index.insert(text.to_owned(), i);
        i
    }

    pub(super) fn get(&self, sym: u32) -> &str {
        &self.names[sym as usize]
    }
}

/// Folds each group's values in storage order: members sorted by key, then by label set
/// where the group's order matters (the others have at most two members, whose sum or max
/// does not depend on the order). `fold` gets the group's value so far and the next value.
pub(super) fn fold_groups<K: Ord + Clone>(
    mut members: Vec<(K, Option<&Labels>, f64)>,
    fold: impl Fn(&mut f64, f64),
) -> Vec<(K, Option<&Labels>, f64)> {
    members.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut out: Vec<(K, Option<&Labels>, f64)> = Vec::new();
    for (key, order, v) in members {
        match out.last_mut() {
            Some(last) if last.0 == key => fold(&mut last.2, v),
            _ => out.push((key, order, v)),
        }
    }
    out
}

/// `sum`: first value, then `+=`.
pub(super) fn sum(acc: &mut f64, v: f64) {
    *acc += v;
}

/// `max`: first value, then any greater value, and any value replaces NaN.
pub(super) fn max(acc: &mut f64, v: f64) {
    if *acc < v || acc.is_nan() {
        *acc = v;
    }
}
