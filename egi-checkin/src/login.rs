//! Login flows: authorization code with PKCE (S256), state and nonce for web applications,
//! and the device authorization flow (RFC 8628) for the command line.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::client::CheckinClient;
use crate::error::{Endpoint, Error, Result};
use crate::grants;
use crate::http::json_answer;
use crate::id_token::IdTokenInfo;
use crate::seal::{SealError, SealKey};
use crate::token::TokenSet;

/// A completed login: tokens and the validated ID token's claims.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Login {
    /// The tokens (the subject of the ID token recorded in them).
    pub tokens: TokenSet,
    /// The validated ID token.
    pub id_token: IdTokenInfo,
}

/// Builds the authorization request of the code flow; see [`CheckinClient::login`].
#[derive(Debug)]
#[must_use]
pub struct LoginBuilder {
    client: CheckinClient,
    scopes: Vec<String>,
    extra: Vec<(String, String)>,
}

impl LoginBuilder {
    /// Replaces the scopes (default: the client's).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Adds a parameter such as `login_hint` or `prompt`.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// The URL to send the browser to, and the pending login to keep (server side) until
    /// the callback comes back.
    pub fn build(self) -> Result<(Url, PendingLogin)> {
        let redirect_uri = self
            .client
            .inner
            .redirect_uri
            .clone()
            .ok_or_else(|| Error::Config("the code flow needs a redirect URI".into()))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = CsrfToken::new_random();
        let nonce = Nonce::new_random();
        let mut url = self.client.inner.endpoints.authorization.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", self.client.client_id())
                .append_pair("redirect_uri", redirect_uri.as_str())
                .append_pair("scope", &self.scopes.join(" "))
                .append_pair("state", state.secret())
                .append_pair("nonce", nonce.secret())
                .append_pair("code_challenge", challenge.as_str())
                .append_pair("code_challenge_method", challenge.method().as_str());
            for (k, v) in &self.extra {
                q.append_pair(k, v);
            }
        }
        let pending = PendingLogin {
            state: SecretString::from(state.secret().clone()),
            nonce,
            verifier: SecretString::from(verifier.secret().clone()),
            redirect_uri,
        };
        Ok((url, pending))
    }
}

/// What the code flow must remember between the redirect and the callback. `Debug` shows
/// no secret.
pub struct PendingLogin {
    state: SecretString,
    nonce: Nonce,
    verifier: SecretString,
    redirect_uri: Url,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingLogin")
            .field("redirect_uri", &self.redirect_uri.as_str())
            .finish_non_exhaustive()
    }
}

/// The purpose a pending login is sealed for (see [`crate::SealKey`]).
const PENDING_LOGIN_PURPOSE: &str = "egi-checkin pending login v1";

/// The sealed form of a [`PendingLogin`]; token strings are wiped on drop.
#[derive(serde::Serialize, Deserialize)]
struct SealedPending {
    state: String,
    nonce: String,
    verifier: String,
    redirect_uri: String,
}

impl Drop for SealedPending {
    fn drop(&mut self) {
        use secrecy::zeroize::Zeroize;
        self.state.zeroize();
        self.nonce.zeroize();
        self.verifier.zeroize();
    }
}

impl PendingLogin {
    /// Seals the pending login (state, nonce, PKCE verifier, redirect URI) with `key`, to be
    /// completed within `ttl`, possibly by another process or replica holding the same key:
    /// put the string in a short-lived, `HttpOnly`, `Secure`, `SameSite=Lax` cookie, and
    /// [`PendingLogin::unseal`] it when the callback comes back. Nothing is kept server-side.
    pub fn seal(&self, key: &SealKey, ttl: Duration) -> String {
        let sealed = SealedPending {
            state: self.state.expose_secret().to_owned(),
            nonce: self.nonce.secret().clone(),
            verifier: self.verifier.expose_secret().to_owned(),
            redirect_uri: self.redirect_uri.as_str().to_owned(),
        };
        let json =
            secrecy::zeroize::Zeroizing::new(serde_json::to_vec(&sealed).unwrap_or_default());
        key.seal(PENDING_LOGIN_PURPOSE, &json, ttl)
    }

    /// Opens a pending login sealed by [`PendingLogin::seal`]; [`Error::Seal`] if it was
    /// tampered with, sealed with another key, or expired.
    pub fn unseal(key: &SealKey, sealed: &str) -> Result<Self> {
        let json = secrecy::zeroize::Zeroizing::new(key.open(PENDING_LOGIN_PURPOSE, sealed)?);
        let p: SealedPending = serde_json::from_slice(&json).map_err(|_| SealError::Malformed)?;
        let redirect_uri = Url::parse(&p.redirect_uri).map_err(|_| SealError::Malformed)?;
        Ok(Self {
            state: SecretString::from(p.state.clone()),
            nonce: Nonce::new(p.nonce.clone()),
            verifier: SecretString::from(p.verifier.clone()),
            redirect_uri,
        })
    }

    /// The `state` sent, to find this pending login when the callback arrives.
    pub fn state(&self) -> &SecretString {
        &self.state
    }

    /// Replaces the PKCE verifier (tests of the provider's PKCE check only).
    #[doc(hidden)]
    pub fn with_verifier(mut self, verifier: SecretString) -> Self {
        self.verifier = verifier;
        self
    }
}

/// The parameters of the redirect back from the provider.
pub(crate) struct Callback {
    code: Option<SecretString>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    iss: Option<String>,
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the callback URL's query (pure).
pub(crate) fn parse_callback(url: &Url) -> Callback {
    let mut c = Callback {
        code: None,
        state: None,
        error: None,
        error_description: None,
        iss: None,
    };
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "code" => c.code = Some(SecretString::from(v.into_owned())),
            "state" => c.state = Some(v.into_owned()),
            "error" => c.error = Some(v.into_owned()),
            "error_description" => c.error_description = Some(v.into_owned()),
            "iss" => c.iss = Some(v.into_owned()),
            _ => {}
        }
    }
    c
}

/// Checks the callback against the pending login (pure): the state must match, the issuer
/// (RFC 9207 `iss`) if present must be ours, and there must be a code.
pub(crate) fn check_callback(
    callback: Callback,
    pending: &PendingLogin,
    issuer: &Url,
) -> Result<SecretString> {
    let state_ok = callback
        .state
        .as_deref()
        .is_some_and(|s| constant_time_eq(s.as_bytes(), pending.state.expose_secret().as_bytes()));
    if !state_ok {
        return Err(Error::StateMismatch);
    }
    if callback
        .iss
        .as_deref()
        .is_some_and(|iss| iss != issuer.as_str())
    {
        return Err(Error::Authorization {
            code: "invalid_issuer".into(),
            description: Some("the callback comes from another issuer".into()),
        });
    }
    if let Some(code) = callback.error {
        return Err(Error::Authorization {
            code,
            description: callback.error_description,
        });
    }
    callback.code.ok_or_else(|| Error::Authorization {
        code: "invalid_request".into(),
        description: Some("the callback has no code".into()),
    })
}

impl CheckinClient {
    /// Starts an authorization code login (PKCE S256, state and nonce always sent).
    pub fn login(&self) -> LoginBuilder {
        LoginBuilder {
            scopes: self.inner.scopes.clone(),
            client: self.clone(),
            extra: Vec::new(),
        }
    }

    /// Completes a code login from the callback URL: checks the state, exchanges the code
    /// with the PKCE verifier and validates the ID token (nonce included).
    pub async fn complete_login(&self, pending: PendingLogin, callback: &Url) -> Result<Login> {
        let code = check_callback(
            parse_callback(callback),
            &pending,
            &self.inner.expect.issuer,
        )?;
        let form =
            grants::authorization_code(&code, pending.redirect_uri.as_str(), &pending.verifier);
        let (tokens, info) = self.token_grant(form, None, Some(&pending.nonce)).await?;
        let id_token = info.ok_or_else(|| {
            Error::malformed(Endpoint::Token, "no id_token (is openid in the scopes?)")
        })?;
        Ok(Login { tokens, id_token })
    }

    /// Starts a device login: the user opens [`DeviceAuthorization::verification_uri`] and
    /// types [`DeviceAuthorization::user_code`].
    pub async fn start_device_login(&self) -> Result<DeviceAuthorization> {
        let answer = self
            .post(
                Endpoint::DeviceAuthorization,
                grants::device_authorization(&self.inner.scopes),
            )
            .await?;
        let raw: RawDeviceAuthorization = json_answer(Endpoint::DeviceAuthorization, &answer)?;
        Ok(DeviceAuthorization {
            device_code: raw.device_code,
            user_code: raw.user_code,
            verification_uri: raw.verification_uri,
            verification_uri_complete: raw.verification_uri_complete,
            expires_in: Duration::from_secs(raw.expires_in),
            interval: Duration::from_secs(raw.interval.unwrap_or(5).max(1)),
        })
    }

    /// Polls the token endpoint until the user approves (a [`Login`]), denies
    /// ([`Error::AccessDenied`]) or the code expires ([`Error::DeviceCodeExpired`]).
    /// Transient errors ([`Error::is_transient`]: the provider unreachable, slow, HTTP 5xx)
    /// count as "not yet": polling goes on until the code expires.
    /// `sleep` waits between polls (`tokio::time::sleep` in programs; tests pass a
    /// function that returns at once). `slow_down` adds 5 s to the interval.
    pub async fn finish_device_login<S, F>(
        &self,
        device: &DeviceAuthorization,
        sleep: S,
    ) -> Result<Login>
    where
        S: Fn(Duration) -> F,
        F: Future<Output = ()>,
    {
        let mut interval = device.interval;
        let mut waited = Duration::ZERO;
        loop {
            if waited >= device.expires_in {
                return Err(Error::DeviceCodeExpired);
            }
            sleep(interval).await;
            waited += interval;
            match self
                .token_grant(grants::device_token(&device.device_code), None, None)
                .await
            {
                Ok((tokens, Some(id_token))) => return Ok(Login { tokens, id_token }),
                Ok((_, None)) => {
                    return Err(Error::malformed(
                        Endpoint::Token,
                        "no id_token (is openid in the scopes?)",
                    ));
                }
                Err(e) => match device_poll_step(e)? {
                    Poll::Pending => {}
                    Poll::SlowDown => interval += Duration::from_secs(5),
                },
            }
        }
    }
}

enum Poll {
    Pending,
    SlowDown,
}

/// What a device-flow polling error means (pure).
fn device_poll_step(e: Error) -> Result<Poll> {
    match &e {
        Error::OAuth { code, .. } => match code.as_str() {
            "authorization_pending" => Ok(Poll::Pending),
            "slow_down" => Ok(Poll::SlowDown),
            "access_denied" => Err(Error::AccessDenied),
            "expired_token" => Err(Error::DeviceCodeExpired),
            _ if e.is_transient() => transient(&e),
            _ => Err(e),
        },
        _ if e.is_transient() => transient(&e),
        _ => Err(e),
    }
}

/// A transient polling error (the provider unreachable, slow or overloaded): poll again,
/// until the device code expires.
fn transient(e: &Error) -> Result<Poll> {
    tracing::info!(error = %e, "device-flow poll failed; polling again");
    Ok(Poll::Pending)
}

#[derive(Deserialize)]
struct RawDeviceAuthorization {
    device_code: SecretString,
    user_code: String,
    verification_uri: Url,
    #[serde(default)]
    verification_uri_complete: Option<Url>,
    expires_in: u64,
    #[serde(default)]
    interval: Option<u64>,
}

/// A started device login.
#[derive(Clone)]
#[non_exhaustive]
pub struct DeviceAuthorization {
    device_code: SecretString,
    /// The code the user types.
    pub user_code: String,
    /// Where the user goes.
    pub verification_uri: Url,
    /// The same with the code filled in, if the provider gives it.
    pub verification_uri_complete: Option<Url>,
    /// How long the codes live.
    pub expires_in: Duration,
    /// How often to poll.
    pub interval: Duration,
}

impl fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceAuthorization")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri.as_str())
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> PendingLogin {
        PendingLogin {
            state: "st-1".into(),
            nonce: Nonce::new("n".into()),
            verifier: "v".into(),
            redirect_uri: Url::parse("http://127.0.0.1/cb").expect("valid"),
        }
    }

    fn issuer() -> Url {
        Url::parse("https://aai.egi.eu/auth/realms/egi").expect("valid")
    }

    fn check(query: &str) -> Result<SecretString> {
        let url = Url::parse(&format!("http://127.0.0.1/cb?{query}")).expect("valid");
        check_callback(parse_callback(&url), &pending(), &issuer())
    }

    #[test]
    fn callback_checks() {
        assert_eq!(
            check("code=c1&state=st-1")
                .map(|c| c.expose_secret().to_owned())
                .ok(),
            Some("c1".into())
        );
        assert!(matches!(
            check("code=c1&state=st-2"),
            Err(Error::StateMismatch)
        ));
        assert!(matches!(check("code=c1"), Err(Error::StateMismatch)));
        assert!(matches!(
            check("code=c1&state=st-"),
            Err(Error::StateMismatch)
        ));
        assert!(matches!(
            check("error=access_denied&state=st-1"),
            Err(Error::Authorization { ref code, .. }) if code == "access_denied"
        ));
        assert!(matches!(
            check("state=st-1"),
            Err(Error::Authorization { .. })
        ));
        assert!(
            check("code=c&state=st-1&iss=https%3A%2F%2Faai.egi.eu%2Fauth%2Frealms%2Fegi").is_ok()
        );
        assert!(check("code=c&state=st-1&iss=https%3A%2F%2Fevil.example").is_err());
        assert!(!format!("{:?}", pending()).contains("st-1"));
    }

    #[test]
    fn a_sealed_pending_login_round_trips_and_rejects_tampering() {
        let key = SealKey::generate();
        let sealed = pending().seal(&key, Duration::from_secs(600));
        for secret in ["st-1", "\"v\""] {
            assert!(!sealed.contains(secret));
        }
        let back = PendingLogin::unseal(&key, &sealed).expect("unseal");
        assert_eq!(back.state.expose_secret(), "st-1");
        assert_eq!(back.nonce.secret(), "n");
        assert_eq!(back.verifier.expose_secret(), "v");
        assert_eq!(back.redirect_uri.as_str(), "http://127.0.0.1/cb");
        // The callback checks work on the unsealed login.
        let url = Url::parse("http://127.0.0.1/cb?code=c1&state=st-1").expect("valid");
        assert!(check_callback(parse_callback(&url), &back, &issuer()).is_ok());

        let other = SealKey::generate();
        assert!(matches!(
            PendingLogin::unseal(&other, &sealed),
            Err(Error::Seal(SealError::Tampered))
        ));
        // A value sealed for another purpose is not a pending login.
        let session = key.seal("session", b"{}", Duration::from_secs(600));
        assert!(matches!(
            PendingLogin::unseal(&key, &session),
            Err(Error::Seal(SealError::Tampered))
        ));
        let expired = pending().seal(&key, Duration::ZERO);
        assert!(matches!(
            PendingLogin::unseal(&key, &expired),
            Err(Error::Seal(SealError::Expired))
        ));
        assert!(matches!(
            PendingLogin::unseal(&key, "garbage"),
            Err(Error::Seal(SealError::Malformed))
        ));
    }

    #[test]
    fn device_polling_errors() {
        let oauth = |code: &str| Error::OAuth {
            endpoint: Endpoint::Token,
            status: 400,
            code: code.into(),
            description: None,
        };
        assert!(matches!(
            device_poll_step(oauth("authorization_pending")),
            Ok(Poll::Pending)
        ));
        assert!(matches!(
            device_poll_step(oauth("slow_down")),
            Ok(Poll::SlowDown)
        ));
        assert!(matches!(
            device_poll_step(oauth("access_denied")),
            Err(Error::AccessDenied)
        ));
        assert!(matches!(
            device_poll_step(oauth("expired_token")),
            Err(Error::DeviceCodeExpired)
        ));
        assert!(matches!(
            device_poll_step(oauth("invalid_client")),
            Err(Error::OAuth { .. })
        ));
        // Transient trouble is "not yet", not the end of the login.
        assert!(matches!(
            device_poll_step(oauth("temporarily_unavailable")),
            Ok(Poll::Pending)
        ));
        for status in [502, 503, 429] {
            assert!(matches!(
                device_poll_step(Error::Http {
                    endpoint: Endpoint::Token,
                    status,
                }),
                Ok(Poll::Pending)
            ));
        }
        assert!(matches!(
            device_poll_step(Error::Timeout {
                endpoint: Endpoint::Token,
                timeout: Duration::from_secs(1),
            }),
            Ok(Poll::Pending)
        ));
        assert!(matches!(
            device_poll_step(Error::Http {
                endpoint: Endpoint::Token,
                status: 400,
            }),
            Err(Error::Http { .. })
        ));
        assert!(
            constant_time_eq(b"abc", b"abc")
                && !constant_time_eq(b"abc", b"abd")
                && !constant_time_eq(b"ab", b"abc")
        );
    }
}
