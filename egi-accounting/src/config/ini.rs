//! An INI reader with Python `configparser`'s default rules, so that the Python tool's
//! files mean the same here.
//!
//! Written by hand because the Rust INI crates differ from Python where it matters for
//! secrets and filters: they strip inline comments (`password = a#b` would lose `#b`),
//! or do not lowercase keys, or do not do `%%` / `%(key)s` interpolation.
//!
//! Rules (Python 3 defaults): `[section]` headers (case-sensitive); `key = value` or
//! `key: value`, split at the first `=` or `:`; keys lowercased and stripped, values
//! stripped; full-line comments starting with `#` or `;`, no inline comments; an indented
//! line continues the previous value (joined with a newline); a duplicate section or key is
//! an error; `%%` is a literal `%` and `%(key)s` the value of `key` in the same section.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// Sections by name, each a list of lowercased keys and raw (not yet interpolated) values in
/// file order (Python's `configparser` keeps that order, and the `[VO]` section depends on it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ini {
    sections: BTreeMap<String, Section>,
}

/// One section's keys and raw values, in file order (sections are small: a list is enough).
type Section = Vec<(String, String)>;

fn lookup<'a>(section: &'a Section, key: &str) -> Option<&'a String> {
    section.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn err(line: usize, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("line {line}: {why}"))
}

impl Ini {
    /// Parses INI text.
    pub fn parse(text: &str) -> Result<Self> {
        let mut ini = Ini::default();
        let mut section: Option<String> = None;
        let mut last_key: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                last_key = None;
                continue;
            }
            if trimmed.starts_with('#') || trimmed.starts_with(';') {
                continue;
            }
            let indented = raw.starts_with([' ', '\t']);
            if indented
                && let (Some(s), Some(k)) = (&section, &last_key)
                && let Some((_, v)) = ini
                    .sections
                    .get_mut(s)
                    .and_then(|m| m.iter_mut().find(|(key, _)| key == k))
            {
                v.push('\n');
                v.push_str(trimmed);
                continue;
            }
            if let Some(name) = trimmed.strip_prefix('[') {
                let name = name
                    .strip_suffix(']')
                    .ok_or_else(|| err(n, "section header without ']'"))?;
                if ini.sections.contains_key(name) {
                    return Err(err(n, format!("section [{name}] appears twice")));
                }
                ini.sections.insert(name.to_owned(), Section::new());
                section = Some(name.to_owned());
                last_key = None;
                continue;
            }
            let Some(s) = &section else {
                return Err(err(n, "key before any [section] header"));
            };
            let split = trimmed
                .find(['=', ':'])
                .ok_or_else(|| err(n, format!("expected key = value, got {trimmed:?}")))?;
            let key = trimmed[..split].trim().to_lowercase();
            let value = trimmed[split + 1..].trim().to_owned();
            if key.is_empty() {
                return Err(err(n, "empty key"));
            }
            let map = ini.sections.entry(s.clone()).or_default();
            if lookup(map, &key).is_some() {
                return Err(err(n, format!("key {key:?} appears twice in [{s}]")));
            }
            map.push((key.clone(), value));
            last_key = Some(key);
        }
        Ok(ini)
    }

    /// Whether the section exists.
    pub fn has_section(&self, section: &str) -> bool {
        self.sections.contains_key(section)
    }

    /// The interpolated value of `key` in `section`.
    pub fn get(&self, section: &str, key: &str) -> Result<Option<String>> {
        let Some(map) = self.sections.get(section) else {
            return Ok(None);
        };
        match lookup(map, key) {
            None => Ok(None),
            Some(raw) => interpolate(map, section, key, raw, 0).map(Some),
        }
    }

    /// The keys of a section, in file order, with interpolated values.
    pub fn items(&self, section: &str) -> Result<Vec<(String, String)>> {
        let Some(map) = self.sections.get(section) else {
            return Ok(Vec::new());
        };
        map.iter()
            .map(|(k, raw)| Ok((k.clone(), interpolate(map, section, k, raw, 0)?)))
            .collect()
    }
}

fn interpolate(map: &Section, section: &str, key: &str, raw: &str, depth: usize) -> Result<String> {
    let bad = |why: &str| Error::Config(format!("[{section}] {key}: {why}"));
    if depth > 10 {
        return Err(bad("interpolation is too deep (a loop?)"));
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(r) = rest.strip_prefix('%') {
            out.push('%');
            rest = r;
        } else if let Some(r) = rest.strip_prefix('(') {
            let end = r
                .find(")s")
                .ok_or_else(|| bad("'%(' must be followed by a name and ')s'"))?;
            let name = r[..end].to_lowercase();
            let value = lookup(map, &name)
                .ok_or_else(|| bad(&format!("%({name})s refers to a missing key")))?;
            out.push_str(&interpolate(map, section, &name, value, depth + 1)?);
            rest = &r[end + 2..];
        } else {
            return Err(bad("a lone '%' must be written '%%'"));
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_configparser_rules() {
        let ini = Ini::parse(
            "# comment\n[default]\nSite = MY-SITE\n; other comment\nfqan_key: primary_group\n\n\
             [prometheus]\npassword = se#cret;x\nfilter=pod=~'jupyter-.*'\nurl = %(host)s/prom\n\
             host = https://prom.example.org\npct = 100%%\n[VO]\nvo.a = g1,\n  g2\n",
        )
        .unwrap();
        assert_eq!(
            ini.get("default", "site").unwrap().as_deref(),
            Some("MY-SITE")
        );
        assert_eq!(
            ini.get("default", "fqan_key").unwrap().as_deref(),
            Some("primary_group")
        );
        assert_eq!(
            ini.get("prometheus", "password").unwrap().as_deref(),
            Some("se#cret;x")
        );
        assert_eq!(
            ini.get("prometheus", "filter").unwrap().as_deref(),
            Some("pod=~'jupyter-.*'")
        );
        assert_eq!(
            ini.get("prometheus", "url").unwrap().as_deref(),
            Some("https://prom.example.org/prom")
        );
        assert_eq!(
            ini.get("prometheus", "pct").unwrap().as_deref(),
            Some("100%")
        );
        assert_eq!(
            ini.items("VO").unwrap(),
            [("vo.a".to_owned(), "g1,\ng2".to_owned())]
        );
        assert!(ini.has_section("VO") && !ini.has_section("vo"));
        assert_eq!(ini.get("missing", "x").unwrap(), None);
    }

    #[test]
    fn items_keep_file_order_as_configparser_does() {
        let ini = Ini::parse("[VO]\nvo.z = g1\nvo.a = g2\nvo.m = g3\n").unwrap();
        let keys: Vec<String> = ini
            .items("VO")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, ["vo.z", "vo.a", "vo.m"]);
    }

    #[test]
    fn malformed_files_are_refused_with_the_line() {
        for (text, needle) in [
            ("key = v\n", "line 1"),
            ("[a]\nno separator\n", "line 2"),
            ("[a\nk=v\n", "line 1"),
            ("[a]\nk=1\nK=2\n", "twice"),
            ("[a]\n[a]\n", "twice"),
        ] {
            let e = Ini::parse(text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
        let ini = Ini::parse("[a]\nx = 5%\ny = %(z)s\nl = %(l)s\n").unwrap();
        assert!(ini.get("a", "x").is_err());
        assert!(ini.get("a", "y").is_err());
        assert!(ini.get("a", "l").is_err());
    }
}
