//! The `spawn` binary as operators run it: a whole session on the simulator, state kept
//! between runs, and its exit statuses for bad options, bad configuration and a dead API.

use std::net::TcpListener;
use std::process::{Command, Output};

fn spawn(args: &[&str], dir: &std::path::Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spawn"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("JUPYTERHUB_API_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("spawn runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_whole_session_on_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let out = spawn(
        &["--simulate", "run", "--user", "alice@egi.eu", "--hold", "0"],
        dir.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ready at http://10."), "{}", text(&out));
    assert!(stdout.contains("poll: Running"), "{}", text(&out));
    assert!(stdout.trim_end().ends_with("stopped"), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[100%] Server ready at /user/alice@egi.eu/"),
        "progress is streamed, ending with JupyterHub's ready event: {}",
        text(&out)
    );
    assert!(
        stderr.contains("Started container notebook"),
        "{}",
        text(&out)
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("spawn-state.json")).unwrap(),
    )
    .unwrap();
    assert!(
        state.get("pod_name").is_none(),
        "cleared after the stop: {state}"
    );
}

#[test]
fn bad_options_and_configuration_exit_78() {
    let dir = tempfile::tempdir().unwrap();
    let out = spawn(
        &[
            "--simulate",
            "start",
            "--user",
            "bob",
            "--option",
            "profile=evil/miner",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("evil/miner"),
        "names the profile: {}",
        text(&out)
    );

    std::fs::write(
        dir.path().join("bad.json"),
        r#"{ "imag": "typo/notebook" }"#,
    )
    .unwrap();
    let out = spawn(
        &[
            "--simulate",
            "--config",
            "bad.json",
            "poll",
            "--user",
            "bob",
        ],
        dir.path(),
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("imag"),
        "{}",
        text(&out)
    );

    let out = spawn(&["--simulate", "frobnicate"], dir.path(), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn an_unreachable_api_exits_69() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        egi_test_harness::kubesim::kubeconfig(&format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("spawn-state.json"),
        r#"{"pod_name":"jupyter-carol","namespace":"default"}"#,
    )
    .unwrap();
    let out = spawn(
        &["stop", "--user", "carol"],
        dir.path(),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
}
