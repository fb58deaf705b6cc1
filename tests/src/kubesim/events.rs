//! Events (core/v1) as the kubelet, scheduler and controllers record them, aggregated by
//! reason and message with a `count`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use super::Shared;
use super::kubelet::NODE;
use super::resources::EVENTS;
use super::status;
use super::store::meta_str;

static EVENT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Records an Event about `obj` (aggregated by reason and message, with `count`).
pub(crate) fn emit_event(
    sh: &Shared,
    obj: &Value,
    kind: &str,
    reason: &str,
    message: &str,
    component: &str,
    field_path: Option<&str>,
) {
    let ns = meta_str(obj, "namespace").to_owned();
    let uid = meta_str(obj, "uid").to_owned();
    let key = (uid.clone(), reason.to_owned(), message.to_owned());
    let now = status::now();
    let mut store = sh.lock();
    if let Some((ens, ename)) = store.event_keys.get(&key).cloned()
        && let Some(ev) = store.get(EVENTS, &ens, &ename).cloned()
    {
        let mut ev = (*ev).clone();
        ev["count"] = json!(ev["count"].as_i64().unwrap_or(1) + 1);
        ev["lastTimestamp"] = json!(now);
        store.put(EVENTS, ev);
        return;
    }
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
    let seq = EVENT_SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("{}.{:x}", meta_str(obj, "name"), nanos.wrapping_add(seq));
    let mut involved = json!({
        "kind": obj["kind"],
        "namespace": ns,
        "name": meta_str(obj, "name"),
        "uid": uid,
        "apiVersion": obj["apiVersion"],
        "resourceVersion": meta_str(obj, "resourceVersion"),
    });
    if let Some(fp) = field_path {
        involved["fieldPath"] = json!(fp);
    }
    let mut source = json!({"component": component});
    if component == "kubelet" {
        source["host"] = json!(NODE);
    }
    let ev = json!({
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": name, "namespace": ns, "uid": status::uuid(), "creationTimestamp": now},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": source,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "type": kind,
        "eventTime": null,
        "reportingComponent": component,
        "reportingInstance": if component == "kubelet" { NODE } else { "" },
    });
    store.put(EVENTS, ev);
    store.event_keys.insert(key, (ns, name));
}
