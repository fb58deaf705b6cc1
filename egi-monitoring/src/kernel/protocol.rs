//! The Jupyter messaging protocol (5.3) as a kernel websocket speaks it, without IO:
//! building an `execute_request` and collecting the replies to it.

use serde_json::{Value, json};

/// The protocol version put in the headers.
pub const PROTOCOL_VERSION: &str = "5.3";

/// A random 32-hex-digit id (message ids, session ids).
pub fn new_id() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// An `execute_request` on the shell channel, as JSON for the kernel websocket.
///
/// `date` is an ISO 8601 timestamp; `silent`, `store_history` and `allow_stdin` are off and
/// `stop_on_error` on, as a monitoring run wants.
pub fn execute_request(
    code: &str,
    msg_id: &str,
    session: &str,
    username: &str,
    date: &str,
) -> Value {
    json!({
        "header": {
            "msg_id": msg_id,
            "session": session,
            "username": username,
            "msg_type": "execute_request",
            "version": PROTOCOL_VERSION,
            "date": date,
        },
        "parent_header": {},
        "metadata": {},
        "content": {
            "code": code,
            "silent": false,
            "store_history": false,
            "user_expressions": {},
            "allow_stdin": false,
            "stop_on_error": true,
        },
        "channel": "shell",
        "buffers": [],
    })
}

/// An exception raised by executed code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelError {
    /// The exception's class name, such as `ZeroDivisionError`.
    pub ename: String,
    /// Its message.
    pub evalue: String,
    /// The traceback lines (with the kernel's ANSI colours).
    pub traceback: Vec<String>,
}

/// One output of an execution, in the order the kernel sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// `stream` on stdout.
    Stdout(String),
    /// `stream` on stderr.
    Stderr(String),
    /// `execute_result`: its `text/plain`.
    Result(String),
    /// `display_data`: its `text/plain` (empty if it has none).
    Display(String),
}

/// What the kernel answered to one `execute_request`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Execution {
    /// The outputs in arrival order.
    pub outputs: Vec<Output>,
    /// The exception, if the code raised one.
    pub error: Option<KernelError>,
    /// The `execute_reply` status: `ok`, `error` or `aborted`.
    pub reply_status: String,
    /// The `execution_count` of the reply.
    pub execution_count: Option<u64>,
}

impl Execution {
    /// Everything written to stdout.
    pub fn stdout(&self) -> String {
        self.collect(|o| match o {
            Output::Stdout(t) => Some(t),
            _ => None,
        })
    }

    /// Everything written to stderr.
    pub fn stderr(&self) -> String {
        self.collect(|o| match o {
            Output::Stderr(t) => Some(t),
            _ => None,
        })
    }

    /// The `text/plain` of the `execute_result` (the value of the last expression).
    pub fn result(&self) -> Option<&str> {
        self.outputs.iter().find_map(|o| match o {
            Output::Result(t) => Some(t.as_str()),
            _ => None,
        })
    }

    /// stdout, results and displays in order: what a reader of the notebook sees (stderr
    /// is left out: warnings differ between installations).
    pub fn visible_text(&self) -> String {
        self.collect(|o| match o {
            Output::Stdout(t) | Output::Result(t) | Output::Display(t) => Some(t),
            Output::Stderr(_) => None,
        })
    }

    fn collect<'a>(&'a self, pick: impl Fn(&'a Output) -> Option<&'a String>) -> String {
        self.outputs
            .iter()
            .filter_map(pick)
            .map(String::as_str)
            .collect()
    }
}

/// Collects the messages answering one request until both the `execute_reply` (shell) and
/// the `status: idle` (iopub) have arrived: the reply may come before the outputs.
#[derive(Debug)]
pub struct Collector {
    msg_id: String,
    execution: Execution,
    replied: bool,
    idle: bool,
}

impl Collector {
    /// Collects the answers to the request `msg_id`.
    pub fn new(msg_id: impl Into<String>) -> Self {
        Self {
            msg_id: msg_id.into(),
            execution: Execution::default(),
            replied: false,
            idle: false,
        }
    }

    /// Feeds one message from the websocket; returns true once the execution is complete.
    /// Messages answering other requests are ignored.
    pub fn feed(&mut self, message: &Value) -> bool {
        if message["parent_header"]["msg_id"].as_str() != Some(self.msg_id.as_str()) {
            return self.is_done();
        }
        let content = &message["content"];
        let text = |v: &Value| plain_text(v);
        match message["header"]["msg_type"].as_str().unwrap_or_default() {
            "stream" => {
                let chunk = text(&content["text"]);
                if content["name"] == "stderr" {
                    self.execution.outputs.push(Output::Stderr(chunk));
                } else {
                    self.execution.outputs.push(Output::Stdout(chunk));
                }
            }
            "execute_result" => {
                let result = text(&content["data"]["text/plain"]);
                self.execution.outputs.push(Output::Result(result));
            }
            "display_data" => {
                let shown = text(&content["data"]["text/plain"]);
                self.execution.outputs.push(Output::Display(shown));
            }
            "error" => self.execution.error = Some(kernel_error(content)),
            "status" if content["execution_state"] == "idle" => self.idle = true,
            "execute_reply" => {
                self.replied = true;
                self.execution.reply_status = text(&content["status"]);
                self.execution.execution_count = content["execution_count"].as_u64();
                if self.execution.error.is_none() && content["status"] == "error" {
                    self.execution.error = Some(kernel_error(content));
                }
            }
            _ => {}
        }
        self.is_done()
    }

    /// Whether both the reply and the idle status have arrived.
    pub fn is_done(&self) -> bool {
        self.replied && self.idle
    }

    /// The collected execution.
    pub fn finish(self) -> Execution {
        self.execution
    }
}

fn kernel_error(content: &Value) -> KernelError {
    KernelError {
        ename: plain_text(&content["ename"]),
        evalue: plain_text(&content["evalue"]),
        traceback: content["traceback"]
            .as_array()
            .map(|lines| lines.iter().map(plain_text).collect())
            .unwrap_or_default(),
    }
}

/// A string, or the concatenation of a list of strings (nbformat's multi-line form).
pub(crate) fn plain_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(parent: &str, msg_type: &str, content: Value) -> Value {
        let mut message = json!({
            "header": {"msg_type": msg_type, "msg_id": new_id()},
            "parent_header": {"msg_id": parent},
            "channel": if msg_type == "execute_reply" { "shell" } else { "iopub" },
        });
        message["content"] = content;
        message
    }

    #[test]
    fn execute_request_follows_protocol_5_3() {
        let m = execute_request("1+1", "m1", "s1", "monitor", "2025-01-01T00:00:00Z");
        assert_eq!(m["channel"], "shell");
        assert_eq!(m["header"]["msg_type"], "execute_request");
        assert_eq!(m["header"]["version"], "5.3");
        assert_eq!(m["header"]["msg_id"], "m1");
        assert_eq!(m["header"]["session"], "s1");
        assert_eq!(m["header"]["username"], "monitor");
        assert_eq!(m["content"]["code"], "1+1");
        assert_eq!(m["content"]["silent"], false);
        assert_eq!(m["content"]["store_history"], false);
        assert_eq!(m["content"]["allow_stdin"], false);
        assert_eq!(m["content"]["stop_on_error"], true);
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert_ne!(id, new_id());
    }

    #[test]
    fn reply_before_outputs_waits_for_idle() {
        let mut c = Collector::new("m1");
        assert!(!c.feed(&msg("m1", "status", json!({"execution_state": "busy"}))));
        assert!(!c.feed(&msg(
            "m1",
            "execute_reply",
            json!({"status": "ok", "execution_count": 3})
        )));
        assert!(!c.feed(&msg("other", "status", json!({"execution_state": "idle"}))));
        assert!(!c.feed(&msg(
            "m1",
            "stream",
            json!({"name": "stdout", "text": "hello\n"})
        )));
        assert!(!c.feed(&msg(
            "m1",
            "stream",
            json!({"name": "stderr", "text": "warn\n"})
        )));
        assert!(!c.feed(&msg(
            "m1",
            "execute_result",
            json!({"data": {"text/plain": "42"}})
        )));
        assert!(c.feed(&msg("m1", "status", json!({"execution_state": "idle"}))));
        let e = c.finish();
        assert_eq!(e.stdout(), "hello\n");
        assert_eq!(e.stderr(), "warn\n");
        assert_eq!(e.result(), Some("42"));
        assert_eq!(e.visible_text(), "hello\n42");
        assert_eq!(e.reply_status, "ok");
        assert_eq!(e.execution_count, Some(3));
        assert!(e.error.is_none());
    }

    #[test]
    fn errors_come_from_the_error_message_or_the_reply() {
        let mut c = Collector::new("m");
        c.feed(&msg("m", "error", json!({"ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": ["a", "b"]})));
        c.feed(&msg(
            "m",
            "execute_reply",
            json!({"status": "error", "ename": "Other", "evalue": "x"}),
        ));
        assert!(c.feed(&msg("m", "status", json!({"execution_state": "idle"}))));
        let e = c.finish();
        let err = e.error.unwrap();
        assert_eq!(err.ename, "ZeroDivisionError");
        assert_eq!(err.traceback, ["a", "b"]);
        assert_eq!(e.reply_status, "error");

        let mut c = Collector::new("m");
        c.feed(&msg("m", "status", json!({"execution_state": "idle"})));
        assert!(c.feed(&msg(
            "m",
            "execute_reply",
            json!({"status": "error", "ename": "KeyError", "evalue": "'k'"})
        )));
        assert_eq!(c.finish().error.unwrap().ename, "KeyError");
    }

    #[test]
    fn displays_and_multiline_text() {
        let mut c = Collector::new("m");
        c.feed(&msg(
            "m",
            "display_data",
            json!({"data": {"text/plain": ["a", "b"], "image/png": "..."}}),
        ));
        c.feed(&msg(
            "m",
            "display_data",
            json!({"data": {"image/png": "..."}}),
        ));
        let e = c.finish();
        assert_eq!(
            e.outputs,
            [Output::Display("ab".into()), Output::Display(String::new())]
        );
        assert_eq!(e.result(), None);
    }
}
