//! The simulated scheduler: unschedulable faults, missing and unbound claims hold a pod
//! back, retried at every claim change or after the back-off; a scheduler that has not seen a
//! new claim yet ([`super::SimOptions::scheduler_lag`]) says it is not found.

use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::events::emit_event;
use super::kubelet::{NODE, PodRef, condition, current, set_conditions, wait_change, write};
use super::resources::PVCS;
use super::store::meta_str;

fn not_found(claim: &str) -> String {
    format!(
        "0/1 nodes are available: persistentvolumeclaim \"{claim}\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    )
}

fn pvc_problem(sh: &Shared, pod: &Value) -> Option<String> {
    let lag = sh.opts().scheduler_lag;
    let ns = meta_str(pod, "namespace");
    let claims: Vec<&str> = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .collect();
    // Asked before the store is locked: never hold both locks.
    let unseen: Vec<bool> = {
        let faults = sh.faults();
        claims
            .iter()
            .map(|c| faults.claim_unseen(ns, c, lag))
            .collect()
    };
    let store = sh.lock();
    for (claim, unseen) in claims.into_iter().zip(unseen) {
        match store.get(PVCS, ns, claim) {
            // Missing, or too new for the scheduler's informer (then a transient message).
            None => return Some(not_found(claim)),
            Some(_) if unseen => return Some(not_found(claim)),
            Some(c) if c["status"]["phase"] != "Bound" => {
                return Some("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".to_owned());
            }
            Some(_) => {}
        }
    }
    None
}

/// Scheduling: unschedulable faults and unbound PVCs hold the pod back.
pub(crate) async fn schedule(sh: &Shared, p: &PodRef, backoff: Duration) -> Option<()> {
    loop {
        let notified = sh.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let pod = current(sh, p)?;
        let problem = if sh.faults().unschedulable(&p.ns, &p.name) {
            Some("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.".to_owned())
        } else {
            pvc_problem(sh, &pod)
        };
        let Some(msg) = problem else { break };
        write(sh, p, |pod| {
            set_conditions(
                pod,
                vec![condition(
                    "PodScheduled",
                    false,
                    Some("Unschedulable"),
                    Some(&msg),
                )],
            )
        })?;
        emit_event(
            sh,
            &pod,
            "Warning",
            "FailedScheduling",
            &msg,
            "default-scheduler",
            None,
        );
        wait_change(notified, backoff).await;
    }
    let pod = write(sh, p, |pod| {
        pod["spec"]["nodeName"] = json!(NODE);
        set_conditions(pod, vec![condition("PodScheduled", true, None, None)]);
    })?;
    emit_event(
        sh,
        &pod,
        "Normal",
        "Scheduled",
        &format!("Successfully assigned {}/{} to {NODE}", p.ns, p.name),
        "default-scheduler",
        None,
    );
    Some(())
}
