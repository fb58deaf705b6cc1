//! What `jupyterhub-singleuser` (JupyterHub 5.x/6.x, the program in every standard Jupyter
//! image) asks of its hub, so any standard image runs behind the gateway:
//!
//! - the OAuth provider browsers are sent to: `GET {base}hub/api/oauth2/authorize` (the
//!   gateway's session must be the server's owner; PKCE S256 honoured) and
//!   `POST {base}hub/api/oauth2/token` (the server authenticates with its own API token as
//!   the client secret, as `HubOAuth.token_for_code` does);
//! - `GET {base}hub/api/user` for the identity and scopes of a token (in [`super::hub_api`]);
//!   the OAuth access tokens handed out here are resolved by [`access_token_caller`];
//! - `POST {base}hub/api/users/{name}/activity` with the server's API token.
//!
//! Codes and access tokens are sealed with the gateway's key (purpose-bound, with an expiry),
//! so they survive a restart and work on any replica; a code is accepted once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::hub_api::api_error;
use super::scopes::{Filter, Scope, ScopeSet};
use super::servers::server_prefix;
use super::state::token_hash;
use super::{Caller, Gateway};

const CODE_PURPOSE: &str = "egi-gateway oauth code v1";
const TOKEN_PURPOSE: &str = "egi-gateway oauth access token v1";
/// How long an authorization code may wait for its exchange.
pub const CODE_TTL: Duration = Duration::from_secs(120);

/// Codes already exchanged (a code is single-use), forgotten once expired.
#[derive(Debug, Default)]
pub struct UsedCodes(Mutex<HashMap<String, Instant>>);

impl UsedCodes {
    /// Records `code`; false if it was used already.
    fn first_use(&self, code: &str) -> bool {
        let mut used = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        used.retain(|_, at| now.duration_since(*at) < CODE_TTL * 2);
        used.insert(token_hash(code), now).is_none()
    }
}

/// What a sealed code or access token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Grant {
    /// The hub user.
    user: String,
    /// The server the grant is for.
    server: String,
    /// The OAuth client (`jupyterhub-user-{user}[-{server}]`).
    client_id: String,
    /// The redirect URI the code was issued for.
    #[serde(default)]
    redirect_uri: String,
    /// The PKCE challenge (S256), if the client sent one.
    #[serde(default)]
    challenge: Option<String>,
}

/// The OAuth client id of a server, as JupyterHub names it.
pub fn client_id(user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("jupyterhub-user-{user}")
    } else {
        format!("jupyterhub-user-{user}-{server}")
    }
}

/// The authorization request.
#[derive(Debug, Deserialize)]
pub struct AuthorizeQuery {
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    response_type: String,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    code_challenge: Option<String>,
    #[serde(default)]
    code_challenge_method: Option<String>,
}

/// `GET {base}hub/api/oauth2/authorize`.
pub async fn authorize(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    uri: Uri,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    let base = gw.config.base_path().to_owned();
    let Some(session) = gw.cookies.session(&headers) else {
        let next: String = url::form_urlencoded::byte_serialize(
            uri.path_and_query().map_or("", |p| p.as_str()).as_bytes(),
        )
        .collect();
        return Redirect::to(&format!("{base}hub/login?next={next}")).into_response();
    };
    if q.response_type != "code" {
        return api_error(StatusCode::BAD_REQUEST, "response_type must be code");
    }
    // The client must be one of the session user's servers, and the redirect its callback:
    // the gateway shows no consent page, so only owners are let through.
    let Some(user) = gw.servers.user(&session.user) else {
        return api_error(StatusCode::FORBIDDEN, "unknown user");
    };
    let Some(server) = user
        .servers
        .keys()
        .find(|name| client_id(&user.user.name, name) == q.client_id)
        .cloned()
    else {
        return api_error(
            StatusCode::FORBIDDEN,
            "this server belongs to another user, or does not run",
        );
    };
    let callback = format!(
        "{}oauth_callback",
        server_prefix(&base, &user.user.name, &server)
    );
    // The callback path itself, or that path on the gateway's own origin: never another host
    // (a code sent elsewhere would be useless without the server's token, but still leaked).
    let own_origin = gw.config.public_url.origin().ascii_serialization();
    if q.redirect_uri != callback && q.redirect_uri != format!("{own_origin}{callback}") {
        return api_error(
            StatusCode::BAD_REQUEST,
            "redirect_uri does not match the client",
        );
    }
    match (&q.code_challenge, q.code_challenge_method.as_deref()) {
        (Some(_), Some("S256") | None) | (None, None) => {}
        _ => return api_error(StatusCode::BAD_REQUEST, "only PKCE S256 is supported"),
    }
    let grant = Grant {
        user: user.user.name,
        server,
        client_id: q.client_id,
        redirect_uri: q.redirect_uri.clone(),
        challenge: q.code_challenge,
    };
    let code = seal(&gw, CODE_PURPOSE, &grant, CODE_TTL);
    let mut target = match url::Url::parse(&format!("http://placeholder{}", q.redirect_uri)) {
        Ok(u) if q.redirect_uri.starts_with('/') => u,
        _ => match url::Url::parse(&q.redirect_uri) {
            Ok(u) => u,
            Err(_) => return api_error(StatusCode::BAD_REQUEST, "bad redirect_uri"),
        },
    };
    target.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = &q.state {
        target.query_pairs_mut().append_pair("state", state);
    }
    let location = if q.redirect_uri.starts_with('/') {
        format!("{}?{}", target.path(), target.query().unwrap_or_default())
    } else {
        target.to_string()
    };
    Redirect::to(&location).into_response()
}

/// The token request.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    client_id: String,
    client_secret: String,
    grant_type: String,
    code: String,
    #[serde(default)]
    redirect_uri: String,
    #[serde(default)]
    code_verifier: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// `POST {base}hub/api/oauth2/token`.
pub async fn token(State(gw): State<Arc<Gateway>>, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type != "authorization_code" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code",
        );
    }
    let Some(grant) = open::<Grant>(&gw, CODE_PURPOSE, &form.code) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code is invalid or expired",
        );
    };
    // The client authenticates with its server's API token.
    let hash = token_hash(&form.client_secret);
    let client_ok = gw
        .servers
        .server(&grant.user, &grant.server)
        .is_some_and(|s| s.has_token_hash(&hash));
    if form.client_id != grant.client_id || !client_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if !form.redirect_uri.is_empty() && form.redirect_uri != grant.redirect_uri {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match",
        );
    }
    if let Some(challenge) = &grant.challenge {
        let verifier = form.code_verifier.as_deref().unwrap_or("");
        let computed = base64_url(&Sha256::digest(verifier.as_bytes()));
        if &computed != challenge {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "PKCE verification failed",
            );
        }
    }
    if !gw.oauth_codes.first_use(&form.code) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code was used already",
        );
    }
    let ttl = gw.config.session_ttl();
    let access_token = seal(
        &gw,
        TOKEN_PURPOSE,
        &Grant {
            redirect_uri: String::new(),
            challenge: None,
            ..grant
        },
        ttl,
    );
    axum::Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
    }))
    .into_response()
}

/// The owner of an OAuth access token this gateway issued: the user, with access to that one
/// server.
pub fn access_token_caller(gw: &Gateway, token: &str) -> Option<Caller> {
    let grant = open::<Grant>(gw, TOKEN_PURPOSE, token)?;
    gw.servers.user(&grant.user)?;
    let mut scopes = ScopeSet::server(&grant.user, &grant.server);
    scopes.push(Scope {
        base: super::scopes::Base::ReadUsers,
        filter: Filter::User(grant.user.clone()),
    });
    Some(Caller::User {
        name: grant.user,
        scopes,
        server: None,
    })
}

/// `POST {base}hub/api/users/{name}/activity`: a server reports activity with its own token.
pub async fn activity(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let allowed = match gw.caller(&headers) {
        Some(Caller::User {
            name: owner,
            server: Some(_),
            ..
        }) => owner == name,
        Some(Caller::Service { scopes, .. }) => {
            scopes.permits(super::scopes::Base::AdminUsers, Some(&name), None)
        }
        _ => false,
    };
    if !allowed {
        gw.metrics.api_denied.inc();
        return api_error(
            StatusCode::FORBIDDEN,
            "only the user's servers report activity",
        );
    }
    #[derive(Deserialize)]
    struct Report {
        #[serde(default)]
        servers: HashMap<String, ServerActivity>,
    }
    #[derive(Deserialize)]
    struct ServerActivity {
        last_activity: chrono::DateTime<chrono::Utc>,
    }
    let Ok(report) = serde_json::from_slice::<Report>(&body) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "activity must be JSON with ISO 8601 times",
        );
    };
    for (server, a) in report.servers {
        if let Some(s) = gw.servers.server(&name, &server) {
            s.record_activity(a.last_activity);
        }
    }
    StatusCode::OK.into_response()
}

fn seal<T: Serialize>(gw: &Gateway, purpose: &str, value: &T, ttl: Duration) -> String {
    let payload = serde_json::to_vec(value).unwrap_or_default();
    gw.cookies.key().seal(purpose, &payload, ttl)
}

fn open<T: for<'de> Deserialize<'de>>(gw: &Gateway, purpose: &str, sealed: &str) -> Option<T> {
    let payload = gw.cookies.key().open(purpose, sealed).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// Unpadded URL-safe base64, as PKCE S256 uses.
fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_single_use() {
        let used = UsedCodes::default();
        assert!(used.first_use("abc"));
        assert!(!used.first_use("abc"));
        assert!(used.first_use("abd"));
    }

    #[test]
    fn pkce_s256_matches_pythons_hashlib() {
        // base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b'=')
        let verifier = "dBjftJeZ4CVP-mJ92ZjurUGg1OnRW0a1E6eyTiCsngVy";
        assert_eq!(
            base64_url(&Sha256::digest(verifier.as_bytes())),
            "dYwUwH84MdHfWHdL_ZNxMojoKDkCFxPAe0o84fzk_RY"
        );
    }

    #[test]
    fn client_ids_follow_jupyterhub() {
        assert_eq!(client_id("alice", ""), "jupyterhub-user-alice");
        assert_eq!(client_id("alice", "gpu"), "jupyterhub-user-alice-gpu");
    }
}
