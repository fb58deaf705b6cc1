//! A scripted token endpoint on loopback for unit tests of the token manager: discovery, an
//! empty key set, and token answers played from a script, every request recorded.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::client::CheckinClient;
use crate::http::HttpOptions;

/// One scripted token answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) delay: Duration,
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Reply {
    /// A 200 token answer.
    pub(crate) fn tokens(access: &str, refresh: Option<&str>, id_token: Option<&str>) -> Self {
        let mut body = serde_json::json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3600,
        });
        if let Some(r) = refresh {
            body["refresh_token"] = r.into();
        }
        if let Some(i) = id_token {
            body["id_token"] = i.into();
        }
        Self {
            delay: Duration::ZERO,
            status: 200,
            body: body.to_string(),
        }
    }

    /// An OAuth error answer.
    pub(crate) fn error(status: u16, code: &str) -> Self {
        Self {
            delay: Duration::ZERO,
            status,
            body: serde_json::json!({ "error": code }).to_string(),
        }
    }

    /// This answer after `delay`.
    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// The scripted provider; dropped, it stops accepting.
#[derive(Debug)]
pub(crate) struct TestProvider {
    pub(crate) issuer: String,
    script: Arc<Mutex<VecDeque<Reply>>>,
    forms: Arc<Mutex<Vec<HashMap<String, String>>>>,
    pub(crate) received: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestProvider {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://{}/realm", listener.local_addr().expect("addr"));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        let forms = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(tokio::sync::Notify::new());
        let shared = (
            issuer.clone(),
            Arc::clone(&script),
            Arc::clone(&forms),
            Arc::clone(&received),
            Arc::new(AtomicBool::new(false)),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = serve(
                        stream, &shared.0, &shared.1, &shared.2, &shared.3, &shared.4,
                    )
                    .await;
                });
            }
        });
        Self {
            issuer,
            script,
            forms,
            received,
            task,
        }
    }

    /// Queues token answers.
    pub(crate) fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.script.lock().expect("script").extend(replies);
    }

    /// The `refresh_token` of each token request so far.
    pub(crate) fn refresh_tokens(&self) -> Vec<String> {
        self.forms
            .lock()
            .expect("forms")
            .iter()
            .map(|f| f.get("refresh_token").cloned().unwrap_or_default())
            .collect()
    }

    /// A well-formed ID token for `alice` signed by a key the provider never published: a
    /// client fetches the key set again to look for it (and the key set fails after the
    /// first fetch).
    pub(crate) fn id_token_of_unknown_key(&self) -> String {
        let header = r#"{"alg":"RS256","kid":"unknown","typ":"JWT"}"#;
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": "alice",
            "aud": "notebooks",
            "iat": 1,
            "exp": 4_102_444_800u64,
        });
        format!(
            "{}.{}.AAAA",
            base64url(header.as_bytes()),
            base64url(claims.to_string().as_bytes())
        )
    }

    /// A client of it with this request timeout.
    pub(crate) async fn client(&self, timeout: Duration) -> CheckinClient {
        let http = HttpOptions {
            timeout,
            token_timeout: timeout,
            ..HttpOptions::default()
        };
        CheckinClient::builder("notebooks")
            .http(http)
            .jwks_min_refetch(Duration::ZERO)
            .discover(&self.issuer)
            .await
            .expect("discovery")
    }
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

async fn serve(
    mut stream: TcpStream,
    issuer: &str,
    script: &Mutex<VecDeque<Reply>>,
    forms: &Mutex<Vec<HashMap<String, String>>>,
    received: &tokio::sync::Notify,
    jwks_served: &AtomicBool,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, length) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let reply = match path.as_str() {
        "/realm/.well-known/openid-configuration" => Reply {
            delay: Duration::ZERO,
            status: 200,
            body: serde_json::json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/auth"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/certs"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
            })
            .to_string(),
        },
        // Served once (at discovery), then failing.
        "/realm/certs" if !jwks_served.swap(true, Ordering::SeqCst) => Reply {
            delay: Duration::ZERO,
            status: 200,
            body: r#"{"keys":[]}"#.into(),
        },
        "/realm/certs" => Reply::error(503, "temporarily_unavailable"),
        "/realm/token" => {
            let form = url::form_urlencoded::parse(&buf[head_end..])
                .into_owned()
                .collect();
            forms.lock().expect("forms").push(form);
            received.notify_waiters();
            script
                .lock()
                .expect("script")
                .pop_front()
                .unwrap_or_else(|| Reply::error(500, "server_error"))
        }
        _ => Reply::error(404, "not_found"),
    };
    tokio::time::sleep(reply.delay).await;
    let answer = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    stream.write_all(answer.as_bytes()).await?;
    stream.shutdown().await
}
