//! A loopback ARGO Messaging Service: the two routes a sender uses, with AMS' answers and
//! errors (as argo-messaging and argo-ams-library document them).
//!
//! - `POST /v1/projects/{project}/topics/{topic}:publish`: header `x-api-key` must be the
//!   token (else 401), the project and topic must exist (else 404 "Topic doesn't exist"), the
//!   body at most [`AmsOptions::max_body`] bytes (else 413 "Message size too large"); answers
//!   `{"messageIds":["1",...]}` and stores each message (its `empaid` and decoded data).
//! - `GET /v1/service-types/ams/hosts/{host}:authx509`: the token (`{"token":"..."}`), as the
//!   certificate-to-token service answers.
//!
//! [`AmsServer::fail_next`] makes the next publishes answer an error status (5xx) instead.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct AmsOptions {
    /// The token publishes need (and the authx509 route hands out).
    pub token: String,
    /// The project.
    pub project: String,
    /// The topics that exist.
    pub topics: Vec<String>,
    /// The largest publish body accepted.
    pub max_body: usize,
}

impl Default for AmsOptions {
    fn default() -> Self {
        Self {
            token: "test-token".to_owned(),
            project: "accounting".to_owned(),
            topics: vec!["eu-egi-cloud-accounting".to_owned()],
            max_body: 1_000_000,
        }
    }
}

/// A message the server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The topic.
    pub topic: String,
    /// The `empaid` attribute.
    pub empaid: Option<String>,
    /// The data, base64-decoded.
    pub data: Vec<u8>,
}

#[derive(Debug, Default)]
struct Inner {
    published: Vec<Published>,
    fail_next: VecDeque<u16>,
    publish_requests: usize,
    token_requests: usize,
}

#[derive(Debug, Clone)]
struct Shared {
    options: Arc<AmsOptions>,
    inner: Arc<Mutex<Inner>>,
}

/// A running loopback AMS; stops on drop.
#[derive(Debug)]
pub struct AmsServer {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

fn error(status: u16, message: &str, kind: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [("content-type", "application/json")],
        json!({"error": {"code": status, "message": message, "status": kind}}).to_string(),
    )
        .into_response()
}

async fn publish(
    State(s): State<Shared>,
    Path((project, topic_action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inner = s.inner.lock().expect("AMS state");
    inner.publish_requests += 1;
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(s.options.token.as_str()) {
        return error(401, "Unauthorized", "UNAUTHORIZED");
    }
    let Some(topic) = topic_action.strip_suffix(":publish") else {
        return error(404, "Not found", "NOT_FOUND");
    };
    if project != s.options.project || !s.options.topics.iter().any(|t| t == topic) {
        return error(404, "Topic doesn't exist", "NOT_FOUND");
    }
    if body.len() > s.options.max_body {
        return error(413, "Message size too large", "INVALID_ARGUMENT");
    }
    if let Some(status) = inner.fail_next.pop_front() {
        return error(status, "Service unavailable", "UNAVAILABLE");
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return error(400, "Invalid Message Arguments", "INVALID_ARGUMENT");
    };
    let Some(messages) = v["messages"].as_array() else {
        return error(400, "Invalid Message Arguments", "INVALID_ARGUMENT");
    };
    let mut accepted = Vec::new();
    for m in messages {
        let data = m["data"]
            .as_str()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok());
        let Some(data) = data else {
            return error(400, "Invalid Message Arguments", "INVALID_ARGUMENT");
        };
        accepted.push(Published {
            topic: topic.to_owned(),
            empaid: m["attributes"]["empaid"].as_str().map(str::to_owned),
            data,
        });
    }
    let first = inner.published.len();
    inner.published.extend(accepted);
    let ids: Vec<String> = (first..inner.published.len())
        .map(|i| (i + 1).to_string())
        .collect();
    (
        [("content-type", "application/json")],
        json!({"messageIds": ids}).to_string(),
    )
        .into_response()
}

async fn authx509(State(s): State<Shared>, Path(host): Path<String>) -> Response {
    s.inner.lock().expect("AMS state").token_requests += 1;
    if !host.ends_with(":authx509") {
        return error(404, "Not found", "NOT_FOUND");
    }
    (
        [("content-type", "application/json")],
        json!({"token": s.options.token}).to_string(),
    )
        .into_response()
}

impl AmsServer {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(options: AmsOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            options: Arc::new(options),
            inner: Arc::default(),
        };
        let app = Router::new()
            .route("/v1/projects/{project}/topics/{topic}", post(publish))
            .route("/v1/service-types/ams/hosts/{host}", get(authx509))
            .layer(DefaultBodyLimit::disable())
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port (the authx509 route is on the same one).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Makes the next publishes answer these statuses, in order, before any check but the
    /// token, topic and size.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.shared
            .inner
            .lock()
            .expect("AMS state")
            .fail_next
            .extend(statuses);
    }

    /// The messages accepted so far.
    pub fn published(&self) -> Vec<Published> {
        self.shared
            .inner
            .lock()
            .expect("AMS state")
            .published
            .clone()
    }

    /// How many publish requests came (accepted or not).
    pub fn publish_requests(&self) -> usize {
        self.shared
            .inner
            .lock()
            .expect("AMS state")
            .publish_requests
    }

    /// How many token requests came.
    pub fn token_requests(&self) -> usize {
        self.shared.inner.lock().expect("AMS state").token_requests
    }
}

impl Drop for AmsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
