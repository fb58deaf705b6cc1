//! TLS towards Prometheus, over a real TLS server on loopback (Python's `ssl` module with a
//! certificate from a throw-away CA made by the `openssl` command): verification is on by
//! default, a custom CA makes the server trusted, and turning verification off is explicit.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use egi_accounting::Error;
use egi_accounting::metrics::MetricsSource;
use egi_accounting::prometheus::{PrometheusConfig, PrometheusSource};

use crate::helpers::window;

const SERVER: &str = r#"
import http.server, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"uid":"u1","namespace":"hub","pod":"jupyter-a"},"value":[1700000000,"1699990000"]}]}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

/// Runs `openssl` in `dir`; panics with its stderr if it fails.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a server certificate for 127.0.0.1 signed by it.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=egi test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &Path) -> (Server, u16) {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SERVER)
        .arg(dir.join("server.pem"))
        .arg(dir.join("server.key"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line.trim().parse().expect("the server prints its port");
    (Server(child), port)
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_is_verified_by_default_and_a_custom_ca_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let (_server, port) = start(dir.path());
    let url: url::Url = format!("https://127.0.0.1:{port}").parse().unwrap();
    let w = window(1_700_000_000, "1h");

    let mut config = PrometheusConfig::new(url);
    config.retries = 0;
    let err = PrometheusSource::new(config.clone())
        .unwrap()
        .pods(&w)
        .await
        .expect_err("an unknown CA must be refused");
    assert!(matches!(err, Error::Connect(_)), "{err:?}");
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = source {
        chain.push_str(&format!("{e}; "));
        source = e.source();
    }
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");

    let mut trusted = config.clone();
    trusted.ca_cert = Some(dir.path().join("ca.pem"));
    let pods = PrometheusSource::new(trusted)
        .unwrap()
        .pods(&w)
        .await
        .unwrap();
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].uid.0, "u1");

    let mut insecure = config;
    insecure.verify_tls = false;
    let pods = PrometheusSource::new(insecure)
        .unwrap()
        .pods(&w)
        .await
        .unwrap();
    assert_eq!(pods.len(), 1);
}
