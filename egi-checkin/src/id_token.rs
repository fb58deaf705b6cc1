//! ID-token validation: signature against the provider's JSON Web Key Set (cached, and
//! fetched again when a token names an unknown key), algorithm, issuer, audience, expiry with
//! a clock-skew leeway, nonce, and an unchanged subject for refreshed tokens.

use std::str::FromStr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use openidconnect::core::{CoreIdToken, CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{
    ClaimsVerificationError, ClientId, IdTokenVerifier, IssuerUrl, Nonce,
    SignatureVerificationError,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::error::{Endpoint, Error, Result};
use crate::http::{Transport, check_status};
use crate::token::parse_json;

/// What a validated ID token says.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdTokenInfo {
    /// `sub`.
    pub subject: String,
    /// `exp`.
    pub expires_at: SystemTime,
    /// `iat`.
    pub issued_at: SystemTime,
    /// `auth_time`, if present.
    pub auth_time: Option<SystemTime>,
    /// `preferred_username`, if the token carries it.
    pub preferred_username: Option<String>,
    /// `email`, if the token carries it.
    pub email: Option<String>,
}

/// The signature algorithms accepted (never `none`, never HMAC with a shared secret).
const ALGORITHMS: [CoreJwsSigningAlgorithm; 8] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
];

/// The key set, cached; fetched again (at most once per `min_refetch`) when a token is
/// signed by a key it does not hold.
#[derive(Debug)]
pub(crate) struct Jwks {
    url: Url,
    keys: RwLock<Arc<CoreJsonWebKeySet>>,
    fetched_at: Mutex<Instant>,
    refetch: tokio::sync::Mutex<()>,
    min_refetch: Duration,
}

impl Jwks {
    pub(crate) async fn fetch(
        transport: &Transport,
        url: Url,
        min_refetch: Duration,
    ) -> Result<Self> {
        let keys = fetch_keys(transport, &url).await?;
        Ok(Self {
            url,
            keys: RwLock::new(Arc::new(keys)),
            fetched_at: Mutex::new(Instant::now()),
            refetch: tokio::sync::Mutex::new(()),
            min_refetch,
        })
    }

    fn current(&self) -> Arc<CoreJsonWebKeySet> {
        Arc::clone(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Fetches the set again unless it was fetched less than `min_refetch` ago (then the
    /// cached set is returned).
    async fn refetch(
        &self,
        transport: &Transport,
        seen: &Arc<CoreJsonWebKeySet>,
    ) -> Result<Arc<CoreJsonWebKeySet>> {
        let _one_at_a_time = self.refetch.lock().await;
        let current = self.current();
        if !Arc::ptr_eq(&current, seen) {
            // Another task fetched it meanwhile.
            return Ok(current);
        }
        let fetched_at = *self.fetched_at.lock().unwrap_or_else(|e| e.into_inner());
        if fetched_at.elapsed() < self.min_refetch {
            return Ok(current);
        }
        tracing::debug!(url = %self.url, "ID token signed by an unknown key: fetching the JWKS again");
        let keys = Arc::new(fetch_keys(transport, &self.url).await?);
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::clone(&keys);
        *self.fetched_at.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(keys)
    }
}

async fn fetch_keys(transport: &Transport, url: &Url) -> Result<CoreJsonWebKeySet> {
    let answer = transport.get(Endpoint::Jwks, url, None).await?;
    check_status(Endpoint::Jwks, &answer)?;
    parse_json(Endpoint::Jwks, &answer.body)
}

/// The checks that do not depend on the key set.
#[derive(Debug, Clone)]
pub(crate) struct Expectations {
    pub(crate) issuer: Url,
    pub(crate) client_id: String,
    pub(crate) leeway: Duration,
}

/// Validates `raw` against `keys` (pure: the clock is `now`).
pub(crate) fn validate(
    raw: &str,
    keys: &CoreJsonWebKeySet,
    expect: &Expectations,
    nonce: Option<&Nonce>,
    now: SystemTime,
) -> std::result::Result<IdTokenInfo, ClaimsVerificationError> {
    let token = CoreIdToken::from_str(raw).map_err(|e| {
        ClaimsVerificationError::Unsupported(format!("not a signed JWT: {}", short(&e.to_string())))
    })?;
    // Expiry is checked below, with the leeway, so that its message tells the real time
    // (the library's own check would print the clock set back by the leeway as "current").
    let never_expired = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let verifier = IdTokenVerifier::new_public_client(
        ClientId::new(expect.client_id.clone()),
        IssuerUrl::from_url(expect.issuer.clone()),
        keys.clone(),
    )
    .set_allowed_algs(ALGORITHMS)
    .set_time_fn(move || never_expired);
    let claims = match nonce {
        Some(nonce) => token.claims(&verifier, nonce)?,
        // Refreshed and device-flow ID tokens carry no nonce of ours.
        None => token.claims(&verifier, |_: Option<&Nonce>| Ok(()))?,
    };
    let expires_at: SystemTime = claims.expiration().into();
    if now >= expires_at + expect.leeway {
        let time = |t: SystemTime| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        return Err(ClaimsVerificationError::Expired(format!(
            "ID token expired at {} (now {}, leeway {:?})",
            time(expires_at),
            time(now),
            expect.leeway
        )));
    }
    Ok(IdTokenInfo {
        subject: claims.subject().as_str().to_owned(),
        expires_at: claims.expiration().into(),
        issued_at: claims.issue_time().into(),
        auth_time: claims.auth_time().map(Into::into),
        preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
        email: claims.email().map(|e| e.as_str().to_owned()),
    })
}

/// Keeps error texts short (they may quote parts of the token).
fn short(text: &str) -> &str {
    let end = text.char_indices().nth(120).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

fn describe(e: &ClaimsVerificationError) -> String {
    match e {
        ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        ) => "signed by a key the provider does not publish".to_owned(),
        ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoSignature) => {
            "unsigned (alg none)".to_owned()
        }
        ClaimsVerificationError::SignatureVerification(s) => {
            format!("signature: {}", short(&s.to_string()))
        }
        other => short(&other.to_string()).to_owned(),
    }
}

/// Validates an ID token, fetching the key set again once if the token names an unknown
/// key, and checks that its subject is `expected_subject` when given.
pub(crate) async fn verify(
    transport: &Transport,
    jwks: &Jwks,
    expect: &Expectations,
    raw: &SecretString,
    nonce: Option<&Nonce>,
    expected_subject: Option<&str>,
) -> Result<IdTokenInfo> {
    let keys = jwks.current();
    let result = match validate(raw.expose_secret(), &keys, expect, nonce, SystemTime::now()) {
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey,
        )) => {
            let keys = jwks.refetch(transport, &keys).await?;
            validate(raw.expose_secret(), &keys, expect, nonce, SystemTime::now())
        }
        other => other,
    };
    let info = result.map_err(|e| Error::IdToken(describe(&e)))?;
    if expected_subject.is_some_and(|expected| expected != info.subject) {
        return Err(Error::SubjectChanged);
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use openidconnect::core::{CoreGenderClaim, CoreRsaPrivateSigningKey};
    use openidconnect::{
        Audience, EmptyAdditionalClaims, IdTokenClaims, JsonWebKeyId, PrivateSigningKey,
        StandardClaims, SubjectIdentifier,
    };

    use super::*;

    const ISSUER: &str = "https://aai.egi.eu/auth/realms/egi";

    fn key(pem: &str, kid: &str) -> CoreRsaPrivateSigningKey {
        CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new(kid.into())))
            .expect("test key")
    }

    fn key_a() -> CoreRsaPrivateSigningKey {
        key(include_str!("testdata/key-a.pem"), "a")
    }

    fn key_b() -> CoreRsaPrivateSigningKey {
        key(include_str!("testdata/key-b.pem"), "b")
    }

    fn expect() -> Expectations {
        Expectations {
            issuer: Url::parse(ISSUER).expect("valid"),
            client_id: "notebooks".into(),
            leeway: Duration::from_secs(5),
        }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn token(
        signer: &CoreRsaPrivateSigningKey,
        aud: &str,
        exp_in: i64,
        nonce: Option<&str>,
    ) -> String {
        let now = chrono::DateTime::<chrono::Utc>::from(now());
        let mut claims = IdTokenClaims::<EmptyAdditionalClaims, CoreGenderClaim>::new(
            IssuerUrl::new(ISSUER.into()).expect("valid"),
            vec![Audience::new(aud.into())],
            now + chrono::Duration::seconds(exp_in),
            now - chrono::Duration::seconds(10),
            StandardClaims::new(SubjectIdentifier::new("abc@egi.eu".into())),
            EmptyAdditionalClaims {},
        );
        if let Some(n) = nonce {
            claims = claims.set_nonce(Some(Nonce::new(n.into())));
        }
        CoreIdToken::new(
            claims,
            signer,
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            None,
            None,
        )
        .expect("signs")
        .to_string()
    }

    fn keys() -> CoreJsonWebKeySet {
        CoreJsonWebKeySet::new(vec![key_a().as_verification_key()])
    }

    #[test]
    fn accepts_a_valid_token_and_checks_the_nonce() {
        let nonce = Nonce::new("n-1".into());
        let raw = token(&key_a(), "notebooks", 60, Some("n-1"));
        let info = validate(&raw, &keys(), &expect(), Some(&nonce), now()).expect("valid");
        assert_eq!(info.subject, "abc@egi.eu");
        let other = Nonce::new("n-2".into());
        assert!(matches!(
            validate(&raw, &keys(), &expect(), Some(&other), now()),
            Err(ClaimsVerificationError::InvalidNonce(_))
        ));
        let without = token(&key_a(), "notebooks", 60, None);
        assert!(validate(&without, &keys(), &expect(), Some(&nonce), now()).is_err());
    }

    #[test]
    fn expiry_with_leeway() {
        let expired_3s_ago = token(&key_a(), "notebooks", -3, None);
        assert!(validate(&expired_3s_ago, &keys(), &expect(), None, now()).is_ok());
        let strict = Expectations {
            leeway: Duration::ZERO,
            ..expect()
        };
        assert!(matches!(
            validate(&expired_3s_ago, &keys(), &strict, None, now()),
            Err(ClaimsVerificationError::Expired(_))
        ));
        // The message tells the real time, not the time minus the leeway.
        let expired_long_ago = token(&key_a(), "notebooks", -30, None);
        let e = validate(&expired_long_ago, &keys(), &expect(), None, now()).expect_err("expired");
        let text = describe(&e);
        assert!(
            text.contains("now 2027-01-15T08:00:00Z, leeway 5s"),
            "{text}"
        );
        assert!(text.contains("expired at 2027-01-15T07:59:30Z"), "{text}");
        let expired_long_ago = token(&key_a(), "notebooks", -30, None);
        assert!(validate(&expired_long_ago, &keys(), &expect(), None, now()).is_err());
    }

    #[test]
    fn rejects_other_audience_other_key_and_alg_none() {
        let wrong_aud = token(&key_a(), "someone-else", 60, None);
        assert!(matches!(
            validate(&wrong_aud, &keys(), &expect(), None, now()),
            Err(ClaimsVerificationError::InvalidAudience(_))
        ));
        let other_key = token(&key_b(), "notebooks", 60, None);
        let e = validate(&other_key, &keys(), &expect(), None, now()).expect_err("unknown key");
        assert_eq!(
            describe(&e),
            "signed by a key the provider does not publish"
        );
        // The same claims, header rewritten to alg none and the signature dropped.
        let valid = token(&key_a(), "notebooks", 60, None);
        let payload = valid.split('.').nth(1).expect("three parts");
        let none = format!("eyJhbGciOiJub25lIn0.{payload}.");
        let e = validate(&none, &keys(), &expect(), None, now()).expect_err("alg none");
        assert!(!describe(&e).is_empty());
        // Same key material published under the kid of another key: signature mismatch.
        let tampered = format!(
            "{}.{}.{}",
            valid.split('.').next().unwrap_or_default(),
            payload,
            "AAAA"
        );
        assert!(validate(&tampered, &keys(), &expect(), None, now()).is_err());
        assert!(validate("garbage", &keys(), &expect(), None, now()).is_err());
    }
}
