//! Who a server is for ([`User`]) and the Check-in tokens placed in its Secret ([`UserTokens`]).

use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The user a server is spawned for, as the hub knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The hub's user name (raw, unescaped; may be an e-mail or a Check-in `sub`).
    pub name: String,
    /// The hub's numeric user id, if the hub has one (`{userid}` in templates).
    pub id: Option<u64>,
    /// Groups the user belongs to: the VOs from Check-in entitlements. Profiles with
    /// `vo_claims` are shown only to users in one of them.
    pub groups: Vec<String>,
    /// The primary group (VO) used for accounting, written to the `egi.eu/primary_group`
    /// annotation when set.
    pub primary_group: Option<String>,
}

/// The user's Check-in tokens, written to the server's token Secret (EGI's
/// `access-token-<user>` layout: keys `access_token` and `id_token`).
#[derive(Clone)]
pub struct UserTokens {
    /// The current access token.
    pub access_token: SecretString,
    /// The current ID token, if any.
    pub id_token: Option<SecretString>,
}

impl fmt::Debug for UserTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserTokens")
            .field("access_token", &"[redacted]")
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}
