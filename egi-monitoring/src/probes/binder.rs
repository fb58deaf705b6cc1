//! BinderHub's `/health`.

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::hub::{USER_AGENT, base_url, body_message};
use crate::limits::{BodyError, MAX_BODY_BYTES, read_body};
use crate::outcome::{Outcome, Status, Timeline};
use crate::probes::{Probe, ProbeFuture};

/// `GET {url}/health` of a BinderHub: OK if it says `"ok": true`, else CRITICAL naming the
/// failed checks (EGI's BinderHub mode).
#[derive(Debug, Clone)]
pub struct BinderHealth {
    http: reqwest::Client,
    url: url::Url,
    timeout: Duration,
}

impl BinderHealth {
    /// A probe of the BinderHub at `url` (its base URL), with a request timeout.
    pub fn new(url: &str, timeout: Duration) -> Result<Self> {
        let mut url = base_url(url)?;
        url.set_path(&format!("{}health", url.path()));
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|source| Error::Connect {
                service: "BinderHub (building the HTTP client)",
                source,
            })?;
        Ok(Self { http, url, timeout })
    }

    async fn run_once(&self) -> Outcome {
        let mut timeline = Timeline::start();
        let got = timeline
            .phase("health", self.timeout, async {
                let response = self.http.get(self.url.clone()).send().await;
                let response = response.map_err(|source| Error::Connect {
                    service: "BinderHub",
                    source: source.without_url(),
                })?;
                let status = response.status().as_u16();
                let body = read_body(response, MAX_BODY_BYTES, "GET /health")
                    .await
                    .map_err(|e| match e {
                        BodyError::TooLarge(e) => e,
                        BodyError::Transport(source) => Error::Connect {
                            service: "BinderHub",
                            source: source.without_url(),
                        },
                    })?;
                Ok((status, body))
            })
            .await;
        match got {
            Ok((status, body)) => {
                let (status, message) = binder_outcome(status, &body);
                timeline.finish(status, message)
            }
            Err(e) => timeline.fail(&e),
        }
    }
}

impl Probe for BinderHealth {
    fn name(&self) -> &str {
        "binderhub"
    }

    fn run(&self) -> ProbeFuture<'_> {
        Box::pin(self.run_once())
    }
}

#[derive(Debug, Deserialize)]
struct Health {
    ok: bool,
    #[serde(default)]
    checks: Vec<Check>,
}

#[derive(Debug, Deserialize)]
struct Check {
    #[serde(default)]
    service: String,
    ok: bool,
}

/// The status and message of a `/health` answer (BinderHub answers 503 with the same JSON
/// when a check fails).
pub fn binder_outcome(http_status: u16, body: &[u8]) -> (Status, String) {
    match serde_json::from_slice::<Health>(body) {
        Ok(health) if health.ok => (Status::Ok, "BinderHub is healthy".into()),
        Ok(health) => {
            let failed: Vec<&str> = health
                .checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.service.as_str())
                .collect();
            let failed = if failed.is_empty() {
                "unnamed".to_owned()
            } else {
                failed.join(", ")
            };
            (
                Status::Critical,
                format!("BinderHub checks failed: {failed}"),
            )
        }
        Err(_) => (
            Status::Critical,
            format!(
                "BinderHub health: HTTP {http_status}: {}",
                body_message(http_status, body)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_unhealthy_and_garbage() {
        let ok = br#"{"ok": true, "checks": [{"service": "Hub", "ok": true}]}"#;
        assert_eq!(
            binder_outcome(200, ok),
            (Status::Ok, "BinderHub is healthy".into())
        );
        let bad = br#"{"ok": false, "checks": [{"service": "Hub", "ok": true}, {"service": "Docker registry", "ok": false}, {"service": "Pod quota", "ok": false}]}"#;
        assert_eq!(
            binder_outcome(503, bad),
            (
                Status::Critical,
                "BinderHub checks failed: Docker registry, Pod quota".into()
            )
        );
        assert_eq!(
            binder_outcome(502, b"<html>bad gateway</html>"),
            (
                Status::Critical,
                "BinderHub health: HTTP 502: Bad Gateway".into()
            )
        );
    }
}
