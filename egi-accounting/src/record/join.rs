//! [`Joiner`]: folds answers, in any order, into one compact table, then yields records.
//!
//! Answers repeat the same strings (UIDs, pod names, namespaces) a dozen times; the joiner
//! keeps each distinct string once and indexes everything by small integers, so that an
//! accounting run can drop every answer as soon as it arrives. That is what keeps a run
//! over 10,000 pods within a few megabytes.

use std::collections::HashMap;
use std::sync::Arc;

use super::{CloudRecord, FqanKey, RecordConfig, SkipReason, Skipped, status};
use crate::apel;
use crate::metrics::{
    Answer, ByPod, ByUid, PodAnnotations, PodCreated, PodKey, RunningSamples, Timestamp, Usage,
};
use crate::query::Question;

type Id = u32;

/// Each distinct string once.
#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<Arc<str>, Id>,
    names: Vec<Arc<str>>,
}

impl Interner {
    fn id(&mut self, s: &str) -> Id {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = Id::try_from(self.names.len()).unwrap_or(Id::MAX);
        let name: Arc<str> = Arc::from(s);
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }

    fn name(&self, id: Id) -> &str {
        self.names.get(id as usize).map_or("", |s| s)
    }
}

#[derive(Debug, Clone, Copy)]
struct PodEntry {
    namespace: Id,
    pod: Id,
    created: f64,
    conflicting: bool,
}

/// Annotations the records use: user name, primary group, flavor.
const USER: usize = 0;
const GROUP: usize = 1;
const FLAVOR: usize = 2;
const ANNOTATIONS: [&str; 3] = [
    "hub_jupyter_org_username",
    "egi_eu_primary_group",
    "egi_eu_flavor",
];

/// Every usage question at once (one slot per [`Usage`]), by (namespace, pod, cgroup UID)
/// or by (namespace, pod) alone: one table rather than five keeps memory down.
#[derive(Debug, Default)]
struct UsageTable {
    by_uid: HashMap<(Id, Id, Id), [f64; 5]>,
    by_key: HashMap<(Id, Id), [f64; 5]>,
}

impl UsageTable {
    /// Usage rows without a UID are only attributed when no other pod of the window has
    /// the same name: otherwise they could belong to either session, and counting them
    /// twice would be worse than not at all.
    fn get(&self, slot: usize, ns: Id, pod: Id, uid: Id, unique_name: bool) -> f64 {
        let own = self.by_uid.get(&(ns, pod, uid)).map_or(0.0, |v| v[slot]);
        match self.by_key.get(&(ns, pod)) {
            Some(v) if unique_name => own + v[slot],
            _ => own,
        }
    }

    /// Whether rows without a UID exist for a name shared by several pods (CPU, memory or
    /// network: the slots before the counter resets).
    fn has_ambiguous(&self, ns: Id, pod: Id, unique_name: bool) -> bool {
        !unique_name
            && self
                .by_key
                .get(&(ns, pod))
                .is_some_and(|v| v[..4].iter().any(|x| *x != 0.0))
    }
}

const USAGE_SLOTS: [Usage; 5] = Usage::ALL;

/// Answers folded into one table. Pure: no IO, deterministic output.
#[derive(Debug, Default)]
pub struct Joiner {
    strings: Interner,
    pods: HashMap<Id, PodEntry>,
    running: HashMap<Id, Option<Timestamp>>,
    annotations: HashMap<Id, [Option<Id>; 3]>,
    images: HashMap<Id, Id>,
    cpu_requests: HashMap<Id, f64>,
    usage: UsageTable,
}

fn slot(u: Usage) -> usize {
    USAGE_SLOTS.iter().position(|x| *x == u).unwrap_or(0)
}

impl Joiner {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one answer (or one batch of it) in. Answers and batches may come in any order,
    /// and folding a row twice changes nothing (a retried request may repeat rows): every
    /// question has one row per key, so a repeated key replaces the earlier value.
    pub fn add(&mut self, answer: Answer) {
        match answer {
            Answer::Pods(rows) => rows.iter().for_each(|r| self.add_pod(r)),
            Answer::Running(rows) => rows.iter().for_each(|r| self.add_running(r)),
            Answer::Annotations(rows) => rows.iter().for_each(|r| self.add_annotations(r)),
            Answer::Images(rows) => rows.iter().for_each(|r| self.add_image(r)),
            Answer::CpuRequests(rows) => rows.iter().for_each(|r| self.add_cpu_request(r)),
            Answer::Usage(u, rows) => rows.iter().for_each(|r| self.add_usage(u, r)),
        }
    }

    /// Folds one `kube_pod_created` series. Several series of one UID must agree.
    pub fn add_pod(&mut self, p: &PodCreated) {
        let uid = self.strings.id(&p.uid.0);
        let entry = PodEntry {
            namespace: self.strings.id(&p.key.namespace),
            pod: self.strings.id(&p.key.pod),
            created: p.created,
            conflicting: false,
        };
        self.pods
            .entry(uid)
            .and_modify(|old| {
                let same = old.namespace == entry.namespace
                    && old.pod == entry.pod
                    && (old.created == entry.created
                        || (old.created.is_nan() && entry.created.is_nan()));
                old.conflicting |= !same;
            })
            .or_insert(entry);
    }

    /// Folds one pod's Running samples (the latest wins if a UID comes twice).
    pub fn add_running(&mut self, r: &RunningSamples) {
        let uid = self.strings.id(&r.uid.0);
        let slot = self.running.entry(uid).or_insert(None);
        *slot = (*slot).max(r.last_running);
    }

    /// Folds one pod's annotations. Of several series of one UID (annotations changed in
    /// the window) the one whose values sort last wins, whatever the order they come in.
    pub fn add_annotations(&mut self, a: &PodAnnotations) {
        let uid = self.strings.id(&a.uid.0);
        let mut values = [None; 3];
        for (i, name) in ANNOTATIONS.iter().enumerate() {
            values[i] = a
                .annotations
                .get(name)
                .filter(|v| !v.is_empty())
                .map(|v| self.strings.id(v));
        }
        let strings = &self.strings;
        let text = |v: &[Option<Id>; 3]| v.map(|id| id.map(|id| strings.name(id)));
        match self.annotations.get_mut(&uid) {
            Some(old) if text(old) >= text(&values) => {}
            Some(old) => *old = values,
            None => {
                self.annotations.insert(uid, values);
            }
        }
    }

    /// Folds one notebook image (of several, the greatest name wins: deterministic).
    pub fn add_image(&mut self, i: &ByUid<String>) {
        let uid = self.strings.id(&i.uid.0);
        let image = self.strings.id(&i.value);
        let strings = &self.strings;
        self.images
            .entry(uid)
            .and_modify(|old| {
                if strings.name(image) > strings.name(*old) {
                    *old = image;
                }
            })
            .or_insert(image);
    }

    /// Folds one pod's CPU request (one row per UID: `sum by (uid)`).
    pub fn add_cpu_request(&mut self, c: &ByUid<f64>) {
        let uid = self.strings.id(&c.uid.0);
        self.cpu_requests.insert(uid, c.value);
    }

    /// Folds one usage row (one row per namespace, pod and cgroup UID: `sum by`).
    pub fn add_usage(&mut self, u: Usage, row: &ByPod) {
        let ns = self.strings.id(&row.key.namespace);
        let pod = self.strings.id(&row.key.pod);
        let i = slot(u);
        match &row.uid {
            Some(uid) => {
                let uid = self.strings.id(&uid.0);
                self.usage.by_uid.entry((ns, pod, uid)).or_insert([0.0; 5])[i] = row.value;
            }
            None => self.usage.by_key.entry((ns, pod)).or_insert([0.0; 5])[i] = row.value,
        }
    }

    /// How many pods were seen.
    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    /// The value of `name`, one of the annotations the records use
    /// (`hub_jupyter_org_username`, `egi_eu_primary_group`, `egi_eu_flavor`), for pod `uid`,
    /// as Prometheus gave it (not APEL-encoded): what the notebooks database keeps.
    pub fn annotation(&self, uid: &str, name: &str) -> Option<&str> {
        let i = ANNOTATIONS.iter().position(|a| *a == name)?;
        let uid = self.strings.ids.get(uid)?;
        self.annotations.get(uid)?[i].map(|id| self.strings.name(id))
    }

    fn warn_orphans(&self) {
        for (metric, uids) in [
            (
                Question::Running.metric_names()[0],
                self.running.keys().collect::<Vec<_>>(),
            ),
            (
                Question::Annotations.metric_names()[0],
                self.annotations.keys().collect(),
            ),
        ] {
            let mut orphans: Vec<&str> = uids
                .into_iter()
                .filter(|u| !self.pods.contains_key(u))
                .map(|u| self.strings.name(*u))
                .collect();
            orphans.sort_unstable();
            if let Some(first) = orphans.first() {
                tracing::warn!(
                    metric,
                    count = orphans.len(),
                    first_uid = first,
                    "series whose uid has no kube_pod_created series are ignored"
                );
            }
        }
    }

    /// The outcome per pod, ordered by UID: a valid record, or why there is none; and
    /// whether its network counters were reset (lower bounds).
    pub fn records<'a>(
        &'a self,
        config: &'a RecordConfig,
        at: Timestamp,
    ) -> impl Iterator<Item = (Result<CloudRecord, Skipped>, bool)> + 'a {
        self.warn_orphans();
        let mut uids: Vec<(&str, Id)> = self
            .pods
            .keys()
            .map(|&id| (self.strings.name(id), id))
            .collect();
        uids.sort_unstable();
        let mut per_name: HashMap<(Id, Id), usize> = HashMap::with_capacity(self.pods.len());
        for p in self.pods.values() {
            *per_name.entry((p.namespace, p.pod)).or_insert(0) += 1;
        }
        uids.into_iter().map(move |(uid_text, uid)| {
            let unique =
                per_name.get(&(self.pods[&uid].namespace, self.pods[&uid].pod)) == Some(&1);
            self.record(uid_text, uid, unique, config, at)
        })
    }

    fn record(
        &self,
        uid_text: &str,
        uid: Id,
        unique_name: bool,
        config: &RecordConfig,
        at: Timestamp,
    ) -> (Result<CloudRecord, Skipped>, bool) {
        let p = self.pods[&uid];
        let (namespace, pod) = (self.strings.name(p.namespace), self.strings.name(p.pod));
        let skip = |reason: SkipReason| {
            Err(Skipped {
                uid: uid_text.to_owned(),
                key: PodKey {
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                },
                reason,
            })
        };
        if p.conflicting {
            return (skip(SkipReason::ConflictingDuplicate), false);
        }
        let get = |u: Usage| {
            self.usage
                .get(slot(u), p.namespace, p.pod, uid, unique_name)
        };
        if self.usage.has_ambiguous(p.namespace, p.pod, unique_name) {
            tracing::warn!(
                uid = uid_text,
                namespace,
                pod,
                "usage series without a pod UID in their cgroup path, and several pods of this \
                 name in the window: that usage is not attributed"
            );
        }
        let metric = |q: Question| q.metric_names()[0];
        if !p.created.is_finite() {
            let metric = metric(Question::Pods);
            return (skip(SkipReason::NonFinite { metric }), false);
        }
        let created = p.created;
        // One bad figure is left out of the record (APEL reads a missing field as null), not
        // the whole record: its other figures are still worth reporting.
        let figure = |field: &str, q: Question, value: f64| {
            let ok = value.is_finite() && value >= 0.0;
            if !ok {
                tracing::warn!(
                    uid = uid_text,
                    namespace,
                    pod,
                    field,
                    metric = metric(q),
                    %value,
                    "not a finite, non-negative number: left out of the record"
                );
            }
            ok.then_some(value)
        };
        let usage = |field: &str, u: Usage| figure(field, Question::Usage(u), get(u));
        let cpu = usage("CpuDuration", Usage::CpuSeconds);
        let mem = usage("Memory", Usage::PeakMemoryBytes);
        let net_in = usage("NetworkInbound", Usage::NetworkReceivedBytes);
        let net_out = usage("NetworkOutbound", Usage::NetworkTransmittedBytes);
        let cores = self.cpu_requests.get(&uid).copied().unwrap_or(0.0);
        let cores = figure("CpuCount", Question::CpuRequests, cores).unwrap_or(0.0);
        let cores = if cores * 1000.0 > apel::MAX_CPU_COUNT_MILLI as f64 {
            tracing::warn!(
                uid = uid_text,
                namespace,
                pod,
                field = "CpuCount",
                value = cores,
                "more cores than APEL's DECIMAL(10,3) holds: taken as no CPU request"
            );
            0.0
        } else {
            cores
        };
        let cpu_count = if cores > 0.0 {
            cores
        } else if let Some(default) = config.default_cpu_count {
            default
        } else {
            return (skip(SkipReason::NoCpuCount), false);
        };
        // A creation time after the evaluation time (or before 1970) is broken data: APEL
        // would reject the whole message over one such record.
        if !(0.0..=(at.as_millis() as f64 / 1000.0)).contains(&created) {
            return (
                skip(SkipReason::Invalid(format!(
                    "creation time {created} is not between 1970 and the evaluation time"
                ))),
                false,
            );
        }
        let lower_bound = get(Usage::CounterResets) > 0.0;
        let start = created.trunc() as i64;
        let Some(life) = status::lifecycle(start, self.running.get(&uid).copied().flatten(), at)
        else {
            return (skip(SkipReason::NotRunning), false);
        };
        let labels = self.annotations.get(&uid).copied().unwrap_or_default();
        let annotation = |i: usize| labels[i].map(|id| self.strings.name(id));
        let image = self.images.get(&uid).map(|&id| self.strings.name(id));
        let fqan_value = match config.fqan_key {
            FqanKey::PrimaryGroup => annotation(GROUP),
            FqanKey::GlobalUserName => annotation(USER),
            FqanKey::Flavor => annotation(FLAVOR),
            FqanKey::Namespace => Some(namespace),
            FqanKey::Machine => Some(pod),
            FqanKey::ImageId => image,
        };
        // Names too long for APEL are shortened, keeping them distinct (see `apel`).
        let text = |field: &str, value: &str| {
            let safe = apel::ascii_field(value);
            if apel::was_shortened(&safe) {
                tracing::warn!(
                    uid = uid_text,
                    namespace,
                    pod,
                    field,
                    length = value.len(),
                    "longer than APEL's {} characters once encoded: shortened to {safe}",
                    apel::MAX_FIELD_LEN
                );
            }
            safe
        };
        let record = CloudRecord {
            record_create_time: at.as_secs(),
            vm_uuid: text("VMUUID", uid_text),
            site_name: config.site.clone(),
            cloud_compute_service: config.cloud_compute_service.clone(),
            machine_name: text("MachineName", pod),
            local_group_id: Some(text("LocalGroupId", namespace)),
            global_user_name: annotation(USER).map(|v| text("GlobalUserName", v)),
            fqan: fqan_value
                .and_then(|v| config.vo_map.resolve(v))
                .map(|v| text("FQAN", &v)),
            status: life.status,
            start_time: start,
            end_time: life.end,
            wall_duration: life.wall,
            cpu_duration: cpu.map(|v| v.round() as i64),
            cpu_count_milli: (cpu_count * 1000.0).round() as i64,
            network_inbound: net_in.map(|v| config.units.volume(v) as i64),
            network_outbound: net_out.map(|v| config.units.volume(v) as i64),
            memory: mem.map(|v| config.units.memory(v) as i64),
            disk: 0,
            image_id: image.map(|v| text("ImageId", v)),
            cloud_type: config.cloud_type.clone(),
        };
        match apel::validate(&record) {
            Ok(()) => (Ok(record), lower_bound),
            Err(why) => (skip(SkipReason::Invalid(why)), false),
        }
    }
}
