//! A loopback EOSC accounting API (ARGO accounting-system): the route a metric producer
//! uses, with the API's answers and errors.
//!
//! - `POST /accounting-system/installations/{installation_id}/metrics`, JSON
//!   `{"metric_definition_id", "time_period_start", "time_period_end", "value"[, "user_id",
//!   "group_id"]}`: answers `201` with the metric and its `metric_id`, and stores it.
//! - `401` without a bearer token, or with one the OpenID provider does not call active
//!   (checked at its introspection endpoint when [`EoscApiOptions::introspection`] is set,
//!   else any non-empty token passes); `404` for an unknown installation; `422` for a body
//!   that is not such a metric (unknown metric definition, period not in Zulu time or
//!   ending before it starts, a value that is not a non-negative number). Errors are
//!   `{"code": N, "message": "..."}`.
//!
//! [`EoscApi::arm`] injects [`Fault`]s: error statuses, or slow answers.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// How tokens are checked: introspection at the OpenID provider, as a confidential client.
#[derive(Debug, Clone)]
pub struct Introspection {
    /// The introspection endpoint.
    pub url: String,
    /// The client introspecting.
    pub client_id: String,
    /// Its secret.
    pub client_secret: String,
}

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct EoscApiOptions {
    /// The installations that exist.
    pub installations: Vec<String>,
    /// The metric definitions that exist.
    pub metric_definitions: Vec<String>,
    /// How tokens are checked; `None`: any non-empty bearer token passes.
    pub introspection: Option<Introspection>,
}

/// A fault answered instead of the real answer, once per request while armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// No fault: this request is answered for real (to fail a later one).
    Pass,
    /// This status (such as 500 or 503) with an error body; nothing stored.
    Status(u16),
    /// 401 whatever the token (an expired or revoked token); nothing stored.
    Unauthorized,
    /// Waits this long, then 503; nothing stored.
    Slow(Duration),
}

/// A metric the server stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The installation.
    pub installation: String,
    /// The body as received.
    pub metric: Value,
}

#[derive(Debug, Default)]
struct Inner {
    stored: Vec<Stored>,
    faults: VecDeque<Fault>,
    requests: usize,
}

#[derive(Debug, Clone)]
struct Shared {
    options: Arc<EoscApiOptions>,
    inner: Arc<Mutex<Inner>>,
    http: reqwest::Client,
}

/// A running loopback EOSC accounting API; stops on drop.
#[derive(Debug)]
pub struct EoscApi {
    addr: SocketAddr,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [("content-type", "application/json")],
        json!({"code": status, "message": message}).to_string(),
    )
        .into_response()
}

fn is_zulu(v: &Value) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = v.as_str()?;
    if !text.ends_with('Z') {
        return None;
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// Why `m` is not a metric the API takes, if it is not.
fn invalid(m: &Value, options: &EoscApiOptions) -> Option<String> {
    let Some(obj) = m.as_object() else {
        return Some("the body is not a JSON object".into());
    };
    let definition = obj.get("metric_definition_id").and_then(Value::as_str);
    match definition {
        None => return Some("metric_definition_id may not be empty.".into()),
        Some(d) if !options.metric_definitions.iter().any(|x| x == d) => {
            return Some(format!(
                "There is no Metric Definition with the following id: {d}"
            ));
        }
        Some(_) => {}
    }
    let start = obj.get("time_period_start").and_then(is_zulu);
    let end = obj.get("time_period_end").and_then(is_zulu);
    match (start, end) {
        (Some(s), Some(e)) if s < e => {}
        (Some(_), Some(_)) => return Some("Timestamp of the starting date time cannot be after of Timestamp of the end date time.".into()),
        _ => return Some("time_period_start and time_period_end must be Zulu timestamps".into()),
    }
    match obj.get("value").and_then(Value::as_f64) {
        Some(v) if v >= 0.0 => {}
        _ => return Some("value must be a non-negative number".into()),
    }
    for key in ["user_id", "group_id"] {
        if !matches!(obj.get(key), None | Some(Value::Null | Value::String(_))) {
            return Some(format!("{key} must be a string"));
        }
    }
    None
}

async fn token_is_active(s: &Shared, token: &str) -> bool {
    let Some(i) = &s.options.introspection else {
        return !token.is_empty();
    };
    let answer = s
        .http
        .post(&i.url)
        .basic_auth(&i.client_id, Some(&i.client_secret))
        .form(&[("token", token)])
        .send()
        .await;
    let Ok(answer) = answer else { return false };
    let Ok(body) = answer.bytes().await else {
        return false;
    };
    serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["active"] == Value::Bool(true))
}

async fn post_metric(
    State(s): State<Shared>,
    Path(installation): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = {
        let mut inner = s.inner.lock().expect("EOSC API state");
        inner.requests += 1;
        inner.faults.pop_front()
    };
    match fault {
        Some(Fault::Status(status)) => return error(status, "Internal Server Error"),
        Some(Fault::Unauthorized) => return error(401, "The token has expired"),
        Some(Fault::Pass) | None => {}
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            return error(503, "Service Unavailable");
        }
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !token_is_active(&s, token).await {
        return error(401, "You are not authorized to access this resource");
    }
    if !s.options.installations.contains(&installation) {
        return error(
            404,
            &format!("There is no Installation with the following id: {installation}"),
        );
    }
    let Ok(metric) = serde_json::from_slice::<Value>(&body) else {
        return error(422, "The body is not JSON");
    };
    if let Some(why) = invalid(&metric, &s.options) {
        return error(422, &why);
    }
    let mut inner = s.inner.lock().expect("EOSC API state");
    inner.stored.push(Stored {
        installation,
        metric: metric.clone(),
    });
    let mut answer = metric;
    answer["metric_id"] = Value::String(format!("{:024x}", inner.stored.len()));
    (
        StatusCode::CREATED,
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}

impl EoscApi {
    /// Binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(options: EoscApiOptions) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Shared {
            options: Arc::new(options),
            inner: Arc::default(),
            http,
        };
        let app = Router::new()
            .route(
                "/accounting-system/installations/{installation}/metrics",
                post(post_metric),
            )
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`: the `accounting_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers the next requests with these faults, in order.
    pub fn arm(&self, faults: &[Fault]) {
        self.shared
            .inner
            .lock()
            .expect("EOSC API state")
            .faults
            .extend(faults);
    }

    /// The metrics stored, in the order received.
    pub fn stored(&self) -> Vec<Stored> {
        self.shared
            .inner
            .lock()
            .expect("EOSC API state")
            .stored
            .clone()
    }

    /// Requests received (any answer).
    pub fn requests(&self) -> usize {
        self.shared.inner.lock().expect("EOSC API state").requests
    }
}

impl Drop for EoscApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}
