//! The form of every request to the token, device authorization, introspection and
//! revocation endpoints: pure functions, so that the protocol is tested without IO.
//! Client authentication is added by the transport.

use secrecy::SecretString;

use crate::http::Form;

/// RFC 8628 device code grant type.
pub(crate) const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8693 token exchange grant type.
pub(crate) const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// RFC 8693 token type identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenType {
    /// `urn:ietf:params:oauth:token-type:access_token`.
    AccessToken,
    /// `urn:ietf:params:oauth:token-type:refresh_token`.
    RefreshToken,
    /// `urn:ietf:params:oauth:token-type:id_token`.
    IdToken,
}

impl TokenType {
    /// The URN.
    pub fn urn(self) -> &'static str {
        match self {
            TokenType::AccessToken => "urn:ietf:params:oauth:token-type:access_token",
            TokenType::RefreshToken => "urn:ietf:params:oauth:token-type:refresh_token",
            TokenType::IdToken => "urn:ietf:params:oauth:token-type:id_token",
        }
    }

    /// The hint for introspection and revocation (RFC 7009 section 2.1), if one exists.
    pub(crate) fn hint(self) -> Option<&'static str> {
        match self {
            TokenType::AccessToken => Some("access_token"),
            TokenType::RefreshToken => Some("refresh_token"),
            TokenType::IdToken => None,
        }
    }
}

fn push_scope(form: &mut Form, scopes: &[String]) {
    if !scopes.is_empty() {
        form.push("scope", scopes.join(" "));
    }
}

/// Authorization code grant with the PKCE verifier.
pub(crate) fn authorization_code(
    code: &SecretString,
    redirect_uri: &str,
    verifier: &SecretString,
) -> Form {
    let mut form = Form::default();
    form.push("grant_type", "authorization_code");
    form.push_secret("code", code);
    form.push("redirect_uri", redirect_uri);
    form.push_secret("code_verifier", verifier);
    form
}

/// Refresh token grant: no `scope` unless `scopes` narrows it (RFC 6749 section 6: the
/// grant's scope stays; asking for more than was granted is `invalid_scope`).
pub(crate) fn refresh(refresh_token: &SecretString, scopes: &[String]) -> Form {
    let mut form = Form::default();
    form.push("grant_type", "refresh_token");
    form.push_secret("refresh_token", refresh_token);
    push_scope(&mut form, scopes);
    form
}

/// Device authorization request (RFC 8628 section 3.1).
pub(crate) fn device_authorization(scopes: &[String]) -> Form {
    let mut form = Form::default();
    push_scope(&mut form, scopes);
    form
}

/// Device access token request (RFC 8628 section 3.4).
pub(crate) fn device_token(device_code: &SecretString) -> Form {
    let mut form = Form::default();
    form.push("grant_type", DEVICE_CODE_GRANT);
    form.push_secret("device_code", device_code);
    form
}

/// Client credentials grant.
pub(crate) fn client_credentials(scopes: &[String]) -> Form {
    let mut form = Form::default();
    form.push("grant_type", "client_credentials");
    push_scope(&mut form, scopes);
    form
}

/// What to ask for in a token exchange (RFC 8693).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExchangeRequest {
    /// The token type wanted back (Check-in: a refresh token, or an access token for
    /// another audience).
    pub requested_token_type: TokenType,
    /// The client id the new token is for, if another than this client.
    pub audience: Option<String>,
    /// The scope wanted; empty for the subject token's.
    pub scopes: Vec<String>,
}

impl ExchangeRequest {
    /// Asks for a refresh token (with `offline_access` and `openid` scopes) for this client,
    /// as the hub's JWT login does.
    pub fn refresh_token() -> Self {
        Self {
            requested_token_type: TokenType::RefreshToken,
            audience: None,
            scopes: vec!["openid".into(), "offline_access".into()],
        }
    }

    /// Asks for an access token for `audience` (a registered client id).
    pub fn access_token_for(audience: impl Into<String>) -> Self {
        Self {
            requested_token_type: TokenType::AccessToken,
            audience: Some(audience.into()),
            scopes: Vec::new(),
        }
    }

    /// Replaces the scopes asked for.
    #[must_use]
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }
}

/// Token exchange of an access token (Check-in only accepts access tokens as subject).
pub(crate) fn token_exchange(subject: &SecretString, request: &ExchangeRequest) -> Form {
    let mut form = Form::default();
    form.push("grant_type", TOKEN_EXCHANGE_GRANT);
    form.push_secret("subject_token", subject);
    form.push("subject_token_type", TokenType::AccessToken.urn());
    form.push("requested_token_type", request.requested_token_type.urn());
    if let Some(audience) = &request.audience {
        form.push("audience", audience.as_str());
    }
    push_scope(&mut form, &request.scopes);
    form
}

/// Introspection (RFC 7662) or revocation (RFC 7009) of a token.
pub(crate) fn token_with_hint(token: &SecretString, hint: Option<TokenType>) -> Form {
    let mut form = Form::default();
    form.push_secret("token", token);
    if let Some(hint) = hint.and_then(TokenType::hint) {
        form.push("token_type_hint", hint);
    }
    form
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_sends_a_scope_only_to_narrow_it() {
        let form = refresh(&"rt".into(), &[]);
        assert_eq!(form.get("scope"), None);
        let form = refresh(&"rt".into(), &["openid".into(), "profile".into()]);
        assert_eq!(form.get("grant_type"), Some("refresh_token"));
        assert_eq!(form.get("refresh_token"), Some("rt"));
        assert_eq!(form.get("scope"), Some("openid profile"));
        assert!(!format!("{form:?}").contains("rt\""));
    }

    #[test]
    fn code_exchange_carries_the_verifier() {
        let form = authorization_code(&"c".into(), "http://localhost/cb", &"v".into());
        assert_eq!(form.get("grant_type"), Some("authorization_code"));
        assert_eq!(form.get("code_verifier"), Some("v"));
        assert_eq!(form.get("redirect_uri"), Some("http://localhost/cb"));
    }

    #[test]
    fn token_exchange_form() {
        let form = token_exchange(&"at".into(), &ExchangeRequest::refresh_token());
        assert_eq!(form.get("grant_type"), Some(TOKEN_EXCHANGE_GRANT));
        assert_eq!(
            form.get("subject_token_type"),
            Some("urn:ietf:params:oauth:token-type:access_token")
        );
        assert_eq!(
            form.get("requested_token_type"),
            Some("urn:ietf:params:oauth:token-type:refresh_token")
        );
        assert_eq!(form.get("scope"), Some("openid offline_access"));
        assert_eq!(form.get("audience"), None);
        let form = token_exchange(
            &"at".into(),
            &ExchangeRequest::access_token_for("other-client"),
        );
        assert_eq!(form.get("audience"), Some("other-client"));
        assert_eq!(form.get("scope"), None);
    }

    #[test]
    fn hints() {
        let form = token_with_hint(&"t".into(), Some(TokenType::RefreshToken));
        assert_eq!(form.get("token_type_hint"), Some("refresh_token"));
        let form = token_with_hint(&"t".into(), Some(TokenType::IdToken));
        assert_eq!(form.get("token_type_hint"), None);
        assert_eq!(
            device_token(&"d".into()).get("grant_type"),
            Some(DEVICE_CODE_GRANT)
        );
        assert_eq!(client_credentials(&[]).get("scope"), None);
        assert_eq!(
            device_authorization(&["openid".into()]).get("scope"),
            Some("openid")
        );
    }
}
