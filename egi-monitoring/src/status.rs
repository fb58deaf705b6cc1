//! What a status service shows, rendered without IO: EGI's `{code,msg,time}` JSON (with
//! every probe's details alongside), an HTML page, and Prometheus metrics.
//!
//! The [`Audience`] decides how much: the public gets the `{code,msg,time}` summary of the
//! whole and of each probe; viewers the hub authenticated also get phases, timings and
//! details (kernel output, kernel ids, tracebacks).

use std::fmt::Write as _;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::outcome::{Outcome, Phase, Status, epoch_seconds};

/// EGI's status record: `{"code": "OK", "msg": "...", "time": 1700000000.5}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// The status.
    pub code: Status,
    /// The message.
    pub msg: String,
    /// When the result was obtained (seconds since the epoch).
    pub time: f64,
}

impl From<&Outcome> for StatusRecord {
    fn from(outcome: &Outcome) -> Self {
        Self {
            code: outcome.status,
            msg: outcome.message.clone(),
            time: outcome.ended_epoch(),
        }
    }
}

/// Who a page is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Anyone: the `{code,msg,time}` summary of the whole and of each probe.
    Public,
    /// A viewer the hub authenticated (scope `access:services`): phases, timings, details.
    Authenticated,
}

/// What a status service keeps of one probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRecord {
    /// The probe's name.
    pub name: String,
    /// Its last outcome, if it ran.
    pub last: Option<Outcome>,
    /// How many runs ended with each status, indexed by [`Status::exit_code`].
    pub runs: [u64; 4],
}

impl ProbeRecord {
    /// A probe that has not run yet.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            last: None,
            runs: [0; 4],
        }
    }

    /// Records an outcome.
    pub fn record(&mut self, outcome: Outcome) {
        self.runs[usize::from(outcome.status.exit_code())] += 1;
        self.last = Some(outcome);
    }
}

/// The overall record: the worst status; the messages of the probes that have it (all of
/// them when everything is OK), each prefixed by its probe's name when there are several;
/// the end time of the oldest last run, so that one stuck probe makes the result stale.
/// Before every probe ran: UNKNOWN at `since`.
pub fn overall(records: &[ProbeRecord], since: SystemTime) -> StatusRecord {
    overall_or(records, since, None)
}

/// [`overall`], except that until every probe ran, the `previous` record (the status file
/// a restarted service found) stands, as EGI's tool keeps serving its last file.
pub fn overall_or(
    records: &[ProbeRecord],
    since: SystemTime,
    previous: Option<&StatusRecord>,
) -> StatusRecord {
    if let Some(previous) = previous
        && records.iter().any(|r| r.last.is_none())
    {
        return previous.clone();
    }
    let ran: Vec<(&str, &Outcome)> = records
        .iter()
        .filter_map(|r| r.last.as_ref().map(|o| (r.name.as_str(), o)))
        .collect();
    if ran.is_empty() || ran.len() < records.len() {
        let waiting: Vec<&str> = records
            .iter()
            .filter(|r| r.last.is_none())
            .map(|r| r.name.as_str())
            .collect();
        return StatusRecord {
            code: Status::Unknown,
            msg: format!("no result yet from {}", waiting.join(", ")),
            time: epoch_seconds(since),
        };
    }
    let code = ran.iter().fold(Status::Ok, |s, (_, o)| s.worst(o.status));
    let several = ran.len() > 1;
    let msg = ran
        .iter()
        .filter(|(_, o)| o.status == code)
        .map(|(name, o)| {
            if several {
                format!("{name}: {}", o.message)
            } else {
                o.message.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let time = ran
        .iter()
        .map(|(_, o)| o.ended_epoch())
        .fold(f64::INFINITY, f64::min);
    StatusRecord { code, msg, time }
}

/// The JSON document: the [`overall`] record's `code`, `msg` and `time` (so EGI's readers
/// work unchanged) and a `probes` object with each probe's record, duration, phases and
/// details.
pub fn status_json(records: &[ProbeRecord], since: SystemTime) -> Value {
    status_json_for(records, since, None, Audience::Authenticated)
}

/// [`status_json`] for `audience`, with the `previous` record standing until every probe
/// ran ([`overall_or`]). For [`Audience::Public`], each probe has only `code`, `msg` and
/// `time`.
pub fn status_json_for(
    records: &[ProbeRecord],
    since: SystemTime,
    previous: Option<&StatusRecord>,
    audience: Audience,
) -> Value {
    let all = overall_or(records, since, previous);
    let probes: serde_json::Map<String, Value> = records
        .iter()
        .map(|r| {
            let value = match &r.last {
                None => Value::Null,
                Some(o) if audience == Audience::Public => json!({
                    "code": o.status,
                    "msg": o.message,
                    "time": o.ended_epoch(),
                }),
                Some(o) => json!({
                    "code": o.status,
                    "msg": o.message,
                    "time": o.ended_epoch(),
                    "started": o.started_epoch(),
                    "duration": o.duration.as_secs_f64(),
                    "phases": o.phases.iter().map(|p| json!({
                        "name": p.name, "seconds": p.duration.as_secs_f64(), "ok": p.ok,
                    })).collect::<Vec<_>>(),
                    "details": o.details,
                }),
            };
            (r.name.clone(), value)
        })
        .collect();
    json!({ "code": all.code, "msg": all.msg, "time": all.time, "probes": probes })
}

/// Escapes text for HTML.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn rfc3339(epoch: f64) -> String {
    chrono::DateTime::from_timestamp_millis((epoch * 1000.0) as i64)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A self-contained HTML page: the overall status, then one section per probe with its
/// message, phases and details.
pub fn status_html(title: &str, records: &[ProbeRecord], since: SystemTime) -> String {
    status_html_for(title, records, since, None, Audience::Authenticated, "")
}

/// [`status_html`] for `audience`, with the `previous` record standing until every probe
/// ran; `footer` is HTML added at the end (such as a link to the details). For
/// [`Audience::Public`], each probe shows its status and message only.
pub fn status_html_for(
    title: &str,
    records: &[ProbeRecord],
    since: SystemTime,
    previous: Option<&StatusRecord>,
    audience: Audience,
    footer: &str,
) -> String {
    let all = overall_or(records, since, previous);
    let colour = |s: Status| match s {
        Status::Ok => "#2e7d32",
        Status::Warning => "#ef6c00",
        Status::Critical => "#c62828",
        Status::Unknown => "#6d6d6d",
    };
    let mut page = String::new();
    let title = escape_html(title);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}\
         .s{{color:#fff;padding:.1em .5em;border-radius:.3em}}td,th{{padding:.2em .6em;text-align:left;vertical-align:top}}\
         pre{{margin:0;white-space:pre-wrap}}</style></head><body>\n<h1>{title}</h1>\n\
         <p><span class=\"s\" style=\"background:{}\">{}</span> {} <small>({})</small></p>\n",
        colour(all.code),
        all.code,
        escape_html(&all.msg),
        rfc3339(all.time),
    );
    for record in records {
        let _ = writeln!(page, "<h2>{}</h2>", escape_html(&record.name));
        let Some(o) = &record.last else {
            page.push_str("<p>not run yet</p>\n");
            continue;
        };
        if audience == Audience::Public {
            let _ = writeln!(
                page,
                "<p><span class=\"s\" style=\"background:{}\">{}</span> {} <small>({})</small></p>",
                colour(o.status),
                o.status,
                escape_html(&o.message),
                rfc3339(o.ended_epoch()),
            );
            continue;
        }
        let _ = write!(
            page,
            "<p><span class=\"s\" style=\"background:{}\">{}</span> {} <small>({}, {:.2} s)</small></p>\n<table>\n",
            colour(o.status),
            o.status,
            escape_html(&o.message),
            rfc3339(o.ended_epoch()),
            o.duration.as_secs_f64(),
        );
        for p in &o.phases {
            let mark = if p.ok { "" } else { " (failed)" };
            let _ = writeln!(
                page,
                "<tr><th>{}</th><td>{:.3} s{mark}</td></tr>",
                escape_html(&p.name),
                p.duration.as_secs_f64()
            );
        }
        for (k, v) in &o.details {
            let _ = writeln!(
                page,
                "<tr><th>{}</th><td><pre>{}</pre></td></tr>",
                escape_html(k),
                escape_html(v)
            );
        }
        let _ = write!(
            page,
            "<tr><th>runs</th><td>{} OK, {} WARNING, {} CRITICAL, {} UNKNOWN</td></tr>\n</table>\n",
            record.runs[0], record.runs[1], record.runs[2], record.runs[3]
        );
    }
    page.push_str(footer);
    page.push_str("</body></html>\n");
    page
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Prometheus text exposition of the probes' last results, durations and run counts.
pub fn metrics_text(records: &[ProbeRecord]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    let last: Vec<(&str, &Outcome)> = records
        .iter()
        .filter_map(|r| r.last.as_ref().map(|o| (r.name.as_str(), o)))
        .collect();
    // One sample per probe, or per phase of each probe's last run.
    let per_probe = |value: fn(&Outcome) -> String| -> Vec<(String, String)> {
        last.iter()
            .map(|(n, o)| (format!("probe=\"{}\"", label(n)), value(o)))
            .collect()
    };
    let per_phase = |value: fn(&Phase) -> String| -> Vec<(String, String)> {
        last.iter()
            .flat_map(|(n, o)| {
                o.phases.iter().map(move |p| {
                    let labels = format!("probe=\"{}\",phase=\"{}\"", label(n), label(&p.name));
                    (labels, value(p))
                })
            })
            .collect()
    };
    family(
        "egi_monitoring_probe_status",
        "gauge",
        "Status of the last run: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
        per_probe(|o| o.status.exit_code().to_string()),
    );
    family(
        "egi_monitoring_probe_success",
        "gauge",
        "1 if the last run was OK, else 0.",
        per_probe(|o| u8::from(o.status == Status::Ok).to_string()),
    );
    family(
        "egi_monitoring_probe_duration_seconds",
        "gauge",
        "Duration of the last run.",
        per_probe(|o| o.duration.as_secs_f64().to_string()),
    );
    family(
        "egi_monitoring_probe_phase_duration_seconds",
        "gauge",
        "Duration of each phase of the last run.",
        per_phase(|p| p.duration.as_secs_f64().to_string()),
    );
    family(
        "egi_monitoring_probe_phase_success",
        "gauge",
        "1 if the phase of the last run succeeded (a cell that raised is 0), else 0.",
        per_phase(|p| u8::from(p.ok).to_string()),
    );
    family(
        "egi_monitoring_probe_last_run_timestamp_seconds",
        "gauge",
        "When the last run started, in seconds since the epoch.",
        per_probe(|o| format!("{:.3}", o.started_epoch())),
    );
    family(
        "egi_monitoring_probe_runs_total",
        "counter",
        "Runs by resulting status.",
        records
            .iter()
            .flat_map(|r| {
                Status::ALL.into_iter().map(move |s| {
                    (
                        format!("probe=\"{}\",status=\"{s}\"", label(&r.name)),
                        r.runs[usize::from(s.exit_code())].to_string(),
                    )
                })
            })
            .collect(),
    );
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::outcome::Phase;

    fn outcome(status: Status, message: &str, at: u64) -> Outcome {
        let mut o = Outcome::new(status, message).with_detail("stdout", "<b>3.11</b>\n");
        o.started = SystemTime::UNIX_EPOCH + Duration::from_secs(at);
        o.duration = Duration::from_millis(3500);
        o.phases.push(Phase {
            name: "start".into(),
            duration: Duration::from_millis(250),
            ok: status == Status::Ok,
        });
        o
    }

    fn records() -> Vec<ProbeRecord> {
        let mut spawn = ProbeRecord::new("spawn");
        spawn.record(outcome(Status::Ok, "Spawned server in 3 s", 1_700_000_100));
        let mut exec = ProbeRecord::new("execute");
        exec.record(outcome(Status::Ok, "Executed", 1_700_000_000));
        exec.record(outcome(
            Status::Critical,
            "code raised ZeroDivisionError: division by zero",
            1_700_000_200,
        ));
        vec![spawn, exec]
    }

    #[test]
    fn overall_is_the_worst_with_its_messages_and_the_oldest_time() {
        let since = SystemTime::UNIX_EPOCH;
        let all = overall(&records(), since);
        assert_eq!(all.code, Status::Critical);
        assert_eq!(
            all.msg,
            "execute: code raised ZeroDivisionError: division by zero"
        );
        // The end of the oldest last run (started at 1_700_000_100, took 3.5 s).
        assert_eq!(all.time, 1_700_000_103.5);
        let ok = &records()[..1];
        assert_eq!(overall(ok, since).msg, "Spawned server in 3 s");
        let none = overall(&[ProbeRecord::new("spawn")], since + Duration::from_secs(5));
        assert_eq!(
            (none.code, none.msg.as_str(), none.time),
            (Status::Unknown, "no result yet from spawn", 5.0)
        );
    }

    #[test]
    fn json_is_egi_compatible_with_details() {
        let json = status_json(&records(), SystemTime::UNIX_EPOCH);
        let egi: StatusRecord = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(egi.code, Status::Critical);
        assert_eq!(json["probes"]["spawn"]["code"], "OK");
        assert_eq!(json["probes"]["spawn"]["phases"][0]["name"], "start");
        assert_eq!(json["probes"]["spawn"]["phases"][0]["seconds"], 0.25);
        assert_eq!(
            json["probes"]["execute"]["details"]["stdout"],
            "<b>3.11</b>\n"
        );
        let waiting = status_json(&[ProbeRecord::new("hub")], SystemTime::UNIX_EPOCH);
        assert_eq!(waiting["probes"]["hub"], Value::Null);
    }

    #[test]
    fn html_escapes_and_shows_every_probe() {
        let page = status_html("Notebooks <status>", &records(), SystemTime::UNIX_EPOCH);
        assert!(page.contains("<title>Notebooks &lt;status&gt;</title>"));
        assert!(page.contains("&lt;b&gt;3.11&lt;/b&gt;"));
        assert!(!page.contains("<b>3.11"));
        assert!(page.contains("<h2>spawn</h2>") && page.contains("<h2>execute</h2>"));
        assert!(page.contains("2023-11-14T22:15:03Z"), "{page}");
        assert!(page.contains("1 OK, 0 WARNING, 1 CRITICAL, 0 UNKNOWN"));
    }

    #[test]
    fn the_public_sees_the_summary_only_and_a_previous_record_stands_until_all_ran() {
        let json = status_json_for(&records(), SystemTime::UNIX_EPOCH, None, Audience::Public);
        assert_eq!(json["code"], "CRITICAL");
        assert_eq!(
            json["probes"]["execute"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["code", "msg", "time"]
        );
        let page = status_html_for(
            "t",
            &records(),
            SystemTime::UNIX_EPOCH,
            None,
            Audience::Public,
            "<p>details</p>",
        );
        assert!(!page.contains("3.11") && !page.contains("start"), "{page}");
        assert!(page.contains("<p>details</p>"));

        let previous = StatusRecord {
            code: Status::Ok,
            msg: "Spawned server in 4 s".into(),
            time: 1_600_000_000.0,
        };
        let mut waiting = records();
        waiting.push(ProbeRecord::new("hub"));
        let all = overall_or(&waiting, SystemTime::UNIX_EPOCH, Some(&previous));
        assert_eq!(all, previous);
        let done = overall_or(&records(), SystemTime::UNIX_EPOCH, Some(&previous));
        assert_eq!(done.code, Status::Critical);
    }

    #[test]
    fn metrics_have_every_family() {
        let text = metrics_text(&records());
        for line in [
            "egi_monitoring_probe_status{probe=\"execute\"} 2",
            "egi_monitoring_probe_success{probe=\"spawn\"} 1",
            "egi_monitoring_probe_duration_seconds{probe=\"spawn\"} 3.5",
            "egi_monitoring_probe_phase_duration_seconds{probe=\"spawn\",phase=\"start\"} 0.25",
            "egi_monitoring_probe_last_run_timestamp_seconds{probe=\"spawn\"} 1700000100.000",
            "egi_monitoring_probe_phase_success{probe=\"execute\",phase=\"start\"} 0",
            "egi_monitoring_probe_runs_total{probe=\"execute\",status=\"CRITICAL\"} 1",
            "# TYPE egi_monitoring_probe_runs_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert_eq!(label("a\"b\\c\n"), "a\\\"b\\\\c\\n");
    }
}
