//! A whole stack on loopback: the real OpenID provider (npm oidc-provider, Check-in shaped),
//! kubesim with loopback pod IPs, and the gateway served in-process; plus a scripted browser
//! (reqwest with a cookie jar, redirects followed by hand so every hop is seen).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use egi_checkin::{CheckinClient, MemoryStore, RegistryOptions, SealKey, TokenRegistry};
use egi_examples::gateway::config::{GatewayConfig, loopback_toml};
use egi_examples::gateway::tokens::Tokens;
use egi_examples::gateway::{Gateway, routes};
use egi_spawner::kube::{KubeCluster, RuntimeOptions};
use egi_test_harness::kubesim::{KubeSim, SimOptions};
use egi_test_harness::oidc::{self, OidcProvider};
use reqwest::StatusCode;
use reqwest::header::LOCATION;

/// The admin service's token (service `status`, `admin = true`, as EGI's chart registers the
/// monitor).
pub(crate) const ADMIN_TOKEN: &str = "status-service-token-0123456789";
/// A service that may only list users.
pub(crate) const LISTER_TOKEN: &str = "lister-service-token-0123456789";

/// How a stack is set up.
pub(crate) struct StackOptions {
    /// Extra TOML appended to the configuration (a `[spawner]` table, say).
    pub(crate) extra_config: String,
    /// Access-token lifetime at the provider.
    pub(crate) access_ttl: Duration,
    /// Refresh-token rotation at the provider.
    pub(crate) rotate: bool,
    /// The base URL (`/` or `/jhub/`).
    pub(crate) base: &'static str,
    /// Where the `status` service answers (`/services/status/` is proxied there).
    pub(crate) status_url: Option<String>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            extra_config: String::new(),
            access_ttl: Duration::from_secs(60),
            rotate: false,
            base: "/",
            status_url: None,
        }
    }
}

/// The provider, the simulator and a gateway serving on loopback.
pub(crate) struct Stack {
    /// The OpenID provider.
    pub(crate) provider: OidcProvider,
    /// The Kubernetes API simulator (`None` once [`Stack::stop_cluster`] stopped it).
    sim: Option<KubeSim>,
    /// The gateway.
    pub(crate) gateway: Arc<Gateway>,
    /// Its public URL (ends with the base URL).
    pub(crate) url: String,
    /// Where its configuration and state live.
    pub(crate) dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    listen: std::net::SocketAddr,
    extra: Extra,
}

impl Stack {
    /// Starts everything.
    pub(crate) async fn start(options: StackOptions) -> Result<Stack> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let listen = listener.local_addr()?;
        let url = format!("http://{listen}{}", options.base);
        let provider_options = oidc::Options {
            rotate: options.rotate,
            access_ttl: options.access_ttl,
        };
        let callback = format!("{url}hub/oauth_callback");
        let provider = tokio::task::spawn_blocking(move || {
            OidcProvider::start_with_redirects(provider_options, &[callback])
        })
        .await??;
        let sim = KubeSim::start(SimOptions {
            loopback_pod_ips: true,
            ..SimOptions::default()
        })
        .await?;
        let dir = tempfile::tempdir()?;
        let extra = Extra {
            config: options.extra_config,
            status_url: options.status_url,
        };
        let served = serve(&provider, &sim, dir.path(), &url, listener, &extra).await?;
        Ok(Stack {
            provider,
            sim: Some(sim),
            gateway: served.gateway,
            url,
            dir,
            shutdown: Some(served.shutdown),
            served: Some(served.task),
            listen,
            extra,
        })
    }

    /// Stops the gateway and starts a new one on the same port, configuration, state file
    /// and cluster (servers keep running, as across a real restart).
    pub(crate) async fn restart_gateway(&mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), served).await;
        }
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        let served = serve(
            &self.provider,
            self.sim(),
            self.dir.path(),
            &self.url,
            listener,
            &self.extra,
        )
        .await?;
        self.gateway = served.gateway;
        self.shutdown = Some(served.shutdown);
        self.served = Some(served.task);
        Ok(())
    }

    /// The simulator.
    pub(crate) fn sim(&self) -> &KubeSim {
        self.sim.as_ref().expect("the cluster runs")
    }

    /// Stops the simulator: the cluster is down.
    pub(crate) async fn stop_cluster(&mut self) {
        if let Some(sim) = self.sim.take() {
            sim.shutdown().await;
        }
    }

    /// A browser with an empty cookie jar.
    pub(crate) fn browser(&self) -> Browser {
        Browser::new(&self.url)
    }

    /// A client sending `token` as JupyterHub services do.
    pub(crate) fn api(&self, token: &str) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("{}hub/api", self.url),
            token: token.to_owned(),
        }
    }

    /// The Secret of `user`'s default server, decoded (`access_token`, ...).
    pub(crate) fn token_secret(
        &self,
        user: &str,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let name = format!(
            "access-token-{}",
            egi_spawner::naming::Names::new(user, "").user_server
        );
        let secret = self.sim().object("secrets", "default", &name)?;
        secret["data"].as_object().cloned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// What a test adds to the configuration.
struct Extra {
    config: String,
    status_url: Option<String>,
}

struct Served {
    gateway: Arc<Gateway>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn serve(
    provider: &OidcProvider,
    sim: &KubeSim,
    dir: &std::path::Path,
    url: &str,
    listener: tokio::net::TcpListener,
    extra: &Extra,
) -> Result<Served> {
    let config_path = dir.join("gateway.toml");
    let mut text = loopback_toml(
        &listener.local_addr()?.to_string(),
        url,
        &provider.issuer(),
        oidc::CLIENT_ID,
        "vo.notebooks.egi.eu",
        &dir.join("state.json"),
    );
    if let Some(status_url) = &extra.status_url {
        text.push_str(&format!("url = \"{status_url}\"\n"));
    }
    text.push_str("\n[[services]]\nname = \"lister\"\nscopes = [\"list:users\"]\n");
    text.push_str(&extra.config);
    std::fs::write(&config_path, text)?;
    let config = GatewayConfig::load(&config_path, |k| match k {
        "GATEWAY_CLIENT_SECRET" => Some(oidc::CLIENT_SECRET.to_owned()),
        "GATEWAY_SERVICE_STATUS_TOKEN" => Some(ADMIN_TOKEN.to_owned()),
        "GATEWAY_SERVICE_LISTER_TOKEN" => Some(LISTER_TOKEN.to_owned()),
        _ => None,
    })?;
    let checkin = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.to_owned().into())
        .redirect_uri(format!("{url}hub/oauth_callback"))
        .discover(&provider.issuer())
        .await?;
    let client = egi_spawner::kube::client(kube::Config::new(sim.url().parse()?))?;
    let mut runtime = RuntimeOptions::default();
    runtime.start_timeout = Duration::from_secs(20);
    let cluster = KubeCluster::new(client, config.spawner.clone(), runtime)?;
    let registry = TokenRegistry::new(
        checkin.clone(),
        Arc::new(MemoryStore::new()),
        RegistryOptions::default(),
    );
    let key = SealKey::from_bytes([7; 32]);
    let gateway = Gateway::new(config, checkin, cluster, key, Tokens::new(registry));
    gateway.servers.adopt().await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(routes::serve(gateway.clone(), listener, async move {
        let _ = rx.await;
    }));
    Ok(Served {
        gateway,
        shutdown: tx,
        task,
    })
}

/// A scripted browser.
pub(crate) struct Browser {
    /// The client, cookies kept.
    pub(crate) http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    gateway: String,
}

impl Browser {
    /// A browser for the gateway at `url`, with an empty cookie jar.
    pub(crate) fn new(url: &str) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        Browser {
            http: reqwest::Client::builder()
                .cookie_provider(jar.clone())
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            jar,
            gateway: url.to_owned(),
        }
    }

    /// The values of the cookies the browser would send to `url`.
    pub(crate) fn cookie_values(&self, url: &str) -> Vec<String> {
        use reqwest::cookie::CookieStore as _;
        let Ok(url) = url.parse() else {
            return Vec::new();
        };
        self.jar
            .cookies(&url)
            .and_then(|h| h.to_str().ok().map(str::to_owned))
            .map(|h| {
                h.split("; ")
                    .filter_map(|c| c.split_once('=').map(|(_, v)| v.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }
    /// GET `path` on the gateway (relative to its public URL) without following redirects.
    pub(crate) async fn get(&self, path: &str) -> Result<reqwest::Response> {
        Ok(self
            .http
            .get(format!("{}{path}", self.gateway))
            .send()
            .await?)
    }

    /// Submits the home page's start form (`profile`, server name); the answer is the redirect
    /// to the progress page (checked).
    pub(crate) async fn spawn(&self, profile: &str, server: &str) -> Result<reqwest::Response> {
        let r = self
            .http
            .post(format!("{}hub/spawn", self.gateway))
            .form(&[("profile", profile), ("server", server)])
            .send()
            .await?;
        if !r.status().is_redirection() {
            bail!("the start form answered {}", r.status());
        }
        Ok(r)
    }

    /// Logs in as `login` (the provider approves whoever its `login_hint` names): follows
    /// every redirect from `/hub/login` through the provider and back to the gateway, and
    /// returns the last answer (the home page, or the gateway's refusal).
    pub(crate) async fn login(&self, login: &str) -> Result<reqwest::Response> {
        let url = self.start_login().await?;
        let callback = self.at_provider(&url, login).await?;
        self.finish_login(&callback).await
    }

    /// `/hub/login`: returns the provider's authorization URL.
    pub(crate) async fn start_login(&self) -> Result<String> {
        let r = self.get("hub/login").await?;
        if !r.status().is_redirection() {
            bail!("/hub/login answered {}", r.status());
        }
        location(&r)
    }

    /// Plays the provider's pages: returns the gateway callback URL it redirects to.
    pub(crate) async fn at_provider(&self, authorization_url: &str, login: &str) -> Result<String> {
        let mut target = format!("{authorization_url}&login_hint={login}");
        for _ in 0..10 {
            let r = self.http.get(&target).send().await?;
            if !r.status().is_redirection() {
                bail!(
                    "the provider stopped at {}: {}",
                    r.status(),
                    r.text().await?
                );
            }
            let next = location(&r)?;
            let next = if next.starts_with('/') {
                let u = url::Url::parse(&target)?;
                format!("{}://{}{next}", u.scheme(), u.authority())
            } else {
                next
            };
            if next.starts_with(&self.gateway) {
                return Ok(next);
            }
            target = next;
        }
        bail!("too many redirects at the provider")
    }

    /// Delivers the callback to the gateway and follows its redirect (to the home page).
    pub(crate) async fn finish_login(&self, callback: &str) -> Result<reqwest::Response> {
        let r = self.http.get(callback).send().await?;
        if r.status() == StatusCode::SEE_OTHER || r.status() == StatusCode::FOUND {
            let next = location(&r)?;
            let origin = url::Url::parse(&self.gateway)?;
            let url = format!("{}://{}{next}", origin.scheme(), origin.authority());
            return Ok(self.http.get(url).send().await?);
        }
        Ok(r)
    }
}

/// The `Location` of a redirect.
pub(crate) fn location(r: &reqwest::Response) -> Result<String> {
    Ok(r.headers()
        .get(LOCATION)
        .context("a redirect without Location")?
        .to_str()?
        .to_owned())
}

/// A REST API client with a token.
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    /// `METHOD {base}{path}` with the token.
    pub(crate) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<reqwest::Response> {
        Ok(self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Authorization", format!("token {}", self.token))
            .send()
            .await?)
    }
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub(crate) async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("timed out after {timeout:?} waiting for {what}")
}
