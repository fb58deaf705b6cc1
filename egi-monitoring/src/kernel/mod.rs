//! Kernels of a single-user server, reached through the proxy: create, execute code over the
//! kernel websocket, delete.
//!
//! [`protocol`] builds the messages and collects the replies; this module only moves them.

pub mod protocol;

use futures_util::{SinkExt, StreamExt};
use reqwest::{Method, StatusCode};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::{Error, Result};
use crate::hub::{HubClient, unexpected};
use protocol::{Collector, Execution, execute_request, new_id};

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
        let (ws, _) = match tokio_tungstenite::connect_async(request).await {
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
        let msg_id = new_id();
        let date = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let request = execute_request(code, &msg_id, &self.session, &self.username, &date);
        self.ws.send(Message::text(request.to_string())).await?;
        let mut collector = Collector::new(msg_id);
        while let Some(message) = self.ws.next().await {
            match message? {
                Message::Text(text) => {
                    let Ok(json) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
                        tracing::debug!("ignoring a non-JSON kernel message");
                        continue;
                    };
                    if collector.feed(&json) {
                        return Ok(collector.finish());
                    }
                }
                Message::Close(_) => return Err(Error::WebSocketClosed),
                _ => {}
            }
        }
        Err(Error::WebSocketClosed)
    }

    /// Closes the websocket (errors ignored: the kernel is deleted next anyway).
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
