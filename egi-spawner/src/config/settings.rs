//! Checks and template expansion of the effective [`Settings`].

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{ConfigError, EnvValue, SAMPLES, Settings, merge_json};
use crate::naming::{self, Names, TemplateContext};
use crate::storage::quantity_bytes;

fn check_quantity(value: &str) -> Result<(), ConfigError> {
    quantity_bytes(value)
        .map(|_| ())
        .ok_or_else(|| ConfigError::InvalidQuantity {
            value: value.to_owned(),
        })
}

impl Settings {
    /// Checks the values of one effective setting set: port, CPU, quantities, environment
    /// names, image, extra configs that must merge into a pod spec, templates that must
    /// expand.
    pub fn check(&self, hub_namespace: &str) -> Result<(), ConfigError> {
        if self.port == 0 {
            return Err(ConfigError::invalid("0", "not a port").in_field("port"));
        }
        if self.image.trim().is_empty() {
            return Err(ConfigError::invalid("", "no image").in_field("image"));
        }
        for (field, cpu) in [
            ("cpu_guarantee", self.cpu_guarantee),
            ("cpu_limit", self.cpu_limit),
        ] {
            if let Some(cpu) = cpu.filter(|c| !c.is_finite() || *c < 0.0 || *c > 1e6) {
                return Err(
                    ConfigError::invalid(cpu.to_string(), "not a CPU count").in_field(field)
                );
            }
        }
        if let (Some(g), Some(l)) = (self.cpu_guarantee, self.cpu_limit)
            && g > l
        {
            return Err(
                ConfigError::invalid(g.to_string(), "above cpu_limit").in_field("cpu_guarantee")
            );
        }
        if let (Some(g), Some(l)) = (self.mem_guarantee, self.mem_limit)
            && g > l
        {
            return Err(
                ConfigError::invalid(g.to_string(), "above mem_limit").in_field("mem_guarantee")
            );
        }
        for (field, map) in [
            ("extra_resource_guarantees", &self.extra_resource_guarantees),
            ("extra_resource_limits", &self.extra_resource_limits),
        ] {
            for (name, quantity) in map {
                check_quantity(&quantity.0).map_err(|e| e.in_field(format!("{field}.{name}")))?;
            }
        }
        for name in self.environment.keys() {
            if name.is_empty() || name.contains('=') || name.chars().any(char::is_control) {
                return Err(
                    ConfigError::invalid(name, "not an environment variable name")
                        .in_field("environment"),
                );
            }
        }
        self.extra_configs_apply()?;
        // every string template must expand for a hostile sample user
        let names = Names::new(SAMPLES[2].0, SAMPLES[2].1);
        let context = TemplateContext {
            user_id: Some(1000),
            hub_namespace: Some(hub_namespace),
        };
        let expanded = self.expanded(&names, &context)?;
        check_labels(&expanded.extra_labels).map_err(|e| e.in_field("extra_labels"))
    }

    fn extra_configs_apply(&self) -> Result<(), ConfigError> {
        if !self.extra_pod_config.is_empty() {
            merged::<PodSpec>(&PodSpec::default(), &self.extra_pod_config)
                .map_err(|e| e.in_field("extra_pod_config"))?;
        }
        if !self.extra_container_config.is_empty() {
            merged::<Container>(&Container::default(), &self.extra_container_config)
                .map_err(|e| e.in_field("extra_container_config"))?;
        }
        Ok(())
    }

    /// These settings with KubeSpawner's templates (`{username}`, ...) expanded in the admin's
    /// strings: environment values, labels, annotations, volumes, mounts, containers, the
    /// service account, the working directory and `extra_pod_config` (not `extra_container_config`).
    pub fn expanded(
        &self,
        names: &Names,
        context: &TemplateContext<'_>,
    ) -> Result<Settings, ConfigError> {
        let exp = |s: &str| naming::expand_with(s, names, context);
        let mut out = self.clone();
        for (key, value) in &mut out.environment {
            if let EnvValue::Value(v) = value {
                *v = exp(v).map_err(|e| e.in_field(format!("environment.{key}")))?;
            }
        }
        for (field, map) in [
            ("extra_labels", &mut out.extra_labels),
            ("extra_annotations", &mut out.extra_annotations),
        ] {
            for (key, value) in map.iter_mut() {
                *value = exp(value).map_err(|e| e.in_field(format!("{field}.{key}")))?;
            }
        }
        if let Some(sa) = &mut out.service_account {
            *sa = exp(sa).map_err(|e| e.in_field("service_account"))?;
        }
        if let Some(path) = &mut out.home_sub_path {
            *path = exp(path).map_err(|e| e.in_field("storage.sub_path"))?;
        }
        if let Some(dir) = &mut out.working_dir {
            *dir = exp(dir).map_err(|e| e.in_field("working_dir"))?;
        }
        out.volumes = expand_json(&out.volumes, &exp).map_err(|e| e.in_field("volumes"))?;
        out.volume_mounts =
            expand_json(&out.volume_mounts, &exp).map_err(|e| e.in_field("volume_mounts"))?;
        out.init_containers =
            expand_json(&out.init_containers, &exp).map_err(|e| e.in_field("init_containers"))?;
        out.extra_containers =
            expand_json(&out.extra_containers, &exp).map_err(|e| e.in_field("extra_containers"))?;
        out.extra_pod_config =
            expand_json(&out.extra_pod_config, &exp).map_err(|e| e.in_field("extra_pod_config"))?;
        // `extra_container_config` stays as written, as in KubeSpawner (it often holds `{`).
        Ok(out)
    }
}

/// Applies `extra` (Kubernetes camelCase keys) over `base`, as KubeSpawner's `update_k8s_model`.
pub fn merged<T: Serialize + DeserializeOwned>(
    base: &T,
    extra: &serde_json::Map<String, Value>,
) -> Result<T, ConfigError> {
    let mut value = serde_json::to_value(base).unwrap_or(Value::Null);
    if !value.is_object() {
        value = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = &mut value {
        merge_json(map, extra);
    }
    // The keys only: the values may hold secrets (environment values, tokens).
    serde_json::from_value(value).map_err(|e| {
        let keys: Vec<&str> = extra.keys().map(String::as_str).collect();
        ConfigError::invalid(
            format!("keys {}", keys.join(", ")),
            format!("do not fit: {}", without_quoted(&e.to_string())),
        )
    })
}

/// The message with every quoted string elided: serde's messages quote the offending value.
fn without_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted = false;
    for c in message.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

fn expand_json<T: Serialize + DeserializeOwned>(
    items: &T,
    exp: &dyn Fn(&str) -> Result<String, ConfigError>,
) -> Result<T, ConfigError> {
    fn walk(
        value: &mut Value,
        exp: &dyn Fn(&str) -> Result<String, ConfigError>,
    ) -> Result<(), ConfigError> {
        match value {
            Value::String(s) => *s = exp(s)?,
            Value::Array(items) => items.iter_mut().try_for_each(|v| walk(v, exp))?,
            Value::Object(map) => map.values_mut().try_for_each(|v| walk(v, exp))?,
            _ => {}
        }
        Ok(())
    }
    let mut value =
        serde_json::to_value(items).map_err(|e| ConfigError::invalid("", e.to_string()))?;
    walk(&mut value, exp)?;
    serde_json::from_value(value).map_err(|e| ConfigError::invalid("", e.to_string()))
}

/// Checks label keys (an optional DNS-subdomain prefix and `/`, then a name) and values
/// against Kubernetes' rules, so a bad label fails at configuration time and not as a 422 at
/// every spawn. Values are checked as expanded for a hostile sample user.
pub(crate) fn check_labels(
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (key, value) in labels {
        let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
        let prefix_ok = prefix.is_empty()
            || (prefix.len() <= 253
                && prefix.split('.').all(|part| {
                    !part.is_empty() && naming::is_valid_label(part) && !part.contains('_')
                }));
        if !prefix_ok || name.is_empty() || !naming::is_valid_label(name) {
            return Err(ConfigError::invalid(key, "not a label key"));
        }
        if !naming::is_valid_label(value) {
            return Err(ConfigError::invalid(
                value,
                "not a label value (at most 63 of [A-Za-z0-9._-], alphanumeric at both ends) for every user",
            ));
        }
    }
    Ok(())
}
