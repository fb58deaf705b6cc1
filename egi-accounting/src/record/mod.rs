//! From answers to APEL cloud records: pure functions, no IO.
//!
//! [`build_records`] joins the [`Answers`] of one window into one [`CloudRecord`] per pod UID,
//! applies the Python tool's [status rules](status), maps the VO, converts [units], and
//! validates every record against APEL's field rules ([`crate::apel::validate`]). A pod
//! whose record cannot be valid is returned in [`Built::skipped`] with the reason, and a
//! warning naming the pod is logged: one bad pod never poisons a message.

pub mod status;
pub mod units;
pub mod vo;

use std::collections::HashMap;
use std::fmt;

use crate::apel;
use crate::metrics::{Answers, ByPod, PodCreated, PodKey, Timestamp};
pub use status::{Lifecycle, Status};
pub use units::Units;
pub use vo::{FqanKey, VoMap};

/// What every record of a site shares, and how records are built.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordConfig {
    /// `SiteName` (default `EGI-NOTEBOOKS`).
    pub site: String,
    /// `CloudType` (default `EGI Notebooks`).
    pub cloud_type: String,
    /// `CloudComputeService`, if set.
    pub cloud_compute_service: Option<String>,
    /// Which pod attribute is mapped to the VO.
    pub fqan_key: FqanKey,
    /// VO mapping (`[VO]` section).
    pub vo_map: VoMap,
    /// CPU count for pods with no CPU request; without it such pods are skipped
    /// (APEL would take a missing CpuCount as 0).
    pub default_cpu_count: Option<f64>,
    /// Units of the size fields.
    pub units: Units,
}

impl Default for RecordConfig {
    fn default() -> Self {
        Self {
            site: "EGI-NOTEBOOKS".into(),
            cloud_type: "EGI Notebooks".into(),
            cloud_compute_service: None,
            fqan_key: FqanKey::default(),
            vo_map: VoMap::default(),
            default_cpu_count: None,
            units: Units::default(),
        }
    }
}

/// One APEL cloud record. String fields hold APEL-safe ASCII ([`apel::ascii_field`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudRecord {
    /// `RecordCreateTime`: the evaluation time, epoch seconds.
    pub record_create_time: i64,
    /// `VMUUID`: the pod UID.
    pub vm_uuid: String,
    /// `SiteName`.
    pub site_name: String,
    /// `CloudComputeService`.
    pub cloud_compute_service: Option<String>,
    /// `MachineName`: the pod name.
    pub machine_name: String,
    /// `LocalGroupId`: the pod's namespace.
    pub local_group_id: Option<String>,
    /// `GlobalUserName`: the hub user name.
    pub global_user_name: Option<String>,
    /// `FQAN`: the VO name.
    pub fqan: Option<String>,
    /// `Status`.
    pub status: Status,
    /// `StartTime`: pod creation, epoch seconds.
    pub start_time: i64,
    /// `EndTime`, epoch seconds, for completed pods.
    pub end_time: Option<i64>,
    /// `WallDuration`, seconds.
    pub wall_duration: i64,
    /// `CpuDuration`, seconds.
    pub cpu_duration: i64,
    /// `CpuCount` in thousandths of a core (APEL's DECIMAL(10,3)).
    pub cpu_count_milli: i64,
    /// `NetworkInbound`, in the configured unit.
    pub network_inbound: i64,
    /// `NetworkOutbound`, in the configured unit.
    pub network_outbound: i64,
    /// `Memory`, in the configured unit.
    pub memory: i64,
    /// `Disk`, in the configured unit (always 0: notebooks' volumes are accounted elsewhere).
    pub disk: i64,
    /// `ImageId`: the notebook container's image.
    pub image_id: Option<String>,
    /// `CloudType`.
    pub cloud_type: String,
}

/// Why a pod got no record.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SkipReason {
    /// A value the record needs is NaN or infinite.
    NonFinite {
        /// Which metric.
        metric: &'static str,
    },
    /// No CPU request and no `default_cpu_count`.
    NoCpuCount,
    /// Several `kube_pod_created` series with this UID disagree on namespace, name or
    /// creation time.
    ConflictingDuplicate,
    /// The record breaks an APEL field rule.
    Invalid(String),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::NonFinite { metric } => write!(f, "{metric} is not a finite number"),
            SkipReason::NoCpuCount => {
                f.write_str("no CPU request and no default_cpu_count configured")
            }
            SkipReason::ConflictingDuplicate => {
                f.write_str("several kube_pod_created series with this uid disagree")
            }
            SkipReason::Invalid(why) => write!(f, "invalid APEL record: {why}"),
        }
    }
}

/// A pod left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// Pod UID.
    pub uid: String,
    /// Namespace and name.
    pub key: PodKey,
    /// Why.
    pub reason: SkipReason,
}

/// The outcome of [`build_records`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Built {
    /// Valid records, ordered by UID.
    pub records: Vec<CloudRecord>,
    /// Pods without a record.
    pub skipped: Vec<Skipped>,
    /// Pods whose CPU or network counters were reset in the window: their figures are
    /// lower bounds (the record is still sent; APEL replaces it on the next run).
    pub lower_bounds: Vec<PodKey>,
}

struct PodFacts<'a> {
    created: &'a PodCreated,
    conflicting: bool,
}

/// Usage rows indexed for the join: by (namespace + pod, cgroup UID) where cAdvisor's cgroup
/// path names the pod, else by namespace + pod alone.
struct UsageIndex<'a> {
    by_uid: HashMap<(&'a PodKey, &'a str), f64>,
    by_key: HashMap<&'a PodKey, f64>,
}

impl<'a> UsageIndex<'a> {
    fn new(rows: &'a [ByPod]) -> Self {
        let mut by_uid = HashMap::with_capacity(rows.len());
        let mut by_key = HashMap::new();
        for row in rows {
            match &row.uid {
                Some(uid) => *by_uid.entry((&row.key, uid.0.as_str())).or_insert(0.0) += row.value,
                None => *by_key.entry(&row.key).or_insert(0.0) += row.value,
            }
        }
        Self { by_uid, by_key }
    }

    /// The usage of pod `uid` named `key`. Rows without a UID are only attributed when no
    /// other pod of the window has the same name (`unique_name`): otherwise they could
    /// belong to either session, and counting them twice would be worse than not at all.
    fn get(&self, key: &PodKey, uid: &str, unique_name: bool) -> f64 {
        let own = self.by_uid.get(&(key, uid)).copied().unwrap_or(0.0);
        match self.by_key.get(key) {
            Some(v) if unique_name => own + v,
            _ => own,
        }
    }

    fn has_ambiguous(&self, key: &PodKey, unique_name: bool) -> bool {
        !unique_name && self.by_key.contains_key(key)
    }
}

/// Builds the records of one window evaluated at `at` (also `RecordCreateTime` and "now"
/// for the status rules). Deterministic: the same answers give the same records.
pub fn build_records(answers: &Answers, config: &RecordConfig, at: Timestamp) -> Built {
    let mut pods: HashMap<&str, PodFacts<'_>> = HashMap::with_capacity(answers.pods.len());
    for p in &answers.pods {
        pods.entry(p.uid.0.as_str())
            .and_modify(|f| {
                let same = f.created.key == p.key
                    && (f.created.created == p.created
                        || (f.created.created.is_nan() && p.created.is_nan()));
                f.conflicting |= !same;
            })
            .or_insert(PodFacts {
                created: p,
                conflicting: false,
            });
    }
    let running: HashMap<&str, Option<Timestamp>> = answers
        .running
        .iter()
        .map(|r| (r.uid.0.as_str(), r.last_running))
        .collect();
    let annotations: HashMap<&str, _> = answers
        .annotations
        .iter()
        .map(|a| (a.uid.0.as_str(), &a.annotations))
        .collect();
    let images: HashMap<&str, &str> = answers
        .images
        .iter()
        .map(|i| (i.uid.0.as_str(), i.value.as_str()))
        .collect();
    let cpu_requests: HashMap<&str, f64> = answers
        .cpu_requests
        .iter()
        .map(|c| (c.uid.0.as_str(), c.value))
        .collect();
    let cpu_seconds = UsageIndex::new(&answers.cpu_seconds);
    let memory = UsageIndex::new(&answers.peak_memory);
    let rx = UsageIndex::new(&answers.network_received);
    let tx = UsageIndex::new(&answers.network_transmitted);
    let resets = UsageIndex::new(&answers.counter_resets);
    let mut uids_per_name: HashMap<&PodKey, usize> = HashMap::with_capacity(pods.len());
    for facts in pods.values() {
        *uids_per_name.entry(&facts.created.key).or_insert(0) += 1;
    }

    warn_orphans(
        "kube_pod_status_phase",
        answers.running.iter().map(|r| r.uid.0.as_str()),
        &pods,
    );
    warn_orphans(
        "kube_pod_annotations",
        answers.annotations.iter().map(|r| r.uid.0.as_str()),
        &pods,
    );

    let mut uids: Vec<&str> = pods.keys().copied().collect();
    uids.sort_unstable();
    let mut built = Built {
        records: Vec::with_capacity(uids.len()),
        ..Built::default()
    };
    for uid in uids {
        let facts = &pods[uid];
        let key = &facts.created.key;
        let skip = |reason: SkipReason| Skipped {
            uid: uid.to_owned(),
            key: key.clone(),
            reason,
        };
        if facts.conflicting {
            built.skipped.push(skip(SkipReason::ConflictingDuplicate));
            continue;
        }
        let unique_name = uids_per_name.get(key).is_none_or(|&n| n == 1);
        let get = |m: &UsageIndex<'_>| m.get(key, uid, unique_name);
        if [&cpu_seconds, &memory, &rx, &tx]
            .iter()
            .any(|m| m.has_ambiguous(key, unique_name))
        {
            tracing::warn!(
                uid,
                namespace = %key.namespace,
                pod = %key.pod,
                "usage series without a pod UID in their cgroup path, and several pods of this \
                 name in the window: that usage is not attributed"
            );
        }
        let usage = [
            ("kube_pod_created", facts.created.created),
            ("container_cpu_usage_seconds_total", get(&cpu_seconds)),
            ("container_memory_max_usage_bytes", get(&memory)),
            ("container_network_receive_bytes_total", get(&rx)),
            ("container_network_transmit_bytes_total", get(&tx)),
            (
                "kube_pod_container_resource_requests",
                cpu_requests.get(uid).copied().unwrap_or(0.0),
            ),
        ];
        if let Some((metric, _)) = usage.iter().find(|(_, v)| !v.is_finite()) {
            built.skipped.push(skip(SkipReason::NonFinite { metric }));
            continue;
        }
        let [created, cpu, mem, net_in, net_out, cores] = usage.map(|(_, v)| v);
        let cpu_count = if cores > 0.0 {
            cores
        } else if let Some(default) = config.default_cpu_count {
            default
        } else {
            built.skipped.push(skip(SkipReason::NoCpuCount));
            continue;
        };
        if get(&resets) > 0.0 {
            built.lower_bounds.push(key.clone());
        }
        let start = created.trunc() as i64;
        let life = status::lifecycle(start, running.get(uid).copied().flatten(), at);
        let pod_annotations = annotations.get(uid);
        let annotation = |name: &str| {
            pod_annotations
                .and_then(|a| a.get(name))
                .map(String::as_str)
                .filter(|v| !v.is_empty())
        };
        let fqan_value = match config.fqan_key {
            FqanKey::PrimaryGroup => annotation("egi_eu_primary_group"),
            FqanKey::GlobalUserName => annotation("hub_jupyter_org_username"),
            FqanKey::Flavor => annotation("egi_eu_flavor"),
            FqanKey::Namespace => Some(key.namespace.as_str()),
            FqanKey::Machine => Some(key.pod.as_str()),
            FqanKey::ImageId => images.get(uid).copied(),
        };
        let record = CloudRecord {
            record_create_time: at.as_secs(),
            vm_uuid: apel::ascii_field(uid),
            site_name: config.site.clone(),
            cloud_compute_service: config.cloud_compute_service.clone(),
            machine_name: apel::ascii_field(&key.pod),
            local_group_id: Some(apel::ascii_field(&key.namespace)),
            global_user_name: annotation("hub_jupyter_org_username").map(apel::ascii_field),
            fqan: fqan_value
                .and_then(|v| config.vo_map.resolve(v))
                .map(|v| apel::ascii_field(&v)),
            status: life.status,
            start_time: start,
            end_time: life.end,
            wall_duration: life.wall,
            cpu_duration: cpu.round() as i64,
            cpu_count_milli: (cpu_count * 1000.0).round() as i64,
            network_inbound: config.units.volume(net_in) as i64,
            network_outbound: config.units.volume(net_out) as i64,
            memory: config.units.memory(mem) as i64,
            disk: 0,
            image_id: images.get(uid).map(|i| apel::ascii_field(i)),
            cloud_type: config.cloud_type.clone(),
        };
        match apel::validate(&record) {
            Ok(()) => built.records.push(record),
            Err(why) => built.skipped.push(skip(SkipReason::Invalid(why))),
        }
    }
    for s in &built.skipped {
        tracing::warn!(uid = %s.uid, namespace = %s.key.namespace, pod = %s.key.pod, "pod skipped: {}", s.reason);
    }
    for k in &built.lower_bounds {
        tracing::warn!(namespace = %k.namespace, pod = %k.pod, "CPU or network counter reset in the window: figures are lower bounds");
    }
    built
}

fn warn_orphans<'a>(
    metric: &str,
    uids: impl Iterator<Item = &'a str>,
    pods: &HashMap<&str, PodFacts<'_>>,
) {
    let mut count = 0usize;
    let mut first = None;
    for uid in uids.filter(|u| !pods.contains_key(u)) {
        count += 1;
        first.get_or_insert(uid);
    }
    if let Some(first) = first {
        tracing::warn!(
            metric,
            count,
            first_uid = first,
            "series whose uid has no kube_pod_created series are ignored"
        );
    }
}

#[cfg(test)]
mod tests;
