//! The object store: one table per resource, a global resourceVersion counter (like etcd),
//! a bounded per-resource event log for watch resumption, and the uid and owner indexes the
//! garbage collector uses.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resources::RESOURCES;

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change of one object, kept in the log and broadcast to watchers.
#[derive(Debug)]
pub(crate) struct Change {
    pub(crate) rv: u64,
    pub(crate) kind: EventType,
    pub(crate) object: Arc<Value>,
    /// The previous state (MODIFIED), for selector transitions.
    pub(crate) old: Option<Arc<Value>>,
    line: OnceLock<Bytes>,
}

impl Change {
    /// `{"type":..,"object":..}\n`, serialised once and shared by every watcher.
    pub(crate) fn line(&self) -> Bytes {
        self.line
            .get_or_init(|| event_line(self.kind.as_str(), &self.object))
            .clone()
    }

    pub(crate) fn namespace(&self) -> &str {
        self.object["metadata"]["namespace"].as_str().unwrap_or("")
    }
}

/// A watch event line.
pub(crate) fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut s = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    s.push(b'\n');
    Bytes::from(s)
}

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ObjRef {
    pub(crate) res: usize,
    pub(crate) ns: String,
    pub(crate) name: String,
}

pub(crate) type Key = (String, String);

#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) objects: BTreeMap<Key, Arc<Value>>,
    log: VecDeque<Arc<Change>>,
    /// Every change after this resourceVersion is in the log.
    compacted: u64,
    tx: broadcast::Sender<Arc<Change>>,
}

/// All objects.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) rv: u64,
    pub(crate) tables: Vec<Table>,
    uids: HashMap<String, ObjRef>,
    dependents: HashMap<String, HashSet<ObjRef>>,
    history_limit: usize,
    /// Event aggregation: (involved uid, reason, message) -> event name.
    pub(crate) event_keys: HashMap<(String, String, String), (String, String)>,
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
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

/// The result of a watch registration.
pub(crate) enum Subscription {
    /// Replayed changes (or current objects as synthetic ADDED) then the live receiver.
    Ok {
        initial: Vec<Arc<Change>>,
        rx: broadcast::Receiver<Arc<Change>>,
        rv: u64,
    },
    /// The requested resourceVersion is older than the log.
    Expired { asked: u64, oldest: u64 },
}

impl Store {
    pub(crate) fn new(history_limit: usize, watch_buffer: usize) -> Self {
        let tables = RESOURCES
            .iter()
            .map(|_| Table {
                objects: BTreeMap::new(),
                log: VecDeque::new(),
                compacted: 0,
                tx: broadcast::channel(watch_buffer.max(16)).0,
            })
            .collect();
        Self {
            rv: 0,
            tables,
            uids: HashMap::new(),
            dependents: HashMap::new(),
            history_limit: history_limit.max(1),
            event_keys: HashMap::new(),
        }
    }

    pub(crate) fn get(&self, res: usize, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.tables[res]
            .objects
            .get(&(ns.to_owned(), name.to_owned()))
    }

    /// Objects of a resource, in one namespace or all.
    pub(crate) fn iter<'a>(
        &'a self,
        res: usize,
        ns: Option<&'a str>,
    ) -> Box<dyn Iterator<Item = &'a Arc<Value>> + 'a> {
        let objects = &self.tables[res].objects;
        match ns {
            Some(ns) => Box::new(
                objects
                    .range((ns.to_owned(), String::new())..)
                    .take_while(move |((n, _), _)| n == ns)
                    .map(|(_, v)| v),
            ),
            None => Box::new(objects.values()),
        }
    }

    /// Objects from `start` (exclusive) on, for paging.
    pub(crate) fn iter_after<'a>(
        &'a self,
        res: usize,
        start: &Key,
    ) -> impl Iterator<Item = (&'a Key, &'a Arc<Value>)> + 'a {
        use std::ops::Bound;
        self.tables[res]
            .objects
            .range((Bound::Excluded(start.clone()), Bound::Unbounded))
    }

    pub(crate) fn uid_exists(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    /// The objects listing `uid` among their owners.
    pub(crate) fn dependents_of(&self, uid: &str) -> Vec<ObjRef> {
        self.dependents
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn index(&mut self, r: &ObjRef, old: Option<&Value>, new: Option<&Value>) {
        if let Some(old) = old {
            for o in owner_uids(old) {
                if let Some(set) = self.dependents.get_mut(&o) {
                    set.remove(r);
                    if set.is_empty() {
                        self.dependents.remove(&o);
                    }
                }
            }
            self.uids.remove(meta_str(old, "uid"));
        }
        if let Some(new) = new {
            for o in owner_uids(new) {
                self.dependents.entry(o).or_default().insert(r.clone());
            }
            self.uids.insert(meta_str(new, "uid").to_owned(), r.clone());
        }
    }

    fn record(&mut self, res: usize, change: Change) -> Arc<Change> {
        let change = Arc::new(change);
        let table = &mut self.tables[res];
        table.log.push_back(change.clone());
        while table.log.len() > self.history_limit {
            if let Some(c) = table.log.pop_front() {
                table.compacted = c.rv;
            }
        }
        // Nobody listening is fine.
        let _ = table.tx.send(change.clone());
        change
    }

    /// Stores an object (new or replacing), stamping a new resourceVersion; emits ADDED or
    /// MODIFIED.
    pub(crate) fn put(&mut self, res: usize, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let r = ObjRef {
            res,
            ns: meta_str(&obj, "namespace").to_owned(),
            name: meta_str(&obj, "name").to_owned(),
        };
        let obj = Arc::new(obj);
        let old = self.tables[res]
            .objects
            .insert((r.ns.clone(), r.name.clone()), obj.clone());
        self.index(&r, old.as_deref(), Some(&obj));
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(
            res,
            Change {
                rv,
                kind,
                object: obj.clone(),
                old,
                line: OnceLock::new(),
            },
        );
        obj
    }

    /// Removes an object; emits DELETED (with a new resourceVersion).
    pub(crate) fn remove(&mut self, res: usize, ns: &str, name: &str) -> Option<Arc<Value>> {
        let old = self.tables[res]
            .objects
            .remove(&(ns.to_owned(), name.to_owned()))?;
        let r = ObjRef {
            res,
            ns: ns.to_owned(),
            name: name.to_owned(),
        };
        self.index(&r, Some(&old), None);
        let rv = self.next_rv();
        let mut last = (*old).clone();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        let last = Arc::new(last);
        self.record(
            res,
            Change {
                rv,
                kind: EventType::Deleted,
                object: last.clone(),
                old: Some(old),
                line: OnceLock::new(),
            },
        );
        Some(last)
    }

    /// Forgets every logged change, so that resuming from any earlier version gets 410.
    pub(crate) fn compact(&mut self) {
        let rv = self.rv;
        for t in &mut self.tables {
            t.log.clear();
            t.compacted = rv;
        }
    }

    /// An API server restart: the history is lost and every version handed out before is
    /// too old (the version moves on by one, as the new server's watch cache starts after
    /// them), so resuming from any of them gets 410 while a fresh list works.
    pub(crate) fn restart(&mut self) {
        self.next_rv();
        self.compact();
    }

    /// Registers a watcher from `from` ("" or "0": current objects as ADDED).
    pub(crate) fn subscribe(
        &self,
        res: usize,
        from: Option<u64>,
        ns: Option<&str>,
    ) -> Subscription {
        let table = &self.tables[res];
        let rx = table.tx.subscribe();
        let initial = match from {
            None | Some(0) => self
                .iter(res, ns)
                .map(|o| {
                    Arc::new(Change {
                        rv: o["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                            .unwrap_or(0),
                        kind: EventType::Added,
                        object: o.clone(),
                        old: None,
                        line: OnceLock::new(),
                    })
                })
                .collect(),
            Some(n) if n < table.compacted => {
                return Subscription::Expired {
                    asked: n,
                    oldest: table.compacted + 1,
                };
            }
            Some(n) => {
                let start = table.log.partition_point(|c| c.rv <= n);
                table.log.iter().skip(start).cloned().collect()
            }
        };
        Subscription::Ok {
            initial,
            rx,
            rv: self.rv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::resources::{PODS, SECRETS};
    use super::*;

    fn obj(name: &str, owner: Option<&str>) -> Value {
        let mut o =
            json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")}});
        if let Some(u) = owner {
            o["metadata"]["ownerReferences"] =
                json!([{"uid": u, "kind": "Pod", "name": "x", "apiVersion": "v1"}]);
        }
        o
    }

    #[test]
    fn versions_log_and_compaction() {
        let mut s = Store::new(2, 16);
        s.put(PODS, obj("a", None));
        s.put(PODS, obj("b", None));
        s.put(SECRETS, obj("s", Some("uid-a")));
        assert_eq!(s.rv, 3);
        assert_eq!(s.dependents_of("uid-a").len(), 1);
        assert_eq!(s.iter(PODS, Some("ns")).count(), 2);
        assert_eq!(s.iter(PODS, Some("n")).count(), 0);
        s.put(PODS, obj("c", None));
        // The pods log holds the last two (rv 2 and 4): resuming from 1 is fine, from 0 is a list.
        match s.subscribe(PODS, Some(1), None) {
            Subscription::Ok { initial, .. } => {
                assert_eq!(initial.iter().map(|c| c.rv).collect::<Vec<_>>(), vec![2, 4])
            }
            Subscription::Expired { .. } => panic!("expired"),
        }
        s.put(PODS, obj("d", None));
        assert!(matches!(
            s.subscribe(PODS, Some(1), None),
            Subscription::Expired {
                asked: 1,
                oldest: 3
            }
        ));
        let gone = s.remove(PODS, "ns", "a").unwrap();
        assert_eq!(gone["metadata"]["resourceVersion"], "6");
        assert!(!s.uid_exists("uid-a"));
        s.compact();
        assert!(matches!(
            s.subscribe(PODS, Some(5), None),
            Subscription::Expired { .. }
        ));
        assert!(matches!(
            s.subscribe(PODS, Some(6), None),
            Subscription::Ok { .. }
        ));
    }
}
