//! egi-checkin against providers that differ from oidc-provider's defaults in ways other
//! providers do (the harness provider's [`Quirks`]): client authentication chosen from
//! discovery and Basic credentials any provider reads, no `scope` in token answers, a slow
//! token endpoint under rotation, introspection answers without the EGI claims.

use std::sync::Arc;
use std::time::Duration;

use egi_checkin::{CheckinClient, HttpOptions, MemoryStore, TokenManager, TokenType};
use egi_test_harness::oidc::{
    self, ClientAuthMethod, OidcProvider, Options, Quirks, REFRESH_GRANT,
};

use crate::checkin_support::{client, device_login, http, options, wait_expired};

fn quirky(rotate: bool, access_ttl_secs: u64, quirks: Quirks) -> OidcProvider {
    OidcProvider::start_with_quirks(
        Options {
            rotate,
            access_ttl: Duration::from_secs(access_ttl_secs),
        },
        quirks,
    )
    .expect("oidc-provider starts (run .ci/install-peers)")
}

/// The client whose secret has `+`, `/` and `=`, with no authentication method set.
async fn b64_client(p: &OidcProvider) -> CheckinClient {
    CheckinClient::builder(oidc::B64_CLIENT_ID)
        .secret(oidc::B64_CLIENT_SECRET.into())
        .http(http(Duration::from_secs(5)))
        .discover(&p.issuer())
        .await
        .expect("discovery")
}

#[tokio::test(flavor = "multi_thread")]
async fn client_authentication_works_with_providers_configured_each_way() {
    use egi_checkin::AuthMethod::{ClientSecretBasic as Basic, ClientSecretPost as Post};
    // Discovery advertises one or both methods; Basic credentials decoded or not. The
    // secret has `+`, `/` and `=`: Basic reads it differently at the two kinds of provider,
    // so the form body is chosen where allowed, and Basic learns the provider's reading.
    let cases = [
        (
            "basic only, decoded (RFC 6749)",
            Some(ClientAuthMethod::Basic),
            false,
            Basic,
        ),
        (
            "basic only, not decoded",
            Some(ClientAuthMethod::Basic),
            true,
            Basic,
        ),
        ("post only", Some(ClientAuthMethod::Post), false, Post),
        ("both, basic not decoded", None, true, Post),
        ("both, basic decoded", None, false, Post),
    ];
    for (case, client_auth, raw, method) in cases {
        let p = quirky(
            false,
            60,
            Quirks {
                client_auth,
                raw_basic_credentials: raw,
                ..Quirks::default()
            },
        );
        let c = b64_client(&p).await;
        assert_eq!(c.auth_method(), Some(method), "{case}");
        let tokens = c
            .client_credentials(&[])
            .await
            .unwrap_or_else(|e| panic!("{case}: client credentials: {e}"));
        let seen = c
            .introspect(tokens.access_token(), Some(TokenType::AccessToken))
            .await
            .unwrap_or_else(|e| panic!("{case}: introspection: {e}"));
        assert!(seen.active, "{case}");
        // The device flow authenticates at another endpoint, then refreshes.
        let device = c
            .start_device_login()
            .await
            .unwrap_or_else(|e| panic!("{case}: device authorization: {e}"));
        p.approve_device(&device.user_code, "olga")
            .expect("approve");
        let login = c
            .finish_device_login(&device, |_| std::future::ready(()))
            .await
            .unwrap_or_else(|e| panic!("{case}: device login: {e}"));
        c.refresh(&login.tokens)
            .await
            .unwrap_or_else(|e| panic!("{case}: refresh: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_keeps_the_granted_scope_when_answers_have_none() {
    let p = quirky(
        false,
        60,
        Quirks {
            no_scope_in_token_answers: true,
            ..Quirks::default()
        },
    );
    // A login with fewer scopes than the client asks for by default.
    let narrow = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.into())
        .scopes(["openid", "offline_access"])
        .discover(&p.issuer())
        .await
        .expect("discovery");
    let login = device_login(&p, &narrow, "pia").await;
    assert_eq!(login.tokens.scope(), None, "the quirk removes scope");
    // Another instance with the default scopes refreshes it (a restarted gateway).
    let c = client(&p).await;
    let refreshed = c
        .refresh(&login.tokens)
        .await
        .expect("refresh without asking for more than was granted");
    let seen = c
        .introspect(refreshed.access_token(), None)
        .await
        .expect("introspect");
    assert_eq!(seen.scope.as_deref(), Some("openid offline_access"));
    // Narrowing on purpose still works.
    let openid_only = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.into())
        .refresh_scopes(["openid"])
        .discover(&p.issuer())
        .await
        .expect("discovery");
    let narrowed = openid_only.refresh(&refreshed).await.expect("narrowed");
    let seen = c
        .introspect(narrowed.access_token(), None)
        .await
        .expect("introspect");
    assert_eq!(seen.scope.as_deref(), Some("openid"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_rotating_provider_does_not_end_the_session() {
    let delay = Duration::from_secs(4);
    // Access tokens outlive the delay, so that a refreshed token is still valid on arrival.
    let p = quirky(
        true,
        8,
        Quirks {
            token_delay: delay,
            ..Quirks::default()
        },
    );
    // A client whose general timeout (3 s) is shorter than the provider's answers; the
    // token endpoint's is left at its default.
    let mut short = http(Duration::from_secs(3));
    short.token_timeout = HttpOptions::default().token_timeout;
    let c = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.into())
        .http(short)
        .discover(&p.issuer())
        .await
        .expect("discovery");
    // The login by a client that waits long enough (the device grant is slow too).
    let patient = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.into())
        .http(http(Duration::from_secs(10)))
        .discover(&p.issuer())
        .await
        .expect("discovery");
    let login = device_login(&p, &patient, "quinn").await;
    let m = TokenManager::new(
        c.clone(),
        Arc::new(MemoryStore::new()),
        "quinn",
        login.tokens,
        options(),
    )
    .await
    .expect("manager");
    wait_expired(&m).await;
    // The caller gives up after 1 s: the refresh goes on without it.
    let impatient = tokio::time::timeout(Duration::from_secs(1), m.access_token()).await;
    assert!(impatient.is_err(), "the provider takes {delay:?}");
    let token = m
        .access_token()
        .await
        .expect("the refresh in flight ends well");
    assert_eq!(token.generation(), 2);
    assert_eq!(p.token_requests(REFRESH_GRANT).expect("counters"), 1);
    // The rotated refresh token was kept: the grant lives on.
    wait_expired(&m).await;
    let next = m.access_token().await.expect("second refresh");
    assert_eq!(next.generation(), 3);
    assert!(
        c.introspect(next.access_token(), None)
            .await
            .expect("introspect")
            .active
    );
    assert_eq!(p.token_requests(REFRESH_GRANT).expect("counters"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn introspection_says_what_it_lacks() {
    let p = quirky(false, 60, Quirks::default());
    let c = client(&p).await;
    let login = device_login(&p, &c, "rosa").await;
    let own = c
        .introspect(login.tokens.access_token(), None)
        .await
        .expect("introspect");
    assert!(own.active);
    assert_eq!(own.missing_claims(), Vec::<&str>::new());
    assert!(own.user_info().expect("claims").voperson_id.is_some());
    // An inactive answer has no claims, and says so.
    c.revoke(login.tokens.access_token(), Some(TokenType::AccessToken))
        .await
        .expect("revoke");
    let seen = c
        .introspect(login.tokens.access_token(), None)
        .await
        .expect("introspect");
    assert!(!seen.active);
    assert!(seen.user_info().is_none());
    assert!(seen.missing_claims().contains(&"sub"), "{seen:?}");
}
