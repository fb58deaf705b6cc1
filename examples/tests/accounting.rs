//! The `accounting` binary as operators run it: output, spool, exit statuses.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use egi_test_harness::Prometheus;
use egi_test_harness::synthetic::Params;

fn sample() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/notebooks.om")
}

/// Runs the binary with only the given environment variables of ours.
fn accounting(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_accounting"));
    for var in [
        "VERBOSE",
        "SITENAME",
        "CLOUD_TYPE",
        "SERVICE",
        "FQAN_KEY",
        "DEFAULT_CPU_COUNT",
        "APEL_SPOOL",
        "NOTEBOOKS_DB",
        "UNITS",
        "MAX_RECORDS",
        "PROMETHEUS_URL",
        "PROMETHEUS_TOKEN",
        "SSL_VERIFY",
        "PROMETHEUS_CA_CERT",
        "PROMETHEUS_TIMEOUT",
        "PROMETHEUS_RETRIES",
        "FILTER",
        "RANGE",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("the accounting binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn spool_elements(spool: &Path) -> Vec<PathBuf> {
    let Ok(dirs) = std::fs::read_dir(spool) else {
        return Vec::new();
    };
    dirs.flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect()
}

#[test]
fn sample_run_prints_valid_messages() {
    let out = accounting(&["--snapshot", sample().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let records = egi_accounting::apel::parse_message(&stdout).expect("one valid message");
    // 24 pods, 3 never seen Running: no record until they run.
    assert_eq!(records.len(), 21);
    assert!(text(&out.stderr).contains("21 records in 1 messages"));
}

#[test]
fn spool_gets_the_messages_and_stdout_stays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("outgoing");
    let out = accounting(
        &["--snapshot", sample().to_str().unwrap()],
        &[
            ("APEL_SPOOL", spool.to_str().unwrap()),
            ("MAX_RECORDS", "10"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    assert_eq!(spool_elements(&spool).len(), 3);

    // --dry-run prints instead, even with a spool configured.
    let out = accounting(
        &["--snapshot", sample().to_str().unwrap(), "--dry-run"],
        &[("APEL_SPOOL", spool.to_str().unwrap())],
    );
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("APEL-cloud-message: v0.4\n"));
    assert_eq!(spool_elements(&spool).len(), 3);
}

#[test]
fn unreachable_prometheus_is_a_transient_failure() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("outgoing");
    let out = accounting(
        &[],
        &[
            ("PROMETHEUS_URL", &url),
            ("PROMETHEUS_RETRIES", "1"),
            ("APEL_SPOOL", spool.to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(75), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("cannot reach Prometheus"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        spool_elements(&spool).is_empty(),
        "nothing spooled on failure"
    );
}

#[test]
fn configuration_errors_exit_78_and_a_missing_file_is_only_warned_about() {
    let out = accounting(
        &["--snapshot", sample().to_str().unwrap()],
        &[("RANGE", "1x")],
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        text(&out.stderr).contains("range \"1x\""),
        "{}",
        text(&out.stderr)
    );
    // A missing file is not an error (the Python tool falls back to the environment), but
    // it is said, naming the file.
    let out = accounting(
        &[
            "--config",
            "/nonexistent/config.ini",
            "--snapshot",
            sample().to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/nonexistent/config.ini"),
        "{}",
        text(&out.stderr)
    );
    let out = accounting(&["--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn permanent_failures_exit_1_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let spool = file.join("spool");
    let out = accounting(
        &["--snapshot", sample().to_str().unwrap()],
        &[("APEL_SPOOL", spool.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot create spool directory"));

    // An existing spool whose intermediate directory can't be made (a file has its name):
    // the run fails and leaves neither elements nor temporary files.
    let spool = dir.path().join("outgoing");
    std::fs::create_dir(&spool).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for minute in [now - now % 60, now - now % 60 + 60] {
        std::fs::write(spool.join(format!("{minute:08x}")), "in the way").unwrap();
    }
    let out = accounting(
        &["--snapshot", sample().to_str().unwrap()],
        &[("APEL_SPOOL", spool.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("cannot create spool directory"));
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        2,
        "only the two blocking files"
    );

    let bad = dir.path().join("bad.om");
    std::fs::write(
        &bad,
        "# TYPE kube_pod_created gauge\nkube_pod_created{uid=\"a\" 1 2\n# EOF\n",
    )
    .unwrap();
    let out = accounting(&["--snapshot", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("line 2"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn python_style_config_against_a_real_prometheus_matches_the_snapshot() {
    let prometheus = Prometheus::backfill(&std::fs::read_to_string(sample()).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.ini");
    std::fs::write(
        &config,
        format!(
            "[default]\nsite=TEST-SITE\n\n[VO]\nnotebooks=vo.notebooks.egi.eu\n\n\
             [prometheus]\nurl={}\nverify=1\nrange=24h\n",
            prometheus.url()
        ),
    )
    .unwrap();
    let at = Params::sample().end.to_string();
    let live = accounting(&["--config", config.to_str().unwrap(), "--at", &at], &[]);
    assert!(live.status.success(), "{}", text(&live.stderr));
    let snap = accounting(
        &[
            "--config",
            config.to_str().unwrap(),
            "--snapshot",
            sample().to_str().unwrap(),
        ],
        &[],
    );
    assert!(snap.status.success(), "{}", text(&snap.stderr));
    assert_eq!(text(&live.stdout), text(&snap.stdout));
    assert!(text(&live.stdout).contains("SiteName: TEST-SITE\n"));
    assert!(text(&live.stdout).contains("FQAN: notebooks\n"));
}
