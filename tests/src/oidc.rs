//! A real OpenID provider shaped like EGI Check-in: npm `oidc-provider` 9.x run by
//! `tests/oidc-provider/server.mjs` under Node.
//!
//! [`OidcProvider::start`] runs it on a free loopback port in a fresh temporary directory
//! (its signing keys live there, so [`OidcProvider::restart`] keeps them) and waits for its
//! `READY <issuer>` line. The issuer is `http://127.0.0.1:PORT/auth/realms/egi` with
//! Keycloak's routes; every login approves itself as its `login_hint`; test-only endpoints
//! approve or deny device codes, count token-endpoint requests by grant type and inject
//! faults into the token endpoint. Dropping the value stops Node with SIGTERM.
//!
//! Clients: `notebooks` (secret `notebooks-secret`, HTTP Basic, every grant, redirect URI
//! [`REDIRECT_URI`]), `notebooks-b64` ([`B64_CLIENT_ID`], a secret with `+`, `/` and `=`;
//! device flow, refresh, client credentials), `cli` (public, device flow and refresh),
//! `other-service` (a token exchange audience).
//!
//! [`Quirks`] make it behave like other providers ([`OidcProvider::start_with_quirks`]).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::wire::http;

/// The confidential client.
pub const CLIENT_ID: &str = "notebooks";
/// Its secret.
pub const CLIENT_SECRET: &str = "notebooks-secret";
/// A confidential client whose secret has the characters HTTP Basic encoding changes.
pub const B64_CLIENT_ID: &str = "notebooks-b64";
/// Its secret (`+`, `/` and `=`, like a random Base64 secret).
pub const B64_CLIENT_SECRET: &str = "c2Vj+cmV0/w==";
/// The public client (device flow).
pub const PUBLIC_CLIENT_ID: &str = "cli";
/// Another registered client, a token-exchange audience.
pub const OTHER_CLIENT_ID: &str = "other-service";
/// The confidential client's redirect URI (never contacted: the browser stops there).
pub const REDIRECT_URI: &str = "http://127.0.0.1/callback";
/// Token-endpoint grant type of refreshes, as counted by [`OidcProvider::token_requests`].
pub const REFRESH_GRANT: &str = "refresh_token";

/// How long [`OidcProvider::start`] waits for the ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Provider settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Refresh-token rotation with reuse detection (a replayed refresh token revokes the
    /// grant).
    pub rotate: bool,
    /// Access-token lifetime.
    pub access_ttl: Duration,
}

impl Default for Options {
    /// No rotation, 2-second access tokens.
    fn default() -> Self {
        Self {
            rotate: false,
            access_ttl: Duration::from_secs(2),
        }
    }
}

/// A secret-based client authentication method (RFC 6749 section 2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// `client_secret_basic`: HTTP Basic.
    Basic,
    /// `client_secret_post`: in the form body.
    Post,
}

impl ClientAuthMethod {
    fn name(self) -> &'static str {
        match self {
            ClientAuthMethod::Basic => "client_secret_basic",
            ClientAuthMethod::Post => "client_secret_post",
        }
    }
}

/// Ways of other providers, to test interoperability; [`Quirks::default`] is none of them
/// (oidc-provider as it is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quirks {
    /// The only secret-based client authentication advertised in discovery
    /// (`token_endpoint_auth_methods_supported`) and accepted; `None`: both, as
    /// oidc-provider does.
    pub client_auth: Option<ClientAuthMethod>,
    /// HTTP Basic credentials are taken as sent, not form-urldecoded first as RFC 6749
    /// section 2.3.1 says (django-oidc-provider and others).
    pub raw_basic_credentials: bool,
    /// Token answers carry no `scope` (optional per RFC 6749 section 5.1).
    pub no_scope_in_token_answers: bool,
    /// Every token request is processed at once (a refresh token used up, and rotated if
    /// rotation is on) and answered this much later: a slow provider. Zero: at once.
    pub token_delay: Duration,
}

/// A fault the token endpoint answers with, instead of the real answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// HTTP 500 with an HTML body.
    Status500,
    /// Waits this long, then HTTP 503.
    Slow(Duration),
    /// HTTP 200 with truncated JSON.
    MalformedJson,
    /// HTTP 302 to another host.
    Redirect,
    /// A token answer whose ID token is signed by a key the provider never publishes.
    IdTokenOtherKey,
    /// ... whose ID token names another audience.
    IdTokenWrongAudience,
    /// ... whose ID token is unsigned (`alg: none`).
    IdTokenAlgNone,
    /// ... whose ID token is signed by a new key, published in the JWKS from then on.
    IdTokenRotatedKey,
}

impl Fault {
    fn json(self, count: u32) -> String {
        let (kind, delay) = match self {
            Fault::Status500 => ("status500", 0),
            Fault::Slow(d) => ("slow", d.as_millis()),
            Fault::MalformedJson => ("malformed", 0),
            Fault::Redirect => ("redirect", 0),
            Fault::IdTokenOtherKey => ("id_token_other_key", 0),
            Fault::IdTokenWrongAudience => ("id_token_wrong_aud", 0),
            Fault::IdTokenAlgNone => ("id_token_alg_none", 0),
            Fault::IdTokenRotatedKey => ("id_token_rotated_key", 0),
        };
        serde_json::json!({ "kind": kind, "count": count, "delay_ms": delay }).to_string()
    }
}

/// A running provider; stopped (SIGTERM) on drop.
#[derive(Debug)]
pub struct OidcProvider {
    child: Option<Child>,
    port: u16,
    options: Options,
    quirks: Quirks,
    redirect_uris: Vec<String>,
    log: PathBuf,
    // Declared last: removed after the server has stopped.
    dir: TempDir,
}

fn server_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc-provider")
}

fn find_node() -> Result<PathBuf> {
    let node = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("node"))
        .find(|p| p.is_file())
        .context("`node` not found on PATH: install Node.js 20 or later")?;
    if !server_dir().join("node_modules/oidc-provider").is_dir() {
        bail!(
            "{} has no node_modules: run .ci/install-peers (npm ci there)",
            server_dir().display()
        );
    }
    Ok(node)
}

impl OidcProvider {
    /// Starts a provider on a free loopback port.
    pub fn start(options: Options) -> Result<Self> {
        Self::start_with_redirects(options, &[])
    }

    /// Starts a provider whose confidential client also accepts `redirect_uris` (a gateway's
    /// `.../hub/oauth_callback` on its test port).
    pub fn start_with_redirects(options: Options, redirect_uris: &[String]) -> Result<Self> {
        Self::start_with(options, Quirks::default(), redirect_uris)
    }

    /// Starts a provider with the `quirks` of another provider.
    pub fn start_with_quirks(options: Options, quirks: Quirks) -> Result<Self> {
        Self::start_with(options, quirks, &[])
    }

    fn start_with(options: Options, quirks: Quirks, redirect_uris: &[String]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("egi-oidc-")
            .tempdir()
            .context("creating a temporary directory")?;
        let log = dir.path().join("provider.log");
        let (child, port) = spawn(dir.path(), &log, 0, options, quirks, redirect_uris)?;
        Ok(Self {
            child: Some(child),
            port,
            options,
            quirks,
            redirect_uris: redirect_uris.to_vec(),
            log,
            dir,
        })
    }

    /// The issuer URL.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}/auth/realms/egi", self.port)
    }

    /// The settings it runs with.
    pub fn options(&self) -> Options {
        self.options
    }

    /// The quirks it runs with.
    pub fn quirks(&self) -> Quirks {
        self.quirks
    }

    /// Stops the provider (SIGTERM); its port refuses connections until a restart. All
    /// grants are lost (they live in its memory).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child);
        }
    }

    /// Stops the provider if running and starts it again on the same port with the same
    /// signing keys, the same quirks and new `options`.
    pub fn restart(&mut self, options: Options) -> Result<()> {
        self.stop();
        let (child, _) = spawn(
            self.dir.path(),
            &self.log,
            self.port,
            options,
            self.quirks,
            &self.redirect_uris,
        )?;
        self.child = Some(child);
        self.options = options;
        Ok(())
    }

    /// The last `lines` lines of the provider's stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn test_call(&self, method: &str, path: &str, body: Option<&str>) -> Result<serde_json::Value> {
        let (status, _, body) = http(
            self.addr(),
            method,
            path,
            &[],
            body.map(|b| ("application/json", b)),
        )?;
        let json: serde_json::Value = serde_json::from_slice(&body).with_context(|| {
            format!("{path}: HTTP {status}: {}", String::from_utf8_lossy(&body))
        })?;
        if status != 200 {
            bail!("{path}: HTTP {status}: {json}");
        }
        Ok(json)
    }

    /// The counters: `{"grants": {grant_type: n}, "paths": {path: n}}`. Faults injected
    /// into the token endpoint count as `fault:<grant_type>`.
    pub fn counters(&self) -> Result<serde_json::Value> {
        self.test_call("GET", "/test/counters", None)
    }

    /// How many token-endpoint requests of `grant_type` reached the provider itself.
    pub fn token_requests(&self, grant_type: &str) -> Result<u64> {
        Ok(self.counters()?["grants"][grant_type].as_u64().unwrap_or(0))
    }

    /// How many requests were made to `path` (such as the JWKS path).
    pub fn path_requests(&self, path: &str) -> Result<u64> {
        Ok(self.counters()?["paths"][path].as_u64().unwrap_or(0))
    }

    /// Approves a device `user_code` as user `login`.
    pub fn approve_device(&self, user_code: &str, login: &str) -> Result<()> {
        let body =
            serde_json::json!({ "user_code": user_code, "login": login, "action": "approve" });
        self.test_call("POST", "/test/device", Some(&body.to_string()))
            .map(drop)
    }

    /// Denies a device `user_code`.
    pub fn deny_device(&self, user_code: &str) -> Result<()> {
        let body = serde_json::json!({ "user_code": user_code, "action": "deny" });
        self.test_call("POST", "/test/device", Some(&body.to_string()))
            .map(drop)
    }

    /// Makes the next `count` token-endpoint requests answer with `fault`.
    pub fn arm_fault(&self, fault: Fault, count: u32) -> Result<()> {
        self.test_call("POST", "/test/fault", Some(&fault.json(count)))
            .map(drop)
    }

    /// Disarms any fault.
    pub fn clear_fault(&self) -> Result<()> {
        self.test_call("POST", "/test/fault", Some("{}")).map(drop)
    }

    /// Plays the user's browser through an authorization URL: follows the provider's
    /// redirects (keeping its cookies) through the auto-approving login until the redirect
    /// to [`REDIRECT_URI`], and returns that callback URL.
    pub fn browser_login(&self, authorization_url: &str) -> Result<String> {
        let origin = format!("http://127.0.0.1:{}", self.port);
        let mut target = authorization_url.to_owned();
        let mut cookies: Vec<(String, String)> = Vec::new();
        for _ in 0..10 {
            let path = target
                .strip_prefix(&origin)
                .with_context(|| format!("the browser left the provider for {target}"))?;
            let cookie = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let headers = [("Cookie", cookie.as_str())];
            let (status, head, body) = http(self.addr(), "GET", path, &headers, None)?;
            for line in head.lines() {
                let Some(value) = header_value(line, "set-cookie") else {
                    continue;
                };
                if let Some((name, rest)) = value.split_once('=') {
                    let val = rest.split(';').next().unwrap_or_default().to_owned();
                    cookies.retain(|(k, _)| k != name);
                    cookies.push((name.to_owned(), val));
                }
            }
            let location = head.lines().find_map(|l| header_value(l, "location"));
            match (status, location) {
                (300..=399, Some(loc)) if loc.starts_with(REDIRECT_URI) => {
                    return Ok(loc.to_owned());
                }
                (300..=399, Some(loc)) if loc.starts_with('/') => target = format!("{origin}{loc}"),
                (300..=399, Some(loc)) => target = loc.to_owned(),
                _ => bail!(
                    "login stopped at HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                ),
            }
        }
        bail!("too many redirects during the login")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        self.stop();
    }
}

fn header_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (k, v) = line.split_once(':')?;
    k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
}

/// Starts Node on `port` (0: any) and waits for the ready line; returns the child and the
/// port it listens on.
fn spawn(
    dir: &Path,
    log: &Path,
    port: u16,
    options: Options,
    quirks: Quirks,
    redirect_uris: &[String],
) -> Result<(Child, u16)> {
    let node = find_node()?;
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut child = Command::new(node)
        .arg(server_dir().join("server.mjs"))
        .current_dir(server_dir())
        .env("PORT", port.to_string())
        .env("STATE_DIR", dir)
        .env("EXTRA_REDIRECT_URIS", redirect_uris.join(","))
        .env("ROTATE", if options.rotate { "1" } else { "0" })
        .env(
            "ACCESS_TTL",
            options.access_ttl.as_secs().max(1).to_string(),
        )
        .env(
            "AUTH_METHOD",
            quirks.client_auth.map_or("", ClientAuthMethod::name),
        )
        .env(
            "RAW_BASIC",
            if quirks.raw_basic_credentials {
                "1"
            } else {
                "0"
            },
        )
        .env(
            "NO_SCOPE",
            if quirks.no_scope_in_token_answers {
                "1"
            } else {
                "0"
            },
        )
        .env("TOKEN_DELAY_MS", quirks.token_delay.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .context("starting node")?;
    let stdout = child.stdout.take().context("node's stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(issuer) = line.strip_prefix("READY ") {
                let _ = tx.send(issuer.to_owned());
            }
        }
    });
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(issuer) => {
                let port = issuer
                    .trim_start_matches("http://127.0.0.1:")
                    .split('/')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .with_context(|| format!("bad ready line {issuer}"))?;
                return Ok((child, port));
            }
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!(
                        "oidc-provider exited before it was ready ({status}):\n{}",
                        tail(log)
                    );
                }
            }
            Err(_) => {
                terminate(&mut child);
                bail!(
                    "oidc-provider was not ready within {READY_TIMEOUT:?}:\n{}",
                    tail(log)
                );
            }
        }
    }
}

fn tail(log: &Path) -> String {
    crate::wire::tail(log, 30)
}

/// SIGTERM by PID (the shell's `kill`: no unsafe), up to 10 s, then SIGKILL.
fn terminate(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("sh")
            .args(["-c", "kill -TERM \"$0\"", &child.id().to_string()])
            .stdin(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_requests() {
        assert_eq!(
            Fault::Slow(Duration::from_millis(1500)).json(2),
            r#"{"count":2,"delay_ms":1500,"kind":"slow"}"#
        );
        assert!(Fault::IdTokenAlgNone.json(1).contains("id_token_alg_none"));
    }

    #[test]
    fn headers_are_matched_case_insensitively() {
        assert_eq!(header_value("Location: /x", "location"), Some("/x"));
        assert_eq!(
            header_value("set-cookie: a=b; path=/", "Set-Cookie"),
            Some("a=b; path=/")
        );
        assert_eq!(header_value("Content-Type: x", "location"), None);
    }
}
