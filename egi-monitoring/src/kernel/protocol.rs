//! The Jupyter messaging protocol (5.3) as a kernel websocket speaks it, without IO:
//! building an `execute_request` and collecting the replies to it.

use std::collections::BTreeMap;

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

/// An `execute_request` for a notebook cell, as nbclient sends it: like [`execute_request`]
/// but with `store_history` on, so that execution counts go 1, 2, 3 as in Jupyter.
pub fn cell_execute_request(
    code: &str,
    msg_id: &str,
    session: &str,
    username: &str,
    date: &str,
) -> Value {
    let mut request = execute_request(code, msg_id, session, username, date);
    request["content"]["store_history"] = Value::Bool(true);
    request
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
    /// The outputs as nbformat 4 output objects (`stream`, `execute_result` with its
    /// `execution_count`, `display_data`, `error`), every MIME type kept, `clear_output`
    /// applied as nbclient does (`update_display_data` is not applied).
    pub notebook_outputs: Vec<Value>,
    /// The kernel's timestamps of `iopub.status.busy`, `iopub.execute_input`,
    /// `shell.execute_reply` and `iopub.status.idle` (nbclient's `metadata.execution`).
    pub timestamps: BTreeMap<String, String>,
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
    clear_before_next_output: bool,
}

impl Collector {
    /// Collects the answers to the request `msg_id`.
    pub fn new(msg_id: impl Into<String>) -> Self {
        Self {
            msg_id: msg_id.into(),
            execution: Execution::default(),
            replied: false,
            idle: false,
            clear_before_next_output: false,
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
        let msg_type = message["header"]["msg_type"].as_str().unwrap_or_default();
        self.record_timestamp(msg_type, message);
        self.record_notebook_output(msg_type, content);
        match msg_type {
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

    fn record_timestamp(&mut self, msg_type: &str, message: &Value) {
        let content = &message["content"];
        let key = match msg_type {
            "status" if content["execution_state"] == "busy" => "iopub.status.busy",
            "status" if content["execution_state"] == "idle" => "iopub.status.idle",
            "execute_input" => "iopub.execute_input",
            "execute_reply" => "shell.execute_reply",
            _ => return,
        };
        if let Some(date) = message["header"]["date"].as_str() {
            self.execution
                .timestamps
                .insert(key.to_owned(), nbclient_timestamp(date));
        }
    }

    /// nbformat's `output_from_msg`, with nbclient's `clear_output` (`wait`: before the next
    /// output).
    fn record_notebook_output(&mut self, msg_type: &str, content: &Value) {
        let object = |v: &Value| {
            if v.is_object() { v.clone() } else { json!({}) }
        };
        let output = match msg_type {
            "stream" => json!({
                "output_type": "stream",
                "name": content["name"].as_str().unwrap_or("stdout"),
                "text": plain_text(&content["text"]),
            }),
            "execute_result" => json!({
                "output_type": "execute_result",
                "execution_count": content["execution_count"].as_u64(),
                "data": object(&content["data"]),
                "metadata": object(&content["metadata"]),
            }),
            "display_data" => json!({
                "output_type": "display_data",
                "data": object(&content["data"]),
                "metadata": object(&content["metadata"]),
            }),
            "error" => json!({
                "output_type": "error",
                "ename": plain_text(&content["ename"]),
                "evalue": plain_text(&content["evalue"]),
                "traceback": content["traceback"]
                    .as_array()
                    .map(|lines| lines.iter().map(plain_text).collect::<Vec<_>>())
                    .unwrap_or_default(),
            }),
            "clear_output" => {
                if content["wait"] == true {
                    self.clear_before_next_output = true;
                } else {
                    self.execution.notebook_outputs.clear();
                }
                return;
            }
            _ => return,
        };
        if std::mem::take(&mut self.clear_before_next_output) {
            self.execution.notebook_outputs.clear();
        }
        self.execution.notebook_outputs.push(output);
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

/// A kernel's ISO 8601 timestamp as nbclient writes it (`%Y-%m-%dT%H:%M:%S.%fZ`, UTC);
/// left as is if it does not parse.
fn nbclient_timestamp(date: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(date)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string()
        })
        .unwrap_or_else(|_| date.to_owned())
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

    #[test]
    fn notebook_outputs_keep_every_mime_type_and_clear_output() {
        let mut c = Collector::new("m");
        let mut dated = |msg_type: &str, content: Value, date: &str| {
            let mut m = msg("m", msg_type, content);
            m["header"]["date"] = json!(date);
            c.feed(&m);
        };
        dated(
            "status",
            json!({"execution_state": "busy"}),
            "2026-12-07T22:00:00.000001Z",
        );
        dated(
            "execute_input",
            json!({"code": "x", "execution_count": 1}),
            "2026-12-07T23:00:00.5+01:00",
        );
        dated(
            "stream",
            json!({"name": "stdout", "text": "gone\n"}),
            "bad date",
        );
        dated("clear_output", json!({"wait": false}), "");
        dated("stream", json!({"name": "stdout", "text": "kept\n"}), "");
        dated("clear_output", json!({"wait": true}), "");
        dated(
            "display_data",
            json!({"data": {"text/plain": "p", "text/markdown": "**m**"}, "metadata": {}, "transient": {"display_id": "d"}}),
            "",
        );
        dated(
            "execute_result",
            json!({"data": {"text/plain": "42"}, "metadata": {"k": 1}, "execution_count": 1}),
            "",
        );
        dated(
            "error",
            json!({"ename": "E", "evalue": "v", "traceback": ["t1", "t2"]}),
            "",
        );
        dated(
            "execute_reply",
            json!({"status": "error", "execution_count": 1}),
            "2026-12-07T22:00:01Z",
        );
        dated("status", json!({"execution_state": "idle"}), "not a date");
        let e = c.finish();
        assert_eq!(
            e.notebook_outputs,
            [
                json!({"output_type": "display_data", "data": {"text/plain": "p", "text/markdown": "**m**"}, "metadata": {}}),
                json!({"output_type": "execute_result", "data": {"text/plain": "42"}, "metadata": {"k": 1}, "execution_count": 1}),
                json!({"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t1", "t2"]}),
            ]
        );
        assert_eq!(
            e.stdout(),
            "gone\nkept\n",
            "the text outputs are not cleared"
        );
        let stamps: Vec<(&str, &str)> = e
            .timestamps
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            stamps,
            [
                ("iopub.execute_input", "2026-12-07T22:00:00.500000Z"),
                ("iopub.status.busy", "2026-12-07T22:00:00.000001Z"),
                ("iopub.status.idle", "not a date"),
                ("shell.execute_reply", "2026-12-07T22:00:01.000000Z"),
            ]
        );
        let stored = cell_execute_request("1", "m", "s", "u", "d");
        assert_eq!(stored["content"]["store_history"], true);
    }
}
