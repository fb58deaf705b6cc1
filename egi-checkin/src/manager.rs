//! [`TokenManager`]: a valid access token for one identity, whoever asks and however many
//! ask at once.
//!
//! - Reads are cheap: a fresh token is a shared snapshot, cloned under a read lock.
//! - A token is refreshed when less than a margin of its life is left (see
//!   [`RefreshMargin`]), by ONE refresh per identity: every task that needs a new token
//!   waits on the same background refresh and receives its result (check, lock, re-check).
//!   The refresh runs as its own task, so callers giving up (a dropped future, a
//!   `tokio::time::timeout` around [`TokenManager::access_token`]) cannot cut it off between
//!   the provider rotating the refresh token and the new one being stored: it ends only
//!   with the provider's answer or [`crate::HttpOptions::token_timeout`] (default 120 s,
//!   apart from the shorter timeout of other endpoints).
//! - Before each refresh the store's lock is taken and the stored tokens read again, so a
//!   refresh done by another process is adopted instead of repeated.
//! - New tokens are stored (a [`TokenStore`]) before they are handed out; the old refresh
//!   token is kept if the answer has none.
//! - `invalid_grant` (and no refresh token) is [`Error::LoginRequired`]: never retried, and
//!   remembered until [`TokenManager::replace`] installs a new login. A refresh is sent
//!   again at once (jittered exponential backoff) only when the provider cannot have
//!   processed it: a failed connection, HTTP 5xx or 429 ([`Error::is_replayable`]). After a
//!   timeout or a connection broken mid-answer the provider may have rotated the refresh
//!   token, so it is not replayed at once; the next refresh (after the cooldown) has no
//!   other token to send, and with rotation the grant may then be lost: this cannot be
//!   fully avoided, only made rare (keep [`crate::HttpOptions::token_timeout`] well above
//!   the provider's slowest answer). If the refresh fails, the old token is served while
//!   it is still valid.
//! - If the provider answers 2xx with a new refresh token but the new ID token fails its
//!   checks, the new refresh token is kept (stored as the base of the next refresh) and
//!   the old one is never sent again.
//! - [`TokenManager::subscribe`] tells others (a Kubernetes Secret updater) of each new token.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::watch;

use crate::client::CheckinClient;
use crate::error::{Error, Result};
use crate::store::TokenStore;
use crate::token::TokenSet;

mod options;
#[cfg(test)]
mod tests;

pub use options::{ManagerOptions, RefreshMargin, RetryPolicy};

/// A snapshot of the identity's tokens, shared by everyone who asked; cheap to clone.
/// `Debug` shows no token value.
#[derive(Clone)]
pub struct Token(Arc<Snapshot>);

struct Snapshot {
    tokens: TokenSet,
    refresh_at: Option<SystemTime>,
    generation: u64,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("generation", &self.0.generation)
            .field("expires_at", &self.0.tokens.expires_at())
            .finish_non_exhaustive()
    }
}

impl Token {
    /// A token as a manager would publish it (tests of code driven by tokens).
    #[cfg(test)]
    pub(crate) fn for_tests(
        tokens: TokenSet,
        refresh_at: Option<SystemTime>,
        generation: u64,
    ) -> Self {
        Self(Arc::new(Snapshot {
            tokens,
            refresh_at,
            generation,
        }))
    }

    /// The access token.
    pub fn access_token(&self) -> &SecretString {
        self.0.tokens.access_token()
    }

    /// All tokens (ID token for the pod's Secret, refresh token).
    pub fn tokens(&self) -> &TokenSet {
        &self.0.tokens
    }

    /// When the access token expires.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.0.tokens.expires_at()
    }

    /// 1 for the first token a manager hands out, then one more for each new token.
    pub fn generation(&self) -> u64 {
        self.0.generation
    }

    /// When the token enters its refresh margin (the next [`TokenManager::access_token`]
    /// after that refreshes).
    pub fn refresh_at(&self) -> Option<SystemTime> {
        self.0.refresh_at
    }

    /// Whether the token is outside its refresh margin at `now`.
    pub fn is_fresh_at(&self, now: SystemTime) -> bool {
        self.0.refresh_at.is_none_or(|at| now < at)
    }
}

type Flight = Shared<BoxFuture<'static, Result<Token>>>;

/// Keeps the tokens of one identity valid; cheap to clone (clones share everything).
#[derive(Clone)]
pub struct TokenManager {
    inner: Arc<Inner>,
}

struct Inner {
    client: CheckinClient,
    store: Arc<dyn TokenStore>,
    key: String,
    options: ManagerOptions,
    tx: watch::Sender<Option<Token>>,
    generation: AtomicU64,
    state: Mutex<State>,
    /// Held by a refresh from before it reads the store until it has published, and by
    /// [`TokenManager::replace`]: a new login and a refresh never interleave.
    refresh_lock: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    /// The running refresh and its id.
    flight: Option<(u64, Flight)>,
    /// Ids of refreshes.
    flights: u64,
    /// One more at each [`TokenManager::replace`]: a refresh that began before the new login
    /// drops its outcome.
    epoch: u64,
    /// The grant is gone: every caller gets this until a new login.
    dead: Option<Error>,
    /// The last failed refresh, for the cooldown.
    failed: Option<(Instant, Error)>,
    /// Tokens obtained but not yet stored (the store failed): stored before anything else.
    unsaved: Option<TokenSet>,
}

impl fmt::Debug for TokenManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenManager")
            .field("key", &self.inner.key)
            .field("current", &*self.inner.tx.borrow())
            .finish_non_exhaustive()
    }
}

impl TokenManager {
    /// A manager for a fresh login: `tokens` are stored under `key` first.
    pub async fn new(
        client: CheckinClient,
        store: Arc<dyn TokenStore>,
        key: impl Into<String>,
        tokens: TokenSet,
        options: ManagerOptions,
    ) -> Result<Self> {
        let manager = Self::empty(client, store, key.into(), options);
        manager.replace(tokens).await?;
        Ok(manager)
    }

    /// A manager for tokens stored earlier under `key`; [`Error::LoginRequired`] if there
    /// are none.
    pub async fn resume(
        client: CheckinClient,
        store: Arc<dyn TokenStore>,
        key: impl Into<String>,
        options: ManagerOptions,
    ) -> Result<Self> {
        let manager = Self::empty(client, store, key.into(), options);
        let stored = manager.inner.store.load(&manager.inner.key).await?;
        let tokens = stored.ok_or_else(|| Error::LoginRequired {
            reason: "no stored tokens".into(),
        })?;
        manager.inner.publish(tokens);
        Ok(manager)
    }

    fn empty(
        client: CheckinClient,
        store: Arc<dyn TokenStore>,
        key: String,
        options: ManagerOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                store,
                key,
                options,
                tx: watch::Sender::new(None),
                generation: AtomicU64::new(0),
                state: Mutex::new(State::default()),
                refresh_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Installs the tokens of a new login (after [`Error::LoginRequired`]): stores them, then
    /// hands them out. A refresh running meanwhile finishes first (under the store's lock),
    /// and its outcome can no longer undo the new login.
    pub async fn replace(&self, tokens: TokenSet) -> Result<Token> {
        let _refresh = self.inner.refresh_lock.lock().await;
        let _other_processes = self.inner.store.lock(&self.inner.key).await?;
        self.inner.store.save(&self.inner.key, &tokens).await?;
        let mut state = self.inner.lock();
        state.epoch += 1;
        state.dead = None;
        state.failed = None;
        state.unsaved = None;
        Ok(self.inner.publish(tokens))
    }

    /// The identity key.
    pub fn key(&self) -> &str {
        &self.inner.key
    }

    /// The current token, fresh or not (`None` once the grant is gone): no waiting, no IO.
    pub fn current(&self) -> Option<Token> {
        self.inner.tx.borrow().clone()
    }

    /// The current token if it is fresh (outside the refresh margin): no waiting, no IO.
    pub fn cached(&self) -> Option<Token> {
        let current = self.inner.tx.borrow();
        current
            .as_ref()
            .filter(|t| t.is_fresh_at(SystemTime::now()))
            .cloned()
    }

    /// A fresh access token: the cached one, or one refresh shared with every other caller.
    /// If the refresh fails for a reason other than [`Error::LoginRequired`], the old token
    /// is returned while it has not expired.
    pub async fn access_token(&self) -> Result<Token> {
        match self.cached() {
            Some(token) => Ok(token),
            None => self.slow_path(None, true).await,
        }
    }

    /// Refreshes because an API rejected `rejected` (HTTP 401). Many callers reporting the
    /// same token cause one refresh; a token newer than `rejected` is returned as is.
    pub async fn force_refresh(&self, rejected: &Token) -> Result<Token> {
        self.slow_path(Some(rejected.generation()), true).await
    }

    /// Learns of each new token (`None` when the grant is gone).
    pub fn subscribe(&self) -> watch::Receiver<Option<Token>> {
        self.inner.tx.subscribe()
    }

    /// Refreshes `current` now unless a newer token exists (or joins the running refresh),
    /// and reports a failed refresh as an error even while the old token is valid (for the
    /// background task of [`TokenManager::keep_fresh`]).
    pub(crate) async fn refresh_now(&self, current: &Token) -> Result<Token> {
        self.slow_path(Some(current.generation()), false).await
    }

    /// How many handles share this manager (clones, running refreshes, a keep-fresh task).
    pub(crate) fn handles(&self) -> usize {
        Arc::strong_count(&self.inner)
    }

    /// Identifies the manager (clones share it), for as long as a clone lives.
    pub(crate) fn id(&self) -> usize {
        Arc::as_ptr(&self.inner) as usize
    }

    /// Whether `other` is a clone of this manager.
    #[cfg(test)]
    pub(crate) fn same_as(&self, other: &TokenManager) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether the grant is gone (until [`TokenManager::replace`]).
    pub(crate) fn grant_gone(&self) -> bool {
        self.inner.lock().dead.is_some()
    }

    /// Logs out: waits for a running refresh, removes the stored tokens and ends the grant
    /// in this manager (every caller gets [`Error::LoginRequired`] until
    /// [`TokenManager::replace`]); a refresh that was waiting cannot store tokens again.
    pub(crate) async fn close(&self) -> Result<()> {
        let _refresh = self.inner.refresh_lock.lock().await;
        {
            let mut state = self.inner.lock();
            state.epoch += 1;
            state.dead = Some(Error::LoginRequired {
                reason: "logged out".into(),
            });
            state.failed = None;
            state.unsaved = None;
            self.inner.tx.send_replace(None);
        }
        let _other_processes = self.inner.store.lock(&self.inner.key).await?;
        self.inner.store.remove(&self.inner.key).await
    }

    async fn slow_path(&self, rejected: Option<u64>, serve_stale: bool) -> Result<Token> {
        let flight = {
            let mut state = self.inner.lock();
            if let Some(e) = &state.dead {
                return Err(e.clone());
            }
            let current = self.inner.tx.borrow().clone();
            let now = SystemTime::now();
            if let Some(t) = &current {
                let rejected_now = rejected == Some(t.generation());
                if t.is_fresh_at(now) && !rejected_now {
                    return Ok(t.clone());
                }
                if let (None, Some((at, e))) = (&state.flight, &state.failed)
                    && at.elapsed() < self.inner.options.retry.cooldown
                {
                    return if serve_stale {
                        serve_old(current, e.clone())
                    } else {
                        Err(e.clone())
                    };
                }
            }
            match &state.flight {
                Some((_, f)) => f.clone(),
                None => {
                    state.flights += 1;
                    let (id, epoch) = (state.flights, state.epoch);
                    // Clears the flight however the task ends (a panic in a TokenStore, the
                    // runtime shutting down), so that the next caller starts a new one.
                    let guard = FlightGuard {
                        inner: Arc::clone(&self.inner),
                        id,
                    };
                    let handle = tokio::spawn(async move {
                        let result = Arc::clone(&guard.inner).run_flight(id, epoch).await;
                        drop(guard);
                        result
                    });
                    let flight = async move { handle.await.unwrap_or(Err(Error::RefreshAborted)) }
                        .boxed()
                        .shared();
                    state.flight = Some((id, flight.clone()));
                    flight
                }
            }
        };
        match flight.await {
            Ok(t) => Ok(t),
            Err(e) if e.needs_login() => Err(e),
            Err(e) if serve_stale => serve_old(self.inner.tx.borrow().clone(), e),
            Err(e) => Err(e),
        }
    }
}

/// The old token if it has not expired, else the error.
fn serve_old(current: Option<Token>, e: Error) -> Result<Token> {
    match current {
        Some(t) if !t.tokens().is_expired_at(SystemTime::now()) => {
            tracing::warn!(error = %e, generation = t.generation(), "refresh failed; serving the old, still valid token");
            Ok(t)
        }
        _ => Err(e),
    }
}

/// Clears the flight `id` if it is still the running one when dropped (the task ended
/// without finishing [`Inner::run_flight`]).
struct FlightGuard {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if state.flight.as_ref().is_some_and(|(id, _)| *id == self.id) {
            tracing::warn!(key = %self.inner.key, "the refresh task ended without a result");
            state.flight = None;
            state.failed = Some((Instant::now(), Error::RefreshAborted));
        }
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, tokens: TokenSet) -> Token {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let refresh_at = tokens.expires_at().map(|at| {
            let margin = tokens.lifetime().map_or(self.options.margin.min, |l| {
                self.options.margin.for_lifetime(l)
            });
            at.checked_sub(margin).unwrap_or(at)
        });
        let token = Token(Arc::new(Snapshot {
            tokens,
            refresh_at,
            generation,
        }));
        tracing::debug!(key = %self.key, generation, expires_at = ?token.expires_at(), "new token");
        self.tx.send_replace(Some(token.clone()));
        token
    }

    async fn run_flight(self: Arc<Self>, id: u64, started: u64) -> Result<Token> {
        let (epoch, result) = self.refresh(started).await;
        let mut state = self.lock();
        if state.flight.as_ref().is_some_and(|(i, _)| *i == id) {
            state.flight = None;
        }
        if state.epoch != epoch {
            // A new login was installed after this refresh: its outcome is about the old
            // grant (a LoginRequired must not kill the new one).
            drop(state);
            return match self.tx.borrow().clone() {
                Some(t) => Ok(t),
                None => result,
            };
        }
        match &result {
            Ok(_) => state.failed = None,
            Err(e) if e.needs_login() => {
                tracing::warn!(key = %self.key, error = %e, "the grant is gone: log in again");
                state.dead = Some(e.clone());
                self.tx.send_replace(None);
            }
            Err(e) => {
                tracing::warn!(key = %self.key, error = %e, "refresh failed");
                state.failed = Some((Instant::now(), e.clone()));
            }
        }
        result
    }

    /// One refresh under the lock, and the epoch it ran in.
    async fn refresh(&self, started: u64) -> (u64, Result<Token>) {
        let _refresh = self.refresh_lock.lock().await;
        let (epoch, dead) = {
            let state = self.lock();
            (state.epoch, state.dead.clone())
        };
        if let Some(e) = dead.filter(|_| epoch != started) {
            // Logged out ([`TokenManager::close`]) while this refresh waited.
            return (epoch, Err(e));
        }
        (epoch, self.refresh_locked(epoch != started).await)
    }

    async fn refresh_locked(&self, replaced: bool) -> Result<Token> {
        let _other_processes = self.store.lock(&self.key).await?;
        if replaced {
            let current = self.tx.borrow().clone();
            if let Some(t) = current.filter(|t| t.is_fresh_at(SystemTime::now())) {
                return Ok(t);
            }
        }
        let unsaved = self.lock().unsaved.take();
        if let Some(tokens) = unsaved
            && let Err(e) = self.store.save(&self.key, &tokens).await
        {
            self.lock().unsaved = Some(tokens);
            return Err(e);
        }
        let current = self.tx.borrow().clone();
        let stored = self.store.load(&self.key).await?;
        if let Some(stored) = &stored {
            let newer = current.as_ref().is_none_or(|c| {
                c.access_token().expose_secret() != stored.access_token().expose_secret()
            });
            if newer && !stored.is_expired_at(SystemTime::now()) {
                let token = self.publish(stored.clone());
                if token.is_fresh_at(SystemTime::now()) {
                    tracing::debug!(key = %self.key, "adopted tokens refreshed by another process");
                    return Ok(token);
                }
            }
        }
        let base = match (stored, current) {
            (Some(s), _) => s,
            (None, Some(c)) => c.tokens().clone(),
            (None, None) => {
                return Err(Error::LoginRequired {
                    reason: "no stored tokens".into(),
                });
            }
        };
        let retry = self.options.retry;
        let mut attempt = 0;
        let tokens = loop {
            match self.client.refresh_detailed(&base).await {
                Ok(t) => break t,
                Err(f) => {
                    if let Some(rotated) = f.rotated {
                        // The provider accepted the refresh and rotated the refresh token,
                        // then the ID token failed its checks: the old refresh token is used
                        // up, so the new one is the base of the next refresh.
                        tracing::warn!(key = %self.key, error = %f.error, "refreshed tokens rejected; keeping the new refresh token");
                        if let Err(e) = self.store.save(&self.key, &rotated).await {
                            tracing::warn!(key = %self.key, error = %e, "cannot store the new refresh token; keeping it in memory");
                            self.lock().unsaved = Some(rotated);
                        }
                        return Err(f.error);
                    }
                    // Sent again at once only if the provider did not process it: after a
                    // 2xx, a timeout or a broken answer, the refresh token may be used up.
                    if !f.accepted && f.error.is_replayable() && attempt + 1 < retry.attempts {
                        let wait = retry.backoff(attempt);
                        tracing::info!(key = %self.key, error = %f.error, ?wait, attempt, "refresh failed; retrying");
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                    } else {
                        return Err(f.error);
                    }
                }
            }
        };
        self.save_then_publish(tokens).await
    }

    async fn save_then_publish(&self, tokens: TokenSet) -> Result<Token> {
        if let Err(e) = self.store.save(&self.key, &tokens).await {
            // The provider may have rotated the refresh token: keep the new one in memory
            // and store it before the next refresh.
            self.lock().unsaved = Some(tokens);
            return Err(e);
        }
        Ok(self.publish(tokens))
    }
}
