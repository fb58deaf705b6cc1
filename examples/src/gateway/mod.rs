//! `gateway`: a notebook gateway composed only from the public APIs of the four crates.
//!
//! | concern | module | crates used |
//! |---|---|---|
//! | configuration (one TOML file + environment) | [`config`] | egi-spawner's `KubeSpawnerConfig` |
//! | Check-in login, VO gating, logout with revocation | [`auth`] | egi-checkin (`CheckinClient`, `VoPolicy`, sealed `PendingLogin`) |
//! | sealed session cookies | [`session`] | egi-checkin's `SealKey` |
//! | tokens kept fresh per user, pushed into servers | [`tokens`] | egi-checkin's `TokenRegistry`, egi-spawner's `follow_tokens` (feature `checkin`) |
//! | servers: start, stop, progress, adoption | [`servers`] (one server: `servers::Server`), [`state`] | egi-spawner (`dyn Spawner`, `KubeCluster`) |
//! | home and progress pages | [`pages`] | egi-spawner's profiles |
//! | reverse proxy, HTTP and websockets | [`proxy`], [`routes`] | hyper |
//! | JupyterHub's REST API subset for egi-monitoring | [`hub_api`], [`scopes`] | egi-spawner's `ProgressEvent` |
//! | what `jupyterhub-singleuser` asks of its hub: OAuth, activity | [`oauth`] | |
//! | Prometheus metrics | [`metrics`] | |
//!
//! Who is calling is decided once per request by [`Gateway::caller`]: a service or server
//! token (`Authorization: token ...` or `Bearer ...`), else a sealed session cookie.

pub mod auth;
pub mod config;
pub mod hub_api;
pub mod metrics;
pub mod oauth;
pub mod pages;
pub mod proxy;
pub mod routes;
pub mod scopes;
pub mod servers;
pub mod session;
pub mod state;
pub mod tokens;

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use egi_checkin::{CheckinClient, SealKey, VoPolicy};
use egi_spawner::kube::KubeCluster;

use config::{GatewayConfig, Service};
use metrics::{Gauges, Metrics};
use scopes::ScopeSet;
use servers::{HubSettings, Servers};
use session::Cookies;
use state::token_hash;
use tokens::Tokens;

/// The gateway: everything the routes share.
#[derive(Debug)]
pub struct Gateway {
    /// The configuration.
    pub config: GatewayConfig,
    /// The Check-in client (discovered at start).
    pub checkin: CheckinClient,
    /// Who may log in.
    pub vo_policy: VoPolicy,
    /// Cookies.
    pub cookies: Cookies,
    /// Users' tokens.
    pub tokens: Tokens,
    /// Users' servers.
    pub servers: Arc<Servers>,
    /// Services and their tokens.
    pub services: Vec<Service>,
    /// The reverse proxy.
    pub proxy: proxy::Proxy,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// OAuth codes already exchanged by single-user servers.
    pub oauth_codes: oauth::UsedCodes,
}

/// Who sent a request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// A logged-in user (session cookie) or a user's server token.
    User {
        /// The hub user name.
        name: String,
        /// What they may do.
        scopes: ScopeSet,
        /// Set when the token is a server's own API token: `(user, server)`.
        server: Option<String>,
    },
    /// A service token.
    Service {
        /// The service's name.
        name: String,
        /// Its scopes.
        scopes: ScopeSet,
    },
}

impl Caller {
    /// Its scopes.
    pub fn scopes(&self) -> &ScopeSet {
        match self {
            Caller::User { scopes, .. } | Caller::Service { scopes, .. } => scopes,
        }
    }
}

impl Gateway {
    /// A gateway from its parts (the binary and the tests build them). Must be called inside
    /// a Tokio runtime: it starts the task that saves the state file.
    pub fn new(
        config: GatewayConfig,
        checkin: CheckinClient,
        cluster: KubeCluster,
        key: SealKey,
        tokens: Tokens,
    ) -> Arc<Gateway> {
        let metrics = Arc::new(Metrics::default());
        let vo_policy = if config.checkin.allowed_vos.is_empty() {
            VoPolicy::allow_anyone()
        } else {
            VoPolicy::allow(config.checkin.allowed_vos.clone())
        };
        let cookies = Cookies::new(
            key,
            config.base_path(),
            config.public_url.scheme() == "https",
            config.session_ttl(),
        );
        let hub = HubSettings {
            api_url: config.hub_api_url(),
            base_path: config.base_path().to_owned(),
            public_url: config.public_url.to_string(),
            // The spawner's `port` (KubeSpawner's): where it says the server answers.
            port: config.spawner.settings().port,
        };
        let servers = Arc::new(Servers::new(
            cluster,
            hub,
            state::StateFile::new(&config.state_file),
            metrics.clone(),
        ));
        // Ends when the gateway (and so `servers`) is dropped.
        drop(servers.spawn_saver());
        Arc::new(Gateway {
            services: config.services(),
            proxy: proxy::Proxy::new(proxy::ProxyOptions::default()),
            config,
            checkin,
            vo_policy,
            cookies,
            tokens,
            servers,
            metrics,
            oauth_codes: oauth::UsedCodes::default(),
        })
    }

    /// Who sent a request with `headers`: a token first, else the session cookie.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        if let Some(token) = bearer(headers) {
            return self.caller_for_token(&token);
        }
        let session = self.cookies.session(headers)?;
        if !self.servers.has_user(&session.user) {
            return None;
        }
        Some(Caller::User {
            scopes: ScopeSet::owner(&session.user),
            name: session.user,
            server: None,
        })
    }

    /// The owner of an API token.
    pub fn caller_for_token(&self, token: &str) -> Option<Caller> {
        if token.is_empty() {
            return None;
        }
        // Constant-time enough: compare hashes, not the tokens themselves.
        let hash = token_hash(token);
        if let Some(service) = self
            .services
            .iter()
            .find(|s| !s.token_sha256.is_empty() && s.token_sha256 == hash)
        {
            return Some(Caller::Service {
                name: service.name.clone(),
                scopes: service.scopes.clone(),
            });
        }
        let Some(server) = self.servers.server_by_token_hash(&hash) else {
            return oauth::access_token_caller(self, token);
        };
        Some(Caller::User {
            scopes: ScopeSet::server(&server.user, &server.name),
            name: server.user.clone(),
            server: Some(server.name.clone()),
        })
    }

    /// Starts `user`'s server with their current Check-in tokens and every refresh after
    /// (none for users without a grant, such as a service's probe user). The home page and
    /// the REST API both start servers through here.
    pub async fn start_server(
        &self,
        user: &str,
        server: &str,
        user_options: serde_json::Map<String, serde_json::Value>,
    ) -> Result<servers::Started, servers::ServerError> {
        let tokens = self.tokens.for_server(user).await;
        self.servers.start(user, server, user_options, tokens)
    }

    /// Gauges for the metrics page.
    pub fn gauges(&self) -> Gauges {
        let (users, running, starting) = self.servers.counts();
        let checkin_users: Vec<String> = self
            .servers
            .users()
            .into_iter()
            .filter(|u| u.checkin)
            .map(|u| u.user.name)
            .collect();
        Gauges {
            users,
            running,
            starting,
            login_needed: self
                .tokens
                .login_needed(checkin_users.iter().map(String::as_str)),
        }
    }
}

/// The token of `Authorization: token X` or `Bearer X`.
pub fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer"))
        .then(|| token.trim().to_owned())
}
