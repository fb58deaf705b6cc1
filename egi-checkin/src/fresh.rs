//! Background freshness: [`TokenManager::keep_fresh`] refreshes a token before it is needed,
//! so that requests never wait for the provider.
//!
//! - When: inside the refresh margin (after [`Token::refresh_at`], before expiry), at a point
//!   that depends on the identity key only ([`KeepFreshOptions::spread`]), so that a thousand
//!   users who logged in the same second do not refresh in the same second either.
//! - How often: once per token. A new token (from this task, a request, another process or
//!   a new login) reschedules the task; it never refreshes a token that is not the current
//!   one, and it goes through the manager's single-flight refresh, so it never adds a
//!   refresh to one already running.
//! - Failures: a transient failure ([`Error::is_transient`]) is retried after a jittered
//!   exponential backoff; other failures (a store error, an ID token failing its checks)
//!   after the longest backoff. [`Freshness::Retrying`] reports them.
//! - The end: when the grant is gone ([`Error::needs_login`]) the task reports
//!   [`Freshness::LoginNeeded`] and ends. Dropping the [`KeepFresh`] handle ends it too.

use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use futures_util::future::Either;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::manager::{RetryPolicy, Token, TokenManager};

/// Options of [`TokenManager::keep_fresh`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct KeepFreshOptions {
    /// The share of the refresh margin over which refreshes are spread (0 to 1, default
    /// 0.5): the refresh happens at `refresh_at + spread × h(key) × margin`, where `h(key)` in
    /// [0, 1) is a hash of the identity key. The rest of the margin is left for retries.
    pub spread: f64,
    /// The backoff after a failed refresh (`base` doubled each time up to `max`, jittered;
    /// default 1 s to 60 s). `attempts` is not used: the task retries until the grant is
    /// gone or the handle is dropped.
    pub backoff: RetryPolicy,
}

impl Default for KeepFreshOptions {
    fn default() -> Self {
        Self {
            spread: 0.5,
            backoff: RetryPolicy::new(u32::MAX, Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

impl KeepFreshOptions {
    /// Sets the spread (clamped to 0..=1).
    #[must_use]
    pub fn spread(mut self, spread: f64) -> Self {
        self.spread = spread.clamp(0.0, 1.0);
        self
    }

    /// Sets the backoff.
    #[must_use]
    pub fn backoff(mut self, backoff: RetryPolicy) -> Self {
        self.backoff = backoff;
        self
    }
}

/// What the background task of [`TokenManager::keep_fresh`] knows of the token.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// The current token is good; the next refresh is planned.
    Fresh {
        /// When the access token expires (`None`: the provider did not say).
        expires_at: Option<SystemTime>,
        /// When the background refresh is planned (`None`: never, the token does not
        /// expire).
        refresh_at: Option<SystemTime>,
    },
    /// The last refresh failed; another attempt is planned. The old token is still served
    /// while it has not expired.
    Retrying {
        /// Failed attempts since the last new token (1 after the first failure).
        attempt: u32,
        /// When the next attempt is planned.
        next_at: SystemTime,
        /// The last error's message (never a token value).
        error: String,
    },
    /// The grant is gone: the user must log in again. The task has ended.
    LoginNeeded,
}

/// The handle of a background refresh task ([`TokenManager::keep_fresh`]). Dropping it stops
/// the task (a refresh already sent finishes in the manager, so the new tokens are stored).
pub struct KeepFresh {
    rx: watch::Receiver<Freshness>,
    task: tokio::task::AbortHandle,
}

impl fmt::Debug for KeepFresh {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeepFresh")
            .field("status", &*self.rx.borrow())
            .field("running", &!self.task.is_finished())
            .finish()
    }
}

impl Drop for KeepFresh {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KeepFresh {
    /// The latest status.
    pub fn status(&self) -> Freshness {
        self.rx.borrow().clone()
    }

    /// Learns of each new status.
    pub fn watch(&self) -> watch::Receiver<Freshness> {
        self.rx.clone()
    }

    /// Whether the task has ended (the grant is gone).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

impl TokenManager {
    /// Starts a task that keeps this identity's token fresh in the background (see the
    /// [module documentation](crate::fresh)); it runs until the grant is gone or the returned
    /// handle is dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn keep_fresh(&self, options: KeepFreshOptions) -> KeepFresh {
        self.keep_fresh_then(options, || {})
    }

    /// [`TokenManager::keep_fresh`], calling `login_needed` when the task ends because the
    /// grant is gone.
    pub(crate) fn keep_fresh_then(
        &self,
        options: KeepFreshOptions,
        login_needed: impl FnOnce() + Send + 'static,
    ) -> KeepFresh {
        let (tx, rx) = watch::channel(initial(self.current().as_ref(), self.key(), &options));
        let manager = self.clone();
        let task = tokio::spawn(async move {
            run(&manager, options, &tx).await;
            login_needed();
        });
        KeepFresh {
            rx,
            task: task.abort_handle(),
        }
    }
}

/// What the background task needs of a manager (a seam for tests with a virtual clock).
pub(crate) trait Source: Send + Sync {
    fn key(&self) -> &str;
    fn subscribe(&self) -> watch::Receiver<Option<Token>>;
    /// Refreshes `current` unless a newer token exists; errors even while `current` is valid.
    fn refresh(&self, current: &Token) -> impl Future<Output = Result<Token>> + Send;
}

impl Source for TokenManager {
    fn key(&self) -> &str {
        TokenManager::key(self)
    }

    fn subscribe(&self) -> watch::Receiver<Option<Token>> {
        TokenManager::subscribe(self)
    }

    fn refresh(&self, current: &Token) -> impl Future<Output = Result<Token>> + Send {
        self.refresh_now(current)
    }
}

/// A number in [0, 1) that depends on `key` only (FNV-1a, stable across processes and
/// releases).
pub(crate) fn key_fraction(key: &str) -> f64 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // The top 53 bits, as many as an f64 holds exactly.
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

/// When the background refresh of `token` is due (pure): inside its refresh margin, at the
/// key's share of `spread`. `None` if the token does not expire.
pub(crate) fn planned_refresh(token: &Token, key: &str, spread: f64) -> Option<SystemTime> {
    let refresh_at = token.refresh_at()?;
    let expires_at = token.expires_at()?;
    let margin = expires_at.duration_since(refresh_at).unwrap_or_default();
    let offset = margin.mul_f64(spread.clamp(0.0, 1.0) * key_fraction(key));
    Some(refresh_at + offset)
}

fn initial(current: Option<&Token>, key: &str, options: &KeepFreshOptions) -> Freshness {
    match current {
        Some(t) => Freshness::Fresh {
            expires_at: t.expires_at(),
            refresh_at: planned_refresh(t, key, options.spread),
        },
        None => Freshness::LoginNeeded,
    }
}

/// The background task; returns when the grant is gone (after reporting it).
pub(crate) async fn run<S: Source>(
    source: &S,
    options: KeepFreshOptions,
    tx: &watch::Sender<Freshness>,
) {
    let key = source.key();
    let mut tokens = source.subscribe();
    let mut generation = 0;
    let mut attempt = 0u32;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let Some(token) = tokens.borrow_and_update().clone() else {
            return login_needed(key, tx);
        };
        if token.generation() != generation {
            generation = token.generation();
            attempt = 0;
            retry_at = None;
        }
        let due = match retry_at {
            Some(at) => at,
            None => {
                let planned = planned_refresh(&token, key, options.spread);
                tx.send_replace(Freshness::Fresh {
                    expires_at: token.expires_at(),
                    refresh_at: planned,
                });
                let Some(planned) = planned else {
                    // Never expires: nothing to do until another token comes.
                    if tokens.changed().await.is_err() {
                        return;
                    }
                    continue;
                };
                let wait = planned
                    .duration_since(SystemTime::now())
                    .unwrap_or_default();
                tokio::time::Instant::now() + wait
            }
        };
        // Wait until due, or until another token comes (then plan again).
        let woken = {
            let due = std::pin::pin!(tokio::time::sleep_until(due));
            let changed = std::pin::pin!(tokens.changed());
            match futures_util::future::select(due, changed).await {
                Either::Left(_) => None,
                Either::Right((changed, _)) => Some(changed.is_ok()),
            }
        };
        match woken {
            None => {}
            Some(true) => continue,
            Some(false) => return,
        }
        match source.refresh(&token).await {
            Ok(new) if new.generation() != token.generation() => {
                tracing::debug!(
                    key,
                    generation = new.generation(),
                    "refreshed in the background"
                );
            }
            Ok(_) => {
                // No new token (a stored one that is the same): wait for one rather than
                // refresh the same token again.
                retry_at = None;
                if tokens.changed().await.is_err() {
                    return;
                }
            }
            Err(e) if e.needs_login() => return login_needed(key, tx),
            Err(e) => {
                let wait = backoff(&options.backoff, attempt, &e);
                attempt = attempt.saturating_add(1);
                retry_at = Some(tokio::time::Instant::now() + wait);
                tracing::info!(key, error = %e, attempt, ?wait, "background refresh failed; retrying");
                tx.send_replace(Freshness::Retrying {
                    attempt,
                    next_at: SystemTime::now() + wait,
                    error: e.to_string(),
                });
            }
        }
    }
}

fn login_needed(key: &str, tx: &watch::Sender<Freshness>) {
    tracing::warn!(key, "the grant is gone; background refresh stops");
    tx.send_replace(Freshness::LoginNeeded);
}

/// The wait after failed attempt `n` (0-based): backoff for transient errors, the longest
/// backoff for others (retrying at once will not help).
fn backoff(policy: &RetryPolicy, n: u32, e: &Error) -> Duration {
    if e.is_transient() {
        policy.backoff(n)
    } else {
        policy.backoff(u32::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::error::Endpoint;
    use crate::token::TokenSet;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A token received now, living `lifetime`, refreshed in its last 10 %.
    fn token(generation: u64, lifetime: Duration) -> Token {
        let now = SystemTime::now();
        let set = TokenSet::new(format!("a{generation}").into(), now, Some(lifetime));
        Token::for_tests(set, Some(now + lifetime.mul_f64(0.9)), generation)
    }

    /// A scripted manager: each refresh takes the next outcome (`Ok` makes a new token).
    struct Fake {
        key: String,
        tx: watch::Sender<Option<Token>>,
        script: Mutex<VecDeque<std::result::Result<(), Error>>>,
        refreshes: AtomicU32,
        /// The generation of each refreshed token.
        seen: Mutex<Vec<u64>>,
        lifetime: Duration,
    }

    impl Fake {
        fn new(key: &str, lifetime: Duration) -> Self {
            Self {
                key: key.into(),
                tx: watch::Sender::new(Some(token(1, lifetime))),
                script: Mutex::new(VecDeque::new()),
                refreshes: AtomicU32::new(0),
                seen: Mutex::new(Vec::new()),
                lifetime,
            }
        }
    }

    impl Source for Fake {
        fn key(&self) -> &str {
            &self.key
        }
        fn subscribe(&self) -> watch::Receiver<Option<Token>> {
            self.tx.subscribe()
        }
        async fn refresh(&self, current: &Token) -> Result<Token> {
            self.refreshes.fetch_add(1, Ordering::SeqCst);
            self.seen.lock().expect("seen").push(current.generation());
            let outcome = self.script.lock().expect("script").pop_front();
            match outcome.unwrap_or(Ok(())) {
                Ok(()) => {
                    let new = token(current.generation() + 1, self.lifetime);
                    self.tx.send_replace(Some(new.clone()));
                    Ok(new)
                }
                Err(e) => {
                    if e.needs_login() {
                        self.tx.send_replace(None);
                    }
                    Err(e)
                }
            }
        }
    }

    fn unavailable() -> Error {
        Error::Http {
            endpoint: Endpoint::Token,
            status: 503,
        }
    }

    fn spawn(
        fake: &std::sync::Arc<Fake>,
    ) -> (watch::Receiver<Freshness>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(Freshness::LoginNeeded);
        let fake = std::sync::Arc::clone(fake);
        let options = KeepFreshOptions::default().backoff(RetryPolicy::new(
            1,
            Duration::from_secs(1),
            Duration::from_secs(8),
        ));
        let task = tokio::spawn(async move { run(&*fake, options, &tx).await });
        (rx, task)
    }

    #[allow(dead_code)]
    fn the_task_is_send(m: &TokenManager, tx: &watch::Sender<Freshness>) {
        fn assert_send<T: Send>(_: T) {}
        assert_send(run(m, KeepFreshOptions::default(), tx));
        assert_send(m.refresh_now(&token(1, HOUR)));
    }

    #[test]
    fn refreshes_are_spread_inside_the_margin_by_key() {
        let t = token(1, HOUR);
        let refresh_at = t.refresh_at().expect("refresh_at");
        let expires_at = t.expires_at().expect("expires_at");
        let mut seconds = std::collections::BTreeSet::new();
        for i in 0..1000 {
            let key = format!("{i:064x}@egi.eu");
            let at = planned_refresh(&t, &key, 0.5).expect("planned");
            assert!(at >= refresh_at && at < expires_at, "{key}");
            // At most half the margin (6 min of 1 h): the rest is for retries.
            assert!(at.duration_since(refresh_at).expect("after") < Duration::from_secs(180));
            assert_eq!(planned_refresh(&t, &key, 0.5), Some(at), "deterministic");
            seconds.insert(at.duration_since(refresh_at).expect("after").as_secs());
        }
        // 1,000 users who logged in the same second refresh over ~180 distinct seconds.
        assert!(seconds.len() > 150, "{}", seconds.len());
        assert_eq!(planned_refresh(&t, "alice", 0.0), Some(refresh_at));
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_once_per_token_before_it_expires() {
        let fake = std::sync::Arc::new(Fake::new("alice", HOUR));
        let (rx, task) = spawn(&fake);
        tokio::time::sleep(Duration::from_secs(3000)).await;
        assert_eq!(
            fake.refreshes.load(Ordering::SeqCst),
            0,
            "not before the margin"
        );
        assert!(matches!(
            *rx.borrow(),
            Freshness::Fresh {
                refresh_at: Some(_),
                ..
            }
        ));
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(
            fake.refreshes.load(Ordering::SeqCst),
            1,
            "within the margin"
        );
        // Ten more token lifetimes: one refresh each, never more.
        tokio::time::sleep(HOUR * 10).await;
        let n = fake.refreshes.load(Ordering::SeqCst);
        assert!((11..=12).contains(&n), "every 0.9 to 0.95 h: {n}");
        let seen = fake.seen.lock().expect("seen").clone();
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "one refresh per token: {seen:?}"
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_back_off_then_recover() {
        let fake = std::sync::Arc::new(Fake::new("alice", HOUR));
        fake.script.lock().expect("script").extend([
            Err(unavailable()),
            Err(unavailable()),
            Err(unavailable()),
            Ok(()),
        ]);
        let (mut rx, task) = spawn(&fake);
        let mut attempts = Vec::new();
        while attempts.len() < 3 {
            rx.changed().await.expect("status");
            if let Freshness::Retrying { attempt, error, .. } = &*rx.borrow() {
                assert!(error.contains("HTTP 503"), "{error}");
                attempts.push(*attempt);
            }
        }
        assert_eq!(attempts, [1, 2, 3]);
        // Backoff 1, 2, 4 s (jittered to at least half): well inside the 6-minute margin.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(fake.refreshes.load(Ordering::SeqCst), 4);
        assert!(
            matches!(*rx.borrow(), Freshness::Fresh { .. }),
            "{:?}",
            *rx.borrow()
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn stops_when_the_grant_is_gone() {
        let fake = std::sync::Arc::new(Fake::new("alice", HOUR));
        fake.script.lock().expect("script").extend([
            Err(unavailable()),
            Err(Error::LoginRequired {
                reason: "grant request is invalid".into(),
            }),
        ]);
        let (rx, task) = spawn(&fake);
        task.await.expect("the task ends by itself");
        assert_eq!(*rx.borrow(), Freshness::LoginNeeded);
        assert_eq!(fake.refreshes.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_from_elsewhere_reschedules() {
        let fake = std::sync::Arc::new(Fake::new("alice", HOUR));
        let (_rx, task) = spawn(&fake);
        // A request refreshed 50 minutes in: the background refresh moves an hour later.
        tokio::time::sleep(Duration::from_secs(3000)).await;
        fake.tx.send_replace(Some(token(2, HOUR)));
        tokio::time::sleep(Duration::from_secs(3000)).await;
        assert_eq!(fake.refreshes.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(fake.refreshes.load(Ordering::SeqCst), 1);
        task.abort();
    }

    #[tokio::test]
    async fn dropping_the_handle_stops_the_task() {
        let p = crate::test_provider::TestProvider::start().await;
        let client = p.client(Duration::from_secs(5)).await;
        let set = TokenSet::new("a0".into(), SystemTime::now(), Some(HOUR));
        let m = TokenManager::new(
            client,
            std::sync::Arc::new(crate::store::MemoryStore::new()),
            "alice",
            set,
            crate::ManagerOptions::default(),
        )
        .await
        .expect("manager");
        let before = m.handles();
        let fresh = m.keep_fresh(KeepFreshOptions::default());
        assert!(matches!(
            fresh.status(),
            Freshness::Fresh {
                refresh_at: Some(_),
                ..
            }
        ));
        tokio::task::yield_now().await;
        assert_eq!(m.handles(), before + 1, "the task holds the manager");
        drop(fresh);
        for _ in 0..100 {
            if m.handles() == before {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            m.handles(),
            before,
            "the task ended and let go of the manager"
        );
    }
}
