//! Persistent storage of the home directory: the [`PvcPolicy`], its [`StorageConfig`], the claim
//! manifest and Kubernetes quantity parsing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::naming::{self, Names, TemplateContext};
use crate::plan::ClaimPlan;

/// Annotation marking a claim as created by this spawner; only claims carrying it
/// (value [`crate::manifest::MANAGED_BY`]) are ever deleted.
pub const OWNED_ANNOTATION: &str = "egi.eu/created-by";
/// Annotation with the raw user name (KubeSpawner's, and what EGI's hub looks claims up by).
pub const USERNAME_ANNOTATION: &str = "hub.jupyter.org/username";
/// Annotation with the raw server name.
pub const SERVERNAME_ANNOTATION: &str = "hub.jupyter.org/servername";
/// Legacy storage class annotation, set alongside `spec.storageClassName`.
pub const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// Which claim, if any, holds a server's home directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PvcPolicy {
    /// No claim: the home directory lives and dies with the pod.
    #[default]
    None,
    /// One claim the operator made, mounted by every server; never created nor deleted.
    Shared {
        /// The claim's name (templates allowed, e.g. `home-{username}`).
        claim_name: String,
    },
    /// One claim per user (default template `claim-{username}`), shared by their servers;
    /// deleted with the user (the default server's `delete_forever`).
    PerUser,
    /// One claim per server (default template `claim-{user_server}`, KubeSpawner's); deleted
    /// with the server.
    PerServer,
    /// EGI's hub: reuse the user's claim found by the annotation `hub.jupyter.org/username`,
    /// create the per-user claim when there is none; never deleted.
    ReuseByAnnotation,
}

/// Storage configuration (`storage` in [`crate::KubeSpawnerConfig`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The policy.
    pub policy: PvcPolicy,
    /// Claim name template; default `claim-{username}` per user, `claim-{user_server}` per
    /// server.
    pub claim_name_template: Option<String>,
    /// Requested capacity (a quantity, default `10Gi`).
    pub capacity: String,
    /// Access modes (default `ReadWriteOnce`).
    pub access_modes: Vec<String>,
    /// Storage class (both `spec.storageClassName` and the legacy annotation); unset means the
    /// cluster's default class.
    pub storage_class: Option<String>,
    /// Selector of the volumes the claim may bind.
    pub selector: Option<LabelSelector>,
    /// Extra labels of the claim.
    pub extra_labels: BTreeMap<String, String>,
    /// Extra annotations of the claim.
    pub extra_annotations: BTreeMap<String, String>,
    /// Where the claim is mounted (default `/home/jovyan`).
    pub home_mount_path: String,
    /// Sub-path of the claim to mount (templates allowed).
    pub sub_path: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            policy: PvcPolicy::None,
            claim_name_template: None,
            capacity: "10Gi".to_owned(),
            access_modes: vec!["ReadWriteOnce".to_owned()],
            storage_class: None,
            selector: None,
            extra_labels: BTreeMap::new(),
            extra_annotations: BTreeMap::new(),
            home_mount_path: "/home/jovyan".to_owned(),
            sub_path: None,
        }
    }
}

impl StorageConfig {
    /// The claim name template the policy uses, if it uses one.
    pub fn claim_template(&self) -> Option<String> {
        let default = match &self.policy {
            PvcPolicy::None => return None,
            PvcPolicy::Shared { claim_name } => return Some(claim_name.clone()),
            PvcPolicy::PerUser | PvcPolicy::ReuseByAnnotation => "claim-{username}",
            PvcPolicy::PerServer => "claim-{user_server}",
        };
        Some(
            self.claim_name_template
                .clone()
                .unwrap_or_else(|| default.to_owned()),
        )
    }

    /// Checks the capacity, access modes and mount path.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Sent as written: surrounding spaces would pass our parser and fail the API's.
        if self.capacity.trim() != self.capacity
            || quantity_bytes(&self.capacity).is_none_or(|b| b == 0)
        {
            return Err(ConfigError::InvalidQuantity {
                value: self.capacity.clone(),
            }
            .in_field("storage.capacity"));
        }
        if self.policy != PvcPolicy::None && self.access_modes.is_empty() {
            return Err(ConfigError::InvalidValue {
                value: "[]".to_owned(),
                reason: "a claim needs an access mode".to_owned(),
            }
            .in_field("storage.access_modes"));
        }
        crate::config::check_labels(&self.extra_labels)
            .map_err(|e| e.in_field("storage.extra_labels"))?;
        if !self.home_mount_path.starts_with('/') {
            return Err(ConfigError::InvalidValue {
                value: self.home_mount_path.clone(),
                reason: "not an absolute path".to_owned(),
            }
            .in_field("storage.home_mount_path"));
        }
        Ok(())
    }

    /// The claim step of one server's spawn.
    pub fn plan(
        &self,
        names: &Names,
        context: &TemplateContext<'_>,
    ) -> Result<ClaimPlan, ConfigError> {
        let Some(template) = self.claim_template() else {
            return Ok(ClaimPlan::None);
        };
        let name = naming::object_name(
            &naming::expand_with(&template, names, context)
                .map_err(|e| e.in_field("storage.claim_name_template"))?,
        );
        let per_server = self.policy == PvcPolicy::PerServer;
        Ok(match &self.policy {
            PvcPolicy::None => ClaimPlan::None,
            PvcPolicy::Shared { .. } => ClaimPlan::Shared { name },
            PvcPolicy::PerUser | PvcPolicy::PerServer => ClaimPlan::Ensure {
                manifest: Box::new(self.claim_manifest(&name, names, per_server)),
                delete_forever: per_server || names.servername.is_empty(),
            },
            PvcPolicy::ReuseByAnnotation => ClaimPlan::ReuseByAnnotation {
                username: names.username.clone(),
                fallback: Box::new(self.claim_manifest(&name, names, false)),
            },
        })
    }

    /// The claim to create: name, capacity, access modes, storage class (field and legacy
    /// annotation), selector, the user's labels plus `extra_labels`, the raw names and our
    /// [`OWNED_ANNOTATION`] marker.
    pub fn claim_manifest(
        &self,
        name: &str,
        names: &Names,
        per_server: bool,
    ) -> PersistentVolumeClaim {
        let mut labels = self.extra_labels.clone();
        labels.extend(crate::manifest::common_labels(names));
        // KubeSpawner's storage labels.
        labels.insert("component".to_owned(), "singleuser-storage".to_owned());
        labels.insert(
            "app.kubernetes.io/component".to_owned(),
            "singleuser-server".to_owned(),
        );
        if per_server {
            labels.insert(
                crate::manifest::SERVERNAME_LABEL.to_owned(),
                names.server_label.clone(),
            );
        }
        let mut annotations = self.extra_annotations.clone();
        annotations.insert(USERNAME_ANNOTATION.to_owned(), names.username.clone());
        if per_server && !names.servername.is_empty() {
            annotations.insert(SERVERNAME_ANNOTATION.to_owned(), names.servername.clone());
        }
        annotations.insert(
            OWNED_ANNOTATION.to_owned(),
            crate::manifest::MANAGED_BY.to_owned(),
        );
        if let Some(class) = &self.storage_class {
            annotations.insert(STORAGE_CLASS_ANNOTATION.to_owned(), class.clone());
        }
        PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(labels),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(self.access_modes.clone()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        Quantity(self.capacity.clone()),
                    )])),
                    limits: None,
                }),
                storage_class_name: self.storage_class.clone(),
                selector: self.selector.clone(),
                ..PersistentVolumeClaimSpec::default()
            }),
            status: None,
        }
    }
}

/// Parses a Kubernetes quantity into a whole number (bytes, for storage), rounding fractions
/// up: plain numbers (`"1024"`, `"1.5"`, `"1e3"`), binary suffixes `Ki Mi Gi Ti Pi Ei`,
/// decimal suffixes `k M G T P E`, and `m` (thousandths). `None` when malformed, negative or
/// beyond `u128`.
pub fn quantity_bytes(q: &str) -> Option<u128> {
    let q = q.trim();
    let q = q.strip_prefix('+').unwrap_or(q);
    let digits_end = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(digits_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return None;
    }
    // value = mantissa / 10^scale * 2^bin * 10^dec
    let mantissa: u128 = format!("{int_part}{frac_part}").parse().ok()?;
    let mut scale = i32::try_from(frac_part.len()).ok()?;
    let (bin, dec): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        s if s.starts_with(['e', 'E']) => {
            (0, s[1..].parse::<i32>().ok().filter(|e| e.abs() <= 40)?)
        }
        _ => return None,
    };
    scale -= dec;
    let mut value = mantissa.checked_mul(1u128.checked_shl(bin)?)?;
    if scale < 0 {
        value = value.checked_mul(10u128.checked_pow(scale.unsigned_abs())?)?;
    } else if scale > 0 {
        let divisor = 10u128.checked_pow(scale.unsigned_abs())?;
        value = value.div_ceil(divisor);
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let cases: &[(&str, Option<u128>)] = &[
            ("10Gi", Some(10 << 30)),
            ("1Ki", Some(1024)),
            ("1.5Gi", Some(3 << 29)),
            ("512Mi", Some(512 << 20)),
            ("1Ti", Some(1 << 40)),
            ("1k", Some(1000)),
            ("5G", Some(5_000_000_000)),
            ("1M", Some(1_000_000)),
            ("2T", Some(2_000_000_000_000)),
            ("1024", Some(1024)),
            ("0.5", Some(1)),
            ("1500m", Some(2)),
            ("1e3", Some(1000)),
            ("1E3", Some(1000)),
            ("1E", Some(1_000_000_000_000_000_000)),
            ("+7", Some(7)),
            ("", None),
            ("Gi", None),
            ("-1Gi", None),
            ("1GB", None),
            ("1.2.3", None),
            ("ten", None),
            ("1e999", None),
        ];
        for (q, want) in cases {
            assert_eq!(quantity_bytes(q), *want, "{q}");
        }
    }

    fn storage(policy: PvcPolicy) -> StorageConfig {
        StorageConfig {
            policy,
            storage_class: Some("ceph".to_owned()),
            ..StorageConfig::default()
        }
    }

    #[test]
    fn per_server_claim() {
        let names = Names::new("Alice", "gpu");
        let plan = storage(PvcPolicy::PerServer)
            .plan(&names, &TemplateContext::default())
            .unwrap();
        let ClaimPlan::Ensure {
            manifest,
            delete_forever,
        } = plan
        else {
            panic!("{plan:?}")
        };
        assert!(delete_forever);
        assert_eq!(
            manifest.metadata.name.as_deref(),
            Some("claim-alice---3bc51062--gpu")
        );
        let ann = manifest.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[OWNED_ANNOTATION], "egi-spawner");
        assert_eq!(ann[USERNAME_ANNOTATION], "Alice");
        assert_eq!(ann[STORAGE_CLASS_ANNOTATION], "ceph");
        let spec = manifest.spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("ceph"));
        assert_eq!(
            spec.access_modes.as_deref(),
            Some(&["ReadWriteOnce".to_owned()][..])
        );
        let requests = spec.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(requests["storage"], Quantity("10Gi".to_owned()));
        let labels = manifest.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["hub.jupyter.org/username"], "Alice");
        assert_eq!(labels["hub.jupyter.org/servername"], "gpu");
    }

    #[test]
    fn per_user_claim_deleted_only_with_the_default_server() {
        let st = storage(PvcPolicy::PerUser);
        let ctx = TemplateContext::default();
        for (server, forever) in [("", true), ("gpu", false)] {
            match st.plan(&Names::new("bob", server), &ctx).unwrap() {
                ClaimPlan::Ensure {
                    manifest,
                    delete_forever,
                } => {
                    assert_eq!(manifest.metadata.name.as_deref(), Some("claim-bob"));
                    assert_eq!(delete_forever, forever);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn other_policies() {
        let ctx = TemplateContext::default();
        let names = Names::new("bob", "x");
        assert_eq!(
            storage(PvcPolicy::None).plan(&names, &ctx).unwrap(),
            ClaimPlan::None
        );
        let shared = storage(PvcPolicy::Shared {
            claim_name: "home-{username}".to_owned(),
        });
        assert_eq!(
            shared.plan(&names, &ctx).unwrap(),
            ClaimPlan::Shared {
                name: "home-bob".to_owned()
            }
        );
        match storage(PvcPolicy::ReuseByAnnotation)
            .plan(&names, &ctx)
            .unwrap()
        {
            ClaimPlan::ReuseByAnnotation { username, fallback } => {
                assert_eq!(username, "bob");
                assert_eq!(fallback.metadata.name.as_deref(), Some("claim-bob"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn policy_serde() {
        let p: PvcPolicy =
            serde_json::from_str(r#"{"type":"shared","claim_name":"home"}"#).unwrap();
        assert_eq!(
            p,
            PvcPolicy::Shared {
                claim_name: "home".to_owned()
            }
        );
        let p: PvcPolicy = serde_json::from_str(r#"{"type":"reuse-by-annotation"}"#).unwrap();
        assert_eq!(p, PvcPolicy::ReuseByAnnotation);
        assert!(
            serde_json::from_str::<PvcPolicy>(r#"{"type":"shared","claim_name":"a","x":1}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<PvcPolicy>(r#"{"type":"per-usr"}"#).is_err());
        assert!(serde_json::from_str::<StorageConfig>(r#"{"capacty":"1Gi"}"#).is_err());
    }
}
