//! Unit tests of the token manager against a scripted token endpoint.

use super::*;
use crate::store::{MemoryStore, StoreLock};
use crate::test_provider::{Reply, TestProvider};
use futures_util::future::BoxFuture as StoreFuture;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Tokens whose access token expired a minute ago.
fn expired(access: &str, refresh: &str) -> TokenSet {
    TokenSet::new(
        access.into(),
        SystemTime::now() - Duration::from_secs(120),
        Some(Duration::from_secs(60)),
    )
    .with_refresh_token(refresh.to_owned().into())
}

fn fresh(access: &str, refresh: &str) -> TokenSet {
    TokenSet::new(
        access.into(),
        SystemTime::now(),
        Some(Duration::from_secs(3600)),
    )
    .with_refresh_token(refresh.to_owned().into())
}

fn quick(attempts: u32) -> ManagerOptions {
    ManagerOptions::default().retry(
        RetryPolicy::new(
            attempts,
            Duration::from_millis(10),
            Duration::from_millis(20),
        )
        .cooldown(Duration::ZERO),
    )
}

async fn manager(
    p: &TestProvider,
    timeout: Duration,
    store: Arc<dyn TokenStore>,
    tokens: TokenSet,
    attempts: u32,
) -> TokenManager {
    let client = p.client(timeout).await;
    TokenManager::new(client, store, "alice", tokens, quick(attempts))
        .await
        .expect("manager")
}

fn access(t: &Token) -> &str {
    t.access_token().expose_secret()
}

/// A memory store whose `lock` panics while `panic` is set.
#[derive(Debug, Default)]
struct PanickyStore {
    inner: MemoryStore,
    panic: AtomicBool,
}

impl TokenStore for PanickyStore {
    fn load<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<Option<TokenSet>>> {
        self.inner.load(key)
    }
    fn save<'a>(&'a self, key: &'a str, tokens: &'a TokenSet) -> StoreFuture<'a, Result<()>> {
        self.inner.save(key, tokens)
    }
    fn remove<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Result<()>> {
        self.inner.remove(key)
    }
    fn lock<'a>(&'a self, _key: &'a str) -> StoreFuture<'a, Result<StoreLock>> {
        Box::pin(async move {
            assert!(
                !self.panic.swap(false, Ordering::SeqCst),
                "store lock panics (test)"
            );
            Ok(StoreLock::none())
        })
    }
}

#[tokio::test]
async fn a_panicking_refresh_does_not_wedge_the_manager() {
    let p = TestProvider::start().await;
    let store = Arc::new(PanickyStore::default());
    let m = manager(
        &p,
        Duration::from_secs(5),
        store.clone(),
        expired("a0", "r0"),
        1,
    )
    .await;
    store.panic.store(true, Ordering::SeqCst);
    let e = m
        .access_token()
        .await
        .expect_err("the refresh task panicked");
    assert!(matches!(e, Error::RefreshAborted), "{e}");
    p.push([Reply::tokens("a1", Some("r1"), None)]);
    let t = m.access_token().await.expect("a later refresh works");
    assert_eq!(access(&t), "a1");
    assert_eq!(p.refresh_tokens(), ["r0"]);
}

#[tokio::test]
async fn a_rotated_refresh_token_is_kept_when_the_id_token_fails() {
    let p = TestProvider::start().await;
    let store = Arc::new(MemoryStore::new());
    let m = manager(
        &p,
        Duration::from_secs(5),
        store.clone(),
        expired("a0", "r0"),
        4,
    )
    .await;
    // The provider accepts r0, rotates to r1, but sends an ID token that fails.
    p.push([
        Reply::tokens("a1", Some("r1"), Some("not-a-jwt")),
        Reply::tokens("a2", Some("r2"), None),
    ]);
    let e = m.access_token().await.expect_err("invalid ID token");
    assert!(matches!(e, Error::IdToken(_)), "{e}");
    // Not retried with the used-up r0; r1 stored as the base of the next refresh.
    assert_eq!(p.refresh_tokens(), ["r0"]);
    let stored = store.load("alice").await.expect("load").expect("stored");
    assert_eq!(
        stored.refresh_token().map(|t| t.expose_secret()),
        Some("r1")
    );
    assert_eq!(stored.access_token().expose_secret(), "a0");
    let t = m.access_token().await.expect("next refresh");
    assert_eq!(access(&t), "a2");
    assert_eq!(p.refresh_tokens(), ["r0", "r1"]);
}

#[tokio::test]
async fn an_accepted_refresh_is_never_replayed() {
    let p = TestProvider::start().await;
    let m = manager(
        &p,
        Duration::from_secs(5),
        Arc::new(MemoryStore::new()),
        expired("a0", "r0"),
        4,
    )
    .await;
    // 2xx without a new refresh token, then the ID token fails: no second request.
    p.push([Reply::tokens("a1", None, Some("not-a-jwt"))]);
    m.access_token().await.expect_err("invalid ID token");
    assert_eq!(p.refresh_tokens(), ["r0"]);
    // 2xx, then fetching the key set for the ID token fails (a transient error): the
    // refresh is still not sent again.
    let id_token = p.id_token_of_unknown_key();
    p.push([Reply::tokens("a2", None, Some(&id_token))]);
    let e = m.access_token().await.expect_err("key set unavailable");
    assert!(e.is_transient(), "{e}");
    assert_eq!(p.refresh_tokens(), ["r0", "r0"]);
}

#[tokio::test]
async fn timeouts_are_not_replayed_but_server_errors_are() {
    let p = TestProvider::start().await;
    let m = manager(
        &p,
        Duration::from_millis(300),
        Arc::new(MemoryStore::new()),
        expired("a0", "r0"),
        4,
    )
    .await;
    // The provider may have processed a request that timed out: one request only.
    p.push([Reply::tokens("a1", Some("r1"), None).after(Duration::from_secs(2))]);
    let e = m.access_token().await.expect_err("timeout");
    assert!(
        matches!(e, Error::Timeout { .. }) && e.is_transient(),
        "{e}"
    );
    assert_eq!(p.refresh_tokens(), ["r0"]);
    // 503 and 429 mean "not processed": sent again at once.
    p.push([
        Reply::error(503, "temporarily_unavailable"),
        Reply::error(429, "slow_down_please"),
        Reply::tokens("a2", Some("r2"), None),
    ]);
    let t = m.access_token().await.expect("third attempt");
    assert_eq!(access(&t), "a2");
    assert_eq!(p.refresh_tokens(), ["r0", "r0", "r0", "r0"]);
}

/// Starts a refresh that the provider answers with `reply` after a while, calls
/// `replace` while it runs, and returns the manager afterwards.
async fn replace_during_refresh(reply: Reply) -> (TestProvider, TokenManager, Result<Token>) {
    let p = TestProvider::start().await;
    let m = manager(
        &p,
        Duration::from_secs(5),
        Arc::new(MemoryStore::new()),
        expired("a0", "r0"),
        1,
    )
    .await;
    p.push([reply.after(Duration::from_millis(300))]);
    let received = p.received.notified();
    let refreshing = tokio::spawn({
        let m = m.clone();
        async move { m.access_token().await }
    });
    received.await;
    let replaced = m.replace(fresh("b0", "s0")).await.expect("replace");
    assert_eq!(access(&replaced), "b0");
    let refreshed = refreshing.await.expect("join");
    (p, m, refreshed)
}

#[tokio::test]
async fn a_refresh_running_during_replace_cannot_undo_it() {
    // The old grant is gone: the new login must stay alive.
    let (_p, m, _) = replace_during_refresh(Reply::error(400, "invalid_grant")).await;
    assert_eq!(access(&m.current().expect("current")), "b0");
    let t = m.access_token().await.expect("the new login is alive");
    assert_eq!(access(&t), "b0");

    // The old grant was refreshed: the new login still wins.
    let (p, m, _) = replace_during_refresh(Reply::tokens("a1", Some("r1"), None)).await;
    assert_eq!(access(&m.access_token().await.expect("token")), "b0");
    let stored = m.inner.store.load("alice").await.expect("load");
    assert_eq!(stored.expect("stored").access_token().expose_secret(), "b0");
    assert_eq!(p.refresh_tokens(), ["r0"]);
}

#[test]
fn margins() {
    let m = RefreshMargin::default();
    assert_eq!(
        m.for_lifetime(Duration::from_secs(3600)),
        Duration::from_secs(360)
    );
    assert_eq!(
        m.for_lifetime(Duration::from_secs(120)),
        Duration::from_secs(30)
    );
    assert_eq!(
        m.for_lifetime(Duration::from_secs(2)),
        Duration::from_secs(1)
    );
    assert_eq!(
        RefreshMargin::new(Duration::ZERO, 0.0).for_lifetime(Duration::from_secs(2)),
        Duration::ZERO
    );
}

#[test]
fn backoff_is_jittered_and_capped() {
    let r = RetryPolicy::new(5, Duration::from_millis(100), Duration::from_millis(300));
    for _ in 0..100 {
        let b0 = r.backoff(0);
        assert!(
            b0 >= Duration::from_millis(50) && b0 <= Duration::from_millis(100),
            "{b0:?}"
        );
        let b5 = r.backoff(5);
        assert!(
            b5 >= Duration::from_millis(150) && b5 <= Duration::from_millis(300),
            "{b5:?}"
        );
    }
    let samples: std::collections::BTreeSet<_> = (0..20).map(|_| r.backoff(1)).collect();
    assert!(samples.len() > 1, "jitter varies the backoff");
}
