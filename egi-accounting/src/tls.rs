//! TLS towards Prometheus with a CA file (`ca_cert`, or `verify = /path/ca.pem`): the CA
//! file's certificates are trusted as roots besides the Web PKI ones, and each of them is
//! also accepted as a *pinned* server certificate.
//!
//! # Why a custom verifier
//! A certificate made by `openssl req -x509` is self-signed and marked as a CA
//! (`basicConstraints = CA:TRUE`, from OpenSSL's default `v3_ca` section). Operators give
//! that very certificate as the CA file, and curl or Python's `requests` accept it. rustls
//! (webpki) refuses any CA certificate as a server's end-entity certificate
//! (`CaUsedAsEndEntity`), even when it is a trusted root, so such a Prometheus could not be
//! reached at all.
//!
//! Turning verification off would accept anyone. Instead, [`PinnedVerifier`] accepts a server
//! certificate that is **byte for byte** one of the CA file's certificates, and then checks
//! what a pin does not settle: the certificate must name the host we connect to (its
//! subjectAltName, as for any certificate; the common name is not read) and be within its
//! validity period. Trust comes from the pin (the operator gave this exact certificate),
//! and the handshake signature, checked as usual, proves the server holds its private key.
//! Every other certificate goes through rustls' standard Web PKI verification against the
//! Web PKI roots plus the CA file, unchanged.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use x509_cert::der::Decode;

use crate::error::{Error, Result};

/// The certificates of a PEM file; at least one.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).map_err(|e| {
        Error::Config(format!(
            "cannot read CA certificate file {}: {e}",
            path.display()
        ))
    })?;
    let invalid = |why: String| {
        Error::Config(format!(
            "invalid CA certificate file {}: {why}",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if certs.is_empty() {
        return Err(invalid("no PEM certificate in it".to_owned()));
    }
    Ok(certs)
}

/// A rustls client configuration trusting the Web PKI roots and the CA file at `path`,
/// whose certificates are also pinned server certificates (see the module documentation),
/// offering HTTP/2 and HTTP/1.1 as reqwest does.
pub(crate) fn client_config(path: &Path) -> Result<rustls::ClientConfig> {
    let pinned = read_ca_file(path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedVerifier::new(pinned, Arc::clone(&provider))
        .map_err(|why| Error::Config(format!("CA certificate file {}: {why}", path.display())))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS settings: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Web PKI verification against the Web PKI roots plus the CA file, and the CA file's
/// certificates accepted as pinned end-entity certificates (see the module documentation).
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl PinnedVerifier {
    /// Trusts `pinned` (as roots and as pinned end-entity certificates) and the Web PKI.
    pub(crate) fn new(
        pinned: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> std::result::Result<Self, String> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in &pinned {
            roots.add(cert.clone()).map_err(|e| e.to_string())?;
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { webpki, pinned })
    }

    /// The checks a pin leaves: the certificate names `server_name` and is valid at `now`.
    fn check_pinned(
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> std::result::Result<(), rustls::Error> {
        verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        let cert = x509_cert::Certificate::from_der(end_entity.as_ref())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let validity = &cert.tbs_certificate.validity;
        let now = now.as_secs();
        if now < validity.not_before.to_unix_duration().as_secs() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now > validity.not_after.to_unix_duration().as_secs() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        Ok(())
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            Self::check_pinned(end_entity, server_name, now)?;
            return Ok(ServerCertVerified::assertion());
        }
        self.webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
