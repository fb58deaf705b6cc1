//! Keeps a running server's token Secret current: each token the user's
//! [`egi_checkin::TokenManager`] refreshes is written into the Secret (EGI's
//! `access-token-<user>` layout), which the kubelet projects into the pod's mounted files.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::spawner::KubeSpawner;
use crate::UserTokens;

/// Follows `tokens` (from [`egi_checkin::TokenManager::subscribe`]) and writes every new token
/// into the server's Secret until the manager goes away or the grant is gone. A server that
/// is not running is skipped; errors are logged (never the token) and the next token retries.
pub fn follow_tokens(
    spawner: Arc<KubeSpawner>,
    mut tokens: watch::Receiver<Option<egi_checkin::Token>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let current = tokens.borrow_and_update().clone();
            let Some(token) = current else {
                tracing::info!(user = %spawner.user().name, "grant gone; token updates stop");
                return;
            };
            let update = UserTokens {
                access_token: token.access_token().clone(),
                id_token: token.tokens().id_token().cloned(),
            };
            match spawner.update_tokens(&update).await {
                Ok(true) => {
                    tracing::debug!(user = %spawner.user().name, generation = token.generation(), "token secret updated")
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(user = %spawner.user().name, %error, "token secret not updated")
                }
            }
            if tokens.changed().await.is_err() {
                return;
            }
        }
    })
}
