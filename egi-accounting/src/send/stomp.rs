//! A STOMP 1.2 client for sending, as SSM's STOMP mode does: `CONNECT` (no login: the broker
//! knows the host by its TLS client certificate), then per message a `SEND` with
//! `destination`, `receipt` and `empa-id` headers (both the element id), waiting for the
//! broker's `RECEIPT` before the element may be removed; `DISCONNECT` at the end.
//!
//! STOMP framing is written by hand: the Rust STOMP crates are unmaintained (`stomp`, last
//! release 2016, on tokio 0.1) or client frameworks around subscriptions without TLS client
//! certificates; what a sender needs is three frames and a parser of the answers, below,
//! pure and tested.

use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::config::StompBroker;
use super::dirq::ElementId;
use super::error::{Error, Result};

/// One STOMP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// `CONNECT`, `SEND`, `RECEIPT`, `ERROR`, ...
    pub command: String,
    /// Headers in order (the first of a repeated header wins, as STOMP 1.2 says).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            ':' => out.push_str("\\c"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(value: &str) -> std::result::Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('c') => out.push(':'),
            other => return Err(format!("undefined escape \\{}", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

impl Frame {
    /// A frame without body.
    pub fn new(command: &str, headers: &[(&str, &str)]) -> Self {
        Self {
            command: command.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: Vec::new(),
        }
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The bytes on the wire; a body gets a `content-length` header.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + 128);
        out.extend_from_slice(self.command.as_bytes());
        out.push(b'\n');
        // STOMP 1.2: CONNECT and CONNECTED headers are not escaped.
        let raw = matches!(self.command.as_str(), "CONNECT" | "CONNECTED");
        for (k, v) in &self.headers {
            let (k, v) = if raw {
                (k.clone(), v.clone())
            } else {
                (escape(k), escape(v))
            };
            out.extend_from_slice(format!("{k}:{v}\n").as_bytes());
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        out.push(b'\n');
        out.extend_from_slice(&self.body);
        out.push(0);
        out
    }

    /// Parses the first frame of `buf`: `Ok(None)` when more bytes are needed, otherwise
    /// the frame and how many bytes it took (heart-beat end-of-lines before it included).
    pub fn parse(buf: &[u8]) -> std::result::Result<Option<(Frame, usize)>, String> {
        let start = buf
            .iter()
            .position(|&b| b != b'\n' && b != b'\r')
            .unwrap_or(buf.len());
        let rest = &buf[start..];
        // Headers end at the first empty line: an end of line (LF or CRLF) right after one.
        let head_end = rest.iter().enumerate().find_map(|(i, &b)| {
            if b != b'\n' {
                return None;
            }
            match (rest.get(i + 1), rest.get(i + 2)) {
                (Some(b'\n'), _) => Some(i + 2),
                (Some(b'\r'), Some(b'\n')) => Some(i + 3),
                _ => None,
            }
        });
        let Some(head_end) = head_end else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&rest[..head_end])
            .map_err(|_| "frame headers are not UTF-8".to_owned())?;
        let mut lines = head.lines();
        let command = lines
            .next()
            .unwrap_or_default()
            .trim_end_matches('\r')
            .to_owned();
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(format!("not a STOMP command: {command:?}"));
        }
        let raw = command == "CONNECTED";
        let mut headers = Vec::new();
        for line in lines {
            let line = line.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("header line without colon: {line:?}"))?;
            if raw {
                headers.push((k.to_owned(), v.to_owned()));
            } else {
                headers.push((unescape(k)?, unescape(v)?));
            }
        }
        let mut frame = Frame {
            command,
            headers,
            body: Vec::new(),
        };
        let body = &rest[head_end..];
        let (len, end) = match frame.header("content-length") {
            Some(n) => {
                let n: usize = n.parse().map_err(|_| format!("content-length {n:?}"))?;
                if body.len() <= n {
                    return Ok(None);
                }
                if body[n] != 0 {
                    return Err("body longer than its content-length".to_owned());
                }
                (n, n + 1)
            }
            None => match body.iter().position(|&b| b == 0) {
                Some(n) => (n, n + 1),
                None => return Ok(None),
            },
        };
        frame.body = body[..len].to_vec();
        Ok(Some((frame, start + head_end + end)))
    }
}

/// A byte stream to the broker: TCP, or TLS over TCP (chosen at run time, hence `dyn`).
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How long to wait for the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// For the TCP connection, TLS handshake and `CONNECTED` (SSM: 10 s).
    pub connect: Duration,
    /// For each message's `RECEIPT`.
    pub receipt: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            receipt: Duration::from_secs(30),
        }
    }
}

/// TLS material for `use_ssl`: the host certificate as client certificate, and the CA
/// directory that verifies the broker (the system's CAs without one).
#[derive(Debug, Clone, Copy)]
pub struct TlsFiles<'a> {
    /// PEM certificate.
    pub certificate: &'a std::path::Path,
    /// PEM key.
    pub key: &'a std::path::Path,
    /// CA directory (hashed, as `/etc/grid-security/certificates`).
    pub capath: Option<&'a std::path::Path>,
}

/// A connected STOMP session.
pub struct StompConnection {
    stream: Box<dyn Stream>,
    buf: Vec<u8>,
    broker: String,
    timeouts: Timeouts,
}

impl std::fmt::Debug for StompConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StompConnection")
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

impl StompConnection {
    /// Connects (TLS when the broker says `use_ssl`) and logs in with `CONNECT`.
    pub async fn connect(
        broker: &StompBroker,
        tls: TlsFiles<'_>,
        timeouts: Timeouts,
    ) -> Result<Self> {
        let name = broker.to_string();
        let opened = tokio::time::timeout(timeouts.connect, async {
            let tcp = TcpStream::connect((broker.host.as_str(), broker.port))
                .await
                .map_err(|source| Error::Connect {
                    broker: name.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Stream> = if broker.use_ssl {
                Box::new(tls_connect(&broker.host, tcp, tls, &name).await?)
            } else {
                Box::new(tcp)
            };
            let mut conn = Self {
                stream,
                buf: Vec::with_capacity(4096),
                broker: name.clone(),
                timeouts,
            };
            let connect = Frame::new(
                "CONNECT",
                &[
                    ("accept-version", "1.2"),
                    ("host", &broker.vhost),
                    ("heart-beat", "0,0"),
                ],
            );
            conn.write(&connect).await?;
            let answer = conn.read_frame().await?;
            match answer.command.as_str() {
                "CONNECTED" => Ok(conn),
                "ERROR" => Err(refused(&answer)),
                other => Err(conn.broken(format!("{other} instead of CONNECTED"))),
            }
        })
        .await;
        opened.unwrap_or_else(|_| {
            Err(Error::Timeout {
                what: format!("no STOMP session with {name}"),
                after: timeouts.connect,
            })
        })
    }

    fn broken(&self, reason: impl Into<String>) -> Error {
        Error::Stomp {
            broker: self.broker.clone(),
            reason: reason.into(),
        }
    }

    async fn write(&mut self, frame: &Frame) -> Result<()> {
        let bytes = frame.encode();
        let written = async {
            self.stream.write_all(&bytes).await?;
            self.stream.flush().await
        }
        .await;
        written.map_err(|e| self.broken(format!("cannot write: {e}")))
    }

    async fn read_frame(&mut self) -> Result<Frame> {
        loop {
            match Frame::parse(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(why) => return Err(self.broken(why)),
            }
            let mut chunk = [0u8; 8192];
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| self.broken(format!("cannot read: {e}")))?;
            if n == 0 {
                return Err(self.broken("connection closed by the broker"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one signed message and waits for the broker's receipt.
    pub async fn send(&mut self, destination: &str, id: &ElementId, message: &str) -> Result<()> {
        let mut frame = Frame::new(
            "SEND",
            &[
                ("destination", destination),
                ("receipt", id.as_str()),
                ("empa-id", id.as_str()),
            ],
        );
        frame.body = message.as_bytes().to_vec();
        self.write(&frame).await?;
        let after = self.timeouts.receipt;
        let waited = tokio::time::timeout(after, async {
            loop {
                let answer = self.read_frame().await?;
                match answer.command.as_str() {
                    "RECEIPT" if answer.header("receipt-id") == Some(id.as_str()) => {
                        return Ok(());
                    }
                    "ERROR" => return Err(refused(&answer)),
                    // A late receipt of an earlier attempt, or a MESSAGE: not ours.
                    _ => tracing::debug!(command = %answer.command, "ignoring frame"),
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| {
            Err(Error::Timeout {
                what: format!("no receipt for {id}"),
                after,
            })
        })
    }

    /// Says goodbye (best effort: everything sent is confirmed already).
    pub async fn disconnect(mut self) {
        let bye = Frame::new("DISCONNECT", &[("receipt", "disconnect")]);
        if self.write(&bye).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.read_frame()).await;
        }
        let _ = self.stream.shutdown().await;
    }
}

fn refused(frame: &Frame) -> Error {
    let mut message = frame.header("message").unwrap_or("ERROR frame").to_owned();
    let body = String::from_utf8_lossy(&frame.body);
    let body = body.trim();
    if !body.is_empty() {
        message.push_str(": ");
        message.push_str(&body.chars().take(300).collect::<String>());
    }
    Error::BrokerRefused { message }
}

async fn tls_connect(
    host: &str,
    tcp: TcpStream,
    files: TlsFiles<'_>,
    name: &str,
) -> Result<tokio_openssl::SslStream<TcpStream>> {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
    let fail = |e| Error::OpenSsl("set up TLS to the broker", e);
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(fail)?;
    builder
        .set_certificate_chain_file(files.certificate)
        .map_err(fail)?;
    builder
        .set_private_key_file(files.key, SslFiletype::PEM)
        .map_err(fail)?;
    if let Some(capath) = files.capath {
        builder
            .load_verify_locations(None, Some(capath))
            .map_err(fail)?;
    }
    let ssl = builder
        .build()
        .configure()
        .and_then(|c| c.into_ssl(host))
        .map_err(fail)?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(fail)?;
    Pin::new(&mut stream)
        .connect()
        .await
        .map_err(|e| Error::Connect {
            broker: name.to_owned(),
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_escapes_and_bodies() {
        let mut f = Frame::new("SEND", &[("destination", "/queue/a:b"), ("x", "1\n2\\")]);
        f.body = b"hello\0world".to_vec();
        let bytes = f.encode();
        assert!(bytes.starts_with(b"SEND\ndestination:/queue/a\\cb\nx:1\\n2\\\\\n"));
        let (g, used) = Frame::parse(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(g.header("content-length"), Some("11"));
        assert_eq!(g.body, f.body);
        assert_eq!(g.header("destination"), Some("/queue/a:b"));
        assert_eq!(g.header("x"), Some("1\n2\\"));
        // Incomplete input asks for more, at every cut.
        for cut in 0..bytes.len() {
            assert_eq!(Frame::parse(&bytes[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn broker_frames_parse_with_heart_beats_and_crlf() {
        let wire = b"\n\r\nRECEIPT\r\nreceipt-id:5f/0a\r\n\r\n\0\nERROR\nmessage:no\n\nwhy\0";
        let (receipt, used) = Frame::parse(wire).unwrap().unwrap();
        assert_eq!(receipt.command, "RECEIPT");
        assert_eq!(receipt.header("receipt-id"), Some("5f/0a"));
        let (error, _) = Frame::parse(&wire[used..]).unwrap().unwrap();
        assert_eq!(error.command, "ERROR");
        assert_eq!(error.body, b"why");
        let err = refused(&error);
        assert_eq!(err.to_string(), "STOMP broker refused: no: why");
        // CONNECTED headers are not unescaped.
        let (c, _) = Frame::parse(b"CONNECTED\nserver:a\\b\n\n\0")
            .unwrap()
            .unwrap();
        assert_eq!(c.header("server"), Some("a\\b"));
    }

    #[test]
    fn garbage_is_an_error_not_a_hang() {
        assert!(Frame::parse(b"HTTP/1.1 400 Bad Request\r\n\r\n").is_err());
        assert!(Frame::parse(b"MESSAGE\nno colon\n\n\0").is_err());
        assert!(Frame::parse(b"MESSAGE\nx:\\t\n\n\0").is_err());
        assert!(Frame::parse(b"MESSAGE\ncontent-length:1\n\nab\0").is_err());
    }
}
