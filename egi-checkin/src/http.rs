//! The HTTP transport: one `reqwest` client that never follows redirects, and the pure
//! mapping of raw answers to values or typed errors.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{Endpoint, Error, Result};

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!(env!("CARGO_PKG_NAME"), "/", env!("CARGO_PKG_VERSION"));

/// Largest answer body read (a token response is a few kilobytes).
const MAX_BODY: usize = 1 << 20;

/// Transport settings. TLS certificates are always verified (against the Web PKI roots,
/// plus any extra root given here).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HttpOptions {
    /// Time allowed for a whole request, answer included (default 30 s), except at the
    /// token endpoint.
    pub timeout: Duration,
    /// Time allowed for a whole request to the token endpoint (grants, refreshes, token
    /// exchange), answer included (default 120 s). Keep it well above the provider's
    /// slowest answer: a request given up after the provider processed it may have used up
    /// a rotating refresh token (or an authorization or device code), and then the session
    /// is lost. [`crate::TokenManager`] never gives up a refresh because its callers did;
    /// only this timeout ends it.
    pub token_timeout: Duration,
    /// Time allowed to connect (default 10 s).
    pub connect_timeout: Duration,
    /// Extra trusted root certificates (a private CA in front of a test provider); with the
    /// `rustls-tls` feature, since without a TLS backend there is nothing to trust them with.
    #[cfg(feature = "rustls-tls")]
    pub root_certificates: Vec<reqwest::Certificate>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            token_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            #[cfg(feature = "rustls-tls")]
            root_certificates: Vec::new(),
        }
    }
}

/// An answer as it came off the wire.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl fmt::Debug for Answer {
    // The body may hold tokens.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.body.zeroize();
    }
}

/// A form body whose values are wiped when dropped and never printed.
#[derive(Default, Clone, PartialEq, Eq)]
pub(crate) struct Form(pub(crate) Vec<(&'static str, String)>);

impl Form {
    pub(crate) fn push(&mut self, key: &'static str, value: impl Into<String>) {
        self.0.push((key, value.into()));
    }

    pub(crate) fn push_secret(&mut self, key: &'static str, value: &SecretString) {
        self.0.push((key, value.expose_secret().to_owned()));
    }

    /// The value of `key`, for tests.
    #[cfg(test)]
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    fn encode(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.0 {
            out.append_pair(k, v);
        }
        out.finish()
    }
}

impl fmt::Debug for Form {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Drop for Form {
    fn drop(&mut self) {
        for (_, v) in &mut self.0 {
            v.zeroize();
        }
    }
}

/// How the client authenticates at the token, device, introspection and revocation
/// endpoints.
#[derive(Clone)]
pub(crate) enum ClientAuth {
    /// A public client: `client_id` in the form.
    None { client_id: String },
    /// HTTP Basic (`client_secret_basic`, Check-in's default).
    Basic {
        client_id: String,
        secret: SecretString,
        /// The provider takes the credentials as sent, not form-urldecoded (learnt from an
        /// `invalid_client` answer; shared by clones).
        raw: Arc<AtomicBool>,
    },
    /// `client_id` and `client_secret` in the form (`client_secret_post`).
    Post {
        client_id: String,
        secret: SecretString,
    },
}

impl fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, id) = match self {
            ClientAuth::None { client_id } => ("none", client_id),
            ClientAuth::Basic { client_id, .. } => ("client_secret_basic", client_id),
            ClientAuth::Post { client_id, .. } => ("client_secret_post", client_id),
        };
        write!(f, "ClientAuth({kind}, {id})")
    }
}

impl ClientAuth {
    pub(crate) fn client_id(&self) -> &str {
        match self {
            ClientAuth::None { client_id }
            | ClientAuth::Basic { client_id, .. }
            | ClientAuth::Post { client_id, .. } => client_id,
        }
    }

    pub(crate) fn is_confidential(&self) -> bool {
        !matches!(self, ClientAuth::None { .. })
    }

    /// HTTP Basic with credentials that form-urlencoding leaves unchanged, so that every
    /// provider reads them alike (whether it decodes them, as RFC 6749 section 2.3.1 says,
    /// or not).
    pub(crate) fn basic_is_unambiguous(client_id: &str, secret: &SecretString) -> bool {
        encodes_to_itself(client_id) && encodes_to_itself(secret.expose_secret())
    }

    /// Whether Basic credentials are sent as they are (not form-urlencoded).
    fn basic_raw(&self) -> Option<&AtomicBool> {
        match self {
            ClientAuth::Basic {
                client_id,
                secret,
                raw,
            } if !Self::basic_is_unambiguous(client_id, secret) => Some(raw),
            _ => None,
        }
    }

    /// Adds the form fields of this method to `form`, and returns the Basic credentials
    /// (RFC 6749 section 2.3.1: each part form-urlencoded first, unless the provider was
    /// found to take them as they are) if any.
    pub(crate) fn apply(&self, form: &mut Form) -> Option<(String, SecretString)> {
        match self {
            ClientAuth::None { client_id } => {
                form.push("client_id", client_id.as_str());
                None
            }
            ClientAuth::Post { client_id, secret } => {
                form.push("client_id", client_id.as_str());
                form.push_secret("client_secret", secret);
                None
            }
            ClientAuth::Basic {
                client_id,
                secret,
                raw,
            } => {
                if raw.load(Ordering::Relaxed) {
                    return Some((client_id.clone(), secret.clone()));
                }
                let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
                Some((
                    enc(client_id),
                    SecretString::from(enc(secret.expose_secret())),
                ))
            }
        }
    }
}

fn encodes_to_itself(s: &str) -> bool {
    url::form_urlencoded::byte_serialize(s.as_bytes()).eq(std::iter::once(s))
}

/// The client; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    timeout: Duration,
    token_timeout: Duration,
}

impl Transport {
    pub(crate) fn new(options: &HttpOptions) -> Result<Self> {
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout);
        #[cfg(feature = "rustls-tls")]
        let builder = options
            .root_certificates
            .iter()
            .fold(builder, |b, cert| b.add_root_certificate(cert.clone()));
        let client = builder
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            timeout: options.timeout,
            token_timeout: options.token_timeout,
        })
    }

    /// POSTs a form, authenticating as `auth` when given.
    ///
    /// HTTP Basic credentials that form-urlencoding changes are read differently by
    /// providers that decode them (RFC 6749 section 2.3.1) and providers that do not: if the
    /// provider answers `invalid_client` (so it processed nothing), the request is sent once
    /// more with the other encoding, and the one that worked is kept for later requests.
    pub(crate) async fn post_form(
        &self,
        endpoint: Endpoint,
        url: &Url,
        form: Form,
        auth: Option<&ClientAuth>,
    ) -> Result<Answer> {
        let Some(raw) = auth.and_then(ClientAuth::basic_raw) else {
            return self.post_form_once(endpoint, url, form, auth).await;
        };
        let was_raw = raw.load(Ordering::Relaxed);
        let answer = self
            .post_form_once(endpoint, url, form.clone(), auth)
            .await?;
        if !is_invalid_client(&answer) {
            return Ok(answer);
        }
        raw.store(!was_raw, Ordering::Relaxed);
        let again = self.post_form_once(endpoint, url, form, auth).await?;
        if is_invalid_client(&again) {
            // Neither encoding is accepted: the secret is wrong. Back to the first.
            raw.store(was_raw, Ordering::Relaxed);
        } else {
            tracing::info!(%endpoint, raw = !was_raw, "the provider reads HTTP Basic credentials the other way: switched");
        }
        Ok(again)
    }

    async fn post_form_once(
        &self,
        endpoint: Endpoint,
        url: &Url,
        mut form: Form,
        auth: Option<&ClientAuth>,
    ) -> Result<Answer> {
        let basic = auth.and_then(|a| a.apply(&mut form));
        let mut request = self
            .client
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(form.encode());
        if let Some((user, password)) = basic {
            request = request.basic_auth(user, Some(password.expose_secret()));
        }
        if endpoint == Endpoint::Token {
            request = request.timeout(self.token_timeout);
        }
        self.send(endpoint, request).await
    }

    /// GETs a URL, with a bearer token when given.
    pub(crate) async fn get(
        &self,
        endpoint: Endpoint,
        url: &Url,
        bearer: Option<&SecretString>,
    ) -> Result<Answer> {
        let mut request = self
            .client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = bearer {
            request = request.bearer_auth(token.expose_secret());
        }
        self.send(endpoint, request).await
    }

    async fn send(&self, endpoint: Endpoint, request: reqwest::RequestBuilder) -> Result<Answer> {
        let fail = |e: reqwest::Error| self.map_error(endpoint, e);
        let mut response = request.send().await.map_err(fail)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fail)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Error::malformed(endpoint, "answer larger than 1 MiB"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer { status, body })
    }

    fn map_error(&self, endpoint: Endpoint, e: reqwest::Error) -> Error {
        // A connect timeout is a connect error: the request never left.
        if e.is_timeout() && !e.is_connect() {
            Error::Timeout {
                endpoint,
                timeout: if endpoint == Endpoint::Token {
                    self.token_timeout
                } else {
                    self.timeout
                },
            }
        } else {
            Error::Transport {
                endpoint,
                source: std::sync::Arc::new(e.without_url()),
            }
        }
    }
}

/// An `invalid_client` answer: the client failed to authenticate, nothing was processed.
fn is_invalid_client(answer: &Answer) -> bool {
    answer.status == 401
        || (answer.status == 400
            && serde_json::from_slice::<OAuthError>(&answer.body)
                .is_ok_and(|e| e.error == "invalid_client"))
}

/// An OAuth error body (RFC 6749 section 5.2).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct OAuthError {
    pub(crate) error: String,
    pub(crate) error_description: Option<String>,
}

/// Maps an answer to a JSON value of type `T`: 2xx with a JSON body is the value; 3xx is
/// [`Error::Redirect`]; an error status with an OAuth error body is [`Error::OAuth`];
/// anything else is [`Error::Http`] or [`Error::Malformed`].
pub(crate) fn json_answer<T: DeserializeOwned>(endpoint: Endpoint, answer: &Answer) -> Result<T> {
    check_status(endpoint, answer)?;
    serde_json::from_slice(&answer.body)
        .map_err(|e| Error::malformed(endpoint, describe_json_error(&e)))
}

/// The error of a non-2xx answer, or `Ok` for 2xx.
pub(crate) fn check_status(endpoint: Endpoint, answer: &Answer) -> Result<()> {
    match answer.status {
        200..=299 => Ok(()),
        status @ 300..=399 => Err(Error::Redirect { endpoint, status }),
        status => match serde_json::from_slice::<OAuthError>(&answer.body) {
            Ok(e) if !e.error.is_empty() => Err(Error::OAuth {
                endpoint,
                status,
                code: e.error,
                description: e.error_description,
            }),
            _ => Err(Error::Http { endpoint, status }),
        },
    }
}

/// A serde_json error described without quoting the input (which may hold tokens).
pub(crate) fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => {
            format!("not JSON (line {}, column {})", e.line(), e.column())
        }
        // Data errors may quote the offending value: keep only those naming a field.
        Category::Data => {
            let text = e.to_string();
            let text = text.find(" at line ").map_or(text.as_str(), |i| &text[..i]);
            if text.starts_with("missing field") || text.starts_with("duplicate field") {
                text.to_owned()
            } else {
                format!(
                    "a field has an unexpected type or value (line {}, column {})",
                    e.line(),
                    e.column()
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[derive(Debug, serde::Deserialize)]
    struct T {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        assert!(json_answer::<T>(Endpoint::Token, &answer(200, r#"{"a":1}"#)).is_ok());
        assert!(matches!(
            json_answer::<T>(Endpoint::Token, &answer(302, "")),
            Err(Error::Redirect { status: 302, .. })
        ));
        assert!(matches!(
            json_answer::<T>(Endpoint::Token, &answer(400, r#"{"error":"invalid_grant","error_description":"gone"}"#)),
            Err(Error::OAuth { ref code, status: 400, .. }) if code == "invalid_grant"
        ));
        assert!(matches!(
            json_answer::<T>(Endpoint::Token, &answer(502, "<html>bad gateway</html>")),
            Err(Error::Http { status: 502, .. })
        ));
        let malformed = json_answer::<T>(Endpoint::Token, &answer(200, "{\"a\": \"secret-value\""));
        let Err(e @ Error::Malformed { .. }) = malformed else {
            panic!("expected malformed, got {malformed:?}");
        };
        assert!(!e.to_string().contains("secret-value"));
        let wrong_type = json_answer::<T>(Endpoint::Token, &answer(200, r#"{"a":"secret-value"}"#));
        let Err(e @ Error::Malformed { .. }) = wrong_type else {
            panic!("expected malformed, got {wrong_type:?}");
        };
        assert!(!e.to_string().contains("secret-value"), "{e}");
    }

    #[test]
    fn client_auth_methods() {
        let secret = SecretString::from("s3cr=t&x");
        let mut form = Form::default();
        let auth = ClientAuth::Basic {
            client_id: "my client".into(),
            secret: secret.clone(),
            raw: Arc::default(),
        };
        let basic = auth.apply(&mut form).expect("basic credentials");
        assert_eq!(basic.0, "my+client");
        assert_eq!(basic.1.expose_secret(), "s3cr%3Dt%26x");
        assert!(form.0.is_empty());
        // A provider that does not decode them: sent as they are.
        auth.basic_raw()
            .expect("ambiguous")
            .store(true, Ordering::Relaxed);
        let basic = auth.apply(&mut form).expect("basic credentials");
        assert_eq!(basic.0, "my client");
        assert_eq!(basic.1.expose_secret(), "s3cr=t&x");
        assert!(ClientAuth::basic_is_unambiguous(
            "notebooks",
            &"Abc-123_x.y*z".into()
        ));
        for secret in ["a+b", "a/b", "a==", "a b", "a%41"] {
            assert!(
                !ClientAuth::basic_is_unambiguous("notebooks", &secret.into()),
                "{secret}"
            );
        }

        let mut form = Form::default();
        assert!(
            ClientAuth::Post {
                client_id: "c".into(),
                secret
            }
            .apply(&mut form)
            .is_none()
        );
        assert_eq!(form.get("client_id"), Some("c"));
        assert_eq!(form.get("client_secret"), Some("s3cr=t&x"));
        assert_eq!(format!("{form:?}"), r#"["client_id", "client_secret"]"#);

        let mut form = Form::default();
        assert!(
            ClientAuth::None {
                client_id: "pub".into()
            }
            .apply(&mut form)
            .is_none()
        );
        assert_eq!(form.encode(), "client_id=pub");
    }
}
