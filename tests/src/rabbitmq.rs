//! A real RabbitMQ broker with its STOMP plugin on loopback, a STOMP subscriber that reads what
//! reached a queue, and a throw-away PKI (CA, host certificates) made with the `openssl`
//! command, whose `openssl smime -verify` checks signed messages as SSM's receiver does.
//!
//! [`RabbitMq::start`] runs Debian's `rabbitmq-server` (`/usr/lib/rabbitmq/bin`) in the
//! foreground as the current user, everything (Mnesia, logs, Erlang cookie) in a fresh
//! temporary directory, with its own `epmd` on a free port started first (so no system epmd
//! is left behind), AMQP and STOMP on free loopback ports, and a default virtual host named
//! [`VHOST`] (stomp.py, hence SSM, sends the broker host name as STOMP `host`, which
//! RabbitMQ takes as virtual host). Ready in about 7 s. Dropping it stops the broker, then
//! epmd, by their PIDs.

use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use crate::wire::tail;

/// The virtual host (and the host name to give STOMP clients).
pub const VHOST: &str = "localhost";

/// Where Debian puts the server script.
pub const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";

/// How long [`RabbitMq::start`] waits for a STOMP session.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

const POLL: Duration = Duration::from_millis(100);

/// A running RabbitMQ; stopped on drop.
#[derive(Debug)]
pub struct RabbitMq {
    server: Child,
    epmd: Child,
    stomp_port: u16,
    stomp_tls_port: Option<u16>,
    log: PathBuf,
    // Last: removed once both processes have stopped.
    dir: TempDir,
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

impl RabbitMq {
    /// Starts a broker with the STOMP plugin and waits until it accepts STOMP sessions.
    pub fn start() -> Result<Self> {
        Self::start_with(None)
    }

    /// Like [`RabbitMq::start`], with a STOMP-over-TLS listener too whose server certificate
    /// is `server` and which asks clients for a certificate of `pki`'s CA.
    pub fn start_tls(pki: &TestPki, server: &HostCredentials) -> Result<Self> {
        Self::start_with(Some((pki, server)))
    }

    fn start_with(tls: Option<(&TestPki, &HostCredentials)>) -> Result<Self> {
        if !Path::new(SERVER).is_file() {
            bail!("{SERVER} not found: run .ci/install-peers (Debian package rabbitmq-server)");
        }
        let dir = tempfile::Builder::new().prefix("egi-rabbitmq-").tempdir()?;
        let d = dir.path();
        let (epmd_port, amqp, stomp_port, dist) =
            (free_port()?, free_port()?, free_port()?, free_port()?);
        let stomp_tls_port = tls.map(|_| free_port()).transpose()?;
        let tls_conf = match (tls, stomp_tls_port) {
            (Some((pki, server)), Some(port)) => format!(
                "stomp.listeners.ssl.1 = 127.0.0.1:{port}\n\
                 ssl_options.cacertfile = {}\nssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\nssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n",
                pki.ca().display(),
                server.certificate.display(),
                server.key.display()
            ),
            _ => String::new(),
        };
        fs::write(
            d.join("rabbitmq.conf"),
            tls_conf
                + &format!(
                    "listeners.tcp.1 = 127.0.0.1:{amqp}\n\
                 stomp.listeners.tcp.1 = 127.0.0.1:{stomp_port}\n\
                 default_vhost = {VHOST}\n\
                 log.console = true\nlog.console.level = warning\nlog.file = false\n"
                ),
        )?;
        fs::write(d.join("enabled_plugins"), "[rabbitmq_stomp].\n")?;
        let log = d.join("rabbitmq.log");
        let out = fs::File::create(&log)?;
        let err = out.try_clone()?;
        // Processes last: nothing above can fail and leave them running.
        let epmd = Command::new("epmd")
            .args(["-port", &epmd_port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting epmd (Debian package erlang-base)")?;
        let env = |name: &str| d.join(name).into_os_string();
        let server = Command::new(SERVER)
            .env("HOME", d)
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env(
                "RABBITMQ_NODENAME",
                format!("egi-test-{stomp_port}@localhost"),
            )
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", env("mnesia"))
            .env("RABBITMQ_LOG_BASE", env("log"))
            .env("RABBITMQ_CONFIG_FILE", env("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", env("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", env("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", env("rabbitmq.pid"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn();
        let mut epmd = epmd;
        let server = match server {
            Ok(s) => s,
            Err(e) => {
                terminate(&mut epmd);
                return Err(e).context("starting rabbitmq-server");
            }
        };
        let mut broker = Self {
            server,
            epmd,
            stomp_port,
            stomp_tls_port,
            log,
            dir,
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(mut s) = Subscriber::connect(stomp_port) {
                s.close();
                return Ok(broker);
            }
            if let Ok(Some(status)) = broker.server.try_wait() {
                bail!(
                    "rabbitmq-server exited ({status}):\n{}",
                    tail(&broker.log, 30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "RabbitMQ STOMP not ready within {READY_TIMEOUT:?}:\n{}",
                    tail(&broker.log, 30)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// The STOMP port on 127.0.0.1.
    pub fn stomp_port(&self) -> u16 {
        self.stomp_port
    }

    /// The STOMP-over-TLS port on 127.0.0.1 ([`RabbitMq::start_tls`] only).
    pub fn stomp_tls_port(&self) -> Option<u16> {
        self.stomp_tls_port
    }

    /// The broker's directory (logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A STOMP subscriber to `destination` (such as `/queue/apel`).
    pub fn subscribe(&self, destination: &str) -> Result<Subscriber> {
        let mut s = Subscriber::connect(self.stomp_port)?;
        s.write(&format!(
            "SUBSCRIBE\nid:0\ndestination:{destination}\nack:auto\n\n\0"
        ))?;
        Ok(s)
    }
}

impl Drop for RabbitMq {
    fn drop(&mut self) {
        terminate(&mut self.server);
        terminate(&mut self.epmd);
    }
}

fn terminate(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A message a [`Subscriber`] received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header lines (`name:value`, not unescaped).
    pub headers: Vec<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The first raw value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find_map(|h| h.strip_prefix(name)?.strip_prefix(':'))
    }
}

/// A blocking STOMP 1.2 session that reads `MESSAGE` frames (written apart from the sender's
/// own STOMP code, so that the two do not share mistakes).
#[derive(Debug)]
pub struct Subscriber {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Subscriber {
    fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut s = Self {
            stream,
            buf: Vec::new(),
        };
        s.write(&format!(
            "CONNECT\naccept-version:1.2\nhost:{VHOST}\nlogin:guest\npasscode:guest\n\n\0"
        ))?;
        let (command, headers, body) = s.frame()?;
        if command != "CONNECTED" {
            bail!("{command} {headers:?}: {}", String::from_utf8_lossy(&body));
        }
        Ok(s)
    }

    fn write(&mut self, frame: &str) -> Result<()> {
        self.stream.write_all(frame.as_bytes())?;
        Ok(())
    }

    fn close(&mut self) {
        let _ = self.write("DISCONNECT\n\n\0");
    }

    fn frame(&mut self) -> Result<(String, Vec<String>, Vec<u8>)> {
        loop {
            while self.buf.first().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                self.buf.remove(0);
            }
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let mut lines = head.lines().map(str::to_owned);
                let command = lines.next().unwrap_or_default();
                let headers: Vec<String> = lines.collect();
                let length = headers
                    .iter()
                    .find_map(|h| h.strip_prefix("content-length:"))
                    .map(str::parse::<usize>)
                    .transpose()?;
                let start = end + 2;
                let stop = match length {
                    Some(n) if self.buf.len() > start + n => Some(start + n),
                    Some(_) => None,
                    None => self.buf[start..]
                        .iter()
                        .position(|b| *b == 0)
                        .map(|p| start + p),
                };
                if let Some(stop) = stop {
                    let body = self.buf[start..stop].to_vec();
                    self.buf.drain(..=stop);
                    return Ok((command, headers, body));
                }
            }
            let mut chunk = [0u8; 65536];
            let n = self
                .stream
                .read(&mut chunk)
                .context("reading from RabbitMQ")?;
            if n == 0 {
                bail!("RabbitMQ closed the STOMP connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Receives `n` messages, failing if they do not all come within `timeout`.
    pub fn receive(&mut self, n: usize, timeout: Duration) -> Result<Vec<Received>> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if Instant::now() > deadline {
                bail!("{} of {n} messages within {timeout:?}", out.len());
            }
            match self.frame() {
                Ok((command, headers, body)) if command == "MESSAGE" => {
                    out.push(Received { headers, body });
                }
                Ok((command, headers, body)) => {
                    bail!("{command} {headers:?}: {}", String::from_utf8_lossy(&body))
                }
                Err(e)
                    if e.downcast_ref::<std::io::Error>().is_some_and(|e| {
                        matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        )
                    }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Asserts that no message comes within `wait` (a bounded wait for absence).
    pub fn nothing_within(&mut self, wait: Duration) -> Result<()> {
        self.stream.set_read_timeout(Some(wait))?;
        let got = self.frame();
        self.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        match got {
            Ok((command, headers, _)) => bail!("unexpected {command} {headers:?}"),
            Err(_) => Ok(()),
        }
    }
}

/// A throw-away CA in a temporary directory, issuing host certificates with the `openssl`
/// command.
#[derive(Debug)]
pub struct TestPki {
    dir: TempDir,
}

/// A host certificate and its key (PEM files).
#[derive(Debug, Clone)]
pub struct HostCredentials {
    /// The certificate.
    pub certificate: PathBuf,
    /// The key.
    pub key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .context("running openssl (Debian package openssl)")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl TestPki {
    /// A new CA (`ca.pem`).
    pub fn new() -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("egi-pki-").tempdir()?;
        openssl(
            dir.path(),
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
                "/DC=test/CN=Throw-away Test CA",
            ],
        )?;
        fs::write(
            dir.path().join("host.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n",
        )?;
        Ok(Self { dir })
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Issues a certificate for `name`, valid `days` days from now (0: expired at once).
    pub fn host(&self, name: &str, days: u32) -> Result<HostCredentials> {
        let d = self.dir.path();
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let subject = format!("/DC=test/CN={name}");
        openssl(
            d,
            &[
                "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj",
                &subject,
            ],
        )?;
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                &days.to_string(),
                "-extfile",
                "host.ext",
            ],
        )?;
        Ok(HostCredentials {
            certificate: d.join(pem),
            key: d.join(key),
        })
    }

    /// A CA directory as `capath` wants it (`/etc/grid-security/certificates`): the CA
    /// certificate under its subject hash.
    pub fn capath(&self) -> Result<PathBuf> {
        let dir = self.dir.path().join("certificates");
        if !dir.is_dir() {
            fs::create_dir(&dir)?;
            let out = Command::new("openssl")
                .args(["x509", "-hash", "-noout", "-in"])
                .arg(self.ca())
                .output()
                .context("running openssl x509 -hash")?;
            let hash = String::from_utf8(out.stdout)?.trim().to_owned();
            fs::copy(self.ca(), dir.join(format!("{hash}.0")))?;
        }
        Ok(dir)
    }

    /// Verifies an S/MIME signed message against this CA as SSM's receiver does (`openssl
    /// smime -verify`), and returns the signed text with its MIME header removed and line
    /// ends as Python's universal newlines read them (what the receiver stores).
    pub fn verify(&self, signed: &[u8]) -> Result<Vec<u8>> {
        let mut child = Command::new("openssl")
            .args(["smime", "-verify", "-text", "-CAfile"])
            .arg(self.ca())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("running openssl smime -verify")?;
        let mut input = signed.to_vec();
        input.extend_from_slice(b"\n\n");
        child
            .stdin
            .take()
            .context("openssl stdin")?
            .write_all(&input)?;
        let out = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || !stderr.contains("Verification successful") {
            bail!("openssl smime -verify failed: {stderr}");
        }
        let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
        Ok(text.into_bytes())
    }
}
