//! The progress log of the current start: events so far and whether it ended, shared with
//! every subscriber of [`crate::Spawner::progress`].

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use tokio::sync::watch;

use super::events::PodEvent;
use crate::ProgressEvent;

/// Where progress creeps to while spawning (KubeSpawner's).
const CEILING: u8 = 90;
/// Events kept per start: a start that retries for a minute (a crash loop, repeated
/// scheduling failures) keeps its first ones and its end, not a growing log.
const MAX_EVENTS: usize = 200;

#[derive(Clone, Debug, Default)]
pub(crate) struct Log {
    /// One more for each start: a stream that sees a new start reads it from its beginning.
    generation: u64,
    pub(crate) events: Vec<ProgressEvent>,
    pub(crate) done: bool,
}

/// The log of one spawner.
#[derive(Debug)]
pub(crate) struct Progress {
    tx: watch::Sender<Log>,
}

impl Progress {
    pub(crate) fn new() -> Progress {
        Progress {
            tx: watch::channel(Log::default()).0,
        }
    }

    /// A new start: forget the previous one's events.
    pub(crate) fn reset(&self, message: String) {
        let generation = self.tx.borrow().generation + 1;
        self.tx.send_replace(Log {
            generation,
            events: vec![ProgressEvent::new(0, message)],
            done: false,
        });
    }

    fn last(&self) -> u8 {
        self.tx
            .borrow()
            .events
            .iter()
            .rev()
            .find_map(|e| e.progress)
            .unwrap_or(0)
    }

    /// A step of ours (claim ensured, pod created).
    pub(crate) fn step(&self, message: String) {
        self.push(ProgressEvent::new(creep(self.last()), message), false);
    }

    /// A Kubernetes event of the pod, formatted as KubeSpawner does: `time [Type] message`.
    pub(crate) fn event(&self, event: &PodEvent) {
        let time = event.time.as_deref().unwrap_or("");
        let message = format!("{time} [{}] {}", event.kind, event.message)
            .trim_start()
            .to_owned();
        self.push(ProgressEvent::new(creep(self.last()), message), false);
    }

    /// The end: JupyterHub's ready or failed event ([`ProgressEvent::ready`],
    /// [`ProgressEvent::failed`]).
    pub(crate) fn finish(&self, event: ProgressEvent) {
        self.push(event, true);
    }

    fn push(&self, event: ProgressEvent, done: bool) {
        self.tx.send_modify(|log| {
            if log.done || (!done && log.events.len() >= MAX_EVENTS) {
                return;
            }
            log.events.push(event);
            log.done = done;
        });
    }

    /// Events so far, then new ones until the start ends.
    pub(crate) fn stream(&self) -> BoxStream<'static, ProgressEvent> {
        let rx = self.tx.subscribe();
        let generation = rx.borrow().generation;
        let init = (rx, generation, 0usize, false);
        futures_util::stream::unfold(
            init,
            |(mut rx, mut generation, mut sent, ended)| async move {
                if ended {
                    return None;
                }
                loop {
                    let (next, done) = {
                        let log = rx.borrow_and_update();
                        if log.generation != generation {
                            generation = log.generation;
                            sent = 0;
                        }
                        (
                            log.events.get(sent).cloned(),
                            log.done && sent + 1 >= log.events.len(),
                        )
                    };
                    if let Some(event) = next {
                        return Some((event, (rx, generation, sent + 1, done)));
                    }
                    if rx.borrow().done || rx.changed().await.is_err() {
                        return None;
                    }
                }
            },
        )
        .boxed()
    }
}

/// One third of the way to the ceiling, at least one point, never past it.
fn creep(progress: u8) -> u8 {
    if progress >= CEILING {
        return CEILING;
    }
    progress + ((CEILING - progress) / 3).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creeps_towards_ninety_and_never_past() {
        let mut p = 0;
        let mut seen = vec![];
        for _ in 0..40 {
            p = creep(p);
            seen.push(p);
        }
        assert_eq!(&seen[..3], &[30, 50, 63]);
        assert!(seen.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*seen.last().unwrap(), 90);
    }

    #[tokio::test]
    async fn late_subscribers_get_the_whole_log_and_the_stream_ends() {
        let progress = Progress::new();
        progress.reset("Starting".to_owned());
        progress.step("claim ready".to_owned());
        let early = progress.stream();
        progress.finish(ProgressEvent::ready("/user/a/"));
        progress.step("after the end is ignored".to_owned());
        let late: Vec<_> = progress.stream().collect().await;
        let early: Vec<_> = early.collect().await;
        assert_eq!(late, early);
        assert_eq!(
            late.iter().map(|e| e.progress).collect::<Vec<_>>(),
            vec![Some(0), Some(30), Some(100)]
        );
        assert_eq!(late[2], ProgressEvent::ready("/user/a/"));
    }

    /// Point 12 of issue 13: a start that retries for long (a crash loop's events) keeps a
    /// bounded log, and its end still gets in.
    #[tokio::test]
    async fn a_long_start_keeps_a_bounded_log_and_its_end() {
        let progress = Progress::new();
        progress.reset("Starting".to_owned());
        for i in 0..5 * MAX_EVENTS {
            progress.step(format!("Back-off restarting failed container ({i})"));
        }
        progress.finish(ProgressEvent::failed("crash loop"));
        let log: Vec<_> = progress.stream().collect().await;
        assert_eq!(log.len(), MAX_EVENTS + 1);
        assert_eq!(log[0].message, "Starting");
        assert_eq!(
            log[MAX_EVENTS - 1].message,
            format!("Back-off restarting failed container ({})", MAX_EVENTS - 2)
        );
        assert_eq!(log[MAX_EVENTS], ProgressEvent::failed("crash loop"));
    }
}
