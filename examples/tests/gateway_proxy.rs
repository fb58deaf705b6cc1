//! The gateway's reverse proxy ([`egi_examples::gateway::proxy`]) in front of a real
//! `jupyter-server` (the harness's [`JupyterServer`], base URL `/user/alice/`), mounted on
//! `/user/alice/{*rest}` of an axum server as the gateway mounts it; and in front of small
//! loopback servers for what a notebook server cannot show (headers it received, a server
//! that is down or silent, bodies that must stream).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::any;
use egi_examples::gateway::proxy::{Proxy, ProxyOptions, Upstream};
use egi_monitoring::kernel::protocol::{Collector, execute_request, new_id};
use egi_test_harness::jupyter_server::JupyterServer;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Every step of a test is bounded by this (jupyter-server is slow on a busy machine).
const STEP: Duration = Duration::from_secs(60);

async fn to_upstream(
    State((proxy, upstream)): State<(Proxy, Upstream)>,
    request: Request,
) -> Response {
    proxy.forward(request, &upstream).await
}

/// A gateway on a free loopback port, serving `Proxy::forward` on `/user/alice/{*rest}`
/// with connect info (for `X-Forwarded-For`); it runs until the test's runtime ends.
async fn gateway(upstream: &str, options: ProxyOptions) -> Result<SocketAddr> {
    let upstream = Upstream::parse(upstream)?;
    let app = Router::new()
        .route("/user/alice/{*rest}", any(to_upstream))
        .with_state((Proxy::new(options), upstream));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    Ok(addr)
}

/// Starts a `jupyter-server` (blocking, so off the runtime's threads) and a gateway to it.
async fn notebook_behind_gateway() -> Result<(JupyterServer, SocketAddr)> {
    let server = tokio::task::spawn_blocking(JupyterServer::start).await??;
    let addr = gateway(&server.url(), ProxyOptions::default()).await?;
    Ok((server, addr))
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(STEP)
        .build()
        .expect("a reqwest client")
}

fn auth(server: &JupyterServer) -> String {
    format!("token {}", server.token())
}

#[tokio::test(flavor = "multi_thread")]
async fn api_status_answers_json_through_the_proxy() -> Result<()> {
    let (server, addr) = notebook_behind_gateway().await?;
    let response = client()
        .get(format!("http://{addr}/user/alice/api/status"))
        .header("authorization", auth(&server))
        .send()
        .await?;
    ensure!(
        response.status() == 200,
        "status {}:\n{}",
        response.status(),
        server.log_tail(20)
    );
    let content_type = response.headers()["content-type"].to_str()?.to_owned();
    ensure!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let status: serde_json::Value = serde_json::from_slice(&response.bytes().await?)?;
    ensure!(status["started"].is_string(), "{status}");
    ensure!(status["kernels"].is_number(), "{status}");
    // And without the token, the server's own 403 comes back unchanged.
    let denied = client()
        .get(format!("http://{addr}/user/alice/api/status"))
        .send()
        .await?;
    ensure!(denied.status() == 403, "{}", denied.status());
    Ok(())
}

/// 20 MB of printable, unrepeating text: a mangled byte or a lost chunk shows.
fn big_text() -> String {
    let mut rng = fastrand::Rng::with_seed(9);
    let mut text = String::with_capacity(20 * 1024 * 1024 + 100);
    while text.len() < 20 * 1024 * 1024 {
        for _ in 0..99 {
            text.push(rng.alphanumeric());
        }
        text.push('\n');
    }
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn a_20_mb_upload_round_trips_intact() -> Result<()> {
    let (server, addr) = notebook_behind_gateway().await?;
    let text = big_text();
    let base = format!("http://{addr}/user/alice");
    let body = serde_json::json!({ "type": "file", "format": "text", "content": text });
    let put = client()
        .put(format!("{base}/api/contents/big.txt"))
        .header("authorization", auth(&server))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body)?)
        .send()
        .await?;
    ensure!(
        put.status() == 201 || put.status() == 200,
        "PUT answered {}: {}",
        put.status(),
        put.text().await?
    );
    let on_disk = std::fs::read_to_string(server.root_dir().join("big.txt"))?;
    ensure!(on_disk == text, "the file on disk differs from the upload");
    // Back through the contents API (JSON) and as a raw download.
    let got = client()
        .get(format!("{base}/api/contents/big.txt?content=1&format=text"))
        .header("authorization", auth(&server))
        .send()
        .await?;
    ensure!(
        got.status() == 200,
        "GET contents answered {}",
        got.status()
    );
    let model: serde_json::Value = serde_json::from_slice(&got.bytes().await?)?;
    ensure!(
        model["content"].as_str() == Some(text.as_str()),
        "the contents API gave other text back"
    );
    let raw = client()
        .get(format!("{base}/files/big.txt"))
        .header("authorization", auth(&server))
        .send()
        .await?;
    ensure!(raw.status() == 200, "GET files answered {}", raw.status());
    ensure!(
        raw.bytes().await? == text.as_bytes(),
        "the download differs"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kernel_prints_42_over_the_proxied_websocket() -> Result<()> {
    let (server, addr) = notebook_behind_gateway().await?;
    let base = format!("http://{addr}/user/alice");
    let created = client()
        .post(format!("{base}/api/kernels"))
        .header("authorization", auth(&server))
        .header("content-type", "application/json")
        .body(r#"{"name": "python3"}"#)
        .send()
        .await?;
    ensure!(
        created.status() == 201,
        "POST kernels answered {}:\n{}",
        created.status(),
        server.log_tail(30)
    );
    let kernel: serde_json::Value = serde_json::from_slice(&created.bytes().await?)?;
    let id = kernel["id"].as_str().context("no kernel id")?.to_owned();

    let session = new_id();
    let mut request =
        format!("ws://{addr}/user/alice/api/kernels/{id}/channels?session_id={session}")
            .into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", auth(&server).parse()?);
    let (mut ws, response) =
        tokio::time::timeout(STEP, tokio_tungstenite::connect_async(request)).await??;
    ensure!(response.status() == 101, "{}", response.status());
    ensure!(
        !response.headers().contains_key("x-forwarded-for"),
        "request headers leaked into the response"
    );

    let msg_id = new_id();
    let execute = execute_request(
        "print(6*7)",
        &msg_id,
        &session,
        "alice",
        "2026-12-01T00:00:00.000000Z",
    );
    ws.send(Message::text(execute.to_string())).await?;
    let mut collector = Collector::new(msg_id);
    let execution = tokio::time::timeout(STEP, async {
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message? {
                let json: serde_json::Value = serde_json::from_str(text.as_str())?;
                if collector.feed(&json) {
                    return Ok(collector.finish());
                }
            }
        }
        bail!("the kernel websocket closed before the reply")
    })
    .await
    .context("no execute_reply in time")??;
    ensure!(
        execution.stdout() == "42\n",
        "stdout {:?}, error {:?}",
        execution.stdout(),
        execution.error
    );
    ensure!(execution.reply_status == "ok", "{}", execution.reply_status);
    // Closing from the client ends the tunnel; the kernel can then be deleted as usual.
    ws.close(None).await?;
    let deleted = client()
        .delete(format!("{base}/api/kernels/{id}"))
        .header("authorization", auth(&server))
        .send()
        .await?;
    ensure!(
        deleted.status() == 204,
        "DELETE answered {}",
        deleted.status()
    );
    Ok(())
}

/// A port nobody listens on (bound, then released).
async fn closed_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    Ok(listener.local_addr()?.port())
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502_naming_nothing() -> Result<()> {
    let port = closed_port().await?;
    let addr = gateway(&format!("http://127.0.0.1:{port}"), ProxyOptions::default()).await?;
    let response = client()
        .get(format!("http://{addr}/user/alice/api/status?token=s3cret"))
        .send()
        .await?;
    ensure!(response.status() == 502, "{}", response.status());
    ensure!(response.headers()["content-type"] == "text/plain; charset=utf-8");
    let text = response.text().await?;
    ensure!(text.starts_with("bad gateway"), "{text}");
    for secret in ["127.0.0.1", &port.to_string(), "s3cret", "alice"] {
        ensure!(!text.contains(secret), "{text:?} names {secret}");
    }
    Ok(())
}

#[tokio::test]
async fn a_silent_upstream_is_a_504() -> Result<()> {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await?;
    let port = silent.local_addr()?.port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let options = ProxyOptions {
        response_header_timeout: Duration::from_millis(300),
        ..ProxyOptions::default()
    };
    let addr = gateway(&format!("http://127.0.0.1:{port}"), options).await?;
    let started = std::time::Instant::now();
    let response = client()
        .get(format!("http://{addr}/user/alice/api/status"))
        .send()
        .await?;
    ensure!(response.status() == 504, "{}", response.status());
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    ensure!(response.text().await?.starts_with("gateway timeout"));
    Ok(())
}

/// An upstream answering every request with the headers it received, as JSON (name to the
/// list of values), and a few hop-by-hop headers of its own.
async fn header_echo() -> Result<String> {
    async fn echo(headers: HeaderMap) -> Response {
        let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (name, value) in &headers {
            seen.entry(name.as_str().to_owned())
                .or_default()
                .push(value.to_str().unwrap_or("<binary>").to_owned());
        }
        Response::builder()
            .header("content-type", "application/json")
            .header("connection", "x-hop-response")
            .header("x-hop-response", "1")
            .header("keep-alive", "timeout=5")
            .header("proxy-authenticate", "Basic")
            .header("x-end-to-end-response", "yes")
            .body(Body::from(serde_json::to_vec(&seen).unwrap_or_default()))
            .unwrap_or_default()
    }
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, Router::new().fallback(echo)).await });
    Ok(url)
}

/// One raw HTTP/1.1 exchange with `Connection: close` (so the headers are exactly ours):
/// the response head and body.
async fn raw_exchange(addr: SocketAddr, request: &str) -> Result<(String, Vec<u8>)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut response)).await??;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the response head")?;
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    Ok((head, response[split + 4..].to_vec()))
}

#[tokio::test]
async fn hop_by_hop_headers_stay_behind_and_x_forwarded_headers_are_added() -> Result<()> {
    let upstream = header_echo().await?;
    let addr = gateway(&upstream, ProxyOptions::default()).await?;
    let request = "GET /user/alice/echo?x=1 HTTP/1.1\r\n\
                   Host: gateway.example:8443\r\n\
                   Connection: close, X-Secret-Hop\r\n\
                   X-Secret-Hop: 1\r\n\
                   Keep-Alive: timeout=5\r\n\
                   TE: trailers\r\n\
                   Upgrade: h2c\r\n\
                   Proxy-Authorization: Basic eDp5\r\n\
                   Proxy: http://evil.example\r\n\
                   X-Forwarded-For: 192.0.2.1\r\n\
                   Authorization: token abc\r\n\
                   Cookie: a=b\r\n\
                   \r\n";
    let (head, body) = raw_exchange(addr, request).await?;
    ensure!(head.starts_with("http/1.1 200"), "{head}");
    let seen: BTreeMap<String, Vec<String>> = serde_json::from_slice(&body)?;
    for hop in [
        "connection",
        "x-secret-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy",
    ] {
        ensure!(!seen.contains_key(hop), "{hop} was forwarded: {seen:?}");
    }
    let one = |name: &str| seen.get(name).map(|v| v.join("|"));
    ensure!(
        one("host").as_deref() == Some("gateway.example:8443"),
        "{seen:?}"
    );
    ensure!(one("authorization").as_deref() == Some("token abc"));
    ensure!(one("cookie").as_deref() == Some("a=b"));
    ensure!(
        one("x-forwarded-for").as_deref() == Some("192.0.2.1,127.0.0.1"),
        "{seen:?}"
    );
    ensure!(one("x-forwarded-proto").as_deref() == Some("http"));
    ensure!(one("x-forwarded-port").as_deref() == Some("8443"));
    ensure!(one("x-forwarded-host").as_deref() == Some("gateway.example:8443"));
    // The upstream's own hop-by-hop headers do not reach the client either.
    for hop in ["x-hop-response", "keep-alive", "proxy-authenticate"] {
        ensure!(
            !head.contains(&format!("\n{hop}:")),
            "{hop} came back: {head}"
        );
    }
    ensure!(head.contains("\nx-end-to-end-response: yes"), "{head}");
    Ok(())
}

#[tokio::test]
async fn x_forwarded_headers_can_be_turned_off() -> Result<()> {
    let upstream = header_echo().await?;
    let options = ProxyOptions {
        x_forwarded: false,
        ..ProxyOptions::default()
    };
    let addr = gateway(&upstream, options).await?;
    let request = "GET /user/alice/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    let (_, body) = raw_exchange(addr, request).await?;
    let seen: BTreeMap<String, Vec<String>> = serde_json::from_slice(&body)?;
    ensure!(
        !seen.keys().any(|k| k.starts_with("x-forwarded")),
        "{seen:?}"
    );
    Ok(())
}

/// An upstream whose download sends one chunk, then waits for the test to have received it
/// before sending the next; and whose upload handler reports the first chunk as soon as it
/// arrives. A proxy that buffers whole bodies deadlocks here.
#[tokio::test]
async fn bodies_stream_both_ways_without_buffering() -> Result<()> {
    use tokio::sync::mpsc;

    let (first_up_arrived, mut first_up) = mpsc::channel::<()>(1);
    let (release_down, release_down_rx) = mpsc::channel::<()>(1);
    let release_down_rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(release_down_rx)));
    let app = Router::new()
        .route(
            "/user/alice/down",
            any({
                let release = release_down_rx.clone();
                move || async move {
                    let rx = release.lock().await.take().expect("one download");
                    let chunks = futures_util::stream::unfold((0, rx), |(i, mut rx)| async move {
                        match i {
                            0 => Some((Ok::<_, std::io::Error>("first\n".to_owned()), (1, rx))),
                            1 => {
                                rx.recv().await?;
                                Some((Ok("second\n".to_owned()), (2, rx)))
                            }
                            _ => None,
                        }
                    });
                    Body::from_stream(chunks)
                }
            }),
        )
        .route(
            "/user/alice/up",
            any(move |request: Request| async move {
                let mut body = request.into_body().into_data_stream();
                let mut total = 0;
                while let Some(chunk) = body.next().await {
                    let chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
                    if total == 0 && !chunk.is_empty() {
                        let _ = first_up_arrived.send(()).await;
                    }
                    total += chunk.len();
                }
                Ok::<_, StatusCode>(total.to_string())
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let addr = gateway(&upstream, ProxyOptions::default()).await?;

    // Download: the first chunk arrives while the upstream still holds the second.
    let mut download = client()
        .get(format!("http://{addr}/user/alice/down"))
        .send()
        .await?;
    let first = tokio::time::timeout(Duration::from_secs(10), download.chunk())
        .await
        .context("the first chunk was held back")??;
    ensure!(first.as_deref() == Some(&b"first\n"[..]), "{first:?}");
    release_down.send(()).await?;
    let rest = download.bytes().await?;
    ensure!(&rest[..] == b"second\n", "{rest:?}");

    // Upload: the upstream sees the first chunk while the client still holds the second.
    let (more, more_rx) = mpsc::channel::<Vec<u8>>(1);
    let stream = futures_util::stream::unfold(more_rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, std::io::Error>(chunk), rx))
    });
    let upload = tokio::spawn(
        client()
            .post(format!("http://{addr}/user/alice/up"))
            .body(reqwest::Body::wrap_stream(stream))
            .send(),
    );
    more.send(vec![b'a'; 1000]).await?;
    tokio::time::timeout(Duration::from_secs(10), first_up.recv())
        .await
        .context("the first upload chunk was held back")?;
    more.send(vec![b'b'; 500]).await?;
    drop(more);
    let response = upload.await??;
    ensure!(response.status() == 200, "{}", response.status());
    ensure!(response.text().await? == "1500");
    Ok(())
}
