//! Parametrised notebooks (issue 14): `run-notebook` on a real JupyterHub against papermill
//! (from PyPI, in the hub's venv) on the same notebook with the same parameters: the injected
//! cell, every cell's outputs, execution counts and statuses must agree, and both executed
//! notebooks must pass `nbformat.validate`. Bad parameters are typed errors with nothing
//! written.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::helpers::example_bin;
use crate::monitoring::{assert_no_server, block_on, client, start_hub};
use egi_test_harness::jupyterhub::{JupyterHub, Tools};

/// The notebook both tools run: a `parameters` cell, stdout, stderr, a display, a result,
/// and a cell that raises when `fail` is true.
fn notebook_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/notebooks/parameters.ipynb")
}

fn venv() -> PathBuf {
    Tools::find().unwrap_or_else(|e| panic!("{e:#}")).venv
}

/// The same parameters for both tools: hostile strings, every type, a file and `-r`.
fn parameter_args(dir: &Path, fail: bool) -> Vec<String> {
    let file = dir.join("params.yaml");
    std::fs::write(
        &file,
        "flags: [1, two, null, true, 2.5]\n\
         options: {k: v, nested: {x: 1.5, \"quote\\\"d\": \"é\"}}\n\
         count: 1\n",
    )
    .unwrap();
    let mut args: Vec<String> = vec!["-f".into(), file.display().to_string()];
    for (flag, name, value) in [
        ("-p", "name", "quo\"te\n\\ é ✓ '''"),
        ("-p", "count", "7"),
        ("-p", "ratio", "1e-5"),
        ("-p", "fail", if fail { "True" } else { "False" }),
        ("-r", "raw", "42"),
    ] {
        args.extend([flag.to_owned(), name.to_owned(), value.to_owned()]);
    }
    args
}

fn papermill(dir: &Path, input: &Path, output: &Path, args: &[String]) -> Output {
    let venv = venv();
    let path = format!(
        "{}:{}",
        venv.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(venv.join("bin/papermill"))
        .arg(input)
        .arg(output)
        .args(args)
        .args([
            "-k",
            "python3",
            "--no-progress-bar",
            "--log-level",
            "WARNING",
        ])
        .env("PATH", path)
        .env("JUPYTER_RUNTIME_DIR", dir.join("runtime"))
        .env("JUPYTER_DATA_DIR", dir.join("data"))
        .env("IPYTHONDIR", dir.join("ipython"))
        .current_dir(dir)
        .output()
        .expect("running papermill (installed by .ci/install-peers)")
}

fn run_notebook(hub: &JupyterHub, input: &Path, output: &Path, args: &[String]) -> Output {
    Command::new(example_bin("run-notebook"))
        .arg(input)
        .arg(output)
        .args(args)
        .args([
            "--user",
            "runner",
            "--execution-timeout",
            "90",
            "--spawn-timeout",
            "180",
        ])
        .env("MONITORED_URL", hub.api_url())
        .env("JUPYTERHUB_API_TOKEN", hub.token())
        .env_remove("MONITORED_PUBLIC_URL")
        .output()
        .expect("running run-notebook")
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `nbformat.validate` on the file as written (no repair), with the hub venv's nbformat.
fn assert_valid_nbformat(path: &Path) {
    let out = Command::new(venv().join("bin/python"))
        .args([
            "-c",
            "import json, sys, nbformat\n\
             nb = json.load(open(sys.argv[1], encoding='utf-8'))\n\
             nbformat.validate(nb, version=4, version_minor=nb['nbformat_minor'])\n\
             assert nbformat.reads(open(sys.argv[1], encoding='utf-8').read(), as_version=4)",
        ])
        .arg(path)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "{} is not valid nbformat 4: {}",
        path.display(),
        text(&out)
    );
}

fn read(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| {
        // papermill writes non-finite float parameters as Python's json does (`NaN`,
        // `-Infinity`), which is not JSON; ours are null.
        let lenient = text
            .replace(": -Infinity", ": null")
            .replace(": Infinity", ": null")
            .replace(": NaN", ": null");
        serde_json::from_str(&lenient).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// nbformat's multi-line strings (a string or a list of lines) as one string.
fn joined(v: &Value) -> Value {
    match v {
        Value::Array(lines) if lines.iter().all(Value::is_string) => {
            Value::String(lines.iter().filter_map(Value::as_str).collect())
        }
        other => other.clone(),
    }
}

/// What must agree in one cell: type, source, execution count, papermill status, and the
/// outputs with streams concatenated per name (how the kernel chunks them varies) and
/// tracebacks reduced to their last line (they name temporary files).
fn comparable(cell: &Value) -> Value {
    let mut stdout = String::new();
    let mut stderr = String::new();
    let mut others = Vec::new();
    for output in cell["outputs"].as_array().into_iter().flatten() {
        match output["output_type"].as_str() {
            Some("stream") => {
                let chunk = joined(&output["text"]);
                let target = if output["name"] == "stderr" {
                    &mut stderr
                } else {
                    &mut stdout
                };
                target.push_str(chunk.as_str().unwrap_or_default());
            }
            Some("error") => {
                let last = output["traceback"]
                    .as_array()
                    .and_then(|t| t.last())
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                others.push(json!({
                    "output_type": "error",
                    "ename": output["ename"],
                    "evalue": output["evalue"],
                    "traceback_last": last,
                }));
            }
            _ => {
                let mut o = output.clone();
                if let Some(data) = o["data"].as_object_mut() {
                    for value in data.values_mut() {
                        *value = joined(value);
                    }
                }
                others.push(o);
            }
        }
    }
    json!({
        "cell_type": cell["cell_type"],
        "source": joined(&cell["source"]),
        "tags": cell["metadata"]["tags"].as_array().cloned().unwrap_or_default(),
        "execution_count": cell["execution_count"],
        "status": cell["metadata"]["papermill"]["status"],
        "stdout": stdout,
        "stderr": stderr,
        "outputs": others,
    })
}

/// The cells to compare: papermill's error marker cells (which we do not insert) left out.
fn comparable_cells(nb: &Value) -> Vec<Value> {
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| {
            !c["metadata"]["tags"]
                .as_array()
                .is_some_and(|t| t.iter().any(|t| t == "papermill-error-cell-tag"))
        })
        .map(comparable)
        .collect()
}

fn assert_same_cells(ours: &Value, theirs: &Value) {
    let (ours, theirs) = (comparable_cells(ours), comparable_cells(theirs));
    assert_eq!(ours.len(), theirs.len(), "cell counts");
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert_eq!(
            a, b,
            "cell {i} differs (left: run-notebook, right: papermill)"
        );
    }
}

#[test]
fn parameters_are_injected_and_run_as_papermill_does() {
    let hub = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let input = notebook_path();

    let args = parameter_args(dir.path(), false);
    let ours_path = dir.path().join("ours.ipynb");
    let theirs_path = dir.path().join("papermill.ipynb");
    let ours_run = run_notebook(&hub, &input, &ours_path, &args);
    assert_eq!(ours_run.status.code(), Some(0), "{}", text(&ours_run));
    let stderr = String::from_utf8_lossy(&ours_run.stderr);
    assert!(
        stderr.contains("OK: Ran 9 cells of parameters.ipynb in "),
        "{stderr}"
    );
    let theirs_run = papermill(dir.path(), &input, &theirs_path, &args);
    assert!(theirs_run.status.success(), "{}", text(&theirs_run));
    assert_valid_nbformat(&ours_path);
    assert_valid_nbformat(&theirs_path);

    let (ours, theirs) = (read(&ours_path), read(&theirs_path));
    // The injected cell, right after the `parameters` cell, byte for byte.
    let injected = &ours["cells"][2];
    assert_eq!(injected["metadata"]["tags"], json!(["injected-parameters"]));
    assert_eq!(
        joined(&injected["source"]),
        joined(&theirs["cells"][2]["source"])
    );
    assert_eq!(
        joined(&injected["source"]),
        "# Parameters\nflags = [1, \"two\", None, True, 2.5]\n\
         options = {\"k\": \"v\", \"nested\": {\"x\": 1.5, \"quote\\\"d\": \"\\xe9\"}}\n\
         count = 7\nname = \"quo\\\"te\\n\\\\ \\xe9 \\u2713 '''\"\nratio = 1e-05\n\
         fail = False\nraw = \"42\"\n"
    );
    assert_same_cells(&ours, &theirs);
    // The hostile string reached the kernel intact.
    assert_eq!(
        comparable(&ours["cells"][3])["stdout"],
        "hello quo\"te\n\\ é ✓ '''!\n'quo\"te\\n\\\\ é ✓ \\'\\'\\''\n"
    );
    assert_eq!(
        ours["metadata"]["papermill"]["parameters"],
        theirs["metadata"]["papermill"]["parameters"]
    );
    // Timings per cell, as papermill and nbclient record them.
    for cell in ours["cells"].as_array().unwrap() {
        let pm = &cell["metadata"]["papermill"];
        assert_eq!(pm["status"], "completed", "{cell:#}");
        assert!(
            pm["start_time"].is_string() && pm["end_time"].is_string(),
            "{cell:#}"
        );
        if cell["cell_type"] == "code" {
            assert!(
                pm["duration"].as_f64().is_some_and(|d| d >= 0.0),
                "{cell:#}"
            );
            for key in [
                "iopub.status.busy",
                "iopub.execute_input",
                "shell.execute_reply",
                "iopub.status.idle",
            ] {
                assert!(
                    cell["metadata"]["execution"][key].is_string(),
                    "{key}: {cell:#}"
                );
            }
        }
    }
    assert_eq!(ours["metadata"]["papermill"]["exception"], Value::Null);
    block_on(assert_no_server(&client(&hub), "runner", &hub));
}

#[test]
fn a_failing_cell_stops_the_run_names_the_cell_and_keeps_the_outputs_so_far() {
    let hub = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let input = notebook_path();
    let args = parameter_args(dir.path(), true);
    let ours_path = dir.path().join("ours.ipynb");
    let theirs_path = dir.path().join("papermill.ipynb");

    let ours_run = run_notebook(&hub, &input, &ours_path, &args);
    assert_eq!(ours_run.status.code(), Some(2), "{}", text(&ours_run));
    let stderr = String::from_utf8_lossy(&ours_run.stderr);
    assert!(
        stderr.contains(
            "CRITICAL: cell 9 (id maybe-fail) of parameters.ipynb raised ValueError: \
             asked to fail with count=7"
        ),
        "{stderr}"
    );
    let theirs_run = papermill(dir.path(), &input, &theirs_path, &args);
    assert_eq!(theirs_run.status.code(), Some(1), "{}", text(&theirs_run));
    assert_valid_nbformat(&ours_path);
    assert_valid_nbformat(&theirs_path);

    let (ours, theirs) = (read(&ours_path), read(&theirs_path));
    assert_same_cells(&ours, &theirs);
    let cells = ours["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 11, "no marker cells are inserted");
    assert_eq!(cells[9]["metadata"]["papermill"]["status"], "failed");
    assert_eq!(cells[9]["metadata"]["papermill"]["exception"], true);
    assert_eq!(cells[9]["outputs"][0]["ename"], "ValueError");
    assert_eq!(cells[10]["metadata"]["papermill"]["status"], "pending");
    assert_eq!(cells[10]["outputs"], json!([]));
    assert_eq!(cells[7]["outputs"][0]["output_type"], "execute_result");
    assert_eq!(cells[8]["metadata"]["papermill"]["status"], "completed");
    assert_eq!(ours["metadata"]["papermill"]["exception"], true);
    block_on(assert_no_server(&client(&hub), "runner", &hub));
}

/// `--prepare-only` on both tools, without a hub: the same injected cell for hostile values
/// and file types, after the `parameters` cell or at the top when there is none.
#[test]
fn prepared_notebooks_match_papermill_prepare_only() {
    let dir = tempfile::tempdir().unwrap();
    let tagged = notebook_path();
    let untagged = dir.path().join("untagged.ipynb");
    let mut nb = read(&tagged);
    nb["cells"][1]["metadata"] = json!({});
    std::fs::write(&untagged, serde_json::to_string(&nb).unwrap()).unwrap();
    let json_file = dir.path().join("p.json");
    std::fs::write(
        &json_file,
        r#"{"z": [1.0, -0.0, 1.0e+300, 12345678901234567890], "a": {"é": null, "t": "\t\u0001"}}"#,
    )
    .unwrap();
    let cases: Vec<Vec<String>> = vec![
        parameter_args(dir.path(), false),
        ["-f", &json_file.display().to_string()]
            .map(String::from)
            .to_vec(),
        [
            "-p",
            "a",
            "1_000",
            "-p",
            "b",
            " 2.50 ",
            "-p",
            "c",
            "-inf",
            "-p",
            "d",
            "nan",
            "-p",
            "e",
            "None",
            "-p",
            "f",
            "true",
            "-p",
            "g",
            "0x1F",
            "-p",
            "h",
            "😀\u{7}\r",
            "-y",
            "y: [a, {b: c}]",
            "-r",
            "i",
            "True",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for input in [&tagged, &untagged] {
        for (n, args) in cases.iter().enumerate() {
            let ours_path = dir.path().join(format!("ours-{n}.ipynb"));
            let theirs_path = dir.path().join(format!("theirs-{n}.ipynb"));
            let mut prepare = args.clone();
            prepare.push("--prepare-only".into());
            let ours = Command::new(example_bin("run-notebook"))
                .arg(input)
                .arg(&ours_path)
                .args(&prepare)
                .env_remove("MONITORED_URL")
                .output()
                .unwrap();
            assert!(ours.status.success(), "{}", text(&ours));
            let theirs = papermill(dir.path(), input, &theirs_path, &prepare);
            assert!(theirs.status.success(), "{}", text(&theirs));
            assert_valid_nbformat(&ours_path);
            let (ours, theirs) = (read(&ours_path), read(&theirs_path));
            let at = |nb: &Value| {
                nb["cells"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .position(|c| c["metadata"]["tags"] == json!(["injected-parameters"]))
            };
            let expected_at = if input == &tagged { 2 } else { 0 };
            assert_eq!(at(&ours), Some(expected_at), "{args:?}");
            assert_eq!(at(&theirs), Some(expected_at), "{args:?}");
            assert_eq!(
                joined(&ours["cells"][expected_at]["source"]),
                joined(&theirs["cells"][expected_at]["source"]),
                "{args:?} on {}",
                input.display()
            );
        }
    }
}

/// Bad input: a clear typed error, exit 3, and no output file (not even a partial one).
#[test]
fn bad_parameters_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = notebook_path();
    let list = dir.path().join("list.yaml");
    std::fs::write(&list, "- a\n- b\n").unwrap();
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{\"a\": ").unwrap();
    let not_a_notebook = dir.path().join("x.ipynb");
    std::fs::write(&not_a_notebook, "{}").unwrap();
    let output = dir.path().join("out.ipynb");
    for (args, expected) in [
        (
            vec!["-p", "a b", "1"],
            r#"parameter name "a b" is not a Python identifier"#.to_owned(),
        ),
        (
            vec!["-r", "class", "x"],
            r#"parameter name "class" is a Python keyword"#.to_owned(),
        ),
        (
            vec!["-p", "x=1;import os;y", "1"],
            "is not a Python identifier".to_owned(),
        ),
        (
            vec!["-f", list.to_str().unwrap()],
            format!(
                "parameters document {} is not a mapping of names to values",
                list.display()
            ),
        ),
        (
            vec!["-f", broken.to_str().unwrap()],
            format!("parameters document {}: ", broken.display()),
        ),
        (
            vec!["-y", "ok: 1\n'no good': 2"],
            r#"parameter name "no good" is not a Python identifier"#.to_owned(),
        ),
    ] {
        let out = Command::new(example_bin("run-notebook"))
            .arg(&input)
            .arg(&output)
            .args(&args)
            .args(["--hub", "http://127.0.0.1:9/hub/api"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&expected), "{args:?}: {stderr}");
        assert!(!output.exists(), "{args:?} wrote {}", output.display());
    }
    let out = Command::new(example_bin("run-notebook"))
        .arg(&not_a_notebook)
        .arg(&output)
        .args(["-p", "a", "1", "--hub", "http://127.0.0.1:9/hub/api"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid notebook x.ipynb: no nbformat"),
        "{}",
        text(&out)
    );
    assert!(!output.exists());
}
