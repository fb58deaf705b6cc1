//! The token Secret follows token refreshes: of any source, on any `dyn Spawner`, and
//! egi-checkin's (feature `checkin`).

use std::sync::Arc;
use std::time::Duration;

use egi_spawner::{Spawner, follow_tokens};
use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_tokens_rewrites_the_secret_of_a_running_server_only() {
    let sim = sim().await;
    let cluster = cluster(&sim, json!({}));
    let spawner = cluster.spawner(user("jo"), "");
    assert!(
        !spawner.update_tokens(&tokens("early")).await.unwrap(),
        "no server, nothing to update"
    );
    spawner.start(request("jo", "")).await.unwrap();
    assert!(spawner.update_tokens(&tokens("access-2")).await.unwrap());
    let secret = sim.object("secrets", "default", "access-token-jo").unwrap();
    assert_eq!(
        secret_value(&secret, "access_token").as_deref(),
        Some("access-2")
    );
    assert_eq!(
        secret_value(&secret, "id_token").as_deref(),
        Some("id-access-2")
    );
    assert_eq!(
        secret_value(&secret, "jupyterhub-api-token").as_deref(),
        Some(API_TOKEN),
        "the API token stays"
    );
    let pod = sim.object("pods", "default", "jupyter-jo").unwrap();
    let mounted = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["secret"]["secretName"] == "access-token-jo");
    assert!(mounted, "the Secret is mounted: {pod:#}");
    spawner.stop(true).await.unwrap();
}

/// A boxed spawner, as a hub holds it, gets every update of a plain token stream, in order;
/// `None` (the grant is gone) ends the follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_tokens_updates_a_dyn_spawner() {
    let sim = sim().await;
    let cluster = cluster(&sim, json!({}));
    let boxed: Box<dyn Spawner> = Box::new(cluster.spawner(user("lee"), ""));
    let spawner: Arc<dyn Spawner> = Arc::from(boxed);
    spawner.start(request("lee", "")).await.unwrap();

    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Option<egi_spawner::UserTokens>>();
    let updates = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|update| (update, rx))
    });
    let follower = follow_tokens(Arc::clone(&spawner), updates);
    tx.send(Some(tokens("refresh-1"))).unwrap();
    tx.send(Some(tokens("refresh-2"))).unwrap();
    let landed = || async {
        let secret = sim
            .object("secrets", "default", "access-token-lee")
            .unwrap();
        secret_value(&secret, "access_token").as_deref() == Some("refresh-2")
            && secret_value(&secret, "id_token").as_deref() == Some("id-refresh-2")
    };
    assert!(
        eventually(Duration::from_secs(5), landed).await,
        "the last update is in the Secret"
    );
    tx.send(None).unwrap();
    tokio::time::timeout(Duration::from_secs(5), follower)
        .await
        .expect("the grant gone ends the follower")
        .unwrap();
    spawner.stop(true).await.unwrap();
}

/// A real refresh at a real OpenID provider (npm oidc-provider, 2 s tokens) lands in the Secret,
/// through the `checkin` adapters.
#[cfg(feature = "checkin")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkin_refresh_lands_in_the_secret() {
    use egi_checkin::{CheckinClient, ManagerOptions, MemoryStore, RefreshMargin, TokenManager};
    use egi_spawner::checkin::token_updates;
    use egi_test_harness::oidc::{self, OidcProvider, Options};
    use secrecy::ExposeSecret;

    let provider = OidcProvider::start(Options {
        rotate: true,
        access_ttl: Duration::from_secs(2),
    })
    .expect("oidc-provider starts (run .ci/install-peers)");
    let client = CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.into())
        .redirect_uri(oidc::REDIRECT_URI)
        .discover(&provider.issuer())
        .await
        .expect("discovery");
    let device = client.start_device_login().await.unwrap();
    provider.approve_device(&device.user_code, "kim").unwrap();
    let login = client
        .finish_device_login(&device, |_| std::future::ready(()))
        .await
        .unwrap();
    let manager = TokenManager::new(
        client,
        Arc::new(MemoryStore::new()),
        "kim",
        login.tokens,
        ManagerOptions::default().margin(RefreshMargin::new(Duration::from_millis(500), 0.25)),
    )
    .await
    .unwrap();

    let sim = sim().await;
    let cluster = cluster(&sim, json!({}));
    let spawner: Arc<dyn Spawner> = Arc::new(cluster.spawner(user("kim"), ""));
    let first = manager.access_token().await.unwrap();
    let mut start = request("kim", "");
    start.tokens = Some(egi_spawner::UserTokens::from(&first));
    spawner.start(start).await.unwrap();
    let secret = sim
        .object("secrets", "default", "access-token-kim")
        .unwrap();
    assert_eq!(
        secret_value(&secret, "access_token").as_deref(),
        Some(first.access_token().expose_secret()),
        "the first token, converted"
    );
    assert_eq!(
        secret_value(&secret, "id_token"),
        first
            .tokens()
            .id_token()
            .map(|t| t.expose_secret().to_owned()),
    );
    let follower = follow_tokens(Arc::clone(&spawner), token_updates(&manager));

    tokio::time::sleep(Duration::from_millis(1700)).await;
    let fresh = manager.access_token().await.unwrap();
    assert!(fresh.generation() > first.generation(), "refreshed");
    let want = fresh.access_token().expose_secret().to_owned();
    assert!(
        eventually(Duration::from_secs(5), || async {
            let secret = sim
                .object("secrets", "default", "access-token-kim")
                .unwrap();
            secret_value(&secret, "access_token").as_deref() == Some(want.as_str())
        })
        .await,
        "the refreshed token is in the Secret"
    );
    follower.abort();
    spawner.stop(true).await.unwrap();
}
