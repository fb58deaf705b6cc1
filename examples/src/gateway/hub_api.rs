//! The subset of JupyterHub's REST API that egi-monitoring's `HubClient` (and so the
//! `monitor` and `probe` binaries) use: version, health, metrics, the token's owner, users,
//! default and named servers (start, stop, progress stream). Answers have JupyterHub's shapes
//! and status codes (201/202 on start, 204/202 on stop, `{status, message}` errors), and each
//! route checks JupyterHub's scope for it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::scopes::Base;
use super::servers::{Phase, Started, UserEntry, server_prefix};
use super::{Caller, Gateway};

/// The JupyterHub API version the gateway speaks (what `GET /hub/api/` says).
pub const API_VERSION: &str = "5.3.0";

/// A JupyterHub-shaped JSON error.
pub fn api_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "status": status.as_u16(), "message": message })),
    )
        .into_response()
}

/// The caller if it holds `needed` for `user`/`server`; else the 403 (or 401) to send.
fn authorize(
    gw: &Gateway,
    headers: &HeaderMap,
    needed: Base,
    user: Option<&str>,
    server: Option<&str>,
) -> Result<Caller, Box<Response>> {
    let Some(caller) = gw.caller(headers) else {
        gw.metrics.api_denied.inc();
        return Err(Box::new(api_error(
            StatusCode::FORBIDDEN,
            "a valid API token or login is required",
        )));
    };
    if caller.scopes().permits(needed, user, server) {
        Ok(caller)
    } else {
        gw.metrics.api_denied.inc();
        Err(Box::new(api_error(
            StatusCode::FORBIDDEN,
            "the token does not have the scope this action needs",
        )))
    }
}

/// `GET /hub/api/`.
pub async fn version() -> Json<Value> {
    Json(json!({ "version": API_VERSION }))
}

/// `GET /hub/health`.
pub async fn health() -> StatusCode {
    StatusCode::OK
}

/// `GET /hub/metrics` (scope `read:metrics`).
pub async fn metrics(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&gw, &headers, Base::ReadMetrics, None, None) {
        return *denied;
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        gw.metrics.render(gw.gauges()),
    )
        .into_response()
}

/// The JSON model of a user (JupyterHub's, with the fields probes read).
pub fn user_model(gw: &Gateway, user: &UserEntry) -> Value {
    let base = gw.config.base_path();
    let mut servers = serde_json::Map::new();
    for (name, s) in &user.servers {
        let phase = s.phase();
        if matches!(phase, Phase::Failed(_)) {
            continue;
        }
        servers.insert(
            name.clone(),
            json!({
                "name": name,
                "ready": phase == Phase::Running,
                "pending": match phase {
                    Phase::Starting => Some("spawn"),
                    Phase::Stopping => Some("stop"),
                    _ => None,
                },
                "url": server_prefix(base, &user.user.name, name),
                "started": s.started().map(|t| t.to_rfc3339()),
                "last_activity": s.last_activity().map(|t| t.to_rfc3339()),
                "user_options": s.user_options(),
            }),
        );
    }
    json!({
        "kind": "user",
        "name": user.user.name,
        "admin": gw.config.admin_users.contains(&user.user.name),
        "groups": user.user.groups,
        "server": user.servers.get("").filter(|s| s.phase() == Phase::Running)
            .map(|_| server_prefix(base, &user.user.name, "")),
        "pending": user.servers.get("").and_then(|s| match s.phase() {
            Phase::Starting => Some("spawn"),
            Phase::Stopping => Some("stop"),
            _ => None,
        }),
        "servers": servers,
    })
}

/// `GET /hub/api/user`: the token's owner and its scopes.
pub async fn whoami(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let Some(caller) = gw.caller(&headers) else {
        gw.metrics.api_denied.inc();
        return api_error(
            StatusCode::FORBIDDEN,
            "a valid API token or login is required",
        );
    };
    match caller {
        Caller::Service { name, scopes } => Json(json!({
            "kind": "service",
            "name": name,
            "scopes": scopes.names(),
        }))
        .into_response(),
        Caller::User {
            name,
            scopes,
            server,
        } => {
            let mut model = gw
                .servers
                .user(&name)
                .map(|u| user_model(&gw, &u))
                .unwrap_or_else(|| json!({ "kind": "user", "name": name }));
            model["scopes"] = json!(scopes.names());
            if let Some(server) = server {
                model["session_id"] = Value::Null;
                model["server_name"] = json!(server);
            }
            Json(model).into_response()
        }
    }
}

/// `GET /hub/api/users` (scope `list:users`).
pub async fn users(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorize(&gw, &headers, Base::ListUsers, None, None) {
        return *denied;
    }
    let all: Vec<Value> = gw
        .servers
        .users()
        .iter()
        .map(|u| user_model(&gw, u))
        .collect();
    Json(all).into_response()
}

/// `GET /hub/api/users/{name}` (scope `read:users`).
pub async fn user(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(denied) = authorize(&gw, &headers, Base::ReadUsers, Some(&name), None) {
        return *denied;
    }
    match gw.servers.user(&name) {
        Some(user) => Json(user_model(&gw, &user)).into_response(),
        None => api_error(StatusCode::NOT_FOUND, "no such user"),
    }
}

/// `POST /hub/api/users/{name}` (scope `admin:users`): a user without Check-in (a service's
/// probe user, for instance).
pub async fn create_user(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(denied) = authorize(&gw, &headers, Base::AdminUsers, Some(&name), None) {
        return *denied;
    }
    if name.is_empty() || name.len() > 255 || name.chars().any(|c| c.is_control() || c == '/') {
        return api_error(StatusCode::BAD_REQUEST, "invalid user name");
    }
    if gw.servers.user(&name).is_some() {
        return api_error(StatusCode::CONFLICT, "the user exists already");
    }
    gw.servers.ensure_user(
        egi_spawner::User {
            name: name.clone(),
            ..egi_spawner::User::default()
        },
        false,
    );
    let model = gw
        .servers
        .user(&name)
        .map(|u| user_model(&gw, &u))
        .unwrap_or(Value::Null);
    (StatusCode::CREATED, Json(model)).into_response()
}

/// `POST /hub/api/users/{name}/server` (scope `servers`).
pub async fn start_default(
    state: State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    start(state, headers, name, String::new(), body).await
}

/// `POST /hub/api/users/{name}/servers/{server}` (scope `servers`).
pub async fn start_named(
    state: State<Arc<Gateway>>,
    headers: HeaderMap,
    Path((name, server)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    start(state, headers, name, server, body).await
}

async fn start(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    name: String,
    server: String,
    body: axum::body::Bytes,
) -> Response {
    if let Err(denied) = authorize(&gw, &headers, Base::Servers, Some(&name), Some(&server)) {
        return *denied;
    }
    let options = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => map,
            _ => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "user options must be a JSON object",
                );
            }
        }
    };
    if gw.servers.user(&name).is_none() {
        return api_error(StatusCode::NOT_FOUND, "no such user");
    }
    match gw.start_server(&name, &server, options).await {
        Ok(Started::AlreadyRunning) => StatusCode::CREATED.into_response(),
        Ok(Started::Pending) => StatusCode::ACCEPTED.into_response(),
        Err(e) => api_error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// `DELETE /hub/api/users/{name}/server` (scope `servers`).
pub async fn stop_default(
    state: State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    stop(state, headers, name, String::new()).await
}

/// `DELETE /hub/api/users/{name}/servers/{server}` (scope `servers`).
pub async fn stop_named(
    state: State<Arc<Gateway>>,
    headers: HeaderMap,
    Path((name, server)): Path<(String, String)>,
) -> Response {
    stop(state, headers, name, server).await
}

/// How long a stop request waits before answering 202 instead of 204.
const STOP_WAIT: Duration = Duration::from_secs(5);

async fn stop(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    name: String,
    server: String,
) -> Response {
    if let Err(denied) = authorize(&gw, &headers, Base::Servers, Some(&name), Some(&server)) {
        return *denied;
    }
    if gw.servers.user(&name).is_none() {
        return api_error(StatusCode::NOT_FOUND, "no such user");
    }
    if gw.servers.server(&name, &server).is_none() {
        // JupyterHub: stopping a stopped server is a no-op.
        return StatusCode::NO_CONTENT.into_response();
    }
    let servers = gw.servers.clone();
    let stopping = tokio::spawn(async move { servers.stop(&name, &server).await });
    match tokio::time::timeout(STOP_WAIT, stopping).await {
        Ok(Ok(Ok(()))) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(Err(e))) => api_error(StatusCode::BAD_REQUEST, &e.to_string()),
        Ok(Err(_)) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "the stop failed"),
        Err(_) => StatusCode::ACCEPTED.into_response(),
    }
}

/// `GET /hub/api/users/{name}/server/progress` (scope `read:servers`).
pub async fn progress_default(
    state: State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    progress(&state, &headers, &name, "")
}

/// `GET /hub/api/users/{name}/servers/{server}/progress` (scope `read:servers`).
pub async fn progress_named(
    state: State<Arc<Gateway>>,
    headers: HeaderMap,
    Path((name, server)): Path<(String, String)>,
) -> Response {
    progress(&state, &headers, &name, &server)
}

fn progress(gw: &Gateway, headers: &HeaderMap, name: &str, server: &str) -> Response {
    if let Err(denied) = authorize(gw, headers, Base::ReadServers, Some(name), Some(server)) {
        return *denied;
    }
    let Some(events) = gw.servers.progress(name, server) else {
        return api_error(
            StatusCode::NOT_FOUND,
            "the server is not running or starting",
        );
    };
    let events = events.map(|e| Ok::<_, Infallible>(Event::default().data(e.to_sse_data())));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
