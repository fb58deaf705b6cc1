//! One watch-backed cache of the server pods of a namespace, shared by every spawner of that
//! namespace: `poll()` and readiness read it, so no spawner ever GETs or LISTs pods itself.
//!
//! The watch is label-scoped (`component=singleuser-server`), resumes from its last
//! resourceVersion when a connection drops and lists again when the server says 410 Gone
//! (kube-runtime's watcher does both). The 410 relist happens at once, and other errors are
//! retried after 100 ms doubling to 500 ms: kube-runtime's default back-off (800 ms growing
//! to 30 s, for 410 too) made starts in flight return 5-6 s late after an API server
//! restart, whose new watch cache answers every resumed watch with 410. Only a compact [`PodView`] per pod is kept, never whole
//! objects with their `managedFields`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::events::EventsHub;
use super::view::PodView;
use crate::manifest::POD_SELECTOR;

/// First pause after a failed watch request, doubled at each failure up to [`RETRY_MAX`].
const RETRY_MIN: std::time::Duration = std::time::Duration::from_millis(100);
/// Longest pause between watch retries: a server back from a restart is seen within it.
const RETRY_MAX: std::time::Duration = std::time::Duration::from_millis(500);

/// What a subscriber sees of one pod name: `None` while no such pod exists.
pub(crate) type Slot = Option<Arc<PodView>>;

struct Entry {
    tx: watch::Sender<Slot>,
}

/// The cache of one namespace.
pub(crate) struct NamespaceCache {
    namespace: String,
    pods: Mutex<HashMap<String, Entry>>,
    synced: watch::Sender<bool>,
    pub(crate) events: Arc<EventsHub>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for NamespaceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceCache")
            .field("namespace", &self.namespace)
            .field("pods", &self.lock().len())
            .finish_non_exhaustive()
    }
}

impl NamespaceCache {
    /// Starts the pod watch of `namespace` on the current runtime.
    pub(crate) fn start(client: kube::Client, namespace: &str) -> Arc<NamespaceCache> {
        let (synced, _) = watch::channel(false);
        let cache = Arc::new(NamespaceCache {
            namespace: namespace.to_owned(),
            pods: Mutex::new(HashMap::new()),
            synced,
            events: EventsHub::new(client.clone(), namespace),
            task: Mutex::new(None),
        });
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let weak = Arc::downgrade(&cache);
        let task = tokio::spawn(async move {
            let config = watcher::Config::default().labels(POD_SELECTOR);
            let mut stream = watcher(api, config).boxed();
            let mut relist: Option<HashMap<String, PodView>> = None;
            let mut backoff = RETRY_MIN;
            while let Some(item) = stream.next().await {
                let Some(cache) = weak.upgrade() else { return };
                if item.is_ok() {
                    backoff = RETRY_MIN;
                }
                match item {
                    Ok(watcher::Event::Apply(pod)) => cache.apply(&pod),
                    Ok(watcher::Event::Delete(pod)) => {
                        if let Some(name) = pod.metadata.name.as_deref() {
                            cache.remove(name);
                        }
                    }
                    Ok(watcher::Event::Init) => relist = Some(HashMap::new()),
                    Ok(watcher::Event::InitApply(pod)) => {
                        if let (Some(buffer), Some(name)) =
                            (relist.as_mut(), pod.metadata.name.clone())
                        {
                            buffer.insert(name, PodView::of(&pod));
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        cache.replace_all(relist.take().unwrap_or_default());
                        cache.synced.send_replace(true);
                    }
                    // The watcher lists again at its next poll: at once.
                    Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                        tracing::debug!(namespace = %cache.namespace, "pod watch expired; listing again");
                    }
                    Err(error) => {
                        tracing::warn!(namespace = %cache.namespace, %error, "pod watch failed; retrying");
                        drop(cache);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RETRY_MAX);
                    }
                }
            }
        });
        *cache.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        cache
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.pods.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the first list is in (every later call returns at once).
    pub(crate) async fn wait_synced(&self) {
        let mut rx = self.synced.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// The pod of that name now, if any.
    pub(crate) fn get(&self, name: &str) -> Slot {
        self.lock().get(name).and_then(|e| e.tx.borrow().clone())
    }

    /// Follows one pod name: the receiver sees every change, including its absence.
    pub(crate) fn subscribe(&self, name: &str) -> watch::Receiver<Slot> {
        let mut pods = self.lock();
        pods.entry(name.to_owned())
            .or_insert_with(|| Entry {
                tx: watch::channel(None).0,
            })
            .tx
            .subscribe()
    }

    /// Number of pods in the cache.
    pub(crate) fn len(&self) -> usize {
        self.lock()
            .values()
            .filter(|e| e.tx.borrow().is_some())
            .count()
    }

    fn apply(&self, pod: &Pod) {
        let Some(name) = pod.metadata.name.as_deref() else {
            return;
        };
        set(&mut self.lock(), name, PodView::of(pod));
    }

    fn remove(&self, name: &str) {
        let mut pods = self.lock();
        if let Some(entry) = pods.get(name) {
            if entry.tx.receiver_count() == 0 {
                pods.remove(name);
            } else {
                entry.tx.send_replace(None);
            }
        }
    }

    /// After a (re)list: the listed pods are the truth; pods missing from it are gone.
    fn replace_all(&self, listed: HashMap<String, PodView>) {
        let mut pods = self.lock();
        pods.retain(|name, entry| {
            if listed.contains_key(name) {
                return true;
            }
            if entry.tx.receiver_count() == 0 {
                return false;
            }
            entry.tx.send_if_modified(|slot| slot.take().is_some());
            true
        });
        for (name, view) in listed {
            set(&mut pods, &name, view);
        }
    }

    /// No pod in it and nobody following a name: the cache can go.
    pub(crate) fn idle(&self) -> bool {
        self.lock()
            .values()
            .all(|e| e.tx.borrow().is_none() && e.tx.receiver_count() == 0)
    }

    /// Drops entries nobody follows for names with no pod (left by finished waits).
    pub(crate) fn release(&self, name: &str) {
        let mut pods = self.lock();
        if let Some(entry) = pods.get(name)
            && entry.tx.borrow().is_none()
            && entry.tx.receiver_count() == 0
        {
            pods.remove(name);
        }
    }
}

/// Puts `view` in the entry of `name`, telling followers only when it changed.
fn set(pods: &mut HashMap<String, Entry>, name: &str, view: PodView) {
    match pods.get(name) {
        Some(entry) => {
            entry.tx.send_if_modified(|slot| {
                if slot.as_deref() == Some(&view) {
                    false
                } else {
                    *slot = Some(Arc::new(view));
                    true
                }
            });
        }
        None => {
            let tx = watch::channel(Some(Arc::new(view))).0;
            pods.insert(name.to_owned(), Entry { tx });
        }
    }
}

impl Drop for NamespaceCache {
    fn drop(&mut self) {
        if let Some(task) = self
            .task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            task.abort();
        }
    }
}
