//! Who the user is: userinfo (and introspection) claims with Check-in's EGI claims, the
//! username policy, and VO gating with a primary group.

use std::collections::BTreeSet;

use serde::{Deserialize, Deserializer, Serialize};

use crate::entitlement::Entitlement;
use crate::error::{Error, Result};

/// A claim that Check-in sends as a string or as a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
        Null(()),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
        OneOrMany::Null(()) => Vec::new(),
    })
}

/// The EGI claims of a user, as userinfo (or introspection) returns them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct UserInfo {
    /// `sub`.
    pub sub: String,
    /// `voperson_id`: the stable user key (`<64 hex>@egi.eu`).
    #[serde(default)]
    pub voperson_id: Option<String>,
    /// `preferred_username` (not unique).
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// `name`.
    #[serde(default)]
    pub name: Option<String>,
    /// `given_name`.
    #[serde(default)]
    pub given_name: Option<String>,
    /// `family_name`.
    #[serde(default)]
    pub family_name: Option<String>,
    /// `email` (not unique).
    #[serde(default)]
    pub email: Option<String>,
    /// `email_verified`.
    #[serde(default)]
    pub email_verified: Option<bool>,
    /// `eduperson_entitlement` (being replaced by `entitlements`).
    #[serde(default, deserialize_with = "one_or_many")]
    pub eduperson_entitlement: Vec<String>,
    /// `entitlements`, the newer claim.
    #[serde(default, deserialize_with = "one_or_many")]
    pub entitlements: Vec<String>,
    /// `eduperson_scoped_affiliation`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub eduperson_scoped_affiliation: Vec<String>,
}

impl UserInfo {
    /// Both entitlement claims merged, without duplicates, in the order received.
    pub fn all_entitlements(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.entitlements
            .iter()
            .chain(&self.eduperson_entitlement)
            .map(String::as_str)
            .filter(|e| seen.insert(*e))
            .collect()
    }

    /// The group entitlements (capabilities and unparsable values left out).
    pub fn groups(&self) -> Vec<Entitlement> {
        self.all_entitlements()
            .into_iter()
            .filter_map(|e| Entitlement::parse(e).ok())
            .collect()
    }

    /// The VOs the user is a member of (any role), sorted, for groups issued by `authority`
    /// (`aai.egi.eu` for Check-in) in `namespace` (`urn:mace:egi.eu`).
    pub fn vos(&self, namespace: &str, authority: &str) -> Vec<String> {
        self.groups()
            .into_iter()
            .filter(|g| g.namespace() == namespace && g.authority() == authority)
            .map(|g| g.vo().to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

/// A claim the username can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UsernameClaim {
    /// `voperson_id`: stable and unique.
    VopersonId,
    /// `preferred_username`: what the EGI hub uses today; not unique.
    PreferredUsername,
    /// `sub`: unique; equals `voperson_id` today, but that use is being deprecated.
    Sub,
}

/// Which claim names the user: the first of a list that is present and non-empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsernamePolicy(Vec<UsernameClaim>);

impl Default for UsernamePolicy {
    /// `voperson_id`, falling back to `sub`.
    fn default() -> Self {
        Self(vec![UsernameClaim::VopersonId, UsernameClaim::Sub])
    }
}

impl UsernamePolicy {
    /// The first of `claims` that the user has.
    pub fn first_of(claims: impl IntoIterator<Item = UsernameClaim>) -> Self {
        Self(claims.into_iter().collect())
    }

    /// The username, or [`Error::MissingClaim`] naming the first claim of the policy.
    pub fn username<'a>(&self, user: &'a UserInfo) -> Result<&'a str> {
        self.0
            .iter()
            .find_map(|c| {
                match c {
                    UsernameClaim::VopersonId => user.voperson_id.as_deref(),
                    UsernameClaim::PreferredUsername => user.preferred_username.as_deref(),
                    UsernameClaim::Sub => Some(user.sub.as_str()),
                }
                .filter(|s| !s.is_empty())
            })
            .ok_or(Error::MissingClaim(match self.0.first() {
                Some(UsernameClaim::PreferredUsername) => "preferred_username",
                Some(UsernameClaim::Sub) => "sub",
                _ => "voperson_id",
            }))
    }
}

/// Which groups may log in. A user is admitted if one of their group entitlements (any
/// role) names one of the allowed group paths (a VO, or `vo:subgroup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoPolicy {
    allowed: Option<Vec<String>>,
    namespace: String,
    authority: String,
}

/// What [`VoPolicy::admit`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Membership {
    /// The allowed groups the user is in, in the policy's order.
    pub groups: Vec<String>,
    /// The first of them: the pod annotation `egi.eu/primary_group` (accounting reads it).
    /// `None` only for a policy that allows anyone and a user in no group.
    pub primary_group: Option<String>,
}

impl VoPolicy {
    /// Admits members of the given group paths (such as `vo.notebooks.egi.eu`), issued by
    /// Check-in (`urn:mace:egi.eu`, `aai.egi.eu`). The first allowed group the user is in is
    /// their primary group.
    pub fn allow<I, S>(groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            allowed: Some(groups.into_iter().map(Into::into).collect()),
            namespace: "urn:mace:egi.eu".into(),
            authority: "aai.egi.eu".into(),
        }
    }

    /// Admits everyone; the primary group is the user's first group.
    pub fn allow_anyone() -> Self {
        Self {
            allowed: None,
            ..Self::allow(Vec::<String>::new())
        }
    }

    /// Uses another namespace and group authority (another community AAI).
    #[must_use]
    pub fn issued_by(mut self, namespace: impl Into<String>, authority: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self.authority = authority.into();
        self
    }

    /// The user's allowed groups and primary group, or [`Error::NotAuthorized`].
    pub fn admit(&self, user: &UserInfo) -> Result<Membership> {
        let mine: Vec<String> = user
            .groups()
            .into_iter()
            .filter(|g| g.namespace() == self.namespace && g.authority() == self.authority)
            .map(|g| g.group_path())
            .collect();
        let groups: Vec<String> = match &self.allowed {
            None => {
                let mut seen = BTreeSet::new();
                mine.into_iter()
                    .filter(|g| seen.insert(g.clone()))
                    .collect()
            }
            Some(allowed) => allowed
                .iter()
                .filter(|a| mine.contains(a))
                .cloned()
                .collect(),
        };
        if self.allowed.is_some() && groups.is_empty() {
            return Err(Error::NotAuthorized);
        }
        Ok(Membership {
            primary_group: groups.first().cloned(),
            groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserInfo {
        serde_json::from_value(serde_json::json!({
            "sub": "0123abcd@egi.eu",
            "voperson_id": "0123abcd@egi.eu",
            "preferred_username": "alice",
            "email": "alice@example.org",
            "eduperson_entitlement": [
                "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu",
                "urn:mace:egi.eu:res:rcauth#aai.egi.eu",
            ],
            "entitlements": [
                "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu",
                "urn:mace:egi.eu:group:vo.notebooks.egi.eu:admins:role=member#aai.egi.eu",
                "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu",
                "urn:geant:other.eu:group:foreign#other.eu",
            ],
            "eduperson_scoped_affiliation": "member@example.org",
        }))
        .expect("valid userinfo")
    }

    #[test]
    fn merges_both_entitlement_claims() {
        let u = user();
        assert_eq!(u.all_entitlements().len(), 5);
        assert_eq!(u.groups().len(), 4);
        assert_eq!(
            u.vos("urn:mace:egi.eu", "aai.egi.eu"),
            ["vo.access.egi.eu", "vo.notebooks.egi.eu"]
        );
        assert_eq!(u.eduperson_scoped_affiliation, ["member@example.org"]);
        let only_old: UserInfo = serde_json::from_value(serde_json::json!({
            "sub": "s", "eduperson_entitlement": "urn:mace:egi.eu:group:vo.x.eu#aai.egi.eu", "entitlements": null
        }))
        .expect("string claim");
        assert_eq!(only_old.vos("urn:mace:egi.eu", "aai.egi.eu"), ["vo.x.eu"]);
    }

    #[test]
    fn usernames() {
        let mut u = user();
        assert_eq!(
            UsernamePolicy::default().username(&u).ok(),
            Some("0123abcd@egi.eu")
        );
        let hub = UsernamePolicy::first_of([UsernameClaim::PreferredUsername]);
        assert_eq!(hub.username(&u).ok(), Some("alice"));
        u.preferred_username = None;
        assert!(matches!(
            hub.username(&u),
            Err(Error::MissingClaim("preferred_username"))
        ));
        u.voperson_id = Some(String::new());
        assert_eq!(
            UsernamePolicy::default().username(&u).ok(),
            Some("0123abcd@egi.eu")
        );
    }

    #[test]
    fn vo_gating_and_primary_group() {
        let u = user();
        let m = VoPolicy::allow(["vo.notebooks.egi.eu", "vo.access.egi.eu"])
            .admit(&u)
            .expect("member");
        assert_eq!(m.primary_group.as_deref(), Some("vo.notebooks.egi.eu"));
        assert_eq!(m.groups.len(), 2);
        let m = VoPolicy::allow(["vo.other.eu", "vo.access.egi.eu"])
            .admit(&u)
            .expect("member");
        assert_eq!(m.primary_group.as_deref(), Some("vo.access.egi.eu"));
        let m = VoPolicy::allow(["vo.notebooks.egi.eu:admins"])
            .admit(&u)
            .expect("subgroup");
        assert_eq!(m.groups, ["vo.notebooks.egi.eu:admins"]);
        assert!(matches!(
            VoPolicy::allow(["vo.other.eu"]).admit(&u),
            Err(Error::NotAuthorized)
        ));
        // A group of another authority does not count.
        assert!(VoPolicy::allow(["foreign"]).admit(&u).is_err());
        assert!(
            VoPolicy::allow(["foreign"])
                .issued_by("urn:geant:other.eu", "other.eu")
                .admit(&u)
                .is_ok()
        );
        let anyone = VoPolicy::allow_anyone()
            .admit(&UserInfo::default())
            .expect("anyone");
        assert_eq!(anyone.primary_group, None);
        assert_eq!(
            VoPolicy::allow_anyone()
                .admit(&u)
                .expect("anyone")
                .primary_group
                .as_deref(),
            Some("vo.notebooks.egi.eu")
        );
    }
}
