//! One HTTP exchange with Prometheus: send the form, check the status, and move the body's
//! bytes to a parser running on a blocking thread. Nothing here looks inside a successful
//! body; error bodies are read up to a small limit for their message.

use std::io::{self, Read};

use reqwest::{Response, StatusCode, header};
use secrecy::ExposeSecret;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::error::{Error, Result};

use super::{Auth, PrometheusSource};

/// Body chunks in flight between the network and the parser (each at most a few hundred KiB).
const CHUNKS_IN_FLIGHT: usize = 2;

/// How much of an error body is read to find its message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// How much of a non-JSON error body is quoted.
const ERROR_QUOTE_CHARS: usize = 200;

/// Posts `form` and parses a 2xx body with `parse`; any other status is [`Error::Http`].
pub(super) async fn query<T, F>(
    source: &PrometheusSource,
    form: &[(&str, String); 2],
    parse: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Read) -> Result<T> + Send + 'static,
{
    let request = source
        .client
        .post(source.endpoint.clone())
        .header(header::ACCEPT, "application/json")
        .form(form);
    let request = match &source.config.auth {
        Auth::None => request,
        Auth::Basic { user, password } => request.basic_auth(user, Some(password.expose_secret())),
        Auth::Bearer(token) => request.bearer_auth(token.expose_secret()),
    };
    let response = request
        .send()
        .await
        .map_err(|e| source.transport_error(e))?;
    if !response.status().is_success() {
        return Err(http_error(response).await);
    }
    stream_to_parser(source, response, parse).await
}

/// Feeds the body to `parse` on a blocking thread through a small bounded channel, so that
/// at most [`CHUNKS_IN_FLIGHT`] chunks are held at once. A transport failure while reading
/// wins over whatever the parser made of the cut body.
async fn stream_to_parser<T, F>(
    source: &PrometheusSource,
    mut response: Response,
    parse: F,
) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut dyn Read) -> Result<T> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let parser = tokio::task::spawn_blocking(move || parse(&mut ChannelReader::new(rx)));
    let mut failure = None;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                // A copy, so that hyper can reuse its read buffer at once instead of
                // allocating another while the parser still holds a view of the old one.
                if tx.send(chunk.to_vec()).await.is_err() {
                    // The parser stopped early (it found an error): stop reading.
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // End of input for the parser.
    drop(tx);
    let parsed = match parser.await {
        Ok(parsed) => parsed,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => {
            return Err(Error::MalformedResponse(
                "the response parser was cancelled (runtime shutting down)".to_owned(),
            ));
        }
    };
    match failure {
        Some(e) => Err(source.transport_error(e)),
        None => parsed,
    }
}

/// A blocking [`Read`] over chunks received from the async side; end of input when the
/// sender is dropped.
struct ChannelReader<B> {
    rx: mpsc::Receiver<B>,
    chunk: Option<B>,
    pos: usize,
}

impl<B> ChannelReader<B> {
    fn new(rx: mpsc::Receiver<B>) -> Self {
        Self {
            rx,
            chunk: None,
            pos: 0,
        }
    }
}

impl<B: AsRef<[u8]>> Read for ChannelReader<B> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(chunk) = &self.chunk {
                let rest = chunk.as_ref().get(self.pos..).unwrap_or_default();
                if !rest.is_empty() {
                    let n = rest.len().min(buf.len());
                    buf[..n].copy_from_slice(&rest[..n]);
                    self.pos += n;
                    return Ok(n);
                }
            }
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.chunk = Some(chunk);
                    self.pos = 0;
                }
                None => {
                    self.chunk = None;
                    return Ok(0);
                }
            }
        }
    }
}

/// [`Error::Http`] for a non-2xx response, with the best message the body offers.
async fn http_error(mut response: Response) -> Error {
    let status = response.status();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    // A body that cannot be read (timeout, cut) just gives a shorter message.
    while body.len() < ERROR_BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    body.truncate(ERROR_BODY_LIMIT);
    Error::Http {
        status: status.as_u16(),
        message: http_error_message(status, location.as_deref(), &body),
    }
}

/// Prometheus' error body: `{"status":"error","errorType":"...","error":"..."}`.
#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
}

/// Prometheus' `error` text if the body is its JSON, else the start of the body, else the
/// status' reason. A redirect says where it pointed.
fn http_error_message(status: StatusCode, location: Option<&str>, body: &[u8]) -> String {
    if let Ok(ErrorBody { error: Some(error) }) = serde_json::from_slice(body)
        && !error.is_empty()
    {
        return error;
    }
    if status.is_redirection() {
        return match location {
            Some(to) => format!("redirect to {to} not followed"),
            None => "redirect not followed".to_owned(),
        };
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return status.canonical_reason().unwrap_or("no body").to_owned();
    }
    match text.char_indices().nth(ERROR_QUOTE_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_prometheus_error_text() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error"}"#;
        assert_eq!(
            http_error_message(StatusCode::BAD_REQUEST, None, body),
            "1:5: parse error"
        );
    }

    #[test]
    fn error_message_quotes_the_start_of_other_bodies() {
        let body = format!("  <html>{}</html>", "é".repeat(500));
        let m = http_error_message(StatusCode::BAD_GATEWAY, None, body.as_bytes());
        assert!(m.starts_with("<html>é") && m.ends_with("..."), "{m}");
        assert_eq!(m.chars().count(), ERROR_QUOTE_CHARS + 3);
        assert_eq!(
            http_error_message(StatusCode::SERVICE_UNAVAILABLE, None, b""),
            "Service Unavailable"
        );
        assert_eq!(
            http_error_message(StatusCode::FOUND, Some("https://login.example/"), b"moved"),
            "redirect to https://login.example/ not followed"
        );
    }

    #[test]
    fn channel_reader_concatenates_chunks_until_the_sender_is_gone() {
        let (tx, rx) = mpsc::channel::<Vec<u8>>(4);
        tx.try_send(b"ab".to_vec()).unwrap();
        tx.try_send(Vec::new()).unwrap();
        tx.try_send(b"cde".to_vec()).unwrap();
        drop(tx);
        let mut out = String::new();
        ChannelReader::new(rx).read_to_string(&mut out).unwrap();
        assert_eq!(out, "abcde");
    }
}
