//! Server-sent events (the hub's spawn progress stream), parsed without IO.

use serde::Deserialize;

/// Splits a `text/event-stream` body, fed in arbitrary chunks, into the `data` of its
/// events (several `data:` lines of one event are joined by `\n`; comments, other fields and
/// the hub's blank keep-alive lines are skipped).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk; returns the events it completes, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(event) = self.line_done(&line) {
                    events.push(event);
                }
            } else {
                self.line.push(b);
            }
        }
        events
    }

    fn line_done(&mut self, line: &[u8]) -> Option<String> {
        if line.is_empty() {
            return self.data.take();
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
        None
    }
}

/// One event of `GET /hub/api/users/{user}/server/progress`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProgressEvent {
    /// 0 to 100.
    #[serde(default)]
    pub progress: Option<f64>,
    /// Text for humans ("Server requested", "Spawn failed: ...").
    #[serde(default)]
    pub message: Option<String>,
    /// Set on the last event of a successful spawn.
    #[serde(default)]
    pub ready: bool,
    /// Set on the last event of a failed spawn.
    #[serde(default)]
    pub failed: bool,
    /// The server's URL path, on the ready event.
    #[serde(default)]
    pub url: Option<String>,
}

impl ProgressEvent {
    /// Parses an event's `data`.
    pub fn parse(data: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(data)
    }

    /// The message, or an empty string.
    pub fn message(&self) -> &str {
        self.message.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_keepalives() {
        let mut p = SseParser::new();
        assert!(p.feed(b"\n\n").is_empty(), "keep-alive blank lines");
        assert!(p.feed(b"data: {\"progress\": 0, \"mes").is_empty());
        let events = p.feed(b"sage\": \"Server requested\"}\n\n: comment\r\ndata:{}\r\n\r\n");
        assert_eq!(
            events,
            ["{\"progress\": 0, \"message\": \"Server requested\"}", "{}"]
        );
        let first = ProgressEvent::parse(&events[0]).unwrap();
        assert_eq!(first.progress, Some(0.0));
        assert_eq!(first.message(), "Server requested");
        assert!(!first.ready && !first.failed);
    }

    #[test]
    fn multi_line_data_and_other_fields() {
        let mut p = SseParser::new();
        let events = p.feed(b"event: x\nid: 3\ndata: a\ndata\ndata: b\n\n");
        assert_eq!(events, ["a\n\nb"]);
        assert!(p.feed(b"data: unterminated\n").is_empty());
    }

    #[test]
    fn ready_and_failed_events() {
        let ready = ProgressEvent::parse(
            r#"{"progress": 100, "ready": true, "message": "Server ready at /user/m/", "html_message": "x", "url": "/user/m/"}"#,
        )
        .unwrap();
        assert!(ready.ready);
        assert_eq!(ready.url.as_deref(), Some("/user/m/"));
        let failed = ProgressEvent::parse(
            r#"{"progress": 100, "failed": true, "message": "Spawn failed: [Errno 2] No such file"}"#,
        )
        .unwrap();
        assert!(failed.failed && !failed.ready);
        assert!(ProgressEvent::parse("not json").is_err());
    }
}
