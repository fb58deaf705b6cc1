//! A YAML (or JSON) document read with serde-saphyr into an order-preserving tree, then into
//! [`ParamValue`]s.
//!
//! serde-saphyr has no value type of its own, so [`Node`] is one: every node keeps its tag
//! ([`serde_saphyr::Tagged`]) and where it was written ([`serde_saphyr::Spanned`]).
//!
//! - Integers too big for `i64`/`u64` reach a visitor as a float (serde-saphyr tries `i64`
//!   or `u64`, then `f64`); their source text is read back from the node's span, so they
//!   stay exact, as PyYAML keeps them.
//! - Duplicate keys are passed through to the visitor and the later value wins in the first
//!   position (a Python dict filled in order, as PyYAML builds it); keys that only become
//!   equal once written as Python's `str()` (`1` and `"1"`) are merged the same way.
//! - Booleans are YAML 1.2's `true`/`false` only (serde-saphyr reads YAML 1.1's `y`, `n`,
//!   `yes`, `on`... as booleans unless told not to, which would make a parameter named `y`
//!   the key `True`).
//! - `.nan`, `.inf`, `-.inf` are floats (serde-saphyr refuses them by default).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::options::{DuplicateKeyPolicy, NonFiniteFloatPolicy};
use serde_saphyr::{Spanned, Tagged};

use super::{ParamValue, ParameterError, python_float_repr, python_int};

/// The YAML core schema's tag prefix (`!!` in a document).
const CORE_TAG_PREFIX: &str = "tag:yaml.org,2002:";

/// Core tags serde-saphyr has already resolved into the node's type.
const RESOLVED_CORE_TAGS: [&str; 7] = ["str", "int", "float", "bool", "null", "seq", "map"];

/// A node as the deserializer hands it over, with its tag and span.
pub(super) type Item = Tagged<Spanned<Node>>;

/// An untyped YAML node, mappings in document order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    /// `null`, `~` or nothing.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer that fits `i64` or `u64`.
    Int(i128),
    /// A float (or an integer too big for 64 bits: see [`Source::value`]).
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Item>),
    /// A mapping, entries in document order, duplicates included.
    Map(Vec<(Item, Item)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        i128::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom("integer out of range"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(entry) = map.next_entry()? {
            entries.push(entry);
        }
        Ok(Node::Map(entries))
    }
}

/// Parses `text` into its top-level node (an empty document is `null`).
pub(super) fn parse(text: &str) -> Result<Item, serde_saphyr::Error> {
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        strict_booleans: true,
        non_finite_float_policy: NonFiniteFloatPolicy::PassThrough,
    };
    serde_saphyr::from_str_with_options(text, options)
}

/// The document text, to read integers too big for 64 bits back from their spans.
pub(super) struct Source<'a>(pub(super) &'a str);

impl Source<'_> {
    /// The source text of `item`, if the parser gave its byte span.
    fn text(&self, item: &Item) -> Option<&str> {
        let span = item.0.defined.span();
        let start = usize::try_from(span.byte_offset()?).ok()?;
        let len = usize::try_from(span.byte_len()?).ok()?;
        self.0.get(start..start.checked_add(len)?)
    }

    /// The parameter value of `item` (`name` is the parameter it belongs to, for errors).
    pub(super) fn value(&self, name: &str, item: Item) -> Result<ParamValue, ParameterError> {
        check_tag(name, &item)?;
        let text = self.text(&item);
        Ok(match item.0.value {
            Node::Null => ParamValue::None,
            Node::Bool(b) => ParamValue::Bool(b),
            Node::Int(i) => ParamValue::Int(i.to_string()),
            Node::Float(f) => match text.and_then(big_int) {
                Some(digits) => ParamValue::Int(digits),
                None => ParamValue::Float(f),
            },
            Node::Str(s) => ParamValue::Str(s),
            Node::Seq(items) => ParamValue::List(
                items
                    .into_iter()
                    .map(|v| self.value(name, v))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Map(m) => {
                let mut entries: Vec<(String, ParamValue)> = Vec::with_capacity(m.len());
                for (k, v) in m {
                    let key = self.key(name, k)?;
                    let v = self.value(name, v)?;
                    match entries.iter_mut().find(|(existing, _)| *existing == key) {
                        Some(slot) => slot.1 = v,
                        None => entries.push((key, v)),
                    }
                }
                ParamValue::Dict(entries)
            }
        })
    }

    /// A mapping key as Python's `str()` of it (what papermill's `translate_str` writes for
    /// a key that is not a string).
    pub(super) fn key(&self, name: &str, key: Item) -> Result<String, ParameterError> {
        Ok(match self.value(name, key)? {
            ParamValue::Str(s) => s,
            ParamValue::Float(f) => python_float_repr(f),
            other => other.to_python(),
        })
    }

    /// A key that is not a parameter name, for the error naming it: as [`Self::key`]
    /// writes it, else (a tagged key) its tag and text.
    pub(super) fn key_name(&self, key: Item) -> String {
        let text = self.text(&key).unwrap_or_default().trim().to_owned();
        match self.key("", key) {
            Ok(key) => key,
            Err(ParameterError::Unsupported { what, .. }) => format!("{what} {text}"),
            Err(_) => text,
        }
    }
}

/// Whether `item` has no tag, or a core tag already resolved into its type (`!!str`...).
pub(super) fn is_plain(item: &Item) -> bool {
    check_tag("", item).is_ok()
}

/// Refuses a tag papermill's translator has no form for (a local tag such as `!thing`, or
/// a core tag such as `!!binary` or `!!set`).
fn check_tag(name: &str, item: &Item) -> Result<(), ParameterError> {
    let Some(tag) = &item.1 else {
        return Ok(());
    };
    let core = tag.strip_prefix(CORE_TAG_PREFIX);
    if core.is_some_and(|t| RESOLVED_CORE_TAGS.contains(&t)) {
        return Ok(());
    }
    Err(ParameterError::Unsupported {
        name: name.to_owned(),
        what: core.map_or_else(|| tag.clone(), |t| format!("!!{t}")),
    })
}

/// The digits of a plain decimal integer spelling (`[-+]?[0-9]+`), normalised as Python's
/// `str(int(...))` writes them.
fn big_int(text: &str) -> Option<String> {
    let text = text.trim();
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    python_int(text)
}

#[cfg(test)]
mod tests {
    use super::super::{NameProblem, ParameterError, Parameters};

    fn python(text: &str) -> String {
        Parameters::from_yaml("p.yaml", text).unwrap().to_python()
    }

    #[test]
    fn integers_of_any_size_stay_exact() {
        assert_eq!(
            python(
                "a: 123456789012345678901234567890\nb: -99999999999999999999\n\
                 c: [18446744073709551616, +007, -9223372036854775808]\n\
                 d: &n 99999999999999999999\ne: *n\nf: 1.5e300\n"
            ),
            "# Parameters\na = 123456789012345678901234567890\nb = -99999999999999999999\n\
             c = [18446744073709551616, 7, -9223372036854775808]\n\
             d = 99999999999999999999\ne = 99999999999999999999\nf = 1.5e+300\n"
        );
        assert_eq!(
            Parameters::from_yaml("p.json", r#"{"big": 100000000000000000000}"#)
                .unwrap()
                .to_json(),
            serde_json::json!({"big": "100000000000000000000"})
        );
    }

    #[test]
    fn duplicate_keys_keep_the_later_value_in_the_first_place() {
        assert_eq!(
            python("a: 1\nb: {k: 1, j: 2, k: 3}\na: 2\nc: {1: x, \"1\": y, 0x1: z}\n"),
            "# Parameters\na = 2\nb = {\"k\": 3, \"j\": 2}\nc = {\"1\": \"z\"}\n"
        );
    }

    #[test]
    fn keys_that_are_not_strings_are_written_as_python_str() {
        assert_eq!(
            python("m: {1: a, 2.5: b, true: c, null: d, 1e20: e, -3: f}\n"),
            "# Parameters\nm = {\"1\": \"a\", \"2.5\": \"b\", \"True\": \"c\", \"None\": \"d\", \
             \"1e+20\": \"e\", \"-3\": \"f\"}\n"
        );
    }

    #[test]
    fn yaml_1_2_booleans_and_integers_and_non_finite_floats() {
        assert_eq!(
            python("y: yes\nn: on\nt: true\nf: False\nx: .nan\nz: -.inf\no: 010\n"),
            "# Parameters\ny = \"yes\"\nn = \"on\"\nt = True\nf = False\nx = float('nan')\n\
             z = float('-inf')\no = 10\n"
        );
    }

    #[test]
    fn core_tags_are_types_other_tags_are_refused() {
        assert_eq!(
            python("s: !!str 1\ni: !!int \"5\"\nm: !!map {a: !!null ''}\n"),
            "# Parameters\ns = \"1\"\ni = 5\nm = {\"a\": None}\n"
        );
        let refused = |text| {
            Parameters::from_yaml("t.yaml", text)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused("b: !!binary aGk="),
            "parameter b: unsupported value !!binary"
        );
        assert_eq!(
            refused("l: [1, {k: !thing x}]"),
            "parameter l: unsupported value !thing"
        );
        assert_eq!(
            Parameters::from_yaml("t.yaml", "!thing k: 1").unwrap_err(),
            ParameterError::Name {
                name: "!thing k".into(),
                reason: NameProblem::NotAnIdentifier
            }
        );
        assert_eq!(
            Parameters::from_yaml("t.yaml", "!thing {k: 1}").unwrap_err(),
            ParameterError::NotAMapping {
                origin: "t.yaml".into()
            }
        );
    }
}
