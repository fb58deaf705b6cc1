//! Type-specific validation of creates and updates (PVC specs and resizing, pod spec
//! immutability, secret type), with the real server's messages.

use serde_json::{Value, json};

use super::resources::{PODS, PVCS, RESOURCES, SECRETS, STORAGECLASSES};
use super::status::{ApiError, Cause, parse_quantity};
use super::store::Store;

pub(crate) fn validate_pvc(pvc: &Value, name: &str) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    if pvc["spec"]["accessModes"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        causes.push(Cause::required(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    let storage = &pvc["spec"]["resources"]["requests"]["storage"];
    match storage.as_str() {
        None => causes.push(Cause::required("spec.resources[storage]", "")),
        Some(q) if parse_quantity(q).is_none() => {
            causes.push(Cause::invalid("spec.resources.requests.storage", q, "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"));
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&RESOURCES[PVCS], name, &causes))
    }
}

fn pod_spec_mutable_only(old: &Value, new: &Value) -> bool {
    let strip = |spec: &Value| {
        let mut s = spec.clone();
        for list in ["containers", "initContainers"] {
            for c in s
                .get_mut(list)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                c.as_object_mut().map(|m| m.remove("image"));
            }
        }
        if let Some(m) = s.as_object_mut() {
            for k in ["activeDeadlineSeconds", "tolerations", "nodeName"] {
                m.remove(k);
            }
        }
        s
    };
    strip(&old["spec"]) == strip(&new["spec"])
}

/// Type-specific update validation; may also schedule controller work (PVC expansion).
pub(crate) fn validate_update(
    store: &Store,
    res: usize,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<bool, ApiError> {
    let r = &RESOURCES[res];
    match res {
        PODS if !pod_spec_mutable_only(old, new) => Err(ApiError::invalid(
            r,
            name,
            &[Cause::forbidden(
                "spec",
                "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
            )],
        )),
        SECRETS if old["type"] != new["type"] => Err(ApiError::invalid(
            r,
            name,
            &[Cause::invalid(
                "type",
                new["type"].as_str().unwrap_or(""),
                "field is immutable",
            )],
        )),
        PVCS => {
            validate_pvc(new, name)?;
            let (os, ns) = (&old["spec"], &new["spec"]);
            let strip = |s: &Value| {
                let mut s = s.clone();
                s["resources"]["requests"] = json!(null);
                if s["volumeName"].is_null() || old["spec"]["volumeName"].is_null() {
                    s.as_object_mut().map(|m| m.remove("volumeName"));
                }
                s
            };
            let bound = old["status"]["phase"] == "Bound";
            if strip(os) != strip(ns) {
                return Err(ApiError::invalid(
                    r,
                    name,
                    &[Cause::forbidden(
                        "spec",
                        "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                    )],
                ));
            }
            let q = |s: &Value| {
                s["resources"]["requests"]["storage"]
                    .as_str()
                    .and_then(parse_quantity)
                    .unwrap_or(0.0)
            };
            let (before, after) = (q(os), q(ns));
            if after == before {
                return Ok(false);
            }
            if !bound {
                return Err(ApiError::invalid(
                    r,
                    name,
                    &[Cause::forbidden(
                        "spec",
                        "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                    )],
                ));
            }
            if after < before {
                return Err(ApiError::invalid(
                    r,
                    name,
                    &[Cause::forbidden(
                        "spec.resources.requests.storage",
                        "field can not be less than previous value",
                    )],
                ));
            }
            let class = os["storageClassName"].as_str().unwrap_or("");
            let expandable = store
                .get(STORAGECLASSES, "", class)
                .is_some_and(|c| c["allowVolumeExpansion"] == true);
            if !expandable {
                return Err(ApiError::forbidden(
                    r,
                    name,
                    "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
                ));
            }
            Ok(true)
        }
        _ => Ok(false),
    }
}
