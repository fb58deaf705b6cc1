//! The Python tool's status rules for pods that ran, kept exactly so that records stay
//! comparable; pods never seen Running are not reported (unlike the Python tool).
//!
//! # Pods never seen Running
//! The Python tool reports a pod with no Running sample in the window as `completed` with
//! EndTime = StartTime and no wall time once it is 96 s old. A pod still Pending (image
//! pull, no free node) is then reported as ended although it has not ended, and flips back
//! to `started` when it runs; and a pod that ran before the window began but is still seen
//! in it would have its earlier, correct record replaced (APEL keeps the last record per
//! VMUUID) by one with no wall time.
//!
//! Here such a pod gets no record ([`lifecycle`] returns `None`): APEL accounts virtual
//! machines that ran, and a pod that never ran used nothing worth a record. A pod that is
//! Pending now is reported by the first run that sees it Running, with its StartTime at
//! creation as usual (wall time counts from creation, as in the Python tool). A `started`
//! record with no wall time was the other choice; it was not taken because a pod deleted
//! while Pending would then stay `started` in APEL for ever (no later run sees it).

use crate::metrics::Timestamp;

/// A pod whose last Running sample is older than this is `completed`.
pub const COMPLETED_AFTER_SECS: i64 = 90;

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
/// in the window is `last_running`, evaluated at `now`: end = last Running sample, wall =
/// end - start; `completed` with that end if `now - end > 90 s`, else `started` with no
/// end. A pod never seen Running gets `None`: no record (see the module documentation).
///
/// Times are compared in whole seconds, as the Python tool truncates them.
pub fn lifecycle(start: i64, last_running: Option<Timestamp>, now: Timestamp) -> Option<Lifecycle> {
    let end = last_running?.as_secs();
    let wall = end.saturating_sub(start);
    let ended =
        now.as_millis().saturating_sub(end.saturating_mul(1000)) > COMPLETED_AFTER_SECS * 1000;
    Some(if ended {
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
    })
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
            Some(Lifecycle {
                status: Status::Started,
                end: None,
                wall: 3600
            })
        );
        let l = lifecycle(START, last, at(START + 3600 + 91));
        assert_eq!(
            l,
            Some(Lifecycle {
                status: Status::Completed,
                end: Some(START + 3600),
                wall: 3600
            })
        );
    }

    #[test]
    fn fractional_times_compare_like_the_python_tool() {
        // 90.5 s after the truncated end: more than 90 s, so completed.
        let l = lifecycle(
            START,
            Some(Timestamp::from_millis((START + 10) * 1000 + 700)),
            Timestamp::from_millis((START + 100) * 1000 + 500),
        )
        .unwrap();
        assert_eq!(l.status, Status::Completed);
        assert_eq!(l.end, Some(START + 10));
        assert_eq!(l.wall, 10);
    }

    #[test]
    fn absurd_times_do_not_overflow() {
        let l = lifecycle(i64::MIN, Some(Timestamp::from_millis(i64::MAX)), at(START)).unwrap();
        assert_eq!(l.wall, i64::MAX);
    }

    #[test]
    fn a_pod_never_seen_running_is_not_reported_however_old() {
        // Still Pending a minute, a day after creation: not `completed` (it has not ended),
        // not `started` (if it is deleted before running, no run would ever close it).
        for age in [0, 95, 96, 97, 86_400] {
            assert_eq!(lifecycle(START, None, at(START + age)), None, "age {age}");
        }
    }
}
