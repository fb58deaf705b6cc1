//! egi-monitoring set up as EGI's deployment docs say (issue 14): the `monitor` example as
//! the hub's `status` service (`admin: true`, `url`, its own token), `MONITORED_URL` on the
//! hub's own port, `base_url = '/jhub/'`, JupyterHub's default `slow_spawn_timeout`. One hub
//! serves every check, in turn; misconfigurations and a silent hub need no hub.

use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use egi_monitoring::notebook::Notebook;
use egi_monitoring::{NotebookProbe, Probe, SpawnProbe, Status};
use egi_test_harness::jupyterhub::{EXITING_USER_PREFIX, JupyterHub, Options, STATUS_VIEWER};

use crate::helpers::example_bin;
use crate::monitoring::{assert_no_server, block_on, client, phases, settings, small_notebook};
use crate::monitoring_faults::Canned;

fn now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `monitor`, stopped with SIGTERM by PID on drop.
struct Monitor(Child);

impl Drop for Monitor {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("sh")
            .args(["-c", "kill -TERM \"$0\"", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser: cookies, redirects followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn get_json(http: &reqwest::Client, url: &str) -> (u16, String) {
    let response = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Logs `name` in at the hub (dummy authenticator) in `http`'s cookie store.
async fn hub_login(http: &reqwest::Client, hub: &JupyterHub, name: &str) {
    let login = format!("{}/hub/login", hub.url());
    let page = http.get(&login).send().await.unwrap().text().await.unwrap();
    let xsrf = page
        .split("name=\"_xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the login form's _xsrf")
        .to_owned();
    let response = http
        .post(&login)
        .form(&[("username", name), ("password", "x"), ("_xsrf", &xsrf)])
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "login of {name}: {}",
        response.status()
    );
}

#[test]
fn egi_chart_settings_give_no_false_alarm_and_an_honest_status() {
    let port = free_port();
    let hub = JupyterHub::start_with(&Options {
        // JupyterHub's default (EGI's): a spawn failing within it makes the start answer 500.
        slow_spawn_timeout: Duration::from_secs(10),
        base_url: "/jhub/".into(),
        status_service_url: Some(format!("http://127.0.0.1:{port}/")),
    })
    .unwrap_or_else(|e| panic!("starting JupyterHub: {e:#}"));
    let dir = tempfile::tempdir().unwrap();
    let status_file = dir.path().join("status.json");
    // The status file of the run before a restart.
    let before = r#"{"code": "OK", "msg": "Spawned server in 4.2 seconds", "time": 1700000000.5}"#;
    std::fs::write(&status_file, before).unwrap();
    let log_path = dir.path().join("monitor.log");
    let _monitor = Monitor(
        Command::new(example_bin("monitor"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            // EGI's chart: the hub's internal address, no prefix, no public URL.
            .env("MONITORED_URL", hub.internal_api_url())
            .env("JUPYTERHUB_API_TOKEN", hub.status_token())
            .env("JUPYTERHUB_USER", "monitor")
            .env("SPAWN_TIMEOUT", "180")
            .env("MONITOR_TIMEOUT", "60")
            .env("STATUS_FILE", &status_file)
            .env_remove("JUPYTERHUB_SERVICE_PREFIX")
            .env_remove("MONITORED_PUBLIC_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("starting monitor"),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let page = format!("{}/services/status/", hub.url());
    let http = browser();
    block_on(async {
        // 3: the page answers under /jhub/services/status/ (through the proxy) without
        // JUPYTERHUB_SERVICE_PREFIX; 5: the last status file stands until the round is over.
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = loop {
            if let Ok(r) = http
                .get(&page)
                .header("accept", "application/json")
                .send()
                .await
                && r.status() != 503
            {
                break (r.status().as_u16(), r.text().await.unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "monitor not up: {}", log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(first.0, 200, "{}\n{}", first.1, log());
        let json: serde_json::Value = serde_json::from_str(&first.1).unwrap();
        assert_eq!(
            (json["code"].as_str(), json["time"].as_f64()),
            (Some("OK"), Some(1_700_000_000.5)),
            "{json}"
        );

        // 1: the round over the hub's own port ends OK (kernels reached directly); every
        // probe has a result.
        let deadline = Instant::now() + Duration::from_secs(300);
        let json = loop {
            let (_, body) = get_json(&http, &page).await;
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            let probes = json["probes"].as_object().cloned().unwrap_or_default();
            if !probes.is_empty() && probes.values().all(|p| !p.is_null()) {
                break json;
            }
            assert!(Instant::now() < deadline, "no round: {}", log());
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let round_seen = now();
        assert_eq!(
            json["code"],
            "OK",
            "{json:#}\n{}\n{}",
            log(),
            hub.log_tail(30)
        );
        // 5: time is when the result was known (the round's end), not its start.
        let time = json["time"].as_f64().unwrap();
        let execute = &json["probes"]["execute"];
        assert!(time <= round_seen && time > round_seen - 5.0, "{json}");
        // 4: the public JSON is EGI's summary: no kernel output, ids or phases.
        assert_eq!(
            execute.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["code", "msg", "time"],
            "{json}"
        );
        let (_, html) = http
            .get(&page)
            .send()
            .await
            .map(|r| (r.status(), r))
            .unwrap();
        let html = html.text().await.unwrap();
        assert!(html.contains("<h2>execute</h2>"), "{html}");
        assert!(
            !html.contains("kernel_id") && !html.contains("stdout"),
            "{html}"
        );
        let file: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&status_file).unwrap()).unwrap();
        assert_eq!(file["code"], "OK", "{file}");

        // Details: only for a viewer the hub authenticates with access:services.
        let details = format!("{page}details");
        let stranger = browser();
        hub_login(&stranger, &hub, "stranger").await;
        let (status, body) = get_json(&stranger, &details).await;
        assert_ne!(status, 200, "{body}");
        assert!(!body.contains("kernel_id"), "{body}");
        hub_login(&http, &hub, STATUS_VIEWER).await;
        let (status, body) = get_json(&http, &details).await;
        assert_eq!(status, 200, "{body}\n{}", log());
        let full: serde_json::Value = serde_json::from_str(&body).unwrap();
        let detail = &full["probes"]["execute"]["details"];
        assert!(detail["kernel_id"].is_string(), "{full:#}");
        assert_eq!(detail["result"], "42", "{full:#}");
        // 1: the status says which way kernel traffic went.
        let route = detail["kernel_route"].as_str().unwrap();
        assert!(
            route.starts_with("directly to the server at http://127.0.0.1:"),
            "{route}"
        );
    });

    // 8: two runs with the same probe user at once both succeed.
    let twins: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(example_bin("monitor"))
                .args(["--once", "--probes", "execute"])
                .env("MONITORED_URL", format!("{}/hub/api", hub.url()))
                .env("JUPYTERHUB_API_TOKEN", hub.token())
                .env("JUPYTERHUB_USER", "twin")
                .env("SPAWN_TIMEOUT", "180")
                .env("MONITOR_TIMEOUT", "60")
                .env_remove("STATUS_FILE")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for twin in twins {
        let out = twin.wait_with_output().unwrap();
        let json = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{json}\n{}", hub.log_tail(30));
    }

    let client = client(&hub);
    block_on(async {
        // 9: a start answered 500 (6.1, default slow_spawn_timeout, a server that exits at
        // once) is reported with the hub's reason from the spawn's progress stream.
        let user = format!("{EXITING_USER_PREFIX}fast");
        let outcome = SpawnProbe::new(client.clone(), settings(&user)).run().await;
        assert_eq!(outcome.status, Status::Critical, "{outcome:#?}");
        assert!(
            outcome.message.starts_with("spawn failed: Server at ")
                && outcome.message.contains("didn't respond")
                && outcome
                    .message
                    .ends_with("(the start request answered HTTP 500: Internal Server Error)"),
            "{}",
            outcome.message
        );
        assert_no_server(&client, &user, &hub).await;

        // 7: the cell that raised is a failed phase.
        let path = dir.path().join("raises.ipynb");
        std::fs::write(&path, small_notebook(true)).unwrap();
        let notebook = Notebook::from_path(Path::new(&path), false).unwrap();
        let outcome = NotebookProbe::new(client.clone(), settings("monitor"), notebook)
            .run()
            .await;
        assert_eq!(outcome.status, Status::Critical, "{outcome:#?}");
        let failed: Vec<&str> = outcome
            .phases
            .iter()
            .filter(|p| !p.ok)
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(failed, ["cell 2"], "{:?}", phases(&outcome));
    });
}

/// Runs `monitor --once` with `env`; returns its exit code, its JSON and how long it took.
fn once(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, serde_json::Value, Duration) {
    let mut command = Command::new(example_bin("monitor"));
    command.arg("--once").args(args);
    for var in [
        "MONITORED_URL",
        "JUPYTERHUB_API_TOKEN",
        "SPAWN_TIMEOUT",
        "MONITOR_TIMEOUT",
        "STATUS_FILE",
        "MONITOR_NOTEBOOK",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let started = Instant::now();
    let out = command.stdin(Stdio::null()).output().unwrap();
    let took = started.elapsed();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), json, took)
}

#[test]
fn a_silent_hub_is_reported_within_15_s_and_misconfigurations_are_unknown() {
    // 2: the default probes against a hub that never answers.
    let silent = Canned::silent();
    let url = format!("{}/hub/api", silent.url());
    let (code, json, took) = once(
        &[
            ("MONITORED_URL", &url),
            ("JUPYTERHUB_API_TOKEN", "t0ken-t0ken"),
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{json}");
    assert!(took < Duration::from_secs(15), "{took:?}: {json}");
    assert!(
        json["msg"]
            .as_str()
            .unwrap()
            .contains("did not finish within 10 s"),
        "{json}"
    );

    // 6: a misconfiguration is UNKNOWN (exit 3), written to the status file too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("status.json");
    let file_env = file.to_str().unwrap();
    for (env, args, says) in [
        (
            vec![("SPAWN_TIMEOUT", "ten minutes")],
            vec![],
            "SPAWN_TIMEOUT=\"ten minutes\" is not a number of seconds",
        ),
        (vec![("JUPYTERHUB_API_TOKEN", "")], vec![], "no token"),
        (
            vec![("MONITORED_URL", "hub:8081/hub/api")],
            vec![],
            "not an http(s) URL",
        ),
        (
            vec![],
            vec!["--notebook", "/nonexistent/check.ipynb"],
            "/nonexistent/check.ipynb",
        ),
    ] {
        let mut all = vec![
            ("MONITORED_URL", url.as_str()),
            ("JUPYTERHUB_API_TOKEN", "t0ken-t0ken"),
            ("STATUS_FILE", file_env),
        ];
        all.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
        all.extend(env);
        let _ = std::fs::remove_file(&file);
        let (code, json, _) = once(&all, &args);
        assert_eq!(code, Some(3), "{json}");
        assert_eq!(json["code"], "UNKNOWN", "{json}");
        let msg = json["msg"].as_str().unwrap();
        assert!(
            msg.starts_with("misconfigured: ") && msg.contains(says),
            "{msg}"
        );
        let written: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(written["code"], "UNKNOWN", "{written}");
    }
}
