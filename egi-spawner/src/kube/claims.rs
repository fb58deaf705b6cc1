//! The claim step of a start and `delete_forever`, following the [`ClaimPlan`] the PVC policy
//! made: ensure (create; 409 means it exists; a quota 403 is fine when it exists), reuse the
//! user's claim found by annotation, expand when the storage class allows, and delete only
//! claims we created and marked as ours.

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};

use super::cluster::{api_error, status_code};
use super::spawner::KubeSpawner;
use crate::storage::{OWNED_ANNOTATION, quantity_bytes};
use crate::{ClaimPlan, Result, SpawnPlan, manifest};

fn requested(claim: &PersistentVolumeClaim) -> Option<String> {
    claim
        .spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.clone())
}

impl KubeSpawner {
    fn claims(&self, namespace: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.cluster.shared.client.clone(), namespace)
    }

    /// Makes sure the plan's claim exists; returns the claim to mount.
    pub(crate) async fn ensure_claim(&self, plan: &SpawnPlan) -> Result<Option<String>> {
        let state = self.lock().clone();
        match &plan.claim {
            ClaimPlan::None => Ok(None),
            ClaimPlan::Shared { name } => Ok(Some(name.clone())),
            ClaimPlan::Ensure { manifest, .. } => {
                let name = manifest.metadata.name.clone().unwrap_or_default();
                let capacity = requested(manifest);
                if state.pvc_name.as_deref() == Some(name.as_str())
                    && state.pvc_capacity == capacity
                {
                    return Ok(Some(name));
                }
                self.create_claim(&plan.namespace, manifest, true).await?;
                Ok(Some(name))
            }
            ClaimPlan::ReuseByAnnotation { username, fallback } => {
                if let Some(name) = state.pvc_name {
                    return Ok(Some(name));
                }
                // Annotations cannot be selected server-side: one shared index per namespace
                // from a metadata-only list, so a burst of first starts makes one LIST, not
                // one each; the claim found is then remembered in the state.
                let found = self
                    .cluster
                    .claim_by_annotation(&plan.namespace, username)
                    .await?;
                let name = match found {
                    Some(claim) => claim,
                    None => {
                        self.create_claim(&plan.namespace, fallback, false).await?;
                        fallback.metadata.name.clone().unwrap_or_default()
                    }
                };
                self.lock().pvc_name = Some(name.clone());
                Ok(Some(name))
            }
        }
    }

    /// Creates `manifest`; an existing claim (409, or a quota 403 while it exists) is used as
    /// it is, expanded first when `expand` and it is smaller than asked.
    async fn create_claim(
        &self,
        namespace: &str,
        manifest: &PersistentVolumeClaim,
        expand: bool,
    ) -> Result<()> {
        let api = self.claims(namespace);
        let name = manifest.metadata.name.clone().unwrap_or_default();
        let error = match api.create(&PostParams::default(), manifest).await {
            Ok(_) => {
                self.remember_claim(&name, manifest);
                return Ok(());
            }
            Err(error) => error,
        };
        let quota = status_code(&error) == Some(403);
        if status_code(&error) != Some(409) && !quota {
            return Err(api_error(
                format!("create persistentvolumeclaim {name}"),
                namespace,
                error,
            ));
        }
        let existing = match api.get(&name).await {
            Ok(existing) => existing,
            // A quota refusal for a claim that does not exist is a real refusal.
            Err(e) if quota && status_code(&e) == Some(404) => {
                return Err(api_error(
                    format!("create persistentvolumeclaim {name}"),
                    namespace,
                    error,
                ));
            }
            Err(e) => {
                return Err(api_error(
                    format!("get persistentvolumeclaim {name}"),
                    namespace,
                    e,
                ));
            }
        };
        if expand {
            self.expand_if_smaller(namespace, &existing, manifest)
                .await?;
        }
        self.remember_claim(&name, manifest);
        Ok(())
    }

    /// The claim is gone: the next start ensures it again.
    pub(crate) fn forget_claim(&self) {
        let mut state = self.lock();
        state.pvc_name = None;
        state.pvc_capacity = None;
    }

    fn remember_claim(&self, name: &str, manifest: &PersistentVolumeClaim) {
        let mut state = self.lock();
        state.pvc_name = Some(name.to_owned());
        state.pvc_capacity = requested(manifest);
    }

    /// Grows `existing` to the capacity of `wanted` when its storage class allows expansion;
    /// otherwise logs why it stays as it is (never fails the start for it).
    async fn expand_if_smaller(
        &self,
        namespace: &str,
        existing: &PersistentVolumeClaim,
        wanted: &PersistentVolumeClaim,
    ) -> Result<()> {
        let name = existing.metadata.name.clone().unwrap_or_default();
        let (Some(have), Some(want)) = (requested(existing), requested(wanted)) else {
            return Ok(());
        };
        let (Some(have_bytes), Some(want_bytes)) = (quantity_bytes(&have), quantity_bytes(&want))
        else {
            return Ok(());
        };
        if want_bytes <= have_bytes {
            return Ok(());
        }
        let class = existing
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.clone());
        let Some(class) = class else {
            tracing::warn!(claim = %name, %have, %want, "claim has no storage class; not expanding");
            return Ok(());
        };
        let classes: Api<StorageClass> = Api::all(self.cluster.shared.client.clone());
        let allows = match classes.get(&class).await {
            Ok(sc) => sc.allow_volume_expansion == Some(true),
            Err(error) => {
                tracing::warn!(claim = %name, %class, %error, "cannot read the storage class; not expanding");
                return Ok(());
            }
        };
        if !allows {
            tracing::warn!(claim = %name, %class, %have, %want, "storage class does not allow expansion; claim keeps its size");
            return Ok(());
        }
        let patch =
            serde_json::json!({ "spec": { "resources": { "requests": { "storage": want } } } });
        let api = self.claims(namespace);
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(format!("expand persistentvolumeclaim {name}"), namespace, e))?;
        tracing::info!(claim = %name, %have, %want, "claim expanded");
        Ok(())
    }

    /// `delete_forever`: deletes the claim when the policy says so and it carries our marker.
    pub(crate) async fn delete_claim_forever(&self) -> Result<()> {
        let plan = self.plan(&serde_json::Map::new())?;
        let ClaimPlan::Ensure {
            manifest,
            delete_forever: true,
        } = &plan.claim
        else {
            return Ok(());
        };
        let state = self.lock().clone();
        let name = state
            .pvc_name
            .or_else(|| manifest.metadata.name.clone())
            .unwrap_or_default();
        let api = self.claims(&plan.namespace);
        let claim = match self.cluster.limited(api.get(&name)).await {
            Ok(claim) => claim,
            Err(e) if status_code(&e) == Some(404) => return Ok(()),
            Err(e) => {
                return Err(api_error(
                    format!("get persistentvolumeclaim {name}"),
                    &plan.namespace,
                    e,
                ));
            }
        };
        let ours = claim
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OWNED_ANNOTATION))
            .is_some_and(|v| v == manifest::MANAGED_BY);
        if !ours {
            tracing::warn!(claim = %name, "claim was not created by egi-spawner; kept");
            return Ok(());
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: claim.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.cluster.limited(api.delete(&name, &params)).await {
            Ok(_) => {}
            Err(e) if status_code(&e) == Some(404) => {}
            Err(e) => {
                return Err(api_error(
                    format!("delete persistentvolumeclaim {name}"),
                    &plan.namespace,
                    e,
                ));
            }
        }
        self.forget_claim();
        Ok(())
    }
}
