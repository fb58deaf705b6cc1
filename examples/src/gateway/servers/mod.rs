//! Users and their servers: start, stop, progress, adoption after a restart. Every server is
//! driven through `Arc<dyn Spawner>` (egi-spawner's contract), so another spawner drops in
//! without touching the rest of the gateway; the Kubernetes one is made by
//! [`KubeCluster::spawner`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use egi_spawner::kube::KubeCluster;
use egi_spawner::spawner::StartRequest;
use egi_spawner::{HubContext, PollStatus, ProgressEvent, Spawner, User, UserTokens};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::metrics::Metrics;

mod record;
use super::proxy::Upstream;
use super::state::{Saved, SavedServer, SavedUser, StateFile, token_hash};
use record::lock;
pub use record::{Phase, Server};

/// Token updates for one server (`None`: the grant is gone).
pub type TokenUpdates = BoxStream<'static, Option<UserTokens>>;

/// What the hub passes to every server (besides its own token and names).
#[derive(Clone, Debug)]
pub struct HubSettings {
    /// `JUPYTERHUB_API_URL` as the pods see it.
    pub api_url: String,
    /// The base URL path (`/`, `/jhub/`).
    pub base_path: String,
    /// The public URL (for `JUPYTERHUB_PUBLIC_URL`-style values).
    pub public_url: String,
    /// The port servers listen on.
    pub port: u16,
}

/// One user.
#[derive(Debug, Clone)]
pub struct UserEntry {
    /// Who, for the spawner (groups are the VOs).
    pub user: User,
    /// Whether they log in with Check-in (else an API-created user, such as the monitor's).
    pub checkin: bool,
    /// Their servers that exist (starting, running, stopping or failed).
    pub servers: BTreeMap<String, Arc<Server>>,
    /// Spawner state of stopped servers (their claims), for the next start.
    pub stopped: BTreeMap<String, egi_spawner::SpawnerState>,
}

/// What [`Servers::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// It was running already.
    AlreadyRunning,
    /// A start is under way (this call's or an earlier one).
    Pending,
}

/// Why a start or stop was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// No such user.
    #[error("no user {0}")]
    NoUser(String),
    /// No such server.
    #[error("no server {0:?} for this user")]
    NoServer(String),
    /// It is being stopped.
    #[error("the server is stopping; try again when it has stopped")]
    Stopping,
}

/// Every user and server.
pub struct Servers {
    cluster: KubeCluster,
    hub: HubSettings,
    state: Arc<StateFile>,
    /// Set by every change; the saver writes the file off the request path, coalescing bursts.
    dirty: Arc<tokio::sync::Notify>,
    users: Mutex<BTreeMap<String, UserEntry>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Servers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servers")
            .field("users", &lock(&self.users).len())
            .finish_non_exhaustive()
    }
}

impl Servers {
    /// Servers spawned on `cluster`, recorded in `state`.
    pub fn new(
        cluster: KubeCluster,
        hub: HubSettings,
        state: StateFile,
        metrics: Arc<Metrics>,
    ) -> Self {
        Servers {
            cluster,
            hub,
            state: Arc::new(state),
            dirty: Arc::new(tokio::sync::Notify::new()),
            users: Mutex::new(BTreeMap::new()),
            metrics,
        }
    }

    /// Reads the state file and adopts the servers still running (polling each through its
    /// spawner); the others are forgotten, their claims remembered. Returns how many run.
    pub async fn adopt(&self) -> std::io::Result<usize> {
        let saved = self.state.load()?;
        let mut running = 0;
        for (name, saved_user) in saved.users {
            let user = User {
                name: name.clone(),
                groups: saved_user.groups.clone(),
                primary_group: saved_user.primary_group.clone(),
                ..User::default()
            };
            let mut entry = UserEntry {
                user: user.clone(),
                checkin: saved_user.checkin,
                servers: BTreeMap::new(),
                stopped: BTreeMap::new(),
            };
            for (server_name, saved_server) in saved_user.servers {
                let spawner: Arc<dyn Spawner> =
                    Arc::new(self.cluster.spawner(user.clone(), &server_name));
                spawner.load_state(saved_server.spawner.clone());
                let upstream = saved_server
                    .upstream
                    .as_deref()
                    .and_then(|u| Upstream::parse(u).ok().map(|p| (u.to_owned(), p)));
                let alive =
                    upstream.is_some() && matches!(spawner.poll().await, Ok(PollStatus::Running));
                if !alive {
                    spawner.clear_state();
                    entry.stopped.insert(server_name, spawner.state());
                    continue;
                }
                running += 1;
                let server = Arc::new(Server {
                    user: name.clone(),
                    name: server_name.clone(),
                    spawner,
                    phase: watch::Sender::new(Phase::Running),
                    upstream: Mutex::new(upstream),
                    token_sha256: Mutex::new(saved_server.token_sha256),
                    started: Mutex::new(
                        saved_server
                            .started
                            .as_deref()
                            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                            .map(|t| t.with_timezone(&chrono::Utc)),
                    ),
                    user_options: Mutex::new(saved_server.user_options),
                    follower: Mutex::new(None),
                    last_activity: Mutex::new(None),
                });
                entry.servers.insert(server_name, server);
            }
            lock(&self.users).insert(name, entry);
        }
        self.save();
        Ok(running)
    }

    /// Adds or updates a user (at each login: groups may have changed).
    pub fn ensure_user(&self, user: User, checkin: bool) {
        let mut users = lock(&self.users);
        match users.get_mut(&user.name) {
            Some(entry) => {
                entry.user = user;
                entry.checkin |= checkin;
            }
            None => {
                users.insert(
                    user.name.clone(),
                    UserEntry {
                        user,
                        checkin,
                        servers: BTreeMap::new(),
                        stopped: BTreeMap::new(),
                    },
                );
            }
        }
        drop(users);
        self.save();
    }

    /// Whether the user is known (no copy made: asked on every request).
    pub fn has_user(&self, name: &str) -> bool {
        lock(&self.users).contains_key(name)
    }

    /// A copy of the user's entry.
    pub fn user(&self, name: &str) -> Option<UserEntry> {
        lock(&self.users).get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<UserEntry> {
        lock(&self.users).values().cloned().collect()
    }

    /// The server, if it exists.
    pub fn server(&self, user: &str, server: &str) -> Option<Arc<Server>> {
        lock(&self.users)
            .get(user)
            .and_then(|u| u.servers.get(server).cloned())
    }

    /// The server whose API token hashes to `hash`.
    pub fn server_by_token_hash(&self, hash: &str) -> Option<Arc<Server>> {
        lock(&self.users)
            .values()
            .flat_map(|u| u.servers.values())
            .find(|s| s.has_token_hash(hash))
            .cloned()
    }

    /// Counts of (users, running, starting).
    pub fn counts(&self) -> (usize, usize, usize) {
        let users = lock(&self.users);
        let mut running = 0;
        let mut starting = 0;
        for s in users.values().flat_map(|u| u.servers.values()) {
            match s.phase() {
                Phase::Running => running += 1,
                Phase::Starting => starting += 1,
                _ => {}
            }
        }
        (users.len(), running, starting)
    }

    /// Starts `user`'s server `server` with `user_options`, handing it `tokens` and then
    /// every update of `updates`. Returns at once: follow [`Servers::progress`].
    pub fn start(
        self: &Arc<Self>,
        user: &str,
        server: &str,
        user_options: serde_json::Map<String, serde_json::Value>,
        tokens: Option<(UserTokens, TokenUpdates)>,
    ) -> Result<Started, ServerError> {
        let mut users = lock(&self.users);
        let entry = users
            .get_mut(user)
            .ok_or_else(|| ServerError::NoUser(user.to_owned()))?;
        if let Some(existing) = entry.servers.get(server) {
            match existing.phase() {
                Phase::Running => return Ok(Started::AlreadyRunning),
                Phase::Starting => return Ok(Started::Pending),
                Phase::Stopping => return Err(ServerError::Stopping),
                Phase::Failed(_) => {}
            }
        }
        let spawner: Arc<dyn Spawner> = Arc::new(self.cluster.spawner(entry.user.clone(), server));
        if let Some(previous) = entry.stopped.remove(server) {
            spawner.load_state(previous);
        }
        let api_token = SecretString::from(format!("{:032x}", fastrand::u128(..)));
        let hub = self.hub_context(user, server, api_token.clone());
        let record = Arc::new(Server {
            user: user.to_owned(),
            name: server.to_owned(),
            spawner: spawner.clone(),
            phase: watch::Sender::new(Phase::Starting),
            upstream: Mutex::new(None),
            token_sha256: Mutex::new(token_hash(api_token.expose_secret())),
            started: Mutex::new(Some(chrono::Utc::now())),
            user_options: Mutex::new(user_options.clone()),
            follower: Mutex::new(None),
            last_activity: Mutex::new(None),
        });
        entry.servers.insert(server.to_owned(), record.clone());
        drop(users);

        let (first, updates) = match tokens {
            Some((first, updates)) => (Some(first), Some(updates)),
            None => (None, None),
        };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let written = first.clone();
            let request = StartRequest {
                hub,
                user_options,
                tokens: first,
            };
            match spawner.start(request).await {
                Ok(url) => match Upstream::parse(&url) {
                    Ok(upstream) => {
                        *lock(&record.upstream) = Some((url, upstream));
                        if let Some(updates) = updates {
                            record.follow(updates, this.metrics.clone(), written);
                        }
                        record.phase.send_replace(Phase::Running);
                        this.metrics.spawns_ok.inc();
                        tracing::info!(user = %record.user, server = %record.name, "server ready");
                    }
                    Err(error) => {
                        let _ = spawner.stop(true).await;
                        this.failed(
                            &record,
                            format!("the server's address is unusable: {error}"),
                        );
                    }
                },
                Err(error) => this.failed(&record, with_sources(&error)),
            }
            this.save();
        });
        self.save();
        Ok(Started::Pending)
    }

    fn failed(&self, record: &Server, reason: String) {
        tracing::warn!(user = %record.user, server = %record.name, %reason, "spawn failed");
        record.spawner.clear_state();
        record.phase.send_replace(Phase::Failed(reason));
        self.metrics.spawns_failed.inc();
    }

    fn hub_context(&self, user: &str, server: &str, api_token: SecretString) -> HubContext {
        let mut hub =
            HubContext::for_server(user, server, &self.hub.api_url, api_token, self.hub.port);
        let prefix = server_prefix(&self.hub.base_path, user, server);
        hub.base_url.clone_from(&self.hub.base_path);
        hub.service_url = format!("http://0.0.0.0:{}{prefix}", self.hub.port);
        hub.oauth_callback_url = format!("{prefix}oauth_callback");
        hub.service_prefix = prefix;
        // The server's own public URL, as JupyterHub sets it: the gateway's origin + prefix.
        hub.public_url = match url::Url::parse(&self.hub.public_url) {
            Ok(public) => format!(
                "{}{}",
                public.origin().ascii_serialization(),
                hub.service_prefix
            ),
            Err(_) => String::new(),
        };
        hub
    }

    /// Stops `user`'s server and waits until it is gone.
    pub async fn stop(&self, user: &str, server: &str) -> Result<(), ServerError> {
        let record = self
            .server(user, server)
            .ok_or_else(|| ServerError::NoServer(server.to_owned()))?;
        record.phase.send_replace(Phase::Stopping);
        record.stop_following();
        let outcome = record.spawner.stop(false).await;
        if let Err(error) = &outcome {
            tracing::warn!(user, server, %error, "stop failed; the pod may linger");
        }
        record.spawner.clear_state();
        let mut users = lock(&self.users);
        if let Some(entry) = users.get_mut(user) {
            entry.servers.remove(server);
            entry
                .stopped
                .insert(server.to_owned(), record.spawner.state());
        }
        drop(users);
        self.metrics.stops.inc();
        self.save();
        Ok(())
    }

    /// The progress of `user`'s server as JupyterHub streams it: the spawner's events, then
    /// one last event (`ready` with the URL, or `failed` with the reason).
    pub fn progress(&self, user: &str, server: &str) -> Option<BoxStream<'static, ProgressEvent>> {
        let record = self.server(user, server)?;
        let url = server_prefix(&self.hub.base_path, user, server);
        let events = record.spawner.progress();
        let mut phase = record.phase.subscribe();
        let last = async move {
            let end = phase
                .wait_for(|p| !matches!(p, Phase::Starting))
                .await
                .map(|p| p.clone())
                .unwrap_or(Phase::Failed("the gateway is shutting down".into()));
            match end {
                Phase::Running => ProgressEvent::ready(&url),
                Phase::Failed(reason) => ProgressEvent::failed(format!("Spawn failed: {reason}")),
                Phase::Stopping | Phase::Starting => {
                    ProgressEvent::failed("Spawn cancelled: the server is stopping".to_owned())
                }
            }
        };
        let running = matches!(record.phase(), Phase::Running);
        let stream = if running {
            futures_util::stream::once(last).boxed()
        } else {
            events
                .filter(|e| std::future::ready(!e.ready && !e.failed))
                .chain(futures_util::stream::once(last))
                .boxed()
        };
        Some(stream)
    }

    /// Asks the saver to write the state file soon ([`Servers::spawn_saver`]).
    fn save(&self) {
        self.dirty.notify_one();
    }

    /// Starts the task that writes the state file after changes: at most every 100 ms, on a
    /// blocking thread, with the newest state (a burst of 1,000 spawns costs a few writes, not
    /// 1,000 rewrites of the whole file in the request path). It ends with the `Servers`.
    pub fn spawn_saver(self: &Arc<Self>) -> JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let dirty = self.dirty.clone();
        tokio::spawn(async move {
            loop {
                dirty.notified().await;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                let Some(this) = weak.upgrade() else { return };
                let saved = this.snapshot();
                let state = this.state.clone();
                drop(this);
                let written = tokio::task::spawn_blocking(move || state.save(&saved)).await;
                if let Ok(Err(error)) = written {
                    tracing::error!(%error, "state not saved");
                }
            }
        })
    }

    /// Writes the state file now (at shutdown).
    pub fn flush(&self) {
        if let Err(error) = self.state.save(&self.snapshot()) {
            tracing::error!(path = %self.state.path().display(), %error, "state not saved");
        }
    }

    /// What the state file holds.
    fn snapshot(&self) -> Saved {
        let users = lock(&self.users);
        let mut saved = Saved::default();
        for (name, entry) in users.iter() {
            let mut servers = BTreeMap::new();
            for (server_name, state) in &entry.stopped {
                servers.insert(
                    server_name.clone(),
                    SavedServer {
                        spawner: state.clone(),
                        ..SavedServer::default()
                    },
                );
            }
            for (server_name, s) in &entry.servers {
                if matches!(s.phase(), Phase::Failed(_)) {
                    continue;
                }
                servers.insert(
                    server_name.clone(),
                    SavedServer {
                        spawner: s.spawner.state(),
                        upstream: lock(&s.upstream).as_ref().map(|(u, _)| u.clone()),
                        token_sha256: lock(&s.token_sha256).clone(),
                        started: s.started().map(|t| t.to_rfc3339()),
                        user_options: lock(&s.user_options).clone(),
                    },
                );
            }
            saved.users.insert(
                name.clone(),
                SavedUser {
                    groups: entry.user.groups.clone(),
                    primary_group: entry.user.primary_group.clone(),
                    checkin: entry.checkin,
                    servers,
                },
            );
        }
        drop(users);
        saved
    }

    /// Stops following tokens (at shutdown; servers keep running and are adopted later).
    pub fn detach(&self) {
        for s in lock(&self.users).values().flat_map(|u| u.servers.values()) {
            s.stop_following();
        }
        self.flush();
    }
}

/// `{base}user/{user}/[{server}/]`, each name escaped as a path segment.
pub fn server_prefix(base: &str, user: &str, server: &str) -> String {
    if server.is_empty() {
        format!("{base}user/{}/", url_segment(user))
    } else {
        format!("{base}user/{}/{}/", url_segment(user), url_segment(server))
    }
}

/// `x` escaped as one URL path segment.
pub fn url_segment(x: &str) -> String {
    url::form_urlencoded::byte_serialize(x.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub use crate::with_sources;

#[cfg(test)]
mod tests {
    use super::server_prefix;

    #[test]
    fn prefixes_escape_hostile_names() {
        assert_eq!(server_prefix("/", "alice", ""), "/user/alice/");
        assert_eq!(
            server_prefix("/jhub/", "a@b.eu", "gpu"),
            "/jhub/user/a%40b.eu/gpu/"
        );
        assert_eq!(server_prefix("/", "../x y", ""), "/user/..%2Fx%20y/");
    }
}
