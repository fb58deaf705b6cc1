//! The `monitor` status service and the `probe` Nagios check (egi-examples binaries), run
//! as operators run them: against the real hub, and against loopback status endpoints.

use std::net::{Ipv4Addr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use crate::helpers::example_bin;
use crate::monitoring::start_hub;
use crate::monitoring_faults::Canned;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Runs `probe` with `args`; returns its exit code and its output line.
fn probe(args: &[&str]) -> (i32, String) {
    let out: Output = Command::new(example_bin("probe"))
        .args(args)
        .env_remove("JUPYTERHUB_API_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("running probe");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        stdout.lines().count(),
        1,
        "one line: {stdout:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.code().expect("exit code, not a signal"),
        stdout.trim_end().to_owned(),
    )
}

fn status_body(code: &str, age_seconds: f64) -> String {
    format!(
        r#"{{"code": "{code}", "msg": "Spawned server in 3.2 s", "time": {}}}"#,
        now() - age_seconds
    )
}

#[test]
fn probe_check_maps_statuses_staleness_and_faults_to_nagios_codes() {
    for (code, exit) in [("OK", 0), ("WARNING", 1), ("CRITICAL", 2), ("UNKNOWN", 3)] {
        let server = Canned::new(200, "application/json", &status_body(code, 30.0));
        let (got, line) = probe(&["-t", "5", "--url", server.url()]);
        assert_eq!(got, exit, "{line}");
        assert!(
            line.starts_with(&format!(
                "NOTEBOOKS {code} - Spawned server in 3.2 s | age="
            )),
            "{line}"
        );
    }

    // Stale: WARNING after --warning-age, CRITICAL after --critical-age.
    let old = Canned::new(200, "application/json", &status_body("OK", 2.5 * 3600.0));
    let (got, line) = probe(&["--url", old.url()]);
    assert_eq!(got, 1, "{line}");
    assert!(
        line.starts_with("NOTEBOOKS WARNING - result is stale: "),
        "{line}"
    );
    let (got, line) = probe(&[
        "--url",
        old.url(),
        "--warning-age",
        "600",
        "--critical-age",
        "3600",
    ]);
    assert_eq!(got, 2, "{line}");
    assert!(
        line.contains("last result: OK Spawned server in 3.2 s"),
        "{line}"
    );

    // Unreachable URL: a port nobody listens on.
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/services/status/");
    let (got, line) = probe(&["-t", "5", "--url", &url]);
    assert_eq!(got, 2, "{line}");
    assert!(
        line.starts_with(&format!(
            "NOTEBOOKS CRITICAL - cannot reach the status service {url}: "
        )),
        "{line}"
    );

    // A silent one, an HTTP error, JSON that is not a status, a bad URL, bad arguments.
    let silent = Canned::silent();
    let (got, line) = probe(&["-t", "1", "--url", silent.url()]);
    assert_eq!(got, 2, "{line}");
    assert!(line.ends_with("no answer within 1 s"), "{line}");
    let failing = Canned::new(503, "text/html", "<html>down</html>");
    let (got, line) = probe(&["--url", failing.url()]);
    assert_eq!(got, 2, "{line}");
    assert!(
        line.ends_with("answered HTTP 503: Service Unavailable"),
        "{line}"
    );
    let garbage = Canned::new(200, "text/html", "<html>not json</html>");
    let (got, line) = probe(&["--url", garbage.url()]);
    assert_eq!(got, 3, "{line}");
    assert!(
        line.starts_with("NOTEBOOKS UNKNOWN - the status is not {code,msg,time} JSON"),
        "{line}"
    );
    let (got, line) = probe(&["--url", "not a url"]);
    assert_eq!(got, 3, "{line}");
    assert!(
        line.starts_with("NOTEBOOKS UNKNOWN - invalid --url"),
        "{line}"
    );
    let (got, line) = probe(&["--no-such-option"]);
    assert_eq!(got, 3, "{line}");
    assert!(line.starts_with("NOTEBOOKS UNKNOWN - "), "{line}");
    let (got, line) = probe(&["--url", old.url(), "-t", "-1"]);
    assert_eq!(got, 3, "{line}");
}

/// A running `monitor`, stopped with SIGTERM by PID on drop.
struct Monitor {
    child: Child,
    url: String,
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("sh")
            .args(["-c", "kill -TERM \"$0\"", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn try_get(url: &str, accept: &str) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let response = reqwest::Client::new()
            .get(url)
            .header("accept", accept)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    })
}

fn get(url: &str, accept: &str) -> (u16, String) {
    try_get(url, accept).unwrap_or_else(|| panic!("GET {url} failed"))
}

#[test]
fn monitor_serves_status_json_html_and_metrics_that_the_check_reads() {
    let hub = start_hub();
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("status.json");
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(example_bin("monitor"))
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--probes",
            "hub,spawn,execute",
        ])
        .env("SERVICE_TYPE", "jupyterhub")
        .env("MONITORED_URL", hub.api_url())
        .env("JUPYTERHUB_API_TOKEN", hub.token())
        .env("JUPYTERHUB_USER", "monitor")
        .env("SPAWN_TIMEOUT", "120")
        .env("STATUS_FILE", &status_file)
        .env("JUPYTERHUB_SERVICE_PREFIX", "/services/status/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("monitor.log")).unwrap())
        .spawn()
        .expect("starting monitor");
    let monitor = Monitor {
        child,
        url: format!("http://127.0.0.1:{port}/services/status/"),
    };

    // Wait for the first round (every probe has a result).
    let deadline = Instant::now() + Duration::from_secs(300);
    let json = loop {
        if let Some((200, body)) = try_get(&monitor.url, "application/json") {
            let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            if json["code"] != "UNKNOWN" {
                break json;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no result in time: {}",
            std::fs::read_to_string(dir.path().join("monitor.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let log = || std::fs::read_to_string(dir.path().join("monitor.log")).unwrap_or_default();
    assert_eq!(
        json["code"],
        "OK",
        "{json:#}\n{}\n{}",
        log(),
        hub.log_tail(30)
    );
    assert!(json["time"].as_f64().unwrap() > now() - 600.0);
    assert!(
        json["msg"]
            .as_str()
            .unwrap()
            .contains("spawn: Spawned server in "),
        "{json}"
    );
    // The public JSON is EGI's summary; details are behind the hub's login.
    assert!(json["probes"]["execute"]["details"].is_null(), "{json}");

    let (status, html) = get(&monitor.url, "text/html");
    assert_eq!(status, 200);
    assert!(
        html.starts_with("<!DOCTYPE html>") && html.contains("<h2>execute</h2>"),
        "{html}"
    );
    let (status, same) = get(monitor.url.trim_end_matches('/'), "application/json");
    assert_eq!(
        (status, same.contains("\"code\":\"OK\"")),
        (200, true),
        "{same}"
    );

    let (status, metrics) = get(&format!("{}metrics", monitor.url), "text/plain");
    assert_eq!(status, 200);
    for line in [
        "egi_monitoring_probe_status{probe=\"execute\"} 0",
        "egi_monitoring_probe_status{probe=\"spawn\"} 0",
        "egi_monitoring_probe_runs_total{probe=\"hub\",status=\"OK\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(metrics.contains(
        "egi_monitoring_probe_phase_duration_seconds{probe=\"execute\",phase=\"execute\"}"
    ));

    // EGI's status file, written after each probe.
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&status_file).unwrap()).unwrap();
    assert_eq!(file["code"], "OK");
    assert!(file["msg"].is_string() && file["time"].is_f64(), "{file}");

    // The check reads it.
    let (code, line) = probe(&["-t", "10", "--url", &monitor.url]);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("NOTEBOOKS OK - hub: JupyterHub 6."),
        "{line}"
    );

    let (status, _) = get(&format!("http://127.0.0.1:{port}/elsewhere"), "text/html");
    assert_eq!(status, 404);
}

#[test]
fn single_runs_exit_with_nagios_codes() {
    let hub = start_hub();
    // monitor --once: OK is 0 (EGI's single-run mode exits 1 on OK).
    let ok = Command::new(example_bin("monitor"))
        .args(["--once", "--probes", "hub"])
        .env("MONITORED_URL", hub.api_url())
        .env("JUPYTERHUB_API_TOKEN", hub.token())
        .env_remove("STATUS_FILE")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&ok.stdout).expect("JSON on stdout");
    assert_eq!(
        (ok.status.code(), json["code"].as_str()),
        (Some(0), Some("OK")),
        "{json}"
    );

    // ... and CRITICAL is 2.
    let wrong = Command::new(example_bin("monitor"))
        .args(["--once", "--probes", "spawn"])
        .env("MONITORED_URL", hub.api_url())
        .env("JUPYTERHUB_API_TOKEN", "wrong")
        .env_remove("STATUS_FILE")
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&wrong.stdout).expect("JSON on stdout");
    assert_eq!(wrong.status.code(), Some(2), "{json}");
    assert!(
        json["msg"]
            .as_str()
            .unwrap()
            .starts_with("the hub rejected the API token (HTTP 403)"),
        "{json}"
    );

    // BinderHub mode (SERVICE_TYPE=binderhub).
    let binder = Canned::new(200, "application/json", r#"{"ok": true, "checks": []}"#);
    let out = Command::new(example_bin("monitor"))
        .arg("--once")
        .env("SERVICE_TYPE", "binderhub")
        .env("MONITORED_URL", binder.url())
        .env_remove("JUPYTERHUB_API_TOKEN")
        .env_remove("STATUS_FILE")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // probe --hub runs a probe directly, with perfdata per phase.
    let out = Command::new(example_bin("probe"))
        .args(["--hub", &hub.api_url(), "--run", "spawn", "-t", "60"])
        .env("JUPYTERHUB_API_TOKEN", hub.token())
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{line}");
    assert!(
        line.starts_with("NOTEBOOKS OK - Spawned server in "),
        "{line}"
    );
    assert!(
        line.contains(" | time=") && line.contains(" ready="),
        "{line}"
    );
}
