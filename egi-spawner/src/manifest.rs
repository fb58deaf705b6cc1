//! The pod, token Secret and claim manifests of one server, built from its [`SpawnPlan`].
//!
//! Pure functions: the runtime sends what they return.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, KeyToPath, LocalObjectReference, NodeAffinity,
    NodeSelector, PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodAffinity,
    PodAntiAffinity, PodSecurityContext, PodSpec, ResourceRequirements, Secret, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use secrecy::ExposeSecret;

use crate::config::{Settings, merged};
use crate::env::{API_TOKEN_KEY, single_user_env};
use crate::naming::Names;
use crate::plan::{ClaimPlan, SpawnPlan};
use crate::{HubContext, UserTokens};

/// Label selector of single-user pods, ours and KubeSpawner's (the runtime's shared watch).
pub const POD_SELECTOR: &str = "component=singleuser-server";
/// Value of `app.kubernetes.io/managed-by` and of [`crate::storage::OWNED_ANNOTATION`].
pub const MANAGED_BY: &str = "egi-spawner";
/// The `component` label of single-user pods.
pub const COMPONENT: &str = "singleuser-server";
/// Label with the user name as a label-safe slug.
pub const USERNAME_LABEL: &str = "hub.jupyter.org/username";
/// Label with the server name as a label-safe slug (empty for the default server).
pub const SERVERNAME_LABEL: &str = "hub.jupyter.org/servername";
/// Annotation with the user's primary group (VO), for accounting.
pub const PRIMARY_GROUP_ANNOTATION: &str = "egi.eu/primary_group";
/// Annotation with the chosen profile's slug (the "flavor" EGI's accounting reports).
pub const FLAVOR_ANNOTATION: &str = "egi.eu/flavor";
/// Key of the user's access token in the token Secret.
pub const ACCESS_TOKEN_KEY: &str = "access_token";
/// Key of the user's ID token in the token Secret.
pub const ID_TOKEN_KEY: &str = "id_token";
/// Name of the notebook container.
pub const CONTAINER_NAME: &str = "notebook";
/// Name of the notebook container's port.
pub const PORT_NAME: &str = "notebook-port";
/// Name of the pod volume of the home claim.
pub const HOME_VOLUME: &str = "home";
/// Name of the pod volume of the token Secret.
pub const TOKENS_VOLUME: &str = "egi-tokens";

/// Labels on everything of a user: `hub.jupyter.org/username` (label-safe), `app` and
/// `heritage` (`jupyterhub`), `app.kubernetes.io/name` and `app.kubernetes.io/managed-by`.
pub fn common_labels(names: &Names) -> BTreeMap<String, String> {
    [
        (USERNAME_LABEL, names.user_label.as_str()),
        ("app", "jupyterhub"),
        ("heritage", "jupyterhub"),
        ("app.kubernetes.io/name", "jupyterhub"),
        ("app.kubernetes.io/managed-by", MANAGED_BY),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The pod's labels: the admin's `extra_labels`, then [`common_labels`], `component`,
/// `app.kubernetes.io/component` and `hub.jupyter.org/servername` (ours win).
pub fn pod_labels(plan: &SpawnPlan) -> BTreeMap<String, String> {
    let mut labels = plan.settings.extra_labels.clone();
    labels.extend(common_labels(&plan.names));
    labels.insert("component".to_owned(), COMPONENT.to_owned());
    labels.insert(
        "app.kubernetes.io/component".to_owned(),
        COMPONENT.to_owned(),
    );
    labels.insert(SERVERNAME_LABEL.to_owned(), plan.names.server_label.clone());
    labels
}

/// The pod's annotations: `extra_annotations` (which [`crate::resolve`] gave the primary
/// group), the raw user and server names, and the profile slug.
pub fn pod_annotations(plan: &SpawnPlan) -> BTreeMap<String, String> {
    let mut annotations = plan.settings.extra_annotations.clone();
    annotations.insert(USERNAME_LABEL.to_owned(), plan.names.username.clone());
    if !plan.names.servername.is_empty() {
        annotations.insert(SERVERNAME_LABEL.to_owned(), plan.names.servername.clone());
    }
    if let Some(profile) = &plan.profile {
        annotations.insert(FLAVOR_ANNOTATION.to_owned(), profile.clone());
    }
    annotations
}

/// A CPU count as a quantity: whole cores as integers, else millicores.
fn cpu_quantity(cores: f64) -> Quantity {
    if cores.fract() == 0.0 {
        Quantity(format!("{cores:.0}"))
    } else {
        Quantity(format!("{:.0}m", (cores * 1000.0).round()))
    }
}

fn resources(settings: &Settings) -> ResourceRequirements {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    if let Some(cpu) = settings.cpu_guarantee.filter(|c| *c > 0.0) {
        requests.insert("cpu".to_owned(), cpu_quantity(cpu));
    }
    if let Some(mem) = settings.mem_guarantee.filter(|m| m.0 > 0) {
        requests.insert("memory".to_owned(), Quantity(mem.0.to_string()));
    }
    requests.extend(
        settings
            .extra_resource_guarantees
            .iter()
            .map(|(k, v)| (k.clone(), Quantity(v.0.clone()))),
    );
    if let Some(cpu) = settings.cpu_limit.filter(|c| *c > 0.0) {
        limits.insert("cpu".to_owned(), cpu_quantity(cpu));
    }
    if let Some(mem) = settings.mem_limit.filter(|m| m.0 > 0) {
        limits.insert("memory".to_owned(), Quantity(mem.0.to_string()));
    }
    limits.extend(
        settings
            .extra_resource_limits
            .iter()
            .map(|(k, v)| (k.clone(), Quantity(v.0.clone()))),
    );
    ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..ResourceRequirements::default()
    }
}

/// The container security context: `runAsUser`/`runAsGroup` from `uid`/`gid`, `privileged`,
/// `allowPrivilegeEscalation`, then `container_security_context` over them.
fn container_security_context(settings: &Settings) -> Option<SecurityContext> {
    let base = SecurityContext {
        run_as_user: settings.uid,
        run_as_group: settings.gid,
        privileged: settings.privileged.then_some(true),
        allow_privilege_escalation: settings.allow_privilege_escalation,
        ..SecurityContext::default()
    };
    let merged = match &settings.container_security_context {
        Some(extra) => overlay(&base, extra),
        None => base,
    };
    (merged != SecurityContext::default()).then_some(merged)
}

/// The pod security context: `fsGroup` and `supplementalGroups`, then `pod_security_context`.
fn pod_security_context(settings: &Settings) -> Option<PodSecurityContext> {
    let base = PodSecurityContext {
        fs_group: settings.fs_gid,
        supplemental_groups: (!settings.supplemental_gids.is_empty())
            .then(|| settings.supplemental_gids.clone()),
        ..PodSecurityContext::default()
    };
    let merged = match &settings.pod_security_context {
        Some(extra) => overlay(&base, extra),
        None => base,
    };
    (merged != PodSecurityContext::default()).then_some(merged)
}

/// `extra`'s set fields over `base` (a JSON merge; on failure `extra` alone).
fn overlay<T>(base: &T, extra: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone,
{
    match serde_json::to_value(extra) {
        Ok(serde_json::Value::Object(map)) => merged(base, &map).unwrap_or_else(|_| extra.clone()),
        _ => extra.clone(),
    }
}

fn some<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

fn affinity(s: &Settings) -> Option<Affinity> {
    let node = some(&s.node_affinity_required).map(|terms| NodeSelector {
        node_selector_terms: terms,
    });
    let node = (node.is_some() || !s.node_affinity_preferred.is_empty()).then(|| NodeAffinity {
        required_during_scheduling_ignored_during_execution: node,
        preferred_during_scheduling_ignored_during_execution: some(&s.node_affinity_preferred),
    });
    let pod =
        (!s.pod_affinity_required.is_empty() || !s.pod_affinity_preferred.is_empty()).then(|| {
            PodAffinity {
                required_during_scheduling_ignored_during_execution: some(&s.pod_affinity_required),
                preferred_during_scheduling_ignored_during_execution: some(
                    &s.pod_affinity_preferred,
                ),
            }
        });
    let anti = (!s.pod_anti_affinity_required.is_empty()
        || !s.pod_anti_affinity_preferred.is_empty())
    .then(|| PodAntiAffinity {
        required_during_scheduling_ignored_during_execution: some(&s.pod_anti_affinity_required),
        preferred_during_scheduling_ignored_during_execution: some(&s.pod_anti_affinity_preferred),
    });
    (node.is_some() || pod.is_some() || anti.is_some()).then_some(Affinity {
        node_affinity: node,
        pod_affinity: pod,
        pod_anti_affinity: anti,
    })
}

/// The server's pod. `claim` is the name of the claim to mount at the home directory (none:
/// an ephemeral home). The token Secret is mounted read-only at the tokens mount path with the
/// user's `access_token` and `id_token` only; the API token reaches the server as a Secret
/// reference in its environment, never as a value.
pub fn pod(plan: &SpawnPlan, hub: &HubContext, claim: Option<&str>) -> Pod {
    let settings = &plan.settings;
    let mut volumes = settings.volumes.clone();
    let mut mounts = settings.volume_mounts.clone();
    if let Some(claim) = claim {
        volumes.push(Volume {
            name: HOME_VOLUME.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: HOME_VOLUME.to_owned(),
            mount_path: settings.home_mount_path.clone(),
            sub_path: settings.home_sub_path.clone(),
            ..VolumeMount::default()
        });
    }
    if settings.tokens.enabled {
        volumes.push(Volume {
            name: TOKENS_VOLUME.to_owned(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(plan.secret_name.clone()),
                items: Some(
                    [ACCESS_TOKEN_KEY, ID_TOKEN_KEY]
                        .into_iter()
                        .map(|key| KeyToPath {
                            key: key.to_owned(),
                            path: key.to_owned(),
                            mode: None,
                        })
                        .collect(),
                ),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: TOKENS_VOLUME.to_owned(),
            mount_path: settings.tokens.mount_path.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    // Without a command, extra args would replace the image's CMD: KubeSpawner drops them.
    let args: Vec<String> = if settings.cmd.is_empty() {
        Vec::new()
    } else {
        settings.cmd.iter().chain(&settings.args).cloned().collect()
    };
    let mut notebook = Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        args: (!args.is_empty()).then_some(args),
        working_dir: settings.working_dir.clone(),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: i32::from(settings.port),
            ..ContainerPort::default()
        }]),
        env: Some(single_user_env(plan, hub)),
        resources: Some(resources(settings)),
        volume_mounts: Some(mounts),
        security_context: container_security_context(settings),
        lifecycle: settings.lifecycle_hooks.clone(),
        ..Container::default()
    };
    if !settings.extra_container_config.is_empty()
        && let Ok(c) = merged(&notebook, &settings.extra_container_config)
    {
        notebook = c;
    }
    let mut containers = vec![notebook];
    containers.extend(settings.extra_containers.iter().cloned());
    let automount = settings
        .automount_service_account_token
        .or(settings.service_account.is_none().then_some(false));
    let mut spec = PodSpec {
        containers,
        init_containers: (!settings.init_containers.is_empty())
            .then(|| settings.init_containers.clone()),
        restart_policy: Some("OnFailure".to_owned()),
        volumes: Some(volumes),
        node_selector: (!settings.node_selector.is_empty()).then(|| settings.node_selector.clone()),
        tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
        affinity: affinity(settings),
        priority_class_name: settings.priority_class_name.clone(),
        scheduler_name: settings.scheduler_name.clone(),
        service_account_name: settings.service_account.clone(),
        automount_service_account_token: automount,
        security_context: pod_security_context(settings),
        image_pull_secrets: (!settings.image_pull_secrets.is_empty()).then(|| {
            settings
                .image_pull_secrets
                .iter()
                .map(|name| LocalObjectReference { name: name.clone() })
                .collect()
        }),
        ..PodSpec::default()
    };
    if !settings.extra_pod_config.is_empty()
        && let Ok(s) = merged(&spec, &settings.extra_pod_config)
    {
        spec = s;
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(plan.pod_name.clone()),
            namespace: Some(plan.namespace.clone()),
            labels: Some(pod_labels(plan)),
            annotations: Some(pod_annotations(plan)),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The user's token keys (`access_token`, `id_token`; an absent ID token is an empty
/// value), for the runtime's merge patch when the hub refreshes them.
pub fn token_data(tokens: &UserTokens) -> BTreeMap<String, ByteString> {
    let id = tokens
        .id_token
        .as_ref()
        .map(|t| t.expose_secret().as_bytes().to_vec());
    BTreeMap::from([
        (
            ACCESS_TOKEN_KEY.to_owned(),
            ByteString(tokens.access_token.expose_secret().as_bytes().to_vec()),
        ),
        (ID_TOKEN_KEY.to_owned(), ByteString(id.unwrap_or_default())),
    ])
}

/// The server's Secret (type `Opaque`, the pod's labels, owned by no pod: it is long-lived
/// and written in place at every start, so no garbage collector can delete it behind a
/// start): the hub API token under [`API_TOKEN_KEY`], and the user's tokens (empty values
/// without `tokens`, so the mount never misses a key).
pub fn token_secret(plan: &SpawnPlan, hub: &HubContext, tokens: Option<&UserTokens>) -> Secret {
    let mut data = match tokens {
        Some(tokens) => token_data(tokens),
        None => [ACCESS_TOKEN_KEY, ID_TOKEN_KEY]
            .into_iter()
            .map(|k| (k.to_owned(), ByteString(Vec::new())))
            .collect(),
    };
    data.insert(
        API_TOKEN_KEY.to_owned(),
        ByteString(hub.api_token.expose_secret().as_bytes().to_vec()),
    );
    Secret {
        metadata: ObjectMeta {
            name: Some(plan.secret_name.clone()),
            namespace: Some(plan.namespace.clone()),
            labels: Some(pod_labels(plan)),
            annotations: Some(BTreeMap::from([(
                USERNAME_LABEL.to_owned(),
                plan.names.username.clone(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(data),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// The claim the plan may create (per-user or per-server, or the fallback of reuse by
/// annotation), with its namespace set.
pub fn claim(plan: &SpawnPlan) -> Option<PersistentVolumeClaim> {
    let mut claim = match &plan.claim {
        ClaimPlan::Ensure { manifest, .. } => (**manifest).clone(),
        ClaimPlan::ReuseByAnnotation { fallback, .. } => (**fallback).clone(),
        _ => return None,
    };
    claim.metadata.namespace = Some(plan.namespace.clone());
    Some(claim)
}

#[cfg(test)]
mod tests;
