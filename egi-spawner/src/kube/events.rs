//! Kubernetes events of the pods being spawned, for progress messages.
//!
//! One events watch per namespace runs only while at least one spawn in that namespace is
//! listening, and stops after a quiet period; events of pods nobody is spawning are dropped
//! as they arrive, so nothing accumulates (KubeSpawner's events cache grew without bound).
//! The watch starts from the current resourceVersion (a one-item list), never from a full
//! list of the namespace's history.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, WatchEvent, WatchParams};
use tokio::sync::{mpsc, watch};

/// The field selector of the events watch.
const EVENTS_SELECTOR: &str = "involvedObject.kind=Pod";
/// How long the watch outlives the last spawn that listened.
const IDLE_STOP: Duration = Duration::from_secs(30);
/// Pause before retrying after an error of the events API.
const RETRY: Duration = Duration::from_secs(1);

/// One event of a pod, as much as progress needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodEvent {
    /// UID of the pod it is about (events of an older pod with the same name are skipped).
    pub(crate) uid: Option<String>,
    /// `Normal` or `Warning`.
    pub(crate) kind: String,
    /// `Scheduled`, `Pulling`, `Failed`, ...
    pub(crate) reason: String,
    /// The kubelet's or scheduler's message.
    pub(crate) message: String,
    /// The event's last timestamp, RFC 3339, if any.
    pub(crate) time: Option<String>,
}

impl PodEvent {
    fn of(event: &Event) -> PodEvent {
        let time = event
            .last_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()));
        PodEvent {
            uid: event.involved_object.uid.clone(),
            kind: event.type_.clone().unwrap_or_else(|| "Normal".to_owned()),
            reason: event.reason.clone().unwrap_or_default(),
            message: event.message.clone().unwrap_or_default(),
            time,
        }
    }
}

#[derive(Default)]
struct Inner {
    listeners: HashMap<String, mpsc::UnboundedSender<PodEvent>>,
    /// `true` once the running watch has its starting resourceVersion.
    running: Option<watch::Receiver<bool>>,
}

/// The events watch of one namespace and who listens to it.
pub(crate) struct EventsHub {
    client: kube::Client,
    namespace: String,
    inner: Mutex<Inner>,
}

/// A spawn's subscription to its pod's events; dropping it unsubscribes.
pub(crate) struct Listener {
    hub: Arc<EventsHub>,
    pod: String,
    pub(crate) rx: mpsc::UnboundedReceiver<PodEvent>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.hub.lock().listeners.remove(&self.pod);
    }
}

impl EventsHub {
    pub(crate) fn new(client: kube::Client, namespace: &str) -> Arc<EventsHub> {
        Arc::new(EventsHub {
            client,
            namespace: namespace.to_owned(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Listens to the events of pod `pod`. Returns once the watch is positioned, so every
    /// event created after this returns is delivered.
    pub(crate) async fn listen(self: &Arc<Self>, pod: &str) -> Listener {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ready = {
            let mut inner = self.lock();
            inner.listeners.insert(pod.to_owned(), tx);
            match &inner.running {
                Some(ready) => ready.clone(),
                None => {
                    let (ready_tx, ready_rx) = watch::channel(false);
                    inner.running = Some(ready_rx.clone());
                    tokio::spawn(run(
                        Arc::downgrade(self),
                        self.client.clone(),
                        self.namespace.clone(),
                        ready_tx,
                    ));
                    ready_rx
                }
            }
        };
        // Bounded: if the events API is down, spawning goes on without progress messages.
        let _ = tokio::time::timeout(Duration::from_secs(5), ready.wait_for(|r| *r)).await;
        Listener {
            hub: Arc::clone(self),
            pod: pod.to_owned(),
            rx,
        }
    }

    fn route(&self, event: &Event) {
        let Some(name) = event.involved_object.name.as_deref() else {
            return;
        };
        let inner = self.lock();
        if let Some(tx) = inner.listeners.get(name) {
            let _ = tx.send(PodEvent::of(event));
        }
    }

    /// Stops the watch if nobody listens; returns whether it stopped.
    fn stop_if_idle(&self) -> bool {
        let mut inner = self.lock();
        if inner.listeners.is_empty() {
            inner.running = None;
            true
        } else {
            false
        }
    }

    fn idle(&self) -> bool {
        self.lock().listeners.is_empty()
    }
}

async fn run(
    hub: Weak<EventsHub>,
    client: kube::Client,
    namespace: String,
    ready: watch::Sender<bool>,
) {
    let api: Api<Event> = Api::namespaced(client, &namespace);
    let mut quiet_since: Option<tokio::time::Instant> = None;
    'relist: loop {
        let list = ListParams::default().fields(EVENTS_SELECTOR).limit(1);
        let mut version = match api.list_metadata(&list).await {
            Ok(list) => list.metadata.resource_version.unwrap_or_default(),
            Err(error) => {
                tracing::warn!(%namespace, %error, "listing events failed; retrying");
                if hub.upgrade().is_none_or(|h| h.stop_if_idle()) {
                    return;
                }
                tokio::time::sleep(RETRY).await;
                continue 'relist;
            }
        };
        ready.send_replace(true);
        loop {
            let params = WatchParams::default().fields(EVENTS_SELECTOR).timeout(290);
            let stream = match api.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::warn!(%namespace, %error, "events watch failed; retrying");
                    if hub.upgrade().is_none_or(|h| h.stop_if_idle()) {
                        return;
                    }
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            };
            let mut stream = std::pin::pin!(stream);
            loop {
                let next = tokio::time::timeout(Duration::from_secs(1), stream.next()).await;
                let Some(hub) = hub.upgrade() else { return };
                if hub.idle() {
                    let since = *quiet_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= IDLE_STOP && hub.stop_if_idle() {
                        return;
                    }
                } else {
                    quiet_since = None;
                }
                match next {
                    Err(_) => continue,
                    Ok(None) => break,
                    Ok(Some(Ok(WatchEvent::Added(event) | WatchEvent::Modified(event)))) => {
                        if let Some(rv) = &event.metadata.resource_version {
                            version.clone_from(rv);
                        }
                        hub.route(&event);
                    }
                    Ok(Some(Ok(WatchEvent::Deleted(event)))) => {
                        if let Some(rv) = &event.metadata.resource_version {
                            version.clone_from(rv);
                        }
                    }
                    Ok(Some(Ok(WatchEvent::Bookmark(bookmark)))) => {
                        version = bookmark.metadata.resource_version;
                    }
                    Ok(Some(Ok(WatchEvent::Error(status)))) if status.code == 410 => {
                        continue 'relist;
                    }
                    Ok(Some(Ok(WatchEvent::Error(status)))) => {
                        tracing::warn!(%namespace, code = status.code, message = %status.message, "events watch error");
                        break;
                    }
                    Ok(Some(Err(error))) => {
                        tracing::debug!(%namespace, %error, "events watch ended; resuming");
                        break;
                    }
                }
            }
        }
    }
}
