//! A real JupyterHub 6 (PyPI) behind configurable-http-proxy (npm) on loopback.
//!
//! [`JupyterHub::start`] writes a `jupyterhub_config.py` into a fresh temporary directory and
//! starts the hub there, on three free loopback ports (public proxy, proxy API, hub), with the
//! settings of `../shared/brief/peers.md`: the dummy authenticator allowing everyone,
//! `SimpleLocalProcessSpawner` with homes inside the directory and the venv's
//! `jupyterhub-singleuser --allow-root`, explicit database, cookie secret and pid files,
//! `slow_spawn_timeout` 0 (so that `POST .../server` answers 202 at once) and
//! `cleanup_servers`. A service named `monitor` holds [`JupyterHub::token`] with the scopes a
//! monitoring probe needs. Users whose name starts with [`BROKEN_USER_PREFIX`] get a spawner
//! command that does not exist, so that their spawns fail. Named servers are allowed.
//!
//! The hub is ready when `GET /hub/api/` answers 200 through the proxy. Dropping the value
//! (or [`JupyterHub::stop`]) sends SIGTERM to the hub, which stops the single-user servers
//! and the proxy; the directory goes after that.
//!
//! The venv and the proxy are looked up in `$EGI_PEERS_DIR`, else in the workspace's
//! gitignored `.peers/` directory, where `.ci/install-peers` puts them.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::wire::tail;

/// How long [`JupyterHub::start`] waits for `GET /hub/api/` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Users whose name starts with this have a spawner command that does not exist.
pub const BROKEN_USER_PREFIX: &str = "broken-";

/// Users whose name starts with this have a server process that exits at once (`false`)
/// and a 12 s `http_timeout`: with the default `slow_spawn_timeout` (10 s), JupyterHub 6.1
/// answers the start request 500 before the spawn fails with its reason.
pub const EXITING_USER_PREFIX: &str = "exits-";

/// The name of the EGI-style status service ([`Options::status_service_url`]).
pub const STATUS_SERVICE_NAME: &str = "status";

/// The user allowed to see the status service's details (`access:services!service=status`).
pub const STATUS_VIEWER: &str = "viewer";

/// The name of the service that holds [`JupyterHub::token`].
pub const SERVICE_NAME: &str = "monitor";

/// The scopes of the service token.
pub const SERVICE_SCOPES: [&str; 5] = [
    "admin:users",
    "admin:servers",
    "access:servers",
    "list:users",
    "read:metrics",
];

const POLL: Duration = Duration::from_millis(50);
const PORT_ATTEMPTS: usize = 3;
/// The hub stops every single-user server before exiting: give it time.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Where the venv (with `jupyterhub`, `jupyterhub-singleuser`) and the proxy are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// The venv's directory (`bin/jupyterhub`, `bin/jupyterhub-singleuser`).
    pub venv: PathBuf,
    /// The `configurable-http-proxy` executable.
    pub proxy: PathBuf,
}

impl Tools {
    /// Finds both in `$EGI_PEERS_DIR` or the workspace's `.peers/`; the error says how to
    /// install them.
    pub fn find() -> Result<Self> {
        let peers = std::env::var_os("EGI_PEERS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.peers"));
        Self::find_in(&peers)
    }

    /// Finds both in `peers` (`jupyterhub/` is the venv, `chp/` the npm prefix).
    pub fn find_in(peers: &Path) -> Result<Self> {
        let tools = Self {
            venv: peers.join("jupyterhub"),
            proxy: peers.join("chp/node_modules/.bin/configurable-http-proxy"),
        };
        for exe in [
            tools.venv.join("bin/jupyterhub"),
            tools.venv.join("bin/jupyterhub-singleuser"),
            tools.proxy.clone(),
        ] {
            if !exe.is_file() {
                bail!(
                    "{} not found: run .ci/install-peers (it installs JupyterHub 6 into a venv \
                     and configurable-http-proxy with npm, under .peers/)",
                    exe.display()
                );
            }
        }
        Ok(tools)
    }
}

impl Tools {
    /// Runs the containers of images containing `image` as this venv's real
    /// `jupyterhub-singleuser`, on the pod's loopback address and port (kubesim process pods).
    pub fn singleuser_pods(&self, image: &str) -> crate::kubesim::ProcessImage {
        crate::kubesim::ProcessImage::new(
            image,
            [
                self.venv
                    .join("bin/jupyterhub-singleuser")
                    .to_string_lossy()
                    .into_owned(),
                "--ip={pod_ip}".to_owned(),
                "--port={port}".to_owned(),
                // The tests run as root; jupyter_server refuses root without it.
                "--allow-root".to_owned(),
            ],
        )
    }
}

/// How to configure the hub; [`Options::default`] is what `peers.md` recommends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `tornado_settings.slow_spawn_timeout`: 0 makes `POST .../server` answer 202 at once;
    /// JupyterHub's own default (10 s) makes it wait, and answer 500 if the spawn fails
    /// meanwhile.
    pub slow_spawn_timeout: Duration,
    /// `JupyterHub.base_url`, such as `/jhub/` (default `/`).
    pub base_url: String,
    /// Registers a service as EGI's chart does: named [`STATUS_SERVICE_NAME`], `admin:
    /// true`, with this `url` (the proxy routes `{base}services/status/` to it) and its own
    /// token ([`JupyterHub::status_token`]); `oauth_no_confirm`, and a role giving
    /// [`STATUS_VIEWER`] `access:services!service=status`.
    pub status_service_url: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            slow_spawn_timeout: Duration::ZERO,
            base_url: "/".into(),
            status_service_url: None,
        }
    }
}

/// A running JupyterHub; stopped (SIGTERM) and its directory removed on drop.
#[derive(Debug)]
pub struct JupyterHub {
    child: Child,
    url: String,
    hub_url: String,
    token: String,
    status_token: String,
    log: PathBuf,
    // Declared last: removed after the hub has stopped.
    dir: TempDir,
}

impl JupyterHub {
    /// Starts a hub with the default [`Options`].
    pub fn start() -> Result<Self> {
        Self::start_with(&Options::default())
    }

    /// Starts a hub configured by `options`.
    pub fn start_with(options: &Options) -> Result<Self> {
        let tools = Tools::find()?;
        let dir = tempfile::Builder::new()
            .prefix("egi-jupyterhub-")
            .tempdir()
            .context("creating a temporary directory")?;
        let token = format!(
            "egi-monitor-{:016x}{:016x}",
            fastrand::u64(..),
            fastrand::u64(..)
        );
        let status_token = format!("egi-status-{:016x}", fastrand::u64(..));
        let base = format!("/{}/", options.base_url.trim_matches('/')).replace("//", "/");
        let log = dir.path().join("jupyterhub.log");
        for _ in 0..PORT_ATTEMPTS {
            let ports = Ports {
                public: free_port()?,
                proxy_api: free_port()?,
                hub: free_port()?,
            };
            let config = dir.path().join("jupyterhub_config.py");
            fs::write(
                &config,
                config_py(&tools, dir.path(), ports, (&token, &status_token), options),
            )?;
            let out = fs::File::create(&log)?;
            let mut child = Command::new(tools.venv.join("bin/jupyterhub"))
                .arg("-f")
                .arg(&config)
                .current_dir(dir.path())
                .env("PATH", path_with(&tools.venv.join("bin")))
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .context("starting jupyterhub")?;
            let url = format!(
                "http://127.0.0.1:{}{}",
                ports.public,
                base.trim_end_matches('/')
            );
            let hub_url = format!(
                "http://127.0.0.1:{}{}",
                ports.hub,
                base.trim_end_matches('/')
            );
            match wait_ready(&mut child, ports.public, &base, &log) {
                Ok(true) => {
                    return Ok(Self {
                        child,
                        url,
                        hub_url,
                        token,
                        status_token,
                        log,
                        dir,
                    });
                }
                Ok(false) => terminate(&mut child, dir.path()),
                Err(e) => {
                    terminate(&mut child, dir.path());
                    return Err(e);
                }
            }
        }
        bail!(
            "jupyterhub found a port taken {PORT_ATTEMPTS} times:\n{}",
            tail(&log, 30)
        )
    }

    /// The hub's REST API URL on the hub's own port, bypassing the proxy, as EGI's chart sets
    /// `MONITORED_URL` (`http://hub:8081/hub/api`).
    pub fn internal_api_url(&self) -> String {
        format!("{}/hub/api", self.hub_url)
    }

    /// The token of the status service ([`Options::status_service_url`]).
    pub fn status_token(&self) -> &str {
        &self.status_token
    }

    /// The PID of the hub process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The public URL (the proxy) with the base URL, such as `http://127.0.0.1:41234` or
    /// `http://127.0.0.1:41234/jhub` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The hub's REST API URL, `{url}/hub/api` (what EGI's `MONITORED_URL` holds).
    pub fn api_url(&self) -> String {
        format!("{}/hub/api", self.url)
    }

    /// The token of the [`SERVICE_NAME`] service, with [`SERVICE_SCOPES`].
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The hub's log (stdout and stderr of the hub, the proxy and the single-user servers).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The temporary directory holding the configuration, database, homes and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the hub now (SIGTERM, then SIGKILL after 30 s); it stops its servers and the
    /// proxy. The directory stays until the value is dropped.
    pub fn stop(&mut self) {
        terminate(&mut self.child, self.dir.path());
    }

    /// Kills the hub process alone (SIGKILL, as a crash would), leaving the proxy up: the
    /// proxy then answers 503 for the hub's routes. The proxy is stopped on drop.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for JupyterHub {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone, Copy)]
struct Ports {
    public: u16,
    proxy_api: u16,
    hub: u16,
}

/// A Python string literal (the paths and token are ours, but quote them properly anyway).
fn py(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn config_py(
    tools: &Tools,
    dir: &Path,
    ports: Ports,
    (token, status_token): (&str, &str),
    options: &Options,
) -> String {
    let d = |name: &str| py(&dir.join(name).display().to_string());
    let venv_bin = tools.venv.join("bin");
    let singleuser = py(&venv_bin.join("jupyterhub-singleuser").display().to_string());
    let path = py(&path_with(&venv_bin));
    let proxy = py(&tools.proxy.display().to_string());
    let homes = py(&format!("{}/home/{{username}}", dir.display()));
    let scopes = SERVICE_SCOPES.map(py).join(", ");
    let broken = py(&dir.join("no-such-singleuser-command").display().to_string());
    let token = py(token);
    let service = py(SERVICE_NAME);
    let prefix = py(BROKEN_USER_PREFIX);
    let slow = options.slow_spawn_timeout.as_secs_f64();
    let base = py(&format!("/{}/", options.base_url.trim_matches('/')).replace("//", "/"));
    let exiting = py(EXITING_USER_PREFIX);
    let status = match &options.status_service_url {
        None => String::new(),
        Some(url) => format!(
            r#"c.JupyterHub.services.append({{"name": {name}, "api_token": {tok}, "admin": True, "url": {url}, "oauth_no_confirm": True}})
c.JupyterHub.load_roles.append({{"name": "status-viewers", "scopes": ["access:services!service=" + {name}], "users": [{viewer}]}})
"#,
            name = py(STATUS_SERVICE_NAME),
            tok = py(status_token),
            url = py(url),
            viewer = py(STATUS_VIEWER),
        ),
    };
    let (public, proxy_api, hub) = (ports.public, ports.proxy_api, ports.hub);
    let (db, secret, hub_pid, proxy_pid) = (
        d("jupyterhub.sqlite"),
        d("jupyterhub_cookie_secret"),
        d("jupyterhub.pid"),
        d("proxy.pid"),
    );
    format!(
        r#"# Written by egi-test-harness (tests/src/jupyterhub.rs).
c = get_config()  # noqa
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub}
c.JupyterHub.base_url = {base}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.ConfigurableHTTPProxy.command = [{proxy}]
c.ConfigurableHTTPProxy.pid_file = {proxy_pid}
c.JupyterHub.pid_file = {hub_pid}
c.JupyterHub.db_url = "sqlite:///" + {db}
c.JupyterHub.cookie_secret_file = {secret}
c.JupyterHub.cleanup_servers = True
c.JupyterHub.allow_named_servers = True
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": {slow}}}
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes}
c.Spawner.cmd = [{singleuser}]
c.Spawner.args = ["--allow-root"]
c.Spawner.environment = {{"PATH": {path}}}
c.JupyterHub.services = [{{"name": {service}, "api_token": {token}}}]
c.JupyterHub.load_roles = [
    {{"name": "egi-monitoring", "scopes": [{scopes}], "services": [{service}]}},
]
{status}


def _broken_spawner_command(spawner):
    if spawner.user.name.startswith({prefix}):
        spawner.cmd = [{broken}]
    if spawner.user.name.startswith({exiting}):
        spawner.cmd = ["/bin/false"]
        spawner.http_timeout = 12


c.Spawner.pre_spawn_hook = _broken_spawner_command
"#
    )
}

/// `PATH` with `dir` first.
fn path_with(dir: &Path) -> String {
    let rest = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    format!("{}:{rest}", dir.display())
}

/// Polls `GET /hub/api/` through the proxy until it answers 200 (`Ok(true)`), the hub exits
/// because a port was taken (`Ok(false)`), it exits otherwise or the deadline passes (errors
/// with the log's tail).
fn wait_ready(child: &mut Child, port: u16, base: &str, log: &Path) -> Result<bool> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child.try_wait()? {
            let log = tail(log, 40);
            if log.contains("already in use") || log.contains("EADDRINUSE") {
                return Ok(false);
            }
            bail!("jupyterhub exited before it was ready ({status}):\n{log}");
        }
        if let Ok(200) = get_status(addr, &format!("{base}hub/api/")) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!(
                "jupyterhub was not ready within {READY_TIMEOUT:?} on port {port}:\n{}",
                tail(log, 40)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// SIGTERM by PID (through the shell's builtin `kill`: no unsafe), then SIGKILL after
/// [`STOP_GRACE`]. A hub that did not stop cleanly (killed, crashed) leaves the proxy
/// running: it is then stopped by the PID in its pid file.
fn terminate(child: &mut Child, dir: &Path) {
    if let Ok(None) = child.try_wait() {
        signal("TERM", &child.id().to_string());
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                if status.success() {
                    return;
                }
                break;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
    }
    let _ = child.wait();
    // The hub removes the pid file when it stops the proxy itself.
    if let Ok(pid) = fs::read_to_string(dir.join("proxy.pid")) {
        signal("TERM", pid.trim());
    }
}

fn signal(name: &str, pid: &str) {
    if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
        let _ = Command::new("sh")
            .args(["-c", "kill -s \"$0\" \"$1\" 2>/dev/null", name, pid])
            .stdin(Stdio::null())
            .status();
    }
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The status code of `GET path` (HTTP/1.1, `Connection: close`).
fn get_status(addr: SocketAddr, path: &str) -> Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head)?;
    status_of(&head[..n])
}

fn status_of(head: &[u8]) -> Result<u16> {
    let line = String::from_utf8_lossy(head);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad HTTP status line: {line}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_quotes_paths_and_sets_the_traps() {
        let tools = Tools {
            venv: "/v env".into(),
            proxy: "/chp/\"proxy\"".into(),
        };
        let ports = Ports {
            public: 1,
            proxy_api: 2,
            hub: 3,
        };
        let text = config_py(
            &tools,
            Path::new("/tmp/d"),
            ports,
            ("tok", "st"),
            &Options::default(),
        );
        assert!(text.contains(r#"c.JupyterHub.base_url = "/""#));
        assert!(!text.contains("\"admin\": True"));
        assert!(text.contains(r#"c.ConfigurableHTTPProxy.command = ["/chp/\"proxy\""]"#));
        assert!(text.contains(r#"c.Spawner.cmd = ["/v env/bin/jupyterhub-singleuser"]"#));
        assert!(text.contains(r#"{"slow_spawn_timeout": 0}"#));
        assert!(text.contains(r#"c.JupyterHub.port = 1"#));
        assert!(text.contains(r#"http://127.0.0.1:2""#));
        assert!(text.contains(r#"c.JupyterHub.hub_port = 3"#));
        assert!(text.contains(r#""api_token": "tok""#));
        assert!(text.contains(r#""read:metrics""#));
        let slow = Options {
            slow_spawn_timeout: Duration::from_secs(10),
            base_url: "jhub".into(),
            status_service_url: Some("http://127.0.0.1:9/".into()),
        };
        let text = config_py(&tools, Path::new("/d"), ports, ("t", "st"), &slow);
        assert!(text.contains("timeout\": 10}"));
        assert!(text.contains(r#"c.JupyterHub.base_url = "/jhub/""#));
        assert!(text.contains(r#""api_token": "st", "admin": True, "url": "http://127.0.0.1:9/""#));
    }

    #[test]
    fn status_line_is_parsed() {
        assert_eq!(status_of(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert!(status_of(b"garbage").is_err());
    }

    #[test]
    fn missing_peers_error_says_how_to_install() {
        let err = Tools::find_in(Path::new("/nonexistent-egi-peers")).unwrap_err();
        assert!(err.to_string().contains(".ci/install-peers"), "{err}");
    }
}
