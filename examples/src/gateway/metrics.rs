//! The gateway's Prometheus metrics: logins, spawns, stops, token refreshes pushed to servers
//! and proxied traffic, as counters, plus gauges of users and running servers. Rendered in the
//! text exposition format at `/hub/metrics` (scope `read:metrics`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every counter of the gateway.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Logins completed.
    pub logins_ok: Counter,
    /// Logins refused: not in an allowed VO.
    pub logins_refused: Counter,
    /// Logins that failed (provider error, bad state, expired cookie).
    pub logins_failed: Counter,
    /// Logouts.
    pub logouts: Counter,
    /// Spawns that became ready.
    pub spawns_ok: Counter,
    /// Spawns that failed.
    pub spawns_failed: Counter,
    /// Stops.
    pub stops: Counter,
    /// New tokens written into running servers' Secrets.
    pub token_pushes: Counter,
    /// Token pushes that failed.
    pub token_push_errors: Counter,
    /// Requests proxied to servers and services.
    pub proxy_requests: Counter,
    /// Proxied requests refused (no session, wrong user, missing scope).
    pub proxy_denied: Counter,
    /// Proxied requests the upstream did not answer (502/504).
    pub proxy_upstream_errors: Counter,
    /// API requests refused for a missing or invalid token or scope.
    pub api_denied: Counter,
}

/// Gauges read at render time.
#[derive(Debug, Default, Clone, Copy)]
pub struct Gauges {
    /// Users known.
    pub users: usize,
    /// Servers running.
    pub running: usize,
    /// Servers starting.
    pub starting: usize,
    /// Users whose Check-in grant is gone (they must log in again).
    pub login_needed: usize,
}

impl Metrics {
    /// The exposition text.
    pub fn render(&self, gauges: Gauges) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, rows: &[(&str, &Counter)]| {
            let _ = writeln!(out, "# HELP egi_gateway_{name}_total {help}");
            let _ = writeln!(out, "# TYPE egi_gateway_{name}_total counter");
            for (labels, c) in rows {
                let _ = writeln!(out, "egi_gateway_{name}_total{labels} {}", c.get());
            }
        };
        counter(
            "logins",
            "Check-in logins by outcome.",
            &[
                ("{outcome=\"ok\"}", &self.logins_ok),
                ("{outcome=\"refused\"}", &self.logins_refused),
                ("{outcome=\"failed\"}", &self.logins_failed),
            ],
        );
        counter("logouts", "Logouts.", &[("", &self.logouts)]);
        counter(
            "spawns",
            "Server starts by outcome.",
            &[
                ("{outcome=\"ok\"}", &self.spawns_ok),
                ("{outcome=\"failed\"}", &self.spawns_failed),
            ],
        );
        counter("stops", "Server stops.", &[("", &self.stops)]);
        counter(
            "token_pushes",
            "Refreshed Check-in tokens written to running servers.",
            &[
                ("{outcome=\"ok\"}", &self.token_pushes),
                ("{outcome=\"failed\"}", &self.token_push_errors),
            ],
        );
        counter(
            "proxy_requests",
            "Requests proxied to servers and services by outcome.",
            &[
                ("{outcome=\"forwarded\"}", &self.proxy_requests),
                ("{outcome=\"denied\"}", &self.proxy_denied),
                ("{outcome=\"upstream_error\"}", &self.proxy_upstream_errors),
            ],
        );
        counter(
            "api_denied",
            "REST API requests refused for the token or its scopes.",
            &[("", &self.api_denied)],
        );
        let mut gauge = |name: &str, help: &str, value: usize| {
            let _ = writeln!(out, "# HELP egi_gateway_{name} {help}");
            let _ = writeln!(out, "# TYPE egi_gateway_{name} gauge");
            let _ = writeln!(out, "egi_gateway_{name} {value}");
        };
        gauge("users", "Users known to the gateway.", gauges.users);
        gauge("servers_running", "Servers running.", gauges.running);
        gauge("servers_starting", "Servers starting.", gauges.starting);
        gauge(
            "users_login_needed",
            "Users whose Check-in grant is gone.",
            gauges.login_needed,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parseable_exposition_text() {
        let m = Metrics::default();
        m.logins_ok.inc();
        m.proxy_requests.add(3);
        let text = m.render(Gauges {
            users: 2,
            running: 1,
            ..Gauges::default()
        });
        assert!(
            text.contains("egi_gateway_logins_total{outcome=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("egi_gateway_proxy_requests_total{outcome=\"forwarded\"} 3\n"));
        assert!(text.contains("egi_gateway_servers_running 1\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap();
        }
    }
}
