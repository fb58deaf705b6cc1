//! `user_options` (from the spawn form or straight from the REST API) validated and resolved
//! into a [`SpawnPlan`].
//!
//! Keys, as KubeSpawner 7: `profile` (a profile slug) and, for each option of that profile,
//! the option name (`{"profile": "gpu", "image": "pytorch"}`). The form's spelling
//! `profile-option-{slug}--{option}` and the short `profile-option-{option}` are accepted too.
//! Everything else is refused.

use serde_json::{Map, Value};

use crate::config::{ConfigError, KubeSpawnerConfig, Profile};
use crate::manifest::PRIMARY_GROUP_ANNOTATION;
use crate::naming::{self, Names, TemplateContext};
use crate::plan::{SpawnPlan, UserInfo};

/// Longest accepted user option key or value, in characters.
pub const MAX_OPTION_LENGTH: usize = 256;

/// Why `user_options` were refused. Messages name the key; values are quoted only when they
/// passed the length and character checks.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// The key is not `profile` nor an option of the chosen profile.
    #[error("unknown user option \"{key}\"")]
    UnknownKey {
        /// The key (shortened when long).
        key: String,
    },
    /// The value is not a string.
    #[error("user option \"{key}\" must be a string, not {found}")]
    NotAString {
        /// The key.
        key: String,
        /// The JSON type given.
        found: &'static str,
    },
    /// The key or value is longer than [`MAX_OPTION_LENGTH`].
    #[error("user option \"{key}\" is too long ({length} characters, at most {MAX_OPTION_LENGTH})")]
    TooLong {
        /// The key (shortened when long).
        key: String,
        /// Its or its value's length in characters.
        length: usize,
    },
    /// The key or value contains control characters.
    #[error("user option \"{key}\" contains control characters")]
    ControlCharacters {
        /// The key (with control characters escaped).
        key: String,
    },
    /// No profile with this slug is available to the user (it does not exist, or its
    /// `vo_claims` exclude the user: the two are not told apart).
    #[error("no profile {slug:?} is available; {}", one_of(available))]
    UnknownProfile {
        /// The slug asked for.
        slug: String,
        /// The slugs of the profiles the user may choose.
        available: Vec<String>,
    },
    /// Profiles are configured but the user may see none of them.
    #[error("no profile is available to this user")]
    NoProfileAvailable,
    /// The choice is not one of the option's.
    #[error(
        "{choice:?} is not a choice of option {option:?}; {}",
        one_of(available)
    )]
    UnknownChoice {
        /// The option name.
        option: String,
        /// The choice given.
        choice: String,
        /// The option's choices.
        available: Vec<String>,
    },
    /// The same option is given under two keys.
    #[error("option {option:?} is given twice")]
    DuplicateOption {
        /// The option name.
        option: String,
    },
    /// The configuration cannot produce this server (a template needs a user id the hub did not
    /// give, an override breaks a setting).
    #[error("the spawner configuration cannot start this server")]
    Config(#[from] ConfigError),
}

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

/// A profile and the choice key of each of its options.
type Selection<'c> = (&'c Profile, Vec<(&'c str, String)>);

/// The profile and option choices the user asked for, validated.
fn select<'c>(
    config: &'c KubeSpawnerConfig,
    user: &UserInfo,
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
        if let Some(key) = user_options.keys().find(|k| *k != "profile") {
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
            return Err(OptionsError::UnknownKey { key: shorten(key) });
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
    user: &UserInfo,
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

/// "choose one of: a, b" or, with nothing to choose, says so.
fn one_of(available: &[String]) -> String {
    if available.is_empty() {
        "none is configured".to_owned()
    } else {
        format!("choose one of: {}", available.join(", "))
    }
}
