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
    /// The notebook container's waiting reason and message.
    pub(crate) waiting: Option<(String, String)>,
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
        .contains("persistentvolumeclaim")
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
        let notebook = statuses
            .iter()
            .find(|c| c.name == NOTEBOOK_CONTAINER)
            .or_else(|| statuses.first());
        let state = notebook.and_then(|c| c.state.as_ref());
        let waiting = state.and_then(|s| s.waiting.as_ref()).map(|w| {
            (
                w.reason.clone().unwrap_or_default(),
                w.message.clone().unwrap_or_default(),
            )
        });
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
            waiting,
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
            return Readiness::Failed(
                FailureReason::Evicted,
                why.unwrap_or_else(|| "the pod failed".to_owned()),
            );
        }
        if self.phase == "Succeeded" {
            let code = self.terminated.as_ref().map_or(0, |t| t.0);
            return Readiness::Failed(
                FailureReason::CrashLoop,
                format!("the notebook exited with code {code} while starting"),
            );
        }
        if let Some((reason, message)) = &self.waiting {
            let kind = match reason.as_str() {
                "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
                    Some(FailureReason::ImagePull)
                }
                "CrashLoopBackOff" => Some(FailureReason::CrashLoop),
                _ => None,
            };
            if let Some(kind) = kind {
                let text = if message.is_empty() {
                    reason.clone()
                } else {
                    format!("{reason}: {message}")
                };
                return Readiness::Failed(kind, text);
            }
        }
        if fail_unschedulable
            && let Some(message) = &self.unschedulable
            && !waits_for_volume(message)
        {
            return Readiness::Failed(FailureReason::Unschedulable, message.clone());
        }
        match (&self.ip, self.phase.as_str(), self.ready) {
            (Some(ip), "Running", true) => Readiness::Ready(ip.clone()),
            _ => Readiness::Starting,
        }
    }

    /// The exit status JupyterHub's `poll()` returns for a pod that exists: `None` while it
    /// runs or starts, else the notebook's exit code (1 when the pod failed without one).
    pub(crate) fn exit_status(&self) -> Option<(i32, String)> {
        if self.terminating {
            return Some((1, "the pod is being deleted".to_owned()));
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
