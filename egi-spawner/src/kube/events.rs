//! Kubernetes events of the pods being spawned and of their claims, for progress messages
//! (and a claim's binding failures, which fail a start that waits for it).
//!
//! One events watch per namespace runs only while at least one spawn in that namespace is
//! listening, and stops after a quiet period; events of objects nobody is spawning are
//! dropped as they arrive, so nothing accumulates (KubeSpawner's events cache grew without
//! bound). Each listener's channel is bounded too: a spawn that does not read fast enough
//! loses progress messages, never memory.
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

/// The field selector of the events watch: pods and claims (a field selector cannot say
/// "one of two kinds", so claims' events come by excluding what spawns never follow).
const EVENTS_SELECTOR: &str = "involvedObject.kind!=Node";
/// Events kept per listener before new ones are dropped (a start sees about ten).
const LISTENER_BUFFER: usize = 64;

/// What a listener follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum EventSource {
    /// A pod.
    Pod,
    /// A persistent volume claim.
    Claim,
}

impl EventSource {
    fn of(kind: Option<&str>) -> Option<EventSource> {
        match kind? {
            "Pod" => Some(EventSource::Pod),
            "PersistentVolumeClaim" => Some(EventSource::Claim),
            _ => None,
        }
    }
}
/// How long the watch outlives the last spawn that listened.
const IDLE_STOP: Duration = Duration::from_secs(30);
/// Pause before retrying after an error of the events API.
const RETRY: Duration = Duration::from_secs(1);

/// One event of a pod, as much as progress needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PodEvent {
    /// What it is about: the pod, or its claim.
    pub(crate) source: EventSource,
    /// UID of the object it is about (events of an older pod with the same name are skipped).
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
    fn of(source: EventSource, event: &Event) -> PodEvent {
        let time = event
            .last_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .or_else(|| event.event_time.as_ref().map(|t| t.0.to_string()));
        PodEvent {
            source,
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
    /// By source and name: the listener's id and its channel.
    listeners: HashMap<(EventSource, String), (u64, mpsc::Sender<PodEvent>)>,
    next_id: u64,
    /// Where the last watch stopped: a new one resumes there instead of listing again.
    version: Option<String>,
    /// `true` once the running watch has its starting resourceVersion.
    running: Option<watch::Receiver<bool>>,
}

/// The events watch of one namespace and who listens to it.
pub(crate) struct EventsHub {
    client: kube::Client,
    namespace: String,
    inner: Mutex<Inner>,
}

/// A spawn's subscription to the events of its pod and claim, on one channel (one per
/// start, whatever it follows); dropping it unsubscribes.
pub(crate) struct Listener {
    hub: Arc<EventsHub>,
    keys: Vec<(EventSource, String)>,
    id: u64,
    pub(crate) rx: mpsc::Receiver<PodEvent>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut inner = self.hub.lock();
        // Only our own entries: a later listener of the same name replaced it.
        for key in &self.keys {
            if inner
                .listeners
                .get(key)
                .is_some_and(|(id, _)| *id == self.id)
            {
                inner.listeners.remove(key);
            }
        }
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

    /// Listens to the events of the pod `pod` and the claim `claim`. Returns once the watch
    /// is positioned, so every event created after this returns is delivered.
    pub(crate) async fn listen(self: &Arc<Self>, pod: &str, claim: Option<&str>) -> Listener {
        let (tx, rx) = mpsc::channel(LISTENER_BUFFER);
        let mut keys = vec![(EventSource::Pod, pod.to_owned())];
        keys.extend(claim.map(|c| (EventSource::Claim, c.to_owned())));
        let (id, mut ready) = {
            let mut inner = self.lock();
            inner.next_id += 1;
            let id = inner.next_id;
            for key in &keys {
                inner.listeners.insert(key.clone(), (id, tx.clone()));
            }
            let ready = match &inner.running {
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
            };
            (id, ready)
        };
        // Bounded: if the events API is down, spawning goes on without progress messages.
        let _ = tokio::time::timeout(Duration::from_secs(5), ready.wait_for(|r| *r)).await;
        Listener {
            hub: Arc::clone(self),
            keys,
            id,
            rx,
        }
    }

    fn route(&self, event: &Event) {
        let (Some(name), Some(source)) = (
            event.involved_object.name.clone(),
            EventSource::of(event.involved_object.kind.as_deref()),
        ) else {
            return;
        };
        let inner = self.lock();
        if let Some((_, tx)) = inner.listeners.get(&(source, name)) {
            // Full: the spawn is behind; progress skips a message rather than grow.
            let _ = tx.try_send(PodEvent::of(source, event));
        }
    }

    /// Stops the watch if nobody listens, remembering where it was; returns whether it
    /// stopped.
    fn stop_if_idle(&self, version: Option<&str>) -> bool {
        let mut inner = self.lock();
        if inner.listeners.is_empty() {
            inner.running = None;
            inner.version = version.map(str::to_owned);
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
    // Resume where the last watch of this namespace stopped; list (one item) only without.
    let mut version: Option<String> = hub.upgrade().and_then(|h| h.lock().version.clone());
    loop {
        let from = match version.clone() {
            Some(from) => from,
            None => {
                let list = ListParams::default().fields(EVENTS_SELECTOR).limit(1);
                match api.list_metadata(&list).await {
                    Ok(list) => list.metadata.resource_version.unwrap_or_default(),
                    Err(error) => {
                        tracing::warn!(%namespace, %error, "listing events failed; retrying");
                        if hub.upgrade().is_none_or(|h| h.stop_if_idle(None)) {
                            return;
                        }
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
            }
        };
        version = Some(from.clone());
        ready.send_replace(true);
        let params = WatchParams::default().fields(EVENTS_SELECTOR).timeout(290);
        let stream = match api.watch(&params, &from).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%namespace, %error, "events watch failed; retrying");
                if hub
                    .upgrade()
                    .is_none_or(|h| h.stop_if_idle(version.as_deref()))
                {
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
                if since.elapsed() >= IDLE_STOP && hub.stop_if_idle(version.as_deref()) {
                    return;
                }
            } else {
                quiet_since = None;
            }
            match next {
                Err(_) => continue,
                // The server ended the watch (its timeout): resume from where we are.
                Ok(None) => break,
                Ok(Some(Ok(WatchEvent::Added(event) | WatchEvent::Modified(event)))) => {
                    if let Some(rv) = &event.metadata.resource_version {
                        version = Some(rv.clone());
                    }
                    hub.route(&event);
                }
                Ok(Some(Ok(WatchEvent::Deleted(event)))) => {
                    if let Some(rv) = &event.metadata.resource_version {
                        version = Some(rv.clone());
                    }
                }
                Ok(Some(Ok(WatchEvent::Bookmark(bookmark)))) => {
                    version = Some(bookmark.metadata.resource_version);
                }
                Ok(Some(Ok(WatchEvent::Error(status)))) if status.code == 410 => {
                    // Too old: start again from now.
                    version = None;
                    break;
                }
                Ok(Some(Ok(WatchEvent::Error(status)))) => {
                    tracing::warn!(%namespace, code = status.code, message = %status.message, "events watch error");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
                Ok(Some(Err(error))) => {
                    tracing::debug!(%namespace, %error, "events watch broke; resuming");
                    tokio::time::sleep(RETRY).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ObjectReference;

    fn event(kind: &str, name: &str, message: &str) -> Event {
        Event {
            involved_object: ObjectReference {
                kind: Some(kind.to_owned()),
                name: Some(name.to_owned()),
                ..ObjectReference::default()
            },
            message: Some(message.to_owned()),
            ..Event::default()
        }
    }

    /// Point 12 of issue 13: a spawn that does not read its events (stuck behind its request
    /// slot) holds at most its buffer; the watch never blocks nor grows for it.
    #[tokio::test]
    async fn a_listener_that_does_not_read_holds_at_most_its_buffer() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("url"));
        let hub = EventsHub::new(kube::Client::try_from(config).expect("client"), "ns");
        let (tx, mut rx) = mpsc::channel(LISTENER_BUFFER);
        hub.lock()
            .listeners
            .insert((EventSource::Pod, "jupyter-a".to_owned()), (1, tx));
        for i in 0..10 * LISTENER_BUFFER {
            hub.route(&event("Pod", "jupyter-a", &format!("event {i}")));
            // Someone else's events are not routed to it.
            hub.route(&event("Pod", "jupyter-b", "not ours"));
            hub.route(&event("Node", "jupyter-a", "not a pod"));
        }
        let mut got = vec![];
        while let Ok(e) = rx.try_recv() {
            got.push(e.message);
        }
        assert_eq!(got.len(), LISTENER_BUFFER);
        assert_eq!(got[0], "event 0");
        assert_eq!(
            got[LISTENER_BUFFER - 1],
            format!("event {}", LISTENER_BUFFER - 1)
        );
    }
}
