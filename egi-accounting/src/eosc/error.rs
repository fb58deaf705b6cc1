//! The EOSC job's error type.

use std::path::PathBuf;
use std::time::Duration;

/// `Result` with the EOSC job's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can make an EOSC accounting run fail. A failed run never advances the
/// timestamp file past a period that was not wholly accepted, and never sends again a
/// metric the API accepted ([`super::Progress`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration (INI file, environment, arguments) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The notebooks database could not be read.
    #[error("cannot read the notebooks database")]
    Database(#[source] crate::Error),

    /// No access token: the token endpoint refused the client or could not be reached.
    #[error("cannot get an access token")]
    Token(#[source] egi_checkin::Error),

    /// The EOSC accounting API could not be reached, or the connection broke.
    #[error("cannot reach the EOSC accounting API")]
    Connect(#[source] reqwest::Error),

    /// The EOSC accounting API did not answer in time: the metric may or may not have been
    /// stored (it is sent again by the next run).
    #[error("the EOSC accounting API did not answer within {0:?}")]
    Timeout(Duration),

    /// The EOSC accounting API refused a metric.
    #[error("the EOSC accounting API answered HTTP {status}: {message}")]
    Rejected {
        /// The HTTP status, such as 401 (token refused twice), 422 (unknown metric
        /// definition, bad period) or 500.
        status: u16,
        /// The API's `message`, or the start of its body.
        message: String,
    },

    /// The timestamp file or the record of metrics sent could not be read or written.
    #[error("{action} {path}")]
    Progress {
        /// What was being done, such as "cannot write timestamp file".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Whether retrying later may succeed: the API or the token endpoint unreachable, slow
    /// or overloaded (5xx, 429, 408). Configuration, refused metrics and refused credentials
    /// are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect(_) | Error::Timeout(_) => true,
            Error::Rejected { status, .. } => matches!(status, 500..=599 | 429 | 408),
            Error::Token(e) => e.is_transient(),
            _ => false,
        }
    }
}
