//! The server's token Secret: one long-lived Secret per server (EGI's `access-token-…`
//! layout), written in place at every start and token refresh, and deleted by
//! `delete_forever`.
//!
//! Why not a Secret owned by the pod (what this crate did first): on a real cluster the
//! garbage collector runs seconds behind a burst of stops and acts on what it observed. A
//! start that found the old Secret still there replaced it in place (same UID), and the
//! collector, which had seen its old owner gone, deleted it anyway: 8-15 % of Secrets were
//! lost per round of 100 stops and starts, with every `start()` reporting success. Without
//! an owner there is nothing for the collector to do: no lost Secret, and no collector GET
//! and DELETE per stop (a spawn/stop cycle costs the API server KubeSpawner's requests plus
//! one, the Secret's write). The price: after a stop the Secret keeps the last tokens until
//! the next start or `delete_forever`. The hub revokes the server's API token when it
//! stops it, and the user's access token expires on its own.
//!
//! A Secret left owned by a pod of an earlier version loses its owner reference at its
//! first replace, so the collector leaves it alone from then on.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};

use super::cluster::{api_error, status_code};
use super::spawner::KubeSpawner;
use crate::{Error, Result, manifest};

impl KubeSpawner {
    fn secrets(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.cluster.shared.client.clone(), namespace)
    }

    /// Writes the Secret in one request when we can tell whether it exists (this spawner
    /// wrote it before, or the saved state names it): replace when it should exist, create
    /// otherwise, and the other one when that guess was wrong.
    pub(crate) async fn put_secret(&self, namespace: &str, secret: &Secret) -> Result<()> {
        let api = self.secrets(namespace);
        let name = secret.metadata.name.clone().unwrap_or_default();
        let mut replace = self.secret_known();
        for _ in 0..4 {
            let result = if replace {
                api.replace(&name, &PostParams::default(), secret)
                    .await
                    .map(drop)
            } else {
                api.create(&PostParams::default(), secret).await.map(drop)
            };
            match result {
                Ok(()) => {
                    self.set_secret_known(true);
                    return Ok(());
                }
                // Not there (deleted by someone): create; there already: replace.
                Err(error) if replace && status_code(&error) == Some(404) => replace = false,
                Err(error) if !replace && status_code(&error) == Some(409) => replace = true,
                Err(error) => {
                    let verb = if replace { "replace" } else { "create" };
                    return Err(api_error(format!("{verb} secret {name}"), namespace, error));
                }
            }
        }
        Err(Error::Api {
            action: format!("create secret {name}"),
            code: 409,
            reason: "Conflict".to_owned(),
            message: "the secret kept appearing and disappearing".to_owned(),
        })
    }

    /// [`crate::Spawner::update_tokens`]: a merge patch of the two token keys of the running
    /// server's Secret; `false` when the server is not running (no Secret in the state).
    pub(crate) async fn write_tokens(&self, tokens: &crate::UserTokens) -> Result<bool> {
        self.remember_tokens(tokens);
        let (namespace, secret) = {
            let state = self.lock();
            match (&state.namespace, &state.token_secret) {
                (Some(namespace), Some(secret)) => (namespace.clone(), secret.clone()),
                _ => return Ok(false),
            }
        };
        let api = self.secrets(&namespace);
        let patch = serde_json::json!({ "data": manifest::token_data(tokens) });
        match self
            .cluster
            .limited(api.patch(&secret, &PatchParams::default(), &Patch::Merge(&patch)))
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if status_code(&error) == Some(404) => Ok(false),
            Err(error) => Err(api_error(
                format!("update secret {secret}"),
                &namespace,
                error,
            )),
        }
    }

    /// `delete_forever`: the Secret goes with the server's data.
    pub(crate) async fn delete_secret(&self, namespace: &str, name: &str) -> Result<()> {
        let api = self.secrets(namespace);
        match self
            .cluster
            .limited(api.delete(name, &kube::api::DeleteParams::default()))
            .await
        {
            Ok(_) => {}
            Err(error) if status_code(&error) == Some(404) => {}
            Err(error) => {
                return Err(api_error(format!("delete secret {name}"), namespace, error));
            }
        }
        self.set_secret_known(false);
        Ok(())
    }
}
