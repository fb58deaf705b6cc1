//! Fault injection over loopback: a tiny scripted HTTP/1.1 server answers what a real
//! Prometheus cannot be made to answer (errors, hangs, cut bodies, redirects).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::metrics::{Filter, LookBack, Timestamp};

mod http;
mod parse;
mod setup;

const POD_BODY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"uid":"u1","namespace":"hub","pod":"jupyter-a"},"value":[1700000000.123,"1699990000"]}]}}"#;

/// What the server does with the n-th request (the last entry repeats).
#[derive(Debug, Clone)]
enum Reply {
    /// Write these bytes, then close the connection.
    Raw(Vec<u8>),
    /// Never answer (keep the connection open).
    Hang,
    /// Write these bytes, then keep the connection open without writing more.
    Stall(Vec<u8>),
}

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(&self.body)
            .into_owned()
            .collect()
    }
}

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start(replies: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let log = Arc::clone(&log);
                let replies = replies.clone();
                tokio::spawn(handle(stream, log, replies));
            }
        });
        Self { addr, seen, task }
    }

    fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn handle(mut stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>, replies: Vec<Reply>) {
    let Some(request) = read_request(&mut stream).await else {
        return;
    };
    let reply = {
        let mut log = log.lock().unwrap();
        log.push(request);
        replies[(log.len() - 1).min(replies.len() - 1)].clone()
    };
    match reply {
        Reply::Raw(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.shutdown().await;
        }
        Reply::Hang => tokio::time::sleep(Duration::from_secs(60)).await,
        Reply::Stall(bytes) => {
            let _ = stream.write_all(&bytes).await;
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
    }
}

async fn read_request(stream: &mut TcpStream) -> Option<Seen> {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8(data[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

/// A complete response with a Content-Length.
fn http(status: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(body);
    Reply::Raw(text.into_bytes())
}

fn json(status: &str, body: &str) -> Reply {
    http(status, &[("Content-Type", "application/json")], body)
}

fn prometheus_error(error_type: &str, error: &str) -> String {
    format!(r#"{{"status":"error","errorType":"{error_type}","error":"{error}"}}"#)
}

fn window() -> Window {
    Window {
        at: Timestamp::from_millis(1_700_000_000_123),
        range: LookBack::parse("4h").unwrap(),
        filter: Filter::default(),
    }
}

fn config(url: Url) -> PrometheusConfig {
    PrometheusConfig {
        timeout: Duration::from_secs(5),
        retries: 2,
        backoff: Duration::from_millis(1),
        ..PrometheusConfig::new(url)
    }
}

fn source(config: PrometheusConfig) -> PrometheusSource {
    PrometheusSource::build(config, false).unwrap()
}
