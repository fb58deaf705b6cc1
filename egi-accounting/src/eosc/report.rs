//! The pure core of the EOSC job: which periods to report, and the metrics of one period
//! from the notebooks database's rows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::Serialize;

use super::error::{Error, Result};
use crate::notebooks_db::VmRow;

/// One day, in seconds.
pub const DAY: i64 = 86_400;

/// A reporting period `[start, end)`, epoch seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    /// First second.
    pub start: i64,
    /// First second after it.
    pub end: i64,
}

/// `flavor name = metric definition id`: the `[eosc.flavors]` section.
pub type FlavorMetrics = BTreeMap<String, String>;

/// One metric as the EOSC accounting API takes it (`POST .../metrics`), fields in the order
/// the Python tool sends them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    /// The metric definition of the flavor.
    pub metric_definition_id: String,
    /// Period start, `%Y-%m-%dT%H:%M:%SZ`.
    pub time_period_start: String,
    /// Period end, `%Y-%m-%dT%H:%M:%SZ`.
    pub time_period_end: String,
    /// The hub user name (`global_user_name`).
    pub user_id: Option<String>,
    /// The VO (`fqan`).
    pub group_id: Option<String>,
    /// Hours the user's pods of this flavor ran in the period.
    pub value: f64,
}

impl Metric {
    /// What identifies this metric among those of its period: sent once at most.
    pub fn key(&self) -> String {
        serde_json::json!([
            self.time_period_start,
            self.metric_definition_id,
            self.user_id,
            self.group_id
        ])
        .to_string()
    }
}

/// `%Y-%m-%dT%H:%M:%SZ` of epoch seconds.
pub fn zulu(epoch: i64) -> String {
    DateTime::from_timestamp(epoch, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Epoch seconds of a date as the Python tool's `--from-date`, `--to-date` and timestamp
/// file take it: `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM[:SS[.f]]` (UTC), with `Z` or an offset.
pub fn parse_date(text: &str) -> Result<i64> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.timestamp());
    }
    let naive = t.strip_suffix('Z').unwrap_or(t);
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(d) = NaiveDateTime::parse_from_str(naive, format) {
            return Ok(d.and_utc().timestamp());
        }
    }
    NaiveDate::parse_from_str(naive, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc().timestamp())
        .ok_or_else(|| Error::Config(format!("{t:?} is not a date (YYYY-MM-DD[THH:MM:SSZ])")))
}

/// 00:00 UTC of the day of `epoch`.
pub fn midnight(epoch: i64) -> i64 {
    epoch.div_euclid(DAY) * DAY
}

/// The periods to report, as the Python tool walks them: from `from` (the `--from-date`,
/// else the timestamp file's time, else yesterday 00:00 UTC) to `to` (`--to-date`, else
/// today 00:00 UTC), one day at a time. A period that has not ended by `now` is left for a
/// later run (the Python tool would report it, and count running pods to its end), and one
/// that ended by the timestamp file's time was reported already: an explicit `--from-date`
/// does not send it again (the Python tool would; remove the timestamp file to resend).
pub fn periods(
    from: Option<i64>,
    to: Option<i64>,
    timestamp: Option<i64>,
    now: i64,
) -> Vec<Period> {
    let from = from.or(timestamp).unwrap_or(midnight(now) - DAY);
    let to = to.unwrap_or(midnight(now));
    let mut out = Vec::new();
    let mut start = from;
    while start < to && start + DAY <= now {
        if timestamp.is_none_or(|t| start + DAY > t) {
            out.push(Period {
                start,
                end: start + DAY,
            });
        }
        start += DAY;
    }
    out
}

/// The seconds `row` ran in `period` if the Python tool counts it there (it ended in the
/// period, or started before its end and ended after it or not at all): its run clipped
/// to the period, a pod still running counting to the end.
fn seconds_in(row: &VmRow, p: Period) -> Option<i64> {
    let ended_inside = row.end_time.is_some_and(|e| p.start <= e && e < p.end);
    let spans_end =
        row.start_time.is_some_and(|s| s < p.end) && row.end_time.is_none_or(|e| e >= p.end);
    if !(ended_inside || spans_end) {
        return None;
    }
    let from = row.start_time.map_or(p.start, |s| s.max(p.start));
    let to = row.end_time.map_or(p.end, |e| e.min(p.end));
    Some((to - from).max(0))
}

/// The metrics of `period`: per (user, group) and per mapped flavor, the hours their pods
/// ran in it; and the flavors met that `flavors` does not map (those pods are not
/// reported). Ordered by user, group, metric definition: the same rows give the same
/// metrics.
pub fn day_metrics(
    rows: &[VmRow],
    flavors: &FlavorMetrics,
    period: Period,
) -> (Vec<Metric>, BTreeSet<String>) {
    type Key = (Option<String>, Option<String>, String);
    let mut seconds: BTreeMap<Key, i64> = BTreeMap::new();
    let mut unmapped = BTreeSet::new();
    for row in rows {
        let Some(secs) = seconds_in(row, period) else {
            continue;
        };
        let Some(metric) = row.flavor.as_ref().and_then(|f| flavors.get(f)) else {
            unmapped.insert(row.flavor.clone().unwrap_or_default());
            continue;
        };
        let key = (
            row.global_user_name.clone(),
            row.fqan.clone(),
            metric.clone(),
        );
        *seconds.entry(key).or_insert(0) += secs;
    }
    let (start, end) = (zulu(period.start), zulu(period.end));
    let metrics = seconds
        .into_iter()
        .map(|((user, group, metric), secs)| Metric {
            metric_definition_id: metric,
            time_period_start: start.clone(),
            time_period_end: end.clone(),
            user_id: user,
            group_id: group,
            value: secs as f64 / 3600.0,
        })
        .collect();
    (metrics, unmapped)
}
