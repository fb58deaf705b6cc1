//! Where the token manager keeps tokens: the [`TokenStore`] trait, an in-memory store, and
//! (in [`crate::file_store`]) an encrypted file store safe across processes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use futures_util::future::BoxFuture;

use crate::error::Result;
use crate::token::TokenSet;

/// A lock held across one refresh, released when dropped. Stores shared between processes
/// hand out a real lock so that two processes never refresh the same grant at once (with
/// rotating refresh tokens that would revoke it).
pub struct StoreLock(Option<Box<dyn Send + Sync>>);

impl StoreLock {
    /// A lock that excludes nobody (stores used by one process only).
    pub fn none() -> Self {
        Self(None)
    }

    /// A lock released when `guard` is dropped.
    pub fn new(guard: impl Send + Sync + 'static) -> Self {
        Self(Some(Box::new(guard)))
    }
}

impl fmt::Debug for StoreLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "StoreLock(held)"
        } else {
            "StoreLock(none)"
        })
    }
}

/// Persistent storage for the tokens of identities, keyed by an identity key.
///
/// Held as `Arc<dyn TokenStore>` by the token manager (one manager type for every store), so
/// its methods return boxed futures ([`futures_util::future::BoxFuture`], which is
/// `Pin<Box<dyn Future<Output = T> + Send + 'a>>`) rather than `impl Future`. The manager calls
/// [`TokenStore::save`] before it hands a new access token out, and [`TokenStore::lock`]
/// then [`TokenStore::load`] before each refresh, so that a refresh done by another
/// process is picked up instead of repeated.
pub trait TokenStore: Send + Sync + fmt::Debug {
    /// The stored tokens of `key`, if any.
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<TokenSet>>>;

    /// Stores `tokens` for `key`, durably, replacing what was there.
    fn save<'a>(&'a self, key: &'a str, tokens: &'a TokenSet) -> BoxFuture<'a, Result<()>>;

    /// Forgets `key` (logout).
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>>;

    /// Excludes other refreshes of `key` (in other processes) until the lock is dropped.
    /// The default excludes nobody.
    fn lock<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<StoreLock>> {
        let _ = key;
        Box::pin(async { Ok(StoreLock::none()) })
    }
}

/// Tokens kept in memory (lost when the process ends).
#[derive(Default)]
pub struct MemoryStore {
    tokens: Mutex<HashMap<String, TokenSet>>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.tokens.lock().map(|t| t.len()).unwrap_or(0);
        f.debug_struct("MemoryStore")
            .field("identities", &len)
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl TokenStore for MemoryStore {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<TokenSet>>> {
        let found = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn save<'a>(&'a self, key: &'a str, tokens: &'a TokenSet) -> BoxFuture<'a, Result<()>> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_owned(), tokens.clone());
        Box::pin(async { Ok(()) })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use secrecy::ExposeSecret;

    use super::*;

    #[tokio::test]
    async fn memory_store_round_trip_through_a_trait_object() {
        let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
        assert!(store.load("alice").await.expect("load").is_none());
        let set = TokenSet::new("a".into(), SystemTime::now(), Some(Duration::from_secs(60)));
        store.save("alice", &set).await.expect("save");
        let back = store.load("alice").await.expect("load").expect("stored");
        assert_eq!(back.access_token().expose_secret(), "a");
        assert!(store.load("bob").await.expect("load").is_none());
        let _lock = store.lock("alice").await.expect("no-op lock");
        store.remove("alice").await.expect("remove");
        assert!(store.load("alice").await.expect("load").is_none());
        assert_eq!(format!("{store:?}"), "MemoryStore { identities: 0 }");
    }
}
