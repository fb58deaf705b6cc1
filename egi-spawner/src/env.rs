//! The environment of the single-user server: JupyterHub's `Spawner.get_env` plus
//! KubeSpawner's image variables, with the API token taken from the server's Secret.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

use crate::HubContext;
use crate::config::EnvValue;
use crate::plan::SpawnPlan;

/// Key of the hub API token in the server's Secret.
pub const API_TOKEN_KEY: &str = "jupyterhub-api-token";

/// The environment variables of the notebook container, sorted by name.
///
/// `JUPYTERHUB_API_TOKEN` and `JPY_API_TOKEN` are references to [`API_TOKEN_KEY`] in the
/// Secret `plan.secret_name`, never plain values. Values are formatted as JupyterHub does
/// (`MEM_LIMIT` as an integer of bytes, `CPU_LIMIT` as a Python float, scopes as a JSON list);
/// the admin's `environment` is applied last and overrides everything, a token reference
/// included.
pub fn single_user_env(plan: &SpawnPlan, hub: &HubContext) -> Vec<EnvVar> {
    let settings = &plan.settings;
    let names = &plan.names;
    let mut env: BTreeMap<String, EnvValue> = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        env.insert(key.to_owned(), EnvValue::Value(value));
    };
    set("JUPYTERHUB_CLIENT_ID", hub.client_id.clone());
    set("JUPYTERHUB_HOST", hub.host.clone());
    set(
        "JUPYTERHUB_OAUTH_CALLBACK_URL",
        hub.oauth_callback_url.clone(),
    );
    set(
        "JUPYTERHUB_OAUTH_SCOPES",
        python_json_list(&hub.oauth_scopes),
    );
    set(
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
        python_json_list(&hub.oauth_access_scopes),
    );
    set("JUPYTERHUB_USER", names.username.clone());
    set("JUPYTERHUB_SERVER_NAME", names.servername.clone());
    set("JUPYTERHUB_API_URL", hub.api_url.clone());
    let activity_url = if hub.activity_url.is_empty() {
        format!(
            "{}/users/{}/activity",
            hub.api_url.trim_end_matches('/'),
            url_escape_path(&names.username)
        )
    } else {
        hub.activity_url.clone()
    };
    set("JUPYTERHUB_ACTIVITY_URL", activity_url);
    set("JUPYTERHUB_BASE_URL", hub.base_url.clone());
    set("JUPYTERHUB_SERVICE_PREFIX", hub.service_prefix.clone());
    set("JUPYTERHUB_SERVICE_URL", hub.service_url.clone());
    set("JUPYTERHUB_PUBLIC_URL", hub.public_url.clone());
    if let Some(mem) = settings.mem_limit.filter(|m| m.0 > 0) {
        set("MEM_LIMIT", mem.0.to_string());
    }
    if let Some(mem) = settings.mem_guarantee.filter(|m| m.0 > 0) {
        set("MEM_GUARANTEE", mem.0.to_string());
    }
    if let Some(cpu) = settings.cpu_limit.filter(|c| *c != 0.0) {
        set("CPU_LIMIT", python_float(cpu));
    }
    if let Some(cpu) = settings.cpu_guarantee.filter(|c| *c != 0.0) {
        set("CPU_GUARANTEE", python_float(cpu));
    }
    if !hub.root_dir.is_empty() {
        set("JUPYTERHUB_ROOT_DIR", hub.root_dir.clone());
    }
    if !hub.default_url.is_empty() {
        set("JUPYTERHUB_DEFAULT_URL", hub.default_url.clone());
    }
    for (name, value) in &hub.extra_env {
        set(name, value.clone());
    }
    set("JUPYTER_IMAGE", settings.image.clone());
    set("JUPYTER_IMAGE_SPEC", settings.image.clone());
    let token = EnvValue::From(Box::new(EnvVarSource {
        secret_key_ref: Some(SecretKeySelector {
            name: plan.secret_name.clone(),
            key: API_TOKEN_KEY.to_owned(),
            optional: Some(false),
        }),
        ..EnvVarSource::default()
    }));
    env.insert("JUPYTERHUB_API_TOKEN".to_owned(), token.clone());
    env.insert("JPY_API_TOKEN".to_owned(), token);
    // the admin's environment overrides everything
    env.extend(
        settings
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    dependency_order(env.into_iter().collect())
        .into_iter()
        .map(|(name, value)| match value {
            EnvValue::Value(value) => EnvVar {
                name,
                value: Some(value),
                value_from: None,
            },
            EnvValue::From(source) => EnvVar {
                name,
                value: None,
                value_from: Some(*source),
            },
        })
        .collect()
}

/// Orders variables by name, except that one whose value refers to another with `$(NAME)`
/// comes after it: the kubelet expands a reference only to a variable defined earlier
/// (KubeSpawner orders them the same way). Cycles keep name order.
fn dependency_order(mut pending: Vec<(String, EnvValue)>) -> Vec<(String, EnvValue)> {
    let refers = |value: &EnvValue, name: &str| match value {
        EnvValue::Value(v) => v.contains(&format!("$({name})")),
        EnvValue::From(_) => false,
    };
    let mut out: Vec<(String, EnvValue)> = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        // The first (by name) whose references are all already placed; else the first.
        let ready = pending
            .iter()
            .position(|(name, value)| {
                !pending
                    .iter()
                    .any(|(other, _)| other != name && refers(value, other))
            })
            .unwrap_or(0);
        out.push(pending.remove(ready));
    }
    out
}

/// `json.dumps(list_of_strings)` as Python writes it: `", "` between items, non-ASCII as
/// `\uXXXX` escapes.
pub fn python_json_list(items: &[String]) -> String {
    let mut out = String::from("[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('"');
        for c in item.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
                c => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
            }
        }
        out.push('"');
    }
    out.push(']');
    out
}

/// `str(float)` as Python writes it: `2.0`, `0.5`, `1e-05`, `1e+16`.
pub fn python_float(x: f64) -> String {
    if !x.is_finite() {
        return if x.is_nan() {
            "nan".to_owned()
        } else if x > 0.0 {
            "inf".to_owned()
        } else {
            "-inf".to_owned()
        };
    }
    let abs = x.abs();
    if abs == 0.0 || (1e-4..1e16).contains(&abs) {
        return format!("{x:?}");
    }
    // shortest round-trip digits in scientific notation, Python's exponent style
    let sci = format!("{x:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

/// `urllib.parse.quote(name, safe="@~")`, as JupyterHub escapes user names in URLs.
fn url_escape_path(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"_.-~@".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
