//! egi-checkin against a real provider: login flows, userinfo, token exchange,
//! introspection, revocation.

use std::time::Duration;

use egi_checkin::{
    CheckinClient, Endpoint, Error, ExchangeRequest, ExposeSecret, TokenType, UsernameClaim,
    UsernamePolicy, VoPolicy,
};
use egi_test_harness::oidc;
use url::Url;

use crate::checkin_support::{client, device_login, http, provider};

#[tokio::test(flavor = "multi_thread")]
async fn discovery_reads_check_in_endpoints() {
    let p = provider(false, 2);
    let c = client(&p).await;
    let e = c.endpoints();
    assert_eq!(e.issuer.as_str(), p.issuer());
    assert!(
        e.token
            .path()
            .ends_with("/auth/realms/egi/protocol/openid-connect/token")
    );
    let device = e
        .device_authorization
        .as_ref()
        .expect("device endpoint from extra metadata");
    assert!(
        device
            .path()
            .ends_with("/protocol/openid-connect/auth/device")
    );
    let introspection = e.introspection.as_ref().expect("introspection endpoint");
    assert!(
        introspection
            .path()
            .ends_with("/protocol/openid-connect/token/introspect")
    );
    assert!(e.revocation.is_some());
    // Another issuer than the document's is refused.
    let wrong = CheckinClient::builder("x")
        .discover(&format!("{}/", p.issuer()))
        .await
        .expect_err("issuer mismatch");
    assert!(
        matches!(
            wrong,
            Error::Malformed {
                endpoint: Endpoint::Discovery,
                ..
            } | Error::Http { .. }
        ),
        "{wrong}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn code_flow_with_pkce_state_and_nonce() {
    let p = provider(false, 60);
    let c = client(&p).await;
    let (url, pending) = c
        .login()
        .param("login_hint", "alice")
        .build()
        .expect("authorization URL");
    let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let has = |k: &str| query.iter().any(|(key, _)| key == k);
    assert!(has("state") && has("nonce") && has("code_challenge"));
    assert!(query.contains(&("code_challenge_method".into(), "S256".into())));

    let callback =
        Url::parse(&p.browser_login(url.as_str()).expect("browser")).expect("callback URL");
    let login = c
        .complete_login(pending, &callback)
        .await
        .expect("code exchange");
    assert!(login.id_token.subject.ends_with("@egi.eu"));
    assert_eq!(
        login.tokens.subject(),
        Some(login.id_token.subject.as_str())
    );
    assert!(
        login.tokens.refresh_token().is_some(),
        "a refresh token without a consent prompt"
    );

    let user = c
        .user_info(login.tokens.access_token(), Some(&login.id_token.subject))
        .await
        .expect("userinfo");
    assert_eq!(user.preferred_username.as_deref(), Some("alice"));
    assert_eq!(
        user.voperson_id.as_deref(),
        Some(login.id_token.subject.as_str())
    );
    assert_eq!(
        user.vos("urn:mace:egi.eu", "aai.egi.eu"),
        ["vo.access.egi.eu", "vo.notebooks.egi.eu"],
        "both entitlement claims merged"
    );
    let membership = VoPolicy::allow(["vo.notebooks.egi.eu:admins", "vo.access.egi.eu"])
        .admit(&user)
        .expect("member");
    assert_eq!(
        membership.primary_group.as_deref(),
        Some("vo.notebooks.egi.eu:admins")
    );
    assert!(matches!(
        VoPolicy::allow(["vo.other.eu"]).admit(&user),
        Err(Error::NotAuthorized)
    ));
    let hub = UsernamePolicy::first_of([UsernameClaim::PreferredUsername]);
    assert_eq!(hub.username(&user).expect("username"), "alice");
    // Userinfo for another subject than the ID token's is refused.
    assert!(matches!(
        c.user_info(login.tokens.access_token(), Some("someone-else"))
            .await,
        Err(Error::UserInfoSubject)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn code_flow_rejects_a_wrong_verifier_and_a_forged_state() {
    let p = provider(false, 60);
    let c = client(&p).await;
    let (url, pending) = c
        .login()
        .param("login_hint", "bob")
        .build()
        .expect("authorization URL");
    let callback =
        Url::parse(&p.browser_login(url.as_str()).expect("browser")).expect("callback URL");
    let wrong = pending.with_verifier("x".repeat(64).into());
    let e = c
        .complete_login(wrong, &callback)
        .await
        .expect_err("wrong PKCE verifier");
    assert!(
        matches!(&e, Error::OAuth { code, .. } if code == "invalid_grant"),
        "{e}"
    );

    let (url, pending) = c
        .login()
        .param("login_hint", "bob")
        .build()
        .expect("authorization URL");
    let callback = p.browser_login(url.as_str()).expect("browser");
    let forged = Url::parse(&callback.replace("state=", "state=forged")).expect("URL");
    assert!(matches!(
        c.complete_login(pending, &forged).await,
        Err(Error::StateMismatch)
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn device_flow_approved_and_denied() {
    let p = provider(false, 60);
    // The public client: no secret, as a command-line tool.
    let cli = CheckinClient::builder(oidc::PUBLIC_CLIENT_ID)
        .scopes(["openid", "offline_access", "eduperson_entitlement"])
        .http(http(Duration::from_secs(3)))
        .discover(&p.issuer())
        .await
        .expect("discovery");
    let device = cli
        .start_device_login()
        .await
        .expect("device authorization");
    assert!(!device.user_code.is_empty());
    assert!(!format!("{device:?}").contains("device_code"));
    // Polling before approval: pending, then the approval arrives between two polls.
    let polls = std::sync::atomic::AtomicU32::new(0);
    let login = cli
        .finish_device_login(&device, |interval| {
            assert!(interval >= Duration::from_secs(1));
            if polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 2 {
                p.approve_device(&device.user_code, "carol")
                    .expect("approve");
            }
            std::future::ready(())
        })
        .await
        .expect("approved");
    assert!(polls.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    assert!(login.tokens.refresh_token().is_some());
    let refreshed = cli
        .refresh(&login.tokens)
        .await
        .expect("public client refresh");
    assert_eq!(refreshed.subject(), Some(login.id_token.subject.as_str()));

    let device = cli
        .start_device_login()
        .await
        .expect("device authorization");
    p.deny_device(&device.user_code).expect("deny");
    let denied = cli
        .finish_device_login(&device, |_| std::future::ready(()))
        .await;
    assert!(matches!(denied, Err(Error::AccessDenied)), "{denied:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn exchange_introspection_revocation_and_client_credentials() {
    let p = provider(false, 60);
    let c = client(&p).await;
    let login = device_login(&p, &c, "dave").await;
    let at = login.tokens.access_token();

    let info = c
        .introspect(at, Some(TokenType::AccessToken))
        .await
        .expect("introspection");
    assert!(info.active);
    assert_eq!(info.client_id.as_deref(), Some(oidc::CLIENT_ID));
    let user = info.user_info().expect("EGI claims in introspection");
    assert_eq!(
        user.vos("urn:mace:egi.eu", "aai.egi.eu"),
        ["vo.access.egi.eu", "vo.notebooks.egi.eu"]
    );

    // RFC 8693: an access token for a refresh token of this client, as the hub's JWT login.
    let exchanged = c
        .exchange_token(at, &ExchangeRequest::refresh_token())
        .await
        .expect("exchange");
    assert_eq!(
        exchanged.issued_token_type.as_deref(),
        Some(TokenType::RefreshToken.urn())
    );
    let rt = exchanged
        .tokens
        .refresh_token()
        .expect("a refresh token")
        .clone();
    assert_ne!(
        rt.expose_secret(),
        login.tokens.refresh_token().expect("rt").expose_secret()
    );
    let refreshed = c
        .refresh(&exchanged.tokens)
        .await
        .expect("the exchanged refresh token works");
    assert!(
        c.introspect(refreshed.access_token(), None)
            .await
            .expect("introspect")
            .active
    );
    // ... and for another audience.
    let other = c
        .exchange_token(
            at,
            &ExchangeRequest::access_token_for(oidc::OTHER_CLIENT_ID),
        )
        .await
        .expect("exchange for another audience");
    let other_info = c
        .introspect(other.tokens.access_token(), None)
        .await
        .expect("introspect");
    assert_eq!(other_info.client_id.as_deref(), Some(oidc::OTHER_CLIENT_ID));
    let unknown = c
        .exchange_token(at, &ExchangeRequest::access_token_for("nobody"))
        .await;
    assert!(matches!(unknown, Err(Error::OAuth { .. })), "{unknown:?}");

    // Revocation of the refresh token ends the grant.
    c.revoke(&rt, Some(TokenType::RefreshToken))
        .await
        .expect("revocation");
    let gone = c.refresh(&exchanged.tokens).await.expect_err("revoked");
    assert!(gone.needs_login(), "{gone}");
    c.revoke(at, Some(TokenType::AccessToken))
        .await
        .expect("revocation");
    assert!(!c.introspect(at, None).await.expect("introspect").active);

    let service = c.client_credentials(&[]).await.expect("client credentials");
    assert!(service.refresh_token().is_none());
    assert!(
        c.introspect(service.access_token(), None)
            .await
            .expect("introspect")
            .active
    );
}
