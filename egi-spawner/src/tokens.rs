//! Keeps a server's tokens current: [`follow_tokens`] hands every token update to
//! [`Spawner::update_tokens`], whatever the spawner and wherever the tokens come from (with the
//! `checkin` feature, [`crate::checkin::token_updates`] turns egi-checkin's `TokenManager`
//! into such updates).

use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::{Spawner, UserTokens};

/// Follows `updates` and gives every new set of tokens to `spawner`
/// ([`Spawner::update_tokens`]), until the stream ends or yields `None` (the grant is gone).
///
/// Updates are applied one at a time, in order; a server that is not running is skipped
/// (its next start takes the tokens from its [`StartRequest`](crate::spawner::StartRequest)).
/// Errors are logged, never the tokens, and the next update retries. The task runs in the
/// caller's current `tracing` span (put the user's name there); abort the handle to stop
/// following early.
///
/// Needs a Tokio runtime.
///
/// ```no_run
/// use std::sync::Arc;
///
/// use egi_spawner::{Spawner, UserTokens, follow_tokens};
/// use tokio::sync::watch;
///
/// // Any spawner, and tokens from wherever the hub refreshes them.
/// fn keep_current(
///     spawner: Arc<dyn Spawner>,
///     refreshed: watch::Receiver<Option<UserTokens>>,
/// ) -> tokio::task::JoinHandle<()> {
///     let updates = futures_util::stream::unfold(refreshed, |mut rx| async move {
///         rx.changed().await.ok()?;
///         let tokens = rx.borrow_and_update().clone();
///         Some((tokens, rx))
///     });
///     follow_tokens(spawner, updates)
/// }
/// ```
pub fn follow_tokens(
    spawner: Arc<dyn Spawner>,
    updates: impl Stream<Item = Option<UserTokens>> + Send + 'static,
) -> JoinHandle<()> {
    let task = async move {
        let mut updates = std::pin::pin!(updates);
        while let Some(update) = updates.next().await {
            let Some(tokens) = update else {
                tracing::info!("grant gone; token updates stop");
                return;
            };
            match spawner.update_tokens(&tokens).await {
                Ok(true) => tracing::debug!("server tokens updated"),
                Ok(false) => tracing::debug!("no server running; tokens kept for its next start"),
                Err(error) => tracing::warn!(%error, "server tokens not updated"),
            }
        }
    };
    tokio::spawn(task.instrument(tracing::Span::current()))
}
