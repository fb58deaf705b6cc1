//! Server-sent events (the hub's spawn progress stream), parsed without IO. Each event's `data`
//! is one [`egi_spawner::ProgressEvent`].

use crate::limits::MAX_SSE_LINE_BYTES;

/// Splits a `text/event-stream` body, fed in arbitrary chunks, into the `data` of its
/// events (several `data:` lines of one event are joined by `\n`; comments, other fields and
/// the hub's blank keep-alive lines are skipped).
///
/// A line, and the data of one event, may be at most
/// [`crate::limits::MAX_SSE_LINE_BYTES`] long (or the limit given to
/// [`SseParser::with_limit`]); beyond it [`SseParser::feed`] fails with [`LineTooLong`].
#[derive(Debug)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
    limit: usize,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::with_limit(MAX_SSE_LINE_BYTES)
    }
}

/// A line (or an event's data) of an event stream exceeds the parser's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an event-stream line exceeds {limit} bytes")]
pub struct LineTooLong {
    /// The limit, in bytes.
    pub limit: usize,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// A parser whose lines and event data may be at most `limit` bytes long.
    pub fn with_limit(limit: usize) -> Self {
        Self {
            line: Vec::new(),
            data: None,
            limit,
        }
    }

    /// Feeds the next chunk; returns the events it completes, in order, or [`LineTooLong`]
    /// (after which the stream should be abandoned).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<String>, LineTooLong> {
        let mut events = Vec::new();
        let too_long = LineTooLong { limit: self.limit };
        for &b in chunk {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.line);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if let Some(event) = self.line_done(&line)? {
                    events.push(event);
                }
            } else {
                // One byte of room for a trailing `\r`.
                if self.line.len() > self.limit {
                    self.line = Vec::new();
                    return Err(too_long);
                }
                self.line.push(b);
            }
        }
        Ok(events)
    }

    fn line_done(&mut self, line: &[u8]) -> Result<Option<String>, LineTooLong> {
        if line.is_empty() {
            return Ok(self.data.take());
        }
        if line.len() > self.limit {
            return Err(LineTooLong { limit: self.limit });
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
            if self.data.as_ref().is_some_and(|d| d.len() > self.limit) {
                self.data = None;
                return Err(LineTooLong { limit: self.limit });
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use egi_spawner::ProgressEvent;

    use super::*;

    #[test]
    fn events_split_across_chunks_and_keepalives() {
        let mut p = SseParser::new();
        assert!(
            p.feed(b"\n\n").unwrap().is_empty(),
            "keep-alive blank lines"
        );
        assert!(p.feed(b"data: {\"progress\": 0, \"mes").unwrap().is_empty());
        let events = p
            .feed(b"sage\": \"Server requested\"}\n\n: comment\r\ndata:{}\r\n\r\n")
            .unwrap();
        assert_eq!(
            events,
            ["{\"progress\": 0, \"message\": \"Server requested\"}", "{}"]
        );
        let first = ProgressEvent::parse(&events[0]).unwrap();
        assert_eq!(first.progress, Some(0));
        assert_eq!(first.message, "Server requested");
        assert!(!first.ready && !first.failed);
    }

    #[test]
    fn multi_line_data_and_other_fields() {
        let mut p = SseParser::new();
        let events = p
            .feed(b"event: x\nid: 3\ndata: a\ndata\ndata: b\n\n")
            .unwrap();
        assert_eq!(events, ["a\n\nb"]);
        assert!(p.feed(b"data: unterminated\n").unwrap().is_empty());
    }

    #[test]
    fn lines_without_newline_are_capped() {
        let mut p = SseParser::with_limit(16);
        let line = [b'x'; 16];
        assert!(p.feed(b"data: 0123456789").unwrap().is_empty());
        assert!(
            p.feed(b"\r\n\n").unwrap() == ["0123456789"],
            "up to the limit"
        );
        assert_eq!(p.feed(&line), Ok(vec![]), "exactly the limit");
        assert_eq!(p.feed(b"yy"), Err(LineTooLong { limit: 16 }));

        // The default limit, fed in small chunks as a silent stream without newlines.
        let mut p = SseParser::new();
        let chunk = [b'a'; 1024];
        let mut fed = 0;
        let err = loop {
            match p.feed(&chunk) {
                Ok(events) => assert!(events.is_empty()),
                Err(e) => break e,
            }
            fed += chunk.len();
            assert!(fed <= MAX_SSE_LINE_BYTES + chunk.len(), "never capped");
        };
        assert_eq!(err.limit, MAX_SSE_LINE_BYTES);
        assert_eq!(err.to_string(), "an event-stream line exceeds 65536 bytes");
    }

    #[test]
    fn event_data_is_capped_too() {
        let mut p = SseParser::with_limit(16);
        assert!(p.feed(b"data: 0123456789\n").unwrap().is_empty());
        assert_eq!(
            p.feed(b"data: 0123456789\n"),
            Err(LineTooLong { limit: 16 })
        );
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
