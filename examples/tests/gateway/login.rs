//! Check-in login through the gateway: code + PKCE with the pending login sealed in a cookie,
//! VO gating, sessions, logout; and every way a login can go wrong.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::SET_COOKIE;

use crate::support::{Stack, StackOptions, location};

#[tokio::test(flavor = "multi_thread")]
async fn a_member_logs_in_and_reaches_their_home_page() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let browser = stack.browser();
    // Not logged in: the home page sends the browser to the login.
    let r = browser.get("hub/home").await?;
    assert!(r.status().is_redirection());
    assert!(location(&r)?.contains("hub/login"), "{}", location(&r)?);

    let home = browser.login("alice").await?;
    assert_eq!(home.status(), StatusCode::OK);
    let page = home.text().await?;
    assert!(page.contains("Logged in as <b>alice</b>"), "{page}");
    assert!(page.contains("vo.notebooks.egi.eu"), "{page}");
    assert_eq!(stack.gateway.metrics.logins_ok.get(), 1);

    // The session works for the REST API too, for the user's own model only.
    let me: serde_json::Value = browser.get("hub/api/user").await?.json().await?;
    assert_eq!(me["name"], "alice");
    assert_eq!(me["groups"][0], "vo.notebooks.egi.eu");
    assert_eq!(
        browser.get("hub/api/users").await?.status(),
        StatusCode::FORBIDDEN
    );
    // The tokens are kept fresh by the registry.
    assert!(stack.gateway.tokens.freshness("alice").is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_without_an_allowed_vo_is_refused_and_their_grant_revoked() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let browser = stack.browser();
    let r = browser.login("outsider").await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = r.text().await?;
    assert!(page.contains("Not a member of an allowed VO"), "{page}");
    assert!(page.contains("vo.notebooks.egi.eu"), "{page}");
    assert_eq!(stack.gateway.metrics.logins_refused.get(), 1);
    // No session, no user, no tokens kept.
    assert!(browser.get("hub/home").await?.status().is_redirection());
    assert!(stack.gateway.servers.user("outsider").is_none());
    assert!(stack.gateway.tokens.freshness("outsider").is_none());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_foreign_and_missing_login_cookies_are_refused() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;

    // A callback with no login started in this browser.
    let a = stack.browser();
    let url = a.start_login().await?;
    let callback = a.at_provider(&url, "alice").await?;
    let stranger = stack.browser();
    let r = stranger.finish_login(&callback).await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await?.contains("Login expired"));

    // Two logins in two browsers; each gets the other's callback: the state does not match.
    let b = stack.browser();
    let url_b = b.start_login().await?;
    let callback_b = b.at_provider(&url_b, "bob").await?;
    let r = a.finish_login(&callback_b).await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "{}", r.text().await?);
    assert!(stack.gateway.servers.user("bob").is_none());

    // A forged session cookie is no session.
    let forged = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let r = forged
        .get(format!("{}hub/api/user", stack.url))
        .header(
            "Cookie",
            "egi-gateway-session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(stack.gateway.metrics.logins_failed.get() >= 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_is_down_at_the_callback_gets_a_clear_page() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions::default()).await?;
    let browser = stack.browser();
    let url = browser.start_login().await?;
    let callback = browser.at_provider(&url, "alice").await?;
    stack.provider.stop();
    let r = browser.finish_login(&callback).await?;
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    let page = r.text().await?;
    assert!(page.contains("Check-in did not answer"), "{page}");
    assert!(
        !page.contains("code="),
        "the page leaks the callback: {page}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn logout_revokes_the_grant_and_ends_the_session() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    let browser = stack.browser();
    assert_eq!(browser.login("alice").await?.status(), StatusCode::OK);
    let revocations = |s: &Stack| -> anyhow::Result<u64> {
        let counters = s.provider.counters()?;
        Ok(counters["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .iter()
                    .filter(|(p, _)| p.ends_with("/revoke"))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or(0))
    };
    let before = revocations(&stack)?;
    let r = browser.get("hub/logout").await?;
    assert_eq!(r.status(), StatusCode::OK);
    let cleared = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .any(|c| c.to_str().unwrap_or("").contains("Max-Age=0"));
    assert!(cleared, "the session cookie is not cleared");
    assert_eq!(revocations(&stack)?, before + 1);
    assert!(stack.gateway.tokens.freshness("alice").is_none());
    assert!(browser.get("hub/home").await?.status().is_redirection());
    // Logging in again works.
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(browser.login("alice").await?.status(), StatusCode::OK);
    Ok(())
}
