//! The verbs (create, get, list, update, patch, delete) with the real server's checks,
//! shared by the HTTP layer and the in-process API.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::Shared;
use super::controllers;
use super::defaults;
use super::patch;
use super::resources::{NAMESPACES, PODS, PVCS, RESOURCES, SECRETS, STORAGECLASSES};
use super::selectors::Selectors;
use super::status::{self, ApiError, Cause, check_name};
use super::store::{Key, Store, meta_str};
use super::validation::{validate_pvc, validate_update};

/// A list page.
#[derive(Debug)]
pub(crate) struct ListPage {
    pub(crate) rv: u64,
    pub(crate) items: Vec<Arc<Value>>,
    pub(crate) cont: Option<String>,
    pub(crate) remaining: Option<usize>,
}

/// Delete options (query or body).
#[derive(Debug, Default, Clone)]
pub(crate) struct DeleteOpts {
    pub(crate) grace: Option<i64>,
    pub(crate) uid: Option<String>,
    pub(crate) rv: Option<String>,
    pub(crate) orphan: bool,
}

impl DeleteOpts {
    /// Reads a `DeleteOptions` body over the query values already set.
    pub(crate) fn merge_body(&mut self, body: &Value) {
        if let Some(g) = body["gracePeriodSeconds"].as_i64() {
            self.grace = Some(g);
        }
        if let Some(u) = body["preconditions"]["uid"].as_str() {
            self.uid = Some(u.to_owned());
        }
        if let Some(r) = body["preconditions"]["resourceVersion"].as_str() {
            self.rv = Some(r.to_owned());
        }
        if body["propagationPolicy"] == "Orphan" || body["orphanDependents"] == true {
            self.orphan = true;
        }
    }
}

fn hexify(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhexify(s: &str) -> Option<String> {
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect();
    String::from_utf8(bytes?).ok()
}

fn not_found(res: usize, name: &str) -> ApiError {
    ApiError::not_found(&RESOURCES[res], name)
}

/// GET one object.
pub(crate) fn get(sh: &Shared, res: usize, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
    sh.lock()
        .get(res, ns, name)
        .cloned()
        .ok_or_else(|| not_found(res, name))
}

/// LIST, with selectors and simple paging (`continue` holds the last key, hex encoded).
pub(crate) fn list(
    sh: &Shared,
    res: usize,
    ns: Option<&str>,
    sel: &Selectors,
    limit: Option<usize>,
    cont: Option<&str>,
) -> Result<ListPage, ApiError> {
    let store = sh.lock();
    let start: Option<Key> = match cont {
        Some(c) if !c.is_empty() => {
            let raw = unhexify(c).ok_or_else(|| {
                ApiError::bad_request("continue key is not valid: illegal base64 data")
            })?;
            let (n, m) = raw
                .split_once('\0')
                .ok_or_else(|| ApiError::bad_request("continue key is not valid"))?;
            Some((n.to_owned(), m.to_owned()))
        }
        _ => None,
    };
    let in_ns = |k: &Key| ns.is_none_or(|n| k.0 == n);
    let pinned = sel.fields.pinned_name();
    let candidates: Box<dyn Iterator<Item = (&Key, &Arc<Value>)>> = match &start {
        Some(s) => Box::new(store.iter_after(res, s).filter(|(k, _)| in_ns(k))),
        None => match (ns, pinned) {
            (Some(n), Some(p)) => Box::new(
                store.tables[res]
                    .objects
                    .get_key_value(&(n.to_owned(), p.to_owned()))
                    .into_iter(),
            ),
            _ => Box::new(
                store.tables[res]
                    .objects
                    .range::<Key, _>(..)
                    .filter(|(k, _)| in_ns(k)),
            ),
        },
    };
    let mut items = Vec::new();
    let mut last: Option<&Key> = None;
    let mut more = 0;
    for (k, v) in candidates {
        if !sel.matches(v) {
            continue;
        }
        if limit.is_some_and(|l| l > 0 && items.len() >= l) {
            more += 1;
            continue;
        }
        items.push(v.clone());
        last = Some(k);
    }
    let (cont, remaining) = if more > 0 {
        (
            last.map(|k| hexify(&format!("{}\0{}", k.0, k.1))),
            Some(more),
        )
    } else {
        (None, None)
    };
    Ok(ListPage {
        rv: store.rv,
        items,
        cont,
        remaining,
    })
}

fn namespace_check(store: &Store, res: usize, ns: &str, name: &str) -> Result<(), ApiError> {
    if !RESOURCES[res].namespaced {
        return Ok(());
    }
    match store.get(NAMESPACES, "", ns) {
        None => Err(ApiError::not_found(&RESOURCES[NAMESPACES], ns)),
        Some(n) if n["metadata"]["deletionTimestamp"].is_string() => Err(ApiError::forbidden(
            &RESOURCES[res],
            name,
            &format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )),
        Some(_) => Ok(()),
    }
}

fn default_class(store: &Store) -> Option<String> {
    store
        .iter(STORAGECLASSES, Some(""))
        .find(|c| {
            c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
        })
        .map(|c| meta_str(c, "name").to_owned())
}

/// CREATE (POST).
pub(crate) fn create(
    sh: &Arc<Shared>,
    res: usize,
    ns: &str,
    mut obj: Value,
) -> Result<Arc<Value>, ApiError> {
    let r = &RESOURCES[res];
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was in an unknown format",
        ));
    }
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let body_ns = meta_str(&obj, "namespace").to_owned();
    if r.namespaced {
        if !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        obj["metadata"]["namespace"] = json!(ns);
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    obj["kind"] = json!(r.kind);
    obj["apiVersion"] = json!(r.api_version());
    let mut name = meta_str(&obj, "name").to_owned();
    if name.is_empty() {
        let prefix = meta_str(&obj, "generateName");
        if prefix.is_empty() {
            return Err(ApiError::invalid(
                r,
                "",
                &[Cause::required(
                    "metadata.name",
                    "name or generateName is required",
                )],
            ));
        }
        name = format!("{prefix}{}", status::name_suffix());
        obj["metadata"]["name"] = json!(name);
    }
    check_name(r, &name)?;
    if res == PVCS {
        validate_pvc(&obj, &name)?;
    }
    if res == PODS
        && obj["spec"]["containers"]
            .as_array()
            .is_none_or(Vec::is_empty)
    {
        return Err(ApiError::invalid(
            r,
            &name,
            &[Cause::required("spec.containers", "")],
        ));
    }
    if let Some(msg) = sh.quota_fault(ns, res, &name, &obj) {
        return Err(ApiError::forbidden(r, &name, &msg));
    }
    let created = {
        let mut store = sh.lock();
        namespace_check(&store, res, ns, &name)?;
        if store
            .get(res, if r.namespaced { ns } else { "" }, &name)
            .is_some()
        {
            return Err(ApiError::already_exists(r, &name));
        }
        let meta = obj["metadata"].as_object_mut().expect("object");
        for k in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "resourceVersion",
        ] {
            meta.remove(k);
        }
        meta.insert("uid".to_owned(), json!(status::uuid()));
        meta.insert("creationTimestamp".to_owned(), json!(status::now()));
        if r.status || res == PODS {
            meta.insert("generation".to_owned(), json!(1));
        }
        let class = if res == PVCS {
            default_class(&store)
        } else {
            None
        };
        defaults::on_create(res, &mut obj, class.as_deref());
        store.put(res, obj)
    };
    controllers::on_created(sh, res, &created);
    Ok(created)
}

/// UPDATE (PUT), of the main resource or of `/status`.
pub(crate) fn update(
    sh: &Arc<Shared>,
    res: usize,
    ns: &str,
    name: &str,
    mut obj: Value,
    status_only: bool,
) -> Result<Arc<Value>, ApiError> {
    let r = &RESOURCES[res];
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request was in an unknown format",
        ));
    }
    let body_name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let (updated, old, expand) = {
        let mut store = sh.lock();
        let Some(old) = store.get(res, ns, name).cloned() else {
            return Err(not_found(res, name));
        };
        let want_rv = meta_str(&obj, "resourceVersion");
        if !want_rv.is_empty() && want_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::modified(r, name));
        }
        let want_uid = meta_str(&obj, "uid");
        if !want_uid.is_empty() && want_uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                r,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {want_uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        if status_only {
            let st = obj["status"].take();
            obj = (*old).clone();
            obj["status"] = st;
        } else {
            if r.status {
                obj["status"] = old["status"].clone();
            }
            let meta = obj["metadata"].as_object_mut().expect("object");
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            ] {
                match old["metadata"].get(k) {
                    Some(v) => meta.insert(k.to_owned(), v.clone()),
                    None => meta.remove(k),
                };
            }
            meta.remove("managedFields");
            obj["kind"] = json!(r.kind);
            obj["apiVersion"] = json!(r.api_version());
            if res == SECRETS {
                defaults::on_create(SECRETS, &mut obj, None);
            }
            if old.get("spec").is_some() && obj.get("spec") != old.get("spec") {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(0);
                obj["metadata"]["generation"] = json!(g + 1);
            }
        }
        let expand = validate_update(&store, res, name, &old, &obj)?;
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if obj == *old {
            return Ok(old);
        }
        let finalized = obj["metadata"]["deletionTimestamp"].is_string()
            && obj["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty)
            && res != PODS
            && res != NAMESPACES;
        if finalized {
            store.remove(res, ns, name);
            drop(store);
            controllers::on_deleted(sh, &old, false);
            return Ok(old);
        }
        (store.put(res, obj), old, expand)
    };
    controllers::on_updated(sh, res, &old, &updated, expand);
    Ok(updated)
}

/// PATCH (merge, strategic merge or JSON patch), of the main resource or of `/status`.
pub(crate) fn patch(
    sh: &Arc<Shared>,
    res: usize,
    ns: &str,
    name: &str,
    content_type: &str,
    body: &Value,
    status_only: bool,
) -> Result<Arc<Value>, ApiError> {
    let current = get(sh, res, ns, name)?;
    let mut obj = (*current).clone();
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let result = match ct {
        "application/merge-patch+json" => {
            patch::merge_patch(&mut obj, body);
            Ok(())
        }
        "application/strategic-merge-patch+json" => patch::strategic_merge(&mut obj, body),
        "application/json-patch+json" => patch::json_patch(&mut obj, body),
        other => return Err(ApiError::unsupported_media(other)),
    };
    if let Err(e) = result {
        return Err(ApiError {
            code: 422,
            reason: "Invalid",
            message: e,
            details: None,
        });
    }
    // The patched object keeps the version it was read at, so that a concurrent write
    // (the kubelet's, say) is detected rather than overwritten; a patch that does not set a
    // resourceVersion itself is then retried on the newer version, as the real server does.
    let patch_sets_rv = meta_str(&obj, "resourceVersion") != meta_str(&current, "resourceVersion");
    if meta_str(&obj, "name") != name {
        obj["metadata"]["name"] = json!(name);
    }
    match update(sh, res, ns, name, obj, status_only) {
        Err(e) if e.code == 409 && e.reason == "Conflict" && !patch_sets_rv => {
            let latest = get(sh, res, ns, name)?;
            if latest["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"] {
                return Err(e);
            }
            patch(sh, res, ns, name, content_type, body, status_only)
        }
        other => other,
    }
}

/// DELETE: returns the object (pods, PVCs, namespaces, services, storage classes) or a
/// `Success` Status.
pub(crate) fn delete(
    sh: &Arc<Shared>,
    res: usize,
    ns: &str,
    name: &str,
    opts: &DeleteOpts,
) -> Result<Value, ApiError> {
    let r = &RESOURCES[res];
    let mut store = sh.lock();
    let Some(obj) = store.get(res, ns, name).cloned() else {
        return Err(not_found(res, name));
    };
    let uid = meta_str(&obj, "uid").to_owned();
    if let Some(want) = &opts.uid
        && *want != uid
    {
        return Err(ApiError::conflict(
            r,
            name,
            &format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"),
        ));
    }
    if let Some(want) = &opts.rv
        && want != meta_str(&obj, "resourceVersion")
    {
        return Err(ApiError::conflict(
            r,
            name,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {}",
                meta_str(&obj, "resourceVersion")
            ),
        ));
    }
    let terminating = obj["metadata"]["deletionTimestamp"].is_string();
    let finalizers = obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let graceful = match res {
        PODS => {
            let phase = obj["status"]["phase"].as_str().unwrap_or("");
            let grace = opts.grace.unwrap_or_else(|| {
                obj["spec"]["terminationGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(30)
            });
            let scheduled = obj["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let terminal = phase == "Succeeded" || phase == "Failed";
            (grace > 0 && scheduled && !terminal).then_some(grace)
        }
        NAMESPACES => Some(0),
        _ if finalizers => Some(0),
        _ => None,
    };
    if terminating {
        // Deleting again only shortens the grace period.
        if res == PODS && opts.grace == Some(0) {
            let gone = store.remove(res, ns, name);
            drop(store);
            controllers::on_deleted(sh, &obj, opts.orphan);
            return Ok(gone.map(|g| (*g).clone()).unwrap_or_default());
        }
        return Ok((*obj).clone());
    }
    if let Some(grace) = graceful {
        let mut marked = (*obj).clone();
        let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
        marked["metadata"]["deletionTimestamp"] =
            json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
        if res == NAMESPACES {
            marked["status"]["phase"] = json!("Terminating");
        }
        let marked = store.put(res, marked);
        drop(store);
        match res {
            PODS => {
                let delay = sh
                    .opts()
                    .terminate_delay
                    .min(Duration::from_secs(grace.unsigned_abs()));
                controllers::terminate_pod_later(sh, ns, name, &uid, delay, opts.orphan);
            }
            NAMESPACES => controllers::empty_namespace(sh, name),
            _ => {}
        }
        return Ok((*marked).clone());
    }
    let gone = store.remove(res, ns, name).unwrap_or(obj.clone());
    drop(store);
    controllers::on_deleted(sh, &obj, opts.orphan);
    if r.returns_deleted {
        Ok((*gone).clone())
    } else {
        Ok(status::success(r, name, &uid))
    }
}

/// Removes a pod whose termination finished (kubelet), if it is still that pod.
pub(crate) fn finish_pod(sh: &Arc<Shared>, ns: &str, name: &str, uid: &str, orphan: bool) {
    let mut store = sh.lock();
    let Some(obj) = store.get(PODS, ns, name).cloned() else {
        return;
    };
    if meta_str(&obj, "uid") != uid {
        return;
    }
    store.remove(PODS, ns, name);
    drop(store);
    controllers::on_deleted(sh, &obj, orphan);
}
