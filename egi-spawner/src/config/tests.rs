use serde_json::json;

use super::*;
use crate::storage::PvcPolicy;

#[allow(clippy::needless_pass_by_value)]
fn parse(v: serde_json::Value) -> Result<KubeSpawnerConfig, ConfigError> {
    KubeSpawnerConfig::from_json(&v.to_string())
}

/// The error and its sources, joined as an error report would show them.
fn report(err: &ConfigError) -> String {
    let mut out = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[test]
fn defaults_match_kubespawner() {
    let c = KubeSpawnerConfig::default();
    c.validate().unwrap();
    assert_eq!(c.namespace, "default");
    assert_eq!(c.pod_name_template, "jupyter-{user_server}");
    assert_eq!(c.token_secret_name_template, "access-token-{user_server}");
    assert_eq!(c.image, "quay.io/jupyterhub/singleuser:latest");
    assert!(c.cmd.is_empty(), "the image's CMD");
    assert_eq!(c.image_pull_policy, None);
    assert_eq!(c.port, 8888);
    assert_eq!(c.allow_privilege_escalation, Some(false));
    assert_eq!(c.tokens.mount_path, "/var/run/secrets/egi.eu/");
    assert!(c.tokens.enabled);
    assert_eq!(c.storage.policy, PvcPolicy::None);
    assert_eq!(c.storage.capacity, "10Gi");
    assert_eq!(c.storage.access_modes, ["ReadWriteOnce"]);
    assert_eq!(c.storage.home_mount_path, "/home/jovyan");
    assert_eq!(parse(json!({})).unwrap(), c);
    // round trip
    let back: KubeSpawnerConfig =
        serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}

#[test]
fn unknown_keys_are_rejected() {
    for bad in [
        json!({"imgae": "x"}),
        json!({"storage": {"capcity": "1Gi"}}),
        json!({"tokens": {"mountpath": "/x"}}),
        json!({"profile_list": [{"display_name": "a", "kubespawner_overide": {}}]}),
        json!({"profile_list": [{"display_name": "a", "kubespawner_override": {"cpu_limt": 1}}]}),
        json!({"profile_list": [{"display_name": "a", "profile_options": {"o": {"choices": {"c": {"kubespawner_override": {"imag": "x"}}}}}}]}),
    ] {
        let err = parse(bad.clone()).unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)), "{bad}");
        assert!(
            report(&err).contains("unknown field"),
            "{bad}: {}",
            report(&err)
        );
    }
}

#[test]
fn byte_specifications_use_powers_of_1024() {
    let cases = [
        (json!(1024), 1024u64),
        (json!(1.9), 1),
        (json!("1K"), 1024),
        (json!("512M"), 512 << 20),
        (json!("1G"), 1 << 30),
        (json!("1.5G"), 3 << 29),
        (json!("2Gi"), 2 << 30),
        (json!("1T"), 1 << 40),
        (json!("4096"), 4096),
    ];
    for (value, bytes) in cases {
        let c = parse(json!({"mem_limit": value})).unwrap();
        assert_eq!(c.mem_limit, Some(ByteSize(bytes)), "{value}");
    }
    for bad in [
        json!("1GB"),
        json!("1g"),
        json!("-1G"),
        json!("G"),
        json!(-5),
        json!(true),
        json!("1e999G"),
    ] {
        let err = parse(json!({"mem_limit": bad})).unwrap_err();
        assert!(
            report(&err).contains("not a valid memory specification"),
            "{bad}: {}",
            report(&err)
        );
    }
}

#[test]
fn validate_errors_name_field_and_value() {
    let cases = [
        (
            json!({"pod_name_template": "jupyter-{user}"}),
            "invalid `pod_name_template`: template \"jupyter-{user}\" uses the unknown field {user}",
        ),
        (
            json!({"pod_name_template": "Jupyter-{username}"}),
            "gives \"Jupyter-jovyan\"",
        ),
        (
            json!({"token_secret_name_template": "t-{username"}),
            "unclosed '{'",
        ),
        (
            json!({"namespace": "Bad_NS"}),
            "invalid `namespace`: \"Bad_NS\"",
        ),
        (
            json!({"storage": {"capacity": "ten"}}),
            "invalid `storage.capacity`: \"ten\" is not a Kubernetes quantity",
        ),
        (
            json!({"storage": {"policy": {"type": "per-user"}, "claim_name_template": "c-{nope}"}}),
            "invalid `storage.claim_name_template`",
        ),
        (
            json!({"extra_resource_limits": {"nvidia.com/gpu": "lots"}}),
            "extra_resource_limits.nvidia.com/gpu",
        ),
        (
            json!({"cpu_limit": -1}),
            "invalid `cpu_limit`: \"-1\": not a CPU count",
        ),
        (
            json!({"cpu_guarantee": 2, "cpu_limit": 1}),
            "above cpu_limit",
        ),
        (
            json!({"mem_guarantee": "2G", "mem_limit": "1G"}),
            "above mem_limit",
        ),
        (json!({"port": 0}), "invalid `port`"),
        (
            json!({"tokens": {"mount_path": "relative"}}),
            "tokens.mount_path",
        ),
        (
            json!({"environment": {"A=B": "x"}}),
            "not an environment variable name",
        ),
        (
            json!({"environment": {"A": "{oops}"}}),
            "invalid `environment.A`",
        ),
        (
            json!({"extra_pod_config": {"containers": "nope"}}),
            "invalid `extra_pod_config`",
        ),
        (
            json!({"profile_list": [{"display_name": "A"}, {"display_name": "a"}]}),
            "two profiles have the slug \"a\"",
        ),
        (
            json!({"profile_list": [{"display_name": "A", "default": true}, {"display_name": "B", "default": true}]}),
            "profiles \"a\" and \"b\" are both marked default",
        ),
        (
            json!({"profile_list": [{"display_name": "!!"}]}),
            "gives an empty slug",
        ),
        (
            json!({"profile_list": [{"display_name": "A", "profile_options": {"img": {"choices": {}}}}]}),
            "option \"img\" of profile \"a\" has no choices",
        ),
        (
            json!({"profile_list": [{"display_name": "A", "profile_options": {"img": {"choices": {"x": {"default": true}, "y": {"default": true}}}}}]}),
            "more than one default choice",
        ),
        (
            json!({"profile_list": [{"display_name": "A", "kubespawner_override": {"cpu_limit": -2}}]}),
            "invalid `profile_list[a].kubespawner_override`",
        ),
        (
            json!({"profile_list": [{"display_name": "A", "profile_options": {"o": {"choices": {"c": {"kubespawner_override": {"port": 0}}}}}}]}),
            "profile_list[a].profile_options.o.choices.c",
        ),
    ];
    for (config, want) in cases {
        let err = parse(config.clone()).unwrap_err();
        let report = report(&err);
        assert!(report.contains(want), "{config}: {report}");
    }
}

#[test]
fn duplicate_choice_keys_rejected_and_order_kept() {
    let text = r#"{"profile_list": [{"display_name": "A", "profile_options": {"o": {"choices": {"z": {}, "a": {}, "z": {}}}}}]}"#;
    assert!(KubeSpawnerConfig::from_json(text).is_err());
    // (from text: a serde_json::Value would sort the keys)
    let text = r#"{"profile_list": [{"display_name": "A", "profile_options": {"o": {"choices": {"z": {}, "a": {}}}}}]}"#;
    let c = KubeSpawnerConfig::from_json(text).unwrap();
    let option = c.profile_list[0].profile_options.get("o").unwrap();
    assert_eq!(Profile::default_choice(option), Some("z"));
}

#[test]
fn overrides_merge_maps_and_replace_the_rest() {
    let mut settings = parse(json!({
        "environment": {"A": "1", "B": "2"},
        "node_selector": {"x": "1"},
        "tolerations": [{"key": "a"}],
        "extra_pod_config": {"dnsConfig": {"options": [{"name": "ndots"}], "nameservers": ["1.1.1.1"]}},
    }))
    .unwrap()
    .settings();
    let overrides: Overrides = serde_json::from_value(json!({
        "environment": {"B": null, "C": "3"},
        "node_selector": {"y": "2"},
        "tolerations": [{"key": "b"}],
        "mem_limit": "1G",
        "extra_pod_config": {"dnsConfig": {"nameservers": null, "searches": ["x"]}},
    }))
    .unwrap();
    overrides.apply_to(&mut settings);
    let env: Vec<&str> = settings.environment.keys().map(String::as_str).collect();
    assert_eq!(env, ["A", "C"]);
    assert_eq!(settings.node_selector.len(), 2);
    assert_eq!(settings.tolerations.len(), 1);
    assert_eq!(settings.tolerations[0].key.as_deref(), Some("b"));
    assert_eq!(settings.mem_limit, Some(ByteSize(1 << 30)));
    assert_eq!(
        serde_json::Value::Object(settings.extra_pod_config),
        json!({"dnsConfig": {"options": [{"name": "ndots"}], "searches": ["x"]}})
    );
}

#[test]
fn env_values() {
    let c = parse(json!({"environment": {
        "A": "x", "N": 1.5, "B": false,
        "S": {"valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        "V": {"name": "V", "value": "v"},
    }}))
    .unwrap();
    assert_eq!(c.environment["N"], EnvValue::Value("1.5".to_owned()));
    assert_eq!(c.environment["B"], EnvValue::Value("false".to_owned()));
    assert_eq!(c.environment["V"], EnvValue::Value("v".to_owned()));
    assert!(matches!(c.environment["S"], EnvValue::From(_)));
    for bad in [
        json!({"E": [1]}),
        json!({"E": {"valueFrom": {}, "extra": 1}}),
        json!({"E": {}}),
    ] {
        assert!(parse(json!({"environment": bad})).is_err(), "{bad}");
    }
}

#[test]
fn labels_that_kubernetes_would_refuse_fail_at_load() {
    let bad = |json: serde_json::Value| {
        let config: KubeSpawnerConfig = serde_json::from_value(json).unwrap();
        let error = config.validate().expect_err("refused");
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    let message = bad(serde_json::json!({"extra_labels": {"owner": "{unescaped_username}"}}));
    assert!(message.contains("extra_labels"), "{message}");
    let message = bad(serde_json::json!({"extra_labels": {"bad key": "x"}}));
    assert!(message.contains("bad key"), "{message}");
    let message = bad(serde_json::json!({"storage": {"extra_labels": {"owner": "{username}"}}}));
    assert!(message.contains("storage.extra_labels"), "{message}");
    let ok: KubeSpawnerConfig = serde_json::from_value(serde_json::json!({
        "extra_labels": {"owner": "{username}", "example.org/team": "a.b_c"}
    }))
    .unwrap();
    ok.validate().expect("the safe slug is a valid label value");
}

#[test]
fn extra_config_errors_name_keys_but_never_values() {
    let config: KubeSpawnerConfig = serde_json::from_value(serde_json::json!({
        "extra_container_config": {"env": "s3cr3t-token-value"}
    }))
    .unwrap();
    let error = config.validate().expect_err("env must be a list");
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    assert!(text.contains("env"), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
}

#[test]
fn volumes_clashing_with_the_home_claim_or_tokens_fail_at_load() {
    let refused = |json: serde_json::Value| {
        let config: KubeSpawnerConfig = serde_json::from_value(json).unwrap();
        config.validate().is_err()
    };
    assert!(refused(serde_json::json!({
        "storage": {"policy": {"type": "per-user"}},
        "volumes": [{"name": "home", "emptyDir": {}}]
    })));
    assert!(refused(serde_json::json!({
        "storage": {"policy": {"type": "per-user"}},
        "volume_mounts": [{"name": "data", "mountPath": "/home/jovyan/"}]
    })));
    assert!(refused(serde_json::json!({
        "storage": {"policy": {"type": "per-user"}},
        "tokens": {"mount_path": "/home/jovyan"}
    })));
    assert!(
        !refused(serde_json::json!({
            "volumes": [{"name": "home", "emptyDir": {}}],
            "volume_mounts": [{"name": "home", "mountPath": "/home/jovyan"}]
        })),
        "no claim: the admin's own home volume is fine"
    );
}

#[test]
fn null_in_an_override_unsets_a_setting_and_a_missing_key_keeps_it() {
    let config: KubeSpawnerConfig = serde_json::from_value(serde_json::json!({
        "cpu_limit": 2.0,
        "image_pull_policy": "Always",
        "profile_list": [
            {"display_name": "Unlimited", "kubespawner_override": {"cpu_limit": null, "image_pull_policy": null}},
            {"display_name": "Same", "kubespawner_override": {"image": "other/image:1"}}
        ]
    }))
    .unwrap();
    config.validate().unwrap();
    let user = crate::User {
        name: "u".into(),
        ..Default::default()
    };
    let plan = |profile: &str| {
        let mut options = serde_json::Map::new();
        options.insert("profile".into(), serde_json::json!(profile));
        crate::resolve(&config, &user, "", &options)
            .unwrap()
            .settings
    };
    let unlimited = plan("unlimited");
    assert_eq!(unlimited.cpu_limit, None);
    assert_eq!(unlimited.image_pull_policy, None);
    let same = plan("same");
    assert_eq!(same.cpu_limit, Some(2.0));
    assert_eq!(same.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(same.image, "other/image:1");
    // A required setting cannot be unset.
    let bad = serde_json::from_value::<KubeSpawnerConfig>(serde_json::json!({
        "profile_list": [{"display_name": "X", "kubespawner_override": {"image": null}}]
    }));
    assert!(bad.is_err());
}
