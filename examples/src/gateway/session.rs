//! Browser sessions and pending logins, both in cookies sealed with egi-checkin's
//! [`SealKey`] (encrypted and authenticated, with an expiry and a purpose, so a pending-login
//! cookie can never pass as a session): any replica holding the key can read them, and a
//! restart loses nothing.

use std::time::Duration;

use axum::http::HeaderMap;
use axum::http::header::{COOKIE, SET_COOKIE};
use cookie::{Cookie, SameSite};
use egi_checkin::SealKey;
use serde::{Deserialize, Serialize};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "egi-gateway-session";
/// The pending-login cookie's name (lives for the round trip to Check-in).
pub const LOGIN_COOKIE: &str = "egi-gateway-login";
/// How long a login round trip may take.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);

const SESSION_PURPOSE: &str = "egi-gateway session v1";

/// What a session cookie holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The hub user name.
    pub user: String,
}

/// Seals and opens the gateway's cookies.
#[derive(Debug)]
pub struct Cookies {
    key: SealKey,
    /// Cookie path: the base URL.
    path: String,
    /// Set `Secure` (the public URL is https).
    secure: bool,
    session_ttl: Duration,
}

impl Cookies {
    /// Cookies under `base_path`, `Secure` when `secure`.
    pub fn new(key: SealKey, base_path: &str, secure: bool, session_ttl: Duration) -> Self {
        Cookies {
            key,
            path: base_path.to_owned(),
            secure,
            session_ttl,
        }
    }

    /// The key (for pending logins).
    pub fn key(&self) -> &SealKey {
        &self.key
    }

    /// A `Set-Cookie` value starting a session for `user`.
    pub fn start_session(&self, user: &str) -> String {
        let payload = serde_json::to_vec(&Session {
            user: user.to_owned(),
        })
        .unwrap_or_default();
        let sealed = self.key.seal(SESSION_PURPOSE, &payload, self.session_ttl);
        self.cookie(SESSION_COOKIE, sealed, Some(self.session_ttl))
    }

    /// The session in `headers`, if a cookie is there and valid (not forged, not expired).
    pub fn session(&self, headers: &HeaderMap) -> Option<Session> {
        let sealed = cookie_value(headers, SESSION_COOKIE)?;
        let payload = self.key.open(SESSION_PURPOSE, &sealed).ok()?;
        serde_json::from_slice(&payload).ok()
    }

    /// A `Set-Cookie` value holding a sealed pending login.
    pub fn pending_login(&self, sealed: String) -> String {
        self.cookie(LOGIN_COOKIE, sealed, Some(LOGIN_TTL))
    }

    /// `Set-Cookie` values that remove `name`.
    pub fn clear(&self, name: &str) -> String {
        self.cookie(name, String::new(), Some(Duration::ZERO))
    }

    fn cookie(&self, name: &str, value: String, max_age: Option<Duration>) -> String {
        let mut c = Cookie::build((name.to_owned(), value))
            .path(self.path.clone())
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Lax);
        if let Some(age) = max_age {
            c = c.max_age(cookie::time::Duration::seconds(
                i64::try_from(age.as_secs()).unwrap_or(i64::MAX),
            ));
        }
        c.build().to_string()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

/// Adds `Set-Cookie` headers.
pub fn set_cookies(headers: &mut HeaderMap, cookies: impl IntoIterator<Item = String>) {
    for c in cookies {
        if let Ok(value) = c.parse() {
            headers.append(SET_COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookies() -> Cookies {
        Cookies::new(SealKey::generate(), "/", false, Duration::from_secs(60))
    }

    fn request_with(set_cookie: &str) -> HeaderMap {
        let pair = set_cookie.split(';').next().unwrap();
        let mut h = HeaderMap::new();
        h.insert(COOKIE, pair.parse().unwrap());
        h
    }

    #[test]
    fn a_session_round_trips_and_is_http_only() {
        let c = cookies();
        let set = c.start_session("alice");
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax"),
            "{set}"
        );
        assert_eq!(c.session(&request_with(&set)).unwrap().user, "alice");
    }

    #[test]
    fn forged_or_foreign_cookies_give_no_session() {
        let c = cookies();
        let set = c.start_session("alice");
        let mut forged = set.split(';').next().unwrap().to_owned();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        assert!(c.session(&request_with(&forged)).is_none());
        // Another gateway's key.
        assert!(cookies().session(&request_with(&set)).is_none());
        // A pending-login cookie is not a session.
        let sealed = c.key().seal("egi-checkin pending login", b"{}", LOGIN_TTL);
        let login = format!("{SESSION_COOKIE}={sealed}");
        assert!(c.session(&request_with(&login)).is_none());
    }
}
