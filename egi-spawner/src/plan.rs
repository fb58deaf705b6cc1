//! The pure description of one server to spawn: its names, the effective settings and the claim
//! step. Built by [`crate::resolve`] from the configuration, the [`crate::User`] and their
//! `user_options`; consumed by the Kubernetes runtime, which only moves bytes.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;

use crate::config::Settings;

/// Everything needed to spawn one server, before any API call.
#[derive(Clone, Debug)]
pub struct SpawnPlan {
    /// Namespace of the pod, claim and Secret.
    pub namespace: String,
    /// Pod name (from `pod_name_template`, KubeSpawner's safe scheme).
    pub pod_name: String,
    /// Name of the Secret holding the hub API token and the user's tokens (long-lived, owned
    /// by no pod).
    pub secret_name: String,
    /// Slugs and raw names, for templates, labels and annotations.
    pub names: crate::naming::Names,
    /// The chosen profile's slug, if profiles are configured.
    pub profile: Option<String>,
    /// The effective settings: configuration with the profile's and options' overrides applied.
    pub settings: Settings,
    /// What to do about the persistent volume claim.
    pub claim: ClaimPlan,
}

/// The persistent-volume-claim step of a spawn, decided by the [`crate::storage::PvcPolicy`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ClaimPlan {
    /// No claim: the home directory is ephemeral.
    None,
    /// A fixed claim the operator manages; mounted, never created or deleted.
    Shared {
        /// Claim name.
        name: String,
    },
    /// A claim we create if missing (409 means it exists), mount, and mark as ours.
    Ensure {
        /// The full claim to create (name, capacity, class, labels, our marker annotation).
        manifest: Box<PersistentVolumeClaim>,
        /// Whether `delete_forever` of this server deletes it (per-server claims always; per-user
        /// claims only for the default server).
        delete_forever: bool,
    },
    /// EGI's way: the user's existing claim, found by the annotation
    /// `hub.jupyter.org/username=<raw user name>`; when none exists, `fallback` is created.
    ReuseByAnnotation {
        /// The raw user name to match in the annotation.
        username: String,
        /// The claim to create when the user has none yet.
        fallback: Box<PersistentVolumeClaim>,
    },
}

impl ClaimPlan {
    /// The claim name, when known without asking the cluster.
    pub fn name(&self) -> Option<&str> {
        match self {
            Self::None | Self::ReuseByAnnotation { .. } => None,
            Self::Shared { name } => Some(name),
            Self::Ensure { manifest, .. } => manifest.metadata.name.as_deref(),
        }
    }
}
