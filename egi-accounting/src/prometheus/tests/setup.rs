//! Client construction: URLs, CA files, secrets, back-off.

use std::time::Duration;

use super::*;

#[test]
fn endpoint_keeps_the_prefix_and_refuses_bad_urls() {
    let endpoint = |u: &str| query_endpoint(&Url::parse(u).unwrap());
    assert_eq!(
        endpoint("http://prom:9090").unwrap().as_str(),
        "http://prom:9090/api/v1/query"
    );
    assert_eq!(
        endpoint("https://h/a/b?x=1#frag").unwrap().as_str(),
        "https://h/a/b/api/v1/query"
    );
    let err = endpoint("https://bob:hunter2@h/").unwrap_err().to_string();
    assert!(
        err.contains("credentials") && !err.contains("hunter2"),
        "{err}"
    );
    assert!(matches!(endpoint("ftp://h/"), Err(Error::Config(_))));
}

#[cfg(feature = "rustls-tls")]
#[test]
fn ca_file_problems_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.pem");
    let garbage = dir.path().join("garbage-ca.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    for path in [&missing, &garbage] {
        let mut cfg = PrometheusConfig::new(Url::parse("https://prom/").unwrap());
        cfg.ca_cert = Some(path.clone());
        match PrometheusSource::new(cfg) {
            Err(Error::Config(m)) => assert!(m.contains(&path.display().to_string()), "{m}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[cfg(feature = "rustls-tls")]
#[test]
fn a_valid_ca_file_and_disabled_verification_are_accepted() {
    const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBljCCAT2gAwIBAgIUQ1h1n8v0TRg3HaxiMzgWXvmWOA4wCgYIKoZIzj0EAwIw
ITEfMB0GA1UEAwwWZWdpLWFjY291bnRpbmcgdGVzdCBDQTAeFw0yNjExMjYwNjU2
MDRaFw0zNjExMjMwNjU2MDRaMCExHzAdBgNVBAMMFmVnaS1hY2NvdW50aW5nIHRl
c3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATQH/eXxr0Jyo4TtGLx/Q4F
O0YCdvVq8CNXb/gsyhHFn3xUHOV+R1cE9FFQ5Q/6PzYoNQ5Xo5eIOhNm7cL6ESNT
o1MwUTAdBgNVHQ4EFgQUEGc4VLgI5BPLpkvAftoe9GtNjd8wHwYDVR0jBBgwFoAU
EGc4VLgI5BPLpkvAftoe9GtNjd8wDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQD
AgNHADBEAiBdIphgviGxEOksvdgRePy2VxftLPO5x3do7WDyucJsjgIgYHgHSKuf
2mbV+6/a76FTeX18xEq/lfGMums1HKnF5Qs=
-----END CERTIFICATE-----
";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, CA).unwrap();
    let mut cfg = PrometheusConfig::new(Url::parse("https://prom/").unwrap());
    cfg.ca_cert = Some(path);
    cfg.verify_tls = false;
    let src = PrometheusSource::new(cfg).unwrap();
    assert_eq!(src.endpoint().as_str(), "https://prom/api/v1/query");

    let mut cfg = PrometheusConfig::new(Url::parse("https://prom/").unwrap());
    cfg.timeout = Duration::ZERO;
    assert!(matches!(PrometheusSource::new(cfg), Err(Error::Config(_))));
}

#[cfg(not(feature = "rustls-tls"))]
#[test]
fn without_tls_only_plain_http_is_accepted() {
    let https = PrometheusConfig::new(Url::parse("https://prom/").unwrap());
    match PrometheusSource::new(https) {
        Err(Error::Config(m)) => assert!(m.contains("`rustls-tls` feature"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
    let mut with_ca = PrometheusConfig::new(Url::parse("http://prom/").unwrap());
    with_ca.ca_cert = Some("ca.pem".into());
    assert!(matches!(
        PrometheusSource::new(with_ca),
        Err(Error::Config(_))
    ));
    let mut http = PrometheusConfig::new(Url::parse("http://prom/").unwrap());
    http.verify_tls = false;
    assert!(PrometheusSource::new(http).is_ok());
}

#[test]
fn secrets_are_not_in_debug_output() {
    let mut cfg = PrometheusConfig::new(Url::parse("http://prom/").unwrap());
    cfg.auth = Auth::Basic {
        user: "alice".to_owned(),
        password: "pa55word".into(),
    };
    let src = PrometheusSource::new(cfg.clone()).unwrap();
    assert!(!format!("{cfg:?}{src:?}").contains("pa55word"));
    let cfg = PrometheusConfig {
        auth: Auth::Bearer("t0ken".into()),
        ..cfg
    };
    assert!(!format!("{cfg:?}").contains("t0ken"));
}

#[test]
fn backoff_grows_exponentially_with_full_jitter() {
    let base = Duration::from_millis(100);
    for _ in 0..100 {
        assert!(backoff_delay(base, 0) <= base);
        assert!(backoff_delay(base, 3) <= base * 8);
        assert!(backoff_delay(base, 1000) <= MAX_BACKOFF);
    }
    let spread: std::collections::HashSet<Duration> =
        (0..50).map(|_| backoff_delay(base, 2)).collect();
    assert!(spread.len() > 1, "jitter varies the delay");
}

#[test]
fn error_chain_shows_every_source() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("cannot reach Prometheus")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let err = Outer(std::io::Error::other("connection reset"));
    assert_eq!(
        error_chain(&err),
        "cannot reach Prometheus: connection reset"
    );
}
