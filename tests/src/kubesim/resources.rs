//! The resource types the simulator serves, and their discovery documents.

use serde_json::{Value, json};

/// How object names of a resource are validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameRule {
    /// RFC 1123 subdomain (pods, secrets, PVCs, events, ...).
    Subdomain,
    /// RFC 1123 label (namespaces).
    Label,
    /// RFC 1035 label (services).
    Dns1035,
}

/// One served resource type.
#[derive(Debug)]
pub(crate) struct Res {
    pub(crate) plural: &'static str,
    pub(crate) singular: &'static str,
    pub(crate) kind: &'static str,
    /// API group, "" for core.
    pub(crate) group: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) short: &'static [&'static str],
    pub(crate) name_rule: NameRule,
    /// Whether it has a `/status` subresource (main writes then keep the status).
    pub(crate) status: bool,
    /// Whether DELETE answers with the object rather than a Status.
    pub(crate) returns_deleted: bool,
}

impl Res {
    /// `v1` or `group/v1`.
    pub(crate) fn api_version(&self) -> &'static str {
        match self.group {
            "" => "v1",
            "apps" => "apps/v1",
            "batch" => "batch/v1",
            "rbac.authorization.k8s.io" => "rbac.authorization.k8s.io/v1",
            _ => "storage.k8s.io/v1",
        }
    }

    /// `pods`, or `storageclasses.storage.k8s.io` (as in error messages).
    pub(crate) fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Index of namespaces in [`RESOURCES`].
pub(crate) const NAMESPACES: usize = 0;
/// Index of pods.
pub(crate) const PODS: usize = 1;
/// Index of persistentvolumeclaims.
pub(crate) const PVCS: usize = 2;
/// Index of secrets.
pub(crate) const SECRETS: usize = 3;
/// Index of events.
pub(crate) const EVENTS: usize = 5;
/// Index of storageclasses.
pub(crate) const STORAGECLASSES: usize = 7;

const fn core(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    short: &'static [&'static str],
    name_rule: NameRule,
    status: bool,
    returns_deleted: bool,
) -> Res {
    Res {
        plural,
        singular,
        kind,
        group: "",
        namespaced: true,
        short,
        name_rule,
        status,
        returns_deleted,
    }
}

/// The API groups served besides the core group, each at version `v1`.
pub(crate) const GROUPS: [&str; 4] = [
    "storage.k8s.io",
    "apps",
    "batch",
    "rbac.authorization.k8s.io",
];

/// A stored-only resource of `group` (no controller acts on it): what the deployment
/// manifests of `examples/deploy/` apply besides the core kinds.
const fn stored(
    group: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    short: &'static [&'static str],
    status: bool,
) -> Res {
    Res {
        plural,
        singular,
        kind,
        group,
        namespaced: true,
        short,
        name_rule: NameRule::Subdomain,
        status,
        returns_deleted: false,
    }
}

/// Every served resource type.
pub(crate) static RESOURCES: [Res; 13] = [
    Res {
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        group: "",
        namespaced: false,
        short: &["ns"],
        name_rule: NameRule::Label,
        status: true,
        returns_deleted: true,
    },
    core(
        "pods",
        "pod",
        "Pod",
        &["po"],
        NameRule::Subdomain,
        true,
        true,
    ),
    core(
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        &["pvc"],
        NameRule::Subdomain,
        true,
        true,
    ),
    core(
        "secrets",
        "secret",
        "Secret",
        &[],
        NameRule::Subdomain,
        false,
        false,
    ),
    core(
        "services",
        "service",
        "Service",
        &["svc"],
        NameRule::Dns1035,
        true,
        true,
    ),
    core(
        "events",
        "event",
        "Event",
        &["ev"],
        NameRule::Subdomain,
        false,
        false,
    ),
    core(
        "configmaps",
        "configmap",
        "ConfigMap",
        &["cm"],
        NameRule::Subdomain,
        false,
        false,
    ),
    Res {
        plural: "storageclasses",
        singular: "storageclass",
        kind: "StorageClass",
        group: "storage.k8s.io",
        namespaced: false,
        short: &["sc"],
        name_rule: NameRule::Subdomain,
        status: false,
        returns_deleted: true,
    },
    core(
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        &["sa"],
        NameRule::Subdomain,
        false,
        false,
    ),
    stored(
        "apps",
        "deployments",
        "deployment",
        "Deployment",
        &["deploy"],
        true,
    ),
    stored("batch", "cronjobs", "cronjob", "CronJob", &["cj"], true),
    stored(
        "rbac.authorization.k8s.io",
        "roles",
        "role",
        "Role",
        &[],
        false,
    ),
    stored(
        "rbac.authorization.k8s.io",
        "rolebindings",
        "rolebinding",
        "RoleBinding",
        &[],
        false,
    ),
];

/// The resource served at `group`/`plural`.
pub(crate) fn find(group: &str, plural: &str) -> Option<usize> {
    RESOURCES
        .iter()
        .position(|r| r.group == group && r.plural == plural)
}

/// The resource named by a plural, singular, short name or kind (any case): for the
/// in-process API.
pub(crate) fn lookup(name: &str) -> Option<usize> {
    let lower = name.to_ascii_lowercase();
    RESOURCES.iter().position(|r| {
        r.plural == lower
            || r.singular == lower
            || r.short.contains(&lower.as_str())
            || r.kind.eq_ignore_ascii_case(&lower)
    })
}

/// `/api`.
pub(crate) fn api_versions(addr: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr}]
    })
}

fn group_doc(group: &str) -> Value {
    let gv = format!("{group}/v1");
    json!({
        "name": group,
        "versions": [{"groupVersion": gv, "version": "v1"}],
        "preferredVersion": {"groupVersion": gv, "version": "v1"}
    })
}

/// `/apis`.
pub(crate) fn api_group_list() -> Value {
    let groups: Vec<Value> = GROUPS.iter().map(|g| group_doc(g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// The served group named `name`.
pub(crate) fn group(name: &str) -> Option<&'static str> {
    GROUPS.iter().copied().find(|g| *g == name)
}

/// `/apis/{group}`.
pub(crate) fn api_group(group: &str) -> Value {
    let mut doc = group_doc(group);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    doc
}

/// `/api/v1` (group "") or `/apis/{group}/v1`.
pub(crate) fn resource_list(group: &str) -> Value {
    let mut resources = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        let mut verbs = vec![
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
        if r.plural != "namespaces" {
            verbs.insert(1, "deletecollection");
        }
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": verbs,
            "shortNames": r.short,
            "storageVersionHash": "",
        }));
        if r.status {
            resources.push(json!({
                "name": format!("{}/status", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": r.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let gv = if group.is_empty() {
        "v1".to_owned()
    } else {
        format!("{group}/v1")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// `/version`.
pub(crate) fn version() -> Value {
    json!({
        "major": "1",
        "minor": "30",
        "gitVersion": "v1.30.0-kubesim",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2024-04-17T00:00:00Z",
        "goVersion": "go1.22.2",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}
