//! A real Prometheus server on loopback, loaded with a backfilled history.
//!
//! [`Prometheus::backfill`] writes an OpenMetrics history into a fresh temporary directory,
//! turns it into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`, and starts
//! `prometheus` in the foreground on `127.0.0.1` with a free port, no scrape targets and a
//! retention of 100 years (retention is counted from the newest block, not from the clock, so
//! old histories survive). [`Prometheus::scraping`] starts one on an empty TSDB that scrapes
//! live [`ScrapeTarget`]s instead. Dropping the value stops the server with SIGTERM and
//! removes the directory.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::wire::tail;

/// How long [`Prometheus::backfill`] waits for `GET /-/ready` to answer 200.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(50);

/// How many ports are tried when another process takes the chosen one first.
const PORT_ATTEMPTS: usize = 5;

/// Where the `prometheus` and `promtool` executables are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// The server.
    pub prometheus: PathBuf,
    /// Its command-line tool (backfilling).
    pub promtool: PathBuf,
}

impl Tools {
    /// Finds both executables on `PATH`; the error says how to install them.
    pub fn find() -> Result<Self> {
        Ok(Self {
            prometheus: find_on_path("prometheus")?,
            promtool: find_on_path("promtool")?,
        })
    }

    /// Runs `promtool tsdb create-blocks-from openmetrics HISTORY DATA_DIR`; its output goes
    /// to `log`, whose tail is in the error if it fails.
    pub fn create_blocks(&self, history: &Path, data_dir: &Path, log: &Path) -> Result<()> {
        let out = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let status = Command::new(&self.promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(history)
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .status()
            .with_context(|| format!("running {}", self.promtool.display()))?;
        if !status.success() {
            bail!(
                "promtool tsdb create-blocks-from openmetrics {} failed ({status}):\n{}",
                history.display(),
                tail(log, 30)
            );
        }
        Ok(())
    }
}

fn find_on_path(name: &str) -> Result<PathBuf> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "`{name}` not found on PATH: run .ci/install-peers (it runs \
                 `apt-get install -y --no-install-recommends prometheus`, which brings \
                 prometheus and promtool)"
            )
        })
}

/// A running Prometheus server; stopped (SIGTERM) and its directory removed on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
    // Declared last: removed after the server has stopped.
    dir: TempDir,
}

impl Prometheus {
    /// Backfills `openmetrics` (OpenMetrics text, timestamps in seconds, ending with `# EOF`)
    /// into a fresh TSDB and starts a server on it.
    pub fn backfill(openmetrics: &str) -> Result<Self> {
        let dir = tempdir()?;
        let history = dir.path().join("history.om");
        fs::write(&history, openmetrics)
            .with_context(|| format!("writing {}", history.display()))?;
        Self::backfill_in(dir, &history)
    }

    /// Like [`Prometheus::backfill`], for a history already in a file (large histories).
    pub fn backfill_file(history: &Path) -> Result<Self> {
        Self::backfill_in(tempdir()?, history)
    }

    fn backfill_in(dir: TempDir, history: &Path) -> Result<Self> {
        let tools = Tools::find()?;
        let data = dir.path().join("data");
        fs::create_dir(&data)?;
        tools.create_blocks(history, &data, &dir.path().join("promtool.log"))?;
        Self::start(&tools, dir, &data)
    }

    /// Starts a server on an existing TSDB directory (for example one filled by
    /// [`Tools::create_blocks`]); `dir` holds its configuration and log, and goes with it.
    pub fn start(tools: &Tools, dir: TempDir, data: &Path) -> Result<Self> {
        // No scrape targets: the history is all there is, and live samples "now" would make
        // an old history's head disagree with the blocks.
        Self::start_with_config(
            tools,
            dir,
            data,
            "global:\n  scrape_interval: 1m\nscrape_configs: []\n",
        )
    }

    /// Starts a server with an empty TSDB that scrapes `targets` live (first samples about
    /// one interval after the start; poll for them).
    pub fn scraping(targets: &[ScrapeTarget]) -> Result<Self> {
        let tools = Tools::find()?;
        let dir = tempdir()?;
        let data = dir.path().join("data");
        fs::create_dir(&data)?;
        Self::start_with_config(&tools, dir, &data, &scrape_config(targets))
    }

    /// Starts a server on `data` with `config` (the text of `prometheus.yml`).
    pub fn start_with_config(
        tools: &Tools,
        dir: TempDir,
        data: &Path,
        config: &str,
    ) -> Result<Self> {
        let config_text = config;
        let config = dir.path().join("prometheus.yml");
        fs::write(&config, config_text)?;
        let log = dir.path().join("prometheus.log");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port()?;
            let out = fs::File::create(&log)?;
            let mut child = Command::new(&tools.prometheus)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg("--storage.tsdb.retention.time=100y")
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .with_context(|| format!("starting {}", tools.prometheus.display()))?;
            match wait_ready(&mut child, port, &log) {
                Ok(true) => {
                    return Ok(Self {
                        child,
                        url: format!("http://127.0.0.1:{port}"),
                        log,
                        dir,
                    });
                }
                // Another process took the port between our probe and the server's bind.
                Ok(false) => terminate(&mut child),
                Err(e) => {
                    terminate(&mut child);
                    return Err(e);
                }
            }
        }
        bail!(
            "prometheus found its port taken {PORT_ATTEMPTS} times:\n{}",
            tail(&log, 20)
        )
    }

    /// Base URL, such as `http://127.0.0.1:41234` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The server's log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// The temporary directory holding the TSDB, configuration and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs an instant query (POST form to `/api/v1/query`) at `time` (epoch seconds) and
    /// returns the response's `data` object (`resultType` and `result`). Fails unless the
    /// answer is HTTP 200 with `"status": "success"`.
    pub fn query(&self, promql: &str, time: i64) -> Result<serde_json::Value> {
        let addr: SocketAddr = self
            .url
            .trim_start_matches("http://")
            .parse()
            .context("server address")?;
        let form = format!("query={}&time={time}", form_encode(promql));
        let (status, body) = http(addr, "POST", "/api/v1/query", Some(&form))?;
        let mut json: serde_json::Value = serde_json::from_slice(&body)
            .with_context(|| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))?;
        if status != 200 || json["status"] != "success" {
            bail!("query {promql:?} at {time}: HTTP {status}: {json}");
        }
        Ok(json["data"].take())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Polls `GET /-/ready` until it answers 200 (`Ok(true)`), the server exits because its port
/// was taken (`Ok(false)`), it exits otherwise or the deadline passes (errors with the log's
/// tail).
fn wait_ready(child: &mut Child, port: u16, log: &Path) -> Result<bool> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = child.try_wait()? {
            let log = tail(log, 30);
            if log.contains("address already in use") {
                return Ok(false);
            }
            bail!("prometheus exited before it was ready ({status}):\n{log}");
        }
        if let Ok((200, _)) = http(addr, "GET", "/-/ready", None) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!(
                "prometheus was not ready within {READY_TIMEOUT:?} on port {port}:\n{}",
                tail(log, 30)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Stops a child with SIGTERM (through the shell's builtin `kill`: no unsafe, no extra
/// package), waits up to 10 s, then kills it. Shared with the other peers started here.
pub(crate) fn terminate(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let pid = child.id().to_string();
        let _ = Command::new("sh")
            .args(["-c", "kill -TERM \"$0\"", &pid])
            .stdin(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A live scrape target for [`Prometheus::scraping`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The `job` label.
    pub job: String,
    /// `host:port`.
    pub address: String,
    /// Such as `/metrics`.
    pub metrics_path: String,
    /// Scrape interval and timeout.
    pub interval: Duration,
}

impl ScrapeTarget {
    /// `GET http://{addr}/metrics` every `interval`, as job `job`.
    pub fn new(job: &str, addr: SocketAddr, interval: Duration) -> Self {
        Self {
            job: job.to_owned(),
            address: addr.to_string(),
            metrics_path: "/metrics".to_owned(),
            interval,
        }
    }
}

/// `prometheus.yml` scraping `targets` (labels of the targets' series kept: `honor_labels`,
/// as kube-state-metrics is scraped).
fn scrape_config(targets: &[ScrapeTarget]) -> String {
    let mut out = String::from("global:\n  scrape_interval: 1m\nscrape_configs:\n");
    for t in targets {
        let ms = t.interval.as_millis().max(1);
        out.push_str(&format!(
            "  - job_name: \"{}\"\n    honor_labels: true\n    scrape_interval: {ms}ms\n    scrape_timeout: {ms}ms\n    metrics_path: \"{}\"\n    static_configs:\n      - targets: [\"{}\"]\n",
            t.job, t.metrics_path, t.address
        ));
    }
    out
}

fn tempdir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("egi-prometheus-")
        .tempdir()
        .context("creating a temporary directory")
}

/// A port that was free a moment ago (bound to port 0, then released).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A POST of a form (or a GET): status and body.
fn http(addr: SocketAddr, method: &str, path: &str, form: Option<&str>) -> Result<(u16, Vec<u8>)> {
    let body = form.map(|f| ("application/x-www-form-urlencoded", f));
    let (status, _, body) = crate::wire::http(addr, method, path, &[], body)?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_escapes_promql() {
        assert_eq!(
            form_encode("sum by (uid) (x{pod=~'jupyter-.*'}[24h])"),
            "sum+by+%28uid%29+%28x%7Bpod%3D~%27jupyter-.%2A%27%7D%5B24h%5D%29"
        );
        assert_eq!(form_encode("zoë"), "zo%C3%AB");
    }

    #[test]
    fn missing_tool_error_says_how_to_install() {
        let err = find_on_path("surely-not-an-installed-tool-egi").unwrap_err();
        assert!(err.to_string().contains(".ci/install-peers"), "{err}");
    }
}
