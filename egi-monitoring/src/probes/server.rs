//! Bringing a server up (user, leftover, start, ready) and down, and the spawn probe.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::hub::{HubClient, Server, StartState, User};
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
                None => match client.create_user(user).await {
                    // Another probe run created it meanwhile.
                    Err(Error::Http { status: 409, .. }) => {
                        client.user(user).await?.ok_or_else(|| Error::Malformed {
                            what: format!("POST /hub/api/users/{user}"),
                            message: "409 (exists), yet the user is not found".into(),
                        })
                    }
                    created => created,
                },
            }
        })
        .await?;
    let marker = RunMarker::new(t);
    let spawn_started = tokio::time::Instant::now();
    let mut existing = existing;
    let mut attempts = 0;
    let state = loop {
        attempts += 1;
        if let Some(other) = existing.server(server).and_then(busy_until)
            && attempts <= 3
        {
            // Another probe run (same user, another monitor) is using the server: wait for it
            // to stop it, rather than stopping it under its feet.
            let wait = Duration::from_secs_f64((other - epoch_now()).max(0.0)).min(t.spawn);
            tracing::info!(user, server, "the server is another probe run's: waiting");
            existing = timeline
                .phase(
                    "busy",
                    wait,
                    wait_gone(client, user, server, settings.stop_poll),
                )
                .await
                .or_else(|e| if e.is_timeout() { Ok(None) } else { Err(e) })?
                .unwrap_or(existing);
            let took = timeline.phase_duration("busy").unwrap_or_default();
            timeline.detail(
                "busy",
                format!("waited {} for another probe run's server", seconds(took)),
            );
        }
        if let Some(leftover) = existing.server(server) {
            stop_leftover(client, settings, timeline, up, leftover).await?;
        }
        up.start_requested = true;
        let started = timeline
            .phase(
                "start",
                client.start_timeout().max(t.request).min(t.spawn),
                client.start_server_with(user, server, &marker.options()),
            )
            .await;
        match started {
            // Someone else's start came first (400 "is already running", or a 202 for
            // its pending spawn): wait for that run, then try again.
            Err(Error::Http { status: 400, .. }) if attempts < 3 => up.start_requested = false,
            Ok(state) if attempts < 3 => {
                let now = client.user(user).await?;
                match now.as_ref().and_then(|u| u.server(server)) {
                    Some(s) if !marker.is_ours(s) && busy_until(s).is_some() => {
                        up.start_requested = false;
                    }
                    _ => break Ok(state),
                }
            }
            other => break other,
        }
        existing = client.user(user).await?.unwrap_or(existing);
    };
    let state = match state {
        Ok(state) => state,
        // JupyterHub answers 500 when the spawn fails within its slow_spawn_timeout, with a
        // generic message (and 6.1 also when the spawn is merely slow to fail); the progress
        // stream of the spawn has the reason, once the hub has it.
        Err(Error::Http {
            what,
            status,
            message,
        }) if status >= 500 => {
            let remaining = t.spawn.saturating_sub(spawn_started.elapsed());
            let reason = timeline
                .phase(
                    "reason",
                    remaining.max(t.request),
                    failure_reason(client, user, server),
                )
                .await;
            return Err(match reason {
                Ok(Some(reason)) => Error::SpawnFailed(format!(
                    "{reason} (the start request answered HTTP {status}: {message})"
                )),
                _ => Error::Http {
                    what,
                    status,
                    message: format!(
                        "{message}; the hub gave no reason through its API (no failed event \
                         on the spawn's progress stream): see the hub's log"
                    ),
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

/// The reason of a spawn whose start request failed: its progress stream, followed to the
/// failed event (JupyterHub 6.1 may answer 500 while the spawn is still failing). `None`
/// when the stream ends (or the spawn turns ready) without one.
async fn failure_reason(client: &HubClient, user: &str, server: &str) -> Result<Option<String>> {
    let mut events = client.progress(user, server).await?;
    while let Some(event) = events.next_event().await? {
        if event.failed {
            return Ok(Some(failed_reason(&event.message).to_owned()));
        }
        if event.ready {
            return Ok(None);
        }
    }
    Ok(None)
}

/// The key of the probe's run marker in the server's `user_options`.
const MARKER_KEY: &str = "egi_monitoring_run";

/// What a probe run puts in the `user_options` of the server it starts, so that another
/// run with the same user (a second monitor, a manual `--once`) waits for it instead of
/// stopping it as a leftover: a random id and until when the run may use the server.
#[derive(Debug)]
struct RunMarker {
    id: String,
    busy_until: f64,
}

impl RunMarker {
    fn new(t: crate::probes::Timeouts) -> Self {
        let busy = t.spawn + t.kernel + t.execute + t.stop + t.request * 3;
        Self {
            id: format!("{:016x}", fastrand::u64(..)),
            busy_until: epoch_now() + busy.as_secs_f64(),
        }
    }

    fn options(&self) -> serde_json::Value {
        serde_json::json!({ MARKER_KEY: { "id": self.id, "busy_until": self.busy_until } })
    }

    fn is_ours(&self, server: &Server) -> bool {
        server.user_options[MARKER_KEY]["id"].as_str() == Some(self.id.as_str())
    }
}

/// Until when another probe run uses `server`, if its marker says it still does.
fn busy_until(server: &Server) -> Option<f64> {
    server.user_options[MARKER_KEY]["busy_until"]
        .as_f64()
        .filter(|until| *until > epoch_now())
}

fn epoch_now() -> f64 {
    crate::outcome::epoch_seconds(std::time::SystemTime::now())
}

/// Polls until `server` is gone; returns the user then.
async fn wait_gone(
    client: &HubClient,
    user: &str,
    server: &str,
    poll: Duration,
) -> Result<Option<User>> {
    loop {
        let found = client.user(user).await?;
        if found.as_ref().and_then(|u| u.server(server)).is_none() {
            return Ok(found);
        }
        tokio::time::sleep(poll.max(Duration::from_millis(250))).await;
    }
}

/// Stops a leftover server and records it.
async fn stop_leftover(
    client: &HubClient,
    settings: &SpawnSettings,
    timeline: &mut Timeline,
    up: &mut Up,
    leftover: &Server,
) -> Result<()> {
    let t = settings.timeouts;
    let (user, server) = (settings.user.as_str(), settings.server.as_str());
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
    Ok(())
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
