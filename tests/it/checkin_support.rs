//! Shared setup of the egi-checkin tests: a provider, a client of it, logins.

use std::sync::Arc;
use std::time::Duration;

use egi_checkin::{
    CheckinClient, HttpOptions, Login, ManagerOptions, MemoryStore, RefreshMargin, RetryPolicy,
    TokenManager,
};
use egi_test_harness::oidc::{self, OidcProvider, Options};

/// Starts a provider (Node takes about a second).
pub(crate) fn provider(rotate: bool, access_ttl_secs: u64) -> OidcProvider {
    OidcProvider::start(Options {
        rotate,
        access_ttl: Duration::from_secs(access_ttl_secs),
    })
    .expect("oidc-provider starts (run .ci/install-peers)")
}

/// Transport settings with a short timeout (the token endpoint's too), so that timeouts are
/// tested quickly.
pub(crate) fn http(timeout: Duration) -> HttpOptions {
    let mut options = HttpOptions::default();
    options.timeout = timeout;
    options.token_timeout = timeout;
    options.connect_timeout = Duration::from_secs(2);
    options
}

/// The confidential client, no leeway, JWKS refetched at once on an unknown key.
pub(crate) async fn client(p: &OidcProvider) -> CheckinClient {
    CheckinClient::builder(oidc::CLIENT_ID)
        .secret(oidc::CLIENT_SECRET.into())
        .redirect_uri(oidc::REDIRECT_URI)
        .leeway(Duration::ZERO)
        .jwks_min_refetch(Duration::ZERO)
        .http(http(Duration::from_secs(3)))
        .discover(&p.issuer())
        .await
        .expect("discovery")
}

/// A device login of `login`, approved through the provider's test endpoint.
pub(crate) async fn device_login(p: &OidcProvider, client: &CheckinClient, login: &str) -> Login {
    let device = client
        .start_device_login()
        .await
        .expect("device authorization");
    p.approve_device(&device.user_code, login).expect("approve");
    client
        .finish_device_login(&device, |_| std::future::ready(()))
        .await
        .expect("device login")
}

/// Refresh when less than half of a 2 s token is left; quick retries.
pub(crate) fn options() -> ManagerOptions {
    ManagerOptions::default()
        .margin(RefreshMargin::new(Duration::from_millis(500), 0.25))
        .retry(
            RetryPolicy::new(3, Duration::from_millis(50), Duration::from_millis(200))
                .cooldown(Duration::ZERO),
        )
}

/// A manager of a fresh device login of `login`, in memory.
pub(crate) async fn manager(p: &OidcProvider, client: &CheckinClient, login: &str) -> TokenManager {
    let login_result = device_login(p, client, login).await;
    TokenManager::new(
        client.clone(),
        Arc::new(MemoryStore::new()),
        login,
        login_result.tokens,
        options(),
    )
    .await
    .expect("manager")
}

/// Waits until the current token has expired (by the provider's lifetime).
pub(crate) async fn wait_expired(manager: &TokenManager) {
    let token = manager.current().expect("a token");
    let at = token.expires_at().expect("tokens say when they expire");
    if let Ok(left) = at.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left + Duration::from_millis(20)).await;
    }
}
