//! Pods that end on the node: container exits and evictions.

use std::sync::Arc;

use serde_json::{Value, json};

use super::Shared;
use super::events::emit_event;
use super::kubelet::{condition, set_conditions};
use super::resources::{PODS, RESOURCES};
use super::status::{self, ApiError};

/// Terminates every container of a live pod and sets a terminal phase.
fn finish(
    sh: &Shared,
    ns: &str,
    name: &str,
    code: i32,
    evicted: bool,
) -> Result<Arc<Value>, ApiError> {
    let mut store = sh.lock();
    let Some(pod) = store.get(PODS, ns, name).cloned() else {
        return Err(ApiError::not_found(&RESOURCES[PODS], name));
    };
    let mut pod = (*pod).clone();
    let now = status::now();
    let reason = if evicted {
        "Error"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    for c in pod["status"]
        .get_mut("containerStatuses")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let started = c["state"]["running"]["startedAt"].clone();
        c["state"] = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now, "containerID": c["containerID"]}});
        c["ready"] = json!(false);
        c["started"] = json!(false);
    }
    let (phase, ready_reason) = if code == 0 && !evicted {
        ("Succeeded", "PodCompleted")
    } else {
        ("Failed", "PodFailed")
    };
    pod["status"]["phase"] = json!(phase);
    let mut conds = vec![
        condition("PodReadyToStartContainers", false, None, None),
        condition("Initialized", true, None, None),
        condition("Ready", false, Some(ready_reason), None),
        condition("ContainersReady", false, Some(ready_reason), None),
        condition("PodScheduled", true, None, None),
    ];
    if evicted {
        let msg =
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. ";
        pod["status"]["reason"] = json!("Evicted");
        pod["status"]["message"] = json!(msg);
        conds.insert(
            0,
            condition(
                "DisruptionTarget",
                true,
                Some("TerminationByKubelet"),
                Some(msg),
            ),
        );
    }
    set_conditions(&mut pod, conds);
    Ok(store.put(PODS, pod))
}

/// Evicts a pod (memory pressure): Failed, reason Evicted, the object stays.
pub(crate) fn evict(sh: &Shared, ns: &str, name: &str) -> Result<(), ApiError> {
    let pod = finish(sh, ns, name, 137, true)?;
    let msg = pod["status"]["message"].as_str().unwrap_or("").to_owned();
    emit_event(sh, &pod, "Warning", "Evicted", &msg, "kubelet", None);
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let cname = c["name"].as_str().unwrap_or("");
        emit_event(
            sh,
            &pod,
            "Normal",
            "Killing",
            &format!("Stopping container {cname}"),
            "kubelet",
            Some(&format!("spec.containers{{{cname}}}")),
        );
    }
    Ok(())
}

/// The pod's containers exit with `code`.
pub(crate) fn exit(sh: &Shared, ns: &str, name: &str, code: i32) -> Result<(), ApiError> {
    finish(sh, ns, name, code, false).map(|_| ())
}
