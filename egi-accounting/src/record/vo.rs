//! Which VO a pod is accounted to (the APEL `FQAN` field).
//!
//! The pod carries a value (by default its `egi.eu/primary_group` annotation, chosen by
//! `fqan_key`); the `[VO]` section of the configuration maps values to VO names. The Python
//! tool assigned the *last* VO of that section to every mapped pod; here each value maps to
//! its own VO; a value listed under two VOs goes to the later one, as in the Python tool
//! (its mapping dictionary is filled line by line). An unmapped value that is an AARC-G002 entitlement
//! (`urn:mace:egi.eu:group:<VO>[:<subgroup>...][:role=<role>]#<authority>`) is accounted to
//! the VO it names; any other unmapped value is sent as is, which APEL reads as a VO name
//! (it does not start with `/`).

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Which pod attribute gives the value mapped to a VO (the Python tool's `fqan_key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FqanKey {
    /// The `egi.eu/primary_group` annotation (default).
    #[default]
    PrimaryGroup,
    /// The `hub.jupyter.org/username` annotation.
    GlobalUserName,
    /// The `egi.eu/flavor` annotation.
    Flavor,
    /// The pod's namespace.
    Namespace,
    /// The pod's name.
    Machine,
    /// The notebook container's image.
    ImageId,
}

impl FqanKey {
    /// Parses the Python tool's attribute names (`primary_group`, `global_user_name`,
    /// `flavor`, `namespace`, `machine`, `image_id`).
    pub fn parse(text: &str) -> Result<Self> {
        Ok(match text.trim() {
            "primary_group" => Self::PrimaryGroup,
            "global_user_name" => Self::GlobalUserName,
            "flavor" => Self::Flavor,
            "namespace" => Self::Namespace,
            "machine" => Self::Machine,
            "image_id" => Self::ImageId,
            other => {
                return Err(Error::Config(format!(
                    "fqan_key {other:?}: expected primary_group, global_user_name, flavor, \
                     namespace, machine or image_id"
                )));
            }
        })
    }
}

/// Values mapped to VO names, from lines `VO=value1,value2` of the `[VO]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoMap {
    by_value: BTreeMap<String, String>,
}

impl VoMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Maps each comma-separated value of `values` to `vo`. A value already mapped to a
    /// different VO is mapped to `vo` now (lines are inserted in file order, so the later
    /// line wins, as in the Python tool); each such value is returned as `(value, previous
    /// VO)` for the caller to warn about.
    pub fn insert(&mut self, vo: &str, values: &str) -> Result<Vec<(String, String)>> {
        let vo = vo.trim();
        if vo.is_empty() {
            return Err(Error::Config("empty VO name in the [VO] section".into()));
        }
        let mut moved = Vec::new();
        for value in values.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            if let Some(old) = self.by_value.insert(value.to_owned(), vo.to_owned())
                && old != vo
            {
                moved.push((value.to_owned(), old));
            }
        }
        Ok(moved)
    }

    /// The VO a pod value is accounted to (see the module documentation), or `None` for
    /// an empty value.
    pub fn resolve(&self, value: &str) -> Option<String> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        if let Some(vo) = self.by_value.get(value) {
            return Some(vo.clone());
        }
        Some(entitlement_vo(value).unwrap_or(value).to_owned())
    }
}

/// The VO named by an AARC-G002 group entitlement, e.g. `vo.notebooks.egi.eu` for
/// `urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu`.
///
/// The rules of egi-checkin's `Entitlement::parse` (which gates VOs at login), held to it by
/// shared test vectors: `urn:` in any case with a namespace after it, the first `:group:`,
/// exactly one `#` with a non-empty authority after it, no empty component, `role=` only
/// as the last component. Anything else names no VO.
pub fn entitlement_vo(value: &str) -> Option<&str> {
    let (body, authority) = value.split_once('#')?;
    if authority.is_empty() || authority.contains('#') {
        return None;
    }
    let (namespace, path) = body.split_once(":group:")?;
    if namespace.len() <= 4 || !namespace.get(..4)?.eq_ignore_ascii_case("urn:") {
        return None;
    }
    let mut parts: Vec<&str> = path.split(':').collect();
    if parts.last().is_some_and(|p| p.starts_with("role=")) && parts.pop() == Some("role=") {
        return None;
    }
    if parts.is_empty() || parts.iter().any(|p| p.is_empty() || p.starts_with("role=")) {
        return None;
    }
    Some(parts[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_maps_to_its_own_vo() {
        let mut m = VoMap::new();
        m.insert("vo.notebooks.egi.eu", "group-a, group-b").unwrap();
        m.insert("vo.access.egi.eu", "group-c").unwrap();
        assert_eq!(m.resolve("group-a").as_deref(), Some("vo.notebooks.egi.eu"));
        assert_eq!(
            m.resolve(" group-b ").as_deref(),
            Some("vo.notebooks.egi.eu")
        );
        assert_eq!(m.resolve("group-c").as_deref(), Some("vo.access.egi.eu"));
        assert_eq!(m.resolve("unmapped").as_deref(), Some("unmapped"));
        assert_eq!(m.resolve("  "), None);
    }

    #[test]
    fn a_value_listed_twice_goes_to_the_later_vo() {
        let mut m = VoMap::new();
        assert!(m.insert("a", "x, y").unwrap().is_empty());
        assert!(m.insert("a", "x").unwrap().is_empty(), "same VO again");
        assert_eq!(
            m.insert("b", "x").unwrap(),
            [("x".to_owned(), "a".to_owned())]
        );
        assert_eq!(m.resolve("x").as_deref(), Some("b"));
        assert_eq!(m.resolve("y").as_deref(), Some("a"));
        assert!(m.insert(" ", "y").is_err());
    }

    #[test]
    fn unmapped_entitlements_give_their_vo() {
        let m = VoMap::new();
        let urn = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu";
        assert_eq!(m.resolve(urn).as_deref(), Some("vo.notebooks.egi.eu"));
        assert_eq!(
            entitlement_vo("urn:mace:egi.eu:group:vo.example.org:sub:role=vm_operator#aai.egi.eu"),
            Some("vo.example.org")
        );
        assert_eq!(
            entitlement_vo("urn:mace:egi.eu:res:rcauth#aai.egi.eu"),
            None
        );
        assert_eq!(entitlement_vo("urn:mace:egi.eu:group:#aai.egi.eu"), None);
        assert_eq!(entitlement_vo("vo.example.org"), None);
    }

    /// The vectors egi-checkin's parser (`Entitlement::parse`, VO gating at login) passes
    /// too: a VO gated in at login is accounted under that VO.
    #[test]
    fn vectors_shared_with_egi_checkin() {
        let vectors = include_str!("../../../egi-checkin/src/testdata/aarc-g002.tsv");
        let mut cases = 0;
        for line in vectors.lines().filter(|l| !l.starts_with("--")) {
            let (vo, value) = line.split_once('\t').expect("VO<TAB>value");
            assert_eq!(entitlement_vo(value).unwrap_or("-"), vo, "{value}");
            cases += 1;
        }
        assert!(cases > 20);
    }

    #[test]
    fn mapped_entitlement_wins_over_parsing() {
        let mut m = VoMap::new();
        let urn = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu";
        m.insert("notebooks", urn).unwrap();
        assert_eq!(m.resolve(urn).as_deref(), Some("notebooks"));
    }

    #[test]
    fn fqan_keys_of_the_python_tool_parse() {
        assert_eq!(
            FqanKey::parse("primary_group").unwrap(),
            FqanKey::PrimaryGroup
        );
        assert_eq!(
            FqanKey::parse("global_user_name").unwrap(),
            FqanKey::GlobalUserName
        );
        assert!(FqanKey::parse("vo").is_err());
    }
}
