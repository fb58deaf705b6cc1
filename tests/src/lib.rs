//! # egi-test-harness
//!
//! Real peers on loopback for the integration tests of the `egi-*` crates, and the data
//! they are fed with. One module per peer, so that more peers (an OpenID provider,
//! JupyterHub, a Kubernetes API simulator) can be added beside the first:
//!
//! - [`prometheus`]: [`Prometheus::backfill`] loads an OpenMetrics history into a real
//!   Prometheus (`promtool tsdb create-blocks-from openmetrics`) and serves it on a free port
//!   until dropped.
//! - [`jupyterhub`]: [`jupyterhub::JupyterHub::start`] runs JupyterHub 6 behind
//!   configurable-http-proxy, with a service token for monitoring probes, until dropped.
//! - [`oidc`]: [`oidc::OidcProvider::start`] runs npm `oidc-provider` shaped like EGI Check-in
//!   (rotation switchable, short-lived tokens, auto-approved logins, fault injection).
//! - [`rabbitmq`]: [`rabbitmq::RabbitMq::start`] runs RabbitMQ with its STOMP plugin, with a
//!   STOMP subscriber and a throw-away PKI whose `openssl smime -verify` checks APEL messages.
//! - [`ams`]: [`ams::AmsServer::start`] serves the ARGO Messaging Service's publish and token
//!   routes, with its errors.
//! - [`eosc`]: [`eosc::EoscApi::start`] serves the EOSC accounting API's metrics route, with
//!   its errors (401, 404, 422) and injected faults (5xx, slow).
//! - [`synthetic`]: a deterministic history of notebook pods, as kube-state-metrics and
//!   cAdvisor would have left it, from a handful of [`synthetic::Params`].
//!
//! Peers are found on `PATH`; `.ci/install-peers` installs them on Debian.
//!
//! ```no_run
//! use egi_test_harness::{Prometheus, synthetic::{self, Params}};
//!
//! # fn main() -> anyhow::Result<()> {
//! let params = Params::sample();
//! let prometheus = Prometheus::backfill(&synthetic::generate(&params)?)?;
//! let data = prometheus.query("count(kube_pod_created)", params.end)?;
//! println!("{} serves {}", prometheus.url(), data["result"]);
//! # Ok(())
//! # }
//! ```

pub mod ams;
pub mod eosc;
pub mod jupyter_server;
pub mod jupyterhub;
pub mod kubesim;
pub mod oidc;
pub mod prometheus;
pub mod rabbitmq;
pub mod synthetic;
mod wire;

pub use prometheus::Prometheus;
