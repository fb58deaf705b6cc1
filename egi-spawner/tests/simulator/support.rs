//! Shared setup: a simulator, a cluster of spawners on it, the hub's context.

use std::time::Duration;

use egi_spawner::kube::{KubeCluster, RuntimeOptions};
use egi_spawner::spawner::StartRequest;
use egi_spawner::{HubContext, KubeSpawnerConfig, User, UserTokens};
use egi_test_harness::kubesim::{Counters, KubeSim, SimOptions};
use secrecy::SecretString;

/// The hub's API token every test server gets (checked to never appear in a pod spec).
pub(crate) const API_TOKEN: &str = "hub-api-token-7f3e9a";

/// A simulator with quick but realistic timings.
pub(crate) async fn sim() -> KubeSim {
    sim_with(SimOptions::default()).await
}

pub(crate) async fn sim_with(options: SimOptions) -> KubeSim {
    KubeSim::start(options).await.expect("simulator starts")
}

/// A kube client of the simulator, built as `KubeCluster::infer` builds its own.
pub(crate) fn client(sim: &KubeSim) -> kube::Client {
    let url: http::Uri = sim.url().parse().expect("simulator url");
    egi_spawner::kube::client(kube::Config::new(url)).expect("client")
}

/// Configuration from JSON (as an operator writes it), on the namespace `default`.
pub(crate) fn config(json: serde_json::Value) -> KubeSpawnerConfig {
    serde_json::from_value(json).expect("valid configuration")
}

/// Short timeouts, so a hung path fails the test quickly.
pub(crate) fn options() -> RuntimeOptions {
    let mut options = RuntimeOptions::default();
    options.start_timeout = Duration::from_secs(20);
    options.stop_timeout = Duration::from_secs(20);
    options
}

pub(crate) fn cluster(sim: &KubeSim, json: serde_json::Value) -> KubeCluster {
    KubeCluster::new(client(sim), config(json), options()).expect("cluster")
}

pub(crate) fn user(name: &str) -> User {
    User {
        name: name.to_owned(),
        id: Some(7),
        groups: vec!["vo.notebooks.egi.eu".to_owned()],
        primary_group: Some("vo.notebooks.egi.eu".to_owned()),
    }
}

/// What JupyterHub passes for `user`'s server `server`.
pub(crate) fn hub(user: &str, server: &str) -> HubContext {
    HubContext::for_server(
        user,
        server,
        "http://hub:8081/hub/api",
        SecretString::from(API_TOKEN),
        8888,
    )
}

pub(crate) fn tokens(access: &str) -> UserTokens {
    UserTokens {
        access_token: SecretString::from(access.to_owned()),
        id_token: Some(SecretString::from(format!("id-{access}"))),
    }
}

pub(crate) fn request(user: &str, server: &str) -> StartRequest {
    StartRequest {
        hub: hub(user, server),
        user_options: serde_json::Map::new(),
        tokens: Some(tokens("access-1")),
    }
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub(crate) async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The decoded value of key `key` of a Secret object.
pub(crate) fn secret_value(secret: &serde_json::Value, key: &str) -> Option<String> {
    use base64::Engine as _;
    let encoded = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Requests with `verb` on `resource` in namespace `default`.
pub(crate) fn count(counters: &Counters, verb: &str, resource: &str) -> u64 {
    counters.count(verb, resource, "default")
}

/// Requests with `verb`, any resource.
pub(crate) fn count_verb(counters: &Counters, verb: &str) -> u64 {
    counters.verb(verb)
}

/// Writes: creates, updates, patches and deletes.
pub(crate) fn writes(counters: &Counters) -> u64 {
    ["create", "update", "patch", "delete", "deletecollection"]
        .iter()
        .map(|v| counters.verb(v))
        .sum()
}

/// Watches open now.
pub(crate) fn open_watches(counters: &Counters) -> u64 {
    counters.open_watches
}
