//! The crate's error type.

use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can make an accounting run fail.
///
/// Use [`Error::is_transient`] to decide whether a later retry may succeed (the example
/// binary maps it to its exit code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration (INI file, environment, arguments) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// Prometheus could not be reached, or the connection broke.
    #[error("cannot reach Prometheus")]
    Connect(#[source] reqwest::Error),

    /// Prometheus did not answer within the configured timeout.
    #[error("Prometheus did not answer within {0:?}")]
    Timeout(std::time::Duration),

    /// Prometheus answered with an HTTP error status.
    #[error("Prometheus answered HTTP {status}: {message}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The error text of Prometheus' JSON body, or the start of the body.
        message: String,
    },

    /// Prometheus answered 200 but its body is not a valid query response.
    #[error("malformed Prometheus response: {0}")]
    MalformedResponse(String),

    /// Prometheus answered `"status": "error"`.
    #[error("Prometheus query failed ({error_type}): {message}")]
    Query {
        /// Prometheus' `errorType`, such as `bad_data` or `timeout`.
        error_type: String,
        /// Prometheus' `error`.
        message: String,
    },

    /// The OpenMetrics history could not be parsed.
    #[error("OpenMetrics line {line}: {message}")]
    OpenMetrics {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },

    /// A file or directory operation failed (snapshot file, spool, standard output).
    #[error("{action} {path}")]
    Io {
        /// What was being done, such as "cannot create spool directory".
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// The notebooks database (SQLite) could not be opened, read or written: nothing of
    /// the run was written to it.
    #[error("{action} {path}")]
    Database {
        /// What was being done, such as "cannot open notebooks database".
        action: &'static str,
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Whether retrying later may succeed: Prometheus unreachable, slow, overloaded (5xx,
    /// 429) or reporting a query timeout. Configuration, data and permission problems are
    /// permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect(_) | Error::Timeout(_) => true,
            Error::Http { status, .. } => *status >= 500 || *status == 429,
            Error::Query { error_type, .. } => {
                matches!(error_type.as_str(), "timeout" | "canceled" | "unavailable")
            }
            _ => false,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_failures_a_retry_can_fix_are_transient() {
        let http = |status| Error::Http {
            status,
            message: String::new(),
        };
        let query = |t: &str| Error::Query {
            error_type: t.to_owned(),
            message: String::new(),
        };
        assert!(http(500).is_transient());
        assert!(http(503).is_transient());
        assert!(http(429).is_transient());
        assert!(!http(400).is_transient());
        assert!(!http(401).is_transient());
        assert!(!http(422).is_transient());
        assert!(Error::Timeout(std::time::Duration::from_secs(1)).is_transient());
        assert!(query("timeout").is_transient());
        assert!(query("unavailable").is_transient());
        assert!(!query("bad_data").is_transient());
        assert!(!Error::MalformedResponse("x".into()).is_transient());
        assert!(!Error::Config("x".into()).is_transient());
        let io = Error::io(
            "cannot create spool directory",
            "/x",
            std::io::Error::other("denied"),
        );
        assert!(!io.is_transient());
        assert_eq!(io.to_string(), "cannot create spool directory /x");
    }
}
