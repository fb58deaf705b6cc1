//! Bringing a server up (user, leftover, start, ready) and down, and the spawn probe.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::hub::{HubClient, StartState};
use crate::outcome::{Outcome, Status, Timeline, seconds};
use crate::probes::{Probe, ProbeFuture, SpawnSettings};

/// Where a run stands once [`bring_up`] returned.
#[derive(Debug, Default)]
pub(super) struct Up {
    /// Whether a start was requested (then the server must be stopped at the end).
    pub(super) start_requested: bool,
    /// The leftover server found and stopped first, described.
    pub(super) leftover: Option<String>,
}

/// Makes sure the user exists, stops a leftover server, starts the server and follows the
/// progress stream; returns the server's URL path.
pub(super) async fn bring_up(
    client: &HubClient,
    settings: &SpawnSettings,
    timeline: &mut Timeline,
    up: &mut Up,
) -> Result<String> {
    let t = settings.timeouts;
    let (user, server) = (settings.user.as_str(), settings.server.as_str());
    let existing = timeline
        .phase("user", t.request, async {
            match client.user(user).await? {
                Some(u) => Ok(u),
                None => client.create_user(user).await,
            }
        })
        .await?;
    if let Some(leftover) = existing.server(server) {
        let state = match (&leftover.pending, leftover.ready) {
            (Some(p), _) => format!("pending {p}"),
            (None, true) => "ready".to_owned(),
            (None, false) => "not ready".to_owned(),
        };
        tracing::info!(user, server, state, "stopping a leftover server");
        timeline
            .phase(
                "leftover",
                t.stop,
                client.stop_server_and_wait(user, server, settings.stop_poll),
            )
            .await?;
        let took = timeline.phase_duration("leftover").unwrap_or_default();
        let text = format!("stopped a leftover server ({state}) in {}", seconds(took));
        timeline.detail("leftover", text.clone());
        up.leftover = Some(text);
    }
    let spawn_started = tokio::time::Instant::now();
    up.start_requested = true;
    let state = match timeline
        .phase(
            "start",
            t.request.min(t.spawn),
            client.start_server(user, server),
        )
        .await
    {
        Ok(state) => state,
        // JupyterHub answers 500 when the spawn fails within its slow_spawn_timeout, with a
        // generic message; the progress stream of the failed spawn has the reason.
        Err(Error::Http {
            what,
            status,
            message,
        }) if status >= 500 => {
            let reason = timeline
                .phase("reason", t.request, failure_reason(client, user, server))
                .await;
            return Err(match reason {
                Ok(Some(reason)) => Error::SpawnFailed(format!(
                    "{reason} (the start request answered HTTP {status}: {message})"
                )),
                _ => Error::Http {
                    what,
                    status,
                    message,
                },
            });
        }
        Err(e) => return Err(e),
    };
    let remaining = t.spawn.saturating_sub(spawn_started.elapsed());
    let path = timeline
        .phase("ready", remaining, wait_ready(client, user, server, state))
        .await?;
    timeline.detail("server_url", path.clone());
    Ok(path)
}

/// Follows the progress stream to the ready event (its URL) or the failed event (its
/// message, as [`Error::SpawnFailed`]).
async fn wait_ready(
    client: &HubClient,
    user: &str,
    server: &str,
    state: StartState,
) -> Result<String> {
    if state == StartState::Started
        && let Some(url) = ready_url(client, user, server).await?
    {
        return Ok(url);
    }
    let mut events = client.progress(user, server).await?;
    let mut last = String::from("none");
    while let Some(event) = events.next_event().await? {
        tracing::debug!(progress = ?event.progress, message = %event.message, "spawn progress");
        if event.failed {
            return Err(Error::SpawnFailed(failed_reason(&event.message).to_owned()));
        }
        if event.ready {
            return match event.url {
                Some(url) => Ok(url),
                None => ready_url(client, user, server)
                    .await?
                    .ok_or_else(|| Error::ProgressEnded("ready, without a URL".into())),
            };
        }
        last = event.message.clone();
    }
    Err(Error::ProgressEnded(last))
}

/// The reason of a spawn that already failed, from the first event of its progress stream.
async fn failure_reason(client: &HubClient, user: &str, server: &str) -> Result<Option<String>> {
    let mut events = client.progress(user, server).await?;
    Ok(events
        .next_event()
        .await?
        .filter(|e| e.failed)
        .map(|e| failed_reason(&e.message).to_owned()))
}

/// The hub's failure message without its "Spawn failed: " prefix.
fn failed_reason(message: &str) -> &str {
    message.strip_prefix("Spawn failed: ").unwrap_or(message)
}

async fn ready_url(client: &HubClient, user: &str, server: &str) -> Result<Option<String>> {
    let found = client.user(user).await?;
    Ok(found
        .as_ref()
        .and_then(|u| u.server(server))
        .filter(|s| s.ready)
        .map(|s| s.url.clone()))
}

/// Stops the server and waits until the hub no longer lists it.
pub(super) async fn tear_down(
    client: &HubClient,
    settings: &SpawnSettings,
    timeline: &mut Timeline,
) -> Result<()> {
    timeline
        .phase(
            "stop",
            settings.timeouts.stop,
            client.stop_server_and_wait(&settings.user, &settings.server, settings.stop_poll),
        )
        .await
}

/// The outcome of a spawn-based run from the result of its work (after bring-up) and of the
/// final stop: the first error wins; a failed stop after a successful run is a WARNING (the
/// service works, but a server was left behind).
pub(super) fn conclude(
    timeline: Timeline,
    work: Result<(Status, String)>,
    stop: Option<Result<()>>,
) -> Outcome {
    match (work, stop) {
        (Err(e), stop) => {
            let mut timeline = timeline;
            if let Some(Err(stop_error)) = stop {
                timeline.detail("stop_error", stop_error.report());
            }
            timeline.fail(&e)
        }
        (Ok((status, message)), Some(Err(stop_error))) => {
            let status = status.worst(Status::Warning);
            let message = format!(
                "{message}; but stopping the server failed: {}",
                stop_error.report()
            );
            timeline.finish(status, message)
        }
        (Ok((status, message)), _) => timeline.finish(status, message),
    }
}

/// Spawns the probe user's server, follows the progress stream to readiness, stops it.
///
/// OK: "Spawned server in 3.21 s" (EGI's message), with a note when a leftover server was
/// stopped first. CRITICAL: the hub's reason from the failed event, an HTTP error with the
/// hub's message, or the phase that timed out.
#[derive(Debug, Clone)]
pub struct SpawnProbe {
    client: HubClient,
    settings: SpawnSettings,
}

impl SpawnProbe {
    /// A spawn probe.
    pub fn new(client: HubClient, settings: SpawnSettings) -> Self {
        Self { client, settings }
    }

    async fn run_once(&self) -> Outcome {
        let mut timeline = Timeline::start();
        let mut up = Up::default();
        let work = bring_up(&self.client, &self.settings, &mut timeline, &mut up)
            .await
            .map(|_| {
                let took = spawn_time(&timeline);
                let mut message = format!("Spawned server in {}", seconds(took));
                if let Some(leftover) = &up.leftover {
                    message.push_str(&format!(" ({leftover} first)"));
                }
                (Status::Ok, message)
            });
        let stop = if up.start_requested {
            Some(tear_down(&self.client, &self.settings, &mut timeline).await)
        } else {
            None
        };
        conclude(timeline, work, stop)
    }
}

/// Start request plus progress stream: the spawn as a user sees it.
pub(super) fn spawn_time(timeline: &Timeline) -> Duration {
    timeline.phase_duration("start").unwrap_or_default()
        + timeline.phase_duration("ready").unwrap_or_default()
}

impl Probe for SpawnProbe {
    fn name(&self) -> &str {
        "spawn"
    }

    fn run(&self) -> ProbeFuture<'_> {
        Box::pin(self.run_once())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_wins_and_a_failed_stop_is_reported() {
        let stop_error = || Error::Timeout {
            phase: "stop".into(),
            after: Duration::from_secs(2),
        };
        let ok = conclude(
            Timeline::start(),
            Ok((Status::Ok, "Spawned server in 3 s".into())),
            Some(Ok(())),
        );
        assert_eq!(
            (ok.status, ok.message.as_str()),
            (Status::Ok, "Spawned server in 3 s")
        );

        let left = conclude(
            Timeline::start(),
            Ok((Status::Ok, "Spawned".into())),
            Some(Err(stop_error())),
        );
        assert_eq!(left.status, Status::Warning);
        assert_eq!(
            left.message,
            "Spawned; but stopping the server failed: stop did not finish within 2 s"
        );

        let failed = conclude(
            Timeline::start(),
            Err(Error::SpawnFailed("No such file".into())),
            Some(Err(stop_error())),
        );
        assert_eq!(failed.status, Status::Critical);
        assert_eq!(failed.message, "spawn failed: No such file");
        assert_eq!(
            failed.details["stop_error"],
            "stop did not finish within 2 s"
        );

        let critical = conclude(
            Timeline::start(),
            Ok((Status::Critical, "raised".into())),
            None,
        );
        assert_eq!(critical.status, Status::Critical);
    }
}
