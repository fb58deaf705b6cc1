//! The gateway's reverse proxy against configurable-http-proxy, on the same upstream (issue 9).
//!
//! ```text
//! proxy-load [--duration SECS] [--connections N] [--warmup SECS]
//! ```
//!
//! Starts, each in a process of its own and on loopback only:
//!
//! - a small upstream (this binary, `serve-upstream`): `pong` for any GET, and a websocket
//!   echo for any upgrade;
//! - the gateway's [`Proxy`] in front of it (this binary, `serve-proxy URL`), mounted on
//!   `/user/alice/{*rest}` of an axum server as the gateway mounts it;
//! - configurable-http-proxy (the harness's, `.peers/chp`), with a route `/user/alice` to the
//!   same upstream added through its REST API.
//!
//! Then, for each of direct / ours / CHP in turn (so that load from elsewhere hits all three
//! alike), a bounded closed loop: N keep-alive connections each sending `GET /user/alice/ping`
//! and waiting for the answer, for a fixed time; the same with one connection (latency
//! without queueing); and the same two over websockets (a 32-byte text message echoed). It
//! prints one markdown table per protocol: requests (round trips) per second, latency
//! p50/p99, the latency each proxy adds to the direct figure, and the CPU the proxy process
//! used per 1,000 requests (from `/proc/PID/stat`). Everything it started is stopped by PID
//! (SIGTERM) when it ends; the two child processes also exit when their stdin closes.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::any;
use axum::serve::ListenerExt;
use egi_examples::gateway::proxy::{Proxy, ProxyOptions, Upstream};
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Result<T, E = BoxError> = std::result::Result<T, E>;

const PING_PATH: &str = "/user/alice/ping";
const WS_PATH: &str = "/user/alice/ws";
const WS_MESSAGE: &str = "0123456789abcdef0123456789abcdef";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

struct Args {
    duration: Duration,
    warmup: Duration,
    connections: usize,
}

fn args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut out = Args {
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        connections: 16,
    };
    while let Some(arg) = it.next() {
        let value = it.next().ok_or(format!("{arg} needs a value"))?;
        let secs = |v: &str| v.parse::<f64>().map(Duration::from_secs_f64);
        match arg.as_str() {
            "--duration" => out.duration = secs(&value).map_err(|e| format!("{arg}: {e}"))?,
            "--warmup" => out.warmup = secs(&value).map_err(|e| format!("{arg}: {e}"))?,
            "--connections" => {
                out.connections = value.parse().map_err(|e| format!("{arg}: {e}"))?;
            }
            _ => return Err(format!("unknown argument {arg}")),
        }
    }
    if out.duration > Duration::from_secs(600) || out.connections == 0 || out.connections > 512 {
        return Err("bounded: --duration at most 600 s, --connections 1 to 512".to_owned());
    }
    Ok(out)
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let first = argv.next();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = match first.as_deref() {
        Some("serve-upstream") => runtime.block_on(serve_upstream()),
        Some("serve-proxy") => match argv.next() {
            Some(url) => runtime.block_on(serve_proxy(url)),
            None => Err("serve-proxy needs the upstream URL".into()),
        },
        _ => match args(first.into_iter().chain(argv)) {
            Ok(args) => runtime.block_on(run(args)),
            Err(e) => Err(format!(
                "{e}\nusage: proxy-load [--duration SECS] [--connections N] [--warmup SECS]"
            )
            .into()),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxy-load: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The two child processes.

/// Exits the process when stdin closes (the parent is gone).
fn exit_with_parent() {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

async fn listen() -> Result<(TcpListener, String)> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((listener, url))
}

/// `pong` for any request, a websocket echo for any upgrade; HTTP/1.1 keep-alive.
async fn serve_upstream() -> Result<()> {
    exit_with_parent();
    let (listener, url) = listen().await?;
    println!("READY {url}");
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(upstream_answer);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

async fn upstream_answer(
    mut request: hyper::Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let key = request.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let Some(key) = key.filter(|_| request.headers().contains_key(header::UPGRADE)) else {
        return Ok(hyper::Response::new(Full::new(Bytes::from_static(b"pong"))));
    };
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(message)) = ws.next().await {
            if (message.is_text() || message.is_binary()) && ws.send(message).await.is_err() {
                break;
            }
        }
    });
    let accept = derive_accept_key(key.as_bytes());
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a header value"),
    );
    Ok(response)
}

async fn to_upstream(
    State((proxy, upstream)): State<(Proxy, Upstream)>,
    request: Request,
) -> Response {
    proxy.forward(request, &upstream).await
}

/// The gateway's proxy on `/user/alice/{*rest}`, as the gateway serves it.
async fn serve_proxy(upstream: String) -> Result<()> {
    exit_with_parent();
    let upstream = Upstream::parse(&upstream)?;
    let app = axum::Router::new()
        .route("/user/alice/{*rest}", any(to_upstream))
        .with_state((Proxy::new(ProxyOptions::default()), upstream));
    let (listener, url) = listen().await?;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    println!("READY {url}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes started by the measuring process, stopped by PID.

struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// user + system CPU time so far, from `/proc/PID/stat` (clock ticks of 10 ms).
    fn cpu(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the `(comm)`, which may hold spaces: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let ticks: u64 = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|t| t.parse::<u64>().ok())
            .sum();
        Duration::from_millis(ticks * 10)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("sh")
                .args([
                    "-c",
                    "kill -TERM \"$0\" 2>/dev/null",
                    &self.pid().to_string(),
                ])
                .stdin(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!("{} did not stop on SIGTERM; killing it", self.name);
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// This binary in `role`, once it printed `READY url`.
fn spawn_self(name: &'static str, role: &[&str]) -> Result<(Process, SocketAddr)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(role)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let process = Process { name, child };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("READY http://")
        .ok_or_else(|| format!("{name} did not start: {line:?}"))?;
    Ok((process, url.parse()?))
}

fn free_port() -> Result<u16> {
    Ok(StdListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// configurable-http-proxy with `/user/alice` routed to `upstream`, as JupyterHub runs it
/// (default options: `xfwd` on, no `changeOrigin`).
async fn start_chp(upstream: SocketAddr) -> Result<(Process, SocketAddr)> {
    let exe = egi_test_harness::jupyterhub::Tools::find()?.proxy;
    let token = format!("{:016x}", std::process::id() as u64 * 7919 + 17);
    let (port, api_port) = (free_port()?, free_port()?);
    let child = Command::new(exe)
        .args(["--ip", "127.0.0.1", "--port", &port.to_string()])
        .args(["--api-ip", "127.0.0.1", "--api-port", &api_port.to_string()])
        .args(["--log-level", "error"])
        .env("CONFIGPROXY_AUTH_TOKEN", &token)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    let process = Process {
        name: "configurable-http-proxy",
        child,
    };
    let api = format!("http://127.0.0.1:{api_port}/api/routes");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let added = client
            .post(format!("{api}/user/alice"))
            .header("authorization", format!("token {token}"))
            .body(serde_json::json!({ "target": format!("http://{upstream}") }).to_string())
            .send()
            .await;
        match added {
            Ok(r) if r.status().is_success() => break,
            Ok(r) => return Err(format!("CHP refused the route: {}", r.status()).into()),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(format!("CHP's API did not answer: {e}").into()),
        }
    }
    Ok((process, SocketAddr::from((Ipv4Addr::LOCALHOST, port))))
}

// ---------------------------------------------------------------------------------------------
// Closed-loop load.

#[derive(Default)]
struct Stats {
    /// Latencies of every completed exchange, in nanoseconds, sorted.
    latencies: Vec<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Stats {
    fn merge(parts: Vec<(Vec<u64>, u64)>, elapsed: Duration) -> Self {
        let mut latencies = Vec::with_capacity(parts.iter().map(|p| p.0.len()).sum());
        let mut errors = 0;
        for (l, e) in parts {
            latencies.extend(l);
            errors += e;
        }
        latencies.sort_unstable();
        Self {
            latencies,
            errors,
            elapsed,
        }
    }

    fn rate(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, in microseconds.
    fn pct(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        self.latencies[rank.clamp(1, self.latencies.len()) - 1] as f64 / 1000.0
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Http,
    WebSocket,
}

/// `connections` loops against `addr` for `duration`, each timing one exchange at a time.
async fn load(
    addr: SocketAddr,
    kind: Kind,
    connections: usize,
    duration: Duration,
) -> Result<Stats> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        tasks.push(tokio::spawn(async move {
            match kind {
                Kind::Http => http_loop(addr, deadline).await,
                Kind::WebSocket => ws_loop(addr, deadline).await,
            }
        }));
    }
    let mut parts = Vec::with_capacity(connections);
    for task in tasks {
        parts.push(task.await.map_err(|e| e.to_string())??);
    }
    Ok(Stats::merge(parts, start.elapsed()))
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn http_loop(addr: SocketAddr, deadline: Instant) -> Result<(Vec<u64>, u64)> {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(connect(addr).await?)).await?;
    tokio::spawn(connection);
    let host = HeaderValue::from_str(&addr.to_string())?;
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    while Instant::now() < deadline {
        let request = hyper::Request::get(PING_PATH)
            .header(header::HOST, host.clone())
            .body(Empty::<Bytes>::new())?;
        sender.ready().await?;
        let sent = Instant::now();
        let response = sender.send_request(request).await?;
        let ok = response.status() == 200;
        let body = response.into_body().collect().await?.to_bytes();
        let took = sent.elapsed();
        if ok && &body[..] == b"pong" {
            latencies.push(took.as_nanos() as u64);
        } else {
            errors += 1;
        }
    }
    Ok((latencies, errors))
}

async fn ws_loop(addr: SocketAddr, deadline: Instant) -> Result<(Vec<u64>, u64)> {
    let url = format!("ws://{addr}{WS_PATH}");
    let (mut ws, _) = tokio_tungstenite::client_async(url, connect(addr).await?).await?;
    let mut latencies = Vec::with_capacity(1 << 16);
    let mut errors = 0;
    while Instant::now() < deadline {
        let sent = Instant::now();
        ws.send(Message::text(WS_MESSAGE)).await?;
        match ws.next().await {
            Some(Ok(Message::Text(text))) if text.as_str() == WS_MESSAGE => {
                latencies.push(sent.elapsed().as_nanos() as u64);
            }
            Some(Ok(_)) => errors += 1,
            Some(Err(e)) => return Err(e.into()),
            None => return Err("the websocket closed".into()),
        }
    }
    let _ = ws.close(None).await;
    Ok((latencies, errors))
}

// ---------------------------------------------------------------------------------------------
// The run.

struct Target {
    name: &'static str,
    addr: SocketAddr,
    process: Option<Process>,
}

struct Row {
    many: Stats,
    one: Stats,
    cpu_per_1000: Option<Duration>,
}

async fn run(args: Args) -> Result<()> {
    let (upstream_process, upstream) = spawn_self("upstream", &["serve-upstream"])?;
    let upstream_url = format!("http://{upstream}");
    let (ours, ours_addr) = spawn_self("our proxy", &["serve-proxy", &upstream_url])?;
    let (chp, chp_addr) = start_chp(upstream).await?;
    let mut targets = [
        Target {
            name: "direct",
            addr: upstream,
            process: None,
        },
        Target {
            name: "ours (egi-examples gateway::proxy)",
            addr: ours_addr,
            process: Some(ours),
        },
        Target {
            name: "configurable-http-proxy 5.3.0",
            addr: chp_addr,
            process: Some(chp),
        },
    ];
    let n = args.connections;
    eprintln!(
        "upstream pid {}, ours pid {}, CHP pid {}; {n} connections, {:?} per run",
        upstream_process.pid(),
        targets[1].process.as_ref().map_or(0, Process::pid),
        targets[2].process.as_ref().map_or(0, Process::pid),
        args.duration
    );
    for (kind, label, unit) in [
        (Kind::Http, "HTTP GET, 4-byte answer", "requests/s"),
        (
            Kind::WebSocket,
            "websocket, 32-byte text echoed",
            "round trips/s",
        ),
    ] {
        let mut rows = Vec::new();
        for target in &mut targets {
            load(target.addr, kind, n, args.warmup).await?;
            let cpu_before = target.process.as_ref().map(Process::cpu);
            let many = load(target.addr, kind, n, args.duration).await?;
            let cpu_per_1000 = cpu_before.zip(target.process.as_ref()).map(|(before, p)| {
                (p.cpu().saturating_sub(before))
                    .mul_f64(1000.0 / many.latencies.len().max(1) as f64)
            });
            let one = load(target.addr, kind, 1, args.duration).await?;
            eprintln!(
                "{label}, {}: {:.0} {unit} with {n}, p50 {:.0} µs with 1 ({} errors)",
                target.name,
                many.rate(),
                one.pct(50.0),
                many.errors + one.errors
            );
            rows.push(Row {
                many,
                one,
                cpu_per_1000,
            });
        }
        print_table(label, unit, n, &targets, &rows);
    }
    drop(targets);
    drop(upstream_process);
    Ok(())
}

fn print_table(label: &str, unit: &str, n: usize, targets: &[Target], rows: &[Row]) {
    let direct = &rows[0];
    println!("\n### {label}\n");
    println!(
        "| | {unit}, {n} connections | p50 / p99, {n} connections | added p50 / p99 | \
         p50 / p99, 1 connection | added p50 / p99, 1 connection | proxy CPU per 1,000 | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (target, row) in targets.iter().zip(rows) {
        let added = |s: &Stats, d: &Stats| {
            if std::ptr::eq(row, direct) {
                "".to_owned()
            } else {
                format!(
                    "{:+.0} / {:+.0} µs",
                    s.pct(50.0) - d.pct(50.0),
                    s.pct(99.0) - d.pct(99.0)
                )
            }
        };
        println!(
            "| {} | {:.0} | {:.0} / {:.0} µs | {} | {:.0} / {:.0} µs | {} | {} | {} |",
            target.name,
            row.many.rate(),
            row.many.pct(50.0),
            row.many.pct(99.0),
            added(&row.many, &direct.many),
            row.one.pct(50.0),
            row.one.pct(99.0),
            added(&row.one, &direct.one),
            row.cpu_per_1000.map_or(String::new(), |c| format!(
                "{:.1} ms",
                c.as_secs_f64() * 1000.0
            )),
            row.many.errors + row.one.errors,
        );
    }
    if let [_, ours, chp] = rows {
        println!(
            "\nours / CHP, {n} connections: {:.2}x the {unit}",
            ours.many.rate() / chp.many.rate()
        );
    }
}
