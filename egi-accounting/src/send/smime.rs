//! Signing messages as SSM does: `openssl smime -sign -inkey KEY -signer CERT -text`, that is
//! a detached PKCS#7 signature over the body with a `Content-Type: text/plain` MIME header,
//! written as a `multipart/signed` S/MIME message (the form SSM's receiver checks with
//! `openssl smime -verify`). SSM reads openssl's output in Python's universal-newline mode,
//! so its messages have LF line ends; ours too.
//!
//! Like SSM, a [`Signer`] refuses a certificate that has expired or expires within a day and
//! a key that is not the certificate's.

use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::X509;

use secrecy::SecretString;

use super::error::{Error, Result};

/// SSM refuses certificates that expire within this many seconds (`openssl x509 -checkend`).
const EXPIRY_MARGIN_DAYS: u32 = 1;

/// The host certificate and key, checked, ready to sign.
pub struct Signer {
    certificate: X509,
    key: PKey<Private>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("subject", &self.subject())
            .field("key", &"[redacted]")
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

impl Signer {
    /// Loads and checks the PEM certificate and key: not expired nor expiring within a day,
    /// and the key matches.
    pub fn load(certificate: &Path, key: &Path) -> Result<Self> {
        let cert = X509::from_pem(&read(certificate)?).map_err(|source| Error::Credentials {
            what: "certificate",
            path: certificate.to_owned(),
            source,
        })?;
        let pkey =
            PKey::private_key_from_pem(&read(key)?).map_err(|source| Error::Credentials {
                what: "private key",
                path: key.to_owned(),
                source,
            })?;
        let soon = Asn1Time::days_from_now(EXPIRY_MARGIN_DAYS)
            .map_err(|e| Error::OpenSsl("compute a date", e))?;
        if cert.not_after() < soon {
            return Err(Error::CertificateExpired {
                path: certificate.to_owned(),
                not_after: cert.not_after().to_string(),
            });
        }
        let public = cert
            .public_key()
            .map_err(|e| Error::OpenSsl("read the certificate's public key", e))?;
        if !public.public_eq(&pkey) {
            return Err(Error::KeyMismatch {
                certificate: certificate.to_owned(),
                key: key.to_owned(),
            });
        }
        Ok(Self {
            certificate: cert,
            key: pkey,
        })
    }

    /// The certificate's subject in OpenSSL's legacy `/K=V/...` form (as SSM logs it).
    pub fn subject(&self) -> String {
        self.certificate
            .subject_name()
            .entries()
            .map(|e| {
                let key = e.object().nid().short_name().unwrap_or("?");
                let value = e.data().to_string().unwrap_or_default();
                format!("/{key}={value}")
            })
            .collect()
    }

    /// The certificate and key as one PEM text, for TLS client authentication (AMS token).
    pub fn identity_pem(&self) -> Result<SecretString> {
        let fail = |e| Error::OpenSsl("write the certificate and key as PEM", e);
        let mut pem = self.key.private_key_to_pem_pkcs8().map_err(fail)?;
        pem.extend(self.certificate.to_pem().map_err(fail)?);
        Ok(SecretString::from(
            String::from_utf8_lossy(&pem).into_owned(),
        ))
    }

    /// Signs `body` (ASCII text) into an S/MIME `multipart/signed` message.
    pub fn sign(&self, body: &[u8]) -> Result<String> {
        let flags = Pkcs7Flags::DETACHED | Pkcs7Flags::TEXT;
        let no_certs =
            Stack::new().map_err(|e| Error::OpenSsl("allocate a certificate stack", e))?;
        let p7 = Pkcs7::sign(&self.certificate, &self.key, &no_certs, body, flags)
            .map_err(|e| Error::OpenSsl("sign a message", e))?;
        let smime = p7
            .to_smime(body, flags)
            .map_err(|e| Error::OpenSsl("write an S/MIME message", e))?;
        // OpenSSL writes CRLF in MIME parts; SSM's Python reads them as LF. The body is
        // ASCII and the rest base64 and headers, so nothing is lost here.
        Ok(String::from_utf8_lossy(&smime).replace("\r\n", "\n"))
    }
}
