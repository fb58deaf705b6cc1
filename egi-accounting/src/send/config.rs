//! The APEL SSM sender's configuration file (`sender.cfg`), read as SSM reads it, so an
//! operator keeps the file they have.
//!
//! Keys read (SSM's, from `conf/sender.cfg` and `ssm/agents.py`):
//!
//! | Section | Key | Meaning |
//! |---|---|---|
//! | `[sender]` | `protocol` | `STOMP` (the default when absent, as SSM) or `AMS` |
//! | `[broker]` | `host` | STOMP broker or AMS host name |
//! | `[broker]` | `port` | STOMP port (required for STOMP, ignored for AMS) |
//! | `[broker]` | `use_ssl` | STOMP over TLS with the host certificate (default `true`) |
//! | `[certificates]` | `certificate`, `key` | host certificate and key (PEM) that sign messages |
//! | `[certificates]` | `capath` | CA directory that verifies a TLS broker |
//! | `[messaging]` | `destination` | STOMP destination or AMS topic |
//! | `[messaging]` | `ams_project` | AMS project (required for AMS) |
//! | `[messaging]` | `token` | AMS token; without it one is obtained with the certificate |
//! | `[messaging]` | `path` | the dirq spool |
//! | `[messaging]` | `path_type` | `dirq` (the default); `directory` is not supported |
//!
//! Refused rather than ignored: `[certificates] server_cert` (SSM would encrypt messages
//! with it; sending them unencrypted instead would be a silent downgrade) and
//! `path_type: directory`. `[logging]` is ignored (logs go through `tracing`).
//!
//! Three keys of our own, for brokers SSM never met: `[broker] vhost` (the STOMP `host`
//! header, by default the broker host as stomp.py sends it; RabbitMQ takes it as the
//! virtual host), `[broker] authn_port` (the AMS certificate-to-token port, 8443 as in
//! argo-ams-library) and an AMS `host` given as a URL (`http://127.0.0.1:8080`, for tests).

use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use url::Url;

use super::error::{Error, Result};
use crate::config::ini::Ini;

/// Where and how messages go, from `sender.cfg`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SenderConfig {
    /// The dirq spool (`[messaging] path`).
    pub spool: PathBuf,
    /// The STOMP destination or AMS topic (`[messaging] destination`).
    pub destination: String,
    /// The host certificate, PEM (`[certificates] certificate`).
    pub certificate: PathBuf,
    /// The host key, PEM (`[certificates] key`).
    pub key: PathBuf,
    /// The CA directory (`[certificates] capath`), if any.
    pub capath: Option<PathBuf>,
    /// The broker.
    pub broker: Broker,
}

/// The messaging service messages are published to.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Broker {
    /// A STOMP broker (`protocol: STOMP`).
    Stomp(StompBroker),
    /// The ARGO Messaging Service (`protocol: AMS`).
    Ams(AmsBroker),
}

/// A STOMP broker's address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StompBroker {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS with the host certificate as client certificate.
    pub use_ssl: bool,
    /// The `host` header of `CONNECT` (a virtual host for RabbitMQ).
    pub vhost: String,
}

impl fmt::Display for StompBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// An AMS endpoint and project.
#[derive(Clone)]
#[non_exhaustive]
pub struct AmsBroker {
    /// Base URL (`https://<host>`).
    pub url: Url,
    /// The project (`accounting` in production).
    pub project: String,
    /// The token, if configured (otherwise one is obtained with the host certificate).
    pub token: Option<SecretString>,
    /// The port of the certificate-to-token service on the same host.
    pub authn_port: u16,
}

impl fmt::Debug for AmsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmsBroker")
            .field("url", &self.url.as_str())
            .field("project", &self.project)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("authn_port", &self.authn_port)
            .finish()
    }
}

/// argo-ams-library's default port of the authentication service.
pub const DEFAULT_AUTHN_PORT: u16 = 8443;

impl SenderConfig {
    /// Reads `sender.cfg`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_ini_str(&text)
    }

    /// Parses the text of a `sender.cfg` (pure).
    pub fn from_ini_str(text: &str) -> Result<Self> {
        let ini = Ini::parse(text).map_err(|e| Error::Config(e.to_string()))?;
        let get = |section: &str, key: &str| -> Result<Option<String>> {
            ini.get(section, key)
                .map_err(|e| Error::Config(e.to_string()))
                .map(|v| v.filter(|v| !v.is_empty()))
        };
        let need = |section: &str, key: &str| -> Result<String> {
            get(section, key)?.ok_or_else(|| Error::Config(format!("[{section}] {key} is missing")))
        };

        let protocol = get("sender", "protocol")?.unwrap_or_else(|| {
            tracing::warn!("no [sender] protocol: STOMP, as SSM");
            "STOMP".to_owned()
        });
        if let Some(server_cert) = get("certificates", "server_cert")? {
            return Err(Error::Config(format!(
                "[certificates] server_cert = {server_cert}: encrypting messages is not \
                 supported (remove the key to send them signed only)"
            )));
        }
        match get("messaging", "path_type")?.as_deref() {
            None | Some("dirq") => {}
            Some(other) => {
                return Err(Error::Config(format!(
                    "[messaging] path_type = {other}: only dirq spools are supported"
                )));
            }
        }
        let host = need("broker", "host")?;
        // SSM reads it whatever the protocol.
        let use_ssl = match get("broker", "use_ssl")? {
            None => true,
            Some(v) => parse_bool("[broker] use_ssl", &v)?,
        };
        let broker = match protocol.as_str() {
            "STOMP" => {
                let port = need("broker", "port")?;
                let port = port.parse().map_err(|_| {
                    Error::Config(format!("[broker] port = {port}: not a port number"))
                })?;
                let vhost = get("broker", "vhost")?.unwrap_or_else(|| host.clone());
                Broker::Stomp(StompBroker {
                    host,
                    port,
                    use_ssl,
                    vhost,
                })
            }
            "AMS" => {
                let url = if host.contains("://") {
                    Url::parse(&host)
                } else {
                    Url::parse(&format!("https://{host}"))
                }
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| Error::Config(format!("[broker] host = {host}: not a host")))?;
                let authn_port = match get("broker", "authn_port")? {
                    None => DEFAULT_AUTHN_PORT,
                    Some(p) => p.parse().map_err(|_| {
                        Error::Config(format!("[broker] authn_port = {p}: not a port number"))
                    })?,
                };
                Broker::Ams(AmsBroker {
                    url,
                    project: need("messaging", "ams_project")?,
                    token: get("messaging", "token")?.map(SecretString::from),
                    authn_port,
                })
            }
            other => {
                return Err(Error::Config(format!(
                    "[sender] protocol = {other}: must be STOMP or AMS"
                )));
            }
        };
        Ok(Self {
            spool: need("messaging", "path")?.into(),
            destination: need("messaging", "destination")?,
            certificate: need("certificates", "certificate")?.into(),
            key: need("certificates", "key")?.into(),
            capath: get("certificates", "capath")?.map(PathBuf::from),
            broker,
        })
    }
}

/// Python `configparser.getboolean`.
fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "true" | "on" => Ok(true),
        "0" | "no" | "false" | "off" => Ok(false),
        _ => Err(Error::Config(format!("{key} = {v}: not a boolean"))),
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    /// SSM's own `conf/sender.cfg` (apel/ssm), with a host filled in.
    const SSM_SENDER_CFG: &str = "\
[sender]
# Either 'STOMP' for STOMP message brokers or 'AMS' for Argo Messaging Service
protocol: AMS

[broker]
host: msg-devel.argo.grnet.gr
# 'port' is only used for STOMP sending.
port: 443
use_ssl: true

[certificates]
certificate: /etc/grid-security/hostcert.pem
key: /etc/grid-security/hostkey.pem
capath: /etc/grid-security/certificates
#server_cert: /etc/grid-security/servercert.pem

[messaging]
ams_project: accounting
destination: gLite-APEL
#token:
path: /var/spool/apel/outgoing
path_type: dirq

[logging]
logfile: /var/log/apel/ssmsend.log
level: INFO
console: true
";

    #[test]
    fn ssm_sample_configuration_means_the_same() {
        let c = SenderConfig::from_ini_str(SSM_SENDER_CFG).unwrap();
        assert_eq!(c.spool, Path::new("/var/spool/apel/outgoing"));
        assert_eq!(c.destination, "gLite-APEL");
        assert_eq!(c.certificate, Path::new("/etc/grid-security/hostcert.pem"));
        assert_eq!(c.key, Path::new("/etc/grid-security/hostkey.pem"));
        assert_eq!(
            c.capath.as_deref(),
            Some(Path::new("/etc/grid-security/certificates"))
        );
        let Broker::Ams(ams) = c.broker else {
            panic!("AMS expected")
        };
        assert_eq!(ams.url.as_str(), "https://msg-devel.argo.grnet.gr/");
        assert_eq!(ams.project, "accounting");
        assert!(ams.token.is_none());
        assert_eq!(ams.authn_port, DEFAULT_AUTHN_PORT);
    }

    #[test]
    fn stomp_is_the_default_protocol_and_needs_a_port() {
        let text = SSM_SENDER_CFG.replace("protocol: AMS\n", "");
        let c = SenderConfig::from_ini_str(&text).unwrap();
        assert_eq!(
            c.broker_stomp(),
            Some(&StompBroker {
                host: "msg-devel.argo.grnet.gr".into(),
                port: 443,
                use_ssl: true,
                vhost: "msg-devel.argo.grnet.gr".into(),
            })
        );
        let text = text
            .replace("port: 443\n", "")
            .replace("use_ssl: true", "use_ssl: off\nvhost: /");
        let err = SenderConfig::from_ini_str(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid sender configuration: [broker] port is missing"
        );
        let c =
            SenderConfig::from_ini_str(&text.replace("[broker]", "[broker]\nport=61613")).unwrap();
        let stomp = c.broker_stomp().unwrap();
        assert!(!stomp.use_ssl);
        assert_eq!(stomp.vhost, "/");
        assert_eq!(stomp.to_string(), "msg-devel.argo.grnet.gr:61613");
    }

    #[test]
    fn token_is_read_and_never_printed() {
        let text = SSM_SENDER_CFG.replace("#token:", "token: s3cr3t-token");
        let c = SenderConfig::from_ini_str(&text).unwrap();
        let Broker::Ams(ams) = &c.broker else {
            panic!("AMS expected")
        };
        assert_eq!(ams.token.as_ref().unwrap().expose_secret(), "s3cr3t-token");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("[redacted]"), "{debug}");
    }

    #[test]
    fn test_endpoints_as_urls() {
        let text = SSM_SENDER_CFG.replace(
            "host: msg-devel.argo.grnet.gr",
            "host: http://127.0.0.1:8080\nauthn_port: 8080",
        );
        let c = SenderConfig::from_ini_str(&text).unwrap();
        let Broker::Ams(ams) = &c.broker else {
            panic!("AMS expected")
        };
        assert_eq!(ams.url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(ams.authn_port, 8080);
    }

    #[test]
    fn what_would_change_the_meaning_is_refused_by_name() {
        let cases = [
            (
                "protocol: AMS",
                "protocol: KAFKA",
                "[sender] protocol = KAFKA",
            ),
            (
                "#server_cert: /etc",
                "server_cert: /etc",
                "encrypting messages is not supported",
            ),
            ("path_type: dirq", "path_type: directory", "only dirq"),
            (
                "ams_project: accounting\n",
                "",
                "[messaging] ams_project is missing",
            ),
            (
                "destination: gLite-APEL",
                "destination:",
                "destination is missing",
            ),
            (
                "path: /var/spool/apel/outgoing\n",
                "",
                "[messaging] path is missing",
            ),
            (
                "key: /etc/grid-security/hostkey.pem",
                "",
                "[certificates] key",
            ),
            (
                "host: msg-devel.argo.grnet.gr",
                "host: ftp://x",
                "not a host",
            ),
            ("use_ssl: true", "use_ssl: maybe", "not a boolean"),
            ("[logging]", "[logging]\n[logging]", "appears twice"),
        ];
        for (from, to, expected) in cases {
            let text = SSM_SENDER_CFG.replace(from, to);
            assert_ne!(text, SSM_SENDER_CFG, "{from}");
            let err = SenderConfig::from_ini_str(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{from} -> {to}: {err}");
        }
        let err = SenderConfig::load(Path::new("/nonexistent/sender.cfg")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/sender.cfg"), "{err}");
    }

    impl SenderConfig {
        fn broker_stomp(&self) -> Option<&StompBroker> {
            match &self.broker {
                Broker::Stomp(s) => Some(s),
                Broker::Ams(_) => None,
            }
        }
    }
}
