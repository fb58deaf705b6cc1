//! The provider: Check-in instances, discovery (with the device, introspection and
//! revocation endpoints read as extra metadata) and the endpoints a client uses.

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{AdditionalProviderMetadata, ProviderMetadata};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::error::{Endpoint, Error, Result};
use crate::token::parse_json;

/// An EGI Check-in instance. Endpoints are always read from the instance's discovery
/// document, never hard-coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Instance {
    /// `https://aai.egi.eu/auth/realms/egi`.
    Production,
    /// `https://aai-demo.egi.eu/auth/realms/egi`.
    Demo,
    /// `https://aai-dev.egi.eu/auth/realms/egi`.
    Development,
}

impl Instance {
    /// The issuer URL.
    pub fn issuer(self) -> &'static str {
        match self {
            Instance::Production => "https://aai.egi.eu/auth/realms/egi",
            Instance::Demo => "https://aai-demo.egi.eu/auth/realms/egi",
            Instance::Development => "https://aai-dev.egi.eu/auth/realms/egi",
        }
    }
}

/// Discovery fields that openidconnect's standard metadata lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraMetadata {
    /// RFC 8628 device authorization endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_authorization_endpoint: Option<Url>,
    /// RFC 7662 introspection endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_endpoint: Option<Url>,
    /// RFC 7009 revocation endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<Url>,
    /// RP-initiated logout endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<Url>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// The provider metadata of a Check-in instance.
pub type CheckinProviderMetadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The endpoints read from discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Endpoints {
    /// The issuer, exactly as in the discovery document (and in every ID token).
    pub issuer: Url,
    /// Authorization endpoint.
    pub authorization: Url,
    /// Token endpoint.
    pub token: Url,
    /// JSON Web Key Set.
    pub jwks: Url,
    /// Userinfo endpoint.
    pub userinfo: Option<Url>,
    /// Device authorization endpoint.
    pub device_authorization: Option<Url>,
    /// Introspection endpoint.
    pub introspection: Option<Url>,
    /// Revocation endpoint.
    pub revocation: Option<Url>,
    /// Logout endpoint.
    pub end_session: Option<Url>,
}

impl Endpoints {
    /// The endpoint, or [`Error::MissingEndpoint`].
    pub(crate) fn require(&self, endpoint: Endpoint) -> Result<&Url> {
        let url = match endpoint {
            Endpoint::Token => Some(&self.token),
            Endpoint::Jwks => Some(&self.jwks),
            Endpoint::UserInfo => self.userinfo.as_ref(),
            Endpoint::DeviceAuthorization => self.device_authorization.as_ref(),
            Endpoint::Introspection => self.introspection.as_ref(),
            Endpoint::Revocation => self.revocation.as_ref(),
            Endpoint::Discovery => None,
        };
        url.ok_or(Error::MissingEndpoint(endpoint))
    }
}

/// Parses an issuer URL: `https`, or `http` on a loopback address (test providers).
pub fn parse_issuer(issuer: &str) -> Result<Url> {
    let url = Url::parse(issuer).map_err(|e| Error::Config(format!("issuer {issuer:?}: {e}")))?;
    check_scheme(&url, &url)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(format!(
            "issuer {issuer:?} has a query or fragment"
        )));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}

/// Endpoints must be `https`, unless the issuer itself is plain `http` on loopback.
fn check_scheme(issuer: &Url, url: &Url) -> Result<()> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(issuer) && is_loopback(url) => Ok(()),
        _ => Err(Error::Config(format!(
            "{url} is not https (plain http is only accepted on loopback)"
        ))),
    }
}

/// `<issuer>/.well-known/openid-configuration`.
pub(crate) fn discovery_url(issuer: &Url) -> Url {
    let mut url = issuer.clone();
    let path = format!(
        "{}/.well-known/openid-configuration",
        issuer.path().trim_end_matches('/')
    );
    url.set_path(&path);
    url
}

/// Parses a discovery document: the issuer must be exactly the one asked for, and every
/// endpoint must be https (or loopback http for a loopback issuer).
pub(crate) fn parse_discovery(
    issuer: &Url,
    body: &[u8],
) -> Result<(CheckinProviderMetadata, Endpoints)> {
    let metadata: CheckinProviderMetadata = parse_json(Endpoint::Discovery, body)?;
    if metadata.issuer().as_str() != issuer.as_str() {
        return Err(Error::malformed(
            Endpoint::Discovery,
            format!(
                "the document is for issuer {} instead of {issuer}",
                metadata.issuer().as_str()
            ),
        ));
    }
    let token = metadata
        .token_endpoint()
        .map(|u| u.url().clone())
        .ok_or_else(|| Error::malformed(Endpoint::Discovery, "no token_endpoint"))?;
    let extra = metadata.additional_metadata();
    let endpoints = Endpoints {
        issuer: issuer.clone(),
        authorization: metadata.authorization_endpoint().url().clone(),
        token,
        jwks: metadata.jwks_uri().url().clone(),
        userinfo: metadata.userinfo_endpoint().map(|u| u.url().clone()),
        device_authorization: extra.device_authorization_endpoint.clone(),
        introspection: extra.introspection_endpoint.clone(),
        revocation: extra.revocation_endpoint.clone(),
        end_session: extra.end_session_endpoint.clone(),
    };
    for url in [&endpoints.authorization, &endpoints.token, &endpoints.jwks]
        .into_iter()
        .chain(endpoints.userinfo.iter())
        .chain(endpoints.device_authorization.iter())
        .chain(endpoints.introspection.iter())
        .chain(endpoints.revocation.iter())
    {
        check_scheme(issuer, url)
            .map_err(|e| Error::malformed(Endpoint::Discovery, e.to_string()))?;
    }
    Ok((metadata, endpoints))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn document(issuer: &str) -> String {
        let p = format!("{issuer}/protocol/openid-connect");
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{p}/auth"),
            "token_endpoint": format!("{p}/token"),
            "jwks_uri": format!("{p}/certs"),
            "userinfo_endpoint": format!("{p}/userinfo"),
            "device_authorization_endpoint": format!("{p}/auth/device"),
            "introspection_endpoint": format!("{p}/token/introspect"),
            "revocation_endpoint": format!("{p}/revoke"),
            "end_session_endpoint": format!("{p}/logout"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "grant_types_supported": ["authorization_code", "refresh_token",
                "urn:ietf:params:oauth:grant-type:device_code",
                "urn:ietf:params:oauth:grant-type:token-exchange"],
        })
        .to_string()
    }

    #[test]
    fn presets_are_keycloak_realms() {
        for i in [Instance::Production, Instance::Demo, Instance::Development] {
            let issuer = parse_issuer(i.issuer()).expect("valid preset");
            assert!(issuer.path().ends_with("/auth/realms/egi"));
            assert_eq!(
                discovery_url(&issuer).path(),
                "/auth/realms/egi/.well-known/openid-configuration"
            );
        }
        let with_slash = parse_issuer("https://aai.egi.eu/auth/realms/egi/").expect("valid");
        assert_eq!(
            discovery_url(&with_slash).as_str(),
            "https://aai.egi.eu/auth/realms/egi/.well-known/openid-configuration"
        );
    }

    #[test]
    fn reads_extra_endpoints() {
        let issuer = parse_issuer(Instance::Production.issuer()).expect("valid");
        let (_, e) =
            parse_discovery(&issuer, document(issuer.as_str()).as_bytes()).expect("valid document");
        assert_eq!(
            e.token.path(),
            "/auth/realms/egi/protocol/openid-connect/token"
        );
        assert_eq!(
            e.device_authorization.as_ref().map(Url::path),
            Some("/auth/realms/egi/protocol/openid-connect/auth/device")
        );
        assert_eq!(
            e.introspection.as_ref().map(Url::path),
            Some("/auth/realms/egi/protocol/openid-connect/token/introspect")
        );
        assert!(e.require(Endpoint::Revocation).is_ok());
    }

    #[test]
    fn rejects_another_issuer_and_plain_http() {
        let issuer = parse_issuer(Instance::Production.issuer()).expect("valid");
        let other = document("https://aai.egi.eu/oidc");
        assert!(matches!(
            parse_discovery(&issuer, other.as_bytes()),
            Err(Error::Malformed { .. })
        ));
        let doc = document(issuer.as_str()).replace(
            "https://aai.egi.eu/auth/realms/egi/protocol/openid-connect/token\"",
            "http://aai.egi.eu/t\"",
        );
        assert!(parse_discovery(&issuer, doc.as_bytes()).is_err());
        assert!(parse_issuer("http://aai.egi.eu/auth/realms/egi").is_err());
        assert!(parse_issuer("http://127.0.0.1:8080/auth/realms/egi").is_ok());
        assert!(parse_issuer("not a url").is_err());
        assert!(matches!(
            parse_discovery(&issuer, b"<html>"),
            Err(Error::Malformed { .. })
        ));
    }
}
