//! What the hub passes to a single-user server ([`HubContext`]).

use std::fmt;

use secrecy::SecretString;

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
