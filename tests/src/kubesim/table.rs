//! Server-side printing: `meta.k8s.io/v1` `Table` responses (what `kubectl get` asks for
//! with `Accept: application/json;as=Table;...`).

use std::sync::Arc;

use serde_json::{Value, json};

use super::resources::{EVENTS, NAMESPACES, PODS, PVCS, SECRETS, STORAGECLASSES};
use super::store::meta_str;

/// A short human duration like the real printers (`5s`, `3m2s`, `4h`, `2d3h`).
pub(crate) fn human_age(ts: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(ts) else {
        return "<unknown>".to_owned();
    };
    let s = (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds();
    if s < 0 {
        return "<invalid>".to_owned();
    }
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        format!("{m}m{}s", s % 60)
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        format!("{h}h{}m", m % 60)
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        format!("{d}d{}h", h % 24)
    } else {
        format!("{d}d")
    }
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

fn pod_status(pod: &Value) -> String {
    if pod["metadata"]["deletionTimestamp"].is_string() {
        return "Terminating".to_owned();
    }
    if let Some(r) = pod["status"]["reason"].as_str() {
        return r.to_owned();
    }
    let mut status = pod["status"]["phase"]
        .as_str()
        .unwrap_or("Pending")
        .to_owned();
    for c in pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            status = r.to_owned();
        } else if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            status = r.to_owned();
        }
    }
    status
}

fn row(res: usize, o: &Value) -> Vec<Value> {
    let name = json!(meta_str(o, "name"));
    let age = json!(human_age(meta_str(o, "creationTimestamp")));
    let s = |v: &Value| json!(v.as_str().unwrap_or(""));
    match res {
        PODS => {
            let cs = o["status"]["containerStatuses"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
            let ready = cs.iter().filter(|c| c["ready"] == true).count();
            let restarts: i64 = cs
                .iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .sum();
            let ip = o["status"]["podIP"].as_str().unwrap_or("<none>");
            let node = o["spec"]["nodeName"].as_str().unwrap_or("<none>");
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts),
                age,
                json!(ip),
                json!(node),
                json!("<none>"),
                json!("<none>"),
            ]
        }
        NAMESPACES => vec![name, s(&o["status"]["phase"]), age],
        PVCS => vec![
            name,
            s(&o["status"]["phase"]),
            s(&o["spec"]["volumeName"]),
            s(&o["status"]["capacity"]["storage"]),
            json!(
                o["status"]["accessModes"]
                    .as_array()
                    .map(|a| a
                        .iter()
                        .map(|m| match m.as_str() {
                            Some("ReadWriteOnce") => "RWO",
                            Some("ReadOnlyMany") => "ROX",
                            Some("ReadWriteMany") => "RWX",
                            Some("ReadWriteOncePod") => "RWOP",
                            _ => "",
                        })
                        .collect::<Vec<_>>()
                        .join(","))
                    .unwrap_or_default()
            ),
            s(&o["spec"]["storageClassName"]),
            json!("<unset>"),
            age,
            s(&o["spec"]["volumeMode"]),
        ],
        SECRETS => vec![
            name,
            s(&o["type"]),
            json!(o["data"].as_object().map_or(0, |d| d.len())),
            age,
        ],
        EVENTS => vec![
            json!(human_age(o["lastTimestamp"].as_str().unwrap_or(""))),
            s(&o["type"]),
            s(&o["reason"]),
            json!(format!(
                "{}/{}",
                o["involvedObject"]["kind"]
                    .as_str()
                    .unwrap_or("")
                    .to_lowercase(),
                o["involvedObject"]["name"].as_str().unwrap_or("")
            )),
            s(&o["message"]),
        ],
        STORAGECLASSES => vec![
            json!(
                if o["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"]
                    == "true"
                {
                    format!("{} (default)", meta_str(o, "name"))
                } else {
                    meta_str(o, "name").to_owned()
                }
            ),
            s(&o["provisioner"]),
            s(&o["reclaimPolicy"]),
            s(&o["volumeBindingMode"]),
            json!(o["allowVolumeExpansion"] == true),
            age,
        ],
        _ if o["kind"] == "Service" => {
            let ports: Vec<String> = o["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")))
                .collect();
            vec![
                name,
                s(&o["spec"]["type"]),
                s(&o["spec"]["clusterIP"]),
                json!("<none>"),
                json!(ports.join(",")),
                age,
            ]
        }
        _ if o["kind"] == "ConfigMap" => vec![
            name,
            json!(o["data"].as_object().map_or(0, |d| d.len())),
            age,
        ],
        // Stored-only kinds (ServiceAccount, Deployment, CronJob, Role, RoleBinding).
        _ => vec![name, age],
    }
}

fn columns(res: usize, sample_kind: &str) -> Vec<Value> {
    match res {
        PODS => vec![
            col("Name", "string", 0),
            col("Ready", "string", 0),
            col("Status", "string", 0),
            col("Restarts", "integer", 0),
            col("Age", "string", 0),
            col("IP", "string", 1),
            col("Node", "string", 1),
            col("Nominated Node", "string", 1),
            col("Readiness Gates", "string", 1),
        ],
        NAMESPACES => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Age", "string", 0),
        ],
        PVCS => vec![
            col("Name", "string", 0),
            col("Status", "string", 0),
            col("Volume", "string", 0),
            col("Capacity", "string", 0),
            col("Access Modes", "string", 0),
            col("StorageClass", "string", 0),
            col("VolumeAttributesClass", "string", 0),
            col("Age", "string", 0),
            col("VolumeMode", "string", 1),
        ],
        SECRETS => vec![
            col("Name", "string", 0),
            col("Type", "string", 0),
            col("Data", "string", 0),
            col("Age", "string", 0),
        ],
        EVENTS => vec![
            col("Last Seen", "string", 0),
            col("Type", "string", 0),
            col("Reason", "string", 0),
            col("Object", "string", 0),
            col("Message", "string", 0),
        ],
        STORAGECLASSES => vec![
            col("Name", "string", 0),
            col("Provisioner", "string", 0),
            col("ReclaimPolicy", "string", 0),
            col("VolumeBindingMode", "string", 0),
            col("AllowVolumeExpansion", "string", 0),
            col("Age", "string", 0),
        ],
        _ if sample_kind == "Service" => vec![
            col("Name", "string", 0),
            col("Type", "string", 0),
            col("Cluster-IP", "string", 0),
            col("External-IP", "string", 0),
            col("Port(s)", "string", 0),
            col("Age", "string", 0),
        ],
        _ if sample_kind == "ConfigMap" => vec![
            col("Name", "string", 0),
            col("Data", "string", 0),
            col("Age", "string", 0),
        ],
        _ => vec![col("Name", "string", 0), col("Age", "string", 0)],
    }
}

/// A Table of `objects` of resource `res`.
pub(crate) fn table(res: usize, objects: &[Arc<Value>], rv: u64) -> Value {
    let kind = super::resources::RESOURCES[res].kind;
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            json!({
                "cells": row(res, o),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    let mut meta = json!({});
    if rv > 0 {
        meta["resourceVersion"] = json!(rv.to_string());
    }
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns(res, kind), "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_rows() {
        let pod = json!({"metadata": {"name": "p", "creationTimestamp": super::super::status::now()},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n"},
            "status": {"phase": "Pending", "containerStatuses": [{"ready": false, "restartCount": 2, "state": {"waiting": {"reason": "ErrImagePull"}}}]}});
        let t = table(PODS, &[Arc::new(pod)], 5);
        assert_eq!(t["rows"][0]["cells"][1], "0/1");
        assert_eq!(t["rows"][0]["cells"][2], "ErrImagePull");
        assert_eq!(t["rows"][0]["cells"][3], 2);
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["metadata"]["resourceVersion"], "5");
        assert!(human_age(&super::super::status::now()).ends_with('s'));
    }
}
