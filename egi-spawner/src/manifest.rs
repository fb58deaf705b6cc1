//! PLACEHOLDER (owned by the pure-core work): pod, claim and Secret manifests.
#![allow(missing_docs)]
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use crate::{HubContext, SpawnPlan, UserTokens};
pub const POD_SELECTOR: &str = "component=singleuser-server";
pub fn pod(_p: &SpawnPlan, _h: &HubContext, _claim: Option<&str>) -> Pod { Pod::default() }
pub fn token_secret(_p: &SpawnPlan, _h: &HubContext, _t: Option<&UserTokens>, _o: OwnerReference) -> Secret { Secret::default() }
