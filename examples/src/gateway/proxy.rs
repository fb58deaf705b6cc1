//! The reverse proxy from `/user/{name}/...` to a user's server.
//!
//! [`Proxy::forward`] sends a request on to an [`Upstream`] (`http://host:port`, such as a
//! notebook pod's address) with its path and query as they are, over pooled HTTP/1.1
//! keep-alive connections, and streams both bodies (a 2 GB upload is never held in memory).
//! It behaves like configurable-http-proxy, which JupyterHub puts in front of its servers:
//!
//! - **Host** is kept as the client sent it (CHP's default: no `changeOrigin`);
//! - **`X-Forwarded-For`, `-Port`, `-Proto`, `-Host`** are added as CHP's `xfwd` does (on by
//!   default, [`ProxyOptions::x_forwarded`]); `X-Forwarded-For` needs the client's address,
//!   so serve the router with
//!   [`into_make_service_with_connect_info::<SocketAddr>()`](axum::Router::into_make_service_with_connect_info);
//! - **hop-by-hop headers** (`Connection` and what it lists, `Keep-Alive`, `TE`, `Trailer`,
//!   `Transfer-Encoding`, `Upgrade`, `Proxy-*`) are dropped both ways;
//! - **websockets** (a kernel's `/api/kernels/{id}/channels`): the upgrade is passed on, and
//!   once the server agreed (101) the two connections are joined byte for byte until either
//!   side closes;
//! - **failures** answer with a short plain-text body that names nothing about the upstream:
//!   502 when it cannot be reached or breaks off, 504 when connecting or the response head
//!   takes longer than [`ProxyOptions`] allow (CHP answers 503 for all of these).
//!
//! ```no_run
//! use std::net::SocketAddr;
//!
//! use axum::extract::{Request, State};
//! use axum::response::Response;
//! use axum::routing::any;
//! use axum::serve::ListenerExt;
//! use egi_examples::gateway::proxy::{Proxy, ProxyOptions, Upstream};
//!
//! async fn to_alice(State((proxy, upstream)): State<(Proxy, Upstream)>, request: Request) -> Response {
//!     proxy.forward(request, &upstream).await
//! }
//!
//! # async fn run() -> anyhow::Result<()> {
//! let upstream = Upstream::parse("http://10.0.0.5:8888")?;
//! let app = axum::Router::new()
//!     .route("/user/alice/{*rest}", any(to_alice))
//!     .with_state((Proxy::new(ProxyOptions::default()), upstream));
//! // TCP_NODELAY on accepted connections: without it, small answers can wait for Nagle.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000")
//!     .await?
//!     .tap_io(|tcp| {
//!         let _ = tcp.set_nodelay(true);
//!     });
//! axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await?;
//! # Ok(())
//! # }
//! ```

mod headers;

use std::error::Error as _;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::uri::{Authority, InvalidUri, PathAndQuery, Scheme};
use axum::http::{HeaderValue, StatusCode, Uri, Version, header};
use axum::response::Response;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

/// An [`Upstream`] that could not be parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The text is not a URL.
    #[error("the upstream is not a valid URL")]
    InvalidUrl(#[source] InvalidUri),
    /// The scheme is not `http` (the proxy speaks plain HTTP/1.1 to servers inside the
    /// cluster; TLS ends at the gateway).
    #[error("the upstream URL's scheme is {0:?}, not \"http\"")]
    UnsupportedScheme(String),
    /// There is no host, as in `/api` or `http:///`.
    #[error("the upstream URL has no host")]
    MissingHost,
    /// The URL carries a user name or password (`http://user:pass@host`), which the proxy
    /// would not send; the message does not repeat them.
    #[error("the upstream URL carries credentials")]
    Credentials,
    /// The URL has a path other than `/`, or a query: requests keep their own path, so an
    /// upstream is only `http://host:port`.
    #[error("the upstream URL has a path or query; give only http://host:port")]
    PathOrQuery,
}

/// Where requests go: the scheme and authority of a server (`http://10.0.0.5:8888`), parsed
/// once and cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Upstream {
    authority: Authority,
}

impl Upstream {
    /// Parses `http://host[:port][/]`; see [`ProxyError`] for what is refused.
    pub fn parse(url: &str) -> Result<Self, ProxyError> {
        let uri: Uri = url.parse().map_err(ProxyError::InvalidUrl)?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => return Err(ProxyError::UnsupportedScheme(other.to_owned())),
            None => return Err(ProxyError::MissingHost),
        }
        let authority = uri.authority().ok_or(ProxyError::MissingHost)?;
        if authority.as_str().contains('@') {
            return Err(ProxyError::Credentials);
        }
        if authority.host().is_empty() {
            return Err(ProxyError::MissingHost);
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(ProxyError::PathOrQuery);
        }
        Ok(Self {
            authority: authority.clone(),
        })
    }

    /// `host:port` as given (the port may be absent: 80).
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }
}

impl FromStr for Upstream {
    type Err = ProxyError;

    fn from_str(s: &str) -> Result<Self, ProxyError> {
        Self::parse(s)
    }
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}", self.authority)
    }
}

/// How [`Proxy`] connects and waits; [`ProxyOptions::default`] suits notebook servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyOptions {
    /// How long a TCP connect to the upstream may take before the request fails with 504
    /// (default 5 s; a refused connection fails at once with 502).
    pub connect_timeout: Duration,
    /// How long the upstream may take from the request to its response head, connect
    /// included, before the request fails with 504 (default 300 s: a notebook server can be
    /// slow to save or convert a large notebook). Bodies and websockets are not bounded.
    pub response_header_timeout: Duration,
    /// How long an idle pooled connection is kept (default 90 s, as hyper's and reqwest's).
    pub pool_idle_timeout: Duration,
    /// How many idle connections are kept per upstream (default 32).
    pub pool_max_idle_per_host: usize,
    /// Whether to add `X-Forwarded-*` headers as CHP does (default true; CHP's
    /// `--no-x-forward` turns them off).
    pub x_forwarded: bool,
}

impl Default for ProxyOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_header_timeout: Duration::from_secs(300),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            x_forwarded: true,
        }
    }
}

/// A reverse proxy with its pool of keep-alive connections; clones share the pool.
#[derive(Clone, Debug)]
pub struct Proxy {
    client: Client<HttpConnector, Body>,
    options: Arc<ProxyOptions>,
}

impl Proxy {
    /// A proxy with its own connection pool. Needs no runtime until the first request.
    pub fn new(options: ProxyOptions) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(options.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(options.pool_idle_timeout)
            .pool_max_idle_per_host(options.pool_max_idle_per_host)
            .build(connector);
        Self {
            client,
            options: Arc::new(options),
        }
    }

    /// The options the proxy was made with.
    pub fn options(&self) -> &ProxyOptions {
        &self.options
    }

    /// Forwards `request` (path and query kept as they are, e.g. `/user/alice/api/kernels`)
    /// to `upstream` and returns its response with the body streaming, or a 502 or 504 of
    /// its own (see the [module documentation](self)). A websocket upgrade is tunnelled both
    /// ways, in a task of its own, until either side closes.
    pub async fn forward(&self, request: Request, upstream: &Upstream) -> Response {
        let (mut parts, body) = request.into_parts();
        let client_upgrade = if headers::is_upgrade(&parts.headers) {
            parts.extensions.remove::<OnUpgrade>()
        } else {
            None
        };
        if let Err(failure) = self.rewrite(&mut parts, upstream, client_upgrade.is_some()) {
            return failure.response();
        }
        // For logs: the method and the path alone (the query may hold `?token=...`); both
        // clones are cheap (a standard method, a `Bytes` reference).
        let method = parts.method.clone();
        let path = parts.uri.path_and_query().cloned();
        let path = path.as_ref().map_or("/", PathAndQuery::path);
        let sent = self.client.request(Request::from_parts(parts, body));
        let timeout = self.options.response_header_timeout;
        let mut response = match tokio::time::timeout(timeout, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                let failure = Failure::of(&e);
                tracing::warn!(%upstream, %method, path, error = crate::with_sources(&e), "proxy: {failure}");
                return failure.response();
            }
            Err(_) => {
                let failure = Failure::Timeout;
                tracing::warn!(%upstream, %method, path, "proxy: {failure}");
                return failure.response();
            }
        };
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(client_upgrade) = client_upgrade else {
                let failure = Failure::UnaskedSwitch;
                tracing::warn!(%upstream, %method, path, "proxy: {failure}");
                return failure.response();
            };
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(tunnel(client_upgrade, upstream_upgrade));
            let (mut parts, _) = response.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers, true);
            return Response::from_parts(parts, Body::empty());
        }
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers, false);
        Response::from_parts(parts, Body::new(body))
    }

    /// Turns the client's request head into the upstream's: absolute URI to `upstream`, same
    /// path and query, HTTP/1.1, `Host` kept, hop-by-hop headers out, `X-Forwarded-*` in.
    fn rewrite(
        &self,
        parts: &mut axum::http::request::Parts,
        upstream: &Upstream,
        upgrade: bool,
    ) -> Result<(), Failure> {
        if !parts.headers.contains_key(header::HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(header::HOST, host);
        }
        headers::strip_hop_by_hop(&mut parts.headers, upgrade);
        if self.options.x_forwarded {
            let client = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip());
            headers::add_forwarded(&mut parts.headers, client, upgrade);
        }
        let mut uri = axum::http::uri::Parts::default();
        uri.scheme = Some(Scheme::HTTP);
        uri.authority = Some(upstream.authority.clone());
        uri.path_and_query = Some(
            parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
        );
        parts.uri = Uri::from_parts(uri).map_err(|_| Failure::BadPath)?;
        parts.version = Version::HTTP_11;
        Ok(())
    }
}

/// Why the proxy answered itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// Connecting failed (refused, no route, DNS): 502.
    Unreachable,
    /// The connection broke off or the response head was invalid: 502.
    BrokenOff,
    /// Connecting or the response head took too long: 504.
    Timeout,
    /// The upstream answered 101 to a request that asked for no upgrade: 502.
    UnaskedSwitch,
    /// The request's path cannot be put into a URI: 400 (hyper's parser makes this
    /// unreachable in practice).
    BadPath,
}

impl Failure {
    fn of(e: &hyper_util::client::legacy::Error) -> Self {
        if is_timeout(e) {
            Self::Timeout
        } else if e.is_connect() {
            Self::Unreachable
        } else {
            Self::BrokenOff
        }
    }

    /// A short plain-text answer that names nothing about the upstream.
    fn response(self) -> Response {
        let status = match self {
            Self::Unreachable | Self::BrokenOff | Self::UnaskedSwitch => StatusCode::BAD_GATEWAY,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BadPath => StatusCode::BAD_REQUEST,
        };
        let mut response = Response::new(Body::from(format!("{}: {self}\n", reason(status))));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unreachable => "the server is not reachable",
            Self::BrokenOff => "the server broke off the connection",
            Self::Timeout => "the server did not answer in time",
            Self::UnaskedSwitch => "the server switched protocols unasked",
            Self::BadPath => "invalid path",
        })
    }
}

/// `bad gateway`, `gateway timeout`, ...: the reason phrase in lower case.
fn reason(status: StatusCode) -> String {
    status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
}

/// Joins the two upgraded connections until either side closes (or fails).
async fn tunnel(client: OnUpgrade, upstream: OnUpgrade) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(
                error = crate::with_sources(&e),
                "proxy: an upgrade did not complete"
            );
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "proxy: a tunnel ended with an error");
    }
}

/// Whether a connect or I/O timeout is somewhere in the chain.
fn is_timeout(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_parsed_once_and_checked() {
        let u = Upstream::parse("http://10.0.0.5:8888").unwrap();
        assert_eq!(u.authority(), "10.0.0.5:8888");
        assert_eq!(u.to_string(), "http://10.0.0.5:8888");
        assert_eq!(
            "http://pod.ns.svc/"
                .parse::<Upstream>()
                .unwrap()
                .authority(),
            "pod.ns.svc"
        );
        assert!(matches!(
            Upstream::parse("https://a:1"),
            Err(ProxyError::UnsupportedScheme(s)) if s == "https"
        ));
        assert!(matches!(
            Upstream::parse("/api"),
            Err(ProxyError::MissingHost)
        ));
        assert!(matches!(
            Upstream::parse("a b"),
            Err(ProxyError::InvalidUrl(_))
        ));
        assert!(matches!(
            Upstream::parse("http://a:1/user/"),
            Err(ProxyError::PathOrQuery)
        ));
        assert!(matches!(
            Upstream::parse("http://a:1/?x=1"),
            Err(ProxyError::PathOrQuery)
        ));
        let e = Upstream::parse("http://alice:s3cret@a:1").unwrap_err();
        assert!(matches!(e, ProxyError::Credentials));
        assert!(!e.to_string().contains("s3cret"), "{e}");
    }
}
