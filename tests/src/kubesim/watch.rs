//! Watch streams: JSON lines `{"type":..,"object":..}`, from a replayed log or the current
//! objects, then live; bookmarks, timeouts, selector transitions, 410 Expired, and abrupt
//! ends when watches are dropped. A watcher never holds the store lock while writing, and
//! one that falls more than the watch buffer behind is ended.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Shared;
use super::resources::RESOURCES;
use super::selectors::Selectors;
use super::status::ApiError;
use super::store::{Change, EventType, Subscription, event_line};
use super::table;

/// What a watch asks for.
#[derive(Debug)]
pub(crate) struct WatchParams {
    pub(crate) res: usize,
    pub(crate) ns: Option<String>,
    pub(crate) sel: Selectors,
    /// None for "" (current objects first), Some(0) likewise, Some(n) to resume.
    pub(crate) from: Option<u64>,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) send_initial: bool,
    pub(crate) table: bool,
}

/// Counts an open watch until dropped.
struct Open {
    sh: Arc<Shared>,
    res: &'static str,
    ns: String,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.sh.counters().watch_closed(self.res, &self.ns);
    }
}

/// How a change looks to one watcher: None if it does not concern it.
fn view(c: &Change, p: &WatchParams) -> Option<EventType> {
    if let Some(ns) = &p.ns
        && c.namespace() != ns
    {
        return None;
    }
    let now = p.sel.matches(&c.object);
    match c.kind {
        EventType::Added => now.then_some(EventType::Added),
        EventType::Deleted => c
            .old
            .as_deref()
            .map_or(now, |o| p.sel.matches(o))
            .then_some(EventType::Deleted),
        EventType::Modified => {
            let before = c.old.as_deref().is_some_and(|o| p.sel.matches(o));
            match (before, now) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            }
        }
    }
}

fn line_for(c: &Change, kind: EventType, p: &WatchParams) -> Bytes {
    if p.table {
        let t = table::table(p.res, std::slice::from_ref(&c.object), 0);
        event_line(kind.as_str(), &t)
    } else if kind == c.kind {
        c.line()
    } else {
        event_line(kind.as_str(), &c.object)
    }
}

fn bookmark(p: &WatchParams, rv: u64, initial_end: bool) -> Bytes {
    let r = &RESOURCES[p.res];
    let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": r.kind, "apiVersion": r.api_version(), "metadata": meta}),
    )
}

/// Starts a watch; the body streams until timeout, client disconnect, shutdown or a drop.
pub(crate) fn start(sh: &Arc<Shared>, p: WatchParams) -> Body {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let aborted = Arc::new(AtomicBool::new(false));
    sh.counters()
        .watch_opened(RESOURCES[p.res].plural, p.ns.as_deref().unwrap_or(""));
    let open = Open {
        sh: sh.clone(),
        res: RESOURCES[p.res].plural,
        ns: p.ns.clone().unwrap_or_default(),
    };
    let sh2 = sh.clone();
    let flag = aborted.clone();
    sh.rt.spawn(async move {
        let _open = open;
        run(&sh2, p, tx, &flag).await;
    });
    let stream = futures_util::stream::unfold((rx, aborted), |(mut rx, aborted)| async move {
        match rx.recv().await {
            Some(b) => Some((Ok::<Bytes, io::Error>(b), (rx, aborted))),
            None if aborted.swap(false, Ordering::SeqCst) => Some((
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "watch dropped",
                )),
                (rx, aborted),
            )),
            None => None,
        }
    });
    Body::from_stream(stream)
}

async fn run(sh: &Arc<Shared>, p: WatchParams, tx: mpsc::Sender<Bytes>, aborted: &AtomicBool) {
    let mut drops = sh.drops.subscribe();
    drops.mark_unchanged();
    let sub = sh.lock().subscribe(p.res, p.from, p.ns.as_deref());
    let (initial, mut rx, mut last_rv) = match sub {
        Subscription::Expired { asked, oldest } => {
            let _ = tx
                .send(event_line(
                    "ERROR",
                    &ApiError::expired(asked, oldest).to_status(),
                ))
                .await;
            return;
        }
        Subscription::Ok { initial, rx, rv } => (initial, rx, rv),
    };
    let opts = sh.opts();
    let deadline = p.timeout.map(|t| tokio::time::Instant::now() + t);
    let send = |b: Bytes| {
        let tx = &tx;
        async move { tx.send(b).await.is_ok() }
    };
    for c in &initial {
        if let Some(kind) = view(c, &p)
            && !send(line_for(c, kind, &p)).await
        {
            return;
        }
    }
    if p.send_initial && p.bookmarks && !send(bookmark(&p, last_rv, true)).await {
        return;
    }
    drop(initial);
    let period = opts.bookmark_interval.max(Duration::from_millis(10));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let sleep_until = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep_until);
    loop {
        tokio::select! {
            () = sh.cancel.cancelled() => return,
            _ = drops.changed() => {
                aborted.store(true, Ordering::SeqCst);
                return;
            }
            () = &mut sleep_until => return,
            _ = tick.tick(), if p.bookmarks => {
                let rv = {
                    let store = sh.lock();
                    if rx.is_empty() { store.rv } else { last_rv }
                };
                last_rv = last_rv.max(rv);
                if !send(bookmark(&p, last_rv, false)).await {
                    return;
                }
            }
            r = rx.recv() => match r {
                Ok(c) => {
                    last_rv = last_rv.max(c.rv);
                    if let Some(kind) = view(&c, &p)
                        && !send(line_for(&c, kind, &p)).await
                    {
                        return;
                    }
                }
                // Too slow: the real server ends such watches too.
                Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Parses a watch/list `resourceVersion` parameter.
pub(crate) fn parse_rv(v: Option<&str>) -> Result<Option<u64>, ApiError> {
    match v {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "resourceVersion: Invalid value: {}: must be a non-negative integer",
                Value::from(s)
            ))
        }),
    }
}
