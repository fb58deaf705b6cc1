//! The APEL sender against real peers: RabbitMQ with its STOMP plugin (messages verified with
//! `openssl smime -verify` against a throw-away CA and compared byte for byte with the spool),
//! the loopback AMS, and python-dirq holding a lock beside it.

use std::time::Duration;

use egi_accounting::send::{self, Error, Options};
use egi_test_harness::ams::{AmsOptions, AmsServer};
use egi_test_harness::rabbitmq::{RabbitMq, TestPki};

use crate::apel_send_support::{ams_cfg, config, python_dirq, quick, spool_with, stomp_cfg};

const QUEUE: &str = "/queue/apel-test";
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn stomp_sends_signed_messages_that_arrive_byte_for_byte() {
    let broker = RabbitMq::start().expect("RabbitMQ starts (.ci/install-peers)");
    let pki = TestPki::new().unwrap();
    let host = pki.host("apel-host.example", 2).unwrap();
    let mut spool = spool_with(5, 3);
    let sent: Vec<String> = spool.bodies.keys().cloned().collect();
    // SSM (python-dirq) holds a lock on one element; another is not ASCII.
    let held = spool.add_raw(b"APEL-cloud-message: v0.4\nVMUUID: held\nSiteName: S\n");
    let locked = python_dirq(spool.path(), &format!("print(q.lock('{held}'))"));
    assert_eq!(locked, "True");
    let corrupt = spool.add_raw("APEL-cloud-message: v0.4\nSiteName: Zürich\n".as_bytes());
    let cfg = config(&stomp_cfg(broker.stomp_port(), QUEUE, spool.path(), &host));
    let mut subscriber = broker.subscribe(QUEUE).unwrap();

    // A dry run locks, checks and signs, and leaves everything as it was.
    let before = spool.on_disk();
    let report = send::run(&cfg, &quick(1).dry_run(true)).await.unwrap();
    assert_eq!(report.would_send, 5);
    assert_eq!(report.sent, 0);
    assert_eq!(report.locked_elsewhere, 1);
    assert_eq!(report.kept.len(), 1);
    assert_eq!(spool.on_disk(), before);
    subscriber.nothing_within(Duration::from_secs(1)).unwrap();

    let report = send::run(&cfg, &Options::default()).await.unwrap();
    assert_eq!(report.sent, 5, "{report:?}");
    assert_eq!(report.locked_elsewhere, 1);
    assert!(
        matches!(&report.kept[..], [Error::CorruptElement { name, .. }] if *name == corrupt),
        "{:?}",
        report.kept
    );
    let received = subscriber.receive(5, WAIT).unwrap();
    let mut ids = Vec::new();
    for m in &received {
        let id = m.header("empa-id").expect("empa-id header").to_owned();
        let signed = &m.body;
        assert!(
            signed.starts_with(b"MIME-Version: 1.0\nContent-Type: multipart/signed;"),
            "{}",
            String::from_utf8_lossy(signed)
        );
        let body = pki.verify(signed).unwrap();
        assert_eq!(
            &body, &spool.bodies[&id],
            "{id}: body differs from the spool"
        );
        ids.push(id);
    }
    assert_eq!(ids, sent, "every message once, in spool order");
    // Sent elements are gone; the held one keeps python's lock; the corrupt one is unlocked.
    let (elements, locks) = spool.on_disk();
    assert_eq!(elements, [held.clone(), corrupt.clone()]);
    assert_eq!(locks, std::slice::from_ref(&held));
    assert_eq!(python_dirq(spool.path(), "print(q.count())"), "2");

    // Next run: nothing new is sent; once python lets go, the held element goes too.
    let report = send::run(&cfg, &Options::default()).await.unwrap();
    assert_eq!((report.sent, report.locked_elsewhere), (0, 1));
    python_dirq(spool.path(), &format!("q.unlock('{held}')"));
    let report = send::run(&cfg, &Options::default()).await.unwrap();
    assert_eq!(report.sent, 1);
    let again = subscriber.receive(1, WAIT).unwrap();
    assert_eq!(again[0].header("empa-id"), Some(held.as_str()));
    assert_eq!(pki.verify(&again[0].body).unwrap(), spool.bodies[&held]);
    assert_eq!(spool.on_disk().0, [corrupt]);

    // A destination the broker refuses stops the run and keeps everything.
    let more = spool_with(2, 1);
    let refused = config(&stomp_cfg(
        broker.stomp_port(),
        "/exchange/no-such-exchange",
        more.path(),
        &host,
    ));
    let err = send::run(&refused, &quick(3)).await.unwrap_err();
    assert!(matches!(err, Error::BrokerRefused { .. }), "{err}");
    let (elements, locks) = more.on_disk();
    assert_eq!(elements.len(), 2);
    assert!(locks.is_empty());
}

fn ams_options() -> AmsOptions {
    AmsOptions::default()
}

#[tokio::test(flavor = "multi_thread")]
async fn ams_publishes_base64_with_empaid_and_a_token_from_the_certificate() {
    let ams = AmsServer::start(ams_options()).await.unwrap();
    let pki = TestPki::new().unwrap();
    let host = pki.host("apel-host.example", 2).unwrap();
    let topic = "eu-egi-cloud-accounting";

    // With the configured token.
    let spool = spool_with(3, 2);
    let cfg = config(&ams_cfg(
        &ams.url(),
        ams.port(),
        Some("test-token"),
        topic,
        spool.path(),
        &host,
    ));
    let report = send::run(&cfg, &Options::default()).await.unwrap();
    assert_eq!(report.sent, 3);
    assert_eq!(ams.token_requests(), 0);
    let published = ams.published();
    assert_eq!(published.len(), 3);
    for p in &published {
        let id = p.empaid.as_deref().expect("empaid attribute");
        assert_eq!(p.topic, topic);
        assert_eq!(pki.verify(&p.data).unwrap(), spool.bodies[id], "{id}");
    }
    assert!(spool.on_disk().0.is_empty());

    // Without one: obtained with the host certificate, as argo-ams-library does.
    let spool = spool_with(2, 1);
    let cfg = config(&ams_cfg(
        &ams.url(),
        ams.port(),
        None,
        topic,
        spool.path(),
        &host,
    ));
    let report = send::run(&cfg, &Options::default()).await.unwrap();
    assert_eq!(report.sent, 2);
    assert_eq!(ams.token_requests(), 1);
    assert_eq!(ams.published().len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn ams_errors_keep_the_messages_they_concern() {
    let ams = AmsServer::start(AmsOptions {
        max_body: 6_000,
        ..ams_options()
    })
    .await
    .unwrap();
    let pki = TestPki::new().unwrap();
    let host = pki.host("apel-host.example", 2).unwrap();
    let topic = "eu-egi-cloud-accounting";
    let spool = spool_with(2, 1);
    let all = spool.on_disk();
    let cfg = |token: &str, topic: &str| {
        config(&ams_cfg(
            &ams.url(),
            ams.port(),
            Some(token),
            topic,
            spool.path(),
            &host,
        ))
    };

    // 401: a wrong token is not retried and stops the run.
    let err = send::run(&cfg("wrong", topic), &quick(3))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Ams { status: 401, .. }), "{err}");
    assert!(!err.is_transient());
    assert_eq!(ams.publish_requests(), 1);
    assert_eq!(spool.on_disk(), all);

    // 404: an unknown topic.
    let err = send::run(&cfg("test-token", "no-such-topic"), &quick(3))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "AMS answered HTTP 404: Topic doesn't exist"
    );
    assert_eq!(spool.on_disk(), all);

    // 5xx: retried with back-off, then sent.
    ams.fail_next(&[503, 500]);
    let before = ams.publish_requests();
    let report = send::run(&cfg("test-token", topic), &quick(3))
        .await
        .unwrap();
    assert_eq!(report.sent, 2);
    assert_eq!(ams.publish_requests() - before, 4);
    assert!(spool.on_disk().0.is_empty());

    // 5xx beyond the retries: the run stops, the messages stay, unlocked.
    let spool = spool_with(2, 1);
    let all = spool.on_disk();
    let cfg5 = config(&ams_cfg(
        &ams.url(),
        ams.port(),
        Some("test-token"),
        topic,
        spool.path(),
        &host,
    ));
    ams.fail_next(&[502, 502]);
    let err = send::run(&cfg5, &quick(2)).await.unwrap_err();
    assert!(matches!(err, Error::Ams { status: 502, .. }), "{err}");
    assert!(err.is_transient());
    assert_eq!(spool.on_disk(), all);

    // 413: that message is kept, the others go.
    let mut spool = spool_with(1, 1);
    let big = spool.add_raw(crate::apel_send_support::apel_message(9, 20).as_bytes());
    let cfg413 = config(&ams_cfg(
        &ams.url(),
        ams.port(),
        Some("test-token"),
        topic,
        spool.path(),
        &host,
    ));
    let published = ams.published().len();
    let report = send::run(&cfg413, &quick(3)).await.unwrap();
    assert_eq!(report.sent, 1);
    assert!(
        matches!(&report.kept[..], [Error::Ams { status: 413, .. }]),
        "{:?}",
        report.kept
    );
    assert_eq!(spool.on_disk(), (vec![big], vec![]));
    assert_eq!(ams.published().len(), published + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn stomp_over_tls_with_the_host_certificate() {
    let pki = TestPki::new().unwrap();
    let server = pki.host("localhost", 2).unwrap();
    let host = pki.host("apel-host.example", 2).unwrap();
    let broker = RabbitMq::start_tls(&pki, &server).expect("RabbitMQ starts with TLS");
    let port = broker.stomp_tls_port().unwrap();
    let spool = spool_with(2, 5);
    let tls_cfg = |capath: &std::path::Path| {
        stomp_cfg(port, QUEUE, spool.path(), &host)
            .replace("use_ssl: false", "use_ssl: true")
            .replace(
                "capath: /etc/grid-security/certificates",
                &format!("capath: {}", capath.display()),
            )
    };

    // A broker whose certificate no CA in capath signed is not talked to.
    let stranger = TestPki::new().unwrap();
    let err = send::run(&config(&tls_cfg(&stranger.capath().unwrap())), &quick(1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
    assert_eq!(spool.on_disk().0.len(), 2);

    let mut subscriber = broker.subscribe(QUEUE).unwrap();
    let report = send::run(
        &config(&tls_cfg(&pki.capath().unwrap())),
        &Options::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.sent, 2);
    for m in subscriber.receive(2, WAIT).unwrap() {
        let id = m.header("empa-id").unwrap();
        assert_eq!(pki.verify(&m.body).unwrap(), spool.bodies[id]);
    }
    assert!(spool.on_disk().0.is_empty());
}
