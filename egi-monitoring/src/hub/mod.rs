//! A JupyterHub REST API client for a service token.
//!
//! Hub routes (`/hub/api/...`, `/hub/health`, `/hub/metrics`) and the single-user server
//! routes behind the proxy (`/user/{name}/api/kernels`) are built from one public URL. The
//! token is sent as `Authorization: token ...` and never logged; `Debug` prints it as
//! `[redacted]`. Redirects are not followed (a redirect would carry the token elsewhere).

mod model;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use egi_spawner::ProgressEvent;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::error::{Error, Result};
use crate::limits::{BodyError, MAX_BODY_BYTES, read_body, read_body_start};
use crate::sse::SseParser;

pub use model::{Server, StartState, StopState, TokenOwner, User, body_message, unexpected};

/// The User-Agent of every request.
pub(crate) const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// Builds a [`HubClient`].
#[derive(Debug)]
#[must_use]
pub struct HubClientBuilder {
    url: String,
    public_url: Option<String>,
    token: Option<SecretString>,
    request_timeout: Duration,
    connect_timeout: Duration,
}

impl HubClientBuilder {
    /// The service token (`JUPYTERHUB_API_TOKEN`).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(SecretString::from(token.into()));
        self
    }

    /// The URL of the proxy, when the hub API URL given to [`HubClient::builder`] is the
    /// hub's own (internal) address: kernels are reached through the proxy.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// Timeout of each request, except the progress stream (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Timeout of each TCP (and TLS) connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Checks the URLs and builds the client.
    pub fn build(self) -> Result<HubClient> {
        let token = self
            .token
            .ok_or_else(|| Error::Config("no API token given".into()))?;
        if token.expose_secret().is_empty() {
            return Err(Error::Config("the API token is empty".into()));
        }
        let hub = base_url(&self.url)?;
        let public_given = self.public_url.is_some();
        let public = match self.public_url {
            Some(url) => base_url(&url)?,
            None => hub.clone(),
        };
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|source| Error::Connect {
                service: "the hub (building the HTTP client)",
                source,
            })?;
        Ok(HubClient {
            http,
            hub,
            public,
            public_given,
            token,
            request_timeout: self.request_timeout,
        })
    }
}

/// The base of a hub from any of its URLs: `https://h/hub/api` -> `https://h/`,
/// `https://h/prefix/hub/` -> `https://h/prefix/`, `https://h` -> `https://h/`.
pub fn base_url(url: &str) -> Result<Url> {
    let mut url =
        Url::parse(url.trim()).map_err(|e| Error::Config(format!("invalid URL {url:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Config(format!("not an http(s) URL: {url}")));
    }
    url.set_query(None);
    url.set_fragment(None);
    let mut path = url.path().trim_end_matches('/').to_owned();
    for suffix in ["/hub/api", "/hub"] {
        if let Some(rest) = path.strip_suffix(suffix) {
            path = rest.to_owned();
            break;
        }
    }
    path.push('/');
    url.set_path(&path);
    Ok(url)
}

/// A JupyterHub REST API client holding a service token.
#[derive(Clone)]
pub struct HubClient {
    http: reqwest::Client,
    hub: Url,
    public: Url,
    public_given: bool,
    token: SecretString,
    request_timeout: Duration,
}

impl fmt::Debug for HubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubClient")
            .field("hub", &self.hub.as_str())
            .field("public", &self.public.as_str())
            .field("token", &"[redacted]")
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl HubClient {
    /// A builder for the hub at `url` (the public URL, or its `/hub/api` URL as in EGI's
    /// `MONITORED_URL`).
    pub fn builder(url: impl Into<String>) -> HubClientBuilder {
        HubClientBuilder {
            url: url.into(),
            public_url: None,
            token: None,
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// The hub's base URL, such as `https://hub.example.org/`.
    pub fn base(&self) -> &Url {
        &self.hub
    }

    /// The proxy's base URL (where `/user/...` routes are).
    pub fn public_base(&self) -> &Url {
        &self.public
    }

    /// The timeout of a start request: the request timeout, but at least 30 s, as the hub
    /// holds the request up to its `slow_spawn_timeout` (10 s by default) before answering.
    pub fn start_timeout(&self) -> Duration {
        self.request_timeout.max(Duration::from_secs(30))
    }

    /// Whether the proxy's URL was given apart from the hub API URL
    /// ([`HubClientBuilder::public_url`]).
    pub fn public_url_given(&self) -> bool {
        self.public_given
    }

    /// The request timeout.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// `{base}hub/{segments...}` with each segment escaped.
    pub fn hub_url(&self, segments: &[&str]) -> Url {
        join(&self.hub, "hub", segments)
    }

    /// `{public}{server_path}{segments...}`: a route of a single-user server, whose path
    /// (such as `/user/monitor/`) comes from the hub. An absolute `server_path`
    /// (`http://10.0.0.5:8888/user/monitor/`, a server reached directly) replaces the
    /// proxy's URL.
    pub fn server_url(&self, server_path: &str, segments: &[&str]) -> Url {
        let (mut url, path) = match Url::parse(server_path) {
            Ok(absolute) if matches!(absolute.scheme(), "http" | "https") => {
                let path = absolute.path().to_owned();
                (absolute, path)
            }
            _ => (self.public.clone(), server_path.to_owned()),
        };
        url.set_query(None);
        url.set_path(&format!("/{}", path.trim_matches('/')));
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// `Authorization` header value; crate-internal so that the token never leaves it.
    pub(crate) fn authorization(&self) -> String {
        format!("token {}", self.token.expose_secret())
    }

    /// Sends a request with the token and the request timeout; returns the status and body.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        json: Option<&serde_json::Value>,
    ) -> Result<(StatusCode, Vec<u8>, String)> {
        self.send_within(method, url, json, self.request_timeout)
            .await
    }

    /// [`HubClient::send`] with its own timeout.
    async fn send_within(
        &self,
        method: Method,
        url: Url,
        json: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> Result<(StatusCode, Vec<u8>, String)> {
        let what = describe(&method, &url);
        tracing::debug!(request = %what, "hub request");
        let mut request = self
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, self.authorization())
            .timeout(timeout);
        if let Some(body) = json {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.io_error_within(&what, e, timeout))?;
        let status = response.status();
        let body = match read_body(response, MAX_BODY_BYTES, &what).await {
            Ok(body) => body,
            Err(BodyError::TooLarge(e)) => return Err(e),
            Err(BodyError::Transport(e)) => return Err(self.io_error_within(&what, e, timeout)),
        };
        Ok((status, body, what))
    }

    fn io_error(&self, what: &str, source: reqwest::Error) -> Error {
        self.io_error_within(what, source, self.request_timeout)
    }

    fn io_error_within(&self, what: &str, source: reqwest::Error, after: Duration) -> Error {
        if source.is_timeout() {
            Error::Timeout {
                phase: what.to_owned(),
                after,
            }
        } else {
            Error::Connect {
                service: "the hub",
                source: source.without_url(),
            }
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: Url) -> Result<T> {
        let (status, body, what) = self.send(Method::GET, url, None).await?;
        if status != StatusCode::OK {
            return Err(unexpected(&what, status.as_u16(), &body));
        }
        parse(&what, &body)
    }

    /// The hub's version (`GET /hub/api/`).
    pub async fn version(&self) -> Result<String> {
        let info: model::Info = self.get_json(self.hub_url(&["api", ""])).await?;
        Ok(info.version)
    }

    /// The token's owner and scopes (`GET /hub/api/user`).
    pub async fn whoami(&self) -> Result<TokenOwner> {
        self.get_json(self.hub_url(&["api", "user"])).await
    }

    /// `GET /hub/health`: Ok when it answers 200.
    pub async fn health(&self) -> Result<()> {
        let (status, body, what) = self
            .send(Method::GET, self.hub_url(&["health"]), None)
            .await?;
        if status != StatusCode::OK {
            return Err(unexpected(&what, status.as_u16(), &body));
        }
        Ok(())
    }

    /// The hub's Prometheus metrics (`GET /hub/metrics`, scope `read:metrics`).
    pub async fn metrics(&self) -> Result<String> {
        let (status, body, what) = self
            .send(Method::GET, self.hub_url(&["metrics"]), None)
            .await?;
        if status != StatusCode::OK {
            return Err(unexpected(&what, status.as_u16(), &body));
        }
        String::from_utf8(body).map_err(|e| Error::Malformed {
            what,
            message: e.to_string(),
        })
    }

    /// Every user (`GET /hub/api/users`, scope `list:users`).
    pub async fn users(&self) -> Result<Vec<User>> {
        self.get_json(self.hub_url(&["api", "users"])).await
    }

    /// The user `name`, or `None` if the hub does not know it.
    pub async fn user(&self, name: &str) -> Result<Option<User>> {
        let url = self.hub_url(&["api", "users", name]);
        let (status, body, what) = self.send(Method::GET, url, None).await?;
        match status {
            StatusCode::OK => parse(&what, &body).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(unexpected(&what, status.as_u16(), &body)),
        }
    }

    /// Creates the user `name` (`POST /hub/api/users/{name}`, 201).
    pub async fn create_user(&self, name: &str) -> Result<User> {
        let url = self.hub_url(&["api", "users", name]);
        let (status, body, what) = self.send(Method::POST, url, None).await?;
        if status != StatusCode::CREATED {
            return Err(unexpected(&what, status.as_u16(), &body));
        }
        parse(&what, &body)
    }

    fn server_route(&self, user: &str, server: &str, tail: &[&str]) -> Url {
        let mut segments = vec!["api", "users", user];
        if server.is_empty() {
            segments.push("server");
        } else {
            segments.extend(["servers", server]);
        }
        segments.extend(tail);
        self.hub_url(&segments)
    }

    /// Starts the server `server` (`""`: the default) of `user`.
    pub async fn start_server(&self, user: &str, server: &str) -> Result<StartState> {
        self.start_server_with(user, server, &serde_json::json!({}))
            .await
    }

    /// Starts a server with `options` (the spawner's `user_options`, which the hub keeps
    /// and shows in the server's model).
    pub async fn start_server_with(
        &self,
        user: &str,
        server: &str,
        options: &serde_json::Value,
    ) -> Result<StartState> {
        let url = self.server_route(user, server, &[]);
        let (status, body, what) = self
            .send_within(Method::POST, url, Some(options), self.start_timeout())
            .await?;
        match status {
            StatusCode::CREATED => Ok(StartState::Started),
            StatusCode::ACCEPTED => Ok(StartState::Pending),
            _ => Err(unexpected(&what, status.as_u16(), &body)),
        }
    }

    /// The proxy's routing table (`GET /hub/api/proxy`, scope `proxy`, which EGI's
    /// `admin: true` service has): route spec (`/user/monitor/`) to target
    /// (`http://10.0.0.5:8888`).
    pub async fn proxy_routes(&self) -> Result<BTreeMap<String, String>> {
        let routes: BTreeMap<String, model::ProxyRoute> =
            self.get_json(self.hub_url(&["api", "proxy"])).await?;
        Ok(routes.into_iter().map(|(k, v)| (k, v.target)).collect())
    }

    /// The status code of `GET {server}api` (the server's version) through
    /// [`HubClient::server_url`]: 200 when `server_path` reaches the server.
    pub async fn server_status(&self, server_path: &str) -> Result<u16> {
        let url = self.server_url(server_path, &["api"]);
        let (status, _, _) = self.send(Method::GET, url, None).await?;
        Ok(status.as_u16())
    }

    /// Asks the hub to stop a server.
    pub async fn stop_server(&self, user: &str, server: &str) -> Result<StopState> {
        let url = self.server_route(user, server, &[]);
        let (status, body, what) = self.send(Method::DELETE, url, None).await?;
        match status {
            StatusCode::NO_CONTENT => Ok(StopState::Stopped),
            StatusCode::ACCEPTED => Ok(StopState::Pending),
            _ => Err(unexpected(&what, status.as_u16(), &body)),
        }
    }

    /// Stops a server and waits until the hub no longer lists it, checking every `poll`
    /// (no fixed sleep: it returns as soon as the stop is done). Callers bound it with a
    /// timeout.
    pub async fn stop_server_and_wait(
        &self,
        user: &str,
        server: &str,
        poll: Duration,
    ) -> Result<()> {
        loop {
            let state = match self.user(user).await? {
                None => return Ok(()),
                Some(u) => match u.server(server) {
                    None => return Ok(()),
                    Some(s) => s.clone(),
                },
            };
            if state.pending.as_deref() != Some("stop")
                && let StopState::Stopped = self.stop_server(user, server).await?
            {
                return Ok(());
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Opens the spawn progress stream of a server (no request timeout: bound it by the
    /// spawn timeout).
    pub async fn progress(&self, user: &str, server: &str) -> Result<ProgressStream> {
        let url = self.server_route(user, server, &["progress"]);
        let what = describe(&Method::GET, &url);
        let response = self
            .http
            .get(url)
            .header(reqwest::header::AUTHORIZATION, self.authorization())
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| self.io_error(&what, e))?;
        let status = response.status();
        if status != StatusCode::OK {
            let body = read_body_start(response, MAX_BODY_BYTES).await;
            return Err(unexpected(&what, status.as_u16(), &body));
        }
        Ok(ProgressStream {
            response,
            parser: SseParser::new(),
            queued: VecDeque::new(),
            what,
        })
    }
}

/// The events of a spawn, as the hub sends them.
#[derive(Debug)]
pub struct ProgressStream {
    response: reqwest::Response,
    parser: SseParser,
    queued: VecDeque<String>,
    what: String,
}

impl ProgressStream {
    /// The next event, or `None` when the hub closed the stream.
    pub async fn next_event(&mut self) -> Result<Option<ProgressEvent>> {
        loop {
            if let Some(data) = self.queued.pop_front() {
                return ProgressEvent::parse(&data)
                    .map(Some)
                    .map_err(|e| Error::Malformed {
                        what: self.what.clone(),
                        message: format!("{e} in event {data:?}"),
                    });
            }
            let chunk = self
                .response
                .chunk()
                .await
                .map_err(|source| Error::Connect {
                    service: "the hub's progress stream",
                    source: source.without_url(),
                })?;
            match chunk {
                Some(bytes) => {
                    let events = self.parser.feed(&bytes).map_err(|e| Error::TooLarge {
                        what: format!("{} (event stream)", self.what),
                        limit: e.limit,
                    })?;
                    self.queued.extend(events);
                }
                None => return Ok(None),
            }
        }
    }
}

/// `base` + `first` + escaped `segments` (an empty last segment gives a trailing slash).
fn join(base: &Url, first: &str, segments: &[&str]) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().push(first).extend(segments);
    }
    url
}

/// `GET /hub/api/users/x`: the method and path, for messages (never the query or host).
pub(crate) fn describe(method: &Method, url: &Url) -> String {
    format!("{method} {}", url.path())
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Malformed {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> HubClient {
        HubClient::builder(url).token("s3cret").build().unwrap()
    }

    #[test]
    fn base_url_accepts_every_form_of_the_hub_url() {
        for (given, base) in [
            ("https://h.example/hub/api", "https://h.example/"),
            ("https://h.example/hub/api/", "https://h.example/"),
            ("https://h.example/hub/", "https://h.example/"),
            ("https://h.example", "https://h.example/"),
            (
                "http://127.0.0.1:8000/jupyter/hub/api?x=1",
                "http://127.0.0.1:8000/jupyter/",
            ),
        ] {
            assert_eq!(base_url(given).unwrap().as_str(), base, "{given}");
        }
        assert!(matches!(base_url("ftp://h/"), Err(Error::Config(_))));
        assert!(matches!(base_url("not a url"), Err(Error::Config(_))));
    }

    #[test]
    fn routes_escape_names() {
        let c = client("https://h.example/pre/hub/api");
        assert_eq!(
            c.hub_url(&["api", ""]).as_str(),
            "https://h.example/pre/hub/api/"
        );
        assert_eq!(
            c.server_route("zoë b", "", &["progress"]).as_str(),
            "https://h.example/pre/hub/api/users/zo%C3%AB%20b/server/progress"
        );
        assert_eq!(
            c.server_route("m", "n/1", &[]).as_str(),
            "https://h.example/pre/hub/api/users/m/servers/n%2F1"
        );
        assert_eq!(
            c.server_url("/pre/user/m/", &["api", "kernels", "k1"])
                .as_str(),
            "https://h.example/pre/user/m/api/kernels/k1"
        );
    }

    #[test]
    fn the_token_is_redacted_and_required() {
        let c = client("http://h/");
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert!(debug.contains("[redacted]"));
        assert_eq!(c.authorization(), "token s3cret");
        let err = HubClient::builder("http://h/").build().unwrap_err();
        assert_eq!(err.to_string(), "invalid configuration: no API token given");
        assert!(HubClient::builder("http://h/").token("").build().is_err());
        let builder = format!("{:?}", HubClient::builder("http://h/").token("s3cret"));
        assert!(!builder.contains("s3cret"), "{builder}");
    }

    #[test]
    fn public_url_is_separate_from_the_api_url() {
        let c = HubClient::builder("http://hub:8081/hub/api")
            .public_url("https://notebooks.example/")
            .token("t")
            .build()
            .unwrap();
        assert_eq!(
            c.hub_url(&["health"]).as_str(),
            "http://hub:8081/hub/health"
        );
        assert_eq!(
            c.server_url("/user/m/", &["api", "kernels"]).as_str(),
            "https://notebooks.example/user/m/api/kernels"
        );
    }
}
