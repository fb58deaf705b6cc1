//! A real single-user notebook server (`jupyter-server`, PyPI) on loopback, without a hub: what
//! a notebook pod runs, for tests of the gateway's proxy.
//!
//! [`JupyterServer::start`] runs the `jupyter-server` of the JupyterHub venv (see
//! [`crate::jupyterhub::Tools`]) with `--allow-root`, a random token, the base URL
//! [`DEFAULT_BASE_URL`] (as a hub spawns it for `alice`), a free loopback port, and a fresh
//! temporary directory holding its root directory (notebooks, uploads) and its Jupyter config,
//! data and runtime directories, so nothing outside it is read or written. It is ready when
//! `GET {base_url}api` answers 200. Dropping the value (or [`JupyterServer::stop`]) sends
//! SIGTERM to the server by PID (it shuts its kernels down), then removes the directory.
//!
//! ```no_run
//! use egi_test_harness::jupyter_server::JupyterServer;
//!
//! # fn main() -> anyhow::Result<()> {
//! let server = JupyterServer::start()?;
//! println!("{}{}api/status with token {}", server.url(), server.base_url(), server.token());
//! # Ok(())
//! # }
//! ```

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

// jupyter-server asks once on SIGINT but stops its kernels and exits on SIGTERM.
use crate::jupyterhub::Tools;
use crate::prometheus::terminate;
use crate::wire::{http, tail};

/// The base URL a hub would give `alice`'s server.
pub const DEFAULT_BASE_URL: &str = "/user/alice/";

/// How long [`JupyterServer::start`] waits for `GET {base_url}api` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

const POLL: Duration = Duration::from_millis(50);
const PORT_ATTEMPTS: usize = 3;

/// A running `jupyter-server`; stopped (SIGTERM by PID) and its directory removed on drop.
#[derive(Debug)]
pub struct JupyterServer {
    child: Child,
    port: u16,
    base_url: String,
    token: String,
    log: PathBuf,
    // Declared last: removed after the server has stopped.
    dir: TempDir,
}

impl JupyterServer {
    /// Starts a server under [`DEFAULT_BASE_URL`].
    pub fn start() -> Result<Self> {
        Self::start_with_base_url(DEFAULT_BASE_URL)
    }

    /// Starts a server under `base_url`, which starts and ends with `/`.
    pub fn start_with_base_url(base_url: &str) -> Result<Self> {
        if !base_url.starts_with('/') || !base_url.ends_with('/') {
            bail!("the base URL {base_url:?} must start and end with '/'");
        }
        let tools = Tools::find()?;
        let exe = tools.venv.join("bin/jupyter-server");
        if !exe.is_file() {
            bail!("{} not found: run .ci/install-peers", exe.display());
        }
        let dir = tempfile::Builder::new()
            .prefix("egi-jupyter-server-")
            .tempdir()
            .context("creating a temporary directory")?;
        for sub in ["root", "config", "data", "runtime"] {
            fs::create_dir(dir.path().join(sub))?;
        }
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let log = dir.path().join("jupyter-server.log");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let out = fs::File::create(&log)?;
            let mut child = Command::new(&exe)
                .args(args(port, base_url, &token, &dir.path().join("root")))
                .current_dir(dir.path())
                .env("HOME", dir.path())
                .env("JUPYTER_CONFIG_DIR", dir.path().join("config"))
                .env("JUPYTER_DATA_DIR", dir.path().join("data"))
                .env("JUPYTER_RUNTIME_DIR", dir.path().join("runtime"))
                .env("PATH", path_with(&tools.venv.join("bin")))
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .context("starting jupyter-server")?;
            match wait_ready(&mut child, port, base_url, &log) {
                Ok(true) => {
                    return Ok(Self {
                        child,
                        port,
                        base_url: base_url.to_owned(),
                        token,
                        log,
                        dir,
                    });
                }
                Ok(false) => terminate(&mut child),
                Err(e) => {
                    terminate(&mut child);
                    return Err(e);
                }
            }
        }
        bail!(
            "jupyter-server found its port taken {PORT_ATTEMPTS} times:\n{}",
            tail(&log, 30)
        )
    }

    /// `http://127.0.0.1:{port}`, without the base URL (what a proxy's upstream is).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The base URL, such as `/user/alice/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The token (`Authorization: token {token}`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The server's root directory (what the contents API lists).
    pub fn root_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// The server's log (stdout and stderr, kernels included).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Stops the server now (SIGTERM, then SIGKILL after 10 s). The directory stays until
    /// the value is dropped.
    pub fn stop(&mut self) {
        terminate(&mut self.child);
    }
}

impl Drop for JupyterServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn args(port: u16, base_url: &str, token: &str, root: &Path) -> Vec<String> {
    vec![
        "--allow-root".into(),
        "--no-browser".into(),
        "--ip=127.0.0.1".into(),
        format!("--port={port}"),
        "--port-retries=0".into(),
        format!("--ServerApp.base_url={base_url}"),
        format!("--IdentityProvider.token={token}"),
        format!("--ServerApp.root_dir={}", root.display()),
        // No nbserver-*.json or jpserver-*.html with the token: the runtime directory is ours,
        // but nothing needs them.
        "--ServerApp.open_browser=False".into(),
    ]
}

/// `PATH` with `dir` first (kernels are started from the venv).
fn path_with(dir: &Path) -> String {
    let rest = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    format!("{}:{rest}", dir.display())
}

/// Polls `GET {base_url}api` until it answers 200 (`Ok(true)`), the server exits because its
/// port was taken (`Ok(false)`), it exits otherwise or the deadline passes (errors with the
/// log's tail).
fn wait_ready(child: &mut Child, port: u16, base_url: &str, log: &Path) -> Result<bool> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let path = format!("{base_url}api");
    loop {
        if let Some(status) = child.try_wait()? {
            let log = tail(log, 40);
            if log.contains("already in use") || log.contains("is not available") {
                return Ok(false);
            }
            bail!("jupyter-server exited before it was ready ({status}):\n{log}");
        }
        if let Ok((200, _, _)) = http(addr, "GET", &path, &[], None) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!(
                "jupyter-server was not ready within {READY_TIMEOUT:?} on port {port}:\n{}",
                tail(log, 40)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_carry_the_base_url_token_and_root() {
        let a = args(4242, "/user/alice/", "tok", Path::new("/tmp/r"));
        for expected in [
            "--allow-root",
            "--port=4242",
            "--port-retries=0",
            "--ServerApp.base_url=/user/alice/",
            "--IdentityProvider.token=tok",
            "--ServerApp.root_dir=/tmp/r",
        ] {
            assert!(a.iter().any(|x| x == expected), "{expected} missing: {a:?}");
        }
    }

    #[test]
    fn base_urls_are_checked() {
        assert!(JupyterServer::start_with_base_url("user/alice").is_err());
    }
}
