//! egi-checkin's gateway pieces against a real provider: a login sealed into a cookie and
//! completed by another client instance, the token registry under concurrency, background
//! freshness.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use egi_checkin::{
    Error, ExposeSecret, Freshness, KeepFreshOptions, MemoryStore, PendingLogin, RegistryOptions,
    SealError, SealKey, TokenRegistry, TokenType,
};
use egi_test_harness::oidc::{OidcProvider, REFRESH_GRANT};
use url::Url;

use crate::checkin_support::{client, device_login, options, provider};

fn registry(c: &egi_checkin::CheckinClient, options: RegistryOptions) -> TokenRegistry {
    TokenRegistry::new(c.clone(), Arc::new(MemoryStore::new()), options)
}

fn refreshes(p: &OidcProvider) -> u64 {
    p.token_requests(REFRESH_GRANT).expect("counters")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_login_is_completed_by_another_client_instance() {
    let p = provider(false, 60);
    let key = SealKey::generate();
    // Replica 1 starts the login and puts the pending login in a cookie.
    let (url, cookie) = {
        let first = client(&p).await;
        let (url, pending) = first
            .login()
            .param("login_hint", "alice")
            .build()
            .expect("authorization URL");
        (url, pending.seal(&key, Duration::from_secs(600)))
    };
    let callback =
        Url::parse(&p.browser_login(url.as_str()).expect("browser")).expect("callback URL");
    // Replica 2: another client instance, the key read from configuration.
    let second = client(&p).await;
    let key2 = SealKey::from_base64(key.to_base64().expose_secret()).expect("key");
    let tampered = format!("{}A", &cookie[..cookie.len() - 1]);
    let tampered = if tampered == cookie {
        format!("{}B", &cookie[..cookie.len() - 1])
    } else {
        tampered
    };
    assert!(matches!(
        PendingLogin::unseal(&key2, &tampered),
        Err(Error::Seal(SealError::Tampered | SealError::Malformed))
    ));
    let pending = PendingLogin::unseal(&key2, &cookie).expect("unseal");
    let login = second
        .complete_login(pending, &callback)
        .await
        .expect("code exchange by the second instance");
    assert!(login.id_token.subject.ends_with("@egi.eu"));
    assert!(login.tokens.refresh_token().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_gets_refresh_each_user_once() {
    let p = provider(true, 2);
    let c = client(&p).await;
    // Fewer managers in memory than users: eviction races with the refreshes.
    let r = registry(
        &c,
        RegistryOptions::default()
            .max_users(2)
            .manager(options())
            .keep_fresh(None),
    );
    let users = ["u1", "u2", "u3"];
    for user in users {
        let login = device_login(&p, &c, user).await;
        drop(r.login(user, login.tokens).await.expect("login"));
    }
    // Wait until every access token has expired.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let before = refreshes(&p);
    let start = Arc::new(tokio::sync::Barrier::new(users.len() * 30));
    let tasks: Vec<_> = users
        .iter()
        .flat_map(|user| std::iter::repeat_n(*user, 30))
        .map(|user| {
            let (r, start) = (r.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                start.wait().await;
                let m = r.get(user).await.expect("get").expect("stored");
                let t = m.access_token().await.expect("token");
                (user, t.access_token().expose_secret().to_owned())
            })
        })
        .collect();
    let mut tokens = HashSet::new();
    for t in tasks {
        tokens.insert(t.await.expect("task"));
    }
    assert_eq!(tokens.len(), users.len(), "one new token per user, shared");
    assert_eq!(
        refreshes(&p) - before,
        users.len() as u64,
        "one refresh per user at the provider"
    );
    // With rotation, a second refresh with a used refresh token would have killed the grant.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for user in users {
        let m = r.get(user).await.expect("get").expect("stored");
        m.access_token().await.expect("the grant is alive");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_fresh_refreshes_before_expiry_without_requests() {
    let p = provider(true, 4);
    let c = client(&p).await;
    let r = registry(
        &c,
        RegistryOptions::default()
            .manager(options())
            .keep_fresh(Some(KeepFreshOptions::default())),
    );
    let login = device_login(&p, &c, "kate").await;
    let m = r.login("kate", login.tokens).await.expect("login");
    let before = refreshes(&p);
    // 7 s of 3-second tokens (4 s minus the rounding second), refreshed 0.75 s before
    // expiry at most: about two refreshes, and the current token never expires.
    let mut generations = HashSet::new();
    for _ in 0..70 {
        let t = m.current().expect("a token");
        assert!(
            !t.tokens().is_expired_at(SystemTime::now()),
            "the background refresh came too late"
        );
        generations.insert(t.generation());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let n = refreshes(&p) - before;
    assert!(
        (2..=3).contains(&n),
        "{n} refreshes in 7 s of 3-second tokens"
    );
    assert_eq!(generations.len() as u64, n + 1);
    assert!(matches!(r.freshness("kate"), Some(Freshness::Fresh { .. })));
}

#[tokio::test(flavor = "multi_thread")]
async fn keep_fresh_reports_a_revoked_grant_and_the_registry_drops_it() {
    let p = provider(false, 2);
    let c = client(&p).await;
    let r = registry(&c, RegistryOptions::default().manager(options()));
    let login = device_login(&p, &c, "liam").await;
    let refresh_token = login.tokens.refresh_token().expect("refresh token").clone();
    let m = r.login("liam", login.tokens).await.expect("login");
    c.revoke(&refresh_token, Some(TokenType::RefreshToken))
        .await
        .expect("revoke");
    let mut waited = Duration::ZERO;
    while r.freshness("liam").is_some() && waited < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        waited += Duration::from_millis(50);
    }
    assert!(r.is_empty(), "dropped after {waited:?}");
    assert!(m.access_token().await.expect_err("gone").needs_login());
}
