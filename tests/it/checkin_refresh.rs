//! egi-checkin refresh against a real provider: with and without rotation, expiry,
//! revoked grants, persistence across managers and processes' stores.

use std::sync::Arc;
use std::time::Duration;

use egi_checkin::{EncryptedFileStore, Error, ExposeSecret, FileStoreKey, TokenManager, TokenType};
use egi_test_harness::oidc::REFRESH_GRANT;

use crate::checkin_support::{client, device_login, manager, options, provider, wait_expired};

#[tokio::test(flavor = "multi_thread")]
async fn refresh_without_rotation_keeps_the_refresh_token() {
    let p = provider(false, 60);
    let c = client(&p).await;
    let login = device_login(&p, &c, "erin").await;
    let old_rt = login
        .tokens
        .refresh_token()
        .expect("rt")
        .expose_secret()
        .to_owned();
    let first = c.refresh(&login.tokens).await.expect("refresh");
    assert_ne!(
        first.access_token().expose_secret(),
        login.tokens.access_token().expose_secret()
    );
    assert_eq!(first.refresh_token().expect("kept").expose_secret(), old_rt);
    assert_eq!(
        first.subject(),
        Some(login.id_token.subject.as_str()),
        "sub unchanged"
    );
    // Without rotation the old refresh token still works.
    c.refresh(&login.tokens)
        .await
        .expect("second refresh with the same token");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_replaces_the_refresh_token_and_a_replay_kills_the_grant() {
    let p = provider(true, 60);
    let c = client(&p).await;
    let login = device_login(&p, &c, "frank").await;
    let rotated = c.refresh(&login.tokens).await.expect("refresh");
    let old = login.tokens.refresh_token().expect("rt").expose_secret();
    assert_ne!(
        rotated.refresh_token().expect("rotated").expose_secret(),
        old
    );
    // What others got wrong: replaying the old token is invalid_grant AND revokes the grant.
    let replay = c
        .refresh(&login.tokens)
        .await
        .expect_err("replayed refresh token");
    assert!(replay.needs_login(), "{replay}");
    let after = c.refresh(&rotated).await.expect_err("the grant is revoked");
    assert!(after.needs_login(), "{after}");
}

#[tokio::test(flavor = "multi_thread")]
async fn manager_refreshes_at_expiry_and_tells_subscribers() {
    let p = provider(true, 2);
    let c = client(&p).await;
    let m = manager(&p, &c, "gina").await;
    let mut updates = m.subscribe();
    let first = m.access_token().await.expect("token");
    assert_eq!(first.generation(), 1);
    assert!(m.cached().is_some());
    wait_expired(&m).await;
    assert!(m.cached().is_none(), "an expired token is never cached");
    // The provider checks expiry with no clock tolerance (our expiry is up to 1 s early:
    // expires_in is rounded to whole seconds).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(
        !c.introspect(first.access_token(), None)
            .await
            .expect("introspect")
            .active
    );
    let second = m.access_token().await.expect("refreshed");
    assert_eq!(second.generation(), 2);
    assert!(
        c.introspect(second.access_token(), None)
            .await
            .expect("introspect")
            .active
    );
    updates.changed().await.expect("subscribed");
    assert_eq!(
        updates.borrow_and_update().as_ref().map(|t| t.generation()),
        Some(2)
    );
    assert_eq!(p.token_requests(REFRESH_GRANT).expect("counters"), 1);
    // A 401 from an API: many callers reporting the same token cause one refresh.
    let forced = futures_util::future::join_all((0..20).map(|_| m.force_refresh(&second))).await;
    assert!(
        forced
            .iter()
            .all(|t| t.as_ref().map(|t| t.generation()).ok() == Some(3))
    );
    assert_eq!(p.token_requests(REFRESH_GRANT).expect("counters"), 2);
    assert!(!format!("{m:?}{second:?}").contains(second.access_token().expose_secret()));
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_grant_asks_to_log_in_again_without_retrying() {
    let p = provider(false, 2);
    let c = client(&p).await;
    let m = manager(&p, &c, "hank").await;
    let mut updates = m.subscribe();
    let token = m.access_token().await.expect("token");
    c.revoke(
        token.tokens().refresh_token().expect("rt"),
        Some(TokenType::RefreshToken),
    )
    .await
    .expect("revoke");
    wait_expired(&m).await;
    let e = m.access_token().await.expect_err("grant revoked");
    assert!(matches!(e, Error::LoginRequired { .. }), "{e}");
    let before = p.token_requests(REFRESH_GRANT).expect("counters");
    let again = m.access_token().await.expect_err("still gone");
    assert!(again.needs_login());
    assert_eq!(
        p.token_requests(REFRESH_GRANT).expect("counters"),
        before,
        "never retried"
    );
    updates.changed().await.expect("subscribed");
    assert!(
        updates.borrow().is_none(),
        "subscribers learn the grant is gone"
    );
    // A new login revives the manager.
    let login = device_login(&p, &c, "hank").await;
    m.replace(login.tokens).await.expect("replace");
    assert!(m.access_token().await.is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn encrypted_file_store_is_shared_by_managers_of_two_processes() {
    let p = provider(true, 2);
    let c = client(&p).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = FileStoreKey::load_or_create(&dir.path().join("key")).expect("key");
    // Two stores on one directory stand for two processes: separate file locks.
    let store_a =
        Arc::new(EncryptedFileStore::new(dir.path().join("tokens"), &key).expect("store"));
    let store_b =
        Arc::new(EncryptedFileStore::new(dir.path().join("tokens"), &key).expect("store"));
    let login = device_login(&p, &c, "iris").await;
    let a = TokenManager::new(c.clone(), store_a, "iris", login.tokens, options())
        .await
        .expect("manager a");
    let b = TokenManager::resume(c.clone(), store_b, "iris", options())
        .await
        .expect("manager b");
    let first = a.access_token().await.expect("token");
    assert_eq!(
        b.access_token()
            .await
            .expect("token")
            .access_token()
            .expose_secret(),
        first.access_token().expose_secret()
    );
    for round in 0..3 {
        wait_expired(&a).await;
        // Both want a new token at once: with rotation, two refreshes would revoke the grant.
        let (ta, tb) = tokio::join!(a.access_token(), b.access_token());
        let (ta, tb) = (ta.expect("a refreshed"), tb.expect("b refreshed"));
        assert_eq!(
            ta.access_token().expose_secret(),
            tb.access_token().expose_secret(),
            "round {round}"
        );
        assert_eq!(
            p.token_requests(REFRESH_GRANT).expect("counters"),
            round + 1,
            "one refresh per round"
        );
    }
    let last = a.access_token().await.expect("token");
    assert!(
        c.introspect(last.access_token(), None)
            .await
            .expect("introspect")
            .active,
        "grant alive"
    );
}
