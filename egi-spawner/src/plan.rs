//! The pure description of one server to spawn: who it is for, what the hub tells it, and the
//! names and claim it gets. Built by [`crate::resolve`] from the configuration, the user and their
//! `user_options`; consumed by the Kubernetes runtime, which only moves bytes.

use std::fmt;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// The user a server is spawned for, as the hub knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// The hub's user name (raw, unescaped; may be an e-mail or a Check-in `sub`).
    pub name: String,
    /// The hub's numeric user id, if the hub has one (`{userid}` in templates).
    pub id: Option<u64>,
    /// Groups the user belongs to: the VOs from Check-in entitlements. Profiles with
    /// `vo_claims` are shown only to users in one of them.
    pub groups: Vec<String>,
    /// The primary group (VO) used for accounting, written to the `egi.eu/primary_group`
    /// annotation when set.
    pub primary_group: Option<String>,
}

/// What the hub passes to one single-user server (turned into `JUPYTERHUB_*` variables by
/// [`crate::env::single_user_env`]).
#[derive(Clone)]
pub struct HubContext {
    /// The server's API token (`JUPYTERHUB_API_TOKEN`, `JPY_API_TOKEN`). Never put in the pod
    /// spec: it travels in the server's Secret.
    pub api_token: SecretString,
    /// OAuth client id of the server (`JUPYTERHUB_CLIENT_ID`), e.g. `jupyterhub-user-alice`.
    pub client_id: String,
    /// The hub API URL as seen from the pod (`JUPYTERHUB_API_URL`), e.g. `http://hub:8081/hub/api`.
    pub api_url: String,
    /// `JUPYTERHUB_ACTIVITY_URL`; empty means derived from `api_url`.
    pub activity_url: String,
    /// The hub's base URL (`JUPYTERHUB_BASE_URL`), usually `/`.
    pub base_url: String,
    /// The server's URL prefix (`JUPYTERHUB_SERVICE_PREFIX`), e.g. `/user/alice/`.
    pub service_prefix: String,
    /// Where the server should listen (`JUPYTERHUB_SERVICE_URL`), e.g. `http://0.0.0.0:8888/user/alice/`.
    pub service_url: String,
    /// `JUPYTERHUB_OAUTH_CALLBACK_URL`.
    pub oauth_callback_url: String,
    /// `JUPYTERHUB_OAUTH_SCOPES` (a JSON list in the variable).
    pub oauth_scopes: Vec<String>,
    /// `JUPYTERHUB_OAUTH_ACCESS_SCOPES` (a JSON list in the variable).
    pub oauth_access_scopes: Vec<String>,
    /// `JUPYTERHUB_HOST` (may be empty).
    pub host: String,
    /// `JUPYTERHUB_PUBLIC_URL` (may be empty).
    pub public_url: String,
    /// `JUPYTERHUB_ROOT_DIR` (notebook_dir; may be empty).
    pub root_dir: String,
    /// `JUPYTERHUB_DEFAULT_URL` (default_url; may be empty).
    pub default_url: String,
    /// Other variables the hub sets for its servers, passed as they are (newer JupyterHubs
    /// add `JUPYTERHUB_OAUTH_CLIENT_ALLOWED_SCOPES`, `JUPYTERHUB_PUBLIC_HUB_URL`,
    /// `JUPYTERHUB_COOKIE_HOST_PREFIX_ENABLED`, ...). The admin's `environment` still wins;
    /// never put a secret here (it would be in the pod spec).
    pub extra_env: std::collections::BTreeMap<String, String>,
}

impl HubContext {
    /// What JupyterHub passes for `user`'s server `server` (`""` for the default one) on a hub
    /// whose base URL is `/` and whose API is at `api_url`, the server listening on `port`:
    /// prefix `/user/{user}/[{server}/]`, client id `jupyterhub-user-{user}[-{server}]`, the
    /// OAuth callback under the prefix and the `access:servers!server={user}/{server}` scope.
    /// The other fields are empty; set them after.
    pub fn for_server(
        user: &str,
        server: &str,
        api_url: &str,
        api_token: SecretString,
        port: u16,
    ) -> HubContext {
        let (prefix, client_id) = if server.is_empty() {
            (format!("/user/{user}/"), format!("jupyterhub-user-{user}"))
        } else {
            (
                format!("/user/{user}/{server}/"),
                format!("jupyterhub-user-{user}-{server}"),
            )
        };
        let scope = format!("access:servers!server={user}/{server}");
        HubContext {
            api_token,
            client_id,
            api_url: api_url.to_owned(),
            activity_url: String::new(),
            base_url: "/".to_owned(),
            service_url: format!("http://0.0.0.0:{port}{prefix}"),
            oauth_callback_url: format!("{prefix}oauth_callback"),
            service_prefix: prefix,
            oauth_scopes: vec![scope.clone()],
            oauth_access_scopes: vec![scope],
            host: String::new(),
            public_url: String::new(),
            root_dir: String::new(),
            default_url: String::new(),
            extra_env: std::collections::BTreeMap::new(),
        }
    }
}

impl fmt::Debug for HubContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubContext")
            .field("api_token", &"[redacted]")
            .field("client_id", &self.client_id)
            .field("api_url", &self.api_url)
            .field("service_prefix", &self.service_prefix)
            .finish_non_exhaustive()
    }
}

/// The user's Check-in tokens, written to the server's token Secret (EGI's
/// `access-token-<user>` layout: keys `access_token` and `id_token`).
#[derive(Clone)]
pub struct UserTokens {
    /// The current access token.
    pub access_token: SecretString,
    /// The current ID token, if any.
    pub id_token: Option<SecretString>,
}

impl fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokens")
            .field("access_token", &"[redacted]")
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// Everything needed to spawn one server, before any API call.
#[derive(Clone, Debug)]
pub struct SpawnPlan {
    /// Namespace of the pod, claim and Secret.
    pub namespace: String,
    /// Pod name (from `pod_name_template`, KubeSpawner's safe scheme).
    pub pod_name: String,
    /// Name of the Secret holding the hub API token and the user's tokens; owned by the pod.
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
