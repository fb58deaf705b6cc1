//! [`ServiceAccount`]: the client credentials grant at a token endpoint known by its URL,
//! without discovery: what a batch job (such as EOSC accounting) needs to call an API as
//! itself, when its configuration names only the token URL.

use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;
use url::Url;

use crate::error::{Endpoint, Error, Result};
use crate::grants;
use crate::http::{ClientAuth, HttpOptions, Transport};
use crate::token::{TokenSet, parse_token_response};

/// A confidential client asking a token endpoint for tokens of its own (RFC 6749
/// section 4.4), authenticated with HTTP Basic (`client_secret_basic`; credentials that
/// Basic's form-urlencoding changes are sent the other way once if the provider answers
/// `invalid_client`, as [`crate::CheckinClient`] does). Redirects are not followed. Cheap to
/// clone.
///
/// ```no_run
/// use egi_checkin::{ExposeSecret, HttpOptions, SecretString, ServiceAccount};
///
/// # async fn run() -> egi_checkin::Result<()> {
/// let account = ServiceAccount::new(
///     "https://proxy.example.org/OIDC/token",
///     "my-service",
///     SecretString::from("my-secret"),
///     &HttpOptions::default(),
/// )?
/// .scopes(["openid", "entitlements"]);
/// let tokens = account.token().await?;
/// let _bearer = tokens.access_token().expose_secret();
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ServiceAccount {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    token_url: Url,
    auth: ClientAuth,
    transport: Transport,
    scopes: Vec<String>,
}

impl ServiceAccount {
    /// A service account of `client_id` at the token endpoint `token_url` (http or https).
    pub fn new(
        token_url: &str,
        client_id: impl Into<String>,
        secret: SecretString,
        options: &HttpOptions,
    ) -> Result<Self> {
        let url = Url::parse(token_url)
            .map_err(|e| Error::Config(format!("token URL {token_url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(Error::Config(format!(
                "token URL {token_url:?}: not an http(s) URL"
            )));
        }
        let client_id = client_id.into();
        if client_id.is_empty() {
            return Err(Error::Config("empty client id".into()));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                token_url: url,
                auth: ClientAuth::Basic {
                    client_id,
                    secret,
                    raw: Arc::default(),
                },
                transport: Transport::new(options)?,
                scopes: Vec::new(),
            }),
        })
    }

    /// The scopes asked for (default: none, the provider's default for the client).
    #[must_use]
    pub fn scopes<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let inner = Arc::unwrap_or_clone(self.inner);
        Self {
            inner: Arc::new(Inner {
                scopes: scopes.into_iter().map(Into::into).collect(),
                ..inner
            }),
        }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> &Url {
        &self.inner.token_url
    }

    /// One client credentials grant (no retry): a fresh access token. An error answer is
    /// [`Error::OAuth`] (`invalid_client`: wrong id or secret); a non-Bearer or malformed
    /// answer is [`Error::Malformed`].
    pub async fn token(&self) -> Result<TokenSet> {
        let i = &self.inner;
        let sent_at = SystemTime::now();
        let answer = i
            .transport
            .post_form(
                Endpoint::Token,
                &i.token_url,
                grants::client_credentials(&i.scopes),
                Some(&i.auth),
            )
            .await?;
        let response = parse_token_response(&answer, false)?;
        Ok(TokenSet::from_response(response, sent_at, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_token_urls_and_a_client_id() {
        let secret = || SecretString::from("s");
        let o = HttpOptions::default();
        assert!(ServiceAccount::new("https://p.example/token", "id", secret(), &o).is_ok());
        for bad in ["ftp://p.example/token", "not a url", "file:///etc/passwd"] {
            let e = ServiceAccount::new(bad, "id", secret(), &o).unwrap_err();
            assert!(matches!(e, Error::Config(_)), "{bad}: {e}");
        }
        let e = ServiceAccount::new("https://p.example/token", "", secret(), &o).unwrap_err();
        assert!(matches!(e, Error::Config(_)));
    }

    #[test]
    fn the_secret_never_shows_in_debug() {
        let a = ServiceAccount::new(
            "https://p.example/token",
            "id",
            SecretString::from("hunter2"),
            &HttpOptions::default(),
        )
        .unwrap()
        .scopes(["openid"]);
        let text = format!("{a:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("openid"), "{text}");
    }
}
