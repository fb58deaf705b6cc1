//! Is the hub there, and does it accept the token?

use crate::hub::HubClient;
use crate::outcome::{Outcome, Status, Timeline};
use crate::probes::{Probe, ProbeFuture, Timeouts};

/// The scopes the spawn-based probes need (what EGI's hub configuration grants).
pub const REQUIRED_SCOPES: [&str; 4] = [
    "admin:users",
    "admin:servers",
    "access:servers",
    "list:users",
];

/// Asks the hub its version through the proxy, then who owns the token.
///
/// OK: "JupyterHub 6.1.1 answered in 12 ms". WARNING: the token lacks scopes the other
/// probes need. CRITICAL: the hub does not answer, answers with an error, or rejects the
/// token.
#[derive(Debug, Clone)]
pub struct HubReachable {
    client: HubClient,
    timeouts: Timeouts,
}

impl HubReachable {
    /// A reachability probe with default timeouts.
    pub fn new(client: HubClient) -> Self {
        Self {
            client,
            timeouts: Timeouts::default(),
        }
    }

    /// Sets the timeouts (only `request` is used).
    #[must_use]
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    async fn run_once(&self) -> Outcome {
        let mut timeline = Timeline::start();
        let timeout = self.timeouts.request;
        let version = match timeline
            .phase("version", timeout, self.client.version())
            .await
        {
            Ok(v) => v,
            Err(e) => return timeline.fail(&e),
        };
        timeline.detail("version", version.clone());
        let answered = timeline.phase_duration("version").unwrap_or_default();
        let owner = match timeline.phase("token", timeout, self.client.whoami()).await {
            Ok(owner) => owner,
            Err(e) => return timeline.fail(&e),
        };
        timeline.detail("token_owner", format!("{} {}", owner.kind, owner.name));
        let missing = missing_scopes(&owner.scopes);
        let message = format!(
            "JupyterHub {version} answered in {} ms",
            answered.as_millis()
        );
        if missing.is_empty() {
            timeline.finish(Status::Ok, message)
        } else {
            let message = format!("{message}, but the token lacks {}", missing.join(", "));
            timeline.finish(Status::Warning, message)
        }
    }
}

/// The [`REQUIRED_SCOPES`] not in `scopes` (a scope restricted by a filter, such as
/// `admin:servers!user=monitor`, counts).
pub fn missing_scopes(scopes: &[String]) -> Vec<&'static str> {
    REQUIRED_SCOPES
        .into_iter()
        .filter(|needed| {
            !scopes
                .iter()
                .any(|s| s == needed || s.split('!').next() == Some(needed))
        })
        .collect()
}

impl Probe for HubReachable {
    fn name(&self) -> &str {
        "hub"
    }

    fn run(&self) -> ProbeFuture<'_> {
        Box::pin(self.run_once())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_scopes_are_listed() {
        let have = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(
            missing_scopes(&have(&[
                "admin:users",
                "admin:servers",
                "access:servers",
                "list:users",
                "read:metrics"
            ]))
            .is_empty()
        );
        assert_eq!(
            missing_scopes(&have(&[
                "admin:users",
                "admin:servers!user=monitor",
                "read:metrics"
            ])),
            ["access:servers", "list:users"]
        );
    }
}
