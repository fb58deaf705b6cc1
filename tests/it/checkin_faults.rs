//! egi-checkin faults against a real provider: each a typed error, no panic, the old token
//! served while still valid where that is safe.

use std::time::Duration;

use egi_checkin::{CheckinClient, Endpoint, Error, ExposeSecret};
use egi_test_harness::oidc::{self, Fault, REFRESH_GRANT};

use crate::checkin_support::{client, device_login, http, manager, provider, wait_expired};

/// Sleeps until the current token is inside its refresh margin but not expired.
async fn wait_in_margin(m: &egi_checkin::TokenManager) {
    let token = m.current().expect("a token");
    while token.is_fresh_at(std::time::SystemTime::now()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn provider_stopped_mid_run() {
    let mut p = provider(false, 4);
    let c = client(&p).await;
    let m = manager(&p, &c, "liam").await;
    let first = m.access_token().await.expect("token");
    p.stop();
    wait_in_margin(&m).await;
    let served = m
        .access_token()
        .await
        .expect("old token served while valid");
    assert_eq!(served.generation(), first.generation());
    wait_expired(&m).await;
    let e = m
        .access_token()
        .await
        .expect_err("expired and provider down");
    assert!(
        e.is_transient()
            && matches!(
                e,
                Error::Transport {
                    endpoint: Endpoint::Token,
                    ..
                }
            ),
        "{e}"
    );
    // Back, but with its memory (the grant) lost: log in again.
    p.restart(p.options()).expect("restart");
    let e = m
        .access_token()
        .await
        .expect_err("grant unknown to the restarted provider");
    assert!(e.needs_login(), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_with_backoff() {
    let p = provider(false, 2);
    let c = client(&p).await;
    let m = manager(&p, &c, "mia").await;
    p.arm_fault(Fault::Status500, 2).expect("arm");
    wait_expired(&m).await;
    let t = m.access_token().await.expect("third attempt succeeds");
    assert_eq!(t.generation(), 2);
    let counters = p.counters().expect("counters");
    assert_eq!(counters["grants"]["fault:refresh_token"], 2);
    assert_eq!(counters["grants"][REFRESH_GRANT], 1);

    // Persistent 500s: the old token while valid, then the typed error.
    p.arm_fault(Fault::Status500, 100).expect("arm");
    wait_in_margin(&m).await;
    assert_eq!(m.access_token().await.expect("old token").generation(), 2);
    wait_expired(&m).await;
    let e = m.access_token().await.expect_err("expired");
    assert!(
        matches!(e, Error::Http { status: 500, .. }) && e.is_transient(),
        "{e}"
    );
    p.clear_fault().expect("clear");
    assert_eq!(m.access_token().await.expect("recovered").generation(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_token_endpoint_times_out() {
    let p = provider(false, 60);
    let c = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.into())
        .http(http(Duration::from_millis(500)))
        .discover(&p.issuer())
        .await
        .expect("discovery");
    let login = device_login(&p, &c, "noah").await;
    p.arm_fault(Fault::Slow(Duration::from_secs(2)), 1)
        .expect("arm");
    let e = c.refresh(&login.tokens).await.expect_err("timeout");
    assert!(
        matches!(
            e,
            Error::Timeout {
                endpoint: Endpoint::Token,
                ..
            }
        ) && e.is_transient(),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_answers_and_redirects_are_typed_errors() {
    let p = provider(false, 60);
    let c = client(&p).await;
    let login = device_login(&p, &c, "olga").await;
    p.arm_fault(Fault::MalformedJson, 1).expect("arm");
    let e = c.refresh(&login.tokens).await.expect_err("malformed");
    assert!(
        matches!(
            e,
            Error::Malformed {
                endpoint: Endpoint::Token,
                ..
            }
        ),
        "{e}"
    );
    p.arm_fault(Fault::Redirect, 1).expect("arm");
    let e = c.refresh(&login.tokens).await.expect_err("redirect");
    assert!(matches!(e, Error::Redirect { status: 302, .. }), "{e}");
    // The redirect was not followed: nothing reached the redirect target (port 9 refuses),
    // and the provider saw exactly the one faulty answer.
    assert_eq!(
        p.counters().expect("counters")["grants"]["fault:refresh_token"],
        2
    );
    c.refresh(&login.tokens)
        .await
        .expect("the grant survived the faults");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_id_tokens_are_rejected() {
    let p = provider(false, 60);
    let c = client(&p).await;
    let login = device_login(&p, &c, "pia").await;
    for (fault, what) in [
        (Fault::IdTokenOtherKey, "key"),
        (Fault::IdTokenWrongAudience, "aud"),
        (Fault::IdTokenAlgNone, "none"),
    ] {
        p.arm_fault(fault, 1).expect("arm");
        let e = c.refresh(&login.tokens).await.expect_err(what);
        assert!(matches!(e, Error::IdToken(_)), "{what}: {e}");
        assert!(!e.needs_login() && !e.is_transient(), "{what}");
    }
    // An unknown key id makes the client fetch the JWKS again, once per unknown token.
    let jwks = format!(
        "{}/protocol/openid-connect/certs",
        url::Url::parse(&p.issuer()).expect("URL").path()
    );
    let before = p.path_requests(&jwks).expect("counters");
    assert!(
        before >= 2,
        "fetched at discovery and again for the unknown key"
    );
    p.arm_fault(Fault::IdTokenRotatedKey, 1).expect("arm");
    let rotated = c
        .refresh(&login.tokens)
        .await
        .expect("a newly published key is picked up");
    assert_eq!(rotated.subject(), Some(login.id_token.subject.as_str()));
    assert_eq!(p.path_requests(&jwks).expect("counters"), before + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn manager_serves_the_old_token_when_a_refresh_brings_a_forged_id_token() {
    let p = provider(false, 4);
    let c = client(&p).await;
    let m = manager(&p, &c, "quinn").await;
    let first = m.access_token().await.expect("token");
    p.arm_fault(Fault::IdTokenOtherKey, 1).expect("arm");
    wait_in_margin(&m).await;
    let served = m.access_token().await.expect("old token");
    assert_eq!(
        served.access_token().expose_secret(),
        first.access_token().expose_secret()
    );
    assert!(
        c.introspect(served.access_token(), None)
            .await
            .expect("introspect")
            .active
    );
    wait_expired(&m).await;
    assert_eq!(
        m.access_token()
            .await
            .expect("next refresh is clean")
            .generation(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn id_token_faults_under_rotation_keep_the_grant_alive() {
    // Each fault: the provider really refreshes (and rotates the refresh token), then the
    // answer's ID token fails. The new refresh token must be kept: sending the used-up one
    // again would revoke the whole grant.
    let p = provider(true, 60);
    let c = client(&p).await;
    let m = manager(&p, &c, "rita").await;
    let mut token = m.access_token().await.expect("token");
    for (fault, what) in [
        (Fault::IdTokenOtherKey, "key"),
        (Fault::IdTokenWrongAudience, "aud"),
        (Fault::IdTokenAlgNone, "none"),
    ] {
        p.arm_fault(fault, 1).expect("arm");
        let served = m.force_refresh(&token).await.expect("old token served");
        assert_eq!(served.generation(), token.generation(), "{what}");
        let next = m
            .force_refresh(&token)
            .await
            .unwrap_or_else(|e| panic!("{what}: the grant survived: {e}"));
        assert_eq!(next.generation(), token.generation() + 1, "{what}");
        token = next;
    }
    // Three faulty and three clean refreshes reached the provider, none replayed.
    let counters = p.counters().expect("counters");
    assert_eq!(counters["grants"]["fault:refresh_token"], 3);
    assert_eq!(counters["grants"][REFRESH_GRANT], 6);
    assert!(
        c.introspect(token.access_token(), None)
            .await
            .expect("introspect")
            .active
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_processed_then_timed_out_is_not_replayed() {
    // The provider uses up (rotates) the refresh token, then answers after the client gave
    // up. Replaying the old refresh token at once would revoke the grant on the spot; the
    // manager instead reports the typed transient error and sends nothing more.
    let p = provider(true, 2);
    let c = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.into())
        .leeway(Duration::ZERO)
        .http(http(Duration::from_millis(500)))
        .discover(&p.issuer())
        .await
        .expect("discovery");
    let m = manager(&p, &c, "sam").await;
    arm_raw_fault(&p, r#"{"kind":"slow_processed","count":1,"delay_ms":1500}"#).await;
    wait_expired(&m).await;
    let e = m.access_token().await.expect_err("timed out");
    assert!(
        matches!(
            e,
            Error::Timeout {
                endpoint: Endpoint::Token,
                ..
            }
        ) && e.is_transient(),
        "{e}"
    );
    let counters = p.counters().expect("counters");
    assert_eq!(counters["grants"]["fault:refresh_token"], 1);
    assert_eq!(counters["grants"][REFRESH_GRANT], 1, "no replay");
    // What cannot be avoided: the new refresh token never arrived, so the next refresh can
    // only send the used-up one, and the provider ends the grant (a typed "log in again").
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let e = m.access_token().await.expect_err("grant gone");
    assert!(e.needs_login(), "{e}");
}

/// Arms a fault the harness has no variant for, through the provider's test endpoint.
async fn arm_raw_fault(p: &oidc::OidcProvider, body: &'static str) {
    let issuer = url::Url::parse(&p.issuer()).expect("issuer");
    let url = format!(
        "http://{}:{}/test/fault",
        issuer.host_str().expect("host"),
        issuer.port().expect("port")
    );
    let answer = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("arm");
    assert!(answer.status().is_success(), "{}", answer.status());
}
