//! The EOSC job's configuration: the Python tool's `[default]`, `[eosc]` and
//! `[eosc.flavors]` keys and environment variables, environment first.
//!
//! | section / key | environment | default |
//! |---|---|---|
//! | `[default] notebooks_db` | `NOTEBOOKS_DB` | required |
//! | `[default] verbose` | `VERBOSE` | `0` |
//! | `[eosc] token_url` | `TOKEN_URL` | `https://proxy.staging.eosc-federation.eu/OIDC/token` |
//! | `[eosc] client_id`, `client_secret` | `CLIENT_ID`, `CLIENT_SECRET` | required unless dry run |
//! | `[eosc] scopes` (ours; the Python sample lists it) | | `openid email profile voperson_id entitlements` |
//! | `[eosc] accounting_url` | `ACCOUNTING_URL` | `https://api.acc.staging.eosc.grnet.gr` |
//! | `[eosc] installation_id` | | required unless dry run |
//! | `[eosc] timeout` | | `120` seconds per request (the chart's value) |
//! | `[eosc] timestamp_file` | `TIMESTAMP_FILE` | `eosc-accounting.timestamp`; empty: none kept |
//! | `[eosc.flavors] <flavor> = <metric definition id>` | | none (nothing reported) |

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use super::error::{Error, Result};
use super::report::FlavorMetrics;
use crate::config::Ini;

/// The Python tool's default token endpoint (EOSC's staging proxy).
pub const DEFAULT_TOKEN_URL: &str = "https://proxy.staging.eosc-federation.eu/OIDC/token";
/// The Python tool's default accounting API (EOSC's staging service).
pub const DEFAULT_ACCOUNTING_URL: &str = "https://api.acc.staging.eosc.grnet.gr";
/// The Python tool's default timestamp file (in the working directory).
pub const DEFAULT_TIMESTAMP_FILE: &str = "eosc-accounting.timestamp";
/// The scopes the Python tool asks for.
pub const DEFAULT_SCOPES: &str = "openid email profile voperson_id entitlements";

/// Everything an EOSC accounting run needs.
#[derive(Debug, Clone)]
pub struct EoscConfig {
    /// The notebooks database the accounting job writes.
    pub notebooks_db: PathBuf,
    /// Debug logging requested.
    pub verbose: bool,
    /// The token endpoint (client credentials grant).
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: SecretString,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The accounting API's base URL.
    pub accounting_url: Url,
    /// The installation reported for.
    pub installation_id: String,
    /// Time allowed per request.
    pub timeout: Duration,
    /// Where the end of the last period reported is kept; `None`: nowhere (every run
    /// reports yesterday).
    pub timestamp_file: Option<PathBuf>,
    /// Metric definition per flavor.
    pub flavors: FlavorMetrics,
    /// What was odd but accepted, to be logged once logging is up.
    pub warnings: Vec<String>,
}

impl EoscConfig {
    /// Reads the INI file at `path` (a missing file is a warning and the environment alone
    /// is read, as the Python tool does) and the environment through `env`.
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut missing = None;
        let text = match path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    missing = Some(format!(
                        "configuration file {} not found: environment variables only",
                        p.display()
                    ));
                    String::new()
                }
                Err(e) => {
                    return Err(Error::Config(format!("cannot read {}: {e}", p.display())));
                }
            },
            None => String::new(),
        };
        let mut config = Self::from_ini_str(&text, env)?;
        config.warnings.extend(missing);
        Ok(config)
    }

    /// Reads INI text and the environment through `env`.
    pub fn from_ini_str(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let ini = Ini::parse(text).map_err(|e| Error::Config(e.to_string()))?;
        let get = |section: &str, key: &str, var: Option<&str>| -> Result<Option<String>> {
            if let Some(v) = var.and_then(&env) {
                return Ok(Some(v));
            }
            ini.get(section, key)
                .map_err(|e| Error::Config(e.to_string()))
        };
        let text = |section: &str, key: &str, var: Option<&str>| -> Result<Option<String>> {
            Ok(get(section, key, var)?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };
        let mut warnings = Vec::new();
        let notebooks_db = text("default", "notebooks_db", Some("NOTEBOOKS_DB"))?
            .map(PathBuf::from)
            .ok_or_else(|| Error::Config("notebooks_db (NOTEBOOKS_DB) is not set".into()))?;
        let verbose = get("default", "verbose", Some("VERBOSE"))?.is_some_and(|v| v.trim() == "1");
        let token_url = text("eosc", "token_url", Some("TOKEN_URL"))?
            .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned());
        let client_id = text("eosc", "client_id", Some("CLIENT_ID"))?.unwrap_or_default();
        let client_secret = SecretString::from(
            get("eosc", "client_secret", Some("CLIENT_SECRET"))?.unwrap_or_default(),
        );
        let scopes = text("eosc", "scopes", None)?
            .unwrap_or_else(|| DEFAULT_SCOPES.to_owned())
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        let url_text = text("eosc", "accounting_url", Some("ACCOUNTING_URL"))?
            .unwrap_or_else(|| DEFAULT_ACCOUNTING_URL.to_owned());
        let accounting_url = Url::parse(&url_text)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                Error::Config(format!("accounting_url {url_text:?}: not an http(s) URL"))
            })?;
        let installation_id = text("eosc", "installation_id", None)?.unwrap_or_default();
        let timeout = match text("eosc", "timeout", None)? {
            None => Duration::from_secs(120),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    Error::Config(format!("[eosc] timeout = {v:?}: expected positive seconds"))
                })?,
        };
        let timestamp_file = match get("eosc", "timestamp_file", Some("TIMESTAMP_FILE"))? {
            None => Some(PathBuf::from(DEFAULT_TIMESTAMP_FILE)),
            Some(v) if v.trim().is_empty() => {
                warnings.push(
                    "timestamp_file is empty: no progress is kept, every run reports yesterday"
                        .to_owned(),
                );
                None
            }
            Some(v) => Some(PathBuf::from(v.trim())),
        };
        let mut flavors = FlavorMetrics::new();
        for (flavor, metric) in ini
            .items("eosc.flavors")
            .map_err(|e| Error::Config(e.to_string()))?
        {
            let metric = metric.trim();
            if metric.is_empty() {
                return Err(Error::Config(format!(
                    "[eosc.flavors] {flavor}: no metric definition id"
                )));
            }
            flavors.insert(flavor, metric.to_owned());
        }
        if flavors.is_empty() {
            warnings.push("[eosc.flavors] maps no flavor: nothing will be reported".to_owned());
        }
        Ok(Self {
            notebooks_db,
            verbose,
            token_url,
            client_id,
            client_secret,
            scopes,
            accounting_url,
            installation_id,
            timeout,
            timestamp_file,
            flavors,
            warnings,
        })
    }

    /// Refuses what only a real run needs (a dry run needs neither credentials nor an
    /// installation).
    pub fn check_for_sending(&self) -> Result<()> {
        use secrecy::ExposeSecret;
        if self.client_id.is_empty() || self.client_secret.expose_secret().is_empty() {
            return Err(Error::Config(
                "[eosc] client_id and client_secret (CLIENT_ID, CLIENT_SECRET) are required".into(),
            ));
        }
        if self.installation_id.is_empty() {
            return Err(Error::Config("[eosc] installation_id is not set".into()));
        }
        Ok(())
    }
}
