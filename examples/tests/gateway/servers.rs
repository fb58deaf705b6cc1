//! Servers through the gateway: start from the home page with a profile allowed for the
//! user's VO, progress over SSE, the pod with the user's VO and tokens, the proxy to it (owner
//! only), tokens refreshed into the Secret, stop, adoption after a restart, failures.

use std::time::Duration;

use base64::Engine as _;
use reqwest::StatusCode;

use crate::support::{Stack, StackOptions, eventually, location};

/// Three profiles: one for the user's VO, one for another VO, one for everyone (API users
/// such as the monitor's have no VO); a claim per user.
pub(crate) const SPAWNER: &str = r#"
[spawner]
namespace = "default"
image = "quay.io/jupyter/minimal-notebook:2025-01-01"
[spawner.storage]
capacity = "1Gi"
[spawner.storage.policy]
type = "per-user"
[[spawner.profile_list]]
display_name = "Python for notebooks VO"
slug = "python"
vo_claims = ["vo.notebooks.egi.eu"]
[spawner.profile_list.kubespawner_override]
image = "quay.io/jupyter/scipy-notebook:2025-01-01"
[[spawner.profile_list]]
display_name = "Other lab"
slug = "other"
vo_claims = ["vo.other.example.org"]
[[spawner.profile_list]]
display_name = "Basic"
slug = "basic"
"#;

fn decode(value: &serde_json::Value) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.as_str().unwrap_or(""))
        .unwrap_or_default();
    String::from_utf8(bytes).unwrap_or_default()
}

/// Reads an SSE body to its end and returns the events' JSON.
async fn events(r: reqwest::Response) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = tokio::time::timeout(Duration::from_secs(90), r.text()).await??;
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_starts_a_server_follows_progress_reaches_it_and_gets_fresh_tokens()
-> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        extra_config: SPAWNER.to_owned(),
        access_ttl: Duration::from_secs(3),
        ..StackOptions::default()
    })
    .await?;
    let alice = stack.browser();
    let home = alice.login("alice").await?.text().await?;
    // Only the profile of alice's VO is offered.
    assert!(home.contains("Python for notebooks VO"), "{home}");
    assert!(!home.contains("Other lab"), "{home}");

    // Asking for the other VO's profile by hand is refused by the spawner's VO gating.
    alice.spawn("other", "").await?;
    let progress = events(alice.get("hub/api/users/alice/server/progress").await?).await?;
    let last = progress.last().expect("a last event");
    assert_eq!(last["failed"], true, "{progress:?}");
    let message = last["message"].as_str().unwrap_or("");
    assert!(
        message.contains("other"),
        "the reason names the profile: {message}"
    );

    let r = alice.spawn("python", "").await?;
    assert!(
        location(&r)?.ends_with("hub/spawn-pending/alice/"),
        "{}",
        location(&r)?
    );
    let page = alice.get("hub/spawn-pending/alice/").await?.text().await?;
    assert!(
        page.contains("EventSource(\"/hub/api/users/alice/server/progress\")"),
        "{page}"
    );
    let progress = events(alice.get("hub/api/users/alice/server/progress").await?).await?;
    assert!(progress.len() >= 2, "{progress:?}");
    let last = progress.last().expect("a last event");
    assert_eq!(last["ready"], true, "{progress:?}");
    assert_eq!(last["url"], "/user/alice/");
    assert_eq!(last["progress"], 100);

    // The pod: the profile's image, alice's VO for accounting, her claim, her tokens.
    let pod = stack
        .sim()
        .objects("pods", "default")
        .into_iter()
        .next()
        .expect("a pod");
    assert_eq!(
        pod["spec"]["containers"][0]["image"],
        "quay.io/jupyter/scipy-notebook:2025-01-01"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["egi.eu/primary_group"],
        "vo.notebooks.egi.eu"
    );
    assert!(
        stack
            .sim()
            .object("persistentvolumeclaims", "default", "claim-alice")
            .is_some()
    );
    let secret = stack.token_secret("alice").expect("the token Secret");
    let first = decode(&secret["access_token"]);
    assert!(!first.is_empty());
    let env = pod["spec"]["containers"][0]["env"].to_string();
    assert!(env.contains("JUPYTERHUB_API_URL"), "{env}");
    assert!(!env.contains(&first), "the access token is in the pod spec");

    // The proxy: a real HTTP server at the pod's address answers for alice only.
    let ip = pod["status"]["podIP"]
        .as_str()
        .expect("a pod IP")
        .to_owned();
    let upstream = tokio::net::TcpListener::bind((ip.as_str(), 8888)).await?;
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        let cookies = req
            .headers()
            .get("cookie")
            .and_then(|c| c.to_str().ok())
            .unwrap_or("")
            .to_owned();
        format!("upstream saw {} with cookies [{cookies}]", req.uri())
    });
    let served = tokio::spawn(async move { axum::serve(upstream, app).await });
    let r = alice.get("user/alice/api/status?x=1").await?;
    assert_eq!(r.status(), StatusCode::OK);
    // The server never sees the gateway's session cookie (code runs there); other cookies
    // (here the provider's, sent by host as browsers do) pass.
    let seen = r.text().await?;
    assert!(
        seen.starts_with("upstream saw /user/alice/api/status?x=1 with cookies ["),
        "{seen}"
    );
    assert!(!seen.contains("egi-gateway"), "{seen}");
    let bob = stack.browser();
    assert_eq!(bob.login("bob").await?.status(), StatusCode::OK);
    let r = bob.get("user/alice/api/status").await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let anonymous = stack.browser();
    let r = anonymous.get("user/alice/api/status").await?;
    assert!(r.status().is_redirection());
    assert!(location(&r)?.contains("hub/login?next="));
    let r = reqwest::Client::new()
        .get(format!("{}user/alice/api/status", stack.url))
        .header("Authorization", "token not-a-token")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Tokens: the registry refreshes ahead of expiry and the new one lands in the Secret.
    eventually(
        Duration::from_secs(15),
        "a refreshed token in the Secret",
        || async {
            stack
                .token_secret("alice")
                .is_some_and(|s| decode(&s["access_token"]) != first)
        },
    )
    .await?;
    assert!(stack.gateway.metrics.token_pushes.get() >= 1);

    // Metrics for the admin service.
    let metrics = stack
        .api(crate::support::ADMIN_TOKEN)
        .call(reqwest::Method::GET, "/../metrics")
        .await?;
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await?;
    assert!(text.contains("egi_gateway_servers_running 1"), "{text}");
    assert!(
        text.contains("egi_gateway_logins_total{outcome=\"ok\"} 2"),
        "{text}"
    );

    // Stop from the home page: the pod goes, the claim stays.
    let r = alice
        .http
        .post(format!("{}hub/stop", stack.url))
        .form(&[("server", "")])
        .send()
        .await?;
    assert!(r.status().is_redirection());
    assert!(stack.sim().objects("pods", "default").is_empty());
    assert!(
        stack
            .sim()
            .object("persistentvolumeclaims", "default", "claim-alice")
            .is_some()
    );
    assert_eq!(
        alice.get("user/alice/api/status").await?.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    served.abort();
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_gateway_adopts_the_running_servers() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions {
        extra_config: SPAWNER.to_owned(),
        ..StackOptions::default()
    })
    .await?;
    let api = stack.api(crate::support::ADMIN_TOKEN);
    assert_eq!(
        api.call(reqwest::Method::POST, "/users/probe")
            .await?
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        api.call(reqwest::Method::POST, "/users/probe/server")
            .await?
            .status(),
        StatusCode::ACCEPTED
    );
    let progress = events(
        api.call(reqwest::Method::GET, "/users/probe/server/progress")
            .await?,
    )
    .await?;
    assert_eq!(
        progress.last().expect("events")["ready"],
        true,
        "{progress:?}"
    );
    let pod_before = stack.sim().objects("pods", "default")[0]["metadata"]["uid"].clone();

    stack.restart_gateway().await?;
    let api = stack.api(crate::support::ADMIN_TOKEN);
    let user: serde_json::Value = api
        .call(reqwest::Method::GET, "/users/probe")
        .await?
        .json()
        .await?;
    assert_eq!(user["servers"][""]["ready"], true, "{user}");
    // Starting again says it runs (201), and no second pod was made.
    assert_eq!(
        api.call(reqwest::Method::POST, "/users/probe/server")
            .await?
            .status(),
        StatusCode::CREATED
    );
    let pods = stack.sim().objects("pods", "default");
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["metadata"]["uid"], pod_before);
    assert_eq!(
        api.call(reqwest::Method::DELETE, "/users/probe/server")
            .await?
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(stack.sim().objects("pods", "default").is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_image_fails_the_start_with_the_clusters_reason() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        extra_config: SPAWNER.to_owned(),
        ..StackOptions::default()
    })
    .await?;
    stack.sim().faults().fail_image_pull("scipy-notebook");
    let alice = stack.browser();
    alice.login("alice").await?;
    let started = std::time::Instant::now();
    alice.spawn("python", "").await?;
    let progress = events(alice.get("hub/api/users/alice/server/progress").await?).await?;
    let last = progress.last().expect("events");
    assert_eq!(last["failed"], true, "{progress:?}");
    let message = last["message"].as_str().unwrap_or("");
    assert!(
        message.contains("Spawn failed") && message.contains("scipy-notebook"),
        "{message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let home = alice.get("hub/home").await?.text().await?;
    assert!(home.contains("failed:"), "{home}");
    assert_eq!(stack.gateway.metrics.spawns_failed.get(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_that_is_down_fails_the_start_clearly() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions {
        extra_config: SPAWNER.to_owned(),
        ..StackOptions::default()
    })
    .await?;
    let alice = stack.browser();
    assert_eq!(alice.login("alice").await?.status(), StatusCode::OK);
    stack.stop_cluster().await;
    let started = std::time::Instant::now();
    alice.spawn("python", "").await?;
    let progress = events(alice.get("hub/api/users/alice/server/progress").await?).await?;
    let last = progress.last().expect("events");
    assert_eq!(last["failed"], true, "{progress:?}");
    let message = last["message"].as_str().unwrap_or("");
    assert!(message.starts_with("Spawn failed"), "{message}");
    assert!(message.contains("namespace default"), "{message}");
    // egi-spawner waits up to 30 s for the namespace's first list before it gives up.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    // The gateway itself keeps serving, and a stop of the failed server is harmless.
    assert_eq!(alice.get("hub/home").await?.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_that_ends_is_shown_and_counted() -> anyhow::Result<()> {
    let mut stack = Stack::start(StackOptions {
        extra_config: SPAWNER.to_owned(),
        access_ttl: Duration::from_secs(3),
        ..StackOptions::default()
    })
    .await?;
    let alice = stack.browser();
    assert_eq!(alice.login("alice").await?.status(), StatusCode::OK);
    alice.spawn("python", "").await?;
    let progress = events(alice.get("hub/api/users/alice/server/progress").await?).await?;
    assert_eq!(progress.last().expect("events")["ready"], true);
    // The provider forgets every grant: the next refresh is refused for good.
    let options = stack.provider.options();
    stack.provider.restart(options)?;
    let admin = stack.api(crate::support::ADMIN_TOKEN);
    eventually(
        Duration::from_secs(20),
        "the gauge to count alice",
        || async {
            match admin.call(reqwest::Method::GET, "/../metrics").await {
                Ok(r) => r
                    .text()
                    .await
                    .is_ok_and(|t| t.contains("egi_gateway_users_login_needed 1")),
                Err(_) => false,
            }
        },
    )
    .await?;
    let home = alice.get("hub/home").await?.text().await?;
    assert!(home.contains("log in again"), "{home}");
    // Logging in again clears it.
    assert_eq!(alice.login("alice").await?.status(), StatusCode::OK);
    let home = alice.get("hub/home").await?.text().await?;
    assert!(!home.contains("Your Check-in session has ended"), "{home}");
    Ok(())
}
