//! Nagios/ARGO plugin output: one line with performance data, and the evaluation of a status
//! service's `{code,msg,time}` JSON with a staleness check. No IO.

use std::fmt::Write as _;
use std::time::Duration;

use crate::outcome::{Outcome, Status, seconds};
use crate::status::StatusRecord;

/// One performance datum: `'label'=value[unit];warn;crit`.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfData {
    /// Its label.
    pub label: String,
    /// Its value.
    pub value: f64,
    /// Its unit of measure (`s`, `B`, `%` or empty).
    pub unit: &'static str,
    /// Warning threshold.
    pub warn: Option<f64>,
    /// Critical threshold.
    pub crit: Option<f64>,
}

impl PerfData {
    /// A value in seconds, without thresholds.
    pub fn seconds(label: impl Into<String>, value: Duration) -> Self {
        Self {
            label: label.into(),
            value: value.as_secs_f64(),
            unit: "s",
            warn: None,
            crit: None,
        }
    }

    fn render(&self, out: &mut String) {
        let label = self.label.replace(['\'', '=', '|'], "_");
        if label.contains(' ') {
            let _ = write!(out, "'{label}'");
        } else {
            out.push_str(&label);
        }
        let num = |v: f64| {
            let s = format!("{v:.3}");
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        };
        let _ = write!(out, "={}{}", num(self.value), self.unit);
        match (self.warn, self.crit) {
            (None, None) => {}
            (warn, crit) => {
                let _ = write!(
                    out,
                    ";{};{}",
                    warn.map(num).unwrap_or_default(),
                    crit.map(num).unwrap_or_default()
                );
            }
        }
    }
}

/// `SERVICE STATUS - message | perfdata`: one line, the message without line breaks or `|`
/// (which would start the performance data).
pub fn format_line(service: &str, status: Status, message: &str, perf: &[PerfData]) -> String {
    let message: String = message
        .chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            '|' => '/',
            c => c,
        })
        .collect();
    let mut line = format!("{service} {status} - {}", message.trim());
    if !perf.is_empty() {
        line.push_str(" |");
        for p in perf {
            line.push(' ');
            p.render(&mut line);
        }
    }
    line
}

/// How old a status service's result may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// Older than this: at least WARNING.
    pub warning: Duration,
    /// Older than this: CRITICAL.
    pub critical: Duration,
}

impl Default for Staleness {
    /// Two and three hours: the status service probes hourly.
    fn default() -> Self {
        Self {
            warning: Duration::from_secs(2 * 3600),
            critical: Duration::from_secs(3 * 3600),
        }
    }
}

/// What the check reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Its status (the exit code is [`Status::exit_code`]).
    pub status: Status,
    /// Its message.
    pub message: String,
    /// Its performance data.
    pub perf: Vec<PerfData>,
}

impl Check {
    /// A check without performance data.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            perf: Vec::new(),
        }
    }

    /// The plugin's output line.
    pub fn line(&self, service: &str) -> String {
        format_line(service, self.status, &self.message, &self.perf)
    }
}

/// How far in the future a status's `time` may be (clocks of two hosts disagree a little):
/// 5 minutes. Beyond it the time is wrong (milliseconds instead of seconds, a broken clock)
/// and the answer is UNKNOWN.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// Evaluates a status service's answer (`{code,msg,time}`, EGI's format) at `now` (epoch
/// seconds): its code and message, made WARNING or CRITICAL when it is older than
/// `staleness`. A body that is not such JSON, or whose `time` is not finite or more than
/// [`MAX_CLOCK_SKEW`] in the future, is UNKNOWN; a time too far in the past to be a
/// [`Duration`] is CRITICAL (stale).
pub fn evaluate_status(body: &[u8], now: f64, staleness: Staleness) -> Check {
    let record: StatusRecord = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            let start: String = String::from_utf8_lossy(body).chars().take(60).collect();
            return Check::new(
                Status::Unknown,
                format!("the status is not {{code,msg,time}} JSON ({e}): {start:?}"),
            );
        }
    };
    let difference = now - record.time;
    if !record.time.is_finite() || !difference.is_finite() {
        return Check::new(
            Status::Unknown,
            format!(
                "the status time {} is not a finite number of epoch seconds (now {now})",
                record.time
            ),
        );
    }
    if -difference > MAX_CLOCK_SKEW.as_secs_f64() {
        return Check::new(
            Status::Unknown,
            format!(
                "the status time {} is {} in the future (more than the allowed clock skew \
                 of {}; milliseconds instead of seconds?)",
                record.time,
                seconds(Duration::try_from_secs_f64(-difference).unwrap_or(Duration::MAX)),
                seconds(MAX_CLOCK_SKEW)
            ),
        );
    }
    // Within the skew, a future time counts as fresh; a past too far to be a Duration is
    // as stale as can be.
    let age = Duration::try_from_secs_f64(difference.max(0.0)).unwrap_or(Duration::MAX);
    let mut status = record.code;
    let mut message = record.msg.clone();
    let stale = if age > staleness.critical {
        Some(Status::Critical)
    } else if age > staleness.warning {
        Some(Status::Warning)
    } else {
        None
    };
    if let Some(stale_status) = stale {
        status = status.worst(stale_status);
        message = format!(
            "result is stale: {} old (limit {}); last result: {} {}",
            seconds(age),
            seconds(staleness.warning),
            record.code,
            record.msg
        );
    }
    let mut age_perf = PerfData::seconds("age", age);
    age_perf.warn = Some(staleness.warning.as_secs_f64());
    age_perf.crit = Some(staleness.critical.as_secs_f64());
    Check {
        status,
        message,
        perf: vec![age_perf],
    }
}

/// The check of an outcome run directly: its status and message, with the total and phase
/// durations as performance data.
pub fn from_outcome(outcome: &Outcome) -> Check {
    let mut perf = vec![PerfData::seconds("time", outcome.duration)];
    perf.extend(
        outcome
            .phases
            .iter()
            .map(|p| PerfData::seconds(p.name.clone(), p.duration)),
    );
    Check {
        status: outcome.status,
        message: outcome.message.clone(),
        perf,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(code: &str, time: f64) -> Vec<u8> {
        format!(r#"{{"code": "{code}", "msg": "Spawned server in 3 s", "time": {time:?}}}"#)
            .into_bytes()
    }

    #[test]
    fn lines_are_single_with_perfdata() {
        let perf = [
            PerfData::seconds("time", Duration::from_millis(3210)),
            PerfData::seconds("cell 1", Duration::from_millis(5)),
            PerfData {
                label: "age".into(),
                value: 12.0,
                unit: "s",
                warn: Some(7200.0),
                crit: None,
            },
        ];
        assert_eq!(
            format_line("NOTEBOOKS", Status::Ok, "a|b\nc ", &perf),
            "NOTEBOOKS OK - a/b c | time=3.21s 'cell 1'=0.005s age=12s;7200;"
        );
        assert_eq!(format_line("X", Status::Unknown, "m", &[]), "X UNKNOWN - m");
    }

    #[test]
    fn fresh_results_keep_their_code() {
        let now = 1_700_000_000.0;
        for (code, status) in [
            ("OK", Status::Ok),
            ("WARNING", Status::Warning),
            ("CRITICAL", Status::Critical),
            ("UNKNOWN", Status::Unknown),
        ] {
            let check = evaluate_status(&body(code, now - 60.0), now, Staleness::default());
            assert_eq!(check.status, status, "{code}");
            assert_eq!(check.message, "Spawned server in 3 s");
            assert_eq!(
                check.line("N"),
                format!("N {code} - Spawned server in 3 s | age=60s;7200;10800")
            );
        }
    }

    #[test]
    fn stale_results_are_warning_then_critical() {
        let now = 1_700_000_000.0;
        let s = Staleness::default();
        let warn = evaluate_status(&body("OK", now - 3.0 * 3600.0 + 60.0), now, s);
        assert_eq!(warn.status, Status::Warning);
        assert_eq!(
            warn.message,
            "result is stale: 10740 s old (limit 7200 s); last result: OK Spawned server in 3 s"
        );
        let crit = evaluate_status(&body("OK", now - 4.0 * 3600.0), now, s);
        assert_eq!(crit.status, Status::Critical);
        let still_critical = evaluate_status(&body("CRITICAL", now - 2.5 * 3600.0), now, s);
        assert_eq!(still_critical.status, Status::Critical);
        let future = evaluate_status(&body("OK", now + 30.0), now, s);
        assert_eq!(future.status, Status::Ok, "clock skew is not staleness");
    }

    #[test]
    fn absurd_past_times_are_critical_not_a_panic() {
        let now = 1_700_000_000.0;
        for time in [-1e300, -f64::MAX, f64::MIN] {
            let check = evaluate_status(&body("OK", time), now, Staleness::default());
            assert_eq!(check.status, Status::Critical, "{time}");
            assert!(
                check.message.starts_with("result is stale: "),
                "{}",
                check.message
            );
        }
        // Parsed from the body itself, as a status service could send it.
        let check = evaluate_status(
            br#"{"code": "OK", "msg": "x", "time": -1e300}"#,
            now,
            Staleness::default(),
        );
        assert_eq!(check.status, Status::Critical);
    }

    #[test]
    fn future_times_beyond_the_skew_are_unknown() {
        let now = 1_700_000_000.0;
        let s = Staleness::default();
        let skewed = evaluate_status(&body("OK", now + 299.0), now, s);
        assert_eq!(skewed.status, Status::Ok, "within the clock skew");
        let millis = evaluate_status(&body("OK", now * 1000.0), now, s);
        assert_eq!(millis.status, Status::Unknown, "{}", millis.message);
        assert!(
            millis
                .message
                .starts_with("the status time 1700000000000 is ")
                && millis.message.contains("in the future"),
            "{}",
            millis.message
        );
        let late = evaluate_status(&body("CRITICAL", now + 301.0), now, s);
        assert_eq!(late.status, Status::Unknown);
        assert_eq!(
            late.message,
            "the status time 1700000301 is 301 s in the future (more than the allowed clock \
             skew of 300 s; milliseconds instead of seconds?)"
        );
    }

    #[test]
    fn non_finite_times_are_unknown() {
        let s = Staleness::default();
        // JSON has no NaN or infinity, but huge times and a broken `now` overflow.
        for (time, now) in [
            (1e9, f64::NAN),
            (1e9, f64::INFINITY),
            (-f64::MAX, f64::MAX),
            (f64::MAX, -f64::MAX),
        ] {
            let check = evaluate_status(&body("OK", time), now, s);
            assert_eq!(check.status, Status::Unknown, "{time} at {now}");
            assert!(
                check.message.contains("is not a finite number"),
                "{}",
                check.message
            );
        }
    }

    #[test]
    fn bad_json_is_unknown() {
        for bad in [
            &b"<html>"[..],
            br#"{"code": "FINE", "msg": "x", "time": 1}"#,
            br#"{"code": "OK"}"#,
            b"",
        ] {
            let check = evaluate_status(bad, 0.0, Staleness::default());
            assert_eq!(
                check.status,
                Status::Unknown,
                "{}",
                String::from_utf8_lossy(bad)
            );
            assert!(
                check
                    .message
                    .starts_with("the status is not {code,msg,time} JSON"),
                "{}",
                check.message
            );
        }
    }

    #[test]
    fn outcomes_give_phase_perfdata() {
        let mut outcome = Outcome::new(Status::Critical, "spawn failed: x");
        outcome.duration = Duration::from_secs(2);
        outcome.phases.push(crate::outcome::Phase {
            name: "start".into(),
            duration: Duration::from_millis(100),
            ok: true,
        });
        assert_eq!(
            from_outcome(&outcome).line("NB"),
            "NB CRITICAL - spawn failed: x | time=2s start=0.1s"
        );
    }
}
