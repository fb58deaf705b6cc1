//! A small HTTP client for the simulator, a watch line reader and polling with deadlines.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use egi_test_harness::kubesim::{KubeSim, SimOptions};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

/// A simulator with a short back-off and bookmark interval, for quick tests.
pub(crate) async fn sim() -> KubeSim {
    sim_with(SimOptions {
        backoff: Duration::from_millis(200),
        bookmark_interval: Duration::from_millis(100),
        ..SimOptions::default()
    })
    .await
}

pub(crate) async fn sim_with(opts: SimOptions) -> KubeSim {
    KubeSim::start(opts).await.expect("simulator starts")
}

/// Polls `f` until it gives a value, failing after `secs` seconds with `what`.
pub(crate) async fn until<T>(secs: u64, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plain JSON requests against the simulator.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(sim: &KubeSim) -> Self {
        Self {
            client: reqwest::Client::new(),
            base: sim.url(),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("request");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.client.get(format!("{}{path}", self.base)))
            .await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.client.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub(crate) async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(self.client.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub(crate) async fn patch(&self, path: &str, content_type: &str, body: &Value) -> (u16, Value) {
        let req = self
            .client
            .patch(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body.to_string());
        self.send(req).await
    }

    pub(crate) async fn delete(&self, path: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self.client.delete(format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await
    }

    /// Opens a watch (the path carries the query).
    pub(crate) async fn watch(&self, path: &str) -> Watch {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("watch");
        assert_eq!(resp.status().as_u16(), 200, "watch {path}");
        Watch {
            stream: Box::pin(resp.bytes_stream()),
            buf: Vec::new(),
        }
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<axum::body::Bytes>> + Send>>;

/// How a watch read ended.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    Event(Value),
    /// The server ended the response cleanly.
    End,
    /// The connection broke (no final chunk).
    Broken,
    /// Nothing within the wait.
    Quiet,
}

/// A watch response, read line by line.
pub(crate) struct Watch {
    stream: ByteStream,
    buf: Vec<u8>,
}

impl Watch {
    /// The next event within `wait`.
    pub(crate) async fn next(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Next::Event(serde_json::from_slice(&line).expect("event line is JSON"));
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Next::Quiet,
                Ok(None) => return Next::End,
                Ok(Some(Err(_))) => return Next::Broken,
                Ok(Some(Ok(b))) => self.buf.extend_from_slice(&b),
            }
        }
    }

    /// The next event that is not a bookmark, failing after `secs`.
    pub(crate) async fn event(&mut self, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Event(e) if e["type"] == "BOOKMARK" => continue,
                Next::Event(e) => return e,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// Skips events until one of `kind` about `name`, failing after `secs`.
    pub(crate) async fn until(&mut self, secs: u64, kind: &str, name: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {kind} event for {name}");
            let e = self.event(left.as_secs().max(1)).await;
            if e["type"] == kind && e["object"]["metadata"]["name"] == name {
                return e;
            }
        }
    }
}

/// A minimal pod named `name` with labels.
pub(crate) fn pod(name: &str, labels: &Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "notebook", "image": "quay.io/jupyter/base-notebook:2024", "ports": [{"name": "notebook-port", "containerPort": 8888}]}]}
    })
}

/// A PVC asking for `size` of `class` (None: the default).
pub(crate) fn pvc(name: &str, size: &str, class: Option<&str>) -> Value {
    let mut p = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    });
    if let Some(c) = class {
        p["spec"]["storageClassName"] = json!(c);
    }
    p
}

/// The peers directory (`$EGI_PEERS_DIR` or the workspace's `.peers/`).
pub(crate) fn peers_dir() -> PathBuf {
    std::env::var_os("EGI_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.peers"))
}

/// Events about a pod, by reason, oldest first.
pub(crate) fn pod_events(sim: &KubeSim, ns: &str, pod: &str) -> Vec<Value> {
    let mut evs: Vec<Value> = sim
        .objects("events", ns)
        .into_iter()
        .filter(|e| e["involvedObject"]["name"] == pod && e["involvedObject"]["kind"] == "Pod")
        .collect();
    evs.sort_by(|a, b| {
        a["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .cmp(
                &b["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|s| s.parse::<u64>().ok()),
            )
    });
    evs
}
