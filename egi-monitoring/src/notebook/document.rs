//! The notebook document as JSON, without IO but [`write_notebook`]: cell ids, the injected
//! parameters cell, and the executed notebook assembled from a run.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::params::{ParameterError, Parameters};
use crate::error::{Error, Result};
use crate::kernel::protocol::Execution;

/// The tag of the cell whose defaults the injected parameters follow (papermill's).
pub const PARAMETERS_TAG: &str = "parameters";

/// The tag of the injected cell (papermill's).
pub const INJECTED_TAG: &str = "injected-parameters";

/// What happened to one code cell of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRun {
    /// The cell's position in the notebook.
    pub index: usize,
    /// When its execution was requested.
    pub start: DateTime<Utc>,
    /// When its execution was complete (or given up).
    pub end: DateTime<Utc>,
    /// What the kernel answered (empty if the execution broke off).
    pub execution: Execution,
    /// Whether the run stopped at this cell: it raised, its output was not the expected
    /// one, or its execution broke off (timeout, websocket closed).
    pub failed: bool,
}

/// A run of a notebook, for [`Notebook::executed`](super::Notebook::executed).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// When the run started (before the first cell).
    pub start: DateTime<Utc>,
    /// When it ended.
    pub end: DateTime<Utc>,
    /// The code cells run, in order; the last one may have failed.
    pub cells: Vec<CellRun>,
    /// Whether every cell ran (no failure, nothing broke off).
    pub finished: bool,
    /// The input notebook's path, for `metadata.papermill.input_path`.
    pub input_path: Option<String>,
    /// The output notebook's path, for `metadata.papermill.output_path`.
    pub output_path: Option<String>,
}

fn tags(cell: &Value) -> impl Iterator<Item = &str> {
    cell["metadata"]["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn first_tagged(cells: &[Value], tag: &str) -> Option<usize> {
    cells.iter().position(|c| tags(c).any(|t| t == tag))
}

/// Whether a cell is an injected parameters cell.
pub(super) fn is_injected(cell: &Value) -> bool {
    tags(cell).any(|t| t == INJECTED_TAG)
}

/// nbformat 4.5's cell id: 1 to 64 of `[a-zA-Z0-9-_]`.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `base`, or `base-2`, `base-3`... whichever is not taken yet; marks it taken.
fn unique_id(base: &str, taken: &mut HashSet<String>) -> String {
    let mut id = base.to_owned();
    let mut n = 1;
    while taken.contains(&id) {
        n += 1;
        id = format!("{base}-{n}");
    }
    taken.insert(id.clone());
    id
}

/// Gives every cell a valid, unique id (`cell-N` for those that have none or a bad or
/// repeated one) and marks the notebook nbformat 4.5 at least.
pub(super) fn upgrade_ids(nb: &mut Value) {
    if nb["nbformat_minor"].as_u64().is_none_or(|m| m < 5) {
        nb["nbformat_minor"] = json!(5);
    }
    let Some(cells) = nb["cells"].as_array_mut() else {
        return;
    };
    let mut taken = HashSet::new();
    let mut missing = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        match cell["id"].as_str() {
            Some(id) if valid_id(id) && taken.insert(id.to_owned()) => {}
            _ => missing.push(index),
        }
    }
    for index in missing {
        let id = unique_id(&format!("cell-{index}"), &mut taken);
        if let Some(cell) = cells[index].as_object_mut() {
            cell.insert("id".into(), Value::String(id));
        }
    }
}

/// Injects the parameters cell (see [`Notebook::with_parameters`](super::Notebook::with_parameters)).
pub(super) fn inject(nb: &mut Value, parameters: &Parameters) -> Result<(), ParameterError> {
    let metadata = &nb["metadata"];
    for language in [
        &metadata["kernelspec"]["language"],
        &metadata["language_info"]["name"],
    ] {
        if let Some(language) = language.as_str()
            && !language.eq_ignore_ascii_case("python")
        {
            return Err(ParameterError::Language(language.to_owned()));
        }
    }
    let cells = nb["cells"].as_array_mut().expect("checked when parsed");
    let (at, replace) = match (
        first_tagged(cells, INJECTED_TAG),
        first_tagged(cells, PARAMETERS_TAG),
    ) {
        (Some(injected), _) => (injected, true),
        (None, Some(parameters)) => (parameters + 1, false),
        (None, None) => (0, false),
    };
    if replace {
        cells.remove(at);
    }
    let mut taken: HashSet<String> = cells
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    let cell = json!({
        "cell_type": "code",
        "execution_count": null,
        "id": unique_id(INJECTED_TAG, &mut taken),
        "metadata": {"tags": [INJECTED_TAG]},
        "outputs": [],
        "source": parameters.to_python(),
    });
    cells.insert(at, cell);
    nb["metadata"]["papermill"]["parameters"] = parameters.to_json();
    Ok(())
}

/// papermill's timestamps: ISO 8601 with microseconds and `+00:00`.
fn iso(t: &DateTime<Utc>) -> Value {
    Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, false))
}

fn seconds_between(start: &DateTime<Utc>, end: &DateTime<Utc>) -> Value {
    let micros = (*end - *start).num_microseconds().unwrap_or(0);
    json!(micros as f64 / 1e6)
}

fn timing(start: &DateTime<Utc>, end: &DateTime<Utc>, status: &str, exception: bool) -> Value {
    json!({
        "start_time": iso(start),
        "end_time": iso(end),
        "duration": seconds_between(start, end),
        "status": status,
        "exception": exception,
    })
}

fn pending() -> Value {
    json!({
        "start_time": null,
        "end_time": null,
        "duration": null,
        "status": "pending",
        "exception": null,
    })
}

/// The executed notebook, as papermill writes it:
///
/// - every code cell's outputs and `execution_count` reset, then set from its run:
///   nbformat outputs in arrival order, the count of its `execute_reply`, nbclient's
///   `metadata.execution` (`iopub.status.busy`, `iopub.execute_input`, `shell.execute_reply`,
///   `iopub.status.idle`, the kernel's timestamps);
/// - every cell's `metadata.papermill`: `start_time`, `end_time`, `duration` (seconds),
///   `status` (`completed`, `failed`, or `pending` for the cells after a failure) and
///   `exception`; cells not executed (markdown, empty code) before the end take the time
///   they were passed at, with no duration;
/// - the notebook's `metadata.papermill`: `start_time`, `end_time`, `duration`,
///   `exception` (true if a cell failed, else null), `parameters`, `input_path`,
///   `output_path`.
///
/// Unlike papermill, no error marker cells are inserted before the failed cell and at the
/// top: cell indices stay those of the run (and of error messages); the failed cell's
/// `metadata.papermill.status` is `failed` and its outputs hold the traceback.
pub(super) fn assemble(document: &Value, record: &RunRecord) -> Value {
    let mut nb = document.clone();
    let cells = nb["cells"].as_array_mut().expect("checked when parsed");
    let last_run = record.cells.last().map(|c| c.index);
    let reached = if record.finished {
        cells.len()
    } else {
        last_run.map_or(0, |i| i + 1)
    };
    let mut clock = record.start;
    let mut failed = false;
    for (index, cell) in cells.iter_mut().enumerate() {
        let Some(cell) = cell.as_object_mut() else {
            continue;
        };
        let is_code = cell.get("cell_type").and_then(Value::as_str) == Some("code");
        if is_code {
            cell.insert("outputs".into(), json!([]));
            cell.insert("execution_count".into(), Value::Null);
        }
        let metadata = cell
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if !metadata.is_object() {
            *metadata = Value::Object(Map::new());
        }
        let run = record.cells.iter().find(|r| r.index == index);
        let papermill = match run {
            Some(run) => {
                clock = run.end;
                failed |= run.failed;
                let status = if run.failed { "failed" } else { "completed" };
                timing(&run.start, &run.end, status, run.failed)
            }
            None if index < reached => {
                let mut t = timing(&clock, &clock, "completed", false);
                t["duration"] = Value::Null;
                t
            }
            None => pending(),
        };
        metadata["papermill"] = papermill;
        if let Some(run) = run.filter(|_| is_code) {
            if !run.execution.timestamps.is_empty() {
                metadata["execution"] = json!(run.execution.timestamps);
            }
            cell.insert("outputs".into(), json!(run.execution.notebook_outputs));
            cell.insert(
                "execution_count".into(),
                json!(run.execution.execution_count),
            );
        }
    }
    let metadata = &mut nb["metadata"];
    let papermill = &mut metadata["papermill"];
    if !papermill.is_object() {
        *papermill = json!({});
    }
    if papermill["parameters"].is_null() {
        papermill["parameters"] = json!({});
    }
    papermill["start_time"] = iso(&record.start);
    papermill["end_time"] = iso(&record.end);
    papermill["duration"] = seconds_between(&record.start, &record.end);
    papermill["exception"] = if failed { json!(true) } else { Value::Null };
    papermill["input_path"] = json!(record.input_path);
    papermill["output_path"] = json!(record.output_path);
    nb
}

/// A notebook as nbformat writes it: keys sorted, one-space indent, non-ASCII as is, a
/// final newline.
pub fn to_ipynb(notebook: &Value) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(notebook, &mut serializer).expect("a JSON value serializes");
    let mut text = String::from_utf8(out).expect("serde_json writes UTF-8");
    text.push('\n');
    text
}

/// Writes `notebook` to `path` whole or not at all: into a temporary file beside it, then
/// renamed over it (an existing file is left as it was if anything fails).
pub fn write_notebook(path: &Path, notebook: &Value) -> Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{:08x}.tmp", fastrand::u32(..)));
    let io = |action, source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let written = std::fs::File::create_new(&tmp).and_then(|mut file| {
        file.write_all(to_ipynb(notebook).as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io("write", e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io("write", e)
    })
}

#[cfg(test)]
mod tests;
