//! egi-checkin under concurrency against a real provider: single-flight refresh, and a
//! minute of 100 users of one identity with rotating refresh tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use egi_test_harness::oidc::REFRESH_GRANT;

use crate::checkin_support::{client, manager, provider, wait_expired};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_tasks_at_expiry_cause_one_refresh() {
    let p = provider(true, 2);
    let c = client(&p).await;
    let m = manager(&p, &c, "jack").await;
    wait_expired(&m).await;
    let start = Arc::new(tokio::sync::Barrier::new(1000));
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (m, start) = (m.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                m.access_token().await.map(|t| t.generation())
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(
            t.await.expect("task").expect("token"),
            2,
            "every task shares the one new token"
        );
    }
    assert_eq!(
        p.token_requests(REFRESH_GRANT).expect("counters"),
        1,
        "one refresh at the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minute_of_100_users_with_rotation_keeps_the_grant_alive() {
    let p = provider(true, 2);
    let c = client(&p).await;
    let m = manager(&p, &c, "kate").await;
    let run = Duration::from_secs(60);
    let started = Instant::now();
    let (reads, checks) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let users: Vec<_> = (0..100)
        .map(|user| {
            let (m, c, reads, checks) = (
                m.clone(),
                c.clone(),
                Arc::clone(&reads),
                Arc::clone(&checks),
            );
            tokio::spawn(async move {
                let mut i = 0u64;
                while started.elapsed() < run {
                    let token = m
                        .access_token()
                        .await
                        .unwrap_or_else(|e| panic!("user {user}: {e}"));
                    reads.fetch_add(1, Ordering::Relaxed);
                    // Every ~2 s per user, the provider itself checks the token handed out.
                    if (i + user).is_multiple_of(20) {
                        let info = c
                            .user_info(token.access_token(), None)
                            .await
                            .unwrap_or_else(|e| panic!("user {user}: token refused: {e}"));
                        assert_eq!(info.preferred_username.as_deref(), Some("kate"));
                        checks.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
        .collect();
    for u in users {
        u.await.expect("user task");
    }
    let refreshes = p.token_requests(REFRESH_GRANT).expect("counters");
    // 2 s tokens (1 s after rounding) refreshed 0.5 s early: about two refreshes a second,
    // one at a time.
    assert!(
        (40..=200).contains(&refreshes),
        "{refreshes} refreshes in 60 s"
    );
    assert!(
        checks.load(Ordering::Relaxed) >= 1000,
        "the provider checked tokens throughout"
    );
    assert!(reads.load(Ordering::Relaxed) >= 10_000);
    // The grant is alive: one more refresh works and its token is active.
    wait_expired(&m).await;
    let last = m.access_token().await.expect("grant alive");
    assert!(
        c.introspect(last.access_token(), None)
            .await
            .expect("introspect")
            .active
    );
}
