//! [`TokenRegistry`]: the token managers of many users, as a gateway holds them.
//!
//! - One [`CheckinClient`] and one [`TokenStore`] for everyone; one [`TokenManager`] per
//!   identity key in memory, never two, so one refresh per user at a time (the manager's
//!   single flight). As a second guard, refreshes of one key are also serialized through the
//!   store's lock, so even a manager a caller kept past its eviction cannot refresh at the
//!   same time as its successor (it adopts the successor's stored tokens instead).
//! - Bounded memory: at most [`RegistryOptions::max_users`] managers stay in memory; the
//!   least recently used is dropped first (its tokens stay in the store, and
//!   [`TokenRegistry::get`] resumes it). A manager still in use elsewhere (a caller holds it,
//!   a refresh is running) is not dropped; if every one is in use, the registry grows past
//!   the cap until they are released. A manager whose grant is gone is dropped too.
//! - Each manager is kept fresh in the background ([`TokenManager::keep_fresh`]) unless
//!   [`RegistryOptions::keep_fresh`] is `None`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, Weak};

use futures_util::future::BoxFuture;

use crate::client::CheckinClient;
use crate::error::Result;
use crate::fresh::{Freshness, KeepFresh, KeepFreshOptions};
use crate::manager::{ManagerOptions, TokenManager};
use crate::store::{StoreLock, TokenStore};
use crate::token::TokenSet;

/// Options of a [`TokenRegistry`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// The most managers kept in memory (default 10,000; at least 1).
    pub max_users: usize,
    /// Options of each manager.
    pub manager: ManagerOptions,
    /// Background refresh of each manager (default on); `None`: tokens are refreshed when
    /// asked for only.
    pub keep_fresh: Option<KeepFreshOptions>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            max_users: 10_000,
            manager: ManagerOptions::default(),
            keep_fresh: Some(KeepFreshOptions::default()),
        }
    }
}

impl RegistryOptions {
    /// Sets the most managers kept in memory.
    #[must_use]
    pub fn max_users(mut self, max_users: usize) -> Self {
        self.max_users = max_users.max(1);
        self
    }

    /// Sets the options of each manager.
    #[must_use]
    pub fn manager(mut self, manager: ManagerOptions) -> Self {
        self.manager = manager;
        self
    }

    /// Sets (or, with `None`, turns off) the background refresh.
    #[must_use]
    pub fn keep_fresh(mut self, keep_fresh: Option<KeepFreshOptions>) -> Self {
        self.keep_fresh = keep_fresh;
        self
    }
}

/// The token managers of many users, keyed by identity key (such as `voperson_id`); cheap
/// to clone (clones share everything). See the [module documentation](crate::registry).
#[derive(Clone)]
pub struct TokenRegistry {
    inner: Arc<Shared>,
}

struct Shared {
    client: CheckinClient,
    store: Arc<dyn TokenStore>,
    options: RegistryOptions,
    users: Mutex<Users>,
    /// Serializes creating, replacing and removing the manager of one key.
    creating: KeyLocks,
}

#[derive(Default)]
struct Users {
    map: HashMap<Arc<str>, Entry>,
    /// Keys by last use, oldest first.
    order: BTreeMap<u64, Arc<str>>,
    tick: u64,
}

struct Entry {
    manager: TokenManager,
    fresh: Option<KeepFresh>,
    used: u64,
}

impl fmt::Debug for TokenRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRegistry")
            .field("users", &self.len())
            .field("options", &self.inner.options)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl TokenRegistry {
    /// A registry of users of `client`, their tokens kept in `store`.
    pub fn new(
        client: CheckinClient,
        store: Arc<dyn TokenStore>,
        options: RegistryOptions,
    ) -> Self {
        let store: Arc<dyn TokenStore> = Arc::new(KeyLockedStore {
            inner: store,
            locks: Arc::new(KeyLocks::default()),
        });
        Self {
            inner: Arc::new(Shared {
                client,
                store,
                options: options.max_users(options.max_users),
                users: Mutex::new(Users::default()),
                creating: KeyLocks::default(),
            }),
        }
    }

    /// Installs the tokens of a new login of `key`: stored, then kept fresh. The manager
    /// already in memory for `key`, if any, gets them ([`TokenManager::replace`]), so there
    /// is still one manager per key.
    pub async fn login(&self, key: &str, tokens: TokenSet) -> Result<TokenManager> {
        let _creating = self.inner.creating.lock(key).await;
        let existing = self.inner.users().map.get(key).map(|e| e.manager.clone());
        let manager = match existing {
            Some(manager) => {
                manager.replace(tokens).await?;
                manager
            }
            None => {
                TokenManager::new(
                    self.inner.client.clone(),
                    Arc::clone(&self.inner.store),
                    key,
                    tokens,
                    self.inner.options.manager,
                )
                .await?
            }
        };
        self.insert(key, &manager);
        Ok(manager)
    }

    /// The manager of `key`: the one in memory, or one resumed from the store; `None` if
    /// there are no stored tokens or the grant is gone (log the user in).
    pub async fn get(&self, key: &str) -> Result<Option<TokenManager>> {
        if let Some(found) = self.inner.lookup(key) {
            return Ok(found);
        }
        let _creating = self.inner.creating.lock(key).await;
        if let Some(found) = self.inner.lookup(key) {
            return Ok(found);
        }
        let resumed = TokenManager::resume(
            self.inner.client.clone(),
            Arc::clone(&self.inner.store),
            key,
            self.inner.options.manager,
        )
        .await;
        match resumed {
            Ok(manager) => {
                self.insert(key, &manager);
                Ok(Some(manager))
            }
            Err(e) if e.needs_login() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The background refresh status of `key`, if its manager is in memory and kept fresh.
    pub fn freshness(&self, key: &str) -> Option<Freshness> {
        let users = self.inner.users();
        users.map.get(key)?.fresh.as_ref().map(KeepFresh::status)
    }

    /// Logs `key` out: stops its background refresh, forgets its manager (a clone that a
    /// caller still holds answers [`crate::Error::LoginRequired`]) and removes its stored tokens.
    /// Revoking the grant at the provider ([`CheckinClient::revoke`]) is up to the caller.
    pub async fn logout(&self, key: &str) -> Result<()> {
        let _creating = self.inner.creating.lock(key).await;
        let entry = self.inner.users().remove(key);
        match entry {
            Some(entry) => {
                drop(entry.fresh);
                entry.manager.close().await
            }
            None => {
                let _lock = self.inner.store.lock(key).await?;
                self.inner.store.remove(key).await
            }
        }
    }

    /// How many managers are in memory.
    pub fn len(&self) -> usize {
        self.inner.users().map.len()
    }

    /// Whether no manager is in memory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Puts `manager` in memory as the one of `key` (keeping it fresh), then evicts the
    /// least recently used managers over the cap.
    fn insert(&self, key: &str, manager: &TokenManager) {
        let mut users = self.inner.users();
        let restart = match users.map.get(key) {
            Some(e) => e.fresh.as_ref().is_none_or(KeepFresh::is_finished),
            None => true,
        };
        let fresh = match self.inner.options.keep_fresh {
            Some(options) if restart => {
                let registry = Arc::downgrade(&self.inner);
                let (key, id) = (key.to_owned(), manager.id());
                Some(manager.keep_fresh_then(options, move || forget_dead(&registry, &key, id)))
            }
            _ => None,
        };
        let tick = users.next_tick();
        match users.map.get_mut(key) {
            Some(entry) => {
                let old = std::mem::replace(&mut entry.used, tick);
                if fresh.is_some() {
                    entry.fresh = fresh;
                }
                users.order.remove(&old);
                let key = users.map.get_key_value(key).map(|(k, _)| Arc::clone(k));
                if let Some(key) = key {
                    users.order.insert(tick, key);
                }
            }
            None => {
                let key: Arc<str> = Arc::from(key);
                users.order.insert(tick, Arc::clone(&key));
                users.map.insert(
                    key,
                    Entry {
                        manager: manager.clone(),
                        fresh,
                        used: tick,
                    },
                );
            }
        }
        let evicted = users.evict(self.inner.options.max_users);
        drop(users);
        // Stopped outside the lock.
        drop(evicted);
    }
}

/// Drops `manager` from the registry if it is still the one of `key` (its grant is gone).
fn forget_dead(registry: &Weak<Shared>, key: &str, manager: usize) {
    if let Some(shared) = registry.upgrade() {
        let mut users = shared.users();
        if users
            .map
            .get(key)
            .is_some_and(|e| e.manager.id() == manager)
        {
            let entry = users.remove(key);
            drop(users);
            drop(entry);
        }
    }
}

impl Shared {
    fn users(&self) -> std::sync::MutexGuard<'_, Users> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Some(Some(manager))` if in memory, `Some(None)` if in memory with its grant gone
    /// (then dropped), `None` if not in memory.
    fn lookup(&self, key: &str) -> Option<Option<TokenManager>> {
        let mut users = self.users();
        let entry = users.map.get(key)?;
        if entry.manager.grant_gone() {
            let entry = users.remove(key);
            drop(users);
            drop(entry);
            return Some(None);
        }
        let (old, manager) = (entry.used, entry.manager.clone());
        let tick = users.next_tick();
        if let Some(key) = users.order.remove(&old) {
            users.order.insert(tick, key);
        }
        if let Some(e) = users.map.get_mut(key) {
            e.used = tick;
        }
        Some(Some(manager))
    }
}

impl Users {
    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.map.remove(key)?;
        self.order.remove(&entry.used);
        Some(entry)
    }

    /// Removes the least recently used managers that nobody else holds until at most `max`
    /// are left; returns them (to be dropped outside the lock).
    fn evict(&mut self, max: usize) -> Vec<Entry> {
        let mut evicted = Vec::new();
        if self.map.len() <= max {
            return evicted;
        }
        let mut over = self.map.len() - max;
        let candidates: Vec<Arc<str>> = self.order.values().cloned().collect();
        for key in candidates {
            if over == 0 {
                break;
            }
            let idle = self.map.get(&*key).is_some_and(|e| {
                let task = e.fresh.as_ref().is_some_and(|f| !f.is_finished());
                e.manager.handles() <= 1 + usize::from(task)
            });
            if idle && let Some(entry) = self.remove(&key) {
                evicted.push(entry);
                over -= 1;
            }
        }
        if over > 0 {
            tracing::debug!(
                users = self.map.len(),
                max,
                "every manager is in use; over the cap until some are released"
            );
        }
        evicted
    }
}

/// Per-key async locks, forgotten when nobody holds or waits for them.
#[derive(Default)]
struct KeyLocks(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

struct KeyGuard {
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    key: String,
}

impl KeyLocks {
    async fn lock(&self, key: &str) -> KeyGuard {
        let mutex = {
            let mut locks = self.0.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(locks.entry(key.to_owned()).or_default())
        };
        KeyGuard {
            guard: Some(mutex.lock_owned().await),
            locks: Arc::clone(&self.0),
            key: key.to_owned(),
        }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map holds it: nobody holds or waits for the lock.
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

/// The registry's store: the caller's, with refreshes of one key serialized in this process
/// too (a store used by one process, such as [`crate::MemoryStore`], has a lock that
/// excludes nobody).
struct KeyLockedStore {
    inner: Arc<dyn TokenStore>,
    locks: Arc<KeyLocks>,
}

impl fmt::Debug for KeyLockedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl TokenStore for KeyLockedStore {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<TokenSet>>> {
        self.inner.load(key)
    }

    fn save<'a>(&'a self, key: &'a str, tokens: &'a TokenSet) -> BoxFuture<'a, Result<()>> {
        self.inner.save(key, tokens)
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        self.inner.remove(key)
    }

    fn lock<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<StoreLock>> {
        Box::pin(async move {
            let here = self.locks.lock(key).await;
            let elsewhere = self.inner.lock(key).await?;
            Ok(StoreLock::new((here, elsewhere)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use secrecy::ExposeSecret;

    use super::*;
    use crate::store::MemoryStore;
    use crate::test_provider::{Reply, TestProvider};

    const HOUR: Duration = Duration::from_secs(3600);

    /// Tokens the size of Check-in's: a 1,400-character access token, a refresh token and
    /// an ID token.
    fn tokens(user: usize, lifetime: Duration, received: SystemTime) -> TokenSet {
        let access = format!("{user:08}{}", "a".repeat(1392));
        TokenSet::new(access.into(), received, Some(lifetime))
            .with_refresh_token(format!("{user:08}{}", "r".repeat(400)).into())
    }

    fn expired(user: usize) -> TokenSet {
        tokens(
            user,
            Duration::from_secs(60),
            SystemTime::now() - Duration::from_secs(120),
        )
    }

    async fn registry(
        p: &TestProvider,
        options: RegistryOptions,
    ) -> (TokenRegistry, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::new());
        let client = p.client(Duration::from_secs(5)).await;
        (TokenRegistry::new(client, store.clone(), options), store)
    }

    #[tokio::test]
    async fn one_manager_per_key_and_login_replaces() {
        let p = TestProvider::start().await;
        let (r, store) = registry(&p, RegistryOptions::default()).await;
        let first = r
            .login("alice", tokens(1, HOUR, SystemTime::now()))
            .await
            .expect("login");
        let again = r
            .login("alice", tokens(2, HOUR, SystemTime::now()))
            .await
            .expect("login");
        assert!(first.same_as(&again), "the same manager got the new tokens");
        assert_eq!(r.len(), 1);
        let got = r.get("alice").await.expect("get").expect("in memory");
        assert!(got.same_as(&first));
        let t = got.access_token().await.expect("token");
        assert!(t.access_token().expose_secret().starts_with("00000002"));
        let stored = store.load("alice").await.expect("load").expect("stored");
        assert!(
            stored
                .access_token()
                .expose_secret()
                .starts_with("00000002")
        );
        assert!(matches!(
            r.freshness("alice"),
            Some(Freshness::Fresh { .. })
        ));
        assert!(
            r.get("bob").await.expect("get").is_none(),
            "never logged in"
        );
    }

    #[tokio::test]
    async fn least_recently_used_are_evicted_and_resumed_from_the_store() {
        let p = TestProvider::start().await;
        let (r, _store) = registry(&p, RegistryOptions::default().max_users(2)).await;
        for (i, key) in ["a", "b", "c"].into_iter().enumerate() {
            drop(
                r.login(key, tokens(i, HOUR, SystemTime::now()))
                    .await
                    .expect("login"),
            );
            if key == "b" {
                // "a" used again: "b" is now the least recently used.
                drop(r.get("a").await.expect("get"));
            }
        }
        assert_eq!(r.len(), 2);
        assert!(r.freshness("b").is_none(), "b was evicted");
        assert!(r.freshness("a").is_some() && r.freshness("c").is_some());
        let b = r
            .get("b")
            .await
            .expect("get")
            .expect("resumed from the store");
        let t = b.access_token().await.expect("token");
        assert!(t.access_token().expose_secret().starts_with("00000001"));
        assert_eq!(r.len(), 2);
        // A manager held by a caller is not evicted: one manager per key, never two.
        let held = r.get("b").await.expect("get").expect("b");
        assert!(held.same_as(&b));
        drop(r.get("a").await.expect("get"));
        drop(r.get("c").await.expect("get"));
        assert!(r.freshness("b").is_some(), "b is held, so it stays");
    }

    #[tokio::test]
    async fn concurrent_gets_share_one_refresh() {
        let p = TestProvider::start().await;
        let (r, store) = registry(&p, RegistryOptions::default().keep_fresh(None)).await;
        store.save("alice", &expired(0)).await.expect("save");
        p.push([Reply::tokens("a1", Some("r1"), None).after(Duration::from_millis(200))]);
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move {
                    let m = r.get("alice").await.expect("get").expect("stored");
                    m.access_token().await.expect("token")
                })
            })
            .collect();
        for t in tasks {
            let token = t.await.expect("join");
            assert_eq!(token.access_token().expose_secret(), "a1");
        }
        assert_eq!(p.refresh_tokens().len(), 1, "one refresh for 50 callers");
        assert_eq!(r.len(), 1);
    }

    #[tokio::test]
    async fn dead_grants_are_dropped_and_logout_forgets() {
        let p = TestProvider::start().await;
        let (r, store) = registry(&p, RegistryOptions::default()).await;
        p.push([Reply::error(400, "invalid_grant")]);
        let m = r.login("alice", expired(0)).await.expect("login");
        // The background task refreshes at once, learns that the grant is gone, and the
        // registry drops the manager.
        let mut status = m.subscribe();
        while status.borrow_and_update().is_some() {
            status.changed().await.expect("status");
        }
        for _ in 0..100 {
            if r.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(r.is_empty(), "a manager whose grant is gone is dropped");
        assert!(m.access_token().await.expect_err("gone").needs_login());

        let m = r
            .login("bob", tokens(1, HOUR, SystemTime::now()))
            .await
            .expect("login");
        r.logout("bob").await.expect("logout");
        assert!(r.is_empty());
        assert!(
            store.load("bob").await.expect("load").is_none(),
            "stored tokens removed"
        );
        assert!(
            m.access_token()
                .await
                .expect_err("logged out")
                .needs_login()
        );
        assert!(r.get("bob").await.expect("get").is_none());
        // Logging out someone not in memory removes the stored tokens too.
        store
            .save("carol", &tokens(2, HOUR, SystemTime::now()))
            .await
            .expect("save");
        r.logout("carol").await.expect("logout");
        assert!(store.load("carol").await.expect("load").is_none());
    }

    /// Resident memory of this process, in bytes (Linux).
    fn rss() -> Option<usize> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    /// Run alone for a clean figure:
    /// `cargo test -p egi-checkin --lib registry::tests::memory_per_user -- --exact --nocapture`
    #[tokio::test]
    async fn memory_per_user() {
        let p = TestProvider::start().await;
        let (r, _store) = registry(&p, RegistryOptions::default()).await;
        let before = rss();
        let now = SystemTime::now();
        for i in 0..1000 {
            let key = format!("{i:064x}@egi.eu");
            drop(r.login(&key, tokens(i, HOUR, now)).await.expect("login"));
        }
        assert_eq!(r.len(), 1000);
        let (Some(before), Some(after)) = (before, rss()) else {
            return;
        };
        let per_user = after.saturating_sub(before) / 1000;
        println!(
            "1,000 users (manager, keep-fresh task, tokens in the manager and the MemoryStore): {} KiB in all, {per_user} bytes per user",
            after.saturating_sub(before) / 1024
        );
        assert!(per_user < 64 * 1024, "{per_user} bytes per user");
    }
}
