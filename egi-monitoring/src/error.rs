//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::outcome::Status;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can make a request to the hub, a kernel or BinderHub fail.
///
/// Probes turn errors into an [`Outcome`](crate::Outcome) with [`Error::status`]: faults of
/// the monitored service are CRITICAL, faults of the probe's own setup are UNKNOWN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The probe's configuration is invalid (URL, user name, notebook path...).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The service could not be reached, or the connection broke.
    #[error("cannot reach {service}")]
    Connect {
        /// What was being reached, such as "the hub" or "the kernel websocket".
        service: &'static str,
        /// Why.
        #[source]
        source: reqwest::Error,
    },

    /// A phase did not finish within its timeout.
    #[error("{phase} did not finish within {}", crate::outcome::seconds(*after))]
    Timeout {
        /// The phase, such as "start" or "execute".
        phase: String,
        /// Its timeout.
        after: Duration,
    },

    /// The hub rejected the API token (HTTP 401 or 403).
    #[error("the hub rejected the API token (HTTP {status}): {message}")]
    Unauthorized {
        /// 401 or 403.
        status: u16,
        /// The hub's message.
        message: String,
    },

    /// The hub is unavailable: the proxy answered 502, 503 or 504.
    #[error("the hub is unavailable (HTTP {status} from {what}): {message}")]
    Unavailable {
        /// The HTTP status.
        status: u16,
        /// The request, such as "GET /hub/api/users/monitor".
        what: String,
        /// The message of the body, or its start.
        message: String,
    },

    /// Any other unexpected HTTP status.
    #[error("{what}: HTTP {status}: {message}")]
    Http {
        /// The request, such as "POST /hub/api/users/monitor/server".
        what: String,
        /// The HTTP status.
        status: u16,
        /// The hub's `message`, or the start of the body.
        message: String,
    },

    /// A body that is not what the API promises.
    #[error("malformed answer to {what}: {message}")]
    Malformed {
        /// The request.
        what: String,
        /// What is wrong.
        message: String,
    },

    /// A body, event-stream line or websocket message exceeds its size limit (see
    /// [`limits`](crate::limits)).
    #[error("{what}: the answer exceeds {limit} bytes")]
    TooLarge {
        /// The request or stream, such as "GET /hub/api/users/monitor".
        what: String,
        /// The limit, in bytes.
        limit: usize,
    },

    /// The hub reported the spawn as failed on its progress stream.
    #[error("spawn failed: {0}")]
    SpawnFailed(String),

    /// The progress stream ended without a ready or failed event.
    #[error("the progress stream ended without a ready or failed event (last: {0})")]
    ProgressEnded(String),

    /// The kernel websocket failed.
    #[error("kernel websocket")]
    WebSocket(#[source] Box<tokio_tungstenite::tungstenite::Error>),

    /// The kernel websocket closed before the execution finished.
    #[error("the kernel websocket closed before the execution finished")]
    WebSocketClosed,

    /// The notebook file is not a valid nbformat 4 notebook.
    #[error("invalid notebook {path}: {message}")]
    Notebook {
        /// The notebook's path or name.
        path: String,
        /// What is wrong.
        message: String,
    },

    /// Notebook parameters that cannot be injected (a name that is not a Python
    /// identifier, a parameters document that is not a mapping...).
    #[error("invalid notebook parameters")]
    Parameters(#[from] crate::notebook::params::ParameterError),

    /// A file could not be read or written.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done, such as "read".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The probe status this error stands for: UNKNOWN when the probe itself is
    /// misconfigured ([`Error::Config`], [`Error::Notebook`], [`Error::Parameters`],
    /// [`Error::Io`]), CRITICAL for
    /// everything the monitored service did.
    pub fn status(&self) -> Status {
        match self {
            Self::Config(_) | Self::Notebook { .. } | Self::Parameters(_) | Self::Io { .. } => {
                Status::Unknown
            }
            _ => Status::Critical,
        }
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// The message with its sources, `outer: inner: innermost` (what a probe reports).
    pub fn report(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(err) = source {
            let s = err.to_string();
            // reqwest repeats its URL-bearing message at every level; keep new information.
            if !text.contains(&s) {
                text.push_str(": ");
                text.push_str(&s);
            }
            source = err.source();
        }
        text
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_separates_probe_faults_from_service_faults() {
        assert_eq!(Error::Config("x".into()).status(), Status::Unknown);
        assert_eq!(Error::SpawnFailed("x".into()).status(), Status::Critical);
        let timeout = Error::Timeout {
            phase: "start".into(),
            after: Duration::from_millis(1500),
        };
        assert!(timeout.is_timeout());
        assert_eq!(timeout.to_string(), "start did not finish within 1.5 s");
    }

    #[test]
    fn report_chains_sources_once() {
        let err = Error::Io {
            action: "read",
            path: "/x.ipynb".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(err.report(), "cannot read /x.ipynb: no such file");
    }
}
