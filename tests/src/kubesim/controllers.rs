//! Controllers: PVC binding and expansion, owner-reference garbage collection, namespace
//! deletion, and the kubelet's part of pod deletion.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::events;
use super::kubelet;
use super::ops::{self, DeleteOpts};
use super::resources::{self, NAMESPACES, PODS, PVCS, RESOURCES, SECRETS, STORAGECLASSES};
use super::store::meta_str;

/// Reacts to a created (or seeded) object.
pub(crate) fn on_created(sh: &Arc<Shared>, res: usize, obj: &Arc<Value>) {
    match res {
        PODS => kubelet::start_pod(sh, obj),
        PVCS if obj["status"]["phase"] != "Bound" => bind_later(sh, obj),
        _ => {}
    }
    if res == PVCS {
        sh.faults().claim_created(obj);
    }
    if res == SECRETS || res == PVCS {
        sh.changed.notify_waiters();
    }
    if obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|o| !o.is_empty())
    {
        // The garbage collector deletes dependents whose owners do not exist.
        let sh2 = sh.clone();
        let r = (
            res,
            meta_str(obj, "namespace").to_owned(),
            meta_str(obj, "name").to_owned(),
            meta_str(obj, "uid").to_owned(),
        );
        sh.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            collect_if_orphaned(&sh2, r.0, &r.1, &r.2, &r.3);
        });
    }
}

/// Reacts to an update through the API.
pub(crate) fn on_updated(
    sh: &Arc<Shared>,
    res: usize,
    _old: &Value,
    new: &Arc<Value>,
    expand: bool,
) {
    if res == SECRETS || res == PVCS {
        sh.changed.notify_waiters();
    }
    if expand {
        let sh2 = sh.clone();
        let (ns, name, uid) = (
            meta_str(new, "namespace").to_owned(),
            meta_str(new, "name").to_owned(),
            meta_str(new, "uid").to_owned(),
        );
        let delay = sh.opts().bind_delay;
        sh.spawn(async move {
            tokio::time::sleep(delay).await;
            let mut store = sh2.lock();
            let Some(pvc) = store.get(PVCS, &ns, &name).cloned() else {
                return;
            };
            if meta_str(&pvc, "uid") != uid {
                return;
            }
            let mut pvc = (*pvc).clone();
            pvc["status"]["capacity"]["storage"] =
                pvc["spec"]["resources"]["requests"]["storage"].clone();
            store.put(PVCS, pvc);
        });
    }
}

/// Reacts to an object that is gone: its dependents are collected unless orphaned.
pub(crate) fn on_deleted(sh: &Arc<Shared>, obj: &Value, orphan: bool) {
    let res = obj["kind"].as_str().and_then(resources::lookup);
    if res == Some(PODS) {
        super::metrics::pod_removed(sh, obj);
        super::process::pod_removed(sh, obj);
    }
    if matches!(res, Some(SECRETS | PVCS)) {
        sh.changed.notify_waiters();
    }
    if orphan {
        return;
    }
    // The garbage collector runs asynchronously and acts on what it observed: it notes the
    // dependents of the deleted owner as they are now (UID and owners), and after
    // `gc_delay` deletes each one whose observed owners are all gone, with a UID
    // precondition only. A dependent replaced in place meanwhile (PUT keeps the UID, even
    // with new owner references) is deleted all the same: the race a real collector has
    // between its GET and its DELETE, which lost token Secrets on a real cluster.
    let uid = meta_str(obj, "uid").to_owned();
    let observed: Vec<Observed> = {
        let store = sh.lock();
        store
            .dependents_of(&uid)
            .into_iter()
            .filter_map(|d| {
                let o = store.get(d.res, &d.ns, &d.name)?;
                Some(Observed {
                    res: d.res,
                    ns: d.ns.clone(),
                    name: d.name.clone(),
                    uid: meta_str(o, "uid").to_owned(),
                    owners: owner_uids(o),
                })
            })
            .collect()
    };
    if observed.is_empty() {
        return;
    }
    let sh2 = sh.clone();
    let delay = sh.opts().gc_delay;
    sh.spawn(async move {
        tokio::time::sleep(delay).await;
        for d in observed {
            collect_observed(&sh2, &d);
        }
    });
}

/// A dependent as the collector saw it when its owner went.
struct Observed {
    res: usize,
    ns: String,
    name: String,
    uid: String,
    owners: Vec<String>,
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["uid"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The collector's GET and DELETE of an observed dependent (counted as requests when
/// [`super::SimOptions::count_controllers`] is on): deleted when every owner it had when
/// observed is gone, whatever it says now.
fn collect_observed(sh: &Arc<Shared>, d: &Observed) {
    let counted = sh.opts().count_controllers;
    let plural = RESOURCES[d.res].plural;
    if counted {
        sh.counters().request("get", plural, &d.ns);
    }
    let orphaned = {
        let store = sh.lock();
        let Some(obj) = store.get(d.res, &d.ns, &d.name) else {
            return;
        };
        if meta_str(obj, "uid") != d.uid || obj["metadata"]["deletionTimestamp"].is_string() {
            return;
        }
        !d.owners.is_empty() && d.owners.iter().all(|o| !store.uid_exists(o))
    };
    if orphaned {
        if counted {
            sh.counters().request("delete", plural, &d.ns);
        }
        let opts = DeleteOpts {
            uid: Some(d.uid.clone()),
            ..DeleteOpts::default()
        };
        let _ = ops::delete(sh, d.res, &d.ns, &d.name, &opts);
    }
}

/// Deletes the object if none of its owners exists any more.
fn collect_if_orphaned(sh: &Arc<Shared>, res: usize, ns: &str, name: &str, uid: &str) {
    let orphaned = {
        let store = sh.lock();
        let Some(obj) = store.get(res, ns, name) else {
            return;
        };
        if meta_str(obj, "uid") != uid || obj["metadata"]["deletionTimestamp"].is_string() {
            return;
        }
        let owners = owner_uids(obj);
        !owners.is_empty() && owners.iter().all(|o| !store.uid_exists(o))
    };
    if orphaned {
        let opts = DeleteOpts {
            uid: Some(uid.to_owned()),
            ..DeleteOpts::default()
        };
        let _ = ops::delete(sh, res, ns, name, &opts);
    }
}

/// The kubelet ends a terminating pod after `delay`.
pub(crate) fn terminate_pod_later(
    sh: &Arc<Shared>,
    ns: &str,
    name: &str,
    uid: &str,
    delay: Duration,
    orphan: bool,
) {
    let sh2 = sh.clone();
    let (ns, name, uid) = (ns.to_owned(), name.to_owned(), uid.to_owned());
    let pod = sh.lock().get(PODS, &ns, &name).cloned();
    let grace = pod.as_deref().map(super::process::grace_of);
    if let Some(pod) = pod {
        for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
            let cname = c["name"].as_str().unwrap_or("");
            events::emit_event(
                sh,
                &pod,
                "Normal",
                "Killing",
                &format!("Stopping container {cname}"),
                "kubelet",
                Some(&format!("spec.containers{{{cname}}}")),
            );
        }
    }
    sh.spawn(async move {
        if super::process::has_processes(&sh2, &uid) {
            // A process pod goes when its processes are gone (SIGKILL after the grace).
            let grace = grace.unwrap_or(Duration::from_secs(30));
            super::process::stop_pod(&sh2, &uid, grace).await;
        } else {
            tokio::time::sleep(delay).await;
        }
        ops::finish_pod(&sh2, &ns, &name, &uid, orphan);
    });
}

/// The namespace controller: deletes everything in a terminating namespace, then the
/// namespace itself.
pub(crate) fn empty_namespace(sh: &Arc<Shared>, ns: &str) {
    let sh2 = sh.clone();
    let ns = ns.to_owned();
    sh.spawn(async move {
        loop {
            let mut left = Vec::new();
            {
                let store = sh2.lock();
                for (res, r) in RESOURCES.iter().enumerate() {
                    if r.namespaced {
                        left.extend(
                            store
                                .iter(res, Some(&ns))
                                .map(|o| (res, meta_str(o, "name").to_owned())),
                        );
                    }
                }
            }
            if left.is_empty() {
                break;
            }
            for (res, name) in left {
                let _ = ops::delete(&sh2, res, &ns, &name, &DeleteOpts::default());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let gone = sh2.lock().remove(NAMESPACES, "", &ns);
        if let Some(gone) = gone {
            on_deleted(&sh2, &gone, false);
        }
    });
}

/// The PV controller: binds a PVC to a new volume of its class after the bind delay.
fn bind_later(sh: &Arc<Shared>, pvc: &Value) {
    let sh2 = sh.clone();
    let (ns, name, uid) = (
        meta_str(pvc, "namespace").to_owned(),
        meta_str(pvc, "name").to_owned(),
        meta_str(pvc, "uid").to_owned(),
    );
    let delay = sh.opts().bind_delay;
    sh.spawn(async move {
        tokio::time::sleep(delay).await;
        let (bound, problem) = {
            let mut store = sh2.lock();
            let Some(pvc) = store.get(PVCS, &ns, &name).cloned() else {
                return;
            };
            if meta_str(&pvc, "uid") != uid || pvc["status"]["phase"] == "Bound" {
                return;
            }
            let class = pvc["spec"]["storageClassName"]
                .as_str()
                .or_else(|| {
                    pvc["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
                        .as_str()
                })
                .unwrap_or("")
                .to_owned();
            let Some(sc) = store.get(STORAGECLASSES, "", &class).cloned() else {
                drop(store);
                let msg = if class.is_empty() {
                    "no persistent volumes available for this claim and no storage class is set"
                        .to_owned()
                } else {
                    format!("storageclass.storage.k8s.io \"{class}\" not found")
                };
                let kind = if class.is_empty() {
                    "FailedBinding"
                } else {
                    "ProvisioningFailed"
                };
                events::emit_event(
                    &sh2,
                    &pvc,
                    "Warning",
                    kind,
                    &msg,
                    "persistentvolume-controller",
                    None,
                );
                return;
            };
            let mut b = (*pvc).clone();
            let provisioner = sc["provisioner"].clone();
            let volume = format!("pvc-{uid}");
            b["spec"]["volumeName"] = json!(volume);
            let ann = &mut b["metadata"]["annotations"];
            if !ann.is_object() {
                *ann = json!({});
            }
            ann["pv.kubernetes.io/bind-completed"] = json!("yes");
            ann["pv.kubernetes.io/bound-by-controller"] = json!("yes");
            ann["volume.beta.kubernetes.io/storage-provisioner"] = provisioner.clone();
            ann["volume.kubernetes.io/storage-provisioner"] = provisioner.clone();
            b["status"] = json!({
                "phase": "Bound",
                "accessModes": pvc["spec"]["accessModes"],
                "capacity": {"storage": pvc["spec"]["resources"]["requests"]["storage"]},
            });
            let bound = store.put(PVCS, b);
            (
                bound,
                format!(
                    "Successfully provisioned volume {volume} using {}",
                    provisioner.as_str().unwrap_or("")
                ),
            )
        };
        sh2.changed.notify_waiters();
        events::emit_event(
            &sh2,
            &bound,
            "Normal",
            "ProvisioningSucceeded",
            &problem,
            "persistentvolume-controller",
            None,
        );
    });
}
