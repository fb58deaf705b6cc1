//! Users' Check-in tokens: one egi-checkin [`TokenRegistry`] keeps every logged-in user's
//! tokens fresh in the background (one refresh per user per expiry, spread over the refresh
//! margin) and persisted in its store; egi-spawner's Check-in adapter turns a manager's
//! updates into the token updates a server follows.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use egi_checkin::{Freshness, TokenRegistry, TokenSet};
use egi_spawner::UserTokens;
use futures_util::StreamExt;

use super::servers::TokenUpdates;

/// The gateway's side of the token registry.
#[derive(Debug)]
pub struct Tokens {
    registry: TokenRegistry,
    /// Users whose grant ended (a token update said so, or the registry had none when a
    /// server needed it): the registry forgets them, the gateway remembers until they log in.
    gone: Arc<Mutex<BTreeSet<String>>>,
}

impl Tokens {
    /// Tokens kept by `registry`.
    pub fn new(registry: TokenRegistry) -> Self {
        Tokens {
            registry,
            gone: Arc::default(),
        }
    }

    fn gone(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.gone.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `updates`, noting the user's grant as gone when they end with `None`.
    fn watched(&self, user: &str, updates: TokenUpdates) -> TokenUpdates {
        let gone = self.gone.clone();
        let user = user.to_owned();
        updates
            .inspect(move |update| {
                if update.is_none() {
                    gone.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(user.clone());
                }
            })
            .boxed()
    }

    /// The registry.
    pub fn registry(&self) -> &TokenRegistry {
        &self.registry
    }

    /// Records a login's tokens for `user` (replacing earlier ones) and keeps them fresh.
    pub async fn login(&self, user: &str, tokens: TokenSet) -> egi_checkin::Result<()> {
        self.registry.login(user, tokens).await?;
        self.gone().remove(user);
        Ok(())
    }

    /// The user's current tokens and their future updates, for a server; `None` if the user
    /// has no live grant (an API-created user, or one who must log in again).
    pub async fn for_server(&self, user: &str) -> Option<(UserTokens, TokenUpdates)> {
        let manager = match self.registry.get(user).await {
            Ok(Some(manager)) => manager,
            Ok(None) => return None,
            Err(error) => {
                tracing::warn!(user, %error, "tokens unavailable; the server starts without them");
                return None;
            }
        };
        let token = match manager.access_token().await {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(user, %error, "no fresh token; the server starts without them");
                return None;
            }
        };
        let updates = self.watched(user, egi_spawner::checkin::token_updates(&manager).boxed());
        Some((UserTokens::from(&token), updates))
    }

    /// Token updates only (for servers adopted after a restart, or after a new login).
    pub async fn updates(&self, user: &str) -> Option<TokenUpdates> {
        let manager = self.registry.get(user).await.ok().flatten()?;
        Some(self.watched(user, egi_spawner::checkin::token_updates(&manager).boxed()))
    }

    /// Whether the user's grant is alive, refreshing, or gone.
    pub fn freshness(&self, user: &str) -> Option<Freshness> {
        match self.registry.freshness(user) {
            None if self.gone().contains(user) => Some(Freshness::LoginNeeded),
            other => other,
        }
    }

    /// How many of `users` must log in again.
    pub fn login_needed<'a>(&self, users: impl IntoIterator<Item = &'a str>) -> usize {
        users
            .into_iter()
            .filter(|u| matches!(self.freshness(u), Some(Freshness::LoginNeeded)))
            .count()
    }

    /// Forgets the user's tokens (logout); returns the refresh token to revoke, if any.
    pub async fn logout(&self, user: &str) -> Option<TokenSet> {
        let current = self
            .registry
            .get(user)
            .await
            .ok()
            .flatten()
            .and_then(|m| m.current())
            .map(|t| t.tokens().clone());
        self.gone().remove(user);
        if let Err(error) = self.registry.logout(user).await {
            tracing::warn!(user, %error, "stored tokens not removed");
        }
        current
    }
}
