//! The pinned-certificate verifier against certificates made by `openssl req -x509` (EC
//! P-256, `subjectAltName = IP:127.0.0.1, DNS:localhost`, valid 2026-12-07 to 2036-12-04).

use std::time::Duration;

use super::*;

/// Self-signed and `CA:TRUE`, as `openssl req -x509` makes them: the pinned certificate.
const PINNED: &str = "-----BEGIN CERTIFICATE-----
MIIBmjCCAT+gAwIBAgIUPodPCWvPvHmwqaxgxFXTOapVP3IwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMB4XDTI2MTIwNzIyNTgwNloXDTM2MTIwNDIy
NTgwNlowFDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEC7N+fqp+I0g7tLBLIoJXgUoBc2TAesvEavP1FS4+fiJ+cpbHxlPeyxWT
IcjSsHE+h/kfr04tiG79caCUEL/dYKNvMG0wHQYDVR0OBBYEFCOk6Q53+U3D51hi
WbJFOXunY3j+MB8GA1UdIwQYMBaAFCOk6Q53+U3D51hiWbJFOXunY3j+MA8GA1Ud
EwEB/wQFMAMBAf8wGgYDVR0RBBMwEYcEfwAAAYIJbG9jYWxob3N0MAoGCCqGSM49
BAMCA0kAMEYCIQC/XTb6hmodD8IKrsN5evIbZzaZ335Z8h4qBm6VObqGnAIhAKpQ
8Y8p1+kUWZCm0+UTIE0YmwCQpd9WLeLNnpf2NBQl
-----END CERTIFICATE-----
";

/// Another such certificate, not pinned.
const OTHER: &str = "-----BEGIN CERTIFICATE-----
MIIBmTCCAT+gAwIBAgIUdIbXl2dTtwFYqy5zMxspMWq0Rd4wCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMB4XDTI2MTIwNzIyNTgwNloXDTM2MTIwNDIy
NTgwNlowFDESMBAGA1UEAwwJMTI3LjAuMC4xMFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEmFzuouvIU2rMzhoTMjSKND19oQ8x7Ah6nROvpNvb81yRAb5YwhhUA6I/
4prpCCRVs+/3moYYGh7LdL6pKW3KU6NvMG0wHQYDVR0OBBYEFJ1nsViiXl9e+uvc
D++AMgNxJ2DBMB8GA1UdIwQYMBaAFJ1nsViiXl9e+uvcD++AMgNxJ2DBMA8GA1Ud
EwEB/wQFMAMBAf8wGgYDVR0RBBMwEYcEfwAAAYIJbG9jYWxob3N0MAoGCCqGSM49
BAMCA0gAMEUCIHcU1DnnbCZRdZyitdToisqHcmypF5wbPBAMov11c0xRAiEA7o+P
EFmjsYJJqqyU5jc+EWSFoKLLjPH9/DVUQRJyDJ8=
-----END CERTIFICATE-----
";

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn at(secs: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs))
}

/// 2027-01-01, within both certificates' validity.
const IN_VALIDITY: u64 = 1_798_761_600;

fn verifier() -> PinnedVerifier {
    PinnedVerifier::new(
        vec![der(PINNED)],
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .unwrap()
}

fn verify(
    v: &PinnedVerifier,
    cert: &str,
    name: &str,
    now: u64,
) -> std::result::Result<ServerCertVerified, rustls::Error> {
    let name = ServerName::try_from(name.to_owned()).unwrap();
    v.verify_server_cert(&der(cert), &[], &name, &[], at(now))
}

#[test]
fn rustls_alone_refuses_a_self_signed_ca_as_the_server_certificate() {
    let mut roots = RootCertStore::empty();
    roots.add(der(PINNED)).unwrap();
    let webpki = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let err = webpki
        .verify_server_cert(&der(PINNED), &[], &name, &[], at(IN_VALIDITY))
        .unwrap_err();
    assert!(format!("{err:?}").contains("CaUsedAsEndEntity"), "{err:?}");
}

#[test]
fn the_pinned_certificate_is_accepted_for_its_names_within_its_validity() {
    let v = verifier();
    verify(&v, PINNED, "127.0.0.1", IN_VALIDITY).unwrap();
    verify(&v, PINNED, "localhost", IN_VALIDITY).unwrap();
}

#[test]
fn a_pin_still_checks_the_name_and_the_validity() {
    let v = verifier();
    let err = verify(&v, PINNED, "prometheus.example.org", IN_VALIDITY).unwrap_err();
    assert!(
        matches!(
            err,
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
            )
        ),
        "{err:?}"
    );
    // 2040 is after notAfter, 2020 before notBefore.
    let err = verify(&v, PINNED, "127.0.0.1", 2_208_988_800).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::Expired)
    );
    let err = verify(&v, PINNED, "127.0.0.1", 1_577_836_800).unwrap_err();
    assert_eq!(
        err,
        rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
    );
}

#[test]
fn any_other_certificate_goes_through_the_web_pki() {
    let v = verifier();
    // Same subject as the pinned one but another key: not the pinned bytes, so the Web PKI
    // rules apply, and they refuse it.
    let err = verify(&v, OTHER, "127.0.0.1", IN_VALIDITY).unwrap_err();
    assert!(
        matches!(err, rustls::Error::InvalidCertificate(_)),
        "{err:?}"
    );
}

#[test]
fn ca_files_are_read_or_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.pem");
    std::fs::write(&both, format!("{PINNED}{OTHER}")).unwrap();
    assert_eq!(read_ca_file(&both).unwrap().len(), 2);
    client_config(&both).unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for path in [&empty, &missing] {
        let err = client_config(path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
