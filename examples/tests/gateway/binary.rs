//! The `gateway` binary as operators run it: `--help`, exit statuses for a bad configuration
//! and an unreachable Check-in, and a whole session (login, spawn, token refresh) whose log,
//! at debug level, holds no token, secret or cookie.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use egi_examples::gateway::config::loopback_toml;
use egi_test_harness::kubesim::{KubeSim, SimOptions};
use egi_test_harness::oidc::{self, OidcProvider};
use reqwest::StatusCode;

use crate::support::{Browser, eventually};

const SERVICE_TOKEN: &str = "binary-test-service-token-42";
const COOKIE_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";

fn gateway() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_gateway"));
    for var in [
        "GATEWAY_CONFIG",
        "GATEWAY_COOKIE_KEY",
        "GATEWAY_LISTEN",
        "KUBECONFIG",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

fn config(listen: &str, issuer: &str, state: &std::path::Path) -> String {
    loopback_toml(
        listen,
        &format!("http://{listen}/"),
        issuer,
        "notebooks",
        "vo.notebooks.egi.eu",
        state,
    ) + "[spawner]\nnamespace = \"default\"\n"
}

#[tokio::test]
async fn help_and_exit_statuses() -> anyhow::Result<()> {
    let help = gateway().arg("--help").output().await?;
    assert_eq!(help.status.code(), Some(0));
    let text = String::from_utf8_lossy(&help.stdout);
    for option in [
        "--config",
        "GATEWAY_COOKIE_KEY",
        "--token-dir",
        "--max-users",
        "--log-level",
    ] {
        assert!(text.contains(option), "--help lacks {option}:\n{text}");
    }
    assert_eq!(gateway().output().await?.status.code(), Some(2));

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.toml");
    // A typo: 78, naming the file and the key.
    std::fs::write(
        &path,
        config("127.0.0.1:1", "http://127.0.0.1:1/x", dir.path())
            .replace("public_url", "publik_url"),
    )?;
    let out = gateway().arg("--config").arg(&path).output().await?;
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("gateway.toml") && err.contains("publik_url"),
        "{err}"
    );
    // A service without a token: 78, naming the variable to set.
    std::fs::write(
        &path,
        config("127.0.0.1:1", "http://127.0.0.1:1/x", dir.path()),
    )?;
    let out = gateway().arg("--config").arg(&path).output().await?;
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("GATEWAY_SERVICE_STATUS_TOKEN"));
    // A bad cookie key: 78.
    let out = gateway()
        .arg("--config")
        .arg(&path)
        .env("GATEWAY_SERVICE_STATUS_TOKEN", SERVICE_TOKEN)
        .env("GATEWAY_COOKIE_KEY", "too-short")
        .output()
        .await?;
    assert_eq!(
        out.status.code(),
        Some(78),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Check-in unreachable: 69.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    std::fs::write(
        &path,
        config("127.0.0.1:1", &format!("http://{closed}/auth"), dir.path()),
    )?;
    let out = gateway()
        .arg("--config")
        .arg(&path)
        .env("GATEWAY_SERVICE_STATUS_TOKEN", SERVICE_TOKEN)
        .output()
        .await?;
    assert_eq!(
        out.status.code(),
        Some(69),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Check-in discovery"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_whole_session_logs_no_secret() -> anyhow::Result<()> {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string();
    let url = format!("http://{listen}/");
    let callback = format!("{url}hub/oauth_callback");
    let provider = tokio::task::spawn_blocking(move || {
        OidcProvider::start_with_redirects(
            oidc::Options {
                rotate: true,
                access_ttl: Duration::from_secs(3),
            },
            &[callback],
        )
    })
    .await??;
    let sim = KubeSim::start(SimOptions::default()).await?;
    let dir = tempfile::tempdir()?;
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig)?;
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        config(&listen, &provider.issuer(), &dir.path().join("state.json")),
    )?;
    let log = dir.path().join("gateway.log");
    let mut child = gateway()
        .arg("--config")
        .arg(&path)
        .env("KUBECONFIG", &kubeconfig)
        .env("GATEWAY_CLIENT_SECRET", oidc::CLIENT_SECRET)
        .env("GATEWAY_SERVICE_STATUS_TOKEN", SERVICE_TOKEN)
        .env("GATEWAY_COOKIE_KEY", COOKIE_KEY)
        .env("GATEWAY_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let http = reqwest::Client::new();
    eventually(Duration::from_secs(30), "the gateway to answer", || async {
        http.get(format!("{url}hub/health")).send().await.is_ok()
    })
    .await?;

    let browser = Browser::new(&url);
    let home = browser.login("alice").await?;
    assert_eq!(home.status(), StatusCode::OK);
    let r = browser
        .http
        .post(format!("{url}hub/spawn"))
        .form(&[("server", "")])
        .send()
        .await?;
    assert!(r.status().is_redirection());
    let secret_name = "access-token-alice";
    let token = |sim: &KubeSim| {
        sim.object("secrets", "default", secret_name)
            .and_then(|s| s["data"]["access_token"].as_str().map(str::to_owned))
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    };
    eventually(Duration::from_secs(20), "the token Secret", || async {
        token(&sim).is_some()
    })
    .await?;
    let first = token(&sim).unwrap_or_default();
    eventually(Duration::from_secs(20), "a refreshed token", || async {
        token(&sim).is_some_and(|t| t != first)
    })
    .await?;
    let second = token(&sim).unwrap_or_default();
    let api_token = sim
        .object("secrets", "default", secret_name)
        .and_then(|s| s["data"].as_object().cloned())
        .into_iter()
        .flatten()
        .filter(|(k, _)| k != "access_token" && k != "id_token")
        .filter_map(|(_, v)| {
            v.as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        })
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect::<Vec<_>>();
    let cookies: Vec<String> = browser
        .cookie_values(&url)
        .into_iter()
        .filter(|c| c.len() > 20)
        .collect();
    assert!(!cookies.is_empty());

    // SIGTERM by PID, as an orchestrator stops it; it exits cleanly.
    let pid = child.id().expect("a pid");
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status()?;
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await??;
    assert_eq!(status.code(), Some(0));

    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains("login") && text.contains("server ready"),
        "{text}"
    );
    let mut secrets = vec![
        first,
        second,
        SERVICE_TOKEN.to_owned(),
        oidc::CLIENT_SECRET.to_owned(),
        COOKIE_KEY.to_owned(),
    ];
    secrets.extend(api_token);
    secrets.extend(cookies);
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !text.contains(secret.as_str()),
            "the log holds a secret ({} chars)",
            secret.len()
        );
    }
    drop(provider);
    sim.shutdown().await;
    Ok(())
}
