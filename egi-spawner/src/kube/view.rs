//! A compact view of one pod, kept by the namespace cache instead of the whole object (the
//! cache of 1,000 pods then fits in a few hundred kilobytes), and the pure rules that read it:
//! ready, failed (and why), exited (and with which code).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::FailureReason;

/// The name of the notebook container (KubeSpawner's).
pub(crate) const NOTEBOOK_CONTAINER: &str = "notebook";

/// Annotations with the raw names.
pub(crate) const USERNAME_ANNOTATION: &str = "hub.jupyter.org/username";
pub(crate) const SERVERNAME_ANNOTATION: &str = "hub.jupyter.org/servername";

/// What the spawner needs to know of a pod.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PodView {
    pub(crate) uid: String,
    pub(crate) phase: String,
    pub(crate) ip: Option<String>,
    /// All containers ready, condition Ready true.
    pub(crate) ready: bool,
    pub(crate) terminating: bool,
    /// Raw user and server names from the annotations (who the pod is for).
    pub(crate) username: Option<String>,
    pub(crate) servername: Option<String>,
    /// A reason any container (init, notebook or extra) cannot start, with its message: an
    /// image that cannot be pulled or a crash loop.
    pub(crate) blocked: Option<(FailureReason, String)>,
    /// The notebook container's terminated state: exit code and reason.
    pub(crate) terminated: Option<(i32, String)>,
    pub(crate) restarts: i32,
    /// `PodScheduled=False` with reason `Unschedulable`: the scheduler's message.
    pub(crate) unschedulable: Option<String>,
    /// `status.reason` and `status.message` (e.g. `Evicted`).
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
}

/// Whether a scheduler message is about a claim that is not bound yet: the scheduler says
/// "pod has unbound immediate PersistentVolumeClaims" until the new claim binds, which is a
/// normal step of a first start, not a reason to give up.
fn waits_for_volume(message: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("unbound immediate persistentvolumeclaims")
}

/// Whether a scheduler message is one a real scheduler sends for a moment and then takes
/// back: right after a claim is created its informer may not have it yet, and it says
/// `persistentvolumeclaim "claim-x" not found` (seen on a real cluster for 1 in 700 first
/// spawns, scheduled 1.7 s later). Such a message fails the start only if it persists.
fn transient_unschedulable(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("persistentvolumeclaim") && message.contains("not found")
}

/// Whether a container status says it cannot start: its image cannot be pulled, or it keeps
/// crashing. The message names the container and carries the kubelet's words.
fn blocking(status: &ContainerStatus) -> Option<(FailureReason, String)> {
    let waiting = status.state.as_ref()?.waiting.as_ref()?;
    let reason = waiting.reason.as_deref()?;
    let kind = match reason {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            FailureReason::ImagePull
        }
        "CrashLoopBackOff" => FailureReason::CrashLoop,
        _ => return None,
    };
    let message = match waiting.message.as_deref() {
        Some(m) if !m.is_empty() => format!("container {}: {reason}: {m}", status.name),
        _ => format!("container {}: {reason}", status.name),
    };
    Some((kind, message))
}

/// Where a start stands, read from a view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Ready: serve at this IP.
    Ready(String),
    /// Still starting.
    Starting,
    /// Failed: give up now, with the cluster's reason.
    Failed(FailureReason, String),
    /// Held back for a reason that may go away: give up only if it persists.
    Held(FailureReason, String),
}

impl PodView {
    /// Extracts the view from a pod. Pure.
    pub(crate) fn of(pod: &Pod) -> PodView {
        let meta = &pod.metadata;
        let annotations = meta.annotations.as_ref();
        let status = pod.status.as_ref();
        let statuses: &[ContainerStatus] = status
            .and_then(|s| s.container_statuses.as_deref())
            .unwrap_or_default();
        let notebook = statuses.iter().find(|c| c.name == NOTEBOOK_CONTAINER);
        let init: &[ContainerStatus] = status
            .and_then(|s| s.init_container_statuses.as_deref())
            .unwrap_or_default();
        let blocked = init.iter().chain(statuses).find_map(blocking);
        let state = notebook.and_then(|c| c.state.as_ref());
        let terminated = state
            .and_then(|s| s.terminated.as_ref())
            .map(|t| (t.exit_code, t.reason.clone().unwrap_or_default()));
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let ready_condition = conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let unschedulable = conditions
            .iter()
            .find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
            .map(|c| c.message.clone().unwrap_or_default());
        PodView {
            uid: meta.uid.clone().unwrap_or_default(),
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            ip: status
                .and_then(|s| s.pod_ip.clone())
                .filter(|ip| !ip.is_empty()),
            ready: ready_condition && !statuses.is_empty() && statuses.iter().all(|c| c.ready),
            terminating: meta.deletion_timestamp.is_some(),
            username: annotations
                .and_then(|a| a.get(USERNAME_ANNOTATION))
                .cloned(),
            servername: annotations
                .and_then(|a| a.get(SERVERNAME_ANNOTATION))
                .cloned(),
            blocked,
            terminated,
            restarts: notebook.map(|c| c.restart_count).unwrap_or(0),
            unschedulable,
            reason: status.and_then(|s| s.reason.clone()),
            message: status.and_then(|s| s.message.clone()),
        }
    }

    /// Ready means (as KubeSpawner): phase Running, a pod IP, not being deleted, all containers
    /// ready. Failure is decided at once from what the kubelet and scheduler report, so a start
    /// fails in seconds instead of at its timeout.
    pub(crate) fn readiness(&self, fail_unschedulable: bool) -> Readiness {
        if self.terminating {
            return Readiness::Failed(
                FailureReason::Deleted,
                "the pod is being deleted".to_owned(),
            );
        }
        if self.phase == "Failed" || self.reason.as_deref() == Some("Evicted") {
            let why = self.message.clone().or_else(|| self.reason.clone());
            let kind = if self.reason.as_deref() == Some("Evicted") {
                FailureReason::Evicted
            } else {
                FailureReason::Failed
            };
            return Readiness::Failed(kind, why.unwrap_or_else(|| "the pod failed".to_owned()));
        }
        if self.phase == "Succeeded" {
            let code = self.terminated.as_ref().map_or(0, |t| t.0);
            return Readiness::Failed(
                FailureReason::CrashLoop,
                format!("the notebook exited with code {code} while starting"),
            );
        }
        if let Some((kind, message)) = &self.blocked {
            return Readiness::Failed(*kind, message.clone());
        }
        if fail_unschedulable
            && let Some(message) = &self.unschedulable
            && !waits_for_volume(message)
        {
            let reason = FailureReason::Unschedulable;
            return if transient_unschedulable(message) {
                Readiness::Held(reason, message.clone())
            } else {
                Readiness::Failed(reason, message.clone())
            };
        }
        match (&self.ip, self.phase.as_str(), self.ready) {
            (Some(ip), "Running", true) => Readiness::Ready(ip.clone()),
            _ => Readiness::Starting,
        }
    }

    /// Whether the scheduler waits for the pod's claims to bind.
    pub(crate) fn waits_for_claim(&self) -> bool {
        self.unschedulable.as_deref().is_some_and(waits_for_volume)
    }

    /// The exit status JupyterHub's `poll()` returns for a pod that exists: `None` while it
    /// runs or starts, else the notebook's exit code (1 when the pod failed without one).
    pub(crate) fn exit_status(&self) -> Option<(i32, String)> {
        if self.terminating {
            return Some((1, "the pod is being deleted".to_owned()));
        }
        // The notebook ended while the pod still runs (a sidecar, or before the kubelet
        // restarts it): KubeSpawner reports its exit code too.
        if self.phase == "Running"
            && let Some((code, reason)) = &self.terminated
        {
            return Some((*code, reason.clone()));
        }
        match self.phase.as_str() {
            "Failed" => {
                let why = self.reason.clone().unwrap_or_else(|| "Failed".to_owned());
                Some((self.terminated.as_ref().map_or(1, |t| t.0.max(1)), why))
            }
            "Succeeded" => Some((
                self.terminated.as_ref().map_or(0, |t| t.0),
                "Completed".to_owned(),
            )),
            _ => None,
        }
    }

    /// Whether this pod is the server of `username`/`servername` (raw names), from the
    /// annotations KubeSpawner and we write. Used to adopt a pod after a hub restart.
    pub(crate) fn belongs_to(&self, username: &str, servername: &str) -> bool {
        self.username.as_deref() == Some(username)
            && self.servername.as_deref().unwrap_or("") == servername
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::needless_pass_by_value)] // called with json! literals
    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "jupyter-a", "uid": "u1",
                         "annotations": {"hub.jupyter.org/username": "a", "hub.jupyter.org/servername": ""}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn ready_needs_running_ip_and_every_container_ready() {
        let ready = pod(serde_json::json!({
            "phase": "Running", "podIP": "10.0.0.7",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "notebook", "ready": true, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}},
                {"name": "sidecar", "ready": true, "restartCount": 0, "image": "i", "imageID": "", "state": {"running": {}}}
            ]
        }));
        assert_eq!(
            PodView::of(&ready).readiness(true),
            Readiness::Ready("10.0.0.7".to_owned())
        );
        let mut not_all = ready.clone();
        not_all
            .status
            .as_mut()
            .unwrap()
            .container_statuses
            .as_mut()
            .unwrap()[1]
            .ready = false;
        assert_eq!(PodView::of(&not_all).readiness(true), Readiness::Starting);
        let mut deleting = ready;
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ));
        assert!(matches!(
            PodView::of(&deleting).readiness(true),
            Readiness::Failed(FailureReason::Deleted, _)
        ));
    }

    #[test]
    fn an_init_container_that_cannot_pull_fails_the_start() {
        let p = pod(serde_json::json!({
            "phase": "Pending",
            "initContainerStatuses": [{"name": "fetch", "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}],
            "containerStatuses": [{"name": "notebook", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"waiting": {"reason": "PodInitializing"}}}]
        }));
        match PodView::of(&p).readiness(true) {
            Readiness::Failed(FailureReason::ImagePull, message) => {
                assert!(
                    message.starts_with("container fetch: ImagePullBackOff"),
                    "{message}"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unbound_claims_wait_missing_claims_are_held_and_full_nodes_fail() {
        let unschedulable = |message: &str| {
            pod(serde_json::json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}]}))
        };
        let unbound = unschedulable(
            "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
        );
        assert_eq!(PodView::of(&unbound).readiness(true), Readiness::Starting);
        // A claim the scheduler does not see (yet): held, failing only if it persists.
        let missing =
            unschedulable("0/1 nodes are available: persistentvolumeclaim \"c\" not found.");
        assert!(matches!(
            PodView::of(&missing).readiness(true),
            Readiness::Held(FailureReason::Unschedulable, _)
        ));
        let full = unschedulable("0/3 nodes are available: 3 Insufficient cpu.");
        assert!(matches!(
            PodView::of(&full).readiness(true),
            Readiness::Failed(FailureReason::Unschedulable, _)
        ));
        assert_eq!(
            PodView::of(&full).readiness(false),
            Readiness::Starting,
            "autoscaler mode waits"
        );
    }

    #[test]
    fn exit_statuses_follow_kubespawner() {
        let evicted = pod(
            serde_json::json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory",
            "containerStatuses": [{"name": "notebook", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]}),
        );
        assert_eq!(
            PodView::of(&evicted).exit_status(),
            Some((137, "Evicted".to_owned()))
        );
        let notebook_exited = pod(serde_json::json!({"phase": "Running",
            "containerStatuses": [{"name": "notebook", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}));
        assert_eq!(
            PodView::of(&notebook_exited).exit_status(),
            Some((0, "Completed".to_owned()))
        );
        let running = pod(serde_json::json!({"phase": "Running"}));
        assert_eq!(PodView::of(&running).exit_status(), None);
        assert!(PodView::of(&running).belongs_to("a", ""));
        assert!(!PodView::of(&running).belongs_to("a", "other"));
    }
}
