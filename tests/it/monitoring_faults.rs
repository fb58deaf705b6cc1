//! Faults of the service that the probes must report as CRITICAL with a clear message: the
//! hub crashed behind a live proxy (503, from the real proxy), a silent endpoint (a loopback
//! listener that never answers), BinderHub's failed checks (a loopback server).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use egi_monitoring::hub::HubClient;
use egi_monitoring::{BinderHealth, HubReachable, Probe, SpawnProbe, Status, Timeouts};

use crate::monitoring::{block_on, client, phases, settings, start_hub};

/// A loopback HTTP server answering every request with one canned response, or never
/// answering (`silent`); stopped on drop.
pub(crate) struct Canned {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Canned {
    /// Answers `status` with `content_type` and `body` (HTTP/1.1, then closes).
    pub(crate) fn new(status: u16, content_type: &str, body: &str) -> Self {
        let response = format!(
            "HTTP/1.1 {status} Canned\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        Self::serve(Some(response))
    }

    /// Accepts connections and reads requests, but never answers.
    pub(crate) fn silent() -> Self {
        Self::serve(None)
    }

    fn serve(response: Option<String>) -> Self {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                match &response {
                    Some(r) => {
                        let _ = stream.write_all(r.as_bytes());
                    }
                    None => held.push(stream),
                }
            }
        });
        Self {
            url,
            stop,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for Canned {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn hub_down_behind_the_proxy_is_named_unavailable() {
    let mut hub = start_hub();
    let client = client(&hub);
    hub.crash();
    block_on(async {
        let spawn = SpawnProbe::new(client.clone(), settings("monitor"))
            .run()
            .await;
        assert_eq!(spawn.status, Status::Critical, "{spawn:#?}");
        assert_eq!(
            spawn.message,
            "the hub is unavailable (HTTP 503 from GET /hub/api/users/monitor): Service Unavailable"
        );
        assert_eq!(phases(&spawn), ["user"]);

        let reachable = HubReachable::new(client.clone()).run().await;
        assert_eq!(reachable.status, Status::Critical, "{reachable:#?}");
        assert!(
            reachable
                .message
                .starts_with("the hub is unavailable (HTTP 503 from GET /hub/api/)"),
            "{}",
            reachable.message
        );
    });
}

#[test]
fn a_silent_endpoint_is_critical_after_the_timeout() {
    let silent = Canned::silent();
    let timeout = Duration::from_secs(1);
    let client = HubClient::builder(silent.url())
        .token("t")
        .request_timeout(timeout)
        .build()
        .unwrap();
    let timeouts = Timeouts {
        request: timeout,
        ..Timeouts::default()
    };
    block_on(async {
        let spawn = SpawnProbe::new(client.clone(), settings("monitor").timeouts(timeouts))
            .run()
            .await;
        assert_eq!(spawn.status, Status::Critical, "{spawn:#?}");
        assert!(
            spawn.message.ends_with("did not finish within 1 s"),
            "{}",
            spawn.message
        );
        assert_eq!(phases(&spawn), ["user"], "nothing else is tried");
        let took = spawn.phases[0].duration;
        assert!(
            took >= timeout && took < timeout + Duration::from_secs(1),
            "CRITICAL within the configured timeout, not {took:?}"
        );

        let reachable = HubReachable::new(client).timeouts(timeouts).run().await;
        assert_eq!(reachable.status, Status::Critical, "{reachable:#?}");
        assert!(
            reachable.message.ends_with("did not finish within 1 s"),
            "{}",
            reachable.message
        );
        assert!(
            reachable.duration < timeout + Duration::from_secs(1),
            "CRITICAL within the configured timeout, not {:?}",
            reachable.duration
        );
    });
}

#[test]
fn binderhub_health_names_the_failed_checks() {
    let healthy = Canned::new(
        200,
        "application/json",
        r#"{"ok": true, "checks": [{"service": "Hub", "ok": true}]}"#,
    );
    let failing = Canned::new(
        503,
        "application/json",
        r#"{"ok": false, "checks": [{"service": "Hub", "ok": true}, {"service": "Docker registry", "ok": false}]}"#,
    );
    let silent = Canned::silent();
    let timeout = Duration::from_secs(1);
    block_on(async {
        let ok = BinderHealth::new(healthy.url(), timeout)
            .unwrap()
            .run()
            .await;
        assert_eq!(
            (ok.status, ok.message.as_str()),
            (Status::Ok, "BinderHub is healthy")
        );
        let bad = BinderHealth::new(failing.url(), timeout)
            .unwrap()
            .run()
            .await;
        assert_eq!(
            (bad.status, bad.message.as_str()),
            (Status::Critical, "BinderHub checks failed: Docker registry")
        );
        let mute = BinderHealth::new(silent.url(), timeout)
            .unwrap()
            .run()
            .await;
        assert_eq!(mute.status, Status::Critical);
        assert_eq!(mute.message, "health did not finish within 1 s");
    });
}
