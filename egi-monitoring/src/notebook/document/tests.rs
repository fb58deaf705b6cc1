use chrono::TimeZone as _;

use super::super::Notebook;
use super::*;

const NB: &str = r##"{
  "nbformat": 4, "nbformat_minor": 4,
  "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
  "cells": [
    {"cell_type": "markdown", "metadata": {}, "source": "# Title"},
    {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "execution_count": 3,
     "outputs": [], "source": "x = 1\nname = 'a'"},
    {"cell_type": "code", "metadata": {}, "execution_count": 4, "id": "same",
     "outputs": [{"output_type": "stream", "name": "stdout", "text": "old\n"}],
     "source": "print(name * x)"},
    {"cell_type": "code", "metadata": {}, "id": "same", "outputs": [], "source": "1 / 0"},
    {"cell_type": "code", "metadata": {}, "outputs": [], "source": "'after'"}
  ]
}"##;

fn params(pairs: &[(&str, &str)]) -> Parameters {
    let mut p = Parameters::new();
    for (name, value) in pairs {
        p.set_cli(name, value).unwrap();
    }
    p
}

fn ids(nb: &Value) -> Vec<&str> {
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect()
}

#[test]
fn cells_get_unique_valid_ids_and_nbformat_4_5() {
    let nb = Notebook::parse("t.ipynb", NB, false).unwrap();
    assert_eq!(nb.document()["nbformat_minor"], 5);
    assert_eq!(
        ids(nb.document()),
        ["cell-0", "cell-1", "same", "cell-3", "cell-4"]
    );
    assert_eq!(nb.cells[1].id, "same");
    let bad = NB.replace(r#""id": "same","#, r#""id": "no spaces allowed","#);
    let nb = Notebook::parse("t.ipynb", &bad, false).unwrap();
    assert_eq!(ids(nb.document())[2], "cell-2");
}

#[test]
fn parameters_go_after_the_parameters_cell() {
    let nb = Notebook::parse("t.ipynb", NB, false).unwrap();
    let injected = nb
        .with_parameters(&params(&[("x", "3"), ("name", "b\"c")]))
        .unwrap();
    let cells = injected.document()["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    assert_eq!(
        cells[2],
        json!({
            "cell_type": "code", "execution_count": null, "id": "injected-parameters",
            "metadata": {"tags": ["injected-parameters"]}, "outputs": [],
            "source": "# Parameters\nx = 3\nname = \"b\\\"c\"\n",
        })
    );
    assert_eq!(
        injected.document()["metadata"]["papermill"]["parameters"],
        json!({"x": 3, "name": "b\"c"})
    );
    assert_eq!(
        injected.cells.iter().map(|c| c.index).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );

    // Parameterising the result again replaces the injected cell in place.
    let again = injected.with_parameters(&params(&[("x", "4")])).unwrap();
    let cells = again.document()["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 6);
    assert_eq!(cells[2]["source"], "# Parameters\nx = 4\n");
    assert_eq!(cells[2]["id"], "injected-parameters");

    // No parameters: unchanged.
    assert_eq!(nb.with_parameters(&Parameters::new()).unwrap(), nb);
}

#[test]
fn without_a_parameters_cell_they_go_to_the_top() {
    let untagged = NB.replace(r#""tags": ["parameters"]"#, r#""tags": []"#);
    let nb = Notebook::parse("t.ipynb", &untagged, false).unwrap();
    let injected = nb.with_parameters(&params(&[("x", "2")])).unwrap();
    let cells = injected.document()["cells"].as_array().unwrap();
    assert_eq!(cells[0]["metadata"]["tags"], json!(["injected-parameters"]));
    assert_eq!(cells[1]["cell_type"], "markdown");
    assert_eq!(injected.cells[0].index, 0);
}

#[test]
fn other_languages_have_no_translator() {
    let r = NB.replace(r#""language": "python""#, r#""language": "R""#);
    let nb = Notebook::parse("t.ipynb", &r, false).unwrap();
    let err = nb.with_parameters(&params(&[("x", "2")])).unwrap_err();
    assert!(
        matches!(&err, Error::Parameters(ParameterError::Language(l)) if l == "R"),
        "{err:?}"
    );
    assert_eq!(err.status(), crate::Status::Unknown);
    assert_eq!(
        err.report(),
        "invalid notebook parameters: no parameter translator for the kernel language \"R\" (only Python)"
    );
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_800_000_000_000 + ms).unwrap()
}

fn ran(index: usize, from: i64, to: i64, execution: Execution, failed: bool) -> CellRun {
    CellRun {
        index,
        start: at(from),
        end: at(to),
        execution,
        failed,
    }
}

#[test]
fn the_executed_notebook_has_outputs_counts_and_papermill_timings() {
    let nb = Notebook::parse("t.ipynb", NB, false).unwrap();
    let stdout = json!({"output_type": "stream", "name": "stdout", "text": "a\n"});
    let error = json!({"output_type": "error", "ename": "ZeroDivisionError",
                       "evalue": "division by zero", "traceback": ["tb"]});
    let record = RunRecord {
        start: at(0),
        end: at(900),
        cells: vec![
            ran(1, 100, 200, Execution::default(), false),
            ran(
                2,
                200,
                450,
                Execution {
                    execution_count: Some(2),
                    notebook_outputs: vec![stdout.clone()],
                    timestamps: [(
                        "iopub.execute_input".to_owned(),
                        "2027-01-15T08:00:00.300000Z".to_owned(),
                    )]
                    .into(),
                    ..Execution::default()
                },
                false,
            ),
            ran(
                3,
                450,
                800,
                Execution {
                    execution_count: Some(3),
                    notebook_outputs: vec![error.clone()],
                    ..Execution::default()
                },
                true,
            ),
        ],
        finished: false,
        input_path: Some("in.ipynb".into()),
        output_path: Some("out.ipynb".into()),
    };
    let out = nb.executed(&record);
    let cells = out["cells"].as_array().unwrap();
    let pm = |i: usize| &cells[i]["metadata"]["papermill"];
    // The markdown cell before the first code cell: passed at the start, no duration.
    assert_eq!(pm(0)["status"], "completed");
    assert_eq!(pm(0)["start_time"], "2027-01-15T08:00:00.000000+00:00");
    assert_eq!(pm(0)["duration"], Value::Null);
    assert_eq!(pm(1)["status"], "completed");
    assert_eq!(pm(1)["duration"], 0.1);
    assert_eq!(cells[2]["outputs"], json!([stdout]));
    assert_eq!(cells[2]["execution_count"], 2);
    assert_eq!(
        cells[2]["metadata"]["execution"],
        json!({"iopub.execute_input": "2027-01-15T08:00:00.300000Z"})
    );
    assert_eq!(pm(2)["start_time"], "2027-01-15T08:00:00.200000+00:00");
    assert_eq!(pm(2)["end_time"], "2027-01-15T08:00:00.450000+00:00");
    assert_eq!(pm(2)["duration"], 0.25);
    assert_eq!(pm(2)["exception"], false);
    assert_eq!(pm(3)["status"], "failed");
    assert_eq!(pm(3)["exception"], true);
    assert_eq!(cells[3]["outputs"], json!([error]));
    // After the failure: pending, the saved outputs and counts cleared.
    assert_eq!(pm(4)["status"], "pending");
    assert_eq!(pm(4)["start_time"], Value::Null);
    assert_eq!(cells[4]["outputs"], json!([]));
    assert_eq!(cells[4]["execution_count"], Value::Null);
    let meta = &out["metadata"]["papermill"];
    assert_eq!(meta["exception"], true);
    assert_eq!(meta["duration"], 0.9);
    assert_eq!(meta["input_path"], "in.ipynb");
    assert_eq!(meta["output_path"], "out.ipynb");
    assert_eq!(meta["parameters"], json!({}));
    // The document itself is untouched: a notebook can be run again.
    assert_eq!(nb.document()["cells"][2]["execution_count"], 4);
}

#[test]
fn a_finished_run_completes_every_cell() {
    let nb = Notebook::parse("t.ipynb", NB, false).unwrap();
    let record = RunRecord {
        start: at(0),
        end: at(10),
        cells: vec![ran(1, 1, 2, Execution::default(), false)],
        finished: true,
        input_path: None,
        output_path: None,
    };
    let out = nb.executed(&record);
    for cell in out["cells"].as_array().unwrap() {
        assert_eq!(cell["metadata"]["papermill"]["status"], "completed");
    }
    assert_eq!(out["metadata"]["papermill"]["exception"], Value::Null);
}

#[test]
fn ipynb_text_is_sorted_one_space_indented_and_ends_with_a_newline() {
    let text = to_ipynb(&json!({"b": 1, "a": ["é"]}));
    assert_eq!(text, "{\n \"a\": [\n  \"é\"\n ],\n \"b\": 1\n}\n");
}

#[test]
fn notebooks_are_written_whole_or_not_at_all() {
    let dir = std::env::temp_dir().join(format!("egi-nb-{:08x}", fastrand::u32(..)));
    std::fs::create_dir(&dir).unwrap();
    let path = dir.join("out.ipynb");
    std::fs::write(&path, "previous").unwrap();
    write_notebook(&path, &json!({"nbformat": 4})).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "{\n \"nbformat\": 4\n}\n"
    );
    let missing = dir.join("no/such/dir/out.ipynb");
    let err = write_notebook(&missing, &json!({})).unwrap_err();
    assert!(err.to_string().starts_with("cannot write "), "{err}");
    // A directory in the way: the rename fails, nothing is left behind.
    let blocked = dir.join("blocked.ipynb");
    std::fs::create_dir(blocked.join("x").parent().unwrap()).unwrap();
    std::fs::write(blocked.join("x"), "").unwrap();
    assert!(write_notebook(&blocked, &json!({})).is_err());
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["blocked.ipynb", "out.ipynb"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
