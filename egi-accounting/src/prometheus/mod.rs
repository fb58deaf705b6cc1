//! [`MetricsSource`] over Prometheus' HTTP API.
//!
//! Every question is one instant query, sent as the Python tool sent it: a `POST` of the form
//! `query=<PromQL>&time=<evaluation time>` to `<url>/api/v1/query` (see [`crate::query`] for
//! the PromQL). Responses are parsed while they stream in, on a blocking thread, so that
//! memory stays bounded whatever the number of pods: only the labels an answer needs are
//! kept, and the Running range vector is reduced series by series.
//!
//! Transient failures ([`Error::is_transient`]: connection problems, timeouts, HTTP 5xx and
//! 429, Prometheus `timeout`/`unavailable` errors) are retried with exponential back-off and
//! full jitter; anything else is returned at once. Redirects are never followed, TLS
//! certificates are verified unless told otherwise, and no `Authorization` header is sent
//! unless credentials are configured.
//!
//! ```no_run
//! use egi_accounting::prometheus::{Auth, PrometheusConfig, PrometheusSource};
//!
//! # fn build() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = PrometheusConfig::new("https://prometheus.example.org/".parse()?);
//! config.auth = Auth::Bearer("token".into());
//! let source = PrometheusSource::new(config)?;
//! # let _ = source;
//! # Ok(())
//! # }
//! ```

mod answers;
mod response;
mod transport;

#[cfg(test)]
mod tests;

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::error::{Error, Result};
use crate::metrics::{
    Answer, BoxFuture, ByPod, ByUid, MetricsSource, PodAnnotations, PodCreated, RunningSamples,
    Usage, Window,
};
use crate::query::{Question, promql};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("egi-accounting/", env!("CARGO_PKG_VERSION"));

/// The longest back-off delay, whatever `backoff` and the number of retries.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

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
    /// Base URL; `api/v1/query` is appended (a path prefix is kept). Must be `http` or
    /// `https` and carry no credentials (use [`PrometheusConfig::auth`]).
    pub url: Url,
    /// Authentication.
    pub auth: Auth,
    /// Verify the server's TLS certificate (default true).
    pub verify_tls: bool,
    /// Extra CA certificates (PEM) to trust, besides the Web PKI roots. Each is also
    /// accepted as the server's own certificate when presented byte for byte (pinned), its
    /// subjectAltName and validity still checked: a self-signed certificate made by
    /// `openssl req -x509` (its own CA, which rustls alone refuses as a server certificate)
    /// works as with curl.
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
    config: PrometheusConfig,
    /// `<url>/api/v1/query`.
    endpoint: Url,
    client: reqwest::Client,
}

impl PrometheusSource {
    /// Builds the HTTP client.
    ///
    /// Fails with [`Error::Config`] on a URL that is not `http(s)` or carries credentials,
    /// a zero timeout, an unreadable or invalid CA file, or (without the `rustls-tls`
    /// feature) an `https` URL or any CA file. Logs a warning when TLS
    /// verification is disabled. Proxies from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` apply.
    pub fn new(config: PrometheusConfig) -> Result<Self> {
        Self::build(config, true)
    }

    /// [`PrometheusSource::new`], optionally ignoring proxy environment variables.
    fn build(config: PrometheusConfig, env_proxies: bool) -> Result<Self> {
        let endpoint = query_endpoint(&config.url)?;
        if config.timeout.is_zero() {
            return Err(Error::Config(
                "the Prometheus timeout must be positive".to_owned(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if !env_proxies {
            builder = builder.no_proxy();
        }
        builder = tls_settings(builder, &config, &endpoint)?;
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            config,
            endpoint,
            client,
        })
    }

    /// The URL queries are posted to.
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// Asks `question` for `window`, retrying transient failures, and parses the answer
    /// with `parse` on a blocking thread while the body streams in.
    async fn ask<T, F>(&self, question: Question, window: &Window, parse: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Read) -> Result<T> + Clone + Send + 'static,
    {
        let form = [
            ("query", promql(question, window)),
            ("time", window.at.to_prometheus_param()),
        ];
        let mut retry = 0;
        loop {
            tracing::debug!(?question, query = %form[0].1, time = %form[1].1, "querying Prometheus");
            match transport::query(self, &form, parse.clone()).await {
                Ok(answer) => return Ok(answer),
                Err(e) if e.is_transient() && retry < self.config.retries => {
                    let delay = backoff_delay(self.config.backoff, retry);
                    retry += 1;
                    tracing::warn!(
                        ?question,
                        retry,
                        of = self.config.retries,
                        ?delay,
                        error = %error_chain(&e),
                        "transient Prometheus failure, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Maps a reqwest failure: timeouts to [`Error::Timeout`], anything else that happened
    /// on the wire to [`Error::Connect`].
    fn transport_error(&self, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout(self.config.timeout)
        } else if e.is_builder() {
            Error::Config(format!("cannot build the Prometheus request: {e}"))
        } else {
            Error::Connect(e)
        }
    }
}

/// An error and its sources, `: `-separated, for a log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `<base>/api/v1/query`, keeping the base's path prefix with or without a trailing slash.
fn query_endpoint(base: &Url) -> Result<Url> {
    if !matches!(base.scheme(), "http" | "https") {
        return Err(Error::Config(format!(
            "Prometheus URL {base}: the scheme must be http or https"
        )));
    }
    if !base.username().is_empty() || base.password().is_some() {
        // The URL is not quoted: it holds a secret.
        return Err(Error::Config(
            "Prometheus URL: give credentials as user and password, not in the URL".to_owned(),
        ));
    }
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url.join("api/v1/query")
        .map_err(|e| Error::Config(format!("Prometheus URL {base}: {e}")))
}

/// Applies the TLS settings of `config`.
#[cfg(feature = "rustls-tls")]
fn tls_settings(
    mut builder: reqwest::ClientBuilder,
    config: &PrometheusConfig,
    endpoint: &Url,
) -> Result<reqwest::ClientBuilder> {
    if !config.verify_tls {
        tracing::warn!(
            url = %endpoint,
            "TLS certificate verification of Prometheus is disabled"
        );
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(path) = &config.ca_cert {
        if config.verify_tls {
            // The CA file's certificates are trusted as roots and also pinned, so that a
            // self-signed CA certificate (`openssl req -x509`) works as the server's own
            // certificate, which rustls alone refuses (`CaUsedAsEndEntity`): see `crate::tls`.
            return Ok(builder.use_preconfigured_tls(crate::tls::client_config(path)?));
        }
        // Verification is off: the file is still checked, so that a typo is not silent.
        crate::tls::read_ca_file(path)?;
    }
    Ok(builder)
}

/// Without a TLS backend only `http` URLs work: HTTPS or a CA file is a configuration error
/// here, not a failure at the first request or a setting silently ignored.
#[cfg(not(feature = "rustls-tls"))]
fn tls_settings(
    builder: reqwest::ClientBuilder,
    config: &PrometheusConfig,
    endpoint: &Url,
) -> Result<reqwest::ClientBuilder> {
    if endpoint.scheme() == "https" || config.ca_cert.is_some() {
        return Err(Error::Config(format!(
            "Prometheus URL {endpoint}: HTTPS needs egi-accounting's `rustls-tls` feature"
        )));
    }
    Ok(builder)
}

/// Exponential back-off with full jitter: uniform in `[0, backoff * 2^retry]`, capped.
fn backoff_delay(backoff: Duration, retry: u32) -> Duration {
    let ceiling = backoff
        .saturating_mul(2u32.saturating_pow(retry))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(fastrand::f64())
}

impl MetricsSource for PrometheusSource {
    fn pods<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<PodCreated>>> {
        Box::pin(self.ask(Question::Pods, window, |r| answers::pods(r)))
    }

    fn running<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<RunningSamples>>> {
        Box::pin(self.ask(Question::Running, window, |r| answers::running(r)))
    }

    fn annotations<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<PodAnnotations>>> {
        Box::pin(self.ask(Question::Annotations, window, |r| answers::annotations(r)))
    }

    fn images<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<String>>>> {
        Box::pin(self.ask(Question::Images, window, |r| answers::images(r)))
    }

    fn cpu_requests<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<f64>>>> {
        Box::pin(self.ask(Question::CpuRequests, window, |r| answers::cpu_requests(r)))
    }

    fn usage<'a>(&'a self, window: &'a Window, usage: Usage) -> BoxFuture<'a, Result<Vec<ByPod>>> {
        Box::pin(self.ask(Question::Usage(usage), window, move |r| {
            answers::usage(r, usage)
        }))
    }

    /// Rows travel from the parser's thread to `sink` in batches through a small channel,
    /// while the body is still streaming in.
    fn stream<'a>(
        &'a self,
        window: &'a Window,
        question: Question,
        sink: &'a mut (dyn FnMut(Answer) + Send),
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Answer>(2);
            let parse = move |r: &mut dyn Read| {
                answers::stream(r, question, &mut |batch| {
                    // The receiver only goes away when the caller gave up on this answer.
                    let _ = tx.blocking_send(batch);
                })
            };
            let asking = self.ask(question, window, parse);
            let receiving = async {
                while let Some(batch) = rx.recv().await {
                    sink(batch);
                }
            };
            let (asked, ()) = futures_util::future::join(asking, receiving).await;
            asked
        })
    }
}
