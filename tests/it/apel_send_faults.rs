//! The APEL sender's faults: broker down, a broker that never confirms, credentials SSM would
//! refuse. Each leaves the spool as it was, with no lock behind.

use std::time::Duration;

use egi_accounting::send::{self, Error};
use egi_test_harness::rabbitmq::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::apel_send_support::{config, nowhere, quick, spool_with, stomp_cfg};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn broker_down_is_transient_and_keeps_everything() {
    let pki = TestPki::new().unwrap();
    let host = pki.host("apel-host.example", 2).unwrap();
    let spool = spool_with(3, 1);
    let before = spool.on_disk();
    let cfg = config(&stomp_cfg(free_port(), "/queue/x", spool.path(), &host));
    let err = send::run(&cfg, &quick(3)).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(spool.on_disk(), before, "nothing removed, no lock left");
}

/// A STOMP server that accepts a session and then never answers: stands for a broker that
/// takes messages without ever confirming them (RabbitMQ always confirms).
async fn silent_broker() -> (u16, tokio::task::JoinHandle<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut sessions = 0;
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return sessions;
            };
            sessions += 1;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut greeted = false;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !greeted && buf[..n].contains(&0) {
                        let _ = s.write_all(b"CONNECTED\nversion:1.2\n\n\0").await;
                        greeted = true;
                    }
                }
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_receipt_that_never_comes_keeps_the_message() {
    let pki = TestPki::new().unwrap();
    let host = pki.host("apel-host.example", 2).unwrap();
    let spool = spool_with(2, 1);
    let before = spool.on_disk();
    let (port, server) = silent_broker().await;
    let mut options = quick(2);
    options.stomp.receipt = Duration::from_millis(300);
    let cfg = config(&stomp_cfg(port, "/queue/x", spool.path(), &host));
    let err = send::run(&cfg, &options).await.unwrap_err();
    assert!(
        matches!(&err, Error::Timeout { what, .. } if what.starts_with("no receipt for")),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(spool.on_disk(), before);
    server.abort();
}

#[tokio::test]
async fn credentials_ssm_would_refuse_stop_before_anything_is_touched() {
    let pki = TestPki::new().unwrap();
    let good = pki.host("apel-host.example", 2).unwrap();
    let expired = pki.host("expired.example", 0).unwrap();
    let other = pki.host("other.example", 2).unwrap();
    let spool = spool_with(2, 1);
    let before = spool.on_disk();
    // The port is never reached: credentials are checked first.
    let port = free_port();

    let cfg = config(&stomp_cfg(port, "/queue/x", spool.path(), &expired));
    let err = send::run(&cfg, &quick(1)).await.unwrap_err();
    assert!(matches!(err, Error::CertificateExpired { .. }), "{err}");
    assert!(err.to_string().contains("expired.example.pem"), "{err}");

    let mut mismatched = good.clone();
    mismatched.key = other.key.clone();
    let cfg = config(&stomp_cfg(port, "/queue/x", spool.path(), &mismatched));
    let err = send::run(&cfg, &quick(1)).await.unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");

    let mut garbage = good.clone();
    garbage.certificate = good.key.clone();
    let cfg = config(&stomp_cfg(port, "/queue/x", spool.path(), &garbage));
    let err = send::run(&cfg, &quick(1)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Credentials {
                what: "certificate",
                ..
            }
        ),
        "{err}"
    );

    let mut missing = good.clone();
    missing.key = nowhere();
    let cfg = config(&stomp_cfg(port, "/queue/x", spool.path(), &missing));
    let err = send::run(&cfg, &quick(1)).await.unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err}");

    // Even a dry run refuses them.
    let cfg = config(&stomp_cfg(port, "/queue/x", spool.path(), &expired));
    assert!(send::run(&cfg, &quick(1).dry_run(true)).await.is_err());
    assert_eq!(spool.on_disk(), before);
}
