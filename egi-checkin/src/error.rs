//! The crate's error type.

use std::sync::Arc;
use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which endpoint of the provider a request went to (for error messages; never a URL, which
/// could carry secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// `/.well-known/openid-configuration`.
    Discovery,
    /// The JSON Web Key Set (`jwks_uri`).
    Jwks,
    /// The token endpoint (every grant, token exchange included).
    Token,
    /// The device authorization endpoint (RFC 8628).
    DeviceAuthorization,
    /// The userinfo endpoint.
    UserInfo,
    /// The introspection endpoint (RFC 7662).
    Introspection,
    /// The revocation endpoint (RFC 7009).
    Revocation,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Endpoint::Discovery => "discovery",
            Endpoint::Jwks => "JWKS",
            Endpoint::Token => "token",
            Endpoint::DeviceAuthorization => "device authorization",
            Endpoint::UserInfo => "userinfo",
            Endpoint::Introspection => "introspection",
            Endpoint::Revocation => "revocation",
        })
    }
}

/// Everything that can go wrong talking to EGI Check-in or managing tokens.
///
/// Classify with [`Error::needs_login`] (the grant is gone: send the user through a login
/// flow again; never retried) and [`Error::is_transient`] (network trouble or an overloaded
/// provider: retrying later may succeed). The error is cheap to clone, so that every task
/// waiting on one shared refresh receives the same error.
///
/// Messages never contain token values.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (an issuer URL, a client option).
    #[error("invalid configuration: {0}")]
    Config(String),

    /// The provider does not advertise an endpoint that this operation needs.
    #[error("the provider advertises no {0} endpoint")]
    MissingEndpoint(Endpoint),

    /// The provider could not be reached, or the connection broke.
    #[error("cannot reach the {endpoint} endpoint")]
    Transport {
        /// The endpoint.
        endpoint: Endpoint,
        /// The transport error (its URL removed).
        #[source]
        source: Arc<reqwest::Error>,
    },

    /// The provider did not answer within the configured timeout.
    #[error("the {endpoint} endpoint did not answer within {timeout:?}")]
    Timeout {
        /// The endpoint.
        endpoint: Endpoint,
        /// The configured timeout.
        timeout: Duration,
    },

    /// The provider answered with a redirect, which is never followed (a redirected token
    /// request could leak credentials to another host).
    #[error(
        "the {endpoint} endpoint answered with a redirect (HTTP {status}), which is not followed"
    )]
    Redirect {
        /// The endpoint.
        endpoint: Endpoint,
        /// The 3xx status.
        status: u16,
    },

    /// The provider answered with an HTTP error status and no OAuth error body.
    #[error("the {endpoint} endpoint answered HTTP {status}")]
    Http {
        /// The endpoint.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
    },

    /// The provider refused the request with an OAuth error (RFC 6749 section 5.2) that does
    /// not mean "log in again".
    #[error("the {endpoint} endpoint refused the request: {code}{}", description_suffix(description.as_deref()))]
    OAuth {
        /// The endpoint.
        endpoint: Endpoint,
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code, such as `invalid_client` or `invalid_scope`.
        code: String,
        /// The provider's `error_description`, if any.
        description: Option<String>,
    },

    /// The grant is gone (the refresh token is invalid, expired or revoked, the grant was
    /// revoked, or there is no refresh token): the user must log in again. Never retried.
    #[error("log in again: {reason}")]
    LoginRequired {
        /// Why, such as the provider's `invalid_grant` description.
        reason: String,
    },

    /// The provider's answer is not what the protocol says (not JSON, fields missing).
    #[error("malformed answer from the {endpoint} endpoint: {message}")]
    Malformed {
        /// The endpoint.
        endpoint: Endpoint,
        /// What is wrong (never the body, which may hold tokens).
        message: String,
    },

    /// An ID token failed validation (signature, algorithm, issuer, audience, expiry or
    /// nonce).
    #[error("invalid ID token: {0}")]
    IdToken(String),

    /// A refreshed ID token names another subject than the one the session started with.
    #[error("the refreshed ID token is for another subject")]
    SubjectChanged,

    /// The userinfo answer names another subject than the one expected (the ID token's).
    #[error("the userinfo answer is for another subject than the ID token")]
    UserInfoSubject,

    /// The `state` of an authorization response does not match the pending login (a forged
    /// or replayed callback).
    #[error("the state of the authorization response does not match the pending login")]
    StateMismatch,

    /// The authorization response carries an error instead of a code.
    #[error("authorization failed: {code}{}", description_suffix(description.as_deref()))]
    Authorization {
        /// The OAuth `error` code, such as `access_denied`.
        code: String,
        /// The provider's `error_description`, if any.
        description: Option<String>,
    },

    /// The user denied a device authorization request.
    #[error("the user denied the device authorization")]
    AccessDenied,

    /// The device code expired before the user approved it.
    #[error("the device code expired before the user approved it")]
    DeviceCodeExpired,

    /// The user is in none of the allowed VOs.
    #[error("the user is in none of the allowed VOs")]
    NotAuthorized,

    /// A claim the username policy needs is missing.
    #[error("the user info lacks the {0} claim")]
    MissingClaim(&'static str),

    /// The token store failed.
    #[error("token store: cannot {action}")]
    Store {
        /// What was being done, such as "write /var/lib/tokens/ab12.tokens".
        action: String,
        /// Why.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },

    /// A stored token file cannot be decrypted: wrong key, or it was tampered with.
    #[error("token file {0} cannot be decrypted (wrong key or tampered with)")]
    Decrypt(std::path::PathBuf),

    /// A sealed value ([`crate::SealKey::open`], [`crate::PendingLogin::unseal`]) cannot be
    /// opened: malformed, tampered with (or sealed with another key or purpose), or expired.
    /// For a pending login, send the user through a new login.
    #[error("cannot open the sealed value")]
    Seal(#[from] crate::seal::SealError),

    /// A background refresh task ended without a result (it panicked or the runtime is
    /// shutting down).
    #[error("the refresh task ended without a result")]
    RefreshAborted,
}

fn description_suffix(description: Option<&str>) -> String {
    description.map(|d| format!(" ({d})")).unwrap_or_default()
}

impl Error {
    /// Whether retrying later may succeed: the provider unreachable or slow, HTTP 5xx or 429,
    /// or the OAuth errors `server_error` and `temporarily_unavailable`.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Transport { .. } | Error::Timeout { .. } | Error::RefreshAborted => true,
            Error::Http { status, .. } => *status >= 500 || *status == 429,
            Error::OAuth { code, status, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(code.as_str(), "server_error" | "temporarily_unavailable")
            }
            _ => false,
        }
    }

    /// Whether a request that failed this way may be sent again at once because the
    /// provider did not process it: the connection could not be made, or the provider
    /// answered HTTP 5xx or 429 (or `server_error` / `temporarily_unavailable`). A timeout
    /// or a connection broken after the request was sent is transient but not replayable:
    /// the provider may have acted on the request (and used up a rotating refresh token).
    pub fn is_replayable(&self) -> bool {
        match self {
            Error::Transport { source, .. } => source.is_connect(),
            Error::Http { .. } | Error::OAuth { .. } => self.is_transient(),
            _ => false,
        }
    }

    /// Whether the user must log in again (the grant is gone). Such errors are never retried.
    pub fn needs_login(&self) -> bool {
        matches!(self, Error::LoginRequired { .. })
    }

    /// A store error, for [`crate::TokenStore`] implementations.
    pub fn store(
        action: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Store {
            action: action.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn malformed(endpoint: Endpoint, message: impl Into<String>) -> Self {
        Error::Malformed {
            endpoint,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let http = |status| Error::Http {
            endpoint: Endpoint::Token,
            status,
        };
        assert!(http(500).is_transient());
        assert!(http(503).is_transient());
        assert!(http(429).is_transient());
        assert!(!http(400).is_transient());
        assert!(!http(404).is_transient());
        let oauth = |code: &str, status| Error::OAuth {
            endpoint: Endpoint::Token,
            status,
            code: code.into(),
            description: None,
        };
        assert!(oauth("temporarily_unavailable", 400).is_transient());
        assert!(!oauth("invalid_client", 401).is_transient());
        assert!(oauth("too_many_requests", 429).is_transient());
        let login = Error::LoginRequired {
            reason: "grant request is invalid".into(),
        };
        assert!(login.needs_login());
        assert!(!login.is_transient());
        assert!(!http(503).needs_login());
        assert!(http(503).is_replayable() && http(429).is_replayable());
        assert!(oauth("temporarily_unavailable", 400).is_replayable());
        let timeout = Error::Timeout {
            endpoint: Endpoint::Token,
            timeout: Duration::from_secs(1),
        };
        assert!(timeout.is_transient() && !timeout.is_replayable());
        assert!(!Error::RefreshAborted.is_replayable());
    }

    #[test]
    fn messages_include_descriptions_once() {
        let e = Error::OAuth {
            endpoint: Endpoint::Token,
            status: 400,
            code: "invalid_scope".into(),
            description: Some("scope foo is unknown".into()),
        };
        assert_eq!(
            e.to_string(),
            "the token endpoint refused the request: invalid_scope (scope foo is unknown)"
        );
        let e = Error::Redirect {
            endpoint: Endpoint::Token,
            status: 302,
        };
        assert!(e.to_string().contains("HTTP 302"));
        // A userinfo for someone else involves no refreshed ID token.
        assert_eq!(
            Error::UserInfoSubject.to_string(),
            "the userinfo answer is for another subject than the ID token"
        );
        assert!(!Error::UserInfoSubject.to_string().contains("refreshed"));
    }
}
