//! [`MetricsSource`] over Prometheus' HTTP API.
//!
//! SKELETON: implementation in progress.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::error::Result;
use crate::metrics::{
    BoxFuture, ByPod, ByUid, MetricsSource, PodAnnotations, PodCreated, RunningSamples, Usage,
    Window,
};

/// How to authenticate to Prometheus.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Auth {
    /// No `Authorization` header (the default: never send empty credentials).
    #[default]
    None,
    /// HTTP basic authentication.
    Basic {
        /// User name.
        user: String,
        /// Password (redacted in Debug).
        password: SecretString,
    },
    /// A bearer token (redacted in Debug).
    Bearer(SecretString),
}

/// Connection settings for [`PrometheusSource`].
#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    /// Base URL; `api/v1/query` is appended (a path prefix is kept).
    pub url: Url,
    /// Authentication.
    pub auth: Auth,
    /// Verify the server's TLS certificate (default true).
    pub verify_tls: bool,
    /// Extra CA certificate (PEM) to trust, besides the system roots.
    pub ca_cert: Option<PathBuf>,
    /// Timeout of each HTTP request, body included.
    pub timeout: Duration,
    /// How many times a transient failure is retried.
    pub retries: u32,
    /// First back-off delay; doubled at each retry, with jitter.
    pub backoff: Duration,
}

impl PrometheusConfig {
    /// Settings for `url` with the defaults: TLS verified, no auth, 60 s timeout, 3 retries
    /// starting at 1 s.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            auth: Auth::None,
            verify_tls: true,
            ca_cert: None,
            timeout: Duration::from_secs(60),
            retries: 3,
            backoff: Duration::from_secs(1),
        }
    }
}

/// Prometheus over HTTP.
#[derive(Debug)]
pub struct PrometheusSource {
    _config: PrometheusConfig,
}

impl PrometheusSource {
    /// Builds the HTTP client (fails on an unreadable CA file).
    pub fn new(config: PrometheusConfig) -> Result<Self> {
        Ok(Self { _config: config })
    }
}

impl MetricsSource for PrometheusSource {
    fn pods<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<PodCreated>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn running<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<RunningSamples>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn annotations<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<PodAnnotations>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn images<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<String>>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn cpu_requests<'a>(&'a self, _w: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<f64>>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn usage<'a>(&'a self, _w: &'a Window, _u: Usage) -> BoxFuture<'a, Result<Vec<ByPod>>> {
        Box::pin(async { Ok(Vec::new()) })
    }
}
