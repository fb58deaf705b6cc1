//! Small pieces of the spawner's waiting: following one pod name in the cache, ending the
//! progress of an abandoned start, delete options.

use std::sync::Arc;

use kube::api::{DeleteParams, Preconditions};
use tokio::sync::watch;
use tokio::time::Instant;

use super::cache::{NamespaceCache, Slot};
use super::progress::Progress;

/// Ends the progress log if a start future is dropped before it finished (the hub's own
/// timeout), so progress streams end too.
pub(crate) struct FinishOnDrop<'a>(pub(crate) &'a Progress);

impl Drop for FinishOnDrop<'_> {
    fn drop(&mut self) {
        self.0
            .finish(crate::ProgressEvent::failed("Spawn cancelled"));
    }
}

/// Follows one pod name in a namespace cache; the cache entry is released when dropped.
pub(crate) struct Watched {
    cache: Arc<NamespaceCache>,
    name: String,
    pub(crate) rx: watch::Receiver<Slot>,
}

impl Watched {
    pub(crate) fn new(cache: &Arc<NamespaceCache>, name: &str) -> Watched {
        Watched {
            cache: Arc::clone(cache),
            name: name.to_owned(),
            rx: cache.subscribe(name),
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Our receiver must be gone before the entry can be released.
        let (_, placeholder) = watch::channel(None);
        drop(std::mem::replace(&mut self.rx, placeholder));
        self.cache.release(&self.name);
    }
}

/// Delete options: grace period and an optional UID precondition (never delete a newer pod
/// that took the name).
pub(crate) fn delete_params(grace: i64, uid: Option<&str>) -> DeleteParams {
    DeleteParams {
        grace_period_seconds: u32::try_from(grace.max(0)).ok(),
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid.to_owned()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

/// Waits until the slot satisfies `done`; `None` at the deadline.
pub(crate) async fn wait_for(
    rx: &mut watch::Receiver<Slot>,
    done: impl Fn(&Slot) -> bool,
    deadline: Instant,
) -> Option<Slot> {
    tokio::time::timeout_at(deadline, rx.wait_for(|slot| done(slot)))
        .await
        .ok()?
        .ok()
        .map(|slot| slot.clone())
}

/// `timeout` from now; a timeout too large for the clock (`Duration::MAX`, or a
/// `--start-timeout` of years) means about thirty years, instead of the panic of
/// `Instant::now() + timeout`.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .unwrap_or_else(|| now + std::time::Duration::from_secs(30 * 365 * 24 * 3600))
}

/// The server's URL: an IPv6 pod IP goes in brackets (`http://[fd00::5]:8888`).
pub(crate) fn server_url(ip: &str, port: u16) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(ip) => format!("http://{}", std::net::SocketAddr::new(ip, port)),
        // Not an address (never from a real kubelet): as it is.
        Err(_) => format!("http://{ip}:{port}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_pod_ips_are_bracketed() {
        assert_eq!(server_url("10.0.0.7", 8888), "http://10.0.0.7:8888");
        assert_eq!(
            server_url("fd00:10:244::5", 8888),
            "http://[fd00:10:244::5]:8888"
        );
    }

    #[test]
    fn huge_timeouts_do_not_panic() {
        let far = deadline_after(std::time::Duration::MAX);
        assert!(far > Instant::now() + std::time::Duration::from_secs(3600 * 24 * 365));
        let soon = deadline_after(std::time::Duration::from_secs(1));
        assert!(soon <= Instant::now() + std::time::Duration::from_secs(1));
    }
}
