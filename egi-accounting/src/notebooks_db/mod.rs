//! `notebooks_db`: the Python tool's SQLite copy of its records, which its EOSC job (and any
//! other reader) reads. Same file, same table, same columns and meanings as the peewee
//! model `VM` creates them, one row per pod UID, upserted by every accounting run.
//!
//! - Pure: [`VmRow::from_record`] turns a record (built with [`Units::Bytes`], the Python
//!   tool's units) and the pod's raw annotations into a row; [`rows`] does it for every pod
//!   of a [`Joiner`].
//! - IO: [`NotebooksDb`] creates the table if missing ([`SCHEMA`], peewee's DDL) and
//!   upserts a run's rows in one transaction, all or nothing.
//!
//! What each column holds (as the Python tool writes it):
//!
//! | column | value |
//! |---|---|
//! | `local_id` | the pod UID; a UUID is stored as 32 hex digits, as peewee's `UUIDField` does |
//! | `namespace`, `machine` | the pod's namespace and name |
//! | `local_group_id` | the namespace (our APEL `LocalGroupId`; the Python tool leaves it empty) |
//! | `global_user_name` | the `hub.jupyter.org/username` annotation, as it is (not APEL-encoded) |
//! | `fqan` | the VO, as in the APEL record |
//! | `status` | `started` or `completed` |
//! | `start_time`, `end_time` | UTC `YYYY-MM-DD HH:MM:SS` (peewee's `DateTimeField`); no end while started |
//! | `wall`, `cpu_duration` | seconds |
//! | `cpu_count` | the pod's CPU request in cores, 0 if none (the default CPU count is for APEL only) |
//! | `network_inbound`, `network_outbound`, `memory` | bytes |
//! | `disk`, `suspend_duration`, `public_ip_count` | 0 |
//! | `image_id` | the notebook container's image |
//! | `flavor` | the `egi.eu/flavor` annotation |
//! | `local_user_id`, `network_type`, `storage_record`, `benchmark_type`, `benchmark` | NULL |

mod store;

use chrono::{DateTime, NaiveDateTime};

use crate::metrics::Timestamp;
use crate::record::{CloudRecord, Joiner, RecordConfig, Units};
pub use store::NotebooksDb;

/// The table as peewee 4 creates it for the Python tool's `VM` model (primary key first,
/// then the fields in declaration order); SQLite keeps this text in `sqlite_master`.
pub const SCHEMA: &str = concat!(
    r#"CREATE TABLE IF NOT EXISTS "vm" ("local_id" TEXT NOT NULL PRIMARY KEY, "#,
    r#""namespace" VARCHAR(255) NOT NULL, "machine" VARCHAR(255) NOT NULL, "#,
    r#""local_user_id" VARCHAR(255), "local_group_id" VARCHAR(255), "#,
    r#""global_user_name" VARCHAR(255), "fqan" VARCHAR(255), "status" VARCHAR(255), "#,
    r#""start_time" DATETIME, "end_time" DATETIME, "suspend_duration" REAL, "wall" REAL, "#,
    r#""cpu_duration" REAL, "cpu_count" REAL, "network_type" VARCHAR(255), "#,
    r#""network_inbound" REAL, "network_outbound" REAL, "memory" REAL, "disk" REAL, "#,
    r#""storage_record" VARCHAR(255), "image_id" VARCHAR(255), "#,
    r#""benchmark_type" VARCHAR(255), "benchmark" VARCHAR(255), "public_ip_count" INTEGER, "#,
    r#""flavor" VARCHAR(255))"#
);

/// Annotation (label suffix of `kube_pod_annotations`) of the hub user name.
const USER_ANNOTATION: &str = "hub_jupyter_org_username";
/// Annotation of the flavor (`egi.eu/flavor`).
const FLAVOR_ANNOTATION: &str = "egi_eu_flavor";

/// One row of the `vm` table (the columns that are always 0 or NULL are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct VmRow {
    /// `local_id`: the pod UID as stored (see [`stored_uid`]).
    pub local_id: String,
    /// `namespace`.
    pub namespace: String,
    /// `machine`: the pod name.
    pub machine: String,
    /// `local_group_id`.
    pub local_group_id: Option<String>,
    /// `global_user_name`.
    pub global_user_name: Option<String>,
    /// `fqan`.
    pub fqan: Option<String>,
    /// `status`.
    pub status: Option<String>,
    /// `start_time`, epoch seconds.
    pub start_time: Option<i64>,
    /// `end_time`, epoch seconds.
    pub end_time: Option<i64>,
    /// `wall`, seconds.
    pub wall: f64,
    /// `cpu_duration`, seconds.
    pub cpu_duration: f64,
    /// `cpu_count`, cores.
    pub cpu_count: f64,
    /// `network_inbound`, bytes.
    pub network_inbound: f64,
    /// `network_outbound`, bytes.
    pub network_outbound: f64,
    /// `memory`, bytes.
    pub memory: f64,
    /// `image_id`.
    pub image_id: Option<String>,
    /// `flavor`.
    pub flavor: Option<String>,
}

impl VmRow {
    /// The row of `record` (built with [`Units::Bytes`]), with the pod's user name and
    /// flavor annotations as found.
    pub fn from_record(r: &CloudRecord, user: Option<&str>, flavor: Option<&str>) -> Self {
        Self {
            local_id: stored_uid(&r.vm_uuid),
            namespace: r.local_group_id.clone().unwrap_or_default(),
            machine: r.machine_name.clone(),
            local_group_id: r.local_group_id.clone(),
            global_user_name: user.map(str::to_owned),
            fqan: r.fqan.clone(),
            status: Some(r.status.as_str().to_owned()),
            start_time: Some(r.start_time),
            end_time: r.end_time,
            wall: r.wall_duration as f64,
            cpu_duration: figure(r.cpu_duration),
            cpu_count: r.cpu_count_milli as f64 / 1000.0,
            network_inbound: figure(r.network_inbound),
            network_outbound: figure(r.network_outbound),
            memory: figure(r.memory),
            image_id: r.image_id.clone(),
            flavor: flavor.map(str::to_owned),
        }
    }
}

/// A record's figure (a figure left out of the record, one Prometheus gave as NaN or
/// infinite, is 0 here).
fn figure(value: impl Into<Option<i64>>) -> f64 {
    value.into().unwrap_or_default() as f64
}

/// The rows of every pod of `joiner` evaluated at `at`, ordered by UID: the records of
/// `config`, but in bytes, with the CPU request as it is (0 when none, where APEL records
/// take the default CPU count or are skipped). Pods whose record cannot be built (see
/// [`crate::record::SkipReason`]) get no row; the accounting run logs them. Unlike the
/// Python tool, a pod never seen Running gets no row either (it is not reported to APEL),
/// which changes nothing for the EOSC job: it would count zero hours.
pub fn rows(joiner: &Joiner, config: &RecordConfig, at: Timestamp) -> Vec<VmRow> {
    let db_config = RecordConfig {
        units: Units::Bytes,
        default_cpu_count: Some(0.0),
        ..config.clone()
    };
    joiner
        .records(&db_config, at)
        .filter_map(|(outcome, _)| outcome.ok())
        .map(|r| {
            let user = joiner.annotation(&r.vm_uuid, USER_ANNOTATION);
            let flavor = joiner.annotation(&r.vm_uuid, FLAVOR_ANNOTATION);
            VmRow::from_record(&r, user, flavor)
        })
        .collect()
}

/// A pod UID as peewee's `UUIDField` stores it: a UUID (hyphenated or not, any case) as 32
/// lowercase hex digits, anything else unchanged.
pub fn stored_uid(uid: &str) -> String {
    let hex: String = uid.chars().filter(|c| *c != '-').collect();
    let groups: Vec<usize> = uid.split('-').map(str::len).collect();
    let shaped = groups == [8, 4, 4, 4, 12] || groups == [32];
    if shaped && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        hex.to_ascii_lowercase()
    } else {
        uid.to_owned()
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of epoch seconds, as peewee writes a naive `datetime`;
/// `None` outside chrono's range.
pub fn format_time(epoch: i64) -> Option<String> {
    DateTime::from_timestamp(epoch, 0).map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// Epoch seconds of a `DateTimeField` value (`YYYY-MM-DD HH:MM:SS[.ffffff]` or
/// `YYYY-MM-DD`), taken as UTC as the Python EOSC job does; fractions are dropped.
pub fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc().timestamp());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
}

#[cfg(test)]
mod tests;
