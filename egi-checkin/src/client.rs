//! [`CheckinClient`]: one registered client at one provider, and the single requests it makes
//! (refresh, client credentials, userinfo, token exchange, introspection, revocation).
//! The login flows are in [`crate::login`], the token manager in [`crate::manager`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::claims::UserInfo;
use crate::error::{Endpoint, Error, Result};
use crate::grants::{self, ExchangeRequest, TokenType};
use crate::http::{ClientAuth, Form, HttpOptions, Transport, check_status, json_answer};
use crate::id_token::{self, Expectations, IdTokenInfo, Jwks};
use crate::provider::{
    CheckinProviderMetadata, Endpoints, discovery_url, parse_discovery, parse_issuer,
};
use crate::token::{TokenSet, parse_token_response, refresh_error};

/// How a confidential client authenticates (public clients have no secret).
///
/// Unless set with [`ClientBuilder::auth_method`], it is chosen from the provider's
/// `token_endpoint_auth_methods_supported` ([`AuthMethod::choose`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AuthMethod {
    /// HTTP Basic (`client_secret_basic`), Check-in's default.
    ///
    /// RFC 6749 section 2.3.1 has the id and secret form-urlencoded before Base64, and some
    /// providers do not decode them: credentials that the encoding changes (a secret with
    /// `+`, `/`, `=`, ...) are sent encoded, and if the provider answers `invalid_client`,
    /// once more as they are; the way that worked is kept.
    #[default]
    ClientSecretBasic,
    /// In the form body (`client_secret_post`): read the same by every provider.
    ClientSecretPost,
}

impl AuthMethod {
    /// The method for a provider advertising `supported` (its
    /// `token_endpoint_auth_methods_supported`; absent means `client_secret_basic`, per
    /// OpenID Connect Discovery): HTTP Basic if advertised, unless the credentials are
    /// changed by Basic's encoding (`ambiguous_basic`) and `client_secret_post` is
    /// advertised too; `client_secret_post` if only that is; else HTTP Basic.
    pub fn choose<'a>(
        supported: Option<impl IntoIterator<Item = &'a str>>,
        ambiguous_basic: bool,
    ) -> Self {
        let Some(supported) = supported else {
            return Self::ClientSecretBasic;
        };
        let (mut basic, mut post) = (false, false);
        for method in supported {
            basic |= method == "client_secret_basic";
            post |= method == "client_secret_post";
        }
        if post && (!basic || ambiguous_basic) {
            Self::ClientSecretPost
        } else {
            Self::ClientSecretBasic
        }
    }
}

/// Builds a [`CheckinClient`] from the provider's discovery document.
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    client_id: String,
    secret: Option<SecretString>,
    method: Option<AuthMethod>,
    redirect_uri: Option<String>,
    scopes: Vec<String>,
    refresh_scopes: Option<Vec<String>>,
    leeway: Duration,
    jwks_min_refetch: Duration,
    http: HttpOptions,
}

impl ClientBuilder {
    /// The client secret (a confidential client).
    pub fn secret(mut self, secret: SecretString) -> Self {
        self.secret = Some(secret);
        self
    }

    /// How the secret is sent (default: chosen from discovery, see [`AuthMethod::choose`]).
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// The redirect URI registered for the authorization code flow.
    pub fn redirect_uri(mut self, uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(uri.into());
        self
    }

    /// The scopes asked for at login (default `openid profile email offline_access
    /// eduperson_entitlement voperson_id`). Refreshes do not send them: see
    /// [`Self::refresh_scopes`].
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Narrows the scope of every refresh to `scopes` (which must have been granted). By
    /// default a refresh sends no `scope`, so the grant's scope stays (RFC 6749 section 6):
    /// asking for more than was granted is `invalid_scope` at strict providers.
    pub fn refresh_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.refresh_scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Clock-skew leeway for ID-token expiry (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Least time between two fetches of the key set caused by unknown key ids (default
    /// 10 s), so that forged tokens cannot make the client hammer the provider.
    pub fn jwks_min_refetch(mut self, interval: Duration) -> Self {
        self.jwks_min_refetch = interval;
        self
    }

    /// Transport settings (timeouts, extra root certificates).
    pub fn http(mut self, options: HttpOptions) -> Self {
        self.http = options;
        self
    }

    /// Reads `<issuer>/.well-known/openid-configuration` and the key set.
    pub async fn discover(self, issuer: &str) -> Result<CheckinClient> {
        let issuer = parse_issuer(issuer)?;
        let transport = Transport::new(&self.http)?;
        let answer = transport
            .get(Endpoint::Discovery, &discovery_url(&issuer), None)
            .await?;
        check_status(Endpoint::Discovery, &answer)?;
        let (metadata, endpoints) = parse_discovery(&issuer, &answer.body)?;
        let jwks = Jwks::fetch(&transport, endpoints.jwks.clone(), self.jwks_min_refetch).await?;
        let redirect_uri = self
            .redirect_uri
            .map(|u| Url::parse(&u).map_err(|e| Error::Config(format!("redirect URI {u:?}: {e}"))))
            .transpose()?;
        let method = self.method.unwrap_or_else(|| {
            let ambiguous = self
                .secret
                .as_ref()
                .is_some_and(|s| !ClientAuth::basic_is_unambiguous(&self.client_id, s));
            let supported = metadata
                .token_endpoint_auth_methods_supported()
                .map(|methods| methods.iter().map(|m| m.as_ref()));
            AuthMethod::choose(supported, ambiguous)
        });
        let auth = match (self.secret, method) {
            (None, _) => ClientAuth::None {
                client_id: self.client_id.clone(),
            },
            (Some(secret), AuthMethod::ClientSecretBasic) => ClientAuth::Basic {
                client_id: self.client_id.clone(),
                secret,
                raw: Arc::default(),
            },
            (Some(secret), AuthMethod::ClientSecretPost) => ClientAuth::Post {
                client_id: self.client_id.clone(),
                secret,
            },
        };
        Ok(CheckinClient {
            inner: Arc::new(Inner {
                expect: Expectations {
                    issuer,
                    client_id: self.client_id,
                    leeway: self.leeway,
                },
                metadata,
                endpoints,
                jwks,
                transport,
                auth,
                redirect_uri,
                scopes: self.scopes,
                refresh_scopes: self.refresh_scopes.unwrap_or_default(),
            }),
        })
    }
}

/// A failed grant: the error, whether the provider had accepted the grant (a 2xx answer),
/// and the tokens of that answer when only a later check (the ID token) failed.
pub(crate) struct GrantFailure {
    pub(crate) error: Error,
    pub(crate) accepted: bool,
    pub(crate) tokens: Option<TokenSet>,
}

/// A failed refresh: the error, whether the provider had accepted the refresh (then the old
/// refresh token may be used up and must not be sent again at once), and the previous tokens
/// with the new refresh token if the provider rotated it.
#[derive(Debug)]
pub(crate) struct RefreshFailure {
    pub(crate) error: Error,
    pub(crate) accepted: bool,
    pub(crate) rotated: Option<TokenSet>,
}

/// A client of one Check-in instance (or any OpenID provider); cheap to clone.
#[derive(Debug, Clone)]
pub struct CheckinClient {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) expect: Expectations,
    pub(crate) metadata: CheckinProviderMetadata,
    pub(crate) endpoints: Endpoints,
    pub(crate) jwks: Jwks,
    pub(crate) transport: Transport,
    pub(crate) auth: ClientAuth,
    pub(crate) redirect_uri: Option<Url>,
    pub(crate) scopes: Vec<String>,
    /// Sent at each refresh if not empty.
    pub(crate) refresh_scopes: Vec<String>,
}

/// An introspection answer (RFC 7662). Check-in adds the user's EGI claims; other providers
/// may not: [`Introspection::missing_claims`] says what is lacking.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Introspection {
    /// Whether the token is active. `false` means invalid, expired or revoked, or, at some
    /// providers (oidc-provider, django-oidc-provider), that the introspecting client is
    /// not in the token's audience; an inactive answer carries no other claim.
    pub active: bool,
    /// Its scope.
    #[serde(default)]
    pub scope: Option<String>,
    /// The client it was issued to.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Expiry, seconds since the epoch.
    #[serde(default)]
    pub exp: Option<i64>,
    /// Its type, such as `Bearer`.
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

impl Introspection {
    /// The user's claims (entitlements included), if the token is active and has a `sub`.
    /// Claims the answer lacks are empty here: check [`Self::missing_claims`] before
    /// reading "no entitlements" as "in no VO".
    pub fn user_info(&self) -> Option<UserInfo> {
        if !self.active {
            return None;
        }
        serde_json::from_value(serde_json::Value::Object(self.rest.clone())).ok()
    }

    /// The user claims that Check-in puts in introspection answers and this one lacks:
    /// `sub`, `voperson_id`, `preferred_username`, and `eduperson_entitlement` (meaning
    /// neither entitlement claim, `eduperson_entitlement` nor `entitlements`). All of them
    /// for an inactive answer; none for a complete Check-in answer.
    pub fn missing_claims(&self) -> Vec<&'static str> {
        let has = |name: &str| self.active && self.rest.get(name).is_some_and(|v| !v.is_null());
        let mut missing = Vec::new();
        for claim in ["sub", "voperson_id", "preferred_username"] {
            if !has(claim) {
                missing.push(claim);
            }
        }
        if !has("eduperson_entitlement") && !has("entitlements") {
            missing.push("eduperson_entitlement");
        }
        missing
    }
}

/// What a token exchange returned.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Exchanged {
    /// The tokens (for a refresh token exchange: a new access token and the refresh token).
    pub tokens: TokenSet,
    /// RFC 8693 `issued_token_type`.
    pub issued_token_type: Option<String>,
}

impl CheckinClient {
    /// Starts building a client with this client id.
    pub fn builder(client_id: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            client_id: client_id.into(),
            secret: None,
            method: None,
            redirect_uri: None,
            scopes: [
                "openid",
                "profile",
                "email",
                "offline_access",
                "eduperson_entitlement",
                "voperson_id",
            ]
            .map(String::from)
            .to_vec(),
            refresh_scopes: None,
            leeway: Duration::from_secs(30),
            jwks_min_refetch: Duration::from_secs(10),
            http: HttpOptions::default(),
        }
    }

    /// The endpoints read from discovery.
    pub fn endpoints(&self) -> &Endpoints {
        &self.inner.endpoints
    }

    /// The whole discovery document.
    pub fn metadata(&self) -> &CheckinProviderMetadata {
        &self.inner.metadata
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        self.inner.auth.client_id()
    }

    /// The scopes asked for at login.
    pub fn scopes(&self) -> &[String] {
        &self.inner.scopes
    }

    /// How the client authenticates (`None` for a public client).
    pub fn auth_method(&self) -> Option<AuthMethod> {
        match self.inner.auth {
            ClientAuth::None { .. } => None,
            ClientAuth::Basic { .. } => Some(AuthMethod::ClientSecretBasic),
            ClientAuth::Post { .. } => Some(AuthMethod::ClientSecretPost),
        }
    }

    pub(crate) async fn post(&self, endpoint: Endpoint, form: Form) -> Result<crate::http::Answer> {
        let url = self.inner.endpoints.require(endpoint)?;
        self.inner
            .transport
            .post_form(endpoint, url, form, Some(&self.inner.auth))
            .await
    }

    /// Validates an ID token (signature, algorithm, issuer, audience, expiry with leeway),
    /// with a nonce for the code flow, and an unchanged subject when `expected_subject`.
    pub async fn verify_id_token(
        &self,
        raw: &SecretString,
        nonce: Option<&openidconnect::Nonce>,
        expected_subject: Option<&str>,
    ) -> Result<IdTokenInfo> {
        let i = &self.inner;
        id_token::verify(
            &i.transport,
            &i.jwks,
            &i.expect,
            raw,
            nonce,
            expected_subject,
        )
        .await
    }

    /// Posts a grant and turns the answer into a [`TokenSet`]; an ID token in it is
    /// validated (subject unchanged from `previous`) before anything is returned.
    pub(crate) async fn token_grant(
        &self,
        form: Form,
        previous: Option<&TokenSet>,
        nonce: Option<&openidconnect::Nonce>,
    ) -> Result<(TokenSet, Option<IdTokenInfo>)> {
        self.token_grant_detailed(form, previous, nonce)
            .await
            .map_err(|f| f.error)
    }

    /// [`Self::token_grant`], telling on failure whether the provider accepted the grant
    /// (a 2xx answer) and the tokens it sent, if they could be read.
    async fn token_grant_detailed(
        &self,
        form: Form,
        previous: Option<&TokenSet>,
        nonce: Option<&openidconnect::Nonce>,
    ) -> std::result::Result<(TokenSet, Option<IdTokenInfo>), GrantFailure> {
        let before = |error| GrantFailure {
            error,
            accepted: false,
            tokens: None,
        };
        // Expiry counts from when the request left: the answer was made after that.
        let sent_at = SystemTime::now();
        let answer = self.post(Endpoint::Token, form).await.map_err(before)?;
        let accepted = (200..300).contains(&answer.status);
        let response = parse_token_response(&answer, false).map_err(|error| GrantFailure {
            error,
            accepted,
            tokens: None,
        })?;
        let fresh_id_token = response.id_token.clone();
        let mut tokens = TokenSet::from_response(response, sent_at, previous);
        let info = match fresh_id_token {
            Some(raw) => {
                let expected = previous.and_then(TokenSet::subject);
                match self.verify_id_token(&raw, nonce, expected).await {
                    Ok(info) => {
                        tokens.set_subject(Some(info.subject.clone()));
                        Some(info)
                    }
                    Err(error) => {
                        return Err(GrantFailure {
                            error,
                            accepted: true,
                            tokens: Some(tokens),
                        });
                    }
                }
            }
            None => None,
        };
        Ok((tokens, info))
    }

    /// Refreshes `tokens` once (no retry), sending no `scope` (the grant's scope stays)
    /// unless narrowed with [`ClientBuilder::refresh_scopes`]. `invalid_grant` becomes
    /// [`Error::LoginRequired`]; the old refresh token is kept if none comes back; a new ID
    /// token must be valid and for the same subject.
    ///
    /// If the provider rotated the refresh token but the new ID token fails its checks, the
    /// new refresh token is lost to callers of this method (the old one is used up): the
    /// [`crate::TokenManager`] keeps it instead. Likewise if this future is dropped (or
    /// times out, [`HttpOptions::token_timeout`]) after the provider rotated the refresh
    /// token: the manager runs each refresh as its own task, which its callers cannot cut
    /// off.
    pub async fn refresh(&self, tokens: &TokenSet) -> Result<TokenSet> {
        self.refresh_detailed(tokens).await.map_err(|f| f.error)
    }

    /// [`Self::refresh`], keeping on failure whether the provider accepted the refresh and
    /// any new refresh token it sent (in `rotated`: `tokens` with that refresh token).
    pub(crate) async fn refresh_detailed(
        &self,
        tokens: &TokenSet,
    ) -> std::result::Result<TokenSet, RefreshFailure> {
        let refresh_token = tokens.refresh_token().ok_or_else(|| RefreshFailure {
            error: Error::LoginRequired {
                reason: "no refresh token".into(),
            },
            accepted: false,
            rotated: None,
        })?;
        let form = grants::refresh(refresh_token, &self.inner.refresh_scopes);
        match self.token_grant_detailed(form, Some(tokens), None).await {
            Ok((t, _)) => Ok(t),
            Err(f) => {
                // Keep a new refresh token (the provider may have used up the old one), but
                // not the access and ID tokens that came with a failed check.
                let rotated = f
                    .tokens
                    .as_ref()
                    .and_then(TokenSet::refresh_token)
                    .filter(|new| new.expose_secret() != refresh_token.expose_secret())
                    .map(|new| tokens.clone().with_refresh_token(new.clone()));
                Err(RefreshFailure {
                    error: refresh_error(f.error),
                    accepted: f.accepted,
                    rotated,
                })
            }
        }
    }

    /// Client credentials grant (a service account; confidential clients only).
    pub async fn client_credentials(&self, scopes: &[String]) -> Result<TokenSet> {
        if !self.inner.auth.is_confidential() {
            return Err(Error::Config(
                "client credentials need a client secret".into(),
            ));
        }
        Ok(self
            .token_grant(grants::client_credentials(scopes), None, None)
            .await?
            .0)
    }

    /// The userinfo of the access token's user; with `expected_subject` (the ID token's
    /// `sub`), a userinfo for someone else is rejected.
    pub async fn user_info(
        &self,
        access_token: &SecretString,
        expected_subject: Option<&str>,
    ) -> Result<UserInfo> {
        let url = self.inner.endpoints.require(Endpoint::UserInfo)?;
        let answer = self
            .inner
            .transport
            .get(Endpoint::UserInfo, url, Some(access_token))
            .await?;
        let info: UserInfo = json_answer(Endpoint::UserInfo, &answer)?;
        if expected_subject.is_some_and(|s| s != info.sub) {
            return Err(Error::UserInfoSubject);
        }
        Ok(info)
    }

    /// Token exchange (RFC 8693) of an access token: for a refresh token of this client,
    /// or an access token for another audience.
    pub async fn exchange_token(
        &self,
        access_token: &SecretString,
        request: &ExchangeRequest,
    ) -> Result<Exchanged> {
        let sent_at = SystemTime::now();
        let answer = self
            .post(
                Endpoint::Token,
                grants::token_exchange(access_token, request),
            )
            .await?;
        let response = parse_token_response(&answer, true)?;
        let issued_token_type = response.issued_token_type.clone();
        Ok(Exchanged {
            tokens: TokenSet::from_response(response, sent_at, None),
            issued_token_type,
        })
    }

    /// Introspection (RFC 7662; confidential clients only).
    pub async fn introspect(
        &self,
        token: &SecretString,
        hint: Option<TokenType>,
    ) -> Result<Introspection> {
        if !self.inner.auth.is_confidential() {
            return Err(Error::Config("introspection needs a client secret".into()));
        }
        let answer = self
            .post(
                Endpoint::Introspection,
                grants::token_with_hint(token, hint),
            )
            .await?;
        json_answer(Endpoint::Introspection, &answer)
    }

    /// Revocation (RFC 7009). Revoking a refresh token ends the grant.
    pub async fn revoke(&self, token: &SecretString, hint: Option<TokenType>) -> Result<()> {
        let answer = self
            .post(Endpoint::Revocation, grants::token_with_hint(token, hint))
            .await?;
        check_status(Endpoint::Revocation, &answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_method_follows_discovery() {
        let choose = |supported: Option<&[&str]>, ambiguous| {
            AuthMethod::choose(supported.map(|s| s.iter().copied()), ambiguous)
        };
        let both: &[&str] = &["client_secret_basic", "client_secret_post", "none"];
        // Absent: client_secret_basic, the OpenID Connect Discovery default.
        assert_eq!(choose(None, true), AuthMethod::ClientSecretBasic);
        assert_eq!(choose(Some(both), false), AuthMethod::ClientSecretBasic);
        // A secret that Basic's encoding changes goes in the body if the provider allows.
        assert_eq!(choose(Some(both), true), AuthMethod::ClientSecretPost);
        assert_eq!(
            choose(Some(&["client_secret_post", "none"]), false),
            AuthMethod::ClientSecretPost
        );
        assert_eq!(
            choose(Some(&["client_secret_basic"]), true),
            AuthMethod::ClientSecretBasic
        );
        assert_eq!(
            choose(Some(&["private_key_jwt"]), false),
            AuthMethod::ClientSecretBasic
        );
    }

    #[test]
    fn introspection_says_what_it_lacks() {
        let parse =
            |json: &str| serde_json::from_str::<Introspection>(json).expect("introspection");
        let bare = parse(r#"{"active": true, "sub": "abc", "exp": 1}"#);
        assert_eq!(
            bare.missing_claims(),
            ["voperson_id", "preferred_username", "eduperson_entitlement"]
        );
        assert!(
            bare.user_info()
                .expect("sub")
                .eduperson_entitlement
                .is_empty()
        );
        let egi = parse(
            r#"{"active": true, "sub": "abc", "voperson_id": "abc", "preferred_username": "a",
                "entitlements": ["urn:mace:egi.eu:group:vo.x.eu#aai.egi.eu"]}"#,
        );
        assert!(egi.missing_claims().is_empty());
        let inactive = parse(r#"{"active": false}"#);
        assert_eq!(inactive.missing_claims().len(), 4);
        assert!(inactive.user_info().is_none());
    }
}
