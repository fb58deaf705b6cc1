//! Scriptable faults, from Rust ([`Faults`]) or over HTTP (`POST /simulator/faults` with a
//! [`FaultRequest`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::resources::{self, PODS, PVCS, RESOURCES};
use super::status::ApiError;
use super::{Shared, lock, pod_end};

#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub(crate) image_pull: Vec<String>,
    pub(crate) crash_loop: Vec<String>,
    /// (namespace, pod name prefix).
    pub(crate) unschedulable: Vec<(String, String)>,
    /// (namespace, resource plural).
    pub(crate) quota: Vec<(String, String)>,
    pub(crate) latency: Duration,
    pub(crate) verb_latency: HashMap<String, Duration>,
    /// Until when the API server is down (a restart): requests answer 503.
    pub(crate) down_until: Option<Instant>,
    /// When each claim (`namespace/name`) was created, for the scheduler's lag.
    pub(crate) claims_created: HashMap<String, Instant>,
}

impl FaultState {
    pub(crate) fn pull_fails(&self, image: &str) -> bool {
        self.image_pull.iter().any(|p| image.contains(p.as_str()))
    }

    pub(crate) fn crashes(&self, image: &str) -> bool {
        self.crash_loop.iter().any(|p| image.contains(p.as_str()))
    }

    pub(crate) fn unschedulable(&self, ns: &str, name: &str) -> bool {
        self.unschedulable
            .iter()
            .any(|(n, p)| n == ns && name.starts_with(p.as_str()))
    }

    /// Whether the API server is down (restarting) now.
    pub(crate) fn api_down(&mut self) -> bool {
        match self.down_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                self.down_until = None;
                false
            }
            None => false,
        }
    }

    /// Notes a new claim for the scheduler's lag.
    pub(crate) fn claim_created(&mut self, claim: &Value) {
        let key = format!(
            "{}/{}",
            claim["metadata"]["namespace"].as_str().unwrap_or(""),
            claim["metadata"]["name"].as_str().unwrap_or("")
        );
        // Bounded: entries older than a minute say nothing about the lag any more.
        if self.claims_created.len() > 4096 {
            self.claims_created
                .retain(|_, at| at.elapsed() < Duration::from_secs(60));
        }
        self.claims_created.insert(key, Instant::now());
    }

    /// Whether the scheduler has not seen claim `ns/name` yet.
    pub(crate) fn claim_unseen(&self, ns: &str, name: &str, lag: Duration) -> bool {
        !lag.is_zero()
            && self
                .claims_created
                .get(&format!("{ns}/{name}"))
                .is_some_and(|at| at.elapsed() < lag)
    }

    pub(crate) fn latency(&self, verb: &str) -> Duration {
        self.latency + self.verb_latency.get(verb).copied().unwrap_or_default()
    }
}

impl Shared {
    /// The quota message if creates of `res` in `ns` are refused.
    pub(crate) fn quota_fault(
        &self,
        ns: &str,
        res: usize,
        _name: &str,
        obj: &Value,
    ) -> Option<String> {
        let plural = RESOURCES[res].plural;
        if !self
            .faults()
            .quota
            .iter()
            .any(|(n, r)| n == ns && r == plural)
        {
            return None;
        }
        Some(match res {
            PVCS => {
                let asked = obj["spec"]["resources"]["requests"]["storage"].as_str().unwrap_or("0");
                format!("exceeded quota: storage, requested: requests.storage={asked}, used: requests.storage=100Gi, limited: requests.storage=100Gi")
            }
            PODS => "exceeded quota: compute-resources, requested: pods=1, used: pods=100, limited: pods=100".to_owned(),
            _ => format!("exceeded quota: object-counts, requested: count/{plural}=1, used: count/{plural}=100, limited: count/{plural}=100"),
        })
    }
}

/// Injects faults into a running simulator (from [`super::KubeSim::faults`]).
#[derive(Debug, Clone)]
pub struct Faults {
    shared: Arc<Shared>,
}

impl Faults {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Pulls of images containing `pattern` fail (ErrImagePull, then ImagePullBackOff), for
    /// pods reaching the pull from now on, until cleared.
    pub fn fail_image_pull(&self, pattern: &str) {
        self.shared.faults().image_pull.push(pattern.to_owned());
    }

    /// Pulls succeed again (pods in back-off pull at their next retry).
    pub fn clear_image_pull(&self) {
        self.shared.faults().image_pull.clear();
    }

    /// Containers of images containing `pattern` exit with code 1 right after starting,
    /// over and over (CrashLoopBackOff).
    pub fn crash_loop(&self, image_pattern: &str) {
        self.shared
            .faults()
            .crash_loop
            .push(image_pattern.to_owned());
    }

    /// Containers stop crashing (at their next restart).
    pub fn clear_crash_loop(&self) {
        self.shared.faults().crash_loop.clear();
    }

    /// Pods in `ns` whose name starts with `name_prefix` (`""`: all) cannot be scheduled
    /// (PodScheduled False, Unschedulable, FailedScheduling events) until cleared.
    pub fn unschedulable(&self, ns: &str, name_prefix: &str) {
        self.shared
            .faults()
            .unschedulable
            .push((ns.to_owned(), name_prefix.to_owned()));
    }

    /// Pods can be scheduled again (at their next retry).
    pub fn clear_unschedulable(&self) {
        self.shared.faults().unschedulable.clear();
    }

    /// Creates of `resource` (`pods`, `persistentvolumeclaims`, ...) in `ns` answer 403
    /// Forbidden "exceeded quota".
    pub fn quota_exceeded(&self, ns: &str, resource: &str) {
        let plural = resources::lookup(resource).map_or(resource, |r| RESOURCES[r].plural);
        self.shared
            .faults()
            .quota
            .push((ns.to_owned(), plural.to_owned()));
    }

    /// Lifts the quota on `resource` in `ns`.
    pub fn clear_quota(&self, ns: &str, resource: &str) {
        let plural = resources::lookup(resource).map_or(resource, |r| RESOURCES[r].plural);
        self.shared
            .faults()
            .quota
            .retain(|(n, r)| !(n == ns && r == plural));
    }

    /// Evicts a pod as the kubelet does under memory pressure: phase Failed, reason
    /// Evicted, containers terminated; the pod object stays.
    pub fn evict(&self, ns: &str, pod: &str) -> Result<(), ApiError> {
        pod_end::evict(&self.shared, ns, pod)
    }

    /// The pod's containers exit with `code`: phase Succeeded (0) or Failed, containers
    /// terminated with that exit code.
    pub fn exit_container(&self, ns: &str, pod: &str, code: i32) -> Result<(), ApiError> {
        pod_end::exit(&self.shared, ns, pod, code)
    }

    /// Ends every open watch abruptly (connection closed without a final event).
    pub fn drop_watches(&self) {
        self.shared.drops.send_modify(|n| *n += 1);
    }

    /// Restarts the API server: every open watch ends, the change history is lost (a watch
    /// resumed from any earlier version gets 410 Expired, as from a new server's empty watch
    /// cache), and for `down` every request answers 503 ServiceUnavailable. Controllers and
    /// the kubelet go on meanwhile (they run on their own), so pods can turn Running while
    /// clients cannot see it.
    pub fn restart_api(&self, down: Duration) {
        self.shared.faults().down_until = Some(Instant::now() + down);
        self.shared.lock().restart();
        self.drop_watches();
    }

    /// Forgets the change history: resuming a watch from any earlier version gets 410.
    pub fn compact_history(&self) {
        self.shared.lock().compact();
    }

    /// Adds `latency` to every API request.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.faults().latency = latency;
    }

    /// Adds `latency` to requests with this verb (`get`, `list`, `watch`, `create`, ...), on
    /// top of [`Faults::set_latency`].
    pub fn set_verb_latency(&self, verb: &str, latency: Duration) {
        self.shared
            .faults()
            .verb_latency
            .insert(verb.to_owned(), latency);
    }

    /// Changes the ready delay for pods created from now on.
    pub fn set_ready_delay(&self, delay: Duration) {
        lock(&self.shared.opts).ready_delay = delay;
    }

    /// Changes the schedule delay for pods created from now on.
    pub fn set_schedule_delay(&self, delay: Duration) {
        lock(&self.shared.opts).schedule_delay = delay;
    }

    /// Clears every standing fault (pull, crash loop, unschedulable, quota, latency, a
    /// restart's downtime).
    pub fn clear_all(&self) {
        let mut f = self.shared.faults();
        let claims = std::mem::take(&mut f.claims_created);
        *f = FaultState {
            claims_created: claims,
            ..FaultState::default()
        };
    }
}

/// A fault as JSON, for `POST /simulator/faults`, e.g.
/// `{"action": "fail_image_pull", "pattern": "broken/"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FaultRequest {
    /// [`Faults::fail_image_pull`].
    FailImagePull {
        /// Substring of the image.
        pattern: String,
    },
    /// [`Faults::crash_loop`].
    CrashLoop {
        /// Substring of the image.
        pattern: String,
    },
    /// [`Faults::unschedulable`].
    Unschedulable {
        /// Namespace.
        namespace: String,
        /// Pod name prefix (`""`: all pods of the namespace).
        #[serde(default)]
        name_prefix: String,
    },
    /// [`Faults::quota_exceeded`].
    QuotaExceeded {
        /// Namespace.
        namespace: String,
        /// Resource (`pods`, `persistentvolumeclaims`, ...).
        resource: String,
    },
    /// [`Faults::clear_quota`].
    ClearQuota {
        /// Namespace.
        namespace: String,
        /// Resource.
        resource: String,
    },
    /// [`Faults::evict`].
    Evict {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
    },
    /// [`Faults::exit_container`].
    ExitContainer {
        /// Namespace.
        namespace: String,
        /// Pod name.
        pod: String,
        /// Exit code.
        code: i32,
    },
    /// [`Faults::drop_watches`], then [`Faults::compact_history`] if `compact`.
    DropWatches {
        /// Also forget the history.
        #[serde(default)]
        compact: bool,
    },
    /// [`Faults::compact_history`].
    CompactHistory,
    /// [`Faults::restart_api`].
    RestartApi {
        /// How long requests answer 503, in milliseconds.
        #[serde(default)]
        down_ms: u64,
    },
    /// [`Faults::set_latency`] (and [`Faults::set_verb_latency`] with `verb`).
    Latency {
        /// Milliseconds.
        ms: u64,
        /// Only for this verb.
        #[serde(default)]
        verb: Option<String>,
    },
    /// [`Faults::set_ready_delay`].
    ReadyDelay {
        /// Milliseconds.
        ms: u64,
    },
    /// [`Faults::set_schedule_delay`].
    ScheduleDelay {
        /// Milliseconds.
        ms: u64,
    },
    /// [`Faults::clear_all`].
    ClearAll,
}

impl FaultRequest {
    /// Applies the fault.
    pub fn apply(&self, faults: &Faults) -> Result<(), ApiError> {
        match self {
            Self::FailImagePull { pattern } => faults.fail_image_pull(pattern),
            Self::CrashLoop { pattern } => faults.crash_loop(pattern),
            Self::Unschedulable {
                namespace,
                name_prefix,
            } => faults.unschedulable(namespace, name_prefix),
            Self::QuotaExceeded {
                namespace,
                resource,
            } => faults.quota_exceeded(namespace, resource),
            Self::ClearQuota {
                namespace,
                resource,
            } => faults.clear_quota(namespace, resource),
            Self::Evict { namespace, pod } => faults.evict(namespace, pod)?,
            Self::ExitContainer {
                namespace,
                pod,
                code,
            } => faults.exit_container(namespace, pod, *code)?,
            Self::DropWatches { compact } => {
                if *compact {
                    faults.compact_history();
                }
                faults.drop_watches();
            }
            Self::CompactHistory => faults.compact_history(),
            Self::RestartApi { down_ms } => faults.restart_api(Duration::from_millis(*down_ms)),
            Self::Latency { ms, verb: None } => faults.set_latency(Duration::from_millis(*ms)),
            Self::Latency { ms, verb: Some(v) } => {
                faults.set_verb_latency(v, Duration::from_millis(*ms))
            }
            Self::ReadyDelay { ms } => faults.set_ready_delay(Duration::from_millis(*ms)),
            Self::ScheduleDelay { ms } => faults.set_schedule_delay(Duration::from_millis(*ms)),
            Self::ClearAll => faults.clear_all(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_requests_parse() {
        let r: FaultRequest =
            serde_json::from_str(r#"{"action":"fail_image_pull","pattern":"bad/"}"#).unwrap();
        assert_eq!(
            r,
            FaultRequest::FailImagePull {
                pattern: "bad/".to_owned()
            }
        );
        let r: FaultRequest =
            serde_json::from_str(r#"{"action":"unschedulable","namespace":"ns"}"#).unwrap();
        assert_eq!(
            r,
            FaultRequest::Unschedulable {
                namespace: "ns".to_owned(),
                name_prefix: String::new()
            }
        );
        let r: FaultRequest =
            serde_json::from_str(r#"{"action":"drop_watches","compact":true}"#).unwrap();
        assert_eq!(r, FaultRequest::DropWatches { compact: true });
        assert!(serde_json::from_str::<FaultRequest>(r#"{"action":"nope"}"#).is_err());
        let mut f = FaultState::default();
        f.image_pull.push("bad/".to_owned());
        f.unschedulable
            .push(("ns".to_owned(), "jupyter-".to_owned()));
        assert!(f.pull_fails("registry/bad/image:1"));
        assert!(!f.pull_fails("good/image"));
        assert!(f.unschedulable("ns", "jupyter-a"));
        assert!(!f.unschedulable("other", "jupyter-a"));
    }
}
