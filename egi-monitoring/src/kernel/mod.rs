//! Kernels of a single-user server, reached through the proxy: create, execute code over the
//! kernel websocket, delete.
//!
//! [`protocol`] builds the messages and collects the replies; this module only moves them.

pub mod protocol;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::hub::{HubClient, unexpected};
use crate::limits::MAX_WS_MESSAGE_BYTES;
use protocol::{Collector, Execution, cell_execute_request, execute_request, new_id};

/// Creates a kernel (`POST {server}api/kernels`, 201) and returns its id.
pub async fn create(client: &HubClient, server_path: &str, kernel_name: &str) -> Result<String> {
    let url = client.server_url(server_path, &["api", "kernels"]);
    let body = serde_json::json!({ "name": kernel_name });
    let (status, body, what) = client.send(Method::POST, url, Some(&body)).await?;
    if status != StatusCode::CREATED {
        return Err(unexpected(&what, status.as_u16(), &body));
    }
    let kernel: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| Error::Malformed {
            what: what.clone(),
            message: e.to_string(),
        })?;
    kernel["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::Malformed {
            what,
            message: "no kernel id".into(),
        })
}

/// Deletes a kernel (`DELETE {server}api/kernels/{id}`, 204).
pub async fn delete(client: &HubClient, server_path: &str, id: &str) -> Result<()> {
    let url = client.server_url(server_path, &["api", "kernels", id]);
    let (status, body, what) = client.send(Method::DELETE, url, None).await?;
    if status != StatusCode::NO_CONTENT {
        return Err(unexpected(&what, status.as_u16(), &body));
    }
    Ok(())
}

/// An open websocket to a kernel's channels.
#[derive(Debug)]
pub struct Channels {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    session: String,
    username: String,
}

impl Channels {
    /// Opens `{server}api/kernels/{id}/channels` (ws or wss, like the proxy's URL), with the
    /// token; `username` goes into the message headers.
    pub async fn connect(
        client: &HubClient,
        server_path: &str,
        id: &str,
        username: &str,
    ) -> Result<Self> {
        let mut url = client.server_url(server_path, &["api", "kernels", id, "channels"]);
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| Error::Config(format!("cannot make a websocket URL of {url}")))?;
        let session = new_id();
        url.query_pairs_mut().append_pair("session_id", &session);
        let mut request = url.as_str().into_client_request()?;
        let token = HeaderValue::from_str(&client.authorization())
            .map_err(|_| Error::Config("the API token is not a valid header value".into()))?;
        request.headers_mut().insert("authorization", token);
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_WS_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_WS_MESSAGE_BYTES));
        let (ws, _) = match tokio_tungstenite::connect_async_with_config(
            request,
            Some(config),
            // TCP_NODELAY: the next request must not wait behind an unacknowledged
            // `acknowledge` frame (see there).
            true,
        )
        .await
        {
            Ok(ok) => ok,
            Err(tungstenite::Error::Http(response)) => {
                let what = format!("GET {}", url.path());
                let body = response.body().clone().unwrap_or_default();
                return Err(unexpected(&what, response.status().as_u16(), &body));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Self {
            ws,
            session,
            username: username.to_owned(),
        })
    }

    /// Executes `code` and collects stdout, stderr, the result and any exception, until
    /// both the `execute_reply` and the `idle` status arrived. Bound it with a timeout.
    pub async fn execute(&mut self, code: &str) -> Result<Execution> {
        self.send_and_collect(code, execute_request).await
    }

    /// Executes a notebook cell: as [`Channels::execute`], with the execution stored in the
    /// kernel's history (execution counts 1, 2, 3 as in Jupyter and papermill).
    pub async fn execute_cell(&mut self, code: &str) -> Result<Execution> {
        self.send_and_collect(code, cell_execute_request).await
    }

    async fn send_and_collect(
        &mut self,
        code: &str,
        build: fn(&str, &str, &str, &str, &str) -> serde_json::Value,
    ) -> Result<Execution> {
        let msg_id = new_id();
        let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let request = build(code, &msg_id, &self.session, &self.username, &date);
        self.ws.send(Message::text(request.to_string())).await?;
        let mut collector = Collector::new(msg_id);
        while let Some(message) = self.ws.next().await {
            match message.map_err(ws_error)? {
                Message::Text(text) => {
                    let Ok(json) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                        tracing::debug!("ignoring a non-JSON kernel message");
                        continue;
                    };
                    if collector.feed(&json) {
                        return Ok(collector.finish());
                    }
                    self.acknowledge().await?;
                }
                Message::Close(_) => return Err(Error::WebSocketClosed),
                _ => {}
            }
        }
        Err(Error::WebSocketClosed)
    }

    /// Sends an unsolicited, empty Pong (RFC 6455 5.5.3: a one-way heartbeat, not answered).
    ///
    /// jupyter_server writes the kernel's messages of one execution (`busy`, `execute_input`,
    /// outputs, `execute_reply`, `idle`) as separate small websocket frames on a socket with
    /// Nagle's algorithm on (tornado turns `TCP_NODELAY` back off after the upgrade and the
    /// kernel handler never calls `set_nodelay(True)`). With only the first frame
    /// acknowledged, the rest waits in the server's send queue until the receiver's delayed
    /// ACK, 40 ms on Linux, for every cell. A frame from us carries that ACK at once, directly
    /// or through the proxy (which forwards it on its own socket to the server); 6 bytes per
    /// kernel message.
    async fn acknowledge(&mut self) -> Result<()> {
        self.ws.send(Message::Pong(Default::default())).await?;
        Ok(())
    }

    /// Closes the websocket, giving up after [`CLOSE_TIMEOUT`] (errors and timeouts are
    /// ignored: the kernel is deleted next anyway).
    pub async fn close(self) {
        self.close_within(CLOSE_TIMEOUT).await;
    }

    async fn close_within(mut self, timeout: Duration) {
        if tokio::time::timeout(timeout, self.ws.close(None))
            .await
            .is_err()
        {
            tracing::debug!("the kernel websocket did not close in time; dropping it");
        }
    }
}

/// How long [`Channels::close`] waits for the close handshake to be sent: 2 s.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A websocket error, with an oversized message as [`Error::TooLarge`].
fn ws_error(e: tungstenite::Error) -> Error {
    match e {
        tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
            max_size,
            ..
        }) => Error::TooLarge {
            what: "a kernel websocket message".into(),
            limit: max_size,
        },
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A close whose frame cannot be written (the peer stopped reading and every buffer is
    /// full) gives up after the timeout instead of hanging the probe.
    #[tokio::test]
    async fn close_is_bounded_when_the_peer_stops_reading() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hold, held) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let ws = tokio_tungstenite::accept_async(socket).await.unwrap();
            // Keep the connection open without ever reading from it.
            let _ = held.await;
            drop(ws);
        });
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .unwrap();
        let big = "x".repeat(1024 * 1024);
        let mut blocked = false;
        for _ in 0..256 {
            let send = ws.send(Message::text(big.clone()));
            if tokio::time::timeout(Duration::from_millis(200), send)
                .await
                .is_err()
            {
                blocked = true;
                break;
            }
        }
        assert!(blocked, "the socket buffers never filled");
        let channels = Channels {
            ws,
            session: "s".into(),
            username: "u".into(),
        };
        let start = std::time::Instant::now();
        let closed = tokio::time::timeout(
            Duration::from_secs(10),
            channels.close_within(Duration::from_millis(300)),
        )
        .await;
        assert!(closed.is_ok(), "close hung");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        drop(hold);
    }

    /// A server that, like jupyter_server behind Nagle's algorithm, holds each kernel message
    /// until the client has sent something since the previous one: the execution completes
    /// only because every message received is answered with a frame.
    #[tokio::test]
    async fn every_kernel_message_is_answered_with_a_frame() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(socket).await.unwrap();
            let Some(Ok(Message::Text(request))) = ws.next().await else {
                panic!("no execute_request");
            };
            let request: serde_json::Value = serde_json::from_str(request.as_str()).unwrap();
            let parent = request["header"].clone();
            let replies = [
                ("status", serde_json::json!({"execution_state": "busy"})),
                (
                    "stream",
                    serde_json::json!({"name": "stdout", "text": "hi\n"}),
                ),
                (
                    "execute_reply",
                    serde_json::json!({"status": "ok", "execution_count": 1}),
                ),
                ("status", serde_json::json!({"execution_state": "idle"})),
            ];
            let mut frames_seen = 0;
            for (i, (msg_type, content)) in replies.into_iter().enumerate() {
                if i > 0 {
                    match ws.next().await {
                        Some(Ok(Message::Pong(_))) => frames_seen += 1,
                        other => panic!("expected a frame from the client, got {other:?}"),
                    }
                }
                let message = serde_json::json!({
                    "header": {"msg_id": new_id(), "msg_type": msg_type},
                    "parent_header": parent,
                    "content": content,
                });
                ws.send(Message::text(message.to_string())).await.unwrap();
            }
            frames_seen
        });
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .unwrap();
        let mut channels = Channels {
            ws,
            session: "s".into(),
            username: "u".into(),
        };
        let execution = tokio::time::timeout(Duration::from_secs(10), channels.execute_cell("1"))
            .await
            .expect("the execution stalled: a kernel message was not answered")
            .unwrap();
        assert_eq!(execution.stdout(), "hi\n");
        assert_eq!(execution.execution_count, Some(1));
        assert_eq!(server.await.unwrap(), 3);
    }

    #[test]
    fn oversized_messages_are_too_large() {
        let e = ws_error(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong {
                size: 5,
                max_size: 4,
            },
        ));
        assert_eq!(
            e.to_string(),
            "a kernel websocket message: the answer exceeds 4 bytes"
        );
        assert!(matches!(
            ws_error(tungstenite::Error::ConnectionClosed),
            Error::WebSocket(_)
        ));
    }
}
