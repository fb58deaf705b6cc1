//! The spawner's configuration ([`KubeSpawnerConfig`], KubeSpawner's option names and defaults),
//! the effective [`Settings`] of one spawn, and profile [`Overrides`].
//!
//! Deserialise it from JSON (or anything serde reads); unknown keys are rejected everywhere,
//! so a typo'd option fails at load instead of being ignored. Then call
//! [`KubeSpawnerConfig::validate`].

mod profiles;
mod settings;
mod values;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, Lifecycle, NodeSelectorTerm, PodAffinityTerm, PodSecurityContext,
    PreferredSchedulingTerm, SecurityContext, Toleration, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use profiles::{OrderedMap, Profile, ProfileChoice, ProfileOption};
pub(crate) use settings::check_labels;
pub use settings::merged;
pub use values::{ByteSize, EnvValue, Overridable, ResourceQuantity, merge_json};

pub use crate::error::ConfigError;

use crate::naming::{self, Names, TemplateContext};
use crate::storage::StorageConfig;

/// EGI's token Secret: the user's Check-in access and ID tokens, mounted read-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Whether the token Secret is mounted into the pod (the Secret always exists: it holds
    /// the hub API token).
    pub enabled: bool,
    /// Where the keys `access_token` and `id_token` appear in the pod.
    pub mount_path: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mount_path: "/var/run/secrets/egi.eu/".to_owned(),
        }
    }
}

/// Declares the configuration, the effective settings and the overrides from one field list,
/// so the three can never disagree.
macro_rules! spawner_settings {
    (
        config { $( $(#[$cm:meta])* $cname:ident : $cty:ty = $cdefault:expr, )* }
        settings { $( $(#[$sm:meta])* $sname:ident : $sty:ty = $sdefault:expr, )* }
        resolved { $( $(#[$rm:meta])* $rname:ident : $rty:ty = $rdefault:expr, )* }
    ) => {
        /// The spawner configuration: KubeSpawner's options (same names and defaults) plus
        /// EGI's (tokens, PVC policy, VO-gated profiles, primary group annotation).
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct KubeSpawnerConfig {
            $( $(#[$cm])* pub $cname: $cty, )*
            $( $(#[$sm])* pub $sname: $sty, )*
        }

        impl Default for KubeSpawnerConfig {
            fn default() -> Self {
                Self { $( $cname: $cdefault, )* $( $sname: $sdefault, )* }
            }
        }

        /// The effective settings of one spawn: the configuration with the chosen profile's and
        /// option choices' overrides applied and templates expanded.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        pub struct Settings {
            $( $(#[$sm])* pub $sname: $sty, )*
            $( $(#[$rm])* pub $rname: $rty, )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Self { $( $sname: $sdefault, )* $( $rname: $rdefault, )* }
            }
        }

        /// `kubespawner_override`: settings a profile or a choice changes. Keys are
        /// KubeSpawner's option names; unknown keys are rejected.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Overrides {
            $(
                $(#[$sm])*
                #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "values::present")]
                pub $sname: Option<<$sty as Overridable>::Patch>,
            )*
        }

        impl KubeSpawnerConfig {
            fn raw_settings(&self) -> Settings {
                Settings { $( $sname: self.$sname.clone(), )* $( $rname: $rdefault, )* }
            }
        }

        impl Overrides {
            /// Applies these overrides to `settings` (maps merge, the rest replaces).
            pub fn apply_to(&self, settings: &mut Settings) {
                $( if let Some(patch) = &self.$sname {
                    Overridable::apply(&mut settings.$sname, patch);
                } )*
            }
        }
    };
}

spawner_settings! {
    config {
        /// Namespace of the pods, claims and Secrets (default `default`).
        namespace: String = "default".to_owned(),
        /// When set, each user gets a namespace from this template (KubeSpawner's
        /// `user_namespace_template` with `enable_user_namespaces`; e.g.
        /// `{hubnamespace}-{username}`).
        user_namespace_template: Option<String> = None,
        /// Pod name template (default `jupyter-{user_server}`).
        pod_name_template: String = "jupyter-{user_server}".to_owned(),
        /// Name template of the Secret holding the API token and the user's tokens (default
        /// `access-token-{user_server}`. EGI's hub names its shared per-user Secret
        /// `access-token-{userid}`; ours holds the server's API token too, so it is one per
        /// server, written in place at each start; set `access-token-{userid}` only with one server per user).
        token_secret_name_template: String = "access-token-{user_server}".to_owned(),
        /// Persistent storage of the home directory.
        storage: StorageConfig = StorageConfig::default(),
        /// EGI's token Secret mount.
        tokens: TokenConfig = TokenConfig::default(),
        /// Profiles the user can choose from (KubeSpawner's `profile_list`).
        profile_list: Vec<Profile> = Vec::new(),
        /// Whether to annotate pods with `egi.eu/primary_group` (when the user has one).
        primary_group_annotation: bool = true,
    }
    settings {
        /// Container image (KubeSpawner's default).
        image: String = "quay.io/jupyterhub/singleuser:latest".to_owned(),
        /// `imagePullPolicy` (`IfNotPresent`, `Always`, `Never`); unset lets Kubernetes
        /// decide (`Always` for `:latest`), as KubeSpawner does.
        image_pull_policy: Option<String> = None,
        /// Names of Secrets to pull the image with.
        image_pull_secrets: Vec<String> = Vec::new(),
        /// The command (the container's `args`, so the image's entrypoint still runs). Empty,
        /// the default, runs the image's own CMD (KubeSpawner's default).
        cmd: Vec<String> = Vec::new(),
        /// Extra arguments after `cmd`; ignored when `cmd` is empty (they would replace the
        /// image's CMD), as KubeSpawner does.
        args: Vec<String> = Vec::new(),
        /// Working directory of the notebook container.
        working_dir: Option<String> = None,
        /// Port the server listens on (`notebook-port`).
        port: u16 = 8888,
        /// CPU request, in cores.
        cpu_guarantee: Option<f64> = None,
        /// CPU limit, in cores.
        cpu_limit: Option<f64> = None,
        /// Memory request in bytes (`"1G"` = 1024³, as JupyterHub).
        mem_guarantee: Option<ByteSize> = None,
        /// Memory limit in bytes.
        mem_limit: Option<ByteSize> = None,
        /// Extra resource requests (e.g. `nvidia.com/gpu`).
        extra_resource_guarantees: BTreeMap<String, ResourceQuantity> = BTreeMap::new(),
        /// Extra resource limits (e.g. `nvidia.com/gpu`).
        extra_resource_limits: BTreeMap<String, ResourceQuantity> = BTreeMap::new(),
        /// Environment variables set by the admin; they override everything, including the
        /// hub's variables.
        environment: BTreeMap<String, EnvValue> = BTreeMap::new(),
        /// `nodeSelector`.
        node_selector: BTreeMap<String, String> = BTreeMap::new(),
        /// Tolerations.
        tolerations: Vec<Toleration> = Vec::new(),
        /// Required node affinity (`NodeSelectorTerm`s).
        node_affinity_required: Vec<NodeSelectorTerm> = Vec::new(),
        /// Preferred node affinity.
        node_affinity_preferred: Vec<PreferredSchedulingTerm> = Vec::new(),
        /// Required pod affinity.
        pod_affinity_required: Vec<PodAffinityTerm> = Vec::new(),
        /// Preferred pod affinity.
        pod_affinity_preferred: Vec<WeightedPodAffinityTerm> = Vec::new(),
        /// Required pod anti-affinity.
        pod_anti_affinity_required: Vec<PodAffinityTerm> = Vec::new(),
        /// Preferred pod anti-affinity.
        pod_anti_affinity_preferred: Vec<WeightedPodAffinityTerm> = Vec::new(),
        /// `priorityClassName`.
        priority_class_name: Option<String> = None,
        /// `schedulerName`.
        scheduler_name: Option<String> = None,
        /// `runAsUser` of the notebook container.
        uid: Option<i64> = None,
        /// `runAsGroup` of the notebook container.
        gid: Option<i64> = None,
        /// `fsGroup` of the pod.
        fs_gid: Option<i64> = None,
        /// `supplementalGroups` of the pod.
        supplemental_gids: Vec<i64> = Vec::new(),
        /// Whether the notebook container is privileged.
        privileged: bool = false,
        /// `allowPrivilegeEscalation` of the notebook container (default false).
        allow_privilege_escalation: Option<bool> = Some(false),
        /// Pod security context, merged over the one made from `fs_gid`/`supplemental_gids`.
        pod_security_context: Option<PodSecurityContext> = None,
        /// Container security context, merged over the one made from `uid`/`gid`/...
        container_security_context: Option<SecurityContext> = None,
        /// Service account of the pod; its token is mounted only when one is set.
        service_account: Option<String> = None,
        /// `automountServiceAccountToken`; unset means true with a service account, else false.
        automount_service_account_token: Option<bool> = None,
        /// Extra volumes of the pod.
        volumes: Vec<Volume> = Vec::new(),
        /// Extra mounts of the notebook container.
        volume_mounts: Vec<VolumeMount> = Vec::new(),
        /// Init containers.
        init_containers: Vec<Container> = Vec::new(),
        /// Sidecar containers.
        extra_containers: Vec<Container> = Vec::new(),
        /// Lifecycle hooks of the notebook container.
        lifecycle_hooks: Option<Lifecycle> = None,
        /// Extra pod labels (the spawner's own labels win).
        extra_labels: BTreeMap<String, String> = BTreeMap::new(),
        /// Extra pod annotations.
        extra_annotations: BTreeMap<String, String> = BTreeMap::new(),
        /// Merged into the pod `spec` (Kubernetes camelCase keys).
        extra_pod_config: serde_json::Map<String, Value> = serde_json::Map::new(),
        /// Merged into the notebook container (Kubernetes camelCase keys).
        extra_container_config: serde_json::Map<String, Value> = serde_json::Map::new(),
    }
    resolved {
        /// The chosen profile's slug (set by [`crate::resolve`]).
        profile: Option<String> = None,
        /// The token Secret mount (from the configuration's `tokens`).
        tokens: TokenConfig = TokenConfig::default(),
        /// Where the claim, if any, is mounted (`storage.home_mount_path`).
        home_mount_path: String = "/home/jovyan".to_owned(),
        /// Sub-path of the claim to mount (`storage.sub_path`, expanded).
        home_sub_path: Option<String> = None,
    }
}

impl KubeSpawnerConfig {
    /// The settings before any profile applies (templates not yet expanded).
    pub fn settings(&self) -> Settings {
        let mut settings = self.raw_settings();
        settings.tokens = self.tokens.clone();
        settings.home_mount_path = self.storage.home_mount_path.clone();
        settings.home_sub_path = self.storage.sub_path.clone();
        settings
    }

    /// Reads a configuration from JSON and validates it.
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_str(json).map_err(ConfigError::Parse)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: templates expand to valid names, quantities parse, profile
    /// slugs are unique with at most one default, every option has choices, and each profile
    /// and choice gives usable settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut templates = vec![
            ("pod_name_template", Some(self.pod_name_template.as_str())),
            (
                "token_secret_name_template",
                Some(&self.token_secret_name_template),
            ),
            (
                "user_namespace_template",
                self.user_namespace_template.as_deref(),
            ),
        ];
        let claim_template = self.storage.claim_template();
        templates.push(("storage.claim_name_template", claim_template.as_deref()));
        for (field, template) in templates {
            if let Some(template) = template {
                check_name_template(template, &self.namespace).map_err(|e| e.in_field(field))?;
            }
        }
        check_name(&self.namespace).map_err(|e| e.in_field("namespace"))?;
        self.storage.validate()?;
        if !self.tokens.mount_path.starts_with('/') {
            return Err(
                ConfigError::invalid(&self.tokens.mount_path, "not an absolute path")
                    .in_field("tokens.mount_path"),
            );
        }
        let base = self.settings();
        base.check(&self.namespace)?;
        self.check_volume_clashes(&base)?;
        self.validate_profiles(&base)
    }

    /// The home claim and the token Secret are mounted by us: an admin volume or mount with
    /// the same name or path would make every pod fail with a 422 (z2jh configurations often
    /// define a `home` volume already).
    fn check_volume_clashes(&self, settings: &Settings) -> Result<(), ConfigError> {
        let mut ours: Vec<(&str, &str, &str)> = Vec::new();
        if self.storage.policy != crate::PvcPolicy::None {
            ours.push((
                crate::manifest::HOME_VOLUME,
                &self.storage.home_mount_path,
                "storage.home_mount_path",
            ));
        }
        if self.tokens.enabled {
            ours.push((
                crate::manifest::TOKENS_VOLUME,
                &self.tokens.mount_path,
                "tokens.mount_path",
            ));
        }
        if let [(_, a, _), (_, b, field)] = ours.as_slice()
            && a.trim_end_matches('/') == b.trim_end_matches('/')
        {
            return Err(
                ConfigError::invalid(*b, "the home directory is mounted there").in_field(*field),
            );
        }
        for (volume, path, field) in ours {
            if settings.volumes.iter().any(|v| v.name == volume) {
                return Err(ConfigError::invalid(
                    volume,
                    "a volume of that name is added by the spawner",
                )
                .in_field("volumes"));
            }
            if let Some(mount) = settings
                .volume_mounts
                .iter()
                .find(|m| m.mount_path.trim_end_matches('/') == path.trim_end_matches('/'))
            {
                return Err(ConfigError::invalid(
                    &mount.mount_path,
                    format!("already used by {field}"),
                )
                .in_field("volume_mounts"));
            }
        }
        Ok(())
    }

    fn validate_profiles(&self, base: &Settings) -> Result<(), ConfigError> {
        let mut slugs: Vec<String> = Vec::new();
        let mut default: Option<String> = None;
        for profile in &self.profile_list {
            let slug = profile.slug();
            let field = format!("profile_list[{slug}]");
            if slug.is_empty() {
                return Err(
                    ConfigError::invalid(&profile.display_name, "gives an empty slug")
                        .in_field(format!("{field}.slug")),
                );
            }
            if slugs.contains(&slug) {
                return Err(ConfigError::DuplicateProfileSlug { slug });
            }
            if profile.default {
                if let Some(first) = default.take() {
                    return Err(ConfigError::MultipleDefaultProfiles {
                        first,
                        second: slug,
                    });
                }
                default = Some(slug.clone());
            }
            let mut settings = base.clone();
            profile.kubespawner_override.apply_to(&mut settings);
            settings
                .check(&self.namespace)
                .map_err(|e| e.in_field(format!("{field}.kubespawner_override")))?;
            for (name, option) in profile.profile_options.iter() {
                let no_choices = || ConfigError::NoChoices {
                    profile: slug.clone(),
                    option: name.clone(),
                };
                if option.choices.is_empty() {
                    return Err(no_choices());
                }
                if option.choices.iter().filter(|(_, c)| c.default).count() > 1 {
                    return Err(ConfigError::MultipleDefaultChoices {
                        profile: slug.clone(),
                        option: name.clone(),
                    });
                }
                for (key, choice) in option.choices.iter() {
                    if key.is_empty() {
                        return Err(ConfigError::invalid(key, "an empty choice key")
                            .in_field(format!("{field}.profile_options.{name}")));
                    }
                    let mut with_choice = settings.clone();
                    choice.kubespawner_override.apply_to(&mut with_choice);
                    with_choice.check(&self.namespace).map_err(|e| {
                        e.in_field(format!("{field}.profile_options.{name}.choices.{key}"))
                    })?;
                }
            }
            slugs.push(slug);
        }
        Ok(())
    }
}

/// Sample users every template must handle; the first must give a valid name unchanged.
const SAMPLES: [(&str, &str); 3] = [("jovyan", ""), ("jovyan", "gpu"), ("A.B@x/../..", "s!")];

fn check_name_template(template: &str, hub_namespace: &str) -> Result<(), ConfigError> {
    let context = TemplateContext {
        user_id: Some(1000),
        hub_namespace: Some(hub_namespace),
    };
    for (i, (user, server)) in SAMPLES.iter().enumerate() {
        let value = naming::expand_with(template, &Names::new(user, server), &context)?;
        if i == 0 && !naming::is_valid_object_name(&value) {
            return Err(ConfigError::InvalidName {
                template: template.to_owned(),
                value,
            });
        }
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ConfigError> {
    if naming::is_valid_object_name(name) {
        Ok(())
    } else {
        Err(ConfigError::invalid(name, "not a valid object name"))
    }
}

#[cfg(test)]
mod tests;
