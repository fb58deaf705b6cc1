//! PLACEHOLDER (owned by the pure-core work): `PvcPolicy`.
#![allow(missing_docs)]
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PvcPolicy { #[default] None }
