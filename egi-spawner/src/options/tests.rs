use serde_json::json;

use super::*;
use crate::plan::ClaimPlan;

pub(crate) fn config() -> KubeSpawnerConfig {
    serde_json::from_value(json!({
        "cpu_limit": 2.0,
        "mem_limit": "2G",
        "storage": {"policy": {"type": "per-server"}},
        "profile_list": [
            {
                "display_name": "Small",
                "default": true,
                "kubespawner_override": {"cpu_limit": 1.0, "environment": {"SIZE": "small"}},
            },
            {
                "display_name": "GPU (A100)",
                "slug": "gpu",
                "vo_claims": ["vo.gpu.eu"],
                "kubespawner_override": {
                    "image": "gpu:1",
                    "extra_resource_limits": {"nvidia.com/gpu": 1},
                    "node_selector": {"gpu": "a100"},
                },
                "profile_options": {
                    "image": {
                        "display_name": "Image",
                        "choices": {
                            "torch": {"display_name": "PyTorch", "kubespawner_override": {"image": "torch:2"}},
                            "tf": {"display_name": "TensorFlow", "default": true, "kubespawner_override": {"image": "tf:2", "node_selector": {"gpu": null}}},
                        },
                    },
                },
            },
        ],
    }))
    .unwrap()
}

pub(crate) fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.to_owned(),
        id: Some(7),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        primary_group: groups.first().map(|g| (*g).to_owned()),
    }
}

#[allow(clippy::needless_pass_by_value)]
fn opts(v: Value) -> Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn default_profile_and_names() {
    let c = config();
    c.validate().unwrap();
    let plan = resolve(&c, &user("alice", &[]), "", &Map::new()).unwrap();
    assert_eq!(plan.profile.as_deref(), Some("small"));
    assert_eq!(plan.pod_name, "jupyter-alice");
    assert_eq!(plan.secret_name, "access-token-alice");
    assert_eq!(plan.namespace, "default");
    assert_eq!(plan.settings.cpu_limit, Some(1.0));
    assert_eq!(plan.settings.mem_limit.map(|m| m.0), Some(2 << 30));
    assert!(matches!(
        plan.claim,
        ClaimPlan::Ensure {
            delete_forever: true,
            ..
        }
    ));
    assert_eq!(plan.claim.name(), Some("claim-alice"));
}

#[test]
fn overrides_apply_in_order() {
    let c = config();
    let u = user("bob", &["vo.gpu.eu"]);
    let plan = resolve(&c, &u, "x", &opts(json!({"profile": "gpu"}))).unwrap();
    // default choice "tf" applied after the profile, removing the node selector key
    assert_eq!(plan.settings.image, "tf:2");
    assert!(plan.settings.node_selector.is_empty());
    assert_eq!(plan.settings.extra_resource_limits["nvidia.com/gpu"].0, "1");
    assert_eq!(plan.settings.cpu_limit, Some(2.0));
    assert_eq!(
        plan.settings.extra_annotations["egi.eu/primary_group"],
        "vo.gpu.eu"
    );
    for key in ["image", "profile-option-image", "profile-option-gpu--image"] {
        let plan = resolve(&c, &u, "", &opts(json!({"profile": "gpu", key: "torch"}))).unwrap();
        assert_eq!(plan.settings.image, "torch:2", "{key}");
        assert_eq!(plan.settings.node_selector["gpu"], "a100");
    }
}

#[test]
fn hidden_profiles_are_not_revealed() {
    let c = config();
    let err = resolve(
        &c,
        &user("eve", &["other"]),
        "",
        &opts(json!({"profile": "gpu"})),
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, OptionsError::UnknownProfile { .. }));
    assert_eq!(
        msg,
        r#"no profile "gpu" is available; choose one of: small"#
    );
    let err = resolve(&c, &user("eve", &[]), "", &opts(json!({"profile": "nope"}))).unwrap_err();
    assert!(!err.to_string().contains("gpu"), "{err}");
}

#[test]
fn no_visible_profile() {
    let mut c = config();
    c.profile_list.retain(|p| !p.vo_claims.is_empty());
    let err = resolve(&c, &user("eve", &[]), "", &Map::new()).unwrap_err();
    assert!(matches!(err, OptionsError::NoProfileAvailable), "{err}");
    // the first visible profile is the default when none is marked
    let plan = resolve(&c, &user("g", &["vo.gpu.eu"]), "", &Map::new()).unwrap();
    assert_eq!(plan.profile.as_deref(), Some("gpu"));
}

#[test]
fn keys_no_profile_knows_are_ignored_as_kubespawner_does() {
    let c = config();
    let u = user("bob", &["vo.gpu.eu"]);
    let marker = json!({"profile": "gpu", "egi_monitoring_run": {"id": "x", "busy_until": 1.0}});
    let plan = resolve(&c, &u, "", &opts(marker)).unwrap();
    assert_eq!(plan.profile.as_deref(), Some("gpu"));
    let plan = resolve(&c, &u, "", &opts(json!({"binder_ref": "main"}))).unwrap();
    assert!(plan.profile.is_some());
    // Still checked for control characters, like every key.
    assert!(resolve(&c, &u, "", &opts(json!({"x\u{1}": 1}))).is_err());
}

#[test]
fn hostile_options_are_rejected_with_the_key() {
    let c = config();
    let u = user("bob", &["vo.gpu.eu"]);
    let cases = [
        (
            json!({"profile-option-gpu--nope": "x"}),
            "unknown user option \"profile-option-gpu--nope\"",
        ),
        (
            json!({"profile": 3}),
            "user option \"profile\" must be a string, not a number",
        ),
        (json!({"profile": ["gpu"]}), "must be a string, not a list"),
        (
            json!({"profile": "a\nb"}),
            "user option \"profile\" contains control characters",
        ),
        (
            json!({"profile": "x".repeat(300)}),
            "user option \"profile\" is too long (300 characters",
        ),
        (
            json!({"profile": "gpu", "image": "nope"}),
            "\"nope\" is not a choice of option \"image\"; choose one of: tf, torch",
        ),
        (
            json!({"profile": "gpu", "image": {"a": 1}}),
            "user option \"image\" must be a string, not an object",
        ),
        (
            json!({"profile": "gpu", "image": "tf", "profile-option-image": "tf"}),
            "option \"image\" is given twice",
        ),
        (
            json!({"profile": "small", "image": "tf"}),
            "unknown user option \"image\"",
        ),
        (
            json!({"k\u{0}": "v"}),
            "user option \"k\\0\" contains control characters",
        ),
    ];
    for (options, want) in cases {
        let err = resolve(&c, &u, "", &opts(options.clone())).unwrap_err();
        assert!(err.to_string().contains(want), "{options}: {err}");
    }
    let long_key = "k".repeat(1000);
    let err = resolve(&c, &u, "", &opts(json!({long_key: "v"}))).unwrap_err();
    assert!(err.to_string().len() < 200, "{err}");
}

#[test]
fn empty_and_null_mean_default() {
    let c = config();
    let u = user("bob", &["vo.gpu.eu"]);
    let plan = resolve(&c, &u, "", &opts(json!({"profile": ""}))).unwrap();
    assert_eq!(plan.profile.as_deref(), Some("small"));
    let plan = resolve(&c, &u, "", &opts(json!({"profile": "gpu", "image": null}))).unwrap();
    assert_eq!(plan.settings.image, "tf:2");
}

#[test]
fn without_profiles() {
    let c = KubeSpawnerConfig::default();
    let plan = resolve(&c, &user("a", &[]), "", &Map::new()).unwrap();
    assert_eq!(plan.profile, None);
    assert_eq!(plan.claim, ClaimPlan::None);
    assert!(resolve(&c, &user("a", &[]), "", &opts(json!({"profile": "x"}))).is_err());
    // A key no profile knows is ignored, as KubeSpawner does: it cannot change the image.
    let plan = resolve(&c, &user("a", &[]), "", &opts(json!({"image": "x"}))).unwrap();
    assert_eq!(plan.settings.image, c.settings().image);
}

#[test]
fn hostile_usernames_give_valid_names() {
    let mut c = config();
    c.user_namespace_template = Some("{hubnamespace}-{username}".to_owned());
    let long = "é".repeat(300);
    for name in ["../../etc", "a\nb", &long, "用户", "", "UPPER", "a--b", "-"] {
        for server in ["", "../x", "NAMED"] {
            let plan = resolve(&c, &user(name, &[]), server, &Map::new()).unwrap();
            for n in [&plan.pod_name, &plan.secret_name, &plan.namespace] {
                assert!(naming::is_valid_object_name(n), "{name:?}/{server:?}: {n}");
            }
            let claim = plan.claim.name().unwrap();
            assert!(naming::is_valid_object_name(claim), "{claim}");
            assert_eq!(plan.names.username, name);
        }
    }
    let plan = resolve(&c, &user("bob", &[]), "", &Map::new()).unwrap();
    assert_eq!(plan.namespace, "user-bob");
}

#[test]
fn templates_and_user_ids() {
    let mut c = KubeSpawnerConfig {
        pod_name_template: "nb-{userid}-{username}".to_owned(),
        ..KubeSpawnerConfig::default()
    };
    c.validate().unwrap();
    let plan = resolve(&c, &user("Bob", &[]), "", &Map::new()).unwrap();
    assert_eq!(plan.pod_name, "nb-7-bob---cd9fb1e1");
    let mut anonymous = user("bob", &[]);
    anonymous.id = None;
    let err = resolve(&c, &anonymous, "", &Map::new()).unwrap_err();
    assert!(matches!(err, OptionsError::Config(_)), "{err}");
    // raw names in name templates are made safe
    c.pod_name_template = "jupyter-{unescaped_username}".to_owned();
    let plan = resolve(&c, &user("Bob@X", &[]), "", &Map::new()).unwrap();
    assert!(
        naming::is_valid_object_name(&plan.pod_name),
        "{}",
        plan.pod_name
    );
}
