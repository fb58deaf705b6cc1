//! Size limits on what the monitored services send, so that a broken or hostile peer
//! cannot make a probe use unbounded memory. Exceeding one is [`Error::TooLarge`].

use crate::error::{Error, Result};

/// The largest HTTP body read (hub and kernel API answers, BinderHub's health, the status
/// service): 4 MiB.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// The longest line of the hub's progress event stream, and the most `data` one event may
/// gather: 64 KiB.
pub const MAX_SSE_LINE_BYTES: usize = 64 * 1024;

/// The largest kernel websocket message (and frame): 4 MiB.
pub const MAX_WS_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Reads a response body of at most `limit` bytes, chunk by chunk, stopping as soon as it
/// is exceeded: [`Error::TooLarge`] then, the transport error as is otherwise.
///
/// `what` names the request in the error, such as "GET /hub/api/users/monitor".
pub async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    what: &str,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(BodyError::TooLarge(too_large(what, limit)));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(too_large(what, limit)));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why [`read_body`] failed.
#[derive(Debug)]
pub enum BodyError {
    /// The body exceeds the limit (an [`Error::TooLarge`]).
    TooLarge(Error),
    /// The connection failed while reading (the caller knows which service it was).
    Transport(reqwest::Error),
}

pub(crate) fn too_large(what: &str, limit: usize) -> Error {
    Error::TooLarge {
        what: what.to_owned(),
        limit,
    }
}

/// The first `limit` bytes (at most) of a body whose end does not matter, such as the
/// body of an error answer quoted in a message; what arrived before a transport error.
pub(crate) async fn read_body_start(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A loopback server answering every connection with `body`, chunked (no length).
    async fn serve(body: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let body = body.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                                transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                    let _ = socket.write_all(head.as_bytes()).await;
                    for part in body.chunks(16 * 1024) {
                        let _ = socket
                            .write_all(format!("{:x}\r\n", part.len()).as_bytes())
                            .await;
                        let _ = socket.write_all(part).await;
                        let _ = socket.write_all(b"\r\n").await;
                    }
                    let _ = socket.write_all(b"0\r\n\r\n").await;
                });
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn bodies_over_the_limit_are_too_large() {
        let url = serve(vec![b' '; 100 * 1024]).await;
        let http = reqwest::Client::new();
        let response = http.get(&url).send().await.unwrap();
        match read_body(response, 64 * 1024, "GET /x").await {
            Err(BodyError::TooLarge(e)) => {
                assert_eq!(e.to_string(), "GET /x: the answer exceeds 65536 bytes");
                assert_eq!(e.status(), crate::Status::Critical);
            }
            other => panic!("{other:?}"),
        }
        let response = http.get(&url).send().await.unwrap();
        let body = read_body(response, 100 * 1024, "GET /x").await.unwrap();
        assert_eq!(body.len(), 100 * 1024, "exactly the limit is fine");
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(read_body_start(response, 10).await, b"          ");
    }
}
