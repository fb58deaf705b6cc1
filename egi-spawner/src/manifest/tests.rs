use secrecy::SecretString;
use serde_json::{Map, json};

use super::*;
use crate::User;
use crate::config::KubeSpawnerConfig;
use crate::env::tests::hub;

fn plan_with(config: serde_json::Value, user: &str, server: &str) -> SpawnPlan {
    let config: KubeSpawnerConfig = serde_json::from_value(config).unwrap();
    config.validate().unwrap();
    let user = User {
        name: user.to_owned(),
        id: Some(1),
        groups: vec![],
        primary_group: Some("vo.example".to_owned()),
    };
    crate::resolve(&config, &user, server, &Map::new()).unwrap()
}

fn tokens() -> UserTokens {
    UserTokens {
        access_token: SecretString::from("user-access-token"),
        id_token: None,
    }
}

#[test]
fn pod_basics() {
    let plan = plan_with(json!({}), "Alice", "");
    let pod = pod(&plan, &hub(), None);
    let meta = &pod.metadata;
    assert_eq!(meta.name.as_deref(), Some("jupyter-alice---3bc51062"));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["hub.jupyter.org/username"], "Alice");
    assert_eq!(labels["hub.jupyter.org/servername"], "");
    assert_eq!(labels["component"], "singleuser-server");
    assert_eq!(labels["app.kubernetes.io/component"], "singleuser-server");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "egi-spawner");
    assert_eq!(labels["app"], "jupyterhub");
    assert_eq!(labels["heritage"], "jupyterhub");
    let annotations = meta.annotations.as_ref().unwrap();
    assert_eq!(annotations["hub.jupyter.org/username"], "Alice");
    assert_eq!(annotations["egi.eu/primary_group"], "vo.example");
    assert!(!annotations.contains_key("hub.jupyter.org/servername"));
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("OnFailure"));
    assert_eq!(spec.automount_service_account_token, Some(false));
    let c = &spec.containers[0];
    assert_eq!(c.name, "notebook");
    assert_eq!(
        c.image.as_deref(),
        Some("quay.io/jupyterhub/singleuser:latest")
    );
    assert_eq!(c.args, None, "the image's own CMD by default");
    let port = &c.ports.as_ref().unwrap()[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some("notebook-port"), 8888)
    );
    let csc = c.security_context.as_ref().unwrap();
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    // no claim: only the token volume
    let volumes = spec.volumes.as_ref().unwrap();
    assert_eq!(volumes.len(), 1);
    let secret = volumes[0].secret.as_ref().unwrap();
    assert_eq!(
        secret.secret_name.as_deref(),
        Some("access-token-alice---3bc51062")
    );
    let keys: Vec<&str> = secret
        .items
        .as_ref()
        .unwrap()
        .iter()
        .map(|i| i.key.as_str())
        .collect();
    assert_eq!(keys, ["access_token", "id_token"]);
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.mount_path, "/var/run/secrets/egi.eu/");
    assert_eq!(mount.read_only, Some(true));
}

#[test]
fn no_plain_token_in_pod() {
    let plan = plan_with(json!({}), "alice", "");
    let json = serde_json::to_string(&pod(&plan, &hub(), Some("claim-alice"))).unwrap();
    assert!(!json.contains("s3cr3t-api-token"), "{json}");
    assert!(json.contains("jupyterhub-api-token"));
}

#[test]
fn claim_mounted_only_when_given() {
    let config = json!({"storage": {"policy": {"type": "per-user"}, "home_mount_path": "/home/user", "sub_path": "{username}"}});
    let plan = plan_with(config, "bob", "");
    for (claim, expected) in [(None, 0), (Some("claim-bob"), 1)] {
        let pod = pod(&plan, &hub(), claim);
        let spec = pod.spec.unwrap();
        let homes: Vec<_> = spec
            .volumes
            .unwrap()
            .into_iter()
            .filter_map(|v| v.persistent_volume_claim)
            .collect();
        assert_eq!(homes.len(), expected);
        if let Some(home) = homes.first() {
            assert_eq!(home.claim_name, "claim-bob");
            let mount = spec.containers[0]
                .volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .find(|m| m.name == HOME_VOLUME)
                .unwrap();
            assert_eq!(mount.mount_path, "/home/user");
            assert_eq!(mount.sub_path.as_deref(), Some("bob"));
        }
    }
    let claim = claim(&plan).unwrap();
    assert_eq!(claim.metadata.name.as_deref(), Some("claim-bob"));
    assert_eq!(claim.metadata.namespace.as_deref(), Some("default"));
}

#[test]
fn settings_reach_the_pod() {
    let config = json!({
        "image": "img:1", "image_pull_policy": "Always", "image_pull_secrets": ["regcred"],
        "cmd": ["start.sh"], "args": ["--debug"], "port": 9999,
        "cpu_guarantee": 0.5, "cpu_limit": 2, "mem_guarantee": "512M", "mem_limit": "1G",
        "extra_resource_limits": {"nvidia.com/gpu": "1"},
        "node_selector": {"disk": "ssd"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "node_affinity_required": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}],
        "priority_class_name": "users", "scheduler_name": "sched",
        "uid": 1000, "gid": 100, "fs_gid": 100, "supplemental_gids": [5],
        "container_security_context": {"readOnlyRootFilesystem": true},
        "service_account": "sa-{username}",
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-{username}"}}],
        "volume_mounts": [{"name": "data", "mountPath": "/data"}],
        "init_containers": [{"name": "init", "image": "busybox"}],
        "extra_containers": [{"name": "side", "image": "side:1"}],
        "lifecycle_hooks": {"postStart": {"exec": {"command": ["true"]}}},
        "extra_labels": {"team": "{username}", "component": "hijack"},
        "extra_annotations": {"note": "x"},
        "extra_pod_config": {"hostname": "nb", "dnsPolicy": "None"},
        "extra_container_config": {"stdin": true},
        "tokens": {"enabled": false},
    });
    let plan = plan_with(config, "bob", "");
    let pod = pod(&plan, &hub(), None);
    let labels = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "bob");
    assert_eq!(labels["component"], "singleuser-server");
    assert_eq!(pod.metadata.annotations.as_ref().unwrap()["note"], "x");
    let spec = pod.spec.as_ref().unwrap();
    let c = &spec.containers[0];
    assert_eq!(c.image.as_deref(), Some("img:1"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(c.args.as_ref().unwrap(), &["start.sh", "--debug"]);
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 9999);
    assert_eq!(c.stdin, Some(true));
    let res = c.resources.as_ref().unwrap();
    let requests = res.requests.as_ref().unwrap();
    let limits = res.limits.as_ref().unwrap();
    assert_eq!(requests["cpu"].0, "500m");
    assert_eq!(requests["memory"].0, "536870912");
    assert_eq!(limits["cpu"].0, "2");
    assert_eq!(limits["memory"].0, "1073741824");
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    let csc = c.security_context.as_ref().unwrap();
    assert_eq!((csc.run_as_user, csc.run_as_group), (Some(1000), Some(100)));
    assert_eq!(csc.read_only_root_filesystem, Some(true));
    assert_eq!(csc.allow_privilege_escalation, Some(false));
    let psc = spec.security_context.as_ref().unwrap();
    assert_eq!(psc.fs_group, Some(100));
    assert_eq!(psc.supplemental_groups.as_deref(), Some(&[5][..]));
    assert_eq!(spec.service_account_name.as_deref(), Some("sa-bob"));
    assert_eq!(spec.automount_service_account_token, None);
    assert_eq!(spec.image_pull_secrets.as_ref().unwrap()[0].name, "regcred");
    assert_eq!(spec.node_selector.as_ref().unwrap()["disk"], "ssd");
    assert_eq!(spec.tolerations.as_ref().unwrap().len(), 1);
    assert!(spec.affinity.as_ref().unwrap().node_affinity.is_some());
    assert_eq!(spec.priority_class_name.as_deref(), Some("users"));
    assert_eq!(spec.scheduler_name.as_deref(), Some("sched"));
    assert_eq!(spec.hostname.as_deref(), Some("nb"));
    assert_eq!(spec.dns_policy.as_deref(), Some("None"));
    assert_eq!(spec.containers.len(), 2);
    assert_eq!(spec.init_containers.as_ref().unwrap().len(), 1);
    let volumes = spec.volumes.as_ref().unwrap();
    assert_eq!(volumes.len(), 1, "tokens disabled: no token volume");
    assert_eq!(
        volumes[0]
            .persistent_volume_claim
            .as_ref()
            .unwrap()
            .claim_name,
        "data-bob"
    );
    assert!(c.lifecycle.is_some());
}

#[test]
fn secret_manifest() {
    let plan = plan_with(json!({}), "alice", "gpu");
    let secret = token_secret(&plan, &hub(), Some(&tokens()));
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("access-token-alice--gpu")
    );
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert!(
        secret.metadata.owner_references.is_none(),
        "owned by no pod: no garbage collector races a start"
    );
    assert_eq!(secret.metadata.labels.as_ref(), Some(&pod_labels(&plan)));
    let data = secret.data.as_ref().unwrap();
    assert_eq!(data[API_TOKEN_KEY].0, b"s3cr3t-api-token");
    assert_eq!(data[ACCESS_TOKEN_KEY].0, b"user-access-token");
    assert_eq!(data[ID_TOKEN_KEY].0, b"");
    let empty = token_secret(&plan, &hub(), None);
    let data = empty.data.unwrap();
    assert_eq!(data.len(), 3);
    assert!(data[ACCESS_TOKEN_KEY].0.is_empty());
    let refreshed = token_data(&UserTokens {
        access_token: SecretString::from("a2"),
        id_token: Some(SecretString::from("i2")),
    });
    assert_eq!(refreshed.len(), 2);
    assert_eq!(refreshed[ID_TOKEN_KEY].0, b"i2");
}

#[test]
fn profile_annotation_and_servername() {
    let config =
        json!({"profile_list": [{"display_name": "Big One"}], "primary_group_annotation": false});
    let plan = plan_with(config, "alice", "My Server");
    let pod = pod(&plan, &hub(), None);
    let annotations = pod.metadata.annotations.unwrap();
    assert_eq!(annotations[FLAVOR_ANNOTATION], "big-one");
    assert_eq!(annotations["hub.jupyter.org/servername"], "My Server");
    assert!(!annotations.contains_key(PRIMARY_GROUP_ANNOTATION));
    let labels = pod.metadata.labels.unwrap();
    assert_eq!(labels["hub.jupyter.org/servername"], "my-server---c2d9a82f");
}

#[test]
fn args_without_a_command_are_dropped_like_kubespawner() {
    let with = |config: serde_json::Value| {
        let config: KubeSpawnerConfig = serde_json::from_value(config).unwrap();
        let plan = crate::resolve(
            &config,
            &User {
                name: "a".into(),
                ..User::default()
            },
            "",
            &serde_json::Map::new(),
        )
        .unwrap();
        pod(&plan, &hub(), None).spec.unwrap().containers[0]
            .args
            .clone()
    };
    assert_eq!(
        with(json!({"args": ["--debug"]})),
        None,
        "would replace the image's CMD"
    );
    assert_eq!(
        with(json!({"cmd": ["jupyterhub-singleuser"], "args": ["--debug"]})),
        Some(vec![
            "jupyterhub-singleuser".to_owned(),
            "--debug".to_owned()
        ])
    );
}
