//! Request and watch counters, audit-style: a GET of a collection is `list`, with `watch=1`
//! it is `watch`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Requests counted for one (verb, resource, namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCount {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`.
    pub verb: String,
    /// Plural resource name, with `/status` for the subresource.
    pub resource: String,
    /// Namespace, `""` for cluster-scoped or all-namespace requests.
    pub namespace: String,
    /// Number of requests.
    pub count: u64,
}

/// Open watches on one (resource, namespace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchCount {
    /// Plural resource name.
    pub resource: String,
    /// Namespace, `""` for all namespaces.
    pub namespace: String,
    /// Watches open now.
    pub open: u64,
}

/// A snapshot of the counters (also served as JSON at `GET /simulator/counters`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Resource requests by verb.
    pub verbs: BTreeMap<String, u64>,
    /// Resource requests by (verb, resource, namespace), sorted.
    pub requests: Vec<RequestCount>,
    /// Requests to non-resource paths (discovery, `/version`, health), not in `verbs`.
    pub non_resource: u64,
    /// Watches open now.
    pub open_watches: u64,
    /// Open watches by (resource, namespace), those with none left out.
    pub open_watches_by: Vec<WatchCount>,
    /// Most watches open at once since the start or the last reset.
    pub peak_open_watches: u64,
    /// API requests by their `User-Agent` header (`""` when absent), as an API server's
    /// audit log tells clients apart.
    #[serde(default)]
    pub user_agents: BTreeMap<String, u64>,
}

impl Counters {
    /// Requests with this verb.
    pub fn verb(&self, verb: &str) -> u64 {
        self.verbs.get(verb).copied().unwrap_or(0)
    }

    /// Requests with this verb on this resource in this namespace.
    pub fn count(&self, verb: &str, resource: &str, namespace: &str) -> u64 {
        self.requests
            .iter()
            .find(|r| r.verb == verb && r.resource == resource && r.namespace == namespace)
            .map_or(0, |r| r.count)
    }

    /// Watches open on this resource in this namespace.
    pub fn open_watches_on(&self, resource: &str, namespace: &str) -> u64 {
        self.open_watches_by
            .iter()
            .find(|w| w.resource == resource && w.namespace == namespace)
            .map_or(0, |w| w.open)
    }
}

/// When the kubelet first reported a pod Running, and first reported `ErrImagePull` (wall clock,
/// milliseconds since the Unix epoch), for benchmarks that compare them with their own clock
/// (served as JSON at `GET /simulator/timeline`, keyed `namespace/name`; the latest pod of a
/// name wins).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodTimes {
    /// UID of the pod these times are about.
    pub uid: String,
    /// When its status first said Running.
    pub running_ms: Option<f64>,
    /// When a container of it first waited with `ErrImagePull`.
    pub err_image_pull_ms: Option<f64>,
}

fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

#[derive(Debug, Default)]
pub(crate) struct CounterState {
    timeline: HashMap<String, PodTimes>,
    requests: HashMap<(&'static str, String, String), u64>,
    non_resource: u64,
    user_agents: BTreeMap<String, u64>,
    watches: HashMap<(String, String), u64>,
    open: u64,
    peak: u64,
}

impl CounterState {
    pub(crate) fn request(&mut self, verb: &'static str, resource: &str, ns: &str) {
        *self
            .requests
            .entry((verb, resource.to_owned(), ns.to_owned()))
            .or_default() += 1;
    }

    pub(crate) fn non_resource(&mut self) {
        self.non_resource += 1;
    }

    /// Notes the `User-Agent` of an API request.
    pub(crate) fn user_agent(&mut self, agent: &str) {
        if let Some(n) = self.user_agents.get_mut(agent) {
            *n += 1;
        } else {
            self.user_agents.insert(agent.to_owned(), 1);
        }
    }

    pub(crate) fn watch_opened(&mut self, resource: &str, ns: &str) {
        *self
            .watches
            .entry((resource.to_owned(), ns.to_owned()))
            .or_default() += 1;
        self.open += 1;
        self.peak = self.peak.max(self.open);
    }

    pub(crate) fn watch_closed(&mut self, resource: &str, ns: &str) {
        if let Some(n) = self.watches.get_mut(&(resource.to_owned(), ns.to_owned())) {
            *n = n.saturating_sub(1);
        }
        self.open = self.open.saturating_sub(1);
    }

    pub(crate) fn reset(&mut self) {
        self.requests.clear();
        self.non_resource = 0;
        self.user_agents.clear();
        self.peak = self.open;
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let mut verbs = BTreeMap::new();
        let mut requests: Vec<RequestCount> = self
            .requests
            .iter()
            .map(|((verb, resource, namespace), count)| {
                *verbs.entry((*verb).to_owned()).or_default() += count;
                RequestCount {
                    verb: (*verb).to_owned(),
                    resource: resource.clone(),
                    namespace: namespace.clone(),
                    count: *count,
                }
            })
            .collect();
        requests.sort_by(|a, b| {
            (&a.verb, &a.resource, &a.namespace).cmp(&(&b.verb, &b.resource, &b.namespace))
        });
        let mut open_watches_by: Vec<WatchCount> = self
            .watches
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|((resource, namespace), open)| WatchCount {
                resource: resource.clone(),
                namespace: namespace.clone(),
                open: *open,
            })
            .collect();
        open_watches_by
            .sort_by(|a, b| (&a.resource, &a.namespace).cmp(&(&b.resource, &b.namespace)));
        Counters {
            verbs,
            requests,
            non_resource: self.non_resource,
            open_watches: self.open,
            open_watches_by,
            peak_open_watches: self.peak,
            user_agents: self.user_agents.clone(),
        }
    }
}

impl CounterState {
    fn times(&mut self, ns: &str, name: &str, uid: &str) -> &mut PodTimes {
        let entry = self.timeline.entry(format!("{ns}/{name}")).or_default();
        if entry.uid != uid {
            *entry = PodTimes {
                uid: uid.to_owned(),
                ..PodTimes::default()
            };
        }
        entry
    }

    /// Records the first Running of a pod.
    pub(crate) fn pod_running(&mut self, ns: &str, name: &str, uid: &str) {
        let times = self.times(ns, name, uid);
        times.running_ms.get_or_insert_with(now_ms);
    }

    /// Records the first `ErrImagePull` of a pod.
    pub(crate) fn pod_err_image_pull(&mut self, ns: &str, name: &str, uid: &str) {
        let times = self.times(ns, name, uid);
        times.err_image_pull_ms.get_or_insert_with(now_ms);
    }

    /// The timeline, sorted by `namespace/name`.
    pub(crate) fn timeline(&self) -> BTreeMap<String, PodTimes> {
        self.timeline
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        let mut c = CounterState::default();
        c.request("create", "pods", "ns");
        c.request("create", "pods", "ns");
        c.request("list", "pods", "");
        c.watch_opened("pods", "ns");
        c.watch_opened("pods", "ns");
        c.watch_closed("pods", "ns");
        let s = c.snapshot();
        assert_eq!(s.verb("create"), 2);
        assert_eq!(s.count("create", "pods", "ns"), 2);
        assert_eq!(s.count("list", "pods", ""), 1);
        assert_eq!((s.open_watches, s.peak_open_watches), (1, 2));
        assert_eq!(s.open_watches_on("pods", "ns"), 1);
        c.reset();
        let s = c.snapshot();
        assert_eq!(
            (s.verb("create"), s.open_watches, s.peak_open_watches),
            (0, 1, 1)
        );
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["open_watches"], 1);
    }
}
