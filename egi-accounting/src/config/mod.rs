//! Configuration: the Python tool's INI file and environment variables, same keys, same
//! precedence (environment over file over default), plus a few keys of our own.
//!
//! | section / key | environment | default |
//! |---|---|---|
//! | `[default] verbose` | `VERBOSE` | `0` |
//! | `[default] site` | `SITENAME` | `EGI-NOTEBOOKS` |
//! | `[default] cloud_type` | `CLOUD_TYPE` | `EGI Notebooks` |
//! | `[default] cloud_compute_service` | `SERVICE` | none |
//! | `[default] fqan_key` | `FQAN_KEY` | `primary_group` |
//! | `[default] default_cpu_count` | `DEFAULT_CPU_COUNT` | none (pods without CPU request skipped) |
//! | `[default] apel_spool` | `APEL_SPOOL` | none (standard output) |
//! | `[default] notebooks_db` | `NOTEBOOKS_DB` | none (no SQLite copy; ignored with a warning without the `notebooks-db` feature) |
//! | `[default] units` (ours) | `UNITS` | `caso` (MB memory, GB disk and network); `bytes` as the Python tool |
//! | `[default] max_records` (ours) | `MAX_RECORDS` | `100` records per message |
//! | `[VO] <vo> = v1,v2` | | |
//! | `[prometheus] url` | `PROMETHEUS_URL` | `http://localhost:8080` |
//! | `[prometheus] user`, `password` | | no authentication |
//! | `[prometheus] token` (ours) | `PROMETHEUS_TOKEN` | bearer token instead of basic auth |
//! | `[prometheus] verify` | `SSL_VERIFY` | **true** (the Python tool never verified) |
//! | `[prometheus] ca_cert` (ours) | `PROMETHEUS_CA_CERT` | system roots only |
//! | `[prometheus] timeout` (ours) | `PROMETHEUS_TIMEOUT` | `60` seconds per request |
//! | `[prometheus] retries` (ours) | `PROMETHEUS_RETRIES` | `3` |
//! | `[prometheus] filter` | `FILTER` | `pod=~'jupyter-.*'` |
//! | `[prometheus] range` | `RANGE` | `24h` |
//!
//! Booleans accept `1/0`, `true/false`, `yes/no`, `on/off`. An empty environment variable
//! counts as set (as in Python); for optional text fields an empty value means "unset".
//!
//! Loading is pure: it logs nothing, because it runs before logging is set up. What it
//! ignored or guessed comes back as [`Warning`]s in [`Config::warnings`] for the caller to
//! report: a missing configuration file (the environment and defaults are used, as in the
//! Python tool), a `[VO]` value listed under two VOs (the later line wins, as in the Python
//! tool), unknown keys in `[default]` and `[prometheus]`, and the like.

pub mod ini;
mod warning;

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::apel::Limits;
use crate::error::{Error, Result};
use crate::metrics::{Filter, LookBack, Timestamp, Window};
use crate::prometheus::{Auth, PrometheusConfig};
use crate::record::{FqanKey, RecordConfig, Units, VoMap};
pub use ini::Ini;
pub use warning::Warning;

/// Keys read from `[default]`; any other key there is reported as [`Warning::UnknownKey`].
const DEFAULT_KEYS: [&str; 10] = [
    "verbose",
    "site",
    "cloud_type",
    "cloud_compute_service",
    "fqan_key",
    "default_cpu_count",
    "apel_spool",
    "notebooks_db",
    "units",
    "max_records",
];

/// Keys read from `[prometheus]`; any other key there is reported as [`Warning::UnknownKey`].
const PROMETHEUS_KEYS: [&str; 10] = [
    "url", "user", "password", "token", "verify", "ca_cert", "timeout", "retries", "filter",
    "range",
];

/// Everything an accounting run needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// How records are built.
    pub records: RecordConfig,
    /// Message size limits.
    pub limits: Limits,
    /// How to reach Prometheus.
    pub prometheus: PrometheusConfig,
    /// Look-back range of the questions.
    pub range: LookBack,
    /// Label matchers of the questions.
    pub filter: Filter,
    /// APEL spool directory; `None` writes to standard output.
    pub spool: Option<PathBuf>,
    /// The notebooks database (`notebooks_db`): the Python tool's SQLite copy of the
    /// records, upserted by [`crate::job::run_with_db`]. Without the `notebooks-db` feature
    /// it is ignored with a warning.
    pub notebooks_db: Option<PathBuf>,
    /// Debug logging requested (`verbose = 1`).
    pub verbose: bool,
    /// What loading ignored or guessed, in the order found: the caller reports them (loading
    /// itself logs nothing, as it runs before logging is set up).
    pub warnings: Vec<Warning>,
}

fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(Error::Config(format!(
            "{key} = {other:?}: expected a boolean"
        ))),
    }
}

fn parse_num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
    v.trim()
        .parse()
        .map_err(|_| Error::Config(format!("{key} = {v:?}: expected a number")))
}

impl Config {
    /// Reads the INI file at `path` (if any) and the environment through `env`
    /// (pass `|k| std::env::var(k).ok()` for the process environment).
    ///
    /// A file that does not exist is read as empty, with [`Warning::MissingFile`], as the
    /// Python tool does; a file that exists but cannot be read is an
    /// [`Error::ConfigFile`].
    pub fn load(path: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let (text, missing) = match path {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => (text, None),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    (String::new(), Some(p.to_owned()))
                }
                Err(source) => {
                    return Err(Error::ConfigFile {
                        path: p.to_owned(),
                        source,
                    });
                }
            },
            None => (String::new(), None),
        };
        let mut config = Self::from_ini_str(&text, env)?;
        if let Some(path) = missing {
            config.warnings.insert(0, Warning::MissingFile { path });
        }
        Ok(config)
    }

    /// Reads INI text and the environment through `env`.
    pub fn from_ini_str(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let ini = Ini::parse(text)?;
        let mut warnings = Vec::new();
        for (section, known) in [("default", &DEFAULT_KEYS), ("prometheus", &PROMETHEUS_KEYS)] {
            for (key, _) in ini.items(section)? {
                if !known.contains(&key.as_str()) {
                    warnings.push(Warning::UnknownKey {
                        section: section.to_owned(),
                        key,
                    });
                }
            }
        }
        // Environment first, then the file, as the Python tool does.
        let lookup = |section: &str, key: &str, var: Option<&str>| -> Result<Option<String>> {
            if let Some(v) = var.and_then(&env) {
                return Ok(Some(v));
            }
            ini.get(section, key)
        };
        let text_opt = |section: &str, key: &str, var: Option<&str>| -> Result<Option<String>> {
            Ok(lookup(section, key, var)?
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()))
        };

        // As in the Python tool, any verbose value but a true one means "not verbose".
        let verbose = match lookup("default", "verbose", Some("VERBOSE"))? {
            Some(v) => parse_bool("verbose", &v).unwrap_or_else(|_| {
                warnings.push(Warning::VerboseNotBoolean { value: v });
                false
            }),
            None => false,
        };
        let defaults = RecordConfig::default();
        let site = lookup("default", "site", Some("SITENAME"))?.unwrap_or(defaults.site);
        if site.trim().is_empty() {
            return Err(Error::Config("site (SITENAME) must not be empty".into()));
        }
        let cloud_type =
            lookup("default", "cloud_type", Some("CLOUD_TYPE"))?.unwrap_or(defaults.cloud_type);
        let fqan_key = match text_opt("default", "fqan_key", Some("FQAN_KEY"))? {
            Some(k) => FqanKey::parse(&k)?,
            None => FqanKey::default(),
        };
        let default_cpu_count =
            text_opt("default", "default_cpu_count", Some("DEFAULT_CPU_COUNT"))?
                .map(|v| parse_num::<f64>("default_cpu_count", &v))
                .transpose()?;
        if let Some(c) = default_cpu_count
            && !(c.is_finite() && c > 0.0)
        {
            return Err(Error::Config(format!(
                "default_cpu_count = {c}: must be positive"
            )));
        }
        let units = match text_opt("default", "units", Some("UNITS"))? {
            Some(u) => Units::parse(&u)?,
            None => Units::default(),
        };
        let max_records = match text_opt("default", "max_records", Some("MAX_RECORDS"))? {
            Some(v) => NonZeroUsize::new(parse_num("max_records", &v)?)
                .ok_or_else(|| Error::Config("max_records must be at least 1".into()))?,
            None => Limits::default().max_records,
        };
        let notebooks_db =
            text_opt("default", "notebooks_db", Some("NOTEBOOKS_DB"))?.map(PathBuf::from);
        #[cfg(not(feature = "notebooks-db"))]
        if notebooks_db.is_some() {
            warnings.push(Warning::NotebooksDbIgnored);
        }
        let mut vo_map = VoMap::new();
        for (vo, values) in ini.items("VO")? {
            for (value, dropped) in vo_map.insert(&vo, &values.replace('\n', ","))? {
                warnings.push(Warning::VoValueTwice {
                    value,
                    dropped,
                    kept: vo.trim().to_owned(),
                });
            }
        }
        for (key, value) in [
            ("site", Some(site.trim())),
            ("cloud_type", Some(cloud_type.trim())),
            ("cloud_compute_service", None),
        ] {
            if let Some(v) = value {
                crate::apel::check_text(key, v, true).map_err(Error::Config)?;
            }
        }
        let records = RecordConfig {
            site: site.trim().to_owned(),
            cloud_type: cloud_type.trim().to_owned(),
            cloud_compute_service: text_opt("default", "cloud_compute_service", Some("SERVICE"))?
                .map(|v| crate::apel::check_text("cloud_compute_service", &v, false).map(|()| v))
                .transpose()
                .map_err(Error::Config)?,
            fqan_key,
            vo_map,
            default_cpu_count,
            units,
        };

        let url_text = text_opt("prometheus", "url", Some("PROMETHEUS_URL"))?
            .unwrap_or_else(|| "http://localhost:8080".to_owned());
        let url = Url::parse(&url_text)
            .map_err(|e| Error::Config(format!("prometheus url {url_text:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "prometheus url {url_text:?}: not http(s)"
            )));
        }
        let mut prometheus = PrometheusConfig::new(url);
        let user = text_opt("prometheus", "user", None)?;
        let password = lookup("prometheus", "password", None)?.unwrap_or_default();
        if user.is_none() && !password.is_empty() {
            warnings.push(Warning::PasswordWithoutUser);
        }
        let token = text_opt("prometheus", "token", Some("PROMETHEUS_TOKEN"))?;
        prometheus.auth = match (user, token) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "give either prometheus user or token, not both".into(),
                ));
            }
            (Some(user), None) => Auth::Basic {
                user,
                password: SecretString::from(password),
            },
            (None, Some(token)) => Auth::Bearer(SecretString::from(token)),
            (None, None) => Auth::None,
        };
        prometheus.ca_cert =
            text_opt("prometheus", "ca_cert", Some("PROMETHEUS_CA_CERT"))?.map(PathBuf::from);
        if let Some(v) = lookup("prometheus", "verify", Some("SSL_VERIFY"))? {
            // `verify = /path/ca.pem` (the requests convention) means: verify, with this CA.
            // Anything else that is not a boolean is refused rather than read as "off".
            match parse_bool("verify", &v) {
                Ok(b) => prometheus.verify_tls = b,
                Err(_) if Path::new(v.trim()).is_file() && prometheus.ca_cert.is_none() => {
                    prometheus.verify_tls = true;
                    prometheus.ca_cert = Some(PathBuf::from(v.trim()));
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(v) = text_opt("prometheus", "timeout", Some("PROMETHEUS_TIMEOUT"))? {
            let secs: f64 = parse_num("timeout", &v)?;
            prometheus.timeout = Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| Error::Config(format!("timeout = {v:?}: must be positive")))?;
        }
        if let Some(v) = text_opt("prometheus", "retries", Some("PROMETHEUS_RETRIES"))? {
            prometheus.retries = parse_num("retries", &v)?;
        }
        let filter = match lookup("prometheus", "filter", Some("FILTER"))? {
            Some(f) => Filter::new(f)?,
            None => Filter::default(),
        };
        let range = LookBack::parse(
            &text_opt("prometheus", "range", Some("RANGE"))?.unwrap_or_else(|| "24h".to_owned()),
        )?;
        let spool = text_opt("default", "apel_spool", Some("APEL_SPOOL"))?.map(PathBuf::from);

        Ok(Self {
            records,
            limits: Limits {
                max_records,
                ..Limits::default()
            },
            prometheus,
            range,
            filter,
            spool,
            notebooks_db,
            verbose,
            warnings,
        })
    }

    /// The window these settings ask about, evaluated at `at`.
    pub fn window(&self, at: Timestamp) -> Window {
        Window {
            at,
            range: self.range.clone(),
            filter: self.filter.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
