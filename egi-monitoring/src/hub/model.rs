//! The hub's JSON models and the classification of its answers, without IO.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::Error;

/// A user as `GET /hub/api/users/{name}` describes it (the fields a probe needs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct User {
    /// The user name.
    pub name: String,
    /// Whether the user is an admin.
    #[serde(default)]
    pub admin: bool,
    /// The user's servers by name (`""` is the default server); only servers that exist
    /// (running, starting or stopping) are listed.
    #[serde(default)]
    pub servers: BTreeMap<String, Server>,
}

impl User {
    /// The server called `name` (`""`: the default server), if it exists.
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.get(name)
    }
}

/// One server of a user.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Server {
    /// Its name (`""`: the default server).
    #[serde(default)]
    pub name: String,
    /// Whether it answers (spawn finished and added to the proxy).
    #[serde(default)]
    pub ready: bool,
    /// `"spawn"` or `"stop"` while an action is pending.
    #[serde(default)]
    pub pending: Option<String>,
    /// Its URL path on the proxy, such as `/user/monitor/`.
    #[serde(default)]
    pub url: String,
    /// When it was started (ISO 8601).
    #[serde(default)]
    pub started: Option<String>,
    /// Its full URL (`https://hub.example/user/monitor/`), only when the hub knows its own
    /// public URL (`JupyterHub.public_url`).
    #[serde(default)]
    pub full_url: Option<String>,
    /// The options it was started with (a probe's run marker among them).
    #[serde(default)]
    pub user_options: serde_json::Value,
}

/// One route of the proxy (`GET /hub/api/proxy`).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ProxyRoute {
    /// Where the proxy sends it.
    pub(crate) target: String,
}

/// What `POST .../server` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartState {
    /// 201: the server is running already.
    Started,
    /// 202: the spawn goes on; follow the progress stream.
    Pending,
}

/// What `DELETE .../server` said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopState {
    /// 204: the server is stopped.
    Stopped,
    /// 202: the stop goes on.
    Pending,
}

/// The owner of a token, as `GET /hub/api/user` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TokenOwner {
    /// `user` or `service`.
    #[serde(default)]
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The token's scopes, as the hub expanded them.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `GET /hub/api/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Info {
    pub(crate) version: String,
}

/// Turns an unexpected HTTP answer into an error: 401/403 are [`Error::Unauthorized`],
/// 502/503/504 (the proxy cannot reach the hub) [`Error::Unavailable`], the rest
/// [`Error::Http`]. The message is the hub's JSON `message`, else the start of the body.
pub fn unexpected(what: &str, status: u16, body: &[u8]) -> Error {
    let message = body_message(status, body);
    match status {
        401 | 403 => Error::Unauthorized { status, message },
        502..=504 => Error::Unavailable {
            status,
            what: what.to_owned(),
            message,
        },
        _ => Error::Http {
            what: what.to_owned(),
            status,
            message,
        },
    }
}

/// The human part of an error body: JSON `message` (JupyterHub, jupyter_server), the
/// reason phrase for HTML pages, else the first 200 characters on one line.
pub fn body_message(status: u16, body: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(message) = json.get("message").and_then(|m| m.as_str())
        && !message.is_empty()
    {
        return message.to_owned();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() || text.starts_with('<') {
        return reason(status).to_owned();
    }
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &one_line[..cut]),
        None => one_line,
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "no message",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_model_with_default_and_named_servers() {
        let user: User = serde_json::from_str(
            r#"{"kind": "user", "name": "monitor", "admin": false, "groups": [],
                "server": "/user/monitor/", "pending": null,
                "servers": {"": {"name": "", "ready": true, "pending": null,
                                 "url": "/user/monitor/", "started": "2025-01-01T00:00:00Z",
                                 "progress_url": "/hub/api/users/monitor/server/progress"},
                            "b": {"name": "b", "ready": false, "pending": "stop",
                                  "url": "/user/monitor/b/"}}}"#,
        )
        .unwrap();
        assert!(user.server("").unwrap().ready);
        assert_eq!(user.server("").unwrap().url, "/user/monitor/");
        assert_eq!(user.server("b").unwrap().pending.as_deref(), Some("stop"));
        assert!(user.server("c").is_none());
        let bare: User = serde_json::from_str(r#"{"name": "x"}"#).unwrap();
        assert!(bare.servers.is_empty());
    }

    #[test]
    fn errors_are_classified_with_the_hubs_message() {
        let e = unexpected(
            "GET /hub/api/users/m",
            403,
            br#"{"status": 403, "message": "Missing or invalid credentials"}"#,
        );
        assert!(matches!(e, Error::Unauthorized { status: 403, .. }));
        assert_eq!(
            e.to_string(),
            "the hub rejected the API token (HTTP 403): Missing or invalid credentials"
        );
        let e = unexpected(
            "GET /hub/api/",
            503,
            b"<html><body>Service Unavailable</body></html>",
        );
        assert_eq!(
            e.to_string(),
            "the hub is unavailable (HTTP 503 from GET /hub/api/): Service Unavailable"
        );
        let e = unexpected(
            "POST /hub/api/users/m/server",
            500,
            br#"{"status": 500, "message": "Spawner failed to start [status=1]"}"#,
        );
        assert_eq!(
            e.to_string(),
            "POST /hub/api/users/m/server: HTTP 500: Spawner failed to start [status=1]"
        );
    }

    #[test]
    fn plain_bodies_are_cut_to_one_line() {
        assert_eq!(body_message(418, b"  short\n text "), "short text");
        let long = "x".repeat(300);
        assert_eq!(body_message(500, long.as_bytes()).len(), 203);
        assert_eq!(body_message(404, b""), "Not Found");
        assert_eq!(
            body_message(500, br#"{"message": ""}"#),
            r#"{"message": ""}"#
        );
    }
}
