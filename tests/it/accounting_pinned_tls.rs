//! A real Prometheus serving HTTPS with a self-signed certificate that is its own CA (what
//! `openssl req -x509` makes), given to us as `verify = /path/cert.pem` or `ca_cert`, as an
//! operator pins it for curl. rustls alone refuses such a certificate as the server's
//! (`CaUsedAsEndEntity`); egi-accounting pins it, still checking its name. The records must
//! be byte for byte those of the same history read as a snapshot.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use egi_accounting::apel::Limits;
use egi_accounting::config::Config;
use egi_accounting::job;
use egi_accounting::metrics::{MetricsSource, Window};
use egi_accounting::prometheus::PrometheusSource;
use egi_accounting::snapshot::SnapshotSource;
use egi_accounting::spool::WriterSink;
use egi_test_harness::prometheus::Tools;
use egi_test_harness::synthetic::Params;

use crate::accounting_tls::openssl;
use crate::helpers::{sample_path, window};

/// `openssl req -x509` with its defaults: self-signed, `basicConstraints = CA:TRUE`.
fn self_signed(dir: &Path, name: &str, san: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            &format!("subjectAltName={san}"),
        ],
    );
}

/// Prometheus over HTTPS (its `--web.config.file`), stopped with SIGTERM on drop.
struct TlsPrometheus {
    child: Child,
    port: u16,
}

impl Drop for TlsPrometheus {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Backfills the bundled sample and serves it over HTTPS with `cert.pem`/`cert.key` of `dir`.
fn start(dir: &Path) -> TlsPrometheus {
    let tools = Tools::find().expect("prometheus and promtool (.ci/install-peers)");
    let data = dir.join("data");
    std::fs::create_dir(&data).unwrap();
    tools
        .create_blocks(&sample_path(), &data, &dir.join("promtool.log"))
        .unwrap();
    std::fs::write(dir.join("prometheus.yml"), "scrape_configs: []\n").unwrap();
    std::fs::write(
        dir.join("web.yml"),
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: cert.key\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let log = dir.join("prometheus.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(&tools.prometheus)
        .arg("--config.file=prometheus.yml")
        .arg("--web.config.file=web.yml")
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("prometheus starts");
    let mut server = TlsPrometheus { child, port };
    let deadline = Instant::now() + egi_test_harness::prometheus::READY_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Server is ready to receive web requests") {
            return server;
        }
        let exited = server.child.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "prometheus did not start ({exited:?}):\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn run_text(source: &dyn MetricsSource, config: &Config, w: &Window) -> String {
    let mut sink = WriterSink::new(Vec::new(), "buffer");
    job::run(source, w, &config.records, Limits::default(), &mut sink)
        .await
        .expect("accounting run");
    String::from_utf8(sink.into_inner()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pinned_self_signed_certificate_reaches_a_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), "cert", "DNS:localhost");
    self_signed(dir.path(), "stranger", "DNS:localhost");
    let server = start(dir.path());
    let w = window(Params::sample().end, "24h");
    let cert = dir.path().join("cert.pem");
    let ini = |host: &str, key: &str, pem: &Path| {
        format!(
            "[prometheus]\nurl = https://{host}:{}\n{key} = {}\nretries = 0\n",
            server.port,
            pem.display()
        )
    };
    let snapshot = SnapshotSource::from_path(sample_path()).unwrap();
    let want = run_text(&snapshot, &Config::from_ini_str("", |_| None).unwrap(), &w).await;
    assert!(want.contains("VMUUID"), "{want}");

    // `verify = <file>` (the requests convention) and `ca_cert`.
    for key in ["verify", "ca_cert"] {
        let config = Config::from_ini_str(&ini("localhost", key, &cert), |_| None).unwrap();
        let source = PrometheusSource::new(config.prometheus.clone()).unwrap();
        let got = run_text(&source, &config, &w).await;
        assert_eq!(got, want, "{key}");
    }

    // The pin is that certificate, nothing else: another self-signed certificate for the
    // same name is refused, and so is the right one reached by a name it does not carry
    // (its subjectAltName is `localhost` only).
    let stranger = dir.path().join("stranger.pem");
    for (host, pem) in [("localhost", &stranger), ("127.0.0.1", &cert)] {
        let config = Config::from_ini_str(&ini(host, "ca_cert", pem), |_| None).unwrap();
        let source = PrometheusSource::new(config.prometheus.clone()).unwrap();
        let err = source.pods(&w).await.expect_err("refused");
        assert!(
            egi_examples::with_sources(&err)
                .to_lowercase()
                .contains("certificate"),
            "{host}: {}",
            egi_examples::with_sources(&err)
        );
    }
}
