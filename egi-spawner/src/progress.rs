//! JupyterHub's spawn progress event ([`ProgressEvent`]), one type for both sides of the
//! stream: what a spawner reports while it starts a server, and what a client (such as
//! egi-monitoring) reads from any hub's `GET /hub/api/users/{user}/server/progress`.

use std::io;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// One event of a spawn's progress, as JupyterHub's `SpawnProgressAPIHandler` sends it in the
/// `data` of its event stream.
///
/// Three shapes occur, all with this one type:
/// - while spawning, `{"progress": 50, "message": "..."}` ([`ProgressEvent::new`]; a spawner
///   may leave `progress` out to only update the message);
/// - the end of a successful spawn, `{"progress": 100, "ready": true, "message": "Server ready
///   at /user/alice/", "html_message": "...", "url": "/user/alice/"}` ([`ProgressEvent::ready`]);
/// - the end of a failed one, `{"progress": 100, "failed": true, "message": "Spawn failed:
///   ..."}` ([`ProgressEvent::failed`]).
///
/// Serialized, the fields come in JupyterHub's order and `false`/absent ones are left out;
/// [`ProgressEvent::to_sse_data`] writes the exact bytes of JupyterHub's `json.dumps`.
/// Deserializing is lenient, since hubs and their spawners differ: every field may be
/// missing or `null`, `progress` may be a float (rounded, clamped to 0..=100) or anything
/// else (then treated as absent), and unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// 0 to 100; `None` when the event only updates the message.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_progress"
    )]
    pub progress: Option<u8>,
    /// Set on the last event of a successful spawn (only the hub sets it: JupyterHub drops
    /// `ready` from a spawner's own events).
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient_bool"
    )]
    pub ready: bool,
    /// Set on the last event of a failed spawn.
    #[serde(
        default,
        skip_serializing_if = "is_false",
        deserialize_with = "lenient_bool"
    )]
    pub failed: bool,
    /// Text for humans ("Server requested", a Kubernetes event, "Spawn failed: ...").
    #[serde(default, deserialize_with = "lenient_string")]
    pub message: String,
    /// The message as HTML (may hold links), shown instead of `message` where HTML is shown.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_option_string"
    )]
    pub html_message: Option<String>,
    /// The server's URL path, on the ready event (e.g. `/user/alice/`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient_option_string"
    )]
    pub url: Option<String>,
}

impl ProgressEvent {
    /// A step of a spawn: `progress` (capped at 100) and a message.
    pub fn new(progress: u8, message: impl Into<String>) -> ProgressEvent {
        ProgressEvent {
            progress: Some(progress.min(100)),
            message: message.into(),
            ..ProgressEvent::default()
        }
    }

    /// JupyterHub's ready event for the server at `url` (its path, e.g. `/user/alice/`, which
    /// is the server's `JUPYTERHUB_SERVICE_PREFIX`): progress 100, `Server ready at {url}`,
    /// the same with a link as `html_message`, and `url`.
    pub fn ready(url: &str) -> ProgressEvent {
        let href = html_escape(url);
        ProgressEvent {
            progress: Some(100),
            ready: true,
            failed: false,
            message: format!("Server ready at {url}"),
            html_message: Some(format!(r#"Server ready at <a href="{href}">{href}</a>"#)),
            url: Some(url.to_owned()),
        }
    }

    /// JupyterHub's failed event: progress 100 and `message` (the hub writes
    /// `Spawn failed: {reason}`, or `Spawn cancelled`).
    pub fn failed(message: impl Into<String>) -> ProgressEvent {
        ProgressEvent {
            progress: Some(100),
            failed: true,
            message: message.into(),
            ..ProgressEvent::default()
        }
    }

    /// Whether this is the last event of a spawn (ready or failed).
    pub fn is_final(&self) -> bool {
        self.ready || self.failed
    }

    /// Parses the `data` of one event of a hub's progress stream (leniently, see above).
    pub fn parse(data: &str) -> Result<ProgressEvent, serde_json::Error> {
        serde_json::from_str(data)
    }

    /// The event as JupyterHub writes it after `data: ` in its event stream: Python's
    /// `json.dumps` (`", "` and `": "` separators, non-ASCII escaped as `\uXXXX`). Frame it as
    /// `data: {json}\n\n`.
    pub fn to_sse_data(&self) -> String {
        let mut out = Vec::with_capacity(96);
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonJson);
        self.serialize(&mut serializer)
            .expect("a progress event always serializes");
        // The formatter writes ASCII only.
        String::from_utf8(out).expect("ASCII is UTF-8")
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

fn lenient_progress<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    let number = match value {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    // Saturating: NaN is dropped, anything below 0 is 0, anything above 100 is 100.
    Ok(number
        .filter(|n| !n.is_nan())
        .map(|n| n.round().clamp(0.0, 100.0) as u8))
}

fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => b,
        // Python's truthiness, which the hub's own `if` would apply.
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n != 0.0),
        _ => false,
    })
}

fn lenient_option_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) => Some(s),
        None | Some(Value::Null) => None,
        Some(other) => Some(other.to_string()),
    })
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    lenient_option_string(d).map(Option::unwrap_or_default)
}

/// `serde_json` formatting as Python's `json.dumps` with its defaults.
struct PythonJson;

impl serde_json::ser::Formatter for PythonJson {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    /// `ensure_ascii`: everything outside printable ASCII as `\uXXXX` (UTF-16, lowercase hex);
    /// serde_json has already escaped quotes, backslashes and control characters as Python does.
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut units = [0u16; 2];
        let mut plain = 0;
        for (i, c) in fragment.char_indices() {
            if (' '..='~').contains(&c) {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[plain..i])?;
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            plain = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_jupyterhubs_json_dumps() {
        // Expected strings from JupyterHub 5's SpawnProgressAPIHandler (`json.dumps(event)`).
        let ready = ProgressEvent::ready("/user/alice/");
        assert_eq!(
            ready.to_sse_data(),
            r#"{"progress": 100, "ready": true, "message": "Server ready at /user/alice/", "html_message": "Server ready at <a href=\"/user/alice/\">/user/alice/</a>", "url": "/user/alice/"}"#
        );
        assert_eq!(
            ProgressEvent::failed("Spawn failed: pod was evicted").to_sse_data(),
            r#"{"progress": 100, "failed": true, "message": "Spawn failed: pod was evicted"}"#
        );
        assert_eq!(
            ProgressEvent::new(0, "Server requested").to_sse_data(),
            r#"{"progress": 0, "message": "Server requested"}"#
        );
        let no_progress = ProgressEvent {
            message: "zoë \u{1F600}\t\u{7f}".to_owned(),
            ..ProgressEvent::default()
        };
        assert_eq!(
            no_progress.to_sse_data(),
            r#"{"message": "zo\u00eb \ud83d\ude00\t\u007f"}"#
        );
        // Compact serde output keeps the same keys and order.
        assert_eq!(
            serde_json::to_string(&ProgressEvent::failed("x")).unwrap(),
            r#"{"progress":100,"failed":true,"message":"x"}"#
        );
    }

    #[test]
    fn round_trips() {
        for event in [
            ProgressEvent::ready("/user/b%C3%B6b/gpu/"),
            ProgressEvent::failed("Spawn cancelled"),
            ProgressEvent::new(42, "2025-01-01T00:00:00Z [Normal] Pulling image"),
        ] {
            assert_eq!(ProgressEvent::parse(&event.to_sse_data()).unwrap(), event);
        }
    }

    #[test]
    fn parses_any_hubs_events_leniently() {
        let e = ProgressEvent::parse("{}").unwrap();
        assert_eq!(e, ProgressEvent::default());
        let e = ProgressEvent::parse(r#"{"progress": 33.6, "message": null, "extra": 1}"#).unwrap();
        assert_eq!((e.progress, e.message.as_str()), (Some(34), ""));
        let e = ProgressEvent::parse(r#"{"progress": -5, "ready": null}"#).unwrap();
        assert_eq!((e.progress, e.ready), (Some(0), false));
        let e = ProgressEvent::parse(r#"{"progress": 1e9, "failed": 1}"#).unwrap();
        assert_eq!((e.progress, e.failed), (Some(100), true));
        let e = ProgressEvent::parse(r#"{"progress": "50", "url": null}"#).unwrap();
        assert_eq!((e.progress, e.url), (Some(50), None));
        let e = ProgressEvent::parse(r#"{"progress": [1]}"#).unwrap();
        assert_eq!(e.progress, None);
        assert!(ProgressEvent::parse("not json").is_err());
    }

    #[test]
    fn ready_html_is_escaped_but_paths_are_unchanged() {
        let e = ProgressEvent::ready(r#"/user/"><script>/"#);
        assert_eq!(
            e.html_message.as_deref(),
            Some(
                "Server ready at <a href=\"/user/&quot;&gt;&lt;script&gt;/\">/user/&quot;&gt;&lt;script&gt;/</a>"
            )
        );
        assert!(e.is_final() && !ProgressEvent::new(5, "x").is_final());
    }
}
