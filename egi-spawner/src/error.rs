//! The crate's error type.

use std::time::Duration;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a spawn failed before its server became ready, as the cluster reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureReason {
    /// The image could not be pulled (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`).
    ImagePull,
    /// The notebook container keeps crashing (`CrashLoopBackOff`) or exited while starting.
    CrashLoop,
    /// No node can take the pod (`Unschedulable`).
    Unschedulable,
    /// The pod was evicted or failed.
    Evicted,
    /// The pod failed (phase `Failed`) for another reason.
    Failed,
    /// The pod was deleted while it was starting.
    Deleted,
}

impl std::fmt::Display for FailureReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ImagePull => "image pull failed",
            Self::CrashLoop => "container crashed",
            Self::Unschedulable => "pod cannot be scheduled",
            Self::Evicted => "pod was evicted",
            Self::Failed => "pod failed",
            Self::Deleted => "pod was deleted while starting",
        })
    }
}

/// Errors of the spawner.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The spawner configuration is invalid.
    #[error("invalid spawner configuration")]
    Config(#[from] crate::config::ConfigError),
    /// The user's `user_options` were rejected.
    #[error("invalid user options")]
    Options(#[from] crate::options::OptionsError),
    /// The Kubernetes API answered with an error status (kind, reason and message from its
    /// `Status` body).
    #[error("Kubernetes API refused {action}: {code} {reason}: {message}")]
    Api {
        /// What we tried, e.g. `create pod jupyter-alice`.
        action: String,
        /// HTTP status code.
        code: u16,
        /// The `reason` of the Status body (`AlreadyExists`, `Forbidden`, `Invalid`, ...).
        reason: String,
        /// The server's message.
        message: String,
    },
    /// The Kubernetes API could not be reached or answered something that is not Kubernetes.
    #[error("Kubernetes API request failed: {action}")]
    Transport {
        /// What we tried.
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A namespace quota refused a create (HTTP 403 `exceeded quota`).
    #[error("quota exceeded in namespace {namespace}: {message}")]
    QuotaExceeded {
        /// The namespace whose quota is full.
        namespace: String,
        /// The server's message, naming the quota.
        message: String,
    },
    /// The pod failed before it became ready; `message` is the cluster's own reason.
    #[error("{reason}: {message}")]
    SpawnFailed {
        /// The kind of failure.
        reason: FailureReason,
        /// The kubelet's or scheduler's message.
        message: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What we waited for (`the server to be ready`, `the pod to be gone`, ...).
        what: &'static str,
        /// How long we waited.
        after: Duration,
    },
    /// `stop()` was called while this start was running: the start gave up.
    #[error("the start was cancelled by a stop")]
    Stopped,
    /// The namespace cache (watch) is not available.
    #[error("the watch of namespace {namespace} is not running")]
    CacheUnavailable {
        /// The namespace.
        namespace: String,
    },
    /// The saved state could not be read.
    #[error("unreadable spawner state")]
    State(#[source] serde_json::Error),
}

impl Error {
    /// The HTTP status of an API error, if this is one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { code, .. } => Some(*code),
            Self::QuotaExceeded { .. } => Some(403),
            _ => None,
        }
    }

    /// Whether a retry later might succeed (transport errors, 5xx, 429, quota).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::QuotaExceeded { .. } | Self::Timeout { .. } => true,
            Self::Api { code, .. } => *code >= 500 || *code == 429,
            _ => false,
        }
    }
}
