//! The crate's error types: [`Error`], and the configuration and `user_options` errors it
//! wraps (here rather than next to the configuration, so that the contract compiles without
//! the `kubernetes` feature).

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
    Config(#[from] ConfigError),
    /// The user's `user_options` were rejected.
    #[error("invalid user options")]
    Options(#[from] OptionsError),
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
        /// The client's error (a `kube::Error` from the Kubernetes spawner; boxed so that the
        /// contract does not depend on kube).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
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

/// Errors in the spawner configuration. Messages name the offending field and value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration could not be deserialised (unknown key, wrong type, bad size).
    #[error("cannot read the spawner configuration")]
    Parse(#[source] serde_json::Error),
    /// A value is wrong in the named configuration field.
    #[error("invalid `{field}`")]
    InField {
        /// The field, e.g. `pod_name_template` or `profile_list[gpu].kubespawner_override`.
        field: String,
        /// What is wrong with it.
        #[source]
        source: Box<ConfigError>,
    },
    /// A template is malformed (unbalanced braces, a field without a value).
    #[error("template {template:?}: {reason}")]
    Template {
        /// The template.
        template: String,
        /// What is wrong.
        reason: String,
    },
    /// A template uses a field KubeSpawner does not know.
    #[error("template {template:?} uses the unknown field {{{field}}}")]
    UnknownTemplateField {
        /// The template.
        template: String,
        /// The unknown field name.
        field: String,
    },
    /// A name template gives an invalid object name even for a plain user name.
    #[error(
        "template {template:?} gives {value:?} for user \"jovyan\", not a valid object name \
         (lowercase letters, digits and '-', starting with a letter, at most 63)"
    )]
    InvalidName {
        /// The template.
        template: String,
        /// What it expanded to.
        value: String,
    },
    /// A resource or storage quantity is not a Kubernetes quantity.
    #[error("{value:?} is not a Kubernetes quantity (like \"10Gi\", \"500m\", \"2\")")]
    InvalidQuantity {
        /// The value.
        value: String,
    },
    /// A value is out of range or otherwise unusable.
    #[error("{value:?}: {reason}")]
    InvalidValue {
        /// The value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// Two profiles have the same slug.
    #[error("two profiles have the slug {slug:?}")]
    DuplicateProfileSlug {
        /// The slug.
        slug: String,
    },
    /// More than one profile is marked `default`.
    #[error("profiles {first:?} and {second:?} are both marked default")]
    MultipleDefaultProfiles {
        /// The first default profile's slug.
        first: String,
        /// The second one.
        second: String,
    },
    /// A profile option has no choices.
    #[error("option {option:?} of profile {profile:?} has no choices")]
    NoChoices {
        /// The profile's slug.
        profile: String,
        /// The option name.
        option: String,
    },
    /// A profile option marks more than one choice as default.
    #[error("option {option:?} of profile {profile:?} has more than one default choice")]
    MultipleDefaultChoices {
        /// The profile's slug.
        profile: String,
        /// The option name.
        option: String,
    },
}

impl ConfigError {
    /// Wraps the error with the field it was found in.
    pub fn in_field(self, field: impl Into<String>) -> ConfigError {
        ConfigError::InField {
            field: field.into(),
            source: Box::new(self),
        }
    }

    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub(crate) fn invalid(value: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Longest accepted user option key or value, in characters.
// Public through `options` (feature `kubernetes`).
#[cfg_attr(not(feature = "kubernetes"), allow(unreachable_pub))]
pub const MAX_OPTION_LENGTH: usize = 256;

/// Why `user_options` were refused. Messages name the key; values are quoted only when they
/// passed the length and character checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// The key is not `profile` nor an option of the chosen profile.
    #[error("unknown user option \"{key}\"")]
    UnknownKey {
        /// The key (shortened when long).
        key: String,
    },
    /// The value is not a string.
    #[error("user option \"{key}\" must be a string, not {found}")]
    NotAString {
        /// The key.
        key: String,
        /// The JSON type given.
        found: &'static str,
    },
    /// The key or value is longer than [`MAX_OPTION_LENGTH`](crate::options::MAX_OPTION_LENGTH).
    #[error("user option \"{key}\" is too long ({length} characters, at most {MAX_OPTION_LENGTH})")]
    TooLong {
        /// The key (shortened when long).
        key: String,
        /// Its or its value's length in characters.
        length: usize,
    },
    /// The key or value contains control characters.
    #[error("user option \"{key}\" contains control characters")]
    ControlCharacters {
        /// The key (with control characters escaped).
        key: String,
    },
    /// No profile with this slug is available to the user (it does not exist, or its
    /// `vo_claims` exclude the user: the two are not told apart).
    #[error("no profile {slug:?} is available; {}", one_of(available))]
    UnknownProfile {
        /// The slug asked for.
        slug: String,
        /// The slugs of the profiles the user may choose.
        available: Vec<String>,
    },
    /// Profiles are configured but the user may see none of them.
    #[error("no profile is available to this user")]
    NoProfileAvailable,
    /// The choice is not one of the option's.
    #[error(
        "{choice:?} is not a choice of option {option:?}; {}",
        one_of(available)
    )]
    UnknownChoice {
        /// The option name.
        option: String,
        /// The choice given.
        choice: String,
        /// The option's choices.
        available: Vec<String>,
    },
    /// The same option is given under two keys.
    #[error("option {option:?} is given twice")]
    DuplicateOption {
        /// The option name.
        option: String,
    },
    /// The configuration cannot produce this server (a template needs a user id the hub did not
    /// give, an override breaks a setting).
    #[error("the spawner configuration cannot start this server")]
    Config(#[from] ConfigError),
}

/// "choose one of: a, b" or, with nothing to choose, says so.
fn one_of(available: &[String]) -> String {
    if available.is_empty() {
        "none is configured".to_owned()
    } else {
        format!("choose one of: {}", available.join(", "))
    }
}
