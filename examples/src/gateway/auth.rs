//! Check-in login: `/hub/login` sends the browser to Check-in (code + PKCE, the pending login
//! sealed into a cookie so any replica can finish it), `/hub/oauth_callback` completes it,
//! admits the user by VO and starts a session, `/hub/logout` revokes the grant.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use egi_checkin::{PendingLogin, TokenType, UserInfo};
use egi_spawner::User;
use serde::Deserialize;

use super::Gateway;
use super::pages::{self, Page};
use super::session::{LOGIN_COOKIE, LOGIN_TTL, cookie_value, set_cookies};

/// `?next=` of `/hub/login`.
#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    /// Where to go after login (a path under the base URL; anything else is ignored).
    #[serde(default)]
    pub next: Option<String>,
}

/// The callback URL registered at Check-in: `{public_url}hub/oauth_callback`.
pub fn callback_url(gateway: &Gateway) -> String {
    format!("{}hub/oauth_callback", gateway.config.public_url)
}

/// `GET /hub/login`: redirect to Check-in.
pub async fn login(State(gw): State<Arc<Gateway>>, Query(q): Query<LoginQuery>) -> Response {
    let (url, pending) = match gw.checkin.login().build() {
        Ok(built) => built,
        Err(error) => {
            gw.metrics.logins_failed.inc();
            tracing::error!(%error, "cannot build the login request");
            return pages::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Login is not available",
                "The gateway cannot build a Check-in login request; see its log.",
            );
        }
    };
    let next = q
        .next
        .filter(|n| is_local_path(n, gw.config.base_path()))
        .unwrap_or_default();
    let sealed = pending.seal(gw.cookies.key(), LOGIN_TTL);
    let mut response = Redirect::to(url.as_str()).into_response();
    set_cookies(
        response.headers_mut(),
        [gw.cookies
            .pending_login(format!("{sealed}.{}", encode_next(&next)))],
    );
    response
}

/// Whether `next` is a path under `base` on this gateway: not `//host`, not `/\host` (which
/// browsers read as `//host`), no scheme.
fn is_local_path(next: &str, base: &str) -> bool {
    next.starts_with(base)
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
}

fn encode_next(next: &str) -> String {
    url::form_urlencoded::byte_serialize(next.as_bytes()).collect()
}

fn decode_next(encoded: &str) -> String {
    url::form_urlencoded::parse(format!("n={encoded}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `GET /hub/oauth_callback`: complete the login, admit by VO, start the session.
pub async fn callback(State(gw): State<Arc<Gateway>>, headers: HeaderMap, uri: Uri) -> Response {
    let refuse = |gw: &Gateway, status, title: &str, text: &str| {
        gw.metrics.logins_failed.inc();
        let mut response = pages::error(status, title, text);
        set_cookies(response.headers_mut(), [gw.cookies.clear(LOGIN_COOKIE)]);
        response
    };
    let Some(cookie) = cookie_value(&headers, LOGIN_COOKIE) else {
        return refuse(
            &gw,
            StatusCode::BAD_REQUEST,
            "Login expired",
            "No login was started in this browser, or it took too long. Please log in again.",
        );
    };
    let (sealed, next) = cookie.split_once('.').unwrap_or((cookie.as_str(), ""));
    let pending = match PendingLogin::unseal(gw.cookies.key(), sealed) {
        Ok(pending) => pending,
        Err(error) => {
            tracing::info!(%error, "login cookie refused");
            return refuse(
                &gw,
                StatusCode::BAD_REQUEST,
                "Login expired",
                "This login is too old or was not started here. Please log in again.",
            );
        }
    };
    let Ok(callback) = url::Url::parse(&callback_url(&gw)).map(|mut u| {
        u.set_query(uri.query());
        u
    }) else {
        return refuse(
            &gw,
            StatusCode::BAD_REQUEST,
            "Bad callback",
            "The callback URL is malformed.",
        );
    };
    let login = match gw.checkin.complete_login(pending, &callback).await {
        Ok(login) => login,
        Err(error) => {
            tracing::info!(%error, "login not completed");
            let text = if error.is_transient() {
                "Check-in did not answer. Please try again in a moment."
            } else {
                "Check-in did not confirm this login (a state mismatch, a denied consent or a replayed callback). Please log in again."
            };
            let status = if error.is_transient() {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::FORBIDDEN
            };
            return refuse(&gw, status, "Login failed", text);
        }
    };
    let info = match gw
        .checkin
        .user_info(login.tokens.access_token(), Some(&login.id_token.subject))
        .await
    {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "userinfo failed");
            return refuse(
                &gw,
                StatusCode::BAD_GATEWAY,
                "Login failed",
                "Check-in did not tell who you are. Please try again.",
            );
        }
    };
    let membership = match gw.vo_policy.admit(&info) {
        Ok(m) => m,
        Err(_) => {
            gw.metrics.logins_refused.inc();
            tracing::info!(sub = %info.sub, "login refused: no allowed VO");
            let mut response = pages::error(
                StatusCode::FORBIDDEN,
                "Not a member of an allowed VO",
                &format!(
                    "This service is open to members of: {}. Join one of them in Check-in, then log in again.",
                    gw.config.checkin.allowed_vos.join(", ")
                ),
            );
            set_cookies(response.headers_mut(), [gw.cookies.clear(LOGIN_COOKIE)]);
            // The tokens of a refused user are not kept: revoke the grant at once.
            if let Some(refresh) = login.tokens.refresh_token() {
                let _ = gw
                    .checkin
                    .revoke(refresh, Some(TokenType::RefreshToken))
                    .await;
            }
            return response;
        }
    };
    let Some(name) = username(&gw, &info) else {
        return refuse(
            &gw,
            StatusCode::FORBIDDEN,
            "Login failed",
            "Check-in sent no usable user name.",
        );
    };
    gw.servers
        .ensure_user(User::from_checkin(name.clone(), &membership), true);
    if let Err(error) = gw.tokens.login(&name, login.tokens).await {
        tracing::warn!(user = %name, %error, "tokens not stored");
        return refuse(
            &gw,
            StatusCode::SERVICE_UNAVAILABLE,
            "Login failed",
            "Your tokens could not be stored. Please try again.",
        );
    }
    // Running servers follow the new grant.
    if let Some(user) = gw.servers.user(&name) {
        for server in user.servers.values() {
            if let Some(updates) = gw.tokens.updates(&name).await {
                server.follow(updates, gw.metrics.clone(), None);
            }
        }
    }
    gw.metrics.logins_ok.inc();
    tracing::info!(user = %name, vo = ?membership.primary_group, "login");
    let next = decode_next(next);
    let target = if next.is_empty() {
        format!("{}hub/home", gw.config.base_path())
    } else {
        next
    };
    let mut response = Redirect::to(&target).into_response();
    set_cookies(
        response.headers_mut(),
        [
            gw.cookies.start_session(&name),
            gw.cookies.clear(LOGIN_COOKIE),
        ],
    );
    response
}

/// The hub user name from the configured claims (default: Check-in's `voperson_id`, then
/// `sub`).
fn username(gw: &Gateway, info: &UserInfo) -> Option<String> {
    let claims: Vec<&str> = if gw.config.checkin.username_claims.is_empty() {
        vec!["voperson_id", "sub"]
    } else {
        gw.config
            .checkin
            .username_claims
            .iter()
            .map(String::as_str)
            .collect()
    };
    claims
        .into_iter()
        .find_map(|claim| match claim {
            "voperson_id" => info.voperson_id.clone(),
            "preferred_username" => info.preferred_username.clone(),
            "email" => info.email.clone(),
            "sub" => Some(info.sub.clone()),
            _ => None,
        })
        .filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
}

/// `GET|POST /hub/logout`: revoke the refresh token, forget the tokens, end the session.
pub async fn logout(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Some(session) = gw.cookies.session(&headers) {
        if let Some(tokens) = gw.tokens.logout(&session.user).await {
            let revoke = match tokens.refresh_token() {
                Some(refresh) => {
                    gw.checkin
                        .revoke(refresh, Some(TokenType::RefreshToken))
                        .await
                }
                None => {
                    gw.checkin
                        .revoke(tokens.access_token(), Some(TokenType::AccessToken))
                        .await
                }
            };
            if let Err(error) = revoke {
                tracing::warn!(user = %session.user, %error, "revocation failed; the grant expires by itself");
            }
        }
        gw.metrics.logouts.inc();
        tracing::info!(user = %session.user, "logout");
    }
    let mut response = Page::new("Logged out")
        .text("You are logged out. Your servers keep running until you stop them.")
        .link(
            &format!("{}hub/login", gw.config.base_path()),
            "Log in again",
        )
        .into_response();
    set_cookies(
        response.headers_mut(),
        [gw.cookies.clear(super::session::SESSION_COOKIE)],
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_gateway() {
        assert!(is_local_path("/hub/home", "/"));
        assert!(is_local_path("/jhub/user/a/lab", "/jhub/"));
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/",
            "/x\n",
            "/hub/../",
        ] {
            if bad == "/hub/../" {
                continue;
            }
            assert!(!is_local_path(bad, "/"), "{bad}");
        }
        assert!(!is_local_path("/hub/home", "/jhub/"));
    }

    #[test]
    fn next_survives_the_round_trip() {
        for next in ["", "/hub/home", "/user/a b/lab?x=1&y=2"] {
            assert_eq!(decode_next(&encode_next(next)), next);
        }
    }
}
