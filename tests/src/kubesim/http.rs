//! The HTTP layer: routes the real REST paths to the verbs, counts requests, applies the
//! latency fault, and serves discovery and the `/simulator/...` admin API.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::Shared;
use super::faults::{FaultRequest, Faults};
use super::ops::{self, DeleteOpts};
use super::resources::{self, RESOURCES};
use super::selectors::{FieldSelector, LabelSelector, Selectors};
use super::status::ApiError;
use super::table;
use super::watch::{self, WatchParams};

/// Serves until the simulator is cancelled.
pub(crate) fn serve(
    sh: Arc<Shared>,
    listener: tokio::net::TcpListener,
) -> tokio::task::JoinHandle<()> {
    let cancel = sh.cancel.clone();
    let app = Router::new().fallback(handle).with_state(sh);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
    })
}

fn respond(code: u16, body: Vec<u8>) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn json_response(code: u16, v: &Value) -> Response {
    respond(code, serde_json::to_vec(v).unwrap_or_default())
}

fn error(e: &ApiError) -> Response {
    json_response(e.code, &e.to_status())
}

/// A parsed resource path.
#[derive(Debug)]
struct Target {
    res: usize,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn parse_target(segs: &[&str], group: &str) -> Option<Target> {
    let namespaced_path = segs.len() >= 3 && segs[0] == "namespaces";
    if namespaced_path {
        let res = resources::find(group, segs[2])?;
        if RESOURCES[res].namespaced {
            return Some(Target {
                res,
                ns: Some(segs[1].to_owned()),
                name: segs.get(3).map(|s| (*s).to_owned()),
                sub: segs.get(4).map(|s| (*s).to_owned()),
            });
        }
    }
    let res = resources::find(group, segs.first()?)?;
    if segs.len() > 3 {
        return None;
    }
    let name = segs.get(1).map(|s| (*s).to_owned());
    if RESOURCES[res].namespaced && name.is_some() {
        return None;
    }
    Some(Target {
        res,
        ns: None,
        name,
        sub: segs.get(2).map(|s| (*s).to_owned()),
    })
}

fn query_map(q: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

fn truthy(v: Option<&str>) -> bool {
    matches!(v, Some("1" | "true" | "True"))
}

async fn handle(State(sh): State<Arc<Shared>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = query_map(req.uri().query());
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    if let Some(admin) = path.strip_prefix("/simulator") {
        return admin_api(&sh, &method, admin, &body);
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    sh.counters().user_agent(agent);
    if sh.faults().api_down() {
        // Restarting (Faults::restart_api): what clients see of a server behind a proxy.
        return error(&ApiError::unavailable());
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest, mut watch_path) = match segs.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", rest, false),
        ["apis", group, "v1", rest @ ..] if !rest.is_empty() => match resources::group(group) {
            Some(group) => (group, rest, false),
            None => return non_resource(&sh, &method, &segs, &headers),
        },
        _ => return non_resource(&sh, &method, &segs, &headers),
    };
    let rest: Vec<&str> = match rest.split_first() {
        Some((&"watch", tail)) => {
            watch_path = true;
            tail.to_vec()
        }
        _ => rest.to_vec(),
    };
    let Some(t) = parse_target(&rest, group) else {
        return error(&ApiError::no_route());
    };
    let is_watch = watch_path || truthy(param(&query, "watch"));
    let verb: &'static str = match (&method, t.name.is_some(), is_watch) {
        (&Method::GET, _, true) => "watch",
        (&Method::GET, true, false) => "get",
        (&Method::GET, false, false) => "list",
        (&Method::POST, false, _) => "create",
        (&Method::PUT, true, _) => "update",
        (&Method::PATCH, true, _) => "patch",
        (&Method::DELETE, true, _) => "delete",
        (&Method::DELETE, false, _) => "deletecollection",
        _ => return error(&ApiError::method_not_allowed()),
    };
    let latency = sh.faults().latency(verb);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let plural = RESOURCES[t.res].plural;
    let counted = match &t.sub {
        Some(s) => format!("{plural}/{s}"),
        None => plural.to_owned(),
    };
    sh.counters()
        .request(verb, &counted, t.ns.as_deref().unwrap_or(""));
    match dispatch(&sh, verb, &t, &query, &headers, &body) {
        Ok(r) => r,
        Err(e) => error(&e),
    }
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding from json: {e}")))
}

fn selectors(res: usize, q: &[(String, String)]) -> Result<Selectors, ApiError> {
    Ok(Selectors {
        labels: LabelSelector::parse(param(q, "labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(res, param(q, "fieldSelector").unwrap_or(""))?,
    })
}

fn list_body(res: usize, page: &ops::ListPage) -> Vec<u8> {
    let r = &RESOURCES[res];
    let mut meta = json!({"resourceVersion": page.rv.to_string()});
    if let Some(c) = &page.cont {
        meta["continue"] = json!(c);
    }
    if let Some(n) = page.remaining {
        meta["remainingItemCount"] = json!(n);
    }
    let mut out = Vec::with_capacity(256 + page.items.len() * 2048);
    out.extend_from_slice(
        format!(
            "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":",
            r.kind,
            r.api_version()
        )
        .as_bytes(),
    );
    let _ = serde_json::to_writer(&mut out, &meta);
    out.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &**item);
    }
    out.extend_from_slice(b"]}");
    out
}

fn dispatch(
    sh: &Arc<Shared>,
    verb: &str,
    t: &Target,
    q: &[(String, String)],
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let ns = t.ns.as_deref().unwrap_or("");
    let name = t.name.as_deref().unwrap_or("");
    let status_only = match t.sub.as_deref() {
        None => false,
        Some("log") if t.res == resources::PODS && verb == "get" => {
            let pod = ops::get(sh, t.res, ns, name)?;
            let log = super::process::log_text(sh, &pod, param(q, "container"));
            return Ok(Response::builder()
                .header(header::CONTENT_TYPE, "text/plain")
                .body(Body::from(log))
                .unwrap_or_default());
        }
        Some("status") if RESOURCES[t.res].status => true,
        Some(_) => return Err(ApiError::no_route()),
    };
    let table = wants_table(headers);
    let one = |o: &Value| -> Response {
        if table {
            json_response(200, &table::table(t.res, &[Arc::new(o.clone())], 0))
        } else {
            json_response(200, o)
        }
    };
    Ok(match verb {
        "get" => one(&*ops::get(sh, t.res, ns, name)?),
        "list" => {
            let sel = selectors(t.res, q)?;
            let limit = param(q, "limit").and_then(|l| l.parse().ok());
            let page = ops::list(
                sh,
                t.res,
                t.ns.as_deref(),
                &sel,
                limit,
                param(q, "continue"),
            )?;
            if table {
                json_response(200, &table::table(t.res, &page.items, page.rv))
            } else {
                respond(200, list_body(t.res, &page))
            }
        }
        "watch" => {
            let mut sel = selectors(t.res, q)?;
            if let Some(n) = &t.name {
                sel.fields = FieldSelector::parse(t.res, &format!("metadata.name={n}"))?;
            }
            let p = WatchParams {
                res: t.res,
                ns: t.ns.clone(),
                sel,
                from: watch::parse_rv(param(q, "resourceVersion"))?,
                bookmarks: truthy(param(q, "allowWatchBookmarks")),
                timeout: param(q, "timeoutSeconds")
                    .and_then(|s| s.parse().ok())
                    .map(Duration::from_secs),
                send_initial: truthy(param(q, "sendInitialEvents")),
                table,
            };
            Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .body(watch::start(sh, p))
                .unwrap_or_default()
        }
        "create" => {
            let obj = ops::create(sh, t.res, ns, parse_body(body)?)?;
            json_response(201, &obj)
        }
        "update" => json_response(
            200,
            &*ops::update(sh, t.res, ns, name, parse_body(body)?, status_only)?,
        ),
        "patch" => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            json_response(
                200,
                &*ops::patch(sh, t.res, ns, name, ct, &parse_body(body)?, status_only)?,
            )
        }
        "delete" => {
            let opts = delete_opts(q, body)?;
            json_response(200, &ops::delete(sh, t.res, ns, name, &opts)?)
        }
        _ => {
            // deletecollection
            let opts = delete_opts(q, body)?;
            let sel = selectors(t.res, q)?;
            let page = ops::list(sh, t.res, t.ns.as_deref(), &sel, None, None)?;
            let mut deleted = Vec::new();
            for o in &page.items {
                let (ons, oname) = (
                    o["metadata"]["namespace"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or(""),
                );
                if let Ok(d) = ops::delete(sh, t.res, ons, oname, &opts)
                    && d["kind"] != "Status"
                {
                    deleted.push(Arc::new(d));
                }
            }
            let rv = sh.lock().rv;
            respond(
                200,
                list_body(
                    t.res,
                    &ops::ListPage {
                        rv,
                        items: deleted,
                        cont: None,
                        remaining: None,
                    },
                ),
            )
        }
    })
}

fn delete_opts(q: &[(String, String)], body: &Bytes) -> Result<DeleteOpts, ApiError> {
    let mut opts = DeleteOpts {
        grace: param(q, "gracePeriodSeconds").and_then(|g| g.parse().ok()),
        orphan: param(q, "propagationPolicy") == Some("Orphan"),
        ..DeleteOpts::default()
    };
    if !body.iter().all(u8::is_ascii_whitespace) {
        opts.merge_body(&parse_body(body)?);
    }
    Ok(opts)
}

/// A minimal OpenAPI v2 document (no definitions: kubectl then skips client-side
/// validation and uses its built-in patch strategies), as protobuf when asked for it.
fn openapi(headers: &HeaderMap) -> Response {
    let protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("protobuf"));
    if protobuf {
        // gnostic openapi_v2.Document { swagger: "2.0", info: { title, version } }.
        let mut info = vec![0x0a, 10];
        info.extend_from_slice(b"Kubernetes");
        info.extend_from_slice(&[0x12, 7]);
        info.extend_from_slice(b"v1.30.0");
        let mut doc = vec![0x0a, 3];
        doc.extend_from_slice(b"2.0");
        doc.extend_from_slice(&[0x12, u8::try_from(info.len()).unwrap_or(0)]);
        doc.extend_from_slice(&info);
        return Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(Body::from(doc))
            .unwrap_or_default();
    }
    json_response(
        200,
        &json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.30.0"}, "paths": {}, "definitions": {}}),
    )
}

fn non_resource(sh: &Arc<Shared>, method: &Method, segs: &[&str], headers: &HeaderMap) -> Response {
    sh.counters().non_resource();
    if method != Method::GET {
        return error(&ApiError::method_not_allowed());
    }
    let addr = sh.addr.to_string();
    match segs {
        ["api"] => json_response(200, &resources::api_versions(&addr)),
        ["api", "v1"] => json_response(200, &resources::resource_list("")),
        ["apis"] => json_response(200, &resources::api_group_list()),
        ["apis", group] if resources::group(group).is_some() => {
            json_response(200, &resources::api_group(group))
        }
        ["apis", group, "v1"] if resources::group(group).is_some() => {
            json_response(200, &resources::resource_list(group))
        }
        ["version"] => json_response(200, &resources::version()),
        ["metrics"] => Response::builder()
            .header(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )
            .body(Body::from(super::metrics::render(sh)))
            .unwrap_or_default(),
        ["openapi", "v2"] => openapi(headers),
        ["healthz" | "readyz" | "livez"] => Response::builder()
            .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(Body::from("ok"))
            .unwrap_or_default(),
        _ => error(&ApiError::no_route()),
    }
}

fn admin_api(sh: &Arc<Shared>, method: &Method, path: &str, body: &Bytes) -> Response {
    match (method, path) {
        (&Method::GET, "/counters") => json_response(
            200,
            &serde_json::to_value(sh.counters().snapshot()).unwrap_or_default(),
        ),
        (&Method::GET, "/timeline") => json_response(
            200,
            &json!({ "pods": serde_json::to_value(sh.counters().timeline()).unwrap_or_default() }),
        ),
        (&Method::POST, "/reset-counters") => {
            sh.counters().reset();
            json_response(200, &json!({}))
        }
        (&Method::POST, "/faults") => match serde_json::from_slice::<FaultRequest>(body) {
            Ok(f) => match f.apply(&Faults::new(sh.clone())) {
                Ok(()) => json_response(200, &json!({})),
                Err(e) => error(&e),
            },
            Err(e) => error(&ApiError::bad_request(format!("bad fault: {e}"))),
        },
        _ => error(&ApiError::no_route()),
    }
}
