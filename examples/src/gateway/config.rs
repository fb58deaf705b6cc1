//! The gateway's configuration: one TOML file, secrets from the environment.
//!
//! ```toml
//! listen = "0.0.0.0:8000"
//! public_url = "https://notebooks.example.org/"   # what browsers see (scheme, host, base URL)
//! hub_api_url = "http://gateway.notebooks.svc:8000/hub/api"  # what pods see
//! state_file = "/var/lib/gateway/state.json"
//!
//! [checkin]
//! issuer = "https://aai.egi.eu/auth/realms/egi"
//! client_id = "my-gateway"
//! # client_secret from GATEWAY_CLIENT_SECRET
//! allowed_vos = ["vo.notebooks.egi.eu"]
//!
//! [spawner]            # egi-spawner's KubeSpawnerConfig (KubeSpawner's option names)
//! namespace = "notebooks"
//!
//! [[services]]
//! name = "status"
//! url = "http://status-web/"
//! admin = true           # EGI's chart: the monitor is an admin service
//! # token from GATEWAY_SERVICE_STATUS_TOKEN (name upper-cased, '-' as '_')
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use egi_spawner::KubeSpawnerConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::scopes::{Scope, ScopeSet};

/// What can be wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("{path} is not a valid gateway configuration")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (line and column included).
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range or inconsistent with another.
    #[error("{field}: {reason}")]
    Invalid {
        /// The setting.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The public URL browsers use, ending in the base URL (`https://host/` or
    /// `https://host/jhub/`).
    pub public_url: Url,
    /// The hub API URL as seen from the pods (`JUPYTERHUB_API_URL`); default
    /// `{public_url}hub/api`.
    #[serde(default)]
    pub hub_api_url: Option<String>,
    /// Where spawner state and server records are kept (JSON, rewritten atomically).
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// How long a browser session lasts.
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Check-in (OpenID Connect) login.
    pub checkin: CheckinSettings,
    /// The Kubernetes spawner.
    #[serde(default)]
    pub spawner: KubeSpawnerConfig,
    /// Services with API tokens (the monitor, cron jobs), proxied under `/services/{name}/`
    /// when they have a `url`.
    #[serde(default)]
    pub services: Vec<ServiceSettings>,
    /// Users (hub user names) who are admins.
    #[serde(default)]
    pub admin_users: Vec<String>,
}

/// The `[checkin]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckinSettings {
    /// The issuer URL (discovery is read from it).
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The client secret; prefer `GATEWAY_CLIENT_SECRET`.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Scopes asked at login (default: the client's, Check-in's usual set).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// VOs (group paths) whose members may log in; empty admits anyone.
    #[serde(default)]
    pub allowed_vos: Vec<String>,
    /// The claims the hub user name is taken from, first present wins
    /// (`voperson_id`, `preferred_username`, `email`, `sub`).
    #[serde(default)]
    pub username_claims: Vec<String>,
}

/// One `[[services]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// The service name (`/services/{name}/`).
    pub name: String,
    /// Its API token; prefer `GATEWAY_SERVICE_{NAME}_TOKEN`.
    #[serde(default)]
    pub api_token: Option<SecretString>,
    /// Where the gateway proxies `/services/{name}/` (optional).
    #[serde(default)]
    pub url: Option<String>,
    /// JupyterHub's `admin: true`: every scope.
    #[serde(default)]
    pub admin: bool,
    /// The token's scopes (JupyterHub's names: `list:users`, `admin:servers`,
    /// `access:servers`, `read:metrics`, ...).
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for ServiceSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSettings")
            .field("name", &self.name)
            .field("api_token", &self.api_token.as_ref().map(|_| "[redacted]"))
            .field("url", &self.url)
            .field("admin", &self.admin)
            .field("scopes", &self.scopes)
            .finish()
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8000))
}
fn default_state_file() -> PathBuf {
    PathBuf::from("gateway-state.json")
}
fn default_session_hours() -> u64 {
    12
}

/// A service as the gateway uses it: name, token, scopes, upstream.
#[derive(Clone)]
pub struct Service {
    /// Its name.
    pub name: String,
    /// SHA-256 (hex) of its API token, computed once: requests are matched by hash, and the
    /// token itself is not kept.
    pub token_sha256: String,
    /// What the token may do.
    pub scopes: ScopeSet,
    /// Where `/services/{name}/` goes.
    pub url: Option<Url>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("url", &self.url.as_ref().map(Url::as_str))
            .finish_non_exhaustive()
    }
}

impl GatewayConfig {
    /// Reads `path`, then the environment (`env` is `std::env::var` outside tests).
    pub fn load(
        path: &std::path::Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, env).map_err(|e| match e {
            ParseOrInvalid::Parse(source) => ConfigError::Parse {
                path: path.to_owned(),
                source,
            },
            ParseOrInvalid::Invalid(e) => e,
        })
    }

    fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, ParseOrInvalid> {
        let mut config: GatewayConfig = toml::from_str(text).map_err(ParseOrInvalid::Parse)?;
        if let Some(secret) = env("GATEWAY_CLIENT_SECRET") {
            config.checkin.client_secret = Some(SecretString::from(secret));
        }
        for service in &mut config.services {
            if let Some(token) = env(&service_token_variable(&service.name)) {
                service.api_token = Some(SecretString::from(token));
            }
        }
        config.validate().map_err(ParseOrInvalid::Invalid)?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !matches!(self.public_url.scheme(), "http" | "https") {
            return Err(invalid("public_url", "must be an http or https URL"));
        }
        if !self.public_url.path().ends_with('/') {
            return Err(invalid("public_url", "must end with '/' (the base URL)"));
        }
        if self.session_hours == 0 {
            return Err(invalid("session_hours", "must be at least 1"));
        }
        self.spawner
            .validate()
            .map_err(|e| invalid("spawner", e.to_string()))?;
        let mut names = std::collections::BTreeSet::new();
        for s in &self.services {
            if s.name.is_empty()
                || !s
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    "services.name",
                    format!("{:?}: letters, digits, '-' and '_' only", s.name),
                ));
            }
            if !names.insert(s.name.as_str()) {
                return Err(invalid(
                    "services.name",
                    format!("{} is listed twice", s.name),
                ));
            }
            if s.api_token.is_none() {
                return Err(invalid(
                    "services.api_token",
                    format!(
                        "service {} has no token (set {})",
                        s.name,
                        service_token_variable(&s.name)
                    ),
                ));
            }
            for scope in &s.scopes {
                scope
                    .parse::<Scope>()
                    .map_err(|e| invalid("services.scopes", format!("{}: {e}", s.name)))?;
            }
            if let Some(url) = &s.url {
                Url::parse(url).map_err(|e| invalid("services.url", format!("{}: {e}", s.name)))?;
            }
        }
        let claims = ["voperson_id", "preferred_username", "email", "sub"];
        for claim in &self.checkin.username_claims {
            if !claims.contains(&claim.as_str()) {
                return Err(invalid(
                    "checkin.username_claims",
                    format!("{claim:?}: one of {}", claims.join(", ")),
                ));
            }
        }
        Ok(())
    }

    /// The base URL path (`/` or `/jhub/`).
    pub fn base_path(&self) -> &str {
        self.public_url.path()
    }

    /// `JUPYTERHUB_API_URL` for the pods.
    pub fn hub_api_url(&self) -> String {
        match &self.hub_api_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("{}hub/api", self.public_url),
        }
    }

    /// How long a session lasts.
    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.session_hours * 3600)
    }

    /// The services, tokens and scopes resolved.
    pub fn services(&self) -> Vec<Service> {
        self.services
            .iter()
            .map(|s| Service {
                name: s.name.clone(),
                token_sha256: s
                    .api_token
                    .as_ref()
                    .map(|t| super::state::token_hash(t.expose_secret()))
                    .unwrap_or_default(),
                scopes: if s.admin {
                    ScopeSet::admin()
                } else {
                    ScopeSet::parse_all(&s.scopes)
                },
                url: s.url.as_deref().and_then(|u| Url::parse(u).ok()),
            })
            .collect()
    }
}

enum ParseOrInvalid {
    Parse(toml::de::Error),
    Invalid(ConfigError),
}

/// The configuration of a gateway on loopback in front of the test OpenID provider, as
/// `local-stack`, the tests and the benchmarks run it: it listens on `listen` and is seen at
/// `public_url`; members of `vo` may log in, named by their `preferred_username`; the admin
/// service `status` (token from `GATEWAY_SERVICE_STATUS_TOKEN`) comes last, so lines appended
/// right after it (a `url = ...`) are its own. Append a `[spawner]` table and more services.
pub fn loopback_toml(
    listen: &str,
    public_url: &str,
    issuer: &str,
    client_id: &str,
    vo: &str,
    state_file: &std::path::Path,
) -> String {
    format!(
        r#"listen = "{listen}"
public_url = "{public_url}"
hub_api_url = "{public_url}hub/api"
state_file = "{state}"

[checkin]
issuer = "{issuer}"
client_id = "{client_id}"
allowed_vos = ["{vo}"]
username_claims = ["preferred_username"]

[[services]]
name = "status"
admin = true
"#,
        state = state_file.display()
    )
}

/// `GATEWAY_SERVICE_{NAME}_TOKEN`, the name upper-cased with `-` as `_`.
pub fn service_token_variable(name: &str) -> String {
    format!(
        "GATEWAY_SERVICE_{}_TOKEN",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
public_url = "http://127.0.0.1:8000/"
[checkin]
issuer = "http://127.0.0.1:9000"
client_id = "gw"
allowed_vos = ["vo.notebooks.egi.eu"]
[[services]]
name = "status"
admin = true
"#;

    #[test]
    fn secrets_come_from_the_environment() {
        let env = |k: &str| match k {
            "GATEWAY_CLIENT_SECRET" => Some("s3cret".to_owned()),
            "GATEWAY_SERVICE_STATUS_TOKEN" => Some("svc-t0ken-value".to_owned()),
            _ => None,
        };
        let config = GatewayConfig::parse(MINIMAL, env).map_err(|_| ()).unwrap();
        assert!(config.checkin.client_secret.is_some());
        let services = config.services();
        assert_eq!(services[0].name, "status");
        assert!(services[0].scopes.allows(&"admin:servers".parse().unwrap()));
        assert_eq!(config.hub_api_url(), "http://127.0.0.1:8000/hub/api");
        let debug = format!("{config:?}");
        assert!(!debug.contains("svc-t0ken-value") && !debug.contains("s3cret"));
    }

    #[test]
    fn the_loopback_configuration_loads() {
        let text = loopback_toml(
            "127.0.0.1:8000",
            "http://127.0.0.1:8000/jhub/",
            "http://127.0.0.1:9000/auth",
            "notebooks",
            "vo.notebooks.egi.eu",
            std::path::Path::new("/tmp/state.json"),
        ) + "url = \"http://127.0.0.1:9001/\"\n[spawner]\nnamespace = \"default\"\n";
        let config = GatewayConfig::parse(&text, |_| Some("x".into()))
            .map_err(|_| ())
            .unwrap();
        assert_eq!(config.base_path(), "/jhub/");
        assert_eq!(config.hub_api_url(), "http://127.0.0.1:8000/jhub/hub/api");
        let services = config.services();
        assert_eq!(
            services[0].url.as_ref().unwrap().as_str(),
            "http://127.0.0.1:9001/"
        );
    }

    #[test]
    fn a_service_without_a_token_is_refused() {
        let Err(ParseOrInvalid::Invalid(e)) = GatewayConfig::parse(MINIMAL, |_| None) else {
            panic!("accepted a service without a token");
        };
        assert!(
            e.to_string().contains("GATEWAY_SERVICE_STATUS_TOKEN"),
            "{e}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_urls_are_refused() {
        let typo = MINIMAL.replace("public_url", "publc_url");
        assert!(matches!(
            GatewayConfig::parse(&typo, |_| Some("x".into())),
            Err(ParseOrInvalid::Parse(_))
        ));
        let no_slash = MINIMAL.replace("8000/", "8000/jhub");
        let Err(ParseOrInvalid::Invalid(e)) = GatewayConfig::parse(&no_slash, |_| Some("x".into()))
        else {
            panic!("accepted a base URL without a trailing slash");
        };
        assert!(e.to_string().starts_with("public_url"), "{e}");
    }
}
