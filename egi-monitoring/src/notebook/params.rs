//! Notebook parameters as papermill takes and injects them, without IO.
//!
//! - Values come from the command line as papermill's CLI reads them ([`ParamValue::from_cli`]
//!   for `-p`: `True`, `False`, `None`, then an `int`, then a `float`, else a string;
//!   [`ParamValue::raw`] for `-r`), or from a YAML or JSON document ([`Parameters::from_yaml`],
//!   papermill's `-f`).
//! - [`Parameters::to_python`] writes the injected cell's source as papermill's Python
//!   translator does (without `black`, which papermill only uses when installed): a
//!   `# Parameters` comment, then one `name = value` line per parameter, strings escaped as
//!   Python's `unicode_escape` codec does with `"` escaped too, floats as Python's `repr`.
//!
//! Stricter than papermill: a name that is not a Python identifier, or is a keyword, is a
//! [`ParameterError::Name`] here, where papermill writes it and the cell fails at run time.
//!
//! Differences from papermill, documented rather than hidden: YAML is read as YAML 1.2
//! (PyYAML reads 1.1, where `yes`/`no`/`on`/`off` are booleans and `1e5` is a string, both
//! strings resp. a float here, and `010` is ten, not octal: quote such values or use JSON);
//! tagged values other than the core types (`!!binary`, `!!set`, `!custom`) are
//! [`ParameterError::Unsupported`] (see the `yaml` module for how the document is read);
//! `-p` accepts ASCII digits only (Python's `int()` takes any Unicode decimal digit); a
//! non-finite float is `null` in the output notebook's metadata (papermill writes `NaN`,
//! which is not JSON).

use std::fmt;

use serde_json::Value;

/// Why parameters are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParameterError {
    /// A name that Python cannot assign to.
    #[error("parameter name {name:?} {reason}")]
    Name {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: NameProblem,
    },

    /// A parameters document that is not YAML (or JSON).
    #[error("parameters document {origin}: {message}")]
    Document {
        /// Where it came from (a file name, or "argument").
        origin: String,
        /// The parser's message.
        message: String,
    },

    /// A parameters document whose top level is not a mapping of names to values.
    #[error("parameters document {origin} is not a mapping of names to values")]
    NotAMapping {
        /// Where it came from.
        origin: String,
    },

    /// A value papermill's translator has no form for (a YAML tag such as `!!binary`).
    #[error("parameter {name}: unsupported value {what}")]
    Unsupported {
        /// The parameter.
        name: String,
        /// The value, as YAML shows it.
        what: String,
    },

    /// A notebook whose kernel language has no translator here (papermill has several;
    /// only Python is implemented).
    #[error("no parameter translator for the kernel language {0:?} (only Python)")]
    Language(String),
}

/// Why a name is not a parameter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NameProblem {
    /// Empty, or not an identifier (a space, a leading digit, punctuation...).
    NotAnIdentifier,
    /// A Python keyword, such as `class` or `None`.
    Keyword,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NotAnIdentifier => "is not a Python identifier",
            Self::Keyword => "is a Python keyword",
        })
    }
}

/// Python's hard keywords (soft keywords such as `match` or `type` are valid names).
const KEYWORDS: [&str; 35] = [
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// A parameter name: a Python identifier that is not a keyword.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamName(String);

impl ParamName {
    /// Checks `name`: Unicode identifier rules (XID start or `_`, then XID continue), not a
    /// keyword.
    pub fn parse(name: &str) -> Result<Self, ParameterError> {
        let refuse = |reason| ParameterError::Name {
            name: name.to_owned(),
            reason,
        };
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c == '_' || unicode_ident::is_xid_start(c));
        if !first_ok || !chars.all(unicode_ident::is_xid_continue) {
            return Err(refuse(NameProblem::NotAnIdentifier));
        }
        if KEYWORDS.contains(&name) {
            return Err(refuse(NameProblem::Keyword));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ParamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A parameter value: the JSON/YAML types papermill translates.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// `None`.
    None,
    /// `True` or `False`.
    Bool(bool),
    /// An integer of any size, as its decimal digits (with a leading `-` if negative).
    Int(String),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<ParamValue>),
    /// A dict, keys in order (keys that were not strings are written as Python's `str` of
    /// them, as papermill does).
    Dict(Vec<(String, ParamValue)>),
}

impl ParamValue {
    /// A `-p` value, typed as papermill's CLI does (`_resolve_type`): `True`, `False`,
    /// `None`, then what Python's `int()` accepts, then what `float()` accepts, else the
    /// string itself.
    pub fn from_cli(value: &str) -> Self {
        match value {
            "True" => return Self::Bool(true),
            "False" => return Self::Bool(false),
            "None" => return Self::None,
            _ => {}
        }
        let trimmed = value.trim();
        if let Some(int) = python_int(trimmed) {
            return Self::Int(int);
        }
        if let Some(float) = python_float(trimmed) {
            return Self::Float(float);
        }
        Self::Str(value.to_owned())
    }

    /// A `-r` value: the string as given.
    pub fn raw(value: impl Into<String>) -> Self {
        Self::Str(value.into())
    }

    /// The Python expression for this value (papermill's `PythonTranslator.translate`).
    pub fn to_python(&self) -> String {
        match self {
            Self::None => "None".to_owned(),
            Self::Bool(true) => "True".to_owned(),
            Self::Bool(false) => "False".to_owned(),
            Self::Int(digits) => digits.clone(),
            Self::Float(f) => python_float_literal(*f),
            Self::Str(s) => python_str(s),
            Self::List(items) => {
                let items: Vec<String> = items.iter().map(Self::to_python).collect();
                format!("[{}]", items.join(", "))
            }
            Self::Dict(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", python_str(k), v.to_python()))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }
        }
    }

    /// The value as JSON, for the output notebook's `metadata.papermill.parameters`
    /// (non-finite floats become `null`).
    pub fn to_json(&self) -> Value {
        match self {
            Self::None => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(digits) => digits
                .parse::<i64>()
                .map(Value::from)
                .or_else(|_| digits.parse::<u64>().map(Value::from))
                .unwrap_or_else(|_| Value::String(digits.clone())),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Self::Str(s) => Value::String(s.clone()),
            Self::List(items) => Value::Array(items.iter().map(Self::to_json).collect()),
            Self::Dict(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Parameters in order: setting a name again replaces its value in place (a Python dict's
/// `update`, as papermill merges `-f`, then `-p`, then `-r`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters(Vec<(ParamName, ParamValue)>);

impl Parameters {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`.
    pub fn set(&mut self, name: ParamName, value: ParamValue) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Sets a `-p name value` pair (typed as papermill's CLI does).
    pub fn set_cli(&mut self, name: &str, value: &str) -> Result<(), ParameterError> {
        self.set(ParamName::parse(name)?, ParamValue::from_cli(value));
        Ok(())
    }

    /// Sets a `-r name value` pair (a string as given).
    pub fn set_raw(&mut self, name: &str, value: &str) -> Result<(), ParameterError> {
        self.set(ParamName::parse(name)?, ParamValue::raw(value));
        Ok(())
    }

    /// Adds every entry of a YAML or JSON document (papermill's `-f`); `origin` names it in
    /// errors. An empty document or `null` adds nothing.
    pub fn merge_yaml(&mut self, origin: &str, text: &str) -> Result<(), ParameterError> {
        for (name, value) in Self::from_yaml(origin, text)?.0 {
            self.set(name, value);
        }
        Ok(())
    }

    /// The parameters of a YAML or JSON document, in its order.
    pub fn from_yaml(origin: &str, text: &str) -> Result<Self, ParameterError> {
        let doc = yaml::parse(text).map_err(|e| ParameterError::Document {
            origin: origin.to_owned(),
            message: e.to_string(),
        })?;
        let source = yaml::Source(text);
        let not_a_mapping = || ParameterError::NotAMapping {
            origin: origin.to_owned(),
        };
        let mapping = match doc.0.value {
            _ if !yaml::is_plain(&doc) => return Err(not_a_mapping()),
            yaml::Node::Null => return Ok(Self::new()),
            yaml::Node::Map(m) => m,
            _ => return Err(not_a_mapping()),
        };
        let mut params = Self::new();
        for (key, value) in mapping {
            let key = match key.0.value {
                yaml::Node::Str(s) if yaml::is_plain(&key) => s,
                _ => {
                    return Err(ParameterError::Name {
                        name: source.key_name(key),
                        reason: NameProblem::NotAnIdentifier,
                    });
                }
            };
            let name = ParamName::parse(&key)?;
            let value = source.value(&key, value)?;
            params.set(name, value);
        }
        Ok(params)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&ParamName, &ParamValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// The injected cell's source: `# Parameters`, then `name = value` lines, each ending
    /// in a newline (papermill's `PythonTranslator.codify` without `black`).
    pub fn to_python(&self) -> String {
        let mut source = String::from("# Parameters\n");
        for (name, value) in &self.0 {
            source.push_str(&format!("{name} = {}\n", value.to_python()));
        }
        source
    }

    /// The parameters as a JSON object (the output notebook's `metadata.papermill`).
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_json()))
                .collect(),
        )
    }
}

/// Digits (ASCII) with single underscores between them, as Python's `int()` and `float()`
/// accept; `None` otherwise. Returns the digits without underscores.
fn digits_with_underscores(s: &str) -> Option<String> {
    if s.is_empty() || s.starts_with('_') || s.ends_with('_') || s.contains("__") {
        return None;
    }
    if !s.chars().all(|c| c.is_ascii_digit() || c == '_') {
        return None;
    }
    Some(s.replace('_', ""))
}

/// What Python's `int(s)` (base 10) accepts, normalised as `str(int(s))` writes it.
fn python_int(s: &str) -> Option<String> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = digits_with_underscores(rest)?;
    let digits = digits.trim_start_matches('0');
    Some(match (digits.is_empty(), negative) {
        (true, _) => "0".to_owned(),
        (false, true) => format!("-{digits}"),
        (false, false) => digits.to_owned(),
    })
}

/// What Python's `float(s)` accepts (decimal or exponent form with underscores between
/// digits, `inf`, `infinity`, `nan` in any case, with a sign).
fn python_float(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "infinity" | "nan") {
        return s.parse().ok();
    }
    let (mantissa, exponent) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let part = |p: &str| {
        if p.is_empty() {
            Some(String::new())
        } else {
            digits_with_underscores(p)
        }
    };
    let int_digits = part(int_part)?;
    let frac_digits = match frac_part {
        Some(f) => part(f)?,
        None => String::new(),
    };
    if int_digits.is_empty() && frac_digits.is_empty() {
        return None;
    }
    let mut normal = format!("{int_digits}.{frac_digits}");
    if normal == "." {
        return None;
    }
    if normal.starts_with('.') {
        normal.insert(0, '0');
    }
    if normal.ends_with('.') {
        normal.push('0');
    }
    if let Some(e) = exponent {
        let (sign, e_digits) = match e.as_bytes().first() {
            Some(b'-') => ("-", &e[1..]),
            Some(b'+') => ("", &e[1..]),
            _ => ("", e),
        };
        let e_digits = digits_with_underscores(e_digits)?;
        normal.push_str(&format!("e{sign}{e_digits}"));
    }
    let value: f64 = normal.parse().ok()?;
    Some(if s.starts_with('-') { -value } else { value })
}

/// Python's `repr(float)`: the shortest digits that read back to the same float, in fixed
/// notation when the decimal exponent is in -4..16, else `1e+16`, `1.5e-05`.
pub(crate) fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_owned();
    }
    if f.is_infinite() {
        return if f < 0.0 { "-inf" } else { "inf" }.to_owned();
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: `-1.2345e-7`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // Python's decpt: the value is 0.DIGITS x 10^decpt.
    let decpt = exp + 1;
    if (-4 < decpt && decpt <= 16) || f == 0.0 {
        let n = digits.len() as i32;
        let body = if decpt <= 0 {
            format!("0.{}{digits}", "0".repeat((-decpt) as usize))
        } else if decpt >= n {
            format!("{digits}{}.0", "0".repeat((decpt - n) as usize))
        } else {
            let (a, b) = digits.split_at(decpt as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let dot = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{dot}e{esign}{:02}", exp.abs())
    }
}

/// A float as papermill's Python translator writes it: `repr`, or `float('nan')`,
/// `float('inf')`, `float('-inf')`.
fn python_float_literal(f: f64) -> String {
    if f.is_nan() {
        "float('nan')".to_owned()
    } else if f.is_infinite() {
        if f < 0.0 {
            "float('-inf')".to_owned()
        } else {
            "float('inf')".to_owned()
        }
    } else {
        python_float_repr(f)
    }
}

/// A string literal as papermill writes it: Python's `unicode_escape` codec (backslash,
/// `\t`, `\n`, `\r`, other control and non-ASCII characters as `\xhh`, `\uhhhh`,
/// `\Uhhhhhhhh`), then `"` escaped, in double quotes.
pub(crate) fn python_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || (0x7f..0x100).contains(&(c as u32)) => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) >= 0x10000 => out.push_str(&format!("\\U{:08x}", c as u32)),
            c if (c as u32) >= 0x100 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
mod yaml;
