//! What the real API server fills in on create (defaulting and admission), per kind.

use serde_json::{Map, Value, json};

use super::resources::{NAMESPACES, PODS, PVCS, SECRETS};
use super::status::base64;

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if let Some(m) = obj.as_object_mut() {
        m.entry(key.to_owned()).or_insert(v);
    }
}

fn image_pull_policy(image: &str) -> &'static str {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent"
    } else {
        match last.split_once(':') {
            None => "Always",
            Some((_, "latest")) => "Always",
            Some(_) => "IfNotPresent",
        }
    }
}

fn qos_class(spec: &Value) -> &'static str {
    let containers = spec["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in containers {
        let (req, lim) = (&c["resources"]["requests"], &c["resources"]["limits"]);
        for r in ["cpu", "memory"] {
            let (q, l) = (req.get(r), lim.get(r));
            if q.is_some() || l.is_some() {
                any = true;
            }
            if l.is_none() || (q.is_some() && q != l) {
                guaranteed = false;
            }
        }
    }
    if guaranteed && any {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

fn default_containers(list: &mut Value) {
    for c in list.as_array_mut().into_iter().flatten() {
        let image = c["image"].as_str().unwrap_or("").to_owned();
        set_default(c, "imagePullPolicy", json!(image_pull_policy(&image)));
        set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
        set_default(c, "terminationMessagePolicy", json!("File"));
        set_default(c, "resources", json!({}));
        for p in c
            .get_mut("ports")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            set_default(p, "protocol", json!("TCP"));
        }
    }
}

/// Fills in the defaults of a new object of resource `res` (`default_class`: the default
/// storage class name, for PVCs).
pub(crate) fn on_create(res: usize, obj: &mut Value, default_class: Option<&str>) {
    match res {
        PODS => {
            let spec = &mut obj["spec"];
            if !spec.is_object() {
                *spec = Value::Object(Map::new());
            }
            for (k, v) in [
                ("restartPolicy", json!("Always")),
                ("terminationGracePeriodSeconds", json!(30)),
                ("dnsPolicy", json!("ClusterFirst")),
                ("schedulerName", json!("default-scheduler")),
                ("securityContext", json!({})),
                ("serviceAccountName", json!("default")),
                ("serviceAccount", json!("default")),
                ("enableServiceLinks", json!(true)),
                ("priority", json!(0)),
                ("preemptionPolicy", json!("PreemptLowerPriority")),
            ] {
                set_default(spec, k, v);
            }
            if spec.get("tolerations").is_none() {
                spec["tolerations"] = json!([
                    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                ]);
            }
            default_containers(&mut spec["containers"]);
            if spec.get("initContainers").is_some() {
                default_containers(&mut spec["initContainers"]);
            }
            let qos = qos_class(spec);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        PVCS => {
            let beta = obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
                .is_string();
            let spec = &mut obj["spec"];
            let spec = if spec.is_object() { spec } else { return };
            if spec.get("storageClassName").is_none()
                && !beta
                && let Some(class) = default_class
            {
                spec["storageClassName"] = json!(class);
            }
            set_default(spec, "volumeMode", json!("Filesystem"));
            obj["status"] = json!({"phase": "Pending"});
        }
        SECRETS => {
            set_default(obj, "type", json!("Opaque"));
            if let Some(Value::Object(sd)) =
                obj.as_object_mut().and_then(|m| m.remove("stringData"))
            {
                if !obj["data"].is_object() {
                    obj["data"] = json!({});
                }
                for (k, v) in sd {
                    obj["data"][k] = json!(base64(v.as_str().unwrap_or("").as_bytes()));
                }
            }
        }
        NAMESPACES => {
            let name = obj["metadata"]["name"].clone();
            if !obj["metadata"]["labels"].is_object() {
                obj["metadata"]["labels"] = json!({});
            }
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
        }
        _ => {
            if obj["kind"] == "Service" {
                let spec = &mut obj["spec"];
                if spec.is_object() {
                    set_default(spec, "type", json!("ClusterIP"));
                    set_default(spec, "sessionAffinity", json!("None"));
                    if spec.get("clusterIP").is_none() {
                        let ip = format!("10.96.{}.{}", fastrand::u8(..), fastrand::u8(1..255));
                        spec["clusterIP"] = json!(ip);
                        spec["clusterIPs"] = json!([ip]);
                    }
                    for p in spec
                        .get_mut("ports")
                        .and_then(Value::as_array_mut)
                        .into_iter()
                        .flatten()
                    {
                        set_default(p, "protocol", json!("TCP"));
                        let port = p["port"].clone();
                        set_default(p, "targetPort", port);
                    }
                }
                obj["status"] = json!({"loadBalancer": {}});
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_defaults() {
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "notebook", "image": "jupyter/base", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "2"}}},
        ]}, "status": {"phase": "Running"}});
        on_create(PODS, &mut pod, None);
        assert_eq!(
            pod["status"],
            json!({"phase": "Pending", "qosClass": "Burstable"})
        );
        assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(pod["spec"]["restartPolicy"], "Always");
        assert_eq!(image_pull_policy("registry:5000/x:1.0"), "IfNotPresent");
        assert_eq!(image_pull_policy("registry:5000/x"), "Always");
    }

    #[test]
    fn pvc_and_secret_defaults() {
        let mut pvc =
            json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["ReadWriteOnce"]}});
        on_create(PVCS, &mut pvc, Some("standard"));
        assert_eq!(pvc["spec"]["storageClassName"], "standard");
        assert_eq!(pvc["status"]["phase"], "Pending");
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"token": "hello"}});
        on_create(SECRETS, &mut s, None);
        assert_eq!(s["data"]["token"], "aGVsbG8=");
        assert_eq!(s["type"], "Opaque");
        assert!(s.get("stringData").is_none());
    }
}
