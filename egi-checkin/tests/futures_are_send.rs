//! Every future a gateway spawns is `Send` (checked at compile time: the functions below
//! are type-checked, never run).

use std::sync::Arc;
use std::time::Duration;

use egi_checkin::{
    CheckinClient, DeviceAuthorization, EncryptedFileStore, KeepFreshOptions, ManagerOptions,
    MemoryStore, PendingLogin, TokenManager, TokenRegistry, TokenSet, TokenStore,
};
use url::Url;

fn assert_send<T: Send>(_: T) {}

#[allow(dead_code, clippy::needless_pass_by_value)]
fn client_futures(
    client: CheckinClient,
    pending: PendingLogin,
    callback: Url,
    device: DeviceAuthorization,
    tokens: TokenSet,
) {
    assert_send(CheckinClient::builder("id").discover("https://aai.egi.eu/auth/realms/egi"));
    assert_send(client.complete_login(pending, &callback));
    assert_send(client.start_device_login());
    assert_send(client.finish_device_login(&device, tokio::time::sleep));
    assert_send(client.refresh(&tokens));
    assert_send(client.user_info(tokens.access_token(), None));
}

#[allow(dead_code, clippy::needless_pass_by_value)]
fn manager_and_registry_futures(
    client: CheckinClient,
    manager: TokenManager,
    registry: TokenRegistry,
    tokens: TokenSet,
    store: EncryptedFileStore,
) {
    let memory: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
    assert_send(TokenManager::new(
        client.clone(),
        Arc::clone(&memory),
        "alice",
        tokens.clone(),
        ManagerOptions::default(),
    ));
    assert_send(TokenManager::resume(
        client,
        memory,
        "alice",
        ManagerOptions::default(),
    ));
    assert_send(manager.access_token());
    assert_send(manager.replace(tokens.clone()));
    assert_send(registry.login("alice", tokens.clone()));
    assert_send(registry.get("alice"));
    assert_send(registry.logout("alice"));
    assert_send(store.save("alice", &tokens));
    // Handles held across `.await` in a gateway's tasks.
    assert_send(manager.keep_fresh(KeepFreshOptions::default()));
    assert_send(registry);
    assert_send(async move {
        let token = manager.access_token().await?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        manager.force_refresh(&token).await
    });
}

#[test]
fn public_futures_are_send() {
    // The checks are the compilation of the functions above.
    let _ = (client_futures, manager_and_registry_futures);
}
