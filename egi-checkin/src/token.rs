//! Tokens: the [`TokenSet`] a login yields and a refresh renews, and the pure parsing of
//! token endpoint answers.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{Endpoint, Error, Result};
use crate::http::{Answer, describe_json_error, json_answer};

/// The rounding of `expires_in` to whole seconds, taken off every lifetime.
const ROUNDING: Duration = Duration::from_secs(1);

/// The tokens of one identity: an access token, usually a refresh token and an ID token,
/// and when the access token expires (computed from the time the request was sent, which
/// is before the provider made the answer, and its `expires_in`, never from the token's
/// own claims).
///
/// `Debug` shows no token value.
#[derive(Clone)]
pub struct TokenSet {
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    id_token: Option<SecretString>,
    expires_at: Option<SystemTime>,
    lifetime: Option<Duration>,
    scope: Option<String>,
    subject: Option<String>,
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("subject", &self.subject)
            .finish()
    }
}

impl TokenSet {
    /// A set holding only an access token valid for `lifetime` from `received_at` (or of
    /// unknown lifetime if `None`).
    pub fn new(
        access_token: SecretString,
        received_at: SystemTime,
        lifetime: Option<Duration>,
    ) -> Self {
        Self {
            access_token,
            refresh_token: None,
            id_token: None,
            expires_at: lifetime.map(|l| received_at + l),
            lifetime,
            scope: None,
            subject: None,
        }
    }

    /// Adds a refresh token.
    #[must_use]
    pub fn with_refresh_token(mut self, refresh_token: SecretString) -> Self {
        self.refresh_token = Some(refresh_token);
        self
    }

    /// The access token.
    pub fn access_token(&self) -> &SecretString {
        &self.access_token
    }

    /// The refresh token, if any.
    pub fn refresh_token(&self) -> Option<&SecretString> {
        self.refresh_token.as_ref()
    }

    /// The raw ID token (a JWT), if any. It was validated when received.
    pub fn id_token(&self) -> Option<&SecretString> {
        self.id_token.as_ref()
    }

    /// When the access token expires, if the provider said.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// The access token's lifetime as the provider gave it (`expires_in`).
    pub fn lifetime(&self) -> Option<Duration> {
        self.lifetime
    }

    /// The granted scope, if the provider said.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The `sub` of the validated ID token the session started with.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Whether the access token is expired at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    pub(crate) fn set_subject(&mut self, subject: Option<String>) {
        self.subject = subject;
    }

    /// The set built from a token endpoint answer to a request sent at `received_at`. The
    /// refresh token, ID token, scope and subject of `previous` are kept when the answer carries
    /// none (a refresh answer may omit the refresh token: the old one stays valid).
    ///
    /// `expires_in` is whole seconds of the provider's clock floored to the second, so the
    /// token may live up to a second less: that second is taken off the lifetime.
    pub(crate) fn from_response(
        response: TokenResponse,
        received_at: SystemTime,
        previous: Option<&TokenSet>,
    ) -> Self {
        let lifetime = response
            .expires_in
            .map(|l| if l > ROUNDING { l - ROUNDING } else { l / 2 });
        Self {
            access_token: response.access_token,
            refresh_token: response
                .refresh_token
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            id_token: response
                .id_token
                .or_else(|| previous.and_then(|p| p.id_token.clone())),
            expires_at: lifetime.map(|l| received_at + l),
            lifetime,
            scope: response
                .scope
                .or_else(|| previous.and_then(|p| p.scope.clone())),
            subject: previous.and_then(|p| p.subject.clone()),
        }
    }

    /// Serializes the set to JSON (for [`crate::TokenStore`] implementations); the result
    /// holds the token values, so it is returned as a secret.
    pub fn to_json(&self) -> SecretString {
        let stored = Stored {
            version: 1,
            access_token: self.access_token.expose_secret().to_owned(),
            refresh_token: self
                .refresh_token
                .as_ref()
                .map(|t| t.expose_secret().to_owned()),
            id_token: self.id_token.as_ref().map(|t| t.expose_secret().to_owned()),
            expires_at: self.expires_at.map(unix_seconds),
            lifetime: self.lifetime.map(|l| l.as_secs_f64()),
            scope: self.scope.clone(),
            subject: self.subject.clone(),
        };
        let json = serde_json::to_string(&stored).unwrap_or_default();
        drop(stored);
        SecretString::from(json)
    }

    /// Reads a set written by [`TokenSet::to_json`].
    pub fn from_json(json: &str) -> Result<Self, serde_json::Error> {
        let stored: Stored = serde_json::from_str(json)?;
        Ok(Self {
            access_token: SecretString::from(stored.access_token.clone()),
            refresh_token: stored.refresh_token.clone().map(SecretString::from),
            id_token: stored.id_token.clone().map(SecretString::from),
            expires_at: stored
                .expires_at
                .and_then(|s| UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(s).ok()?)),
            lifetime: stored
                .lifetime
                .and_then(|s| Duration::try_from_secs_f64(s).ok()),
            scope: stored.scope.clone(),
            subject: stored.subject.clone(),
        })
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The persisted form; token strings are wiped on drop.
#[derive(Serialize, Deserialize)]
struct Stored {
    version: u32,
    access_token: String,
    refresh_token: Option<String>,
    id_token: Option<String>,
    expires_at: Option<f64>,
    lifetime: Option<f64>,
    scope: Option<String>,
    subject: Option<String>,
}

impl Drop for Stored {
    fn drop(&mut self) {
        self.access_token.zeroize();
        self.refresh_token.zeroize();
        self.id_token.zeroize();
    }
}

/// A successful token endpoint answer (RFC 6749 section 5.1, RFC 8693 section 2.2.1).
pub(crate) struct TokenResponse {
    pub(crate) access_token: SecretString,
    pub(crate) token_type: String,
    pub(crate) expires_in: Option<Duration>,
    pub(crate) refresh_token: Option<SecretString>,
    pub(crate) id_token: Option<SecretString>,
    pub(crate) scope: Option<String>,
    pub(crate) issued_token_type: Option<String>,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.is_some())
            .field("id_token", &self.id_token.is_some())
            .field("scope", &self.scope)
            .field("issued_token_type", &self.issued_token_type)
            .finish()
    }
}

#[derive(Deserialize)]
struct RawTokenResponse {
    access_token: SecretString,
    token_type: String,
    #[serde(default)]
    expires_in: Option<serde_json::Number>,
    #[serde(default)]
    refresh_token: Option<SecretString>,
    #[serde(default)]
    id_token: Option<SecretString>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    issued_token_type: Option<String>,
}

/// Parses a token endpoint answer. `Bearer` (any case) is required unless
/// `allow_other_type` (token exchange may answer `N_A`). A non-positive or absent
/// `expires_in` gives an unknown lifetime.
pub(crate) fn parse_token_response(
    answer: &Answer,
    allow_other_type: bool,
) -> Result<TokenResponse> {
    let raw: RawTokenResponse = json_answer(Endpoint::Token, answer)?;
    if !allow_other_type && !raw.token_type.eq_ignore_ascii_case("bearer") {
        return Err(Error::malformed(
            Endpoint::Token,
            format!("token_type {:?} is not Bearer", raw.token_type),
        ));
    }
    if raw.access_token.expose_secret().is_empty() {
        return Err(Error::malformed(Endpoint::Token, "empty access_token"));
    }
    let expires_in = match raw.expires_in {
        None => None,
        Some(n) => {
            let secs = n
                .as_f64()
                .ok_or_else(|| Error::malformed(Endpoint::Token, "expires_in is not a number"))?;
            (secs > 0.0)
                .then(|| Duration::try_from_secs_f64(secs).ok())
                .flatten()
        }
    };
    let non_empty = |t: Option<SecretString>| t.filter(|t| !t.expose_secret().is_empty());
    Ok(TokenResponse {
        access_token: raw.access_token,
        token_type: raw.token_type,
        expires_in,
        refresh_token: non_empty(raw.refresh_token),
        id_token: non_empty(raw.id_token),
        scope: raw.scope,
        issued_token_type: raw.issued_token_type,
    })
}

/// Maps an error of the refresh grant: `invalid_grant` (expired, revoked or replayed
/// refresh token, revoked grant) means the user must log in again.
pub(crate) fn refresh_error(e: Error) -> Error {
    match e {
        Error::OAuth {
            code, description, ..
        } if code == "invalid_grant" => Error::LoginRequired {
            reason: description.unwrap_or(code),
        },
        e => e,
    }
}

/// Parses a JSON body without echoing it in the error.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    endpoint: Endpoint,
    body: &[u8],
) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::malformed(endpoint, describe_json_error(&e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn parses_a_keycloak_answer() {
        let r = parse_token_response(
            &answer(
                200,
                r#"{"access_token":"at","expires_in":3600,"refresh_expires_in":0,"refresh_token":"rt",
                    "token_type":"Bearer","id_token":"x.y.z","not-before-policy":0,"scope":"openid profile"}"#,
            ),
            false,
        )
        .expect("valid answer");
        assert_eq!(r.access_token.expose_secret(), "at");
        assert_eq!(r.expires_in, Some(Duration::from_secs(3600)));
        assert_eq!(
            r.refresh_token.as_ref().map(|t| t.expose_secret()),
            Some("rt")
        );
        assert_eq!(r.scope.as_deref(), Some("openid profile"));
        assert!(!format!("{r:?}").contains("\"rt\""));
    }

    #[test]
    fn rejects_what_is_not_a_bearer_token_answer() {
        for body in [
            r#"{"token_type":"Bearer"}"#,
            r#"{"access_token":"at","token_type":"mac"}"#,
            r#"{"access_token":"","token_type":"bearer"}"#,
            r#"{"access_token":"at","token_type":"bearer","expires_in":"soon"}"#,
            "not json",
        ] {
            assert!(
                matches!(
                    parse_token_response(&answer(200, body), false),
                    Err(Error::Malformed { .. })
                ),
                "{body}"
            );
        }
        let r = parse_token_response(
            &answer(200, r#"{"access_token":"a","token_type":"N_A"}"#),
            true,
        )
        .expect("exchange answers may carry N_A");
        assert_eq!(r.token_type, "N_A");
    }

    #[test]
    fn absent_or_zero_lifetime_is_unknown() {
        for body in [
            r#"{"access_token":"a","token_type":"bearer"}"#,
            r#"{"access_token":"a","token_type":"bearer","expires_in":0}"#,
        ] {
            assert_eq!(
                parse_token_response(&answer(200, body), false)
                    .map(|r| r.expires_in)
                    .ok(),
                Some(None)
            );
        }
    }

    #[test]
    fn refresh_keeps_the_old_refresh_token_when_none_comes() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut old = TokenSet::new("a0".into(), t0, Some(Duration::from_secs(60)))
            .with_refresh_token("r0".into());
        old.set_subject(Some("alice".into()));
        let parse = |body| parse_token_response(&answer(200, body), false).expect("valid");
        let t1 = t0 + Duration::from_secs(50);
        let kept = TokenSet::from_response(
            parse(r#"{"access_token":"a1","token_type":"Bearer","expires_in":60}"#),
            t1,
            Some(&old),
        );
        assert_eq!(kept.refresh_token().map(|t| t.expose_secret()), Some("r0"));
        assert_eq!(
            kept.expires_at(),
            Some(t1 + Duration::from_secs(59)),
            "a second of rounding off"
        );
        assert_eq!(kept.subject(), Some("alice"));
        let rotated = TokenSet::from_response(
            parse(
                r#"{"access_token":"a2","token_type":"Bearer","expires_in":60,"refresh_token":"r2"}"#,
            ),
            t1,
            Some(&old),
        );
        assert_eq!(
            rotated.refresh_token().map(|t| t.expose_secret()),
            Some("r2")
        );
    }

    #[test]
    fn json_round_trip() {
        let t0 = UNIX_EPOCH + Duration::from_millis(1_700_000_000_250);
        let mut set = TokenSet::new("a".into(), t0, Some(Duration::from_secs(2)))
            .with_refresh_token("r".into());
        set.set_subject(Some("sub".into()));
        let back = TokenSet::from_json(set.to_json().expose_secret()).expect("round trip");
        assert_eq!(back.access_token().expose_secret(), "a");
        assert_eq!(back.refresh_token().map(|t| t.expose_secret()), Some("r"));
        assert_eq!(back.expires_at(), set.expires_at());
        assert_eq!(back.subject(), Some("sub"));
        assert!(!format!("{back:?}").contains("\"a\""));
    }

    #[test]
    fn invalid_grant_means_log_in_again() {
        let e = refresh_error(Error::OAuth {
            endpoint: Endpoint::Token,
            status: 400,
            code: "invalid_grant".into(),
            description: Some("grant request is invalid".into()),
        });
        assert!(e.needs_login());
        let e = refresh_error(Error::Http {
            endpoint: Endpoint::Token,
            status: 503,
        });
        assert!(!e.needs_login() && e.is_transient());
    }
}
