//! The sender's error type.

use std::path::PathBuf;
use std::time::Duration;

/// `Result` with the sender's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can stop the sender, or keep one message in the spool.
///
/// [`Error::is_transient`] says whether a retry may succeed (the run retries those with
/// back-off); [`Error::is_message_specific`] whether only the message at hand is refused, so
/// the run keeps that element and goes on with the next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sender configuration (`sender.cfg`, arguments) is invalid.
    #[error("invalid sender configuration: {0}")]
    Config(String),

    /// A file could not be read (configuration, certificate, key).
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The host certificate or key could not be parsed.
    #[error("cannot load {what} from {path}")]
    Credentials {
        /// "certificate" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// OpenSSL's reason.
        #[source]
        source: openssl::error::ErrorStack,
    },

    /// The host certificate has expired or expires within a day (SSM refuses it too).
    #[error("certificate {path} has expired or expires within a day (not after {not_after})")]
    CertificateExpired {
        /// The certificate file.
        path: PathBuf,
        /// Its `notAfter` date, as OpenSSL prints it.
        not_after: String,
    },

    /// The private key is not the key of the host certificate.
    #[error("key {key} does not match certificate {certificate}")]
    KeyMismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
    },

    /// Signing (S/MIME) or setting up TLS failed inside OpenSSL.
    #[error("OpenSSL failed to {0}")]
    OpenSsl(&'static str, #[source] openssl::error::ErrorStack),

    /// A spool operation failed (list, lock, read, remove).
    #[error("{action} {path}")]
    Spool {
        /// What was being done, such as "cannot lock spool element".
        action: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },

    /// A spool element cannot be sent as it is (SSM decodes bodies as ASCII); it stays in
    /// the spool, unlocked, for an operator to look at.
    #[error("spool element {name} is corrupt: {reason}")]
    CorruptElement {
        /// The element, `<dir>/<name>`.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The broker could not be reached (connection refused, DNS, TLS handshake).
    #[error("cannot connect to {broker}")]
    Connect {
        /// `host:port` or URL.
        broker: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },

    /// The broker did not answer in time (connection, receipt, HTTP request).
    #[error("{what} within {after:?}")]
    Timeout {
        /// What did not come, such as "no receipt for 5f3c1a00/5f3c1a2b0a1b21".
        what: String,
        /// How long the sender waited.
        after: Duration,
    },

    /// The STOMP connection broke, or the broker spoke something that is not STOMP.
    #[error("STOMP connection to {broker} failed: {reason}")]
    Stomp {
        /// `host:port`.
        broker: String,
        /// What happened.
        reason: String,
    },

    /// The STOMP broker answered with an `ERROR` frame (refused login or destination).
    #[error("STOMP broker refused: {message}")]
    BrokerRefused {
        /// The frame's `message` header, and its body if any.
        message: String,
    },

    /// An HTTP request to AMS failed before an answer (connection, TLS, timeout).
    #[error("request to AMS failed")]
    AmsRequest(#[source] reqwest::Error),

    /// AMS answered with an error status.
    #[error("AMS answered HTTP {status}: {message}")]
    Ams {
        /// The HTTP status code.
        status: u16,
        /// AMS' error message, or the start of the body.
        message: String,
    },

    /// AMS answered 200 with a body that is not what its API documents.
    #[error("malformed AMS response: {0}")]
    MalformedAmsResponse(String),
}

impl Error {
    /// Whether a retry may succeed: the broker unreachable, slow, overloaded (HTTP 5xx, 408,
    /// 429) or the connection broken. Credentials, configuration, refusals and corrupt data
    /// are permanent.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Timeout { .. } | Error::Stomp { .. } => true,
            Error::AmsRequest(e) => !e.is_builder(),
            Error::Ams { status, .. } => *status >= 500 || *status == 408 || *status == 429,
            _ => false,
        }
    }

    /// Whether only the message at hand was refused (corrupt, or too large for AMS: HTTP
    /// 413): the run keeps its element and goes on with the next one.
    pub fn is_message_specific(&self) -> bool {
        matches!(
            self,
            Error::CorruptElement { .. } | Error::Ams { status: 413, .. }
        )
    }

    pub(crate) fn spool(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Spool {
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
        let ams = |status| Error::Ams {
            status,
            message: String::new(),
        };
        assert!(ams(500).is_transient());
        assert!(ams(503).is_transient());
        assert!(ams(408).is_transient());
        assert!(ams(429).is_transient());
        assert!(!ams(401).is_transient());
        assert!(!ams(404).is_transient());
        assert!(!ams(413).is_transient());
        assert!(ams(413).is_message_specific());
        assert!(!ams(503).is_message_specific());
        let timeout = Error::Timeout {
            what: "no receipt".into(),
            after: Duration::from_secs(1),
        };
        assert!(timeout.is_transient());
        assert!(!timeout.is_message_specific());
        let refused = Error::BrokerRefused {
            message: "access refused".into(),
        };
        assert!(!refused.is_transient());
        let corrupt = Error::CorruptElement {
            name: "x/y".into(),
            reason: "not ASCII".into(),
        };
        assert!(!corrupt.is_transient());
        assert!(corrupt.is_message_specific());
        assert!(!Error::Config("x".into()).is_transient());
    }
}
