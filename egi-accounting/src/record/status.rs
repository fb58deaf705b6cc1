//! The Python tool's status rules, kept exactly so that records stay comparable.

use crate::metrics::Timestamp;

/// A pod whose last Running sample is older than this is `completed`.
pub const COMPLETED_AFTER_SECS: i64 = 90;

/// A pod never seen Running and created longer ago than this is `completed`.
pub const NEVER_RUNNING_GRACE_SECS: i64 = 96;

/// APEL `Status` values this crate emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Status {
    /// Still running (or just launched).
    Started,
    /// Gone.
    Completed,
}

impl Status {
    /// The APEL text.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Started => "started",
            Status::Completed => "completed",
        }
    }
}

/// Status, end time and wall duration of one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// `started` or `completed`.
    pub status: Status,
    /// Epoch seconds; only for completed pods.
    pub end: Option<i64>,
    /// Seconds from creation to the last Running sample (0 if never seen Running).
    pub wall: i64,
}

/// Applies the rules to a pod created at `start` (epoch seconds) whose last Running sample
/// is `last_running`, evaluated at `now`:
///
/// - seen Running: end = last Running sample, wall = end - start; `completed` with that end
///   if `now - end > 90 s`, else `started` with no end;
/// - never seen Running: wall = 0; `started` if `now - start < 96 s`, else `completed` with
///   end = start.
///
/// Times are compared in whole seconds, as the Python tool truncates them.
pub fn lifecycle(start: i64, last_running: Option<Timestamp>, now: Timestamp) -> Lifecycle {
    let now_ms = now.as_millis();
    match last_running {
        Some(last) => {
            let end = last.as_secs();
            let wall = end.saturating_sub(start);
            if now_ms.saturating_sub(end.saturating_mul(1000)) > COMPLETED_AFTER_SECS * 1000 {
                Lifecycle {
                    status: Status::Completed,
                    end: Some(end),
                    wall,
                }
            } else {
                Lifecycle {
                    status: Status::Started,
                    end: None,
                    wall,
                }
            }
        }
        None if now_ms.saturating_sub(start.saturating_mul(1000))
            < NEVER_RUNNING_GRACE_SECS * 1000 =>
        {
            Lifecycle {
                status: Status::Started,
                end: None,
                wall: 0,
            }
        }
        None => Lifecycle {
            status: Status::Completed,
            end: Some(start),
            wall: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_700_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_millis(secs * 1000)
    }

    #[test]
    fn running_pod_is_started_until_90_seconds_after_its_last_sample() {
        let last = Some(at(START + 3600));
        let l = lifecycle(START, last, at(START + 3600 + 90));
        assert_eq!(
            l,
            Lifecycle {
                status: Status::Started,
                end: None,
                wall: 3600
            }
        );
        let l = lifecycle(START, last, at(START + 3600 + 91));
        assert_eq!(
            l,
            Lifecycle {
                status: Status::Completed,
                end: Some(START + 3600),
                wall: 3600
            }
        );
    }

    #[test]
    fn fractional_times_compare_like_the_python_tool() {
        // 90.5 s after the truncated end: more than 90 s, so completed.
        let l = lifecycle(
            START,
            Some(Timestamp::from_millis((START + 10) * 1000 + 700)),
            Timestamp::from_millis((START + 100) * 1000 + 500),
        );
        assert_eq!(l.status, Status::Completed);
        assert_eq!(l.end, Some(START + 10));
        assert_eq!(l.wall, 10);
    }

    #[test]
    fn absurd_times_do_not_overflow() {
        let l = lifecycle(i64::MAX, None, at(START));
        assert_eq!(l.status, Status::Started);
        let l = lifecycle(i64::MIN, Some(Timestamp::from_millis(i64::MAX)), at(START));
        assert_eq!(l.wall, i64::MAX);
    }

    #[test]
    fn never_running_pod_gets_96_seconds_of_grace() {
        let l = lifecycle(START, None, at(START + 95));
        assert_eq!(
            l,
            Lifecycle {
                status: Status::Started,
                end: None,
                wall: 0
            }
        );
        let l = lifecycle(START, None, at(START + 96));
        assert_eq!(
            l,
            Lifecycle {
                status: Status::Completed,
                end: Some(START),
                wall: 0
            }
        );
    }
}
