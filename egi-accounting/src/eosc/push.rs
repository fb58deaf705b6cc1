//! [`AccountingApi`]: `POST {accounting_url}/accounting-system/installations/{id}/metrics`.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::error::{Error, Result};
use super::report::Metric;

/// The longest part of an error body kept in [`Error::Rejected`].
const MAX_MESSAGE: usize = 300;

/// The EOSC accounting API of one installation. Redirects are not followed (the bearer
/// token would go with them). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AccountingApi {
    client: reqwest::Client,
    metrics: Url,
    timeout: Duration,
}

/// The metrics URL of `installation` at `accounting_url`.
pub fn metrics_url(accounting_url: &Url, installation: &str) -> Result<Url> {
    if installation.trim().is_empty() {
        return Err(Error::Config("installation_id is not set".into()));
    }
    let mut url = accounting_url.clone();
    url.path_segments_mut()
        .map_err(|()| Error::Config(format!("accounting_url {accounting_url}: not a base URL")))?
        .pop_if_empty()
        .extend([
            "accounting-system",
            "installations",
            installation.trim(),
            "metrics",
        ]);
    Ok(url)
}

/// Pulls the API's `message` (or the start of the body) out of an error answer.
fn message_of(body: &str) -> String {
    let from_json = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned));
    let text = from_json.unwrap_or_else(|| body.trim().to_owned());
    text.chars().take(MAX_MESSAGE).collect()
}

impl AccountingApi {
    /// The API at `accounting_url` for `installation`, each request allowed `timeout`.
    pub fn new(accounting_url: &Url, installation: &str, timeout: Duration) -> Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            metrics: metrics_url(accounting_url, installation)?,
            timeout,
        })
    }

    /// The metrics URL.
    pub fn url(&self) -> &Url {
        &self.metrics
    }

    /// Sends one metric; `Ok` once the API answered 2xx.
    pub async fn push(&self, token: &SecretString, metric: &Metric) -> Result<()> {
        let body = serde_json::to_vec(metric)
            .map_err(|e| Error::Config(format!("cannot encode a metric: {e}")))?;
        let answer = self
            .client
            .post(self.metrics.clone())
            .bearer_auth(token.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = answer.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let text = answer.text().await.map_err(|e| self.transport_error(e))?;
        Err(Error::Rejected {
            status,
            message: message_of(&text),
        })
    }

    fn transport_error(&self, e: reqwest::Error) -> Error {
        if e.is_timeout() {
            Error::Timeout(self.timeout)
        } else {
            Error::Connect(e.without_url())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_url_appends_to_the_base_path() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            metrics_url(&u("https://api.example.org"), "i1")
                .unwrap()
                .as_str(),
            "https://api.example.org/accounting-system/installations/i1/metrics"
        );
        assert_eq!(
            metrics_url(&u("https://api.example.org/base/"), "a/b")
                .unwrap()
                .as_str(),
            "https://api.example.org/base/accounting-system/installations/a%2Fb/metrics"
        );
        assert!(matches!(
            metrics_url(&u("https://api.example.org"), " "),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn error_messages_come_from_the_json_body() {
        assert_eq!(
            message_of(r#"{"code":422,"message":"bad period"}"#),
            "bad period"
        );
        assert_eq!(message_of("  <html>oops</html> "), "<html>oops</html>");
        assert_eq!(message_of(&"x".repeat(1000)).len(), MAX_MESSAGE);
    }
}
