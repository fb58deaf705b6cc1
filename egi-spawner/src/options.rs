//! `user_options` (from the spawn form or straight from the REST API) validated and resolved
//! into a [`SpawnPlan`].
//!
//! Keys, as KubeSpawner 7: `profile` (a profile slug) and, for each option of that profile,
//! the option name (`{"profile": "gpu", "image": "pytorch"}`). The form's spelling
//! `profile-option-{slug}--{option}` and the short `profile-option-{option}` are accepted too.
//! Everything else is refused.

use serde_json::{Map, Value};

use crate::User;
use crate::config::{ConfigError, KubeSpawnerConfig, Profile};
pub use crate::error::{MAX_OPTION_LENGTH, OptionsError};
use crate::manifest::PRIMARY_GROUP_ANNOTATION;
use crate::naming::{self, Names, TemplateContext};
use crate::plan::SpawnPlan;

fn shorten(key: &str) -> String {
    let escaped: String = key.chars().flat_map(char::escape_debug).collect();
    match escaped.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &escaped[..i]),
        None => escaped,
    }
}

fn check_text(key: &str, text: &str) -> Result<(), OptionsError> {
    let length = text.chars().count();
    if length > MAX_OPTION_LENGTH {
        return Err(OptionsError::TooLong {
            key: shorten(key),
            length,
        });
    }
    if text.chars().any(char::is_control) {
        return Err(OptionsError::ControlCharacters { key: shorten(key) });
    }
    Ok(())
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A string value, `None` for null or empty.
fn string_value<'a>(key: &str, value: &'a Value) -> Result<Option<&'a str>, OptionsError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => {
            check_text(key, s)?;
            Ok((!s.is_empty()).then_some(s.as_str()))
        }
        other => Err(OptionsError::NotAString {
            key: shorten(key),
            found: json_type(other),
        }),
    }
}

/// Whether `key` names a profile option (`profile-option-...`, or an option of any
/// configured profile): such keys are checked; others are ignored as KubeSpawner does.
fn is_profile_option_key(config: &KubeSpawnerConfig, key: &str) -> bool {
    key.starts_with("profile-option-")
        || config
            .profile_list
            .iter()
            .any(|p| p.profile_options.iter().any(|(name, _)| name == key))
}

/// A profile and the choice key of each of its options.
type Selection<'c> = (&'c Profile, Vec<(&'c str, String)>);

/// The profile and option choices the user asked for, validated.
fn select<'c>(
    config: &'c KubeSpawnerConfig,
    user: &User,
    user_options: &Map<String, Value>,
) -> Result<Option<Selection<'c>>, OptionsError> {
    for (key, value) in user_options {
        check_text(key, key)?;
        if let Value::String(s) = value {
            check_text(key, s)?;
        }
    }
    let asked = match user_options.get("profile") {
        Some(value) => string_value("profile", value)?,
        None => None,
    };
    let visible: Vec<&Profile> = config
        .profile_list
        .iter()
        .filter(|p| p.visible_to(&user.groups))
        .collect();
    let available = || visible.iter().map(|p| p.slug()).collect::<Vec<_>>();
    let profile = match asked {
        Some(slug) => match visible.iter().find(|p| p.slug() == slug) {
            Some(p) => Some(*p),
            None => {
                return Err(OptionsError::UnknownProfile {
                    slug: slug.to_owned(),
                    available: available(),
                });
            }
        },
        None if config.profile_list.is_empty() => None,
        None => Some(
            *visible
                .iter()
                .find(|p| p.default)
                .or(visible.first())
                .ok_or(OptionsError::NoProfileAvailable)?,
        ),
    };
    let Some(profile) = profile else {
        if let Some(key) = user_options
            .keys()
            .find(|k| *k != "profile" && is_profile_option_key(config, k))
        {
            return Err(OptionsError::UnknownKey { key: shorten(key) });
        }
        return Ok(None);
    };
    let slug = profile.slug();
    let form_prefix = format!("profile-option-{slug}--");
    let mut given: Vec<(&str, &str)> = Vec::new();
    for (key, value) in user_options {
        if key == "profile" {
            continue;
        }
        let option = [
            key.strip_prefix(&form_prefix),
            key.strip_prefix("profile-option-"),
            Some(key.as_str()),
        ]
        .into_iter()
        .flatten()
        .find_map(|name| {
            profile
                .profile_options
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(n, _)| n.as_str())
        });
        let Some(option) = option else {
            if is_profile_option_key(config, key) {
                // An option of another profile: a mistake worth saying, not a silent default.
                return Err(OptionsError::UnknownKey { key: shorten(key) });
            }
            // A key no profile knows (a hub-side marker such as egi-monitoring's run marker,
            // BinderHub's extra options): KubeSpawner ignores these, and so do we.
            tracing::debug!(key = %shorten(key), "user option ignored: no profile has it");
            continue;
        };
        if given.iter().any(|(o, _)| *o == option) {
            return Err(OptionsError::DuplicateOption {
                option: option.to_owned(),
            });
        }
        if let Some(choice) = string_value(key, value)? {
            given.push((option, choice));
        }
    }
    let mut choices = Vec::new();
    for (name, option) in profile.profile_options.iter() {
        let choice = match given.iter().find(|(o, _)| o == name) {
            Some((_, choice)) => {
                if option.choices.get(choice).is_none() {
                    return Err(OptionsError::UnknownChoice {
                        option: name.clone(),
                        choice: (*choice).to_owned(),
                        available: option.choices.iter().map(|(k, _)| k.clone()).collect(),
                    });
                }
                (*choice).to_owned()
            }
            None => match Profile::default_choice(option) {
                Some(choice) => choice.to_owned(),
                None => continue,
            },
        };
        choices.push((name.as_str(), choice));
    }
    Ok(Some((profile, choices)))
}

/// Validates `user_options` and resolves one server's [`SpawnPlan`]: names from the templates
/// (made valid whatever the user name), the profile (the asked one, else the default or first
/// profile visible to the user), settings with overrides applied in the order configuration,
/// profile, option choices, and templates expanded; the claim step from the PVC policy.
pub fn resolve(
    config: &KubeSpawnerConfig,
    user: &User,
    server_name: &str,
    user_options: &Map<String, Value>,
) -> Result<SpawnPlan, OptionsError> {
    let selected = select(config, user, user_options)?;
    let names = Names::new(&user.name, server_name);
    let context = TemplateContext {
        user_id: user.id,
        hub_namespace: Some(&config.namespace),
    };
    let mut settings = config.settings();
    let mut profile_slug = None;
    if let Some((profile, choices)) = &selected {
        profile.kubespawner_override.apply_to(&mut settings);
        for (option, choice) in choices {
            let chosen = profile
                .profile_options
                .get(option)
                .and_then(|o| o.choices.get(choice));
            if let Some(chosen) = chosen {
                chosen.kubespawner_override.apply_to(&mut settings);
            }
        }
        profile_slug = Some(profile.slug());
    }
    settings.check(&config.namespace)?;
    let mut settings = settings.expanded(&names, &context)?;
    settings.profile.clone_from(&profile_slug);
    match user.primary_group.as_deref() {
        Some(group) if config.primary_group_annotation && !group.is_empty() => {
            settings
                .extra_annotations
                .insert(PRIMARY_GROUP_ANNOTATION.to_owned(), group.to_owned());
        }
        _ => {}
    }
    let name = |field: &str, template: &str| -> Result<String, ConfigError> {
        naming::expand_with(template, &names, &context)
            .map(|n| naming::object_name(&n))
            .map_err(|e| e.in_field(field))
    };
    let namespace = match &config.user_namespace_template {
        Some(template) => name("user_namespace_template", template)?,
        None => config.namespace.clone(),
    };
    let pod_name = name("pod_name_template", &config.pod_name_template)?;
    let secret_name = name(
        "token_secret_name_template",
        &config.token_secret_name_template,
    )?;
    let claim = config.storage.plan(&names, &context)?;
    Ok(SpawnPlan {
        namespace,
        pod_name,
        secret_name,
        names,
        profile: profile_slug,
        settings,
        claim,
    })
}

#[cfg(test)]
mod tests;
