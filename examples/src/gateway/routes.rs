//! The router: pages, login, the REST API, and the proxied paths `/user/{name}/...` (only the
//! owner, or a token with `access:servers` for that server) and `/services/{name}/...`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use super::hub_api::{self, api_error};
use super::scopes::Base;
use super::{Gateway, auth, oauth, pages};

/// Every route, under the base URL.
pub fn router(gw: Arc<Gateway>) -> Router {
    let hub = Router::new()
        .route("/login", get(auth::login))
        .route("/oauth_callback", get(auth::callback))
        .route("/logout", get(auth::logout).post(auth::logout))
        .route("/home", get(pages::home))
        .route("/spawn", post(pages::spawn))
        .route("/stop", post(pages::stop))
        .route("/spawn-pending/{*path}", get(pending))
        .route("/health", get(hub_api::health))
        .route("/metrics", get(hub_api::metrics))
        .route("/api", get(hub_api::version))
        .route("/api/", get(hub_api::version))
        .route("/api/user", get(hub_api::whoami))
        .route("/api/oauth2/authorize", get(oauth::authorize))
        .route("/api/oauth2/token", post(oauth::token))
        .route("/api/users/{name}/activity", post(oauth::activity))
        .route("/api/users", get(hub_api::users))
        .route(
            "/api/users/{name}",
            get(hub_api::user).post(hub_api::create_user),
        )
        .route(
            "/api/users/{name}/server",
            post(hub_api::start_default).delete(hub_api::stop_default),
        )
        .route(
            "/api/users/{name}/servers/{server}",
            post(hub_api::start_named).delete(hub_api::stop_named),
        )
        .route(
            "/api/users/{name}/server/progress",
            get(hub_api::progress_default),
        )
        .route(
            "/api/users/{name}/servers/{server}/progress",
            get(hub_api::progress_named),
        )
        .route("/", get(to_home))
        .route("/{*rest}", get(not_found))
        .layer(axum::middleware::map_response(hub_version));
    let base = gw.config.base_path().trim_end_matches('/').to_owned();
    let app = Router::new()
        .nest("/hub", hub)
        .route("/", get(to_home))
        .route("/user/{*rest}", axum::routing::any(proxy_user))
        .route("/services/{*rest}", axum::routing::any(proxy_service))
        .with_state(gw);
    if base.is_empty() {
        app
    } else {
        Router::new().nest(&base, app)
    }
}

async fn to_home(State(gw): State<Arc<Gateway>>) -> Redirect {
    Redirect::to(&format!("{}hub/home", gw.config.base_path()))
}

/// Every hub answer says which JupyterHub API it speaks, as JupyterHub does
/// (`jupyterhub-singleuser` compares it with its own version).
async fn hub_version(mut response: Response) -> Response {
    response.headers_mut().insert(
        "x-jupyterhub-version",
        axum::http::HeaderValue::from_static(hub_api::API_VERSION),
    );
    response
}

async fn not_found() -> Response {
    api_error(StatusCode::NOT_FOUND, "not found")
}

async fn pending(
    state: State<Arc<Gateway>>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let parts: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect();
    pages::spawn_pending(state, headers, axum::extract::Path(parts)).await
}

/// Percent-decodes one path segment.
fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// `{base}user/{name}/[{server}/]...`: to the owner's server.
async fn proxy_user(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let base = gw.config.base_path();
    let path = request.uri().path().to_owned();
    let rest = path
        .strip_prefix(base)
        .and_then(|p| p.strip_prefix("user/"))
        .unwrap_or("");
    let mut segments = rest.split('/');
    let user = decode(segments.next().unwrap_or(""));
    let second = segments.next().map(decode);
    // A named server when the second segment names one that exists, else the default.
    let named = second
        .filter(|s| !s.is_empty())
        .and_then(|s| gw.servers.server(&user, &s));
    let record = named.or_else(|| gw.servers.server(&user, ""));
    let server = record.as_ref().map_or_else(String::new, |r| r.name.clone());
    let caller = gw.caller(request.headers());
    let allowed = caller.as_ref().is_some_and(|c| {
        c.scopes()
            .permits(Base::AccessServers, Some(&user), Some(&server))
    });
    if !allowed {
        gw.metrics.proxy_denied.inc();
        if caller.is_none()
            && !request
                .headers()
                .contains_key(axum::http::header::AUTHORIZATION)
        {
            let next: String = url::form_urlencoded::byte_serialize(path.as_bytes()).collect();
            return Redirect::to(&format!("{base}hub/login?next={next}")).into_response();
        }
        return api_error(StatusCode::FORBIDDEN, "this server belongs to another user");
    }
    let Some(record) = record else {
        return pages::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Server not running",
            "This server is not running. Start it from the home page.",
        );
    };
    let Some(upstream) = record.upstream() else {
        return pages::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Server not ready",
            "This server is still starting.",
        );
    };
    forward(&gw, request, &upstream).await
}

/// `{base}services/{name}/...`: to the service's URL (it checks its own visitors, as on
/// JupyterHub).
async fn proxy_service(State(gw): State<Arc<Gateway>>, request: Request) -> Response {
    let base = gw.config.base_path();
    let path = request.uri().path();
    let name = path
        .strip_prefix(base)
        .and_then(|p| p.strip_prefix("services/"))
        .and_then(|p| p.split('/').next())
        .unwrap_or("");
    let Some(url) = gw
        .services
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.url.clone())
    else {
        return api_error(StatusCode::NOT_FOUND, "no such service");
    };
    let Ok(upstream) = super::proxy::Upstream::parse(url.as_str()) else {
        return api_error(StatusCode::BAD_GATEWAY, "the service URL is unusable");
    };
    forward(&gw, request, &upstream).await
}

async fn forward(
    gw: &Gateway,
    mut request: Request,
    upstream: &super::proxy::Upstream,
) -> Response {
    strip_gateway_cookies(request.headers_mut());
    let response = gw.proxy.forward(request, upstream).await;
    if matches!(
        response.status(),
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
    ) {
        gw.metrics.proxy_upstream_errors.inc();
    } else {
        gw.metrics.proxy_requests.inc();
    }
    response
}

/// Removes the gateway's own cookies (the session, the pending login) from a request that goes
/// to a user's server or a service: code running there must not get the visitor's gateway
/// session (JupyterHub keeps its cookie under `/hub/` for the same reason). Other cookies, such
/// as the server's own after its OAuth login, pass.
fn strip_gateway_cookies(headers: &mut axum::http::HeaderMap) {
    use super::session::{LOGIN_COOKIE, SESSION_COOKIE};
    let kept: Vec<String> = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| {
            let name = c.split('=').next().unwrap_or("");
            !c.is_empty() && name != SESSION_COOKIE && name != LOGIN_COOKIE
        })
        .map(str::to_owned)
        .collect();
    headers.remove(axum::http::header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = kept.join("; ").parse()
    {
        headers.insert(axum::http::header::COOKIE, value);
    }
}

/// Serves `gw` on `listener` until `shutdown` resolves.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(gw.clone());
    // The client's address for X-Forwarded-For (as configurable-http-proxy sends it), and no
    // Nagle delay on small proxied answers.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    gw.servers.detach();
    served
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn the_gateways_cookies_stay_at_the_gateway() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append(
            axum::http::header::COOKIE,
            "egi-gateway-session=secret; _xsrf=abc".parse().unwrap(),
        );
        headers.append(
            axum::http::header::COOKIE,
            "jupyterhub-user-alice=tok; egi-gateway-login=x"
                .parse()
                .unwrap(),
        );
        super::strip_gateway_cookies(&mut headers);
        let all: Vec<_> = headers.get_all(axum::http::header::COOKIE).iter().collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0], "_xsrf=abc; jupyterhub-user-alice=tok");
        let mut only_ours = axum::http::HeaderMap::new();
        only_ours.insert(
            axum::http::header::COOKIE,
            "egi-gateway-session=s".parse().unwrap(),
        );
        super::strip_gateway_cookies(&mut only_ours);
        assert!(only_ours.get(axum::http::header::COOKIE).is_none());
    }

    #[test]
    fn decodes_percent_escapes_and_keeps_bad_ones() {
        assert_eq!(decode("a%40b.eu"), "a@b.eu");
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz"), "%zz");
    }
}
