//! From answers to APEL cloud records: pure functions, no IO.
//!
//! [`build_records`] joins the [`Answers`] of one window into one [`CloudRecord`] per pod UID,
//! applies the Python tool's [status rules](status), maps the VO, converts [units], and
//! validates every record against APEL's field rules ([`crate::apel::validate`]).
//!
//! One bad field does not lose a record: a usage figure that is NaN, infinite or negative
//! is left out of the record (APEL reads it as null), a CPU request that is not a finite,
//! non-negative number counts as no request, and names too long for APEL are shortened
//! ([`crate::apel::ascii_field`]), each with a warning naming the pod and the field. A pod
//! whose record still cannot be valid (creation time not a time, EndTime before StartTime)
//! is returned in [`Built::skipped`] with the reason, and a warning naming the pod is
//! logged: one bad pod never poisons a message. Pods never seen Running are not reported
//! ([`status`]).

mod join;
pub mod status;
pub mod units;
pub mod vo;

use std::fmt;

use crate::metrics::{Answers, PodKey, Timestamp, Usage};
pub use join::Joiner;
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

/// One APEL cloud record. String fields hold APEL-safe ASCII ([`crate::apel::ascii_field`]:
/// encoded, and shortened past 255 characters).
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
    /// `CpuDuration`, seconds; `None` (field left out) when Prometheus' figure is not a
    /// finite, non-negative number.
    pub cpu_duration: Option<i64>,
    /// `CpuCount` in thousandths of a core (APEL's DECIMAL(10,3)).
    pub cpu_count_milli: i64,
    /// `NetworkInbound`, in the configured unit; `None` as for `cpu_duration`.
    pub network_inbound: Option<i64>,
    /// `NetworkOutbound`, in the configured unit; `None` as for `cpu_duration`.
    pub network_outbound: Option<i64>,
    /// `Memory`, in the configured unit; `None` as for `cpu_duration`.
    pub memory: Option<i64>,
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
    /// The pod was never seen Running in the window (still Pending, or gone before it ran):
    /// not reported until it runs (see [`status`]). Logged at debug level: it is normal.
    NotRunning,
    /// The creation time is NaN or infinite (a usage figure that is not finite is only
    /// left out of the record).
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
            SkipReason::NotRunning => {
                f.write_str("never seen Running in the window: not reported until it runs")
            }
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
    /// Pods whose network counters were reset in the window (a recreated sandbox): their
    /// figures are lower bounds (the record is still sent; APEL replaces it on the next
    /// run). Names as in the records (APEL-safe).
    pub lower_bounds: Vec<PodKey>,
}

/// Builds the records of one window evaluated at `at` (also `RecordConfig` "now" for the
/// status rules and `RecordCreateTime`). Deterministic: the same answers give the same
/// records, ordered by UID. An accounting run folds answers into a [`Joiner`] as they come
/// instead, which needs far less memory; this is the same computation on answers at hand.
pub fn build_records(answers: &Answers, config: &RecordConfig, at: Timestamp) -> Built {
    let mut joiner = Joiner::new();
    answers.pods.iter().for_each(|r| joiner.add_pod(r));
    answers.running.iter().for_each(|r| joiner.add_running(r));
    answers
        .annotations
        .iter()
        .for_each(|r| joiner.add_annotations(r));
    answers.images.iter().for_each(|r| joiner.add_image(r));
    answers
        .cpu_requests
        .iter()
        .for_each(|r| joiner.add_cpu_request(r));
    for (u, rows) in [
        (Usage::CpuSeconds, &answers.cpu_seconds),
        (Usage::PeakMemoryBytes, &answers.peak_memory),
        (Usage::NetworkReceivedBytes, &answers.network_received),
        (Usage::NetworkTransmittedBytes, &answers.network_transmitted),
        (Usage::CounterResets, &answers.counter_resets),
    ] {
        rows.iter().for_each(|r| joiner.add_usage(u, r));
    }
    let mut built = Built {
        records: Vec::with_capacity(joiner.pod_count()),
        ..Built::default()
    };
    for (outcome, lower_bound) in joiner.records(config, at) {
        match outcome {
            Ok(record) => {
                if lower_bound {
                    built.lower_bounds.push(PodKey {
                        namespace: record.local_group_id.clone().unwrap_or_default(),
                        pod: record.machine_name.clone(),
                    });
                }
                built.records.push(record);
            }
            Err(skipped) => {
                log_skipped(&skipped);
                built.skipped.push(skipped);
            }
        }
    }
    built
}

/// Logs why a pod got no record: a warning, or a debug line for a pod not yet running.
pub fn log_skipped(s: &Skipped) {
    if s.reason == SkipReason::NotRunning {
        tracing::debug!(uid = %s.uid, namespace = %s.key.namespace, pod = %s.key.pod, "pod skipped: {}", s.reason);
    } else {
        tracing::warn!(uid = %s.uid, namespace = %s.key.namespace, pod = %s.key.pod, "pod skipped: {}", s.reason);
    }
}

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
