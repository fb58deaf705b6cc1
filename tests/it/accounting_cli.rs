//! The `accounting` binary as an operator runs it: configuration warnings reach standard
//! error once logging is up (they used to be logged before it and were lost), a `-c` file
//! that does not exist falls back to the environment as the Python tool does, and a
//! configuration error is printed whatever the log level.

use crate::helpers::example_bin;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/notebooks.om")
}

/// Runs the binary on the bundled snapshot (no Prometheus needed), with a clean environment
/// for the variables the tool reads.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(example_bin("accounting"));
    for var in [
        "VERBOSE",
        "SITENAME",
        "APEL_SPOOL",
        "NOTEBOOKS_DB",
        "PROMETHEUS_URL",
        "RANGE",
        "FILTER",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg("--snapshot")
        .arg(sample())
        .arg("--dry-run")
        .args(args);
    cmd.envs(env.iter().copied());
    cmd.output().expect("the accounting binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn configuration_warnings_reach_standard_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.ini");
    std::fs::write(
        &config,
        "[default]\nsite = MY-SITE\n\n[prometheus]\nverfy = 0\nrange = 24h\n\n\
         [VO]\nvo.first = group-a, group-b\nvo.second = group-b\n",
    )
    .unwrap();
    let out = run(&["-c", config.to_str().unwrap()], &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("[prometheus] verfy: unknown key, ignored"),
        "{err}"
    );
    assert!(
        err.contains(r#""group-b" is listed under both "vo.first" and "vo.second""#),
        "{err}"
    );
    assert_eq!(err.matches("verfy").count(), 1, "reported once: {err}");
    let records = String::from_utf8(out.stdout).unwrap();
    assert!(records.contains("SiteName: MY-SITE"), "{records}");

    // A log level that hides warnings still shows them, plainly.
    let out = run(
        &["-c", config.to_str().unwrap(), "--log-level", "error"],
        &[],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: [prometheus] verfy: unknown key, ignored"),
        "{err}"
    );
}

#[test]
fn a_missing_config_file_falls_back_to_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-config.ini");
    let out = run(
        &["-c", missing.to_str().unwrap()],
        &[("SITENAME", "ENV-SITE")],
    );
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "configuration file {} does not exist",
            missing.display()
        )),
        "{err}"
    );
    let records = String::from_utf8(out.stdout).unwrap();
    assert!(records.contains("SiteName: ENV-SITE"), "{records}");
}

#[test]
fn a_configuration_error_is_printed_whatever_the_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.ini");
    std::fs::write(&config, "[prometheus]\nrange = 1x\n").unwrap();
    let out = run(&["-c", config.to_str().unwrap(), "--log-level", "off"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains("error: invalid configuration") && err.contains("range"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}
