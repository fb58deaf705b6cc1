//! KubeSpawner's `profile_list`, with EGI's `vo_claims`.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Overrides;

/// One entry of `profile_list`: a named set of overrides the user can pick.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    /// Name shown in the spawn form.
    pub display_name: String,
    /// The value of `user_options["profile"]`; defaults to a slug of `display_name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slug: Option<String>,
    /// Description shown in the spawn form (HTML in KubeSpawner's form).
    pub description: String,
    /// Whether this is the profile used when the user picks none (else the first visible).
    pub default: bool,
    /// Settings this profile changes (maps are merged, a `null` value removes a key; other
    /// values replace).
    pub kubespawner_override: Overrides,
    /// Further choices within the profile (option name to option), applied after the profile's
    /// own overrides, in the order given.
    pub profile_options: OrderedMap<ProfileOption>,
    /// EGI: the profile is visible only to users in one of these groups (VOs); empty means
    /// everyone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vo_claims: Vec<String>,
}

impl Profile {
    /// The profile's slug: `slug`, or a slug of `display_name`.
    pub fn slug(&self) -> String {
        match &self.slug {
            Some(slug) => slug.clone(),
            None => crate::naming::slugify(&self.display_name),
        }
    }

    /// Whether a user in `groups` may see and use this profile.
    pub fn visible_to(&self, groups: &[String]) -> bool {
        self.vo_claims.is_empty() || self.vo_claims.iter().any(|vo| groups.contains(vo))
    }

    /// The choice applied for `option` when the user picks none: the one marked default, else
    /// the first.
    pub fn default_choice(option: &ProfileOption) -> Option<&str> {
        option
            .choices
            .iter()
            .find(|(_, c)| c.default)
            .or_else(|| option.choices.iter().next())
            .map(|(key, _)| key.as_str())
    }
}

/// One option of a profile (`profile_options.<name>`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileOption {
    /// Label shown in the spawn form.
    pub display_name: String,
    /// The choices, by key (the value of the user option).
    pub choices: OrderedMap<ProfileChoice>,
}

/// One choice of a profile option.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileChoice {
    /// Label shown in the spawn form.
    pub display_name: String,
    /// Whether this choice applies when the user picks none (else the first choice).
    pub default: bool,
    /// Settings this choice changes, applied after the profile's.
    pub kubespawner_override: Overrides,
}

/// A string-keyed map that keeps the order of its source (KubeSpawner reads dicts in insertion
/// order: the first choice is the default one, options apply in order). Duplicate keys are
/// rejected. Read the configuration from text: a `serde_json::Value` has already sorted its
/// keys.
#[derive(Clone, Debug, PartialEq)]
pub struct OrderedMap<T>(pub Vec<(String, T)>);

impl<T> Default for OrderedMap<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T> OrderedMap<T> {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&T> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T: Serialize> Serialize for OrderedMap<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OrderedMap<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for OrderedVisitor<T> {
            type Value = OrderedMap<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut entries: Vec<(String, T)> = Vec::new();
                while let Some((key, value)) = access.next_entry::<String, T>()? {
                    if entries.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("duplicate key {key:?}")));
                    }
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}
