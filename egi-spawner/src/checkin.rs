//! Adapters from egi-checkin (the `checkin` feature): its tokens, memberships and token
//! manager as this crate's [`UserTokens`], [`User`] and token updates for
//! [`follow_tokens`](crate::follow_tokens).
//!
//! ```no_run
//! # async fn run(
//! #     manager: &egi_checkin::TokenManager,
//! #     userinfo: &egi_checkin::UserInfo,
//! #     spawner: std::sync::Arc<dyn egi_spawner::Spawner>,
//! # ) -> Result<(), egi_checkin::Error> {
//! use egi_checkin::VoPolicy;
//! use egi_spawner::{User, UserTokens, checkin::token_updates, follow_tokens};
//!
//! let membership = VoPolicy::allow(["vo.notebooks.egi.eu"]).admit(userinfo)?;
//! let user = User::from_checkin(userinfo.sub.clone(), &membership); // for the spawner
//! let token = manager.access_token().await?;
//! let tokens = UserTokens::from(&token); // for StartRequest::tokens
//! // After the start: every refresh lands in the running server's Secret.
//! let follower = follow_tokens(spawner, token_updates(manager));
//! # let _ = (user, tokens, follower);
//! # Ok(())
//! # }
//! ```

use futures_util::Stream;

use crate::{User, UserTokens};

impl From<&egi_checkin::Token> for UserTokens {
    /// The token's access token and, if it has one, its ID token.
    fn from(token: &egi_checkin::Token) -> UserTokens {
        UserTokens {
            access_token: token.access_token().clone(),
            id_token: token.tokens().id_token().cloned(),
        }
    }
}

impl User {
    /// The user `name` (the hub's user name, as the hub's username policy chose it from
    /// Check-in's claims) with the groups Check-in admitted them for: their allowed VOs as
    /// `groups` (for profiles' `vo_claims`) and the primary one as `primary_group` (the
    /// `egi.eu/primary_group` annotation accounting reads). No numeric id.
    pub fn from_checkin(name: impl Into<String>, membership: &egi_checkin::Membership) -> User {
        User {
            name: name.into(),
            id: None,
            groups: membership.groups.clone(),
            primary_group: membership.primary_group.clone(),
        }
    }
}

/// The token updates of `manager` for [`follow_tokens`](crate::follow_tokens): its current
/// token first, then each new one it hands out ([`egi_checkin::TokenManager::subscribe`]);
/// `None` when the grant is gone. Tokens that change faster than they are consumed are
/// skipped to the latest. Ends when the manager is dropped.
pub fn token_updates(
    manager: &egi_checkin::TokenManager,
) -> impl Stream<Item = Option<UserTokens>> + Send + 'static {
    let tokens = manager.subscribe();
    futures_util::stream::unfold((tokens, true), |(mut tokens, first)| async move {
        if !first && tokens.changed().await.is_err() {
            return None;
        }
        let update = tokens.borrow_and_update().as_ref().map(UserTokens::from);
        Some((update, (tokens, false)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkin_membership_makes_the_spawner_user() {
        let userinfo: egi_checkin::UserInfo = serde_json::from_value(serde_json::json!({
            "sub": "0123abcd@egi.eu",
            "entitlements": [
                "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu",
                "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu",
            ],
        }))
        .unwrap();
        let membership = egi_checkin::VoPolicy::allow(["vo.notebooks.egi.eu", "vo.access.egi.eu"])
            .admit(&userinfo)
            .unwrap();
        let user = User::from_checkin(userinfo.sub, &membership);
        assert_eq!(
            user,
            User {
                name: "0123abcd@egi.eu".to_owned(),
                id: None,
                groups: vec![
                    "vo.notebooks.egi.eu".to_owned(),
                    "vo.access.egi.eu".to_owned()
                ],
                primary_group: Some("vo.notebooks.egi.eu".to_owned()),
            }
        );
    }
}
