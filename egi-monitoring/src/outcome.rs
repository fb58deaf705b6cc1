//! What a probe run tells: a Nagios status, a message, timings per phase and details.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A Nagios/ARGO service status, ordered from best to worst for [`Status::worst`] (UNKNOWN
/// sorts between WARNING and CRITICAL: a failure to know is worse than a warning but not
/// proof of an outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// The service works.
    Ok,
    /// The service works, with a problem (slow, stale result...).
    Warning,
    /// The service does not work.
    Critical,
    /// The probe could not tell.
    Unknown,
}

impl Status {
    /// Every status, in exit-code order.
    pub const ALL: [Status; 4] = [Self::Ok, Self::Warning, Self::Critical, Self::Unknown];

    /// The Nagios plugin exit code: 0, 1, 2, 3.
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Critical => 2,
            Self::Unknown => 3,
        }
    }

    /// `OK`, `WARNING`, `CRITICAL` or `UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "OK",
            Self::Warning => "WARNING",
            Self::Critical => "CRITICAL",
            Self::Unknown => "UNKNOWN",
        }
    }

    /// Parses [`Status::as_str`] (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s.trim()))
    }

    fn severity(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Warning => 1,
            Self::Unknown => 2,
            Self::Critical => 3,
        }
    }

    /// The worse of two statuses.
    #[must_use]
    pub fn worst(self, other: Self) -> Self {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One timed phase of a probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// Its name, such as `start` or `execute`.
    pub name: String,
    /// How long it took (up to its timeout when it timed out).
    pub duration: Duration,
    /// Whether it succeeded.
    pub ok: bool,
}

/// The result of one probe run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The status.
    pub status: Status,
    /// One line for humans, such as "Spawned server in 3.21 s".
    pub message: String,
    /// The phases in the order they ran.
    pub phases: Vec<Phase>,
    /// Further facts: hub version, kernel output, the hub's failure reason...
    pub details: BTreeMap<String, String>,
    /// When the run started.
    pub started: SystemTime,
    /// How long the whole run took.
    pub duration: Duration,
}

impl Outcome {
    /// An outcome with no phases or details, started now.
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            phases: Vec::new(),
            details: BTreeMap::new(),
            started: SystemTime::now(),
            duration: Duration::ZERO,
        }
    }

    /// The outcome of an error: [`Error::status`] and [`Error::report`].
    pub fn from_error(error: &Error) -> Self {
        Self::new(error.status(), error.report())
    }

    /// Adds a detail.
    #[must_use]
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// The duration of the phase called `name`, if it ran.
    pub fn phase(&self, name: &str) -> Option<Duration> {
        self.phases
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.duration)
    }

    /// Seconds since the Unix epoch at which the run started.
    pub fn started_epoch(&self) -> f64 {
        epoch_seconds(self.started)
    }

    /// Seconds since the Unix epoch at which the run ended (EGI's `time`: when the result
    /// was known).
    pub fn ended_epoch(&self) -> f64 {
        epoch_seconds(self.started + self.duration)
    }
}

/// Seconds since the Unix epoch (0 before it).
pub fn epoch_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `1.5 s`, `0.25 s`, `12 s`: a duration in seconds with at most two decimals.
pub fn seconds(d: Duration) -> String {
    let s = format!("{:.2}", d.as_secs_f64());
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} s")
}

/// Runs the phases of one probe run, each under its own timeout, and records them.
///
/// ```
/// # async fn demo() {
/// use std::time::Duration;
/// use egi_monitoring::{Status, Timeline};
///
/// let mut timeline = Timeline::start();
/// let answer = timeline
///     .phase("compute", Duration::from_secs(1), async { Ok::<_, egi_monitoring::Error>(42) })
///     .await;
/// assert_eq!(answer.unwrap(), 42);
/// let outcome = timeline.finish(Status::Ok, "computed");
/// assert_eq!(outcome.phases[0].name, "compute");
/// # }
/// ```
#[derive(Debug)]
pub struct Timeline {
    started: SystemTime,
    clock: Instant,
    phases: Vec<Phase>,
    details: BTreeMap<String, String>,
}

impl Timeline {
    /// Starts the clock.
    pub fn start() -> Self {
        Self {
            started: SystemTime::now(),
            clock: Instant::now(),
            phases: Vec::new(),
            details: BTreeMap::new(),
        }
    }

    /// Runs `work` as the phase `name`, failing with [`Error::Timeout`] after `timeout`.
    pub async fn phase<T>(
        &mut self,
        name: &str,
        timeout: Duration,
        work: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let begin = Instant::now();
        let result = match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                phase: name.to_owned(),
                after: timeout,
            }),
        };
        self.phases.push(Phase {
            name: name.to_owned(),
            duration: begin.elapsed(),
            ok: result.is_ok(),
        });
        result
    }

    /// Marks the last phase called `name` as failed: it finished, but what it found is a
    /// failure (a cell that raised, a wrong output).
    pub fn mark_failed(&mut self, name: &str) {
        if let Some(phase) = self.phases.iter_mut().rev().find(|p| p.name == name) {
            phase.ok = false;
        }
    }

    /// Records a detail for the outcome.
    pub fn detail(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.details.insert(key.into(), value.into());
    }

    /// The time spent in the phase `name` so far.
    pub fn phase_duration(&self, name: &str) -> Option<Duration> {
        self.phases
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.duration)
    }

    /// Time since [`Timeline::start`].
    pub fn elapsed(&self) -> Duration {
        self.clock.elapsed()
    }

    /// The outcome, with the phases and details recorded so far.
    pub fn finish(self, status: Status, message: impl Into<String>) -> Outcome {
        Outcome {
            status,
            message: message.into(),
            duration: self.clock.elapsed(),
            phases: self.phases,
            details: self.details,
            started: self.started,
        }
    }

    /// The outcome of an error ([`Error::status`], [`Error::report`]).
    pub fn fail(self, error: &Error) -> Outcome {
        self.finish(error.status(), error.report())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_nagios_codes_and_order_by_severity() {
        let codes: Vec<u8> = Status::ALL.iter().map(|s| s.exit_code()).collect();
        assert_eq!(codes, [0, 1, 2, 3]);
        assert_eq!(Status::Ok.worst(Status::Warning), Status::Warning);
        assert_eq!(Status::Critical.worst(Status::Unknown), Status::Critical);
        assert_eq!(Status::Warning.worst(Status::Unknown), Status::Unknown);
        assert_eq!(Status::parse(" critical"), Some(Status::Critical));
        assert_eq!(Status::parse("FINE"), None);
        assert_eq!(
            serde_json::to_string(&Status::Warning).unwrap(),
            "\"WARNING\""
        );
    }

    #[test]
    fn seconds_are_short() {
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(seconds(Duration::from_secs(12)), "12 s");
        assert_eq!(seconds(Duration::from_millis(3214)), "3.21 s");
        assert_eq!(seconds(Duration::ZERO), "0 s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_phase_times_out_and_is_recorded() {
        let mut timeline = Timeline::start();
        let slow = timeline
            .phase("start", Duration::from_secs(5), async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .await;
        let err = slow.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert_eq!(err.to_string(), "start did not finish within 5 s");
        let outcome = timeline.fail(&err);
        assert_eq!(outcome.status, Status::Critical);
        assert_eq!(outcome.phases.len(), 1);
        assert!(!outcome.phases[0].ok);
        assert_eq!(outcome.phase("start"), Some(Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn a_phase_that_found_a_failure_is_marked_failed() {
        let mut timeline = Timeline::start();
        for name in ["cell 1", "cell 2"] {
            let ran = timeline
                .phase(name, Duration::from_secs(1), async { Ok(()) })
                .await;
            assert!(ran.is_ok());
        }
        timeline.mark_failed("cell 2");
        let outcome = timeline.finish(Status::Critical, "cell 2 raised");
        let oks: Vec<bool> = outcome.phases.iter().map(|p| p.ok).collect();
        assert_eq!(oks, [true, false]);
        assert!(outcome.ended_epoch() >= outcome.started_epoch());
    }
}
