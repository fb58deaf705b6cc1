//! The Python `kubernetes` package (in the hub venv of `.peers/`) against the simulator.

use serde_json::Value;

use crate::helpers::{peers_dir, sim};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_creates_watches_and_deletes() {
    let python = peers_dir().join("jupyterhub/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run .ci/install-peers",
        python.display()
    );
    let sim = sim().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kubesim/kube_client.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&kubeconfig)
        .env("HOME", dir.path())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("JSON summary");
    assert_eq!(r["labelled"], 1);
    assert_eq!(r["unlabelled"], 0);
    assert_eq!(r["watch_types"][0], "ADDED");
    let types: Vec<&str> = r["watch_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"MODIFIED") && types.last() == Some(&"DELETED"),
        "{types:?}"
    );
    assert!(r["pod_ip"].as_str().unwrap().starts_with("10."));
    assert_eq!(r["ready"], true);
    assert_eq!(r["pvc_phase"], "Bound");
    assert_eq!(r["secret_token"], "YWJj");
    assert_eq!(r["missing"], serde_json::json!([404, "NotFound"]));
    assert_eq!(r["duplicate"], serde_json::json!([409, "AlreadyExists"]));
    assert_eq!(r["invalid"], serde_json::json!([422, "Invalid"]));
    assert_eq!(r["wrong_uid"][0], 409);
    assert!(
        r["wrong_uid"][1]
            .as_str()
            .unwrap()
            .contains("Precondition failed: UID in precondition: wrong")
    );
    let reasons: Vec<&str> = r["event_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(
        &reasons[..5],
        ["Scheduled", "Pulling", "Pulled", "Created", "Started"]
    );
    assert!(sim.object("pods", "py", "nb").is_none());
    let c = sim.counters();
    assert!(c.count("watch", "pods", "py") >= 1);
    assert_eq!(c.count("create", "pods", "py"), 3);
}
