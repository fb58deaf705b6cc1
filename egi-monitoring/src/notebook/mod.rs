//! Jupyter notebooks (nbformat 4): the code cells to run, with optional expected outputs,
//! papermill-style parameters, and the executed notebook written back; pure but for reading
//! and writing the file.
//!
//! A cell's expected output is its metadata `egi_monitoring.expected_output` (a string, or a
//! list of strings as nbformat stores text), or, when the notebook's metadata says
//! `"egi_monitoring": {"check_outputs": true}` (or the caller asks for it), the outputs saved
//! in the notebook: stdout and the `text/plain` of results and displays, in order. Outputs
//! are compared with trailing whitespace trimmed.
//!
//! - [`params`]: parameters as papermill's `-p`, `-r` and `-f` read them, and the Python
//!   source of the injected cell.
//! - [`Notebook::with_parameters`]: injects that cell as papermill does (after the cell
//!   tagged `parameters`, in place of an earlier `injected-parameters` cell, or at the top).
//! - [`Notebook::executed`]: the executed notebook from a [`RunRecord`] (outputs,
//!   execution counts, papermill's per-cell `metadata.papermill` timings and nbclient's
//!   `metadata.execution` kernel timestamps); [`write_notebook`] writes it whole or not at
//!   all.
//!
//! Cells without an `id` get one (`cell-N`) when a notebook is read, and the notebook is
//! marked nbformat 4.5, as `nbformat.v4.upgrade` does (with random ids there).
//!
//! ```no_run
//! use egi_monitoring::notebook::{Notebook, params::Parameters, write_notebook};
//! use egi_monitoring::{NotebookProbe, SpawnSettings, hub::HubClient};
//!
//! # async fn run() -> egi_monitoring::Result<()> {
//! let mut parameters = Parameters::new();
//! parameters.set_cli("alpha", "0.5")?; // papermill -p: a float
//! parameters.set_raw("label", "007")?; // papermill -r: a string
//! parameters.merge_yaml("params.yaml", "regions: [eu, us]")?; // papermill -f
//! let notebook = Notebook::from_path("check.ipynb".as_ref(), false)?;
//! let client = HubClient::builder("https://notebooks.example.org/hub/api")
//!     .token(std::env::var("JUPYTERHUB_API_TOKEN").unwrap_or_default())
//!     .build()?;
//! let probe = NotebookProbe::new(client, SpawnSettings::new("monitor"), notebook)
//!     .parameters(&parameters)?;
//! let (outcome, record) = probe.run_notebook().await;
//! if let Some(record) = record {
//!     write_notebook("out.ipynb".as_ref(), &probe.notebook().executed(&record))?;
//! }
//! println!("{}: {}", outcome.status, outcome.message);
//! # Ok(())
//! # }
//! ```

mod document;
pub mod params;

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::kernel::protocol::{Execution, plain_text};
pub use document::{CellRun, INJECTED_TAG, PARAMETERS_TAG, RunRecord, to_ipynb, write_notebook};
use params::Parameters;

/// One code cell to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeCell {
    /// The cell's position in the notebook (0-based, counting every cell).
    pub index: usize,
    /// The cell's nbformat id.
    pub id: String,
    /// Its source.
    pub source: String,
    /// The output it must produce, if checked.
    pub expected: Option<String>,
}

/// A notebook: its code cells in order, and the whole document for the executed copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notebook {
    /// Its name (file name), for messages.
    pub name: String,
    /// The non-empty code cells, in order.
    pub cells: Vec<CodeCell>,
    document: Value,
    check_all: bool,
}

impl Notebook {
    /// Reads a notebook file; `check_outputs` forces comparing every cell with its saved
    /// outputs.
    pub fn from_path(path: &Path, check_outputs: bool) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Self::parse(&name, &text, check_outputs)
    }

    /// Parses a notebook's JSON.
    pub fn parse(name: &str, json: &str, check_outputs: bool) -> Result<Self> {
        let invalid = |message: String| Error::Notebook {
            path: name.to_owned(),
            message,
        };
        let mut nb: Value = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        match nb["nbformat"].as_u64() {
            Some(4) => {}
            Some(v) => return Err(invalid(format!("nbformat {v} is not supported (4 is)"))),
            None => return Err(invalid("no nbformat".into())),
        }
        if !nb["cells"].is_array() {
            return Err(invalid("no cells".into()));
        }
        if !nb["metadata"].is_object() {
            nb["metadata"] = Value::Object(Default::default());
        }
        document::upgrade_ids(&mut nb);
        let check_all = check_outputs || nb["metadata"]["egi_monitoring"]["check_outputs"] == true;
        Self::from_document(name, nb, check_all)
    }

    fn from_document(name: &str, document: Value, check_all: bool) -> Result<Self> {
        let mut code = Vec::new();
        for (index, cell) in document["cells"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            if cell["cell_type"] != "code" {
                continue;
            }
            let source = plain_text(&cell["source"]);
            if source.trim().is_empty() {
                continue;
            }
            let declared = &cell["metadata"]["egi_monitoring"]["expected_output"];
            let expected = if !declared.is_null() {
                Some(plain_text(declared))
            } else if check_all && !document::is_injected(cell) {
                Some(saved_output(&cell["outputs"]))
            } else {
                None
            };
            code.push(CodeCell {
                index,
                id: cell["id"].as_str().unwrap_or_default().to_owned(),
                source,
                expected,
            });
        }
        if code.is_empty() {
            return Err(Error::Notebook {
                path: name.to_owned(),
                message: "no code cells".into(),
            });
        }
        Ok(Self {
            name: name.to_owned(),
            cells: code,
            document,
            check_all,
        })
    }

    /// The notebook with `parameters` injected as papermill does: a code cell tagged
    /// `injected-parameters` holding [`Parameters::to_python`], in place of an earlier
    /// injected cell, else right after the first cell tagged `parameters`, else at the top;
    /// `metadata.papermill.parameters` records them. No parameters: the notebook as is.
    ///
    /// Only Python kernels: a notebook whose kernelspec or language_info names another
    /// language is [`params::ParameterError::Language`] (as [`Error::Parameters`]).
    pub fn with_parameters(&self, parameters: &Parameters) -> Result<Self> {
        if parameters.is_empty() {
            return Ok(self.clone());
        }
        let mut document = self.document.clone();
        document::inject(&mut document, parameters)?;
        Self::from_document(&self.name, document, self.check_all)
    }

    /// The notebook document (after injection, before any run).
    pub fn document(&self) -> &Value {
        &self.document
    }

    /// The executed notebook: this document with `record`'s outputs and timings (see
    /// [`RunRecord`]); valid nbformat 4.5.
    pub fn executed(&self, record: &RunRecord) -> Value {
        document::assemble(&self.document, record)
    }

    /// The code cell at notebook position `index`.
    pub fn cell(&self, index: usize) -> Option<&CodeCell> {
        self.cells.iter().find(|c| c.index == index)
    }
}

/// The visible text of a cell's saved outputs (stdout, then results and displays).
fn saved_output(outputs: &Value) -> String {
    let mut text = String::new();
    for output in outputs.as_array().into_iter().flatten() {
        match output["output_type"].as_str() {
            Some("stream") if output["name"] == "stdout" => {
                text.push_str(&plain_text(&output["text"]))
            }
            Some("execute_result" | "display_data") => {
                text.push_str(&plain_text(&output["data"]["text/plain"]));
            }
            _ => {}
        }
    }
    text
}

/// Checks an execution against the cell's expected output; the error says what differs.
pub fn check_output(cell: &CodeCell, execution: &Execution) -> Result<(), String> {
    let Some(expected) = &cell.expected else {
        return Ok(());
    };
    let got = execution.visible_text();
    if got.trim_end() == expected.trim_end() {
        Ok(())
    } else {
        Err(format!(
            "cell {} printed {:?}, expected {:?}",
            cell.index,
            shorten(got.trim_end()),
            shorten(expected.trim_end())
        ))
    }
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((cut, _)) => format!("{}...", &s[..cut]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::protocol::Output;

    const NB: &str = r##"{
      "nbformat": 4, "nbformat_minor": 5,
      "metadata": {"egi_monitoring": {"check_outputs": true}},
      "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": ["# Title"]},
        {"cell_type": "code", "metadata": {}, "execution_count": 1,
         "source": ["x = 6\n", "print(x * 7)"],
         "outputs": [{"output_type": "stream", "name": "stdout", "text": ["42\n"]},
                     {"output_type": "stream", "name": "stderr", "text": ["warning\n"]}]},
        {"cell_type": "code", "metadata": {}, "source": "", "outputs": []},
        {"cell_type": "code", "metadata": {"egi_monitoring": {"expected_output": "7"}},
         "source": "x + 1", "outputs": []}
      ]
    }"##;

    fn ran(outputs: Vec<Output>) -> Execution {
        Execution {
            outputs,
            ..Execution::default()
        }
    }

    #[test]
    fn code_cells_in_order_with_expectations() {
        let nb = Notebook::parse("t.ipynb", NB, false).unwrap();
        assert_eq!(nb.cells.len(), 2, "markdown and empty cells are skipped");
        assert_eq!(nb.cells[0].index, 1);
        assert_eq!(nb.cells[0].source, "x = 6\nprint(x * 7)");
        assert_eq!(nb.cells[0].expected.as_deref(), Some("42\n"));
        assert_eq!(nb.cells[1].index, 3);
        assert_eq!(nb.cells[1].expected.as_deref(), Some("7"));
    }

    #[test]
    fn outputs_are_compared_without_trailing_space() {
        let nb = Notebook::parse("t.ipynb", NB, false).unwrap();
        assert!(
            check_output(
                &nb.cells[0],
                &ran(vec![
                    Output::Stdout("42\n".into()),
                    Output::Stderr("other".into())
                ])
            )
            .is_ok()
        );
        let err = check_output(&nb.cells[1], &ran(vec![Output::Result("8".into())])).unwrap_err();
        assert_eq!(err, r#"cell 3 printed "8", expected "7""#);
        let unchecked = CodeCell {
            index: 0,
            id: "c".into(),
            source: "1".into(),
            expected: None,
        };
        assert!(check_output(&unchecked, &ran(vec![])).is_ok());
    }

    #[test]
    fn saved_outputs_only_when_asked() {
        let plain = NB.replace(r#""check_outputs": true"#, r#""check_outputs": false"#);
        let nb = Notebook::parse("t.ipynb", &plain, false).unwrap();
        assert_eq!(nb.cells[0].expected, None);
        let forced = Notebook::parse("t.ipynb", &plain, true).unwrap();
        assert_eq!(forced.cells[0].expected.as_deref(), Some("42\n"));
    }

    #[test]
    fn invalid_notebooks_are_rejected() {
        for (json, message) in [
            (
                "{",
                "invalid notebook n: EOF while parsing an object at line 1 column 1",
            ),
            (
                r#"{"nbformat": 3, "cells": []}"#,
                "invalid notebook n: nbformat 3 is not supported (4 is)",
            ),
            (r#"{"cells": []}"#, "invalid notebook n: no nbformat"),
            (
                r#"{"nbformat": 4, "cells": []}"#,
                "invalid notebook n: no code cells",
            ),
        ] {
            let err = Notebook::parse("n", json, false).unwrap_err();
            assert_eq!(err.to_string(), message);
        }
        let err = Notebook::from_path(Path::new("/nonexistent/x.ipynb"), false).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read /nonexistent/x.ipynb"),
            "{err}"
        );
    }
}
