//! AARC-G002 group entitlements:
//! `<namespace>:group:<group>[:<subgroup>...][:role=<role>]#<authority>`, such as
//! `urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu`.
//!
//! The same claim carries capabilities (`urn:mace:egi.eu:res:rcauth#aai.egi.eu`) that are
//! not groups: [`Entitlement::parse`] tells them apart.
//!
//! egi-accounting reads the VO of an entitlement with its own small function, held to the
//! same rules by one set of test vectors (`src/testdata/aarc-g002.tsv`), so that a VO gated
//! in at login is the VO accounted.

use std::fmt;
use std::str::FromStr;

/// A parsed group entitlement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Entitlement {
    namespace: String,
    group: String,
    subgroups: Vec<String>,
    role: Option<String>,
    authority: String,
}

/// Why a string is not a group entitlement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// No `#<authority>` suffix, or an empty one.
    #[error("no group authority (#...)")]
    NoAuthority,
    /// More than one `#` (the group ends at the first).
    #[error("more than one '#'")]
    ExtraHash,
    /// A `role=` component that is not the last.
    #[error("a role before the last component")]
    RoleNotLast,
    /// Not a `urn:` with a `:group:` part (a capability, or something else).
    #[error("not a group entitlement")]
    NotAGroup,
    /// An empty group, subgroup or role component.
    #[error("empty component")]
    EmptyComponent,
}

impl Entitlement {
    /// Parses an AARC-G002 group entitlement. The namespace is everything before the first
    /// `:group:` and must be a URN (`urn:` in any case, RFC 8141); the group ends at the
    /// first `#`, which must be the only one; the role, if any, is the last component
    /// (`role=...`).
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let (body, authority) = s.split_once('#').ok_or(ParseError::NoAuthority)?;
        if authority.is_empty() {
            return Err(ParseError::NoAuthority);
        }
        if authority.contains('#') {
            return Err(ParseError::ExtraHash);
        }
        let (namespace, path) = body.split_once(":group:").ok_or(ParseError::NotAGroup)?;
        if !namespace
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("urn:"))
            || namespace.len() == 4
        {
            return Err(ParseError::NotAGroup);
        }
        let mut parts: Vec<&str> = path.split(':').collect();
        let role = match parts.last().and_then(|p| p.strip_prefix("role=")) {
            Some(role) => {
                parts.pop();
                Some(role)
            }
            None => None,
        };
        if role == Some("") || parts.is_empty() || parts.iter().any(|p| p.is_empty()) {
            return Err(ParseError::EmptyComponent);
        }
        if parts.iter().any(|p| p.starts_with("role=")) {
            return Err(ParseError::RoleNotLast);
        }
        Ok(Self {
            namespace: namespace.to_owned(),
            group: parts[0].to_owned(),
            subgroups: parts[1..].iter().map(|p| (*p).to_owned()).collect(),
            role: role.map(str::to_owned),
            authority: authority.to_owned(),
        })
    }

    /// The namespace, such as `urn:mace:egi.eu`.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The top-level group: the VO, such as `vo.notebooks.egi.eu`.
    pub fn vo(&self) -> &str {
        &self.group
    }

    /// The subgroups below the VO, outermost first.
    pub fn subgroups(&self) -> &[String] {
        &self.subgroups
    }

    /// The role, such as `member` or `vm_operator`, if given.
    pub fn role(&self) -> Option<&str> {
        self.role.as_deref()
    }

    /// The group authority, such as `aai.egi.eu`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The group path: the VO and its subgroups joined by `:` (`vo.x.eu:sub`).
    pub fn group_path(&self) -> String {
        std::iter::once(self.group.as_str())
            .chain(self.subgroups.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(":")
    }
}

impl FromStr for Entitlement {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Entitlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:group:{}", self.namespace, self.group_path())?;
        if let Some(role) = &self.role {
            write!(f, ":role={role}")?;
        }
        write!(f, "#{}", self.authority)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn check_in_examples() {
        let e =
            Entitlement::parse("urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu")
                .expect("valid");
        assert_eq!(e.namespace(), "urn:mace:egi.eu");
        assert_eq!(e.vo(), "vo.notebooks.egi.eu");
        assert!(e.subgroups().is_empty());
        assert_eq!(e.role(), Some("member"));
        assert_eq!(e.authority(), "aai.egi.eu");

        let e = Entitlement::parse(
            "urn:mace:egi.eu:group:vo.access.egi.eu:cloud:admins:role=vm_operator#aai.egi.eu",
        )
        .expect("valid");
        assert_eq!(e.vo(), "vo.access.egi.eu");
        assert_eq!(e.subgroups(), ["cloud", "admins"]);
        assert_eq!(e.group_path(), "vo.access.egi.eu:cloud:admins");
        assert_eq!(e.role(), Some("vm_operator"));

        let e =
            Entitlement::parse("urn:geant:dariah.eu:group:dariah#aai.dariah.eu").expect("no role");
        assert_eq!(e.role(), None);
        assert_eq!(e.namespace(), "urn:geant:dariah.eu");
    }

    /// The vectors egi-accounting's parser passes too (`record::vo::entitlement_vo`).
    #[test]
    fn shared_vectors() {
        let vectors = include_str!("testdata/aarc-g002.tsv");
        let mut cases = 0;
        for line in vectors.lines().filter(|l| !l.starts_with("--")) {
            let (vo, value) = line.split_once('\t').expect("VO<TAB>value");
            let parsed = Entitlement::parse(value);
            let got = parsed.as_ref().map(Entitlement::vo).unwrap_or("-");
            assert_eq!(got, vo, "{value}: {parsed:?}");
            cases += 1;
        }
        assert!(cases > 20);
    }

    #[test]
    fn rejects_capabilities_and_broken_strings() {
        assert_eq!(
            Entitlement::parse("urn:mace:egi.eu:res:rcauth#aai.egi.eu"),
            Err(ParseError::NotAGroup)
        );
        assert_eq!(
            Entitlement::parse("urn:mace:egi.eu:group:vo#"),
            Err(ParseError::NoAuthority)
        );
        assert_eq!(
            Entitlement::parse("urn:mace:egi.eu:group:vo"),
            Err(ParseError::NoAuthority)
        );
        assert_eq!(
            Entitlement::parse("urn:mace:egi.eu:group:#a"),
            Err(ParseError::EmptyComponent)
        );
        assert_eq!(
            Entitlement::parse("urn:mace:egi.eu:group:vo::x#a"),
            Err(ParseError::EmptyComponent)
        );
        assert_eq!(
            Entitlement::parse("urn:mace:egi.eu:group:vo:role=#a"),
            Err(ParseError::EmptyComponent)
        );
        assert_eq!(
            Entitlement::parse("urn:mace:egi.eu:group:role=member#a"),
            Err(ParseError::EmptyComponent)
        );
        assert_eq!(
            Entitlement::parse("http://x:group:vo#a"),
            Err(ParseError::NotAGroup)
        );
        assert_eq!(
            Entitlement::parse("urn::group:vo#a"),
            Err(ParseError::NotAGroup)
        );
        assert_eq!(
            Entitlement::parse("urn:group:vo#a"),
            Err(ParseError::NotAGroup)
        );
    }

    fn component() -> impl Strategy<Value = String> {
        // Percent-encoded URN characters, never ':' or '#', and not looking like a role.
        "[a-z0-9][a-zA-Z0-9._%-]{0,15}".prop_filter("not a role", |s| !s.starts_with("role="))
    }

    fn namespace() -> impl Strategy<Value = String> {
        prop::collection::vec("[a-z0-9][a-z0-9.-]{0,10}", 1..4)
            .prop_map(|parts| format!("urn:{}", parts.join(":")))
            .prop_filter("no group part inside", |ns| !ns.contains(":group"))
    }

    proptest! {
        #[test]
        fn display_round_trips(
            namespace in namespace(),
            group in component(),
            subgroups in prop::collection::vec(component(), 0..4),
            role in prop::option::of("[a-z_]{1,12}"),
            authority in "[a-z0-9][a-z0-9.-]{0,20}",
        ) {
            let text = format!(
                "{namespace}:group:{group}{}{}#{authority}",
                subgroups.iter().map(|s| format!(":{s}")).collect::<String>(),
                role.as_ref().map(|r| format!(":role={r}")).unwrap_or_default(),
            );
            let e = Entitlement::parse(&text).expect("generated entitlements are valid");
            prop_assert_eq!(e.namespace(), namespace.as_str());
            prop_assert_eq!(e.vo(), group.as_str());
            prop_assert_eq!(e.subgroups(), subgroups.as_slice());
            prop_assert_eq!(e.role(), role.as_deref());
            prop_assert_eq!(e.authority(), authority.as_str());
            prop_assert_eq!(e.to_string(), text);
        }

        #[test]
        fn never_panics_and_parsed_values_are_well_formed(s in "\\PC{0,80}") {
            if let Ok(e) = Entitlement::parse(&s) {
                prop_assert!(!e.vo().is_empty());
                prop_assert!(!e.authority().is_empty());
                prop_assert!(e.subgroups().iter().all(|g| !g.is_empty() && !g.contains(':')));
                prop_assert!(e.role().is_none_or(|r| !r.is_empty()));
                // What parses prints back to something that parses to the same value.
                prop_assert_eq!(Entitlement::parse(&e.to_string()), Ok(e));
            }
        }

        #[test]
        fn urn_like_noise_never_panics(s in "urn:[a-z:#=.]{0,40}") {
            let _ = Entitlement::parse(&s).map(|e| e.to_string());
        }
    }
}
