//! Sealed values: small payloads encrypted and authenticated with a [`SealKey`], bound to a
//! purpose and an expiry, encoded for cookies and URLs. A gateway keeps its pending logins
//! ([`crate::PendingLogin::seal`]) and its own session cookies this way, with no server-side
//! state.
//!
//! The format (version 1), in URL-safe base64 without padding:
//! `0x01 ‖ expiry (u64 big-endian, ms since the Unix epoch) ‖ nonce (24 bytes) ‖
//! XChaCha20-Poly1305 ciphertext and tag`. The associated data is a fixed prefix, the
//! purpose and the expiry, so a value sealed for one purpose never opens for another and
//! its expiry cannot be changed. The expiry is checked after authentication: a forged value
//! is [`SealError::Tampered`], never [`SealError::Expired`].

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::error::{Error, Result};

const VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + 8 + NONCE_LEN;
const AAD_PREFIX: &[u8] = b"egi-checkin seal v1\0";

/// Why a sealed value cannot be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// Not a sealed value at all: not URL-safe base64 without padding, too short, or an
    /// unknown format version.
    #[error("not a sealed value")]
    Malformed,
    /// Authentication failed: the value was changed, or it was sealed with another key or
    /// for another purpose.
    #[error("the sealed value was tampered with, or sealed with another key or purpose")]
    Tampered,
    /// The value is authentic but its time to live is over.
    #[error("the sealed value has expired")]
    Expired,
}

/// A 256-bit key for sealed values ([`SealKey::seal`], [`SealKey::open`]). `Debug` shows
/// nothing of it. Share it between the replicas of a gateway; rotating it invalidates every
/// sealed value in flight.
pub struct SealKey(SecretBox<[u8; 32]>);

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey([redacted])")
    }
}

impl Clone for SealKey {
    fn clone(&self) -> Self {
        Self::from_bytes(*self.0.expose_secret())
    }
}

impl SealKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// A new random key (from the operating system's generator).
    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        Self::from_bytes(bytes)
    }

    /// A key from its URL-safe base64 form without padding (as [`SealKey::to_base64`]
    /// writes it); [`Error::Config`] if it is not 32 bytes so encoded.
    pub fn from_base64(encoded: &str) -> Result<Self> {
        let bad =
            || Error::Config("a seal key is 32 bytes in URL-safe base64 without padding".into());
        let mut bytes = URL_SAFE_NO_PAD.decode(encoded.trim()).map_err(|_| bad())?;
        let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad());
        secrecy::zeroize::Zeroize::zeroize(&mut bytes);
        key.map(Self::from_bytes)
    }

    /// The key in URL-safe base64 without padding (43 characters), for configuration files.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(URL_SAFE_NO_PAD.encode(self.0.expose_secret()))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(self.0.expose_secret().into())
    }

    /// Seals `payload` for `purpose` (such as `"gateway session"`), to be opened within
    /// `ttl`: encrypted, authenticated, cookie-safe (URL-safe base64, no padding).
    pub fn seal(&self, purpose: &str, payload: &[u8], ttl: Duration) -> String {
        self.seal_at(purpose, payload, SystemTime::now() + ttl)
    }

    fn seal_at(&self, purpose: &str, payload: &[u8], expires_at: SystemTime) -> String {
        let expiry = unix_millis(expires_at).to_be_bytes();
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption fails only for payloads beyond 256 GiB.
        let sealed = self
            .cipher()
            .encrypt(
                &nonce,
                Payload {
                    msg: payload,
                    aad: &aad(purpose, &expiry),
                },
            )
            .unwrap_or_default();
        let mut bytes = Vec::with_capacity(HEADER_LEN + sealed.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&expiry);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Opens a value sealed by [`SealKey::seal`] with this key for `purpose`.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        self.open_at(purpose, sealed, SystemTime::now())
    }

    fn open_at(&self, purpose: &str, sealed: &str, now: SystemTime) -> Result<Vec<u8>, SealError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < HEADER_LEN + TAG_LEN || bytes[0] != VERSION {
            return Err(SealError::Malformed);
        }
        let (expiry, rest) = bytes[1..].split_at(8);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let payload = self
            .cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad(purpose, expiry),
                },
            )
            .map_err(|_| SealError::Tampered)?;
        let expiry = u64::from_be_bytes(expiry.try_into().map_err(|_| SealError::Malformed)?);
        if unix_millis(now) >= expiry {
            return Err(SealError::Expired);
        }
        Ok(payload)
    }
}

fn aad(purpose: &str, expiry: &[u8]) -> Vec<u8> {
    [AAD_PREFIX, purpose.as_bytes(), b"\0", expiry].concat()
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn round_trip_is_cookie_safe() {
        let key = SealKey::generate();
        let sealed = key.seal("session", b"alice", HOUR);
        assert!(
            sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{sealed}"
        );
        assert_eq!(key.open("session", &sealed), Ok(b"alice".to_vec()));
        assert_eq!(
            key.open("session", &key.seal("session", b"", HOUR)),
            Ok(Vec::new())
        );
        // A random nonce: the same payload seals differently each time.
        assert_ne!(sealed, key.seal("session", b"alice", HOUR));
    }

    #[test]
    fn every_flipped_byte_is_tampered() {
        let key = SealKey::generate();
        let sealed = key.seal("session", b"alice", HOUR);
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).expect("base64");
        // The version byte is the format (Malformed); every other byte is authenticated.
        for i in 1..bytes.len() {
            bytes[i] ^= 0x01;
            let flipped = URL_SAFE_NO_PAD.encode(&bytes);
            assert_eq!(
                key.open("session", &flipped),
                Err(SealError::Tampered),
                "byte {i}"
            );
            bytes[i] ^= 0x01;
        }
        bytes[0] ^= 0x01;
        assert_eq!(
            key.open("session", &URL_SAFE_NO_PAD.encode(&bytes)),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn wrong_purpose_or_key_is_tampered() {
        let key = SealKey::generate();
        let sealed = key.seal("session", b"alice", HOUR);
        assert_eq!(key.open("pending login", &sealed), Err(SealError::Tampered));
        // The purpose is delimited: "ab" + "c" is not "a" + "bc".
        assert_eq!(key.open("sessio", &sealed), Err(SealError::Tampered));
        assert_eq!(
            SealKey::generate().open("session", &sealed),
            Err(SealError::Tampered)
        );
    }

    #[test]
    fn expired_after_its_ttl_only() {
        let key = SealKey::generate();
        let now = SystemTime::now();
        let sealed = key.seal_at("session", b"alice", now + Duration::from_secs(60));
        assert!(key.open_at("session", &sealed, now).is_ok());
        assert!(
            key.open_at("session", &sealed, now + Duration::from_secs(59))
                .is_ok()
        );
        assert_eq!(
            key.open_at("session", &sealed, now + Duration::from_secs(60)),
            Err(SealError::Expired)
        );
        assert_eq!(
            key.open("session", &key.seal("session", b"x", Duration::ZERO)),
            Err(SealError::Expired)
        );
        // A forged expiry does not authenticate.
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).expect("base64");
        bytes[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            key.open_at(
                "session",
                &URL_SAFE_NO_PAD.encode(&bytes),
                now + Duration::from_secs(120)
            ),
            Err(SealError::Tampered)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let key = SealKey::generate();
        for garbage in ["", "not base64!", "AAAA", "====", &"A".repeat(64)] {
            assert_eq!(
                key.open("session", garbage),
                Err(SealError::Malformed),
                "{garbage:?}"
            );
        }
        // Padding is refused (cookie values are written without it).
        let sealed = key.seal("session", b"alice", HOUR);
        assert_eq!(
            key.open("session", &format!("{sealed}=")),
            Err(SealError::Malformed)
        );
    }

    #[test]
    fn keys_round_trip_through_base64_and_never_print() {
        let key = SealKey::generate();
        let encoded = key.to_base64();
        assert_eq!(encoded.expose_secret().len(), 43);
        let again = SealKey::from_base64(encoded.expose_secret()).expect("key");
        let sealed = key.seal("session", b"alice", HOUR);
        assert_eq!(again.open("session", &sealed), Ok(b"alice".to_vec()));
        assert!(SealKey::from_base64("short").is_err());
        assert!(SealKey::from_base64(&"A".repeat(44)).is_err());
        let debug = format!("{key:?}");
        assert_eq!(debug, "SealKey([redacted])");
        assert!(!debug.contains(encoded.expose_secret()));
    }
}
