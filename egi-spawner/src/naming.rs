//! KubeSpawner 7's "safe" naming scheme and its template expansion.
//!
//! Names produced here are byte-for-byte those of KubeSpawner 7 (`kubespawner/slugs.py` and
//! `KubeSpawner._expand_user_properties`), so pods, claims and Secrets carry over:
//!
//! - a name that already is a valid object name (a DNS-1123 label starting with a letter) and
//!   contains no `--` is kept;
//! - otherwise it is lowercased, every run of characters outside `[a-z0-9]` becomes `-`, it is
//!   truncated, prefixed with `x-` when it starts with a digit (`x` when empty), and `---` plus
//!   the first 8 hex digits of the SHA-256 of the original is appended.
//!
//! User and server names are capped at 48 characters each; `{user_server}` is
//! `{user}--{server}`, or one hash over both when that would pass 48.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::config::ConfigError;

/// Per-field cap on slugs in templates (KubeSpawner's `_slug_max_length`).
pub const SLUG_MAX_LENGTH: usize = 48;
/// Length of the hash suffix.
const HASH_LENGTH: usize = 8;
/// Longest valid object name (a DNS label).
pub const MAX_NAME_LENGTH: usize = 63;

/// The names of one server: raw, as the hub knows them, and as safe slugs for templates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Names {
    /// The raw user name.
    pub username: String,
    /// The raw server name; empty for the default server.
    pub servername: String,
    /// The user name as a safe slug (`{username}`).
    pub user: String,
    /// The server name as a safe slug (`{servername}`); empty for the default server.
    pub server: String,
    /// `{user}--{server}`, the user slug for the default server, or one multi-slug when too
    /// long (`{user_server}`).
    pub user_server: String,
    /// The user name as a label value (`hub.jupyter.org/username`).
    pub user_label: String,
    /// The server name as a label value (`hub.jupyter.org/servername`); empty for the default
    /// server.
    pub server_label: String,
}

impl Names {
    /// Computes every slug of a user's server (`servername` empty for the default server).
    pub fn new(username: &str, servername: &str) -> Names {
        let user = safe_slug(username, Some(SLUG_MAX_LENGTH));
        let server = if servername.is_empty() {
            String::new()
        } else {
            safe_slug(servername, Some(SLUG_MAX_LENGTH))
        };
        let user_server = if user.len() + server.len() + 2 > SLUG_MAX_LENGTH {
            multi_slug(&[username, servername], SLUG_MAX_LENGTH)
        } else if server.is_empty() {
            user.clone()
        } else {
            format!("{user}--{server}")
        };
        Names {
            username: username.to_owned(),
            servername: servername.to_owned(),
            user_label: safe_label(username),
            server_label: safe_label(servername),
            user,
            server,
            user_server,
        }
    }
}

/// Whether `s` is a valid object name: 1 to 63 characters of `[a-z0-9-]`, starting with a
/// letter and ending with a letter or digit (valid under both RFC 1035 and RFC 1123).
pub fn is_valid_object_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LENGTH
        && b[0].is_ascii_lowercase()
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// Whether `s` is a valid label value: empty, or up to 63 characters of `[A-Za-z0-9._-]`
/// starting and ending with a letter or digit.
pub fn is_valid_label(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() {
        return true;
    }
    b.len() <= MAX_NAME_LENGTH
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
}

fn hash_hex(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            // 0xFF never occurs in UTF-8: overlapping words cannot collide.
            hasher.update([0xFF]);
        }
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(HASH_LENGTH);
    for byte in &digest[..HASH_LENGTH / 2] {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// KubeSpawner's `_extract_safe_name`: lowercase, runs of non-`[a-z0-9]` to `-`, trimmed of
/// `-`, truncated to `max_length`, `x-` before a leading digit, `x` when empty.
fn extract_safe_name(name: &str, max_length: usize) -> String {
    let mut collapsed = String::with_capacity(name.len());
    for c in name.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            collapsed.push(c);
        } else if !collapsed.ends_with('-') {
            collapsed.push('-');
        }
    }
    // Only ASCII remains, so byte slicing is character slicing.
    let trimmed = collapsed.trim_start_matches('-');
    let mut safe = trimmed[..trimmed.len().min(max_length)]
        .trim_end_matches('-')
        .to_owned();
    if safe.starts_with(|c: char| c.is_ascii_digit()) {
        safe = format!(
            "x-{}",
            &safe[..safe.len().min(max_length.saturating_sub(2))]
        );
    }
    if safe.is_empty() {
        safe.push('x');
    }
    safe
}

/// KubeSpawner's `strip_and_hash`: a safe prefix of `name`, `---`, and 8 hex digits of its
/// SHA-256, at most `max_length` characters (at least 12).
fn strip_and_hash(name: &str, max_length: usize) -> String {
    let name_length = max_length.saturating_sub(HASH_LENGTH + 3).max(1);
    format!(
        "{}---{}",
        extract_safe_name(name, name_length),
        hash_hex(&[name])
    )
}

/// KubeSpawner's `safe_slug` for object names: `name` itself when it is a valid object name
/// without `--` (and fits `max_length`), else a truncated slug with a hash suffix (at most
/// `max_length`, default 32, never less than 12, characters).
pub fn safe_slug(name: &str, max_length: Option<usize>) -> String {
    safe_slug_with(name, is_valid_object_name, max_length)
}

/// KubeSpawner's `safe_slug` with `is_valid_label`: the value of the
/// `hub.jupyter.org/username` and `hub.jupyter.org/servername` labels.
pub fn safe_label(name: &str) -> String {
    safe_slug_with(name, is_valid_label, None)
}

fn safe_slug_with(name: &str, is_valid: fn(&str) -> bool, max_length: Option<usize>) -> String {
    let fits = max_length.is_none_or(|max| name.len() <= max);
    if !name.contains("--") && is_valid(name) && fits {
        name.to_owned()
    } else {
        strip_and_hash(name, max_length.unwrap_or(32).max(HASH_LENGTH + 4))
    }
}

/// KubeSpawner's `multi_slug`: the names' safe prefixes joined with `--`, then `---` and one
/// hash over all names (separated by the byte `0xFF`), at most `max_length` characters.
///
/// An empty `names` is treated as one empty name.
pub fn multi_slug(names: &[&str], max_length: usize) -> String {
    let names: &[&str] = if names.is_empty() { &[""] } else { names };
    let hash = hash_hex(names);
    let available = max_length.saturating_sub(HASH_LENGTH + 1);
    let name_max_length = (available / names.len()).saturating_sub(2).max(2);
    let slugs: Vec<String> = names
        .iter()
        .map(|name| extract_safe_name(name, name_max_length))
        .collect();
    format!("{}---{hash}", slugs.join("--"))
}

/// The legacy "escape" scheme (KubeSpawner < 7, `escapism` with safe `[a-z0-9]` and `-` as
/// escape character, then lowercased): `{escaped_username}` in templates.
pub fn escape_slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "-{byte:x}");
            }
        }
    }
    out
}

/// A slug of a profile's display name when it has no `slug` (like python-slugify without
/// transliteration: lowercase, commas between digits dropped, runs of other characters to
/// `-`, trimmed).
pub fn slugify(display_name: &str) -> String {
    // python-slugify's steps: quotes become separators, character references are decoded,
    // the text is transliterated to ASCII, lowercased, commas between digits dropped, and
    // every run of other characters becomes one `-`.
    let decoded = decode_references(&display_name.replace('\'', "-"));
    let ascii = deunicode::deunicode(&decoded).to_ascii_lowercase();
    let chars: Vec<char> = ascii.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(*c);
        } else if *c == ','
            && i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit)
        {
            // "1,000" -> "1000"
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// Decodes HTML character references (`&#233;`, `&#xE9;`, and the common named ones) as
/// python-slugify does before slugging; anything else is left as written.
fn decode_references(text: &str) -> String {
    const NAMED: &[(&str, char)] = &[
        ("amp", '&'),
        ("lt", '<'),
        ("gt", '>'),
        ("quot", '"'),
        ("apos", '\''),
        ("nbsp", ' '),
        ("eacute", 'é'),
        ("egrave", 'è'),
        ("ecirc", 'ê'),
        ("aacute", 'á'),
        ("agrave", 'à'),
        ("acirc", 'â'),
        ("auml", 'ä'),
        ("ouml", 'ö'),
        ("uuml", 'ü'),
        ("iacute", 'í'),
        ("oacute", 'ó'),
        ("uacute", 'ú'),
        ("ntilde", 'ñ'),
        ("ccedil", 'ç'),
        ("szlig", 'ß'),
    ];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let tail = &rest[start + 1..];
        let decoded = tail.find(';').filter(|&end| end <= 10).and_then(|end| {
            let name = &tail[..end];
            let c = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse().ok().and_then(char::from_u32)
            } else {
                NAMED.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Values for the fields of a template besides the names.
#[derive(Clone, Copy, Debug, Default)]
pub struct TemplateContext<'a> {
    /// The hub's numeric user id (`{userid}`).
    pub user_id: Option<u64>,
    /// The hub's namespace (`{hubnamespace}`; `default` becomes `user`, as in KubeSpawner).
    pub hub_namespace: Option<&'a str>,
}

/// Expands a KubeSpawner template (`{username}`, `{servername}`, `{user_server}`,
/// `{unescaped_username}`, `{unescaped_servername}`, `{userid}`, `{safe_*}`, `{escaped_*}`;
/// `{{` and `}}` for braces), then strips trailing `-` unless the template itself ends with
/// one (KubeSpawner's fix for `{username}--{servername}` with the default server).
pub fn expand(template: &str, names: &Names, user_id: Option<u64>) -> Result<String, ConfigError> {
    let context = TemplateContext {
        user_id,
        hub_namespace: None,
    };
    expand_with(template, names, &context)
}

/// [`expand`] with every context value (`{hubnamespace}`).
pub fn expand_with(
    template: &str,
    names: &Names,
    context: &TemplateContext<'_>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(template.len() + 32);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '}' => return Err(bad_template(template, "single '}' (write '}}')")),
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => {
                            return Err(bad_template(template, "unclosed '{' (write '{{')"));
                        }
                        Some(c) => field.push(c),
                    }
                }
                out.push_str(&field_value(template, &field, names, context)?);
            }
            c => out.push(c),
        }
    }
    if !template.ends_with('-') {
        out.truncate(out.trim_end_matches('-').len());
    }
    Ok(out)
}

fn bad_template(template: &str, reason: &str) -> ConfigError {
    ConfigError::Template {
        template: template.to_owned(),
        reason: reason.to_owned(),
    }
}

fn field_value(
    template: &str,
    field: &str,
    names: &Names,
    context: &TemplateContext<'_>,
) -> Result<String, ConfigError> {
    Ok(match field {
        "username" | "safe_username" => names.user.clone(),
        "servername" | "safe_servername" => names.server.clone(),
        "user_server" | "safe_user_server" => names.user_server.clone(),
        "unescaped_username" => names.username.clone(),
        "unescaped_servername" => names.servername.clone(),
        "escaped_username" => escape_slug(&names.username),
        "escaped_servername" => escape_slug(&names.servername),
        "escaped_user_server" => format!(
            "{}--{}",
            escape_slug(&names.username),
            escape_slug(&names.servername)
        ),
        "userid" => match context.user_id {
            Some(id) => id.to_string(),
            None => {
                return Err(bad_template(
                    template,
                    "{userid} used but the hub gave no user id",
                ));
            }
        },
        "hubnamespace" => match context.hub_namespace {
            Some("default") => "user".to_owned(),
            Some(ns) => ns.to_owned(),
            None => return Err(bad_template(template, "{hubnamespace} is not known here")),
        },
        other => {
            return Err(ConfigError::UnknownTemplateField {
                template: template.to_owned(),
                field: other.to_owned(),
            });
        }
    })
}

/// Makes the expansion of a name template a valid object name: kept when valid, else (a user
/// name put in raw with `{unescaped_username}`, a too long result) made safe with
/// [`safe_slug`] at 63 characters, so a spawn never fails on a name.
pub fn object_name(rendered: &str) -> String {
    if is_valid_object_name(rendered) {
        rendered.to_owned()
    } else {
        safe_slug(rendered, Some(MAX_NAME_LENGTH))
    }
}

#[cfg(test)]
mod tests;
