//! JupyterHub's REST API subset, driven by egi-monitoring's own `HubClient` and probes as
//! they run against a real JupyterHub, with the scopes of each service token checked.

use egi_monitoring::hub::{HubClient, StartState};
use egi_monitoring::{HubReachable, Probe, SpawnProbe, SpawnSettings, Status};
use reqwest::{Method, StatusCode};

use crate::servers::SPAWNER;
use crate::support::{ADMIN_TOKEN, LISTER_TOKEN, Stack, StackOptions};

fn client(stack: &Stack, token: &str) -> anyhow::Result<HubClient> {
    Ok(HubClient::builder(format!("{}hub/api", stack.url))
        .token(token)
        .build()?)
}

#[tokio::test(flavor = "multi_thread")]
async fn egi_monitorings_client_and_probes_work_against_the_gateway() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        extra_config: SPAWNER.to_owned(),
        base: "/jhub/",
        ..StackOptions::default()
    })
    .await?;
    let hub = client(&stack, ADMIN_TOKEN)?;
    assert!(!hub.version().await?.is_empty());
    hub.health().await?;
    let me = hub.whoami().await?;
    assert_eq!((me.kind.as_str(), me.name.as_str()), ("service", "status"));
    assert!(
        me.scopes.iter().any(|s| s == "admin:servers"),
        "{:?}",
        me.scopes
    );
    assert!(hub.metrics().await?.contains("egi_gateway_logins_total"));

    // The probes the `monitor` and `probe` binaries run, unchanged.
    let reachable = HubReachable::new(hub.clone()).run().await;
    assert_eq!(reachable.status, Status::Ok, "{}", reachable.message);
    let spawn = SpawnProbe::new(hub.clone(), SpawnSettings::new("monitor"))
        .run()
        .await;
    assert_eq!(
        spawn.status,
        Status::Ok,
        "{}: {:?}",
        spawn.message,
        spawn.details
    );
    // The probe stopped its server; a second round works the same.
    let again = SpawnProbe::new(hub.clone(), SpawnSettings::new("monitor"))
        .run()
        .await;
    assert_eq!(again.status, Status::Ok, "{}", again.message);
    assert!(stack.sim().objects("pods", "default").is_empty());

    // Named servers.
    let monitor = hub.user("monitor").await?.expect("the probe's user");
    assert!(monitor.servers.is_empty());
    assert_eq!(
        hub.start_server("monitor", "gpu").await?,
        StartState::Pending
    );
    let mut progress = hub.progress("monitor", "gpu").await?;
    let mut last = None;
    while let Some(event) = progress.next_event().await? {
        last = Some(event);
    }
    let last = last.expect("events");
    assert!(last.ready, "{last:?}");
    assert_eq!(last.url.as_deref(), Some("/jhub/user/monitor/gpu/"));
    let monitor = hub.user("monitor").await?.expect("the user");
    assert!(monitor.server("gpu").is_some_and(|s| s.ready));
    assert_eq!(
        hub.start_server("monitor", "gpu").await?,
        StartState::Started
    );
    hub.stop_server_and_wait("monitor", "gpu", std::time::Duration::from_secs(20))
        .await?;
    assert!(hub.user("monitor").await?.expect("user").servers.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn each_route_checks_the_tokens_scopes() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions {
        extra_config: SPAWNER.to_owned(),
        ..StackOptions::default()
    })
    .await?;
    let admin = stack.api(ADMIN_TOKEN);
    let lister = stack.api(LISTER_TOKEN);
    let nobody = stack.api("wrong-token");
    assert_eq!(
        admin.call(Method::POST, "/users/probe").await?.status(),
        StatusCode::CREATED
    );
    assert_eq!(
        admin.call(Method::POST, "/users/probe").await?.status(),
        StatusCode::CONFLICT
    );

    // The lister lists, and nothing more.
    let users: serde_json::Value = lister.call(Method::GET, "/users").await?.json().await?;
    assert_eq!(users[0]["name"], "probe");
    for (method, path) in [
        (Method::GET, "/users/probe"),
        (Method::POST, "/users/other"),
        (Method::POST, "/users/probe/server"),
        (Method::DELETE, "/users/probe/server"),
        (Method::GET, "/users/probe/server/progress"),
        (Method::GET, "/../metrics"),
    ] {
        let r = lister.call(method.clone(), path).await?;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
        let body: serde_json::Value = r.json().await?;
        assert_eq!(body["status"], 403);
    }
    // A wrong token gets nothing, and its value is never echoed.
    for path in ["/users", "/user", "/users/probe"] {
        let r = nobody.call(Method::GET, path).await?;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(!r.text().await?.contains("wrong-token"));
    }
    // Bad input gets a clear 400/404.
    let r = admin.call(Method::GET, "/users/nobody-here").await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = stack
        .browser()
        .http
        .post(format!("{}hub/api/users/probe/server", stack.url))
        .header("Authorization", format!("token {ADMIN_TOKEN}"))
        .body("[1, 2]")
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = admin
        .call(Method::POST, "/users/probe/server/../../%00bad")
        .await?;
    assert_ne!(r.status(), StatusCode::CREATED);
    // A service token does not open users' servers unless it has access:servers.
    let r = reqwest::Client::new()
        .get(format!("{}user/probe/api/status", stack.url))
        .header("Authorization", format!("token {LISTER_TOKEN}"))
        .send()
        .await?;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(stack.gateway.metrics.api_denied.get() >= 9);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_service_and_the_probe_binary_work_through_the_gateway() -> anyhow::Result<()>
{
    // The monitor's status page, registered as JupyterHub service `status` with a `url`.
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let status_url = format!("http://{}/", upstream.local_addr()?);
    let app = axum::Router::new().fallback(|req: axum::extract::Request| async move {
        format!("status page at {}", req.uri())
    });
    let served = tokio::spawn(async move { axum::serve(upstream, app).await });
    let stack = Stack::start(StackOptions {
        extra_config: SPAWNER.to_owned(),
        status_url: Some(status_url),
        ..StackOptions::default()
    })
    .await?;
    let r = reqwest::get(format!("{}services/status/?format=json", stack.url)).await?;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.text().await?,
        "status page at /services/status/?format=json"
    );
    let r = reqwest::get(format!("{}services/nobody/", stack.url)).await?;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The Nagios/ARGO check, run directly against the gateway as against a JupyterHub.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["--hub", &stack.url, "--run", "spawn", "--user", "nagios"])
        .env("JUPYTERHUB_API_TOKEN", ADMIN_TOKEN)
        .env_remove("JUPYTERHUB_USER")
        .output()
        .await?;
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{line}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(line.starts_with("NOTEBOOKS OK"), "{line}");
    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_probe"))
        .args(["--hub", &stack.url, "--run", "spawn"])
        .env("JUPYTERHUB_API_TOKEN", "not-a-token")
        .output()
        .await?;
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );
    served.abort();
    Ok(())
}
