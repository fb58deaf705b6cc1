//! Value types of the configuration: byte sizes (JupyterHub's `ByteSpecification`), resource
//! quantities, environment values, and how an override patches a setting.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::EnvVarSource;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// A memory size in bytes. Deserialises like JupyterHub's `ByteSpecification`: an integer (or
/// float, truncated) of bytes, or a number with a suffix `K`, `M`, `G` or `T`, which are powers
/// of **1024** (`"1G"` is 1073741824 bytes). The Kubernetes spellings `Ki`, `Mi`, `Gi`, `Ti` are
/// accepted with the same meaning. Serialises as an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses JupyterHub's byte specification (`"512M"`, `"1.5G"`, `"2Gi"`, `"1024"`).
    pub fn parse(spec: &str) -> Option<ByteSize> {
        let spec = spec.trim();
        if let Ok(n) = spec.parse::<u64>() {
            return Some(ByteSize(n));
        }
        let number = spec.strip_suffix('i').unwrap_or(spec);
        let (number, unit) = match number.chars().last()? {
            'K' => (&number[..number.len() - 1], 1u64 << 10),
            'M' => (&number[..number.len() - 1], 1 << 20),
            'G' => (&number[..number.len() - 1], 1 << 30),
            'T' => (&number[..number.len() - 1], 1 << 40),
            _ => return None,
        };
        let value: f64 = number.trim().parse().ok()?;
        let bytes = value * unit as f64;
        // as in Python's int(): truncate
        (value.is_finite() && value >= 0.0 && bytes < u64::MAX as f64)
            .then_some(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let invalid = |v: &dyn fmt::Display| {
            serde::de::Error::custom(format!(
                "{v} is not a valid memory specification: use an integer of bytes or a number \
                 with suffix K, M, G or T (powers of 1024)"
            ))
        };
        match Value::deserialize(deserializer)? {
            Value::Number(n) => match (n.as_u64(), n.as_f64()) {
                (Some(u), _) => Ok(ByteSize(u)),
                (None, Some(f)) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => {
                    Ok(ByteSize(f as u64))
                }
                _ => Err(invalid(&n)),
            },
            Value::String(s) => ByteSize::parse(&s).ok_or_else(|| invalid(&format!("{s:?}"))),
            other => Err(invalid(&other)),
        }
    }
}

/// A Kubernetes resource quantity for extra resources (`"1"`, `"500m"`, `"2Gi"`); numbers are
/// accepted and kept as their decimal text.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ResourceQuantity(pub String);

impl<'de> Deserialize<'de> for ResourceQuantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Self(s)),
            Value::Number(n) => Ok(Self(n.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "{other} is not a resource quantity (a string like \"1\" or \"500m\", or a number)"
            ))),
        }
    }
}

/// The value of one admin environment variable: a plain string (numbers and booleans are
/// taken as their text) or a Kubernetes `valueFrom` source (`{"valueFrom": {"secretKeyRef":
/// ...}}`), as KubeSpawner accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum EnvValue {
    /// A literal value (templates like `{username}` are expanded).
    Value(String),
    /// A reference resolved by the kubelet.
    From(Box<EnvVarSource>),
}

impl Serialize for EnvValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Value(v) => serializer.serialize_str(v),
            Self::From(source) => {
                let mut map = BTreeMap::new();
                map.insert("valueFrom", source);
                map.serialize(serializer)
            }
        }
    }
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(deserializer)? {
            Value::String(s) => Ok(Self::Value(s)),
            Value::Number(n) => Ok(Self::Value(n.to_string())),
            Value::Bool(b) => Ok(Self::Value(b.to_string())),
            Value::Object(mut map) => {
                map.remove("name");
                match (map.remove("value"), map.remove("valueFrom")) {
                    _ if !map.is_empty() => Err(D::Error::custom(format!(
                        "unknown key(s) {:?} in an environment variable (use value or valueFrom)",
                        map.keys().collect::<Vec<_>>()
                    ))),
                    (Some(Value::String(s)), None) => Ok(Self::Value(s)),
                    (None, Some(source)) => serde_json::from_value(source)
                        .map(|s| Self::From(Box::new(s)))
                        .map_err(D::Error::custom),
                    _ => Err(D::Error::custom(
                        "an environment variable needs a string value or a valueFrom",
                    )),
                }
            }
            other => Err(D::Error::custom(format!(
                "{other} is not an environment value (a string or {{\"valueFrom\": ...}})"
            ))),
        }
    }
}

/// How a `kubespawner_override` entry changes one setting: maps are merged (a `null` value
/// removes the key, as KubeSpawner's `recursive_update`); everything else is replaced.
pub trait Overridable {
    /// The type of the override value.
    type Patch: Clone + fmt::Debug + PartialEq + Serialize + for<'de> Deserialize<'de>;
    /// Applies the override.
    fn apply(&mut self, patch: &Self::Patch);
}

macro_rules! replaced {
    ($($t:ty),*) => {$(
        impl Overridable for $t {
            type Patch = $t;
            fn apply(&mut self, patch: &$t) {
                self.clone_from(patch);
            }
        }
    )*};
}
replaced!(String, u16, bool);

impl<T> Overridable for Vec<T>
where
    T: Clone + fmt::Debug + PartialEq + Serialize + for<'de> Deserialize<'de>,
{
    type Patch = Vec<T>;
    fn apply(&mut self, patch: &Vec<T>) {
        self.clone_from(patch);
    }
}

/// An optional setting: an override sets it, or unsets it with `null` (as KubeSpawner's
/// `None`).
impl<T> Overridable for Option<T>
where
    T: Clone + fmt::Debug + PartialEq + Serialize + for<'de> Deserialize<'de>,
{
    type Patch = Option<T>;
    fn apply(&mut self, patch: &Option<T>) {
        self.clone_from(patch);
    }
}

/// Deserializes a present key as `Some`, even when its value is `null`: in an override a
/// missing key changes nothing while `null` unsets an optional setting.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

impl<V> Overridable for BTreeMap<String, V>
where
    V: Clone + fmt::Debug + PartialEq + Serialize + for<'de> Deserialize<'de>,
{
    type Patch = BTreeMap<String, Option<V>>;
    fn apply(&mut self, patch: &Self::Patch) {
        for (key, value) in patch {
            match value {
                Some(v) => self.insert(key.clone(), v.clone()),
                None => self.remove(key),
            };
        }
    }
}

impl Overridable for serde_json::Map<String, Value> {
    type Patch = serde_json::Map<String, Value>;
    fn apply(&mut self, patch: &Self::Patch) {
        merge_json(self, patch);
    }
}

/// KubeSpawner's `recursive_update`: objects merge key by key, `null` removes, the rest
/// replaces.
pub fn merge_json(
    target: &mut serde_json::Map<String, Value>,
    patch: &serde_json::Map<String, Value>,
) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                let slot = target
                    .entry(key.clone())
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if !slot.is_object() {
                    *slot = Value::Object(serde_json::Map::new());
                }
                if let Value::Object(slot) = slot {
                    merge_json(slot, inner);
                }
            }
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}
