//! The wait of a start: the pod's view in the namespace cache, its events and its claim's as
//! progress, and the failure rules: fail at once on a reason the cluster will not take back,
//! wait out (for a grace) one it does take back, time out otherwise.

use tokio::sync::watch;
use tokio::time::Instant;

use super::cache::Slot;
use super::events::{EventSource, Listener};
use super::spawner::KubeSpawner;
use super::view::Readiness;
use crate::{Error, Result};

impl KubeSpawner {
    /// Waits for the pod `uid` to be ready, turning its events (and its claim's) into
    /// progress, and fails as soon as the cluster reports a reason it cannot start, or when
    /// a reason real clusters take back (see [`Readiness::Held`]) persists for
    /// [`RuntimeOptions::transient_grace`](super::RuntimeOptions::transient_grace).
    pub(crate) async fn wait_ready(
        &self,
        rx: &mut watch::Receiver<Slot>,
        listeners: &mut Listeners,
        uid: &str,
        deadline: Instant,
    ) -> Result<String> {
        let shared = &self.cluster.shared;
        let grace = shared.options.transient_grace;
        let mut seen = false;
        let mut events_open = true;
        // The claim's last binding failure (provisioners retry, so it may be transient).
        let mut claim_problem: Option<String> = None;
        let mut held_since: Option<Instant> = None;
        loop {
            let slot = rx.borrow_and_update().clone();
            let mut held = None;
            match slot {
                Some(view) if view.uid == uid => {
                    seen = true;
                    match view.readiness(shared.options.fail_unschedulable) {
                        Readiness::Ready(ip) => return Ok(ip),
                        Readiness::Failed(reason, message) => {
                            return Err(Error::SpawnFailed { reason, message });
                        }
                        Readiness::Held(reason, message) if listeners.fresh_claim => {
                            held = Some((reason, message));
                        }
                        Readiness::Held(reason, message) => {
                            return Err(Error::SpawnFailed { reason, message });
                        }
                        Readiness::Starting => {}
                    }
                    if view.waits_for_claim()
                        && let Some(problem) = &claim_problem
                    {
                        held = Some((crate::FailureReason::Unschedulable, problem.clone()));
                    }
                }
                // Gone, or replaced by another pod of that name, after we saw ours.
                _ if seen => {
                    return Err(Error::SpawnFailed {
                        reason: crate::FailureReason::Deleted,
                        message: "the pod disappeared while starting".to_owned(),
                    });
                }
                _ => {}
            }
            let give_up_at = match &held {
                Some((reason, message)) => {
                    let since = *held_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= grace {
                        return Err(Error::SpawnFailed {
                            reason: *reason,
                            message: message.clone(),
                        });
                    }
                    Some(since + grace)
                }
                None => {
                    held_since = None;
                    None
                }
            };
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        return Err(Error::CacheUnavailable { namespace: self.lock().namespace.clone().unwrap_or_default() });
                    }
                }
                event = listeners.events.rx.recv(), if events_open => match event {
                    Some(event) if event.source == EventSource::Claim => {
                        self.progress.event(&event);
                        claim_problem = (event.kind == "Warning").then(|| {
                            let claim = listeners.claim.as_deref().unwrap_or("");
                            format!("volume {claim}: {}: {}", event.reason, event.message)
                        });
                    }
                    Some(event) if event.uid.as_deref().is_none_or(|u| u == uid) => self.progress.event(&event),
                    Some(_) => {}
                    None => events_open = false,
                },
                () = sleep_until_some(give_up_at) => {}
                () = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Timeout { what: "the server to be ready", after: shared.options.start_timeout });
                }
            }
        }
    }
}

/// The event subscription of a start: its pod's events, and its claim's when it has one.
pub(crate) struct Listeners {
    /// One channel for both.
    pub(crate) events: Listener,
    /// The claim whose events come too (its warnings fail a start that waits for it).
    pub(crate) claim: Option<String>,
    /// Whether this start wrote the claim: "claim not found" is then the scheduler lagging
    /// behind (held); for a claim known from before, it was deleted (fails at once).
    pub(crate) fresh_claim: bool,
}

/// Sleeps until `at`, or forever without it.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
