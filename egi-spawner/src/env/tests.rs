use std::collections::BTreeMap;

use secrecy::SecretString;
use serde_json::{Map, json};

use super::*;
use crate::User;
use crate::config::KubeSpawnerConfig;

pub(crate) fn hub() -> HubContext {
    HubContext {
        api_token: SecretString::from("s3cr3t-api-token"),
        client_id: "jupyterhub-user-alice".to_owned(),
        api_url: "http://hub:8081/hub/api".to_owned(),
        activity_url: String::new(),
        base_url: "/".to_owned(),
        service_prefix: "/user/alice%40x/gpu/".to_owned(),
        service_url: "http://0.0.0.0:8888/user/alice%40x/gpu/".to_owned(),
        oauth_callback_url: "/user/alice%40x/gpu/oauth_callback".to_owned(),
        oauth_scopes: vec![
            "access:servers!server=alice@x/gpu".to_owned(),
            "ü".to_owned(),
        ],
        oauth_access_scopes: vec!["access:servers!server=alice@x/gpu".to_owned()],
        host: String::new(),
        public_url: "https://hub.example/user/alice%40x/gpu/".to_owned(),
        root_dir: String::new(),
        default_url: "/lab".to_owned(),
        extra_env: Default::default(),
    }
}

fn plan(config: serde_json::Value) -> SpawnPlan {
    let config: KubeSpawnerConfig = serde_json::from_value(config).unwrap();
    let user = User {
        name: "alice@x".to_owned(),
        id: Some(1),
        ..User::default()
    };
    crate::resolve(&config, &user, "gpu", &Map::new()).unwrap()
}

fn as_map(env: &[EnvVar]) -> BTreeMap<&str, &EnvVar> {
    env.iter().map(|e| (e.name.as_str(), e)).collect()
}

fn value<'a>(env: &BTreeMap<&str, &'a EnvVar>, key: &str) -> &'a str {
    env[key]
        .value
        .as_deref()
        .unwrap_or_else(|| panic!("{key} has no value"))
}

#[test]
fn hub_variables() {
    let p = plan(
        json!({"mem_limit": "1G", "mem_guarantee": 536870912, "cpu_limit": 2, "cpu_guarantee": 0.5}),
    );
    let env = single_user_env(&p, &hub());
    let names: Vec<&str> = env.iter().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted output");
    let env = as_map(&env);
    for key in [
        "JUPYTERHUB_API_TOKEN",
        "JPY_API_TOKEN",
        "JUPYTERHUB_CLIENT_ID",
        "JUPYTERHUB_API_URL",
        "JUPYTERHUB_ACTIVITY_URL",
        "JUPYTERHUB_BASE_URL",
        "JUPYTERHUB_SERVICE_PREFIX",
        "JUPYTERHUB_SERVICE_URL",
        "JUPYTERHUB_USER",
        "JUPYTERHUB_SERVER_NAME",
        "JUPYTERHUB_OAUTH_CALLBACK_URL",
        "JUPYTERHUB_OAUTH_SCOPES",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES",
        "JUPYTERHUB_HOST",
        "JUPYTERHUB_PUBLIC_URL",
        "MEM_LIMIT",
        "MEM_GUARANTEE",
        "CPU_LIMIT",
        "CPU_GUARANTEE",
        "JUPYTERHUB_DEFAULT_URL",
        "JUPYTER_IMAGE",
        "JUPYTER_IMAGE_SPEC",
    ] {
        assert!(env.contains_key(key), "{key} missing");
    }
    assert!(
        !env.contains_key("JUPYTERHUB_ROOT_DIR"),
        "unset root dir is not exported"
    );
    assert_eq!(value(&env, "JUPYTERHUB_USER"), "alice@x");
    assert_eq!(value(&env, "JUPYTERHUB_SERVER_NAME"), "gpu");
    assert_eq!(value(&env, "MEM_LIMIT"), "1073741824");
    assert_eq!(value(&env, "MEM_GUARANTEE"), "536870912");
    assert_eq!(value(&env, "CPU_LIMIT"), "2.0");
    assert_eq!(value(&env, "CPU_GUARANTEE"), "0.5");
    assert_eq!(
        value(&env, "JUPYTERHUB_OAUTH_SCOPES"),
        r#"["access:servers!server=alice@x/gpu", "\u00fc"]"#
    );
    assert_eq!(
        value(&env, "JUPYTERHUB_ACTIVITY_URL"),
        "http://hub:8081/hub/api/users/alice@x/activity"
    );
    for key in ["JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"] {
        assert_eq!(env[key].value, None);
        let secret = env[key]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(secret.name, p.secret_name);
        assert_eq!(secret.key, API_TOKEN_KEY);
    }
}

#[test]
fn limits_only_when_configured() {
    let env = single_user_env(&plan(json!({})), &hub());
    let env = as_map(&env);
    for key in ["MEM_LIMIT", "MEM_GUARANTEE", "CPU_LIMIT", "CPU_GUARANTEE"] {
        assert!(!env.contains_key(key), "{key}");
    }
}

#[test]
fn admin_environment_overrides_all() {
    let p = plan(json!({"environment": {
        "JUPYTERHUB_USER": "someone-else",
        "HOME_OF": "/home/{username}",
        "JPY_API_TOKEN": {"valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}},
        "JUPYTERHUB_API_TOKEN": "plain",
        "COUNT": 3,
    }}));
    let env = single_user_env(&p, &hub());
    let env = as_map(&env);
    assert_eq!(value(&env, "JUPYTERHUB_USER"), "someone-else");
    assert_eq!(value(&env, "HOME_OF"), "/home/alice-x---24192faa");
    assert_eq!(value(&env, "JUPYTERHUB_API_TOKEN"), "plain");
    assert_eq!(value(&env, "COUNT"), "3");
    let jpy = env["JPY_API_TOKEN"].value_from.as_ref().unwrap();
    assert_eq!(jpy.secret_key_ref.as_ref().unwrap().name, "other");
}

#[test]
fn python_formatting() {
    assert_eq!(python_float(2.0), "2.0");
    assert_eq!(python_float(0.1), "0.1");
    assert_eq!(python_float(1e-5), "1e-05");
    assert_eq!(python_float(1e16), "1e+16");
    assert_eq!(python_float(1.5e16), "1.5e+16");
    assert_eq!(python_float(123456789.125), "123456789.125");
    assert_eq!(python_json_list(&[]), "[]");
    assert_eq!(
        python_json_list(&["a\"b".to_owned(), "😀".to_owned()]),
        r#"["a\"b", "\ud83d\ude00"]"#
    );
}

#[test]
fn references_come_after_what_they_refer_to() {
    let p = plan(json!({"environment": {
        "A_URL": "$(JUPYTERHUB_SERVICE_PREFIX)lab",
        "B_CHAIN": "$(A_URL)?x=1",
        "C_PLAIN": "c",
    }}));
    let env = single_user_env(&p, &hub());
    let at = |name: &str| env.iter().position(|e| e.name == name).unwrap();
    assert!(at("A_URL") > at("JUPYTERHUB_SERVICE_PREFIX"), "{env:?}");
    assert!(at("B_CHAIN") > at("A_URL"));
    // Otherwise by name.
    assert!(at("C_PLAIN") < at("JUPYTERHUB_API_URL"));
}

#[test]
fn the_hubs_extra_variables_pass_through_and_the_admin_still_wins() {
    let mut context = hub();
    context.extra_env.insert(
        "JUPYTERHUB_PUBLIC_HUB_URL".into(),
        "https://hub.example/".into(),
    );
    context
        .extra_env
        .insert("SHADOWED".into(), "from-hub".into());
    let p = plan(json!({"environment": {"SHADOWED": "from-admin"}}));
    let env = single_user_env(&p, &context);
    let env = as_map(&env);
    assert_eq!(
        value(&env, "JUPYTERHUB_PUBLIC_HUB_URL"),
        "https://hub.example/"
    );
    assert_eq!(value(&env, "SHADOWED"), "from-admin");
}
