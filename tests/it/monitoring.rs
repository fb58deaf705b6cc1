//! egi-monitoring's probes against a real JupyterHub 6 started by the harness: spawn,
//! leftover servers, execution, notebooks, and the hub's own failures (wrong token, failing
//! spawn, hub stopped, 500 on the start request).

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use egi_monitoring::hub::HubClient;
use egi_monitoring::notebook::Notebook;
use egi_monitoring::{
    ExecuteProbe, HubReachable, NotebookProbe, Outcome, Probe, SpawnProbe, SpawnSettings, Status,
    Timeouts,
};
use egi_test_harness::jupyterhub::{BROKEN_USER_PREFIX, JupyterHub, Options};

/// Generous timeouts: the machine is shared and a spawn takes 3-4 times longer under load.
pub(crate) fn timeouts() -> Timeouts {
    Timeouts {
        request: Duration::from_secs(60),
        spawn: Duration::from_secs(180),
        stop: Duration::from_secs(90),
        kernel: Duration::from_secs(90),
        execute: Duration::from_secs(90),
    }
}

pub(crate) fn start_hub() -> JupyterHub {
    JupyterHub::start().unwrap_or_else(|e| panic!("starting JupyterHub: {e:#}"))
}

pub(crate) fn client(hub: &JupyterHub) -> HubClient {
    client_with_token(hub, hub.token())
}

pub(crate) fn client_with_token(hub: &JupyterHub, token: &str) -> HubClient {
    HubClient::builder(hub.api_url())
        .token(token)
        .request_timeout(timeouts().request)
        .build()
        .expect("valid client")
}

pub(crate) fn settings(user: &str) -> SpawnSettings {
    SpawnSettings::new(user).timeouts(timeouts())
}

pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// The names of the phases an outcome ran.
pub(crate) fn phases(outcome: &Outcome) -> Vec<&str> {
    outcome.phases.iter().map(|p| p.name.as_str()).collect()
}

/// Asserts `user` has no server left on the hub.
pub(crate) async fn assert_no_server(client: &HubClient, user: &str, hub: &JupyterHub) {
    let found = client.user(user).await.expect("GET user");
    let servers = found.map(|u| u.servers).unwrap_or_default();
    assert!(
        servers.is_empty(),
        "{user} still has {servers:?}\n{}",
        hub.log_tail(30)
    );
}

/// Starts `user`'s default server and waits for its ready event, as a user would leave it.
pub(crate) async fn leave_a_server_running(client: &HubClient, user: &str) {
    if client.user(user).await.expect("GET user").is_none() {
        client.create_user(user).await.expect("create user");
    }
    client.start_server(user, "").await.expect("start");
    let mut events = client.progress(user, "").await.expect("progress");
    loop {
        let event = events
            .next_event()
            .await
            .expect("event")
            .expect("stream open");
        assert!(!event.failed, "leftover spawn failed: {event:?}");
        if event.ready {
            return;
        }
    }
}

fn check(outcome: &Outcome, status: Status, hub: &JupyterHub) {
    assert_eq!(
        outcome.status,
        status,
        "{outcome:#?}\nhub log:\n{}",
        hub.log_tail(40)
    );
}

#[test]
fn hub_reachable_spawn_and_metrics() {
    let hub = start_hub();
    let client = client(&hub);
    block_on(async {
        let reachable = HubReachable::new(client.clone()).run().await;
        check(&reachable, Status::Ok, &hub);
        assert!(
            reachable.message.starts_with("JupyterHub 6."),
            "{}",
            reachable.message
        );
        assert_eq!(reachable.details["token_owner"], "service monitor");

        let probe: Box<dyn Probe> = Box::new(SpawnProbe::new(client.clone(), settings("monitor")));
        let outcome = probe.run().await;
        check(&outcome, Status::Ok, &hub);
        assert!(
            outcome.message.starts_with("Spawned server in "),
            "{}",
            outcome.message
        );
        assert_eq!(phases(&outcome), ["user", "start", "ready", "stop"]);
        assert_eq!(outcome.details["server_url"], "/user/monitor/");
        assert_no_server(&client, "monitor", &hub).await;

        // The hub's own API: health, metrics (read:metrics), users (list:users).
        client.health().await.expect("health");
        let metrics = client.metrics().await.expect("metrics");
        assert!(metrics.contains("jupyterhub_running_servers"), "{metrics}");
        assert!(
            metrics.contains("jupyterhub_server_spawn_duration_seconds"),
            "{metrics}"
        );
        let users = client.users().await.expect("users");
        assert!(users.iter().any(|u| u.name == "monitor"), "{users:?}");
    });
}

#[test]
fn leftover_servers_default_and_named_are_stopped_first() {
    let hub = start_hub();
    let client = client(&hub);
    block_on(async {
        leave_a_server_running(&client, "monitor").await;
        let outcome = SpawnProbe::new(client.clone(), settings("monitor"))
            .run()
            .await;
        check(&outcome, Status::Ok, &hub);
        assert_eq!(
            phases(&outcome),
            ["user", "leftover", "start", "ready", "stop"]
        );
        assert!(
            outcome
                .message
                .contains("stopped a leftover server (ready) in"),
            "{}",
            outcome.message
        );
        assert_no_server(&client, "monitor", &hub).await;

        // A named server, with a leftover of its own.
        let named = settings("monitor").named_server("probe");
        client
            .start_server("monitor", "probe")
            .await
            .expect("start named");
        let outcome = SpawnProbe::new(client.clone(), named).run().await;
        check(&outcome, Status::Ok, &hub);
        assert_eq!(outcome.details["server_url"], "/user/monitor/probe/");
        assert!(outcome.details.contains_key("leftover"), "{outcome:#?}");
        assert_no_server(&client, "monitor", &hub).await;
    });
}

#[test]
fn execute_and_notebook_probes_compute() {
    let hub = start_hub();
    let client = client(&hub);
    block_on(async {
        let outcome = ExecuteProbe::new(client.clone(), settings("monitor"))
            .run()
            .await;
        check(&outcome, Status::Ok, &hub);
        assert_eq!(outcome.details["result"], "42");
        assert!(outcome.details["stdout"].starts_with("3."), "{outcome:#?}");
        assert!(
            outcome.message.contains(": result 42 (server ready in "),
            "{}",
            outcome.message
        );
        assert_eq!(
            phases(&outcome),
            [
                "user",
                "start",
                "ready",
                "route",
                "kernel",
                "websocket",
                "execute",
                "kernel delete",
                "stop"
            ]
        );

        let custom = ExecuteProbe::new(client.clone(), settings("monitor"))
            .code(
                "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n2 ** 10",
                Some("1024".into()),
            )
            .run()
            .await;
        check(&custom, Status::Ok, &hub);
        assert_eq!(custom.details["stdout"], "to stdout\n");
        assert_eq!(custom.details["stderr"], "to stderr\n");
        assert_eq!(custom.details["result"], "1024");

        let wrong = ExecuteProbe::new(client.clone(), settings("monitor"))
            .code("6 * 9", Some("42".into()))
            .run()
            .await;
        check(&wrong, Status::Critical, &hub);
        assert_eq!(wrong.message, "code returned \"54\", expected \"42\"");

        let notebook = Notebook::parse("small.ipynb", &small_notebook(false), false).unwrap();
        let outcome = NotebookProbe::new(client.clone(), settings("monitor"), notebook)
            .run()
            .await;
        check(&outcome, Status::Ok, &hub);
        assert!(
            outcome
                .message
                .starts_with("Ran 3 cells of small.ipynb in "),
            "{}",
            outcome.message
        );
        assert_eq!(
            outcome.details["cell 2 stdout"],
            "squares: [0, 1, 4, 9, 16]\n"
        );
        assert_eq!(outcome.details["cell 3 result"], "30");
        assert_no_server(&client, "monitor", &hub).await;
    });
}

/// Three code cells (and a markdown one); the second checks its output, the third its
/// result. With `raise_in_second`, the second cell divides by zero.
pub(crate) fn small_notebook(raise_in_second: bool) -> String {
    let second = if raise_in_second {
        r#"["squares = [i * i for i in range(n)]\n", "print(1 / 0)"]"#
    } else {
        r#"["squares = [i * i for i in range(n)]\n", "print('squares:', squares)"]"#
    };
    format!(
        r#"{{"nbformat": 4, "nbformat_minor": 5, "metadata": {{}},
  "cells": [
    {{"cell_type": "markdown", "metadata": {{}}, "source": "A check"}},
    {{"cell_type": "code", "metadata": {{}}, "outputs": [], "source": "n = 5"}},
    {{"cell_type": "code", "outputs": [], "source": {second},
      "metadata": {{"egi_monitoring": {{"expected_output": "squares: [0, 1, 4, 9, 16]\n"}}}}}},
    {{"cell_type": "code", "metadata": {{"egi_monitoring": {{"expected_output": "30"}}}},
      "outputs": [], "source": "sum(squares)"}}
  ]}}"#
    )
}

#[test]
fn an_exception_is_critical_with_its_name_and_the_server_is_stopped() {
    let hub = start_hub();
    let client = client(&hub);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raises.ipynb");
    std::fs::write(&path, small_notebook(true)).unwrap();
    block_on(async {
        let notebook = Notebook::from_path(Path::new(&path), false).unwrap();
        let outcome = NotebookProbe::new(client.clone(), settings("monitor"), notebook)
            .run()
            .await;
        check(&outcome, Status::Critical, &hub);
        assert_eq!(
            outcome.message,
            "cell 2 (id cell-2) of raises.ipynb raised ZeroDivisionError: division by zero"
        );
        assert!(
            outcome.details["cell 2 traceback"].contains("ZeroDivisionError"),
            "{outcome:#?}"
        );
        let ran = phases(&outcome);
        assert!(
            ran.contains(&"cell 2") && !ran.contains(&"cell 3"),
            "stops at the first error: {ran:?}"
        );
        assert_eq!(
            ran[ran.len() - 2..],
            ["kernel delete", "stop"],
            "kernel and server cleaned up"
        );
        assert_no_server(&client, "monitor", &hub).await;

        let outcome = ExecuteProbe::new(client.clone(), settings("monitor"))
            .code("{}['missing']", None)
            .run()
            .await;
        check(&outcome, Status::Critical, &hub);
        assert_eq!(outcome.message, "code raised KeyError: 'missing'");
        assert_no_server(&client, "monitor", &hub).await;
    });
}

#[test]
fn wrong_token_is_critical_with_a_clear_message() {
    let hub = start_hub();
    let wrong = client_with_token(&hub, "not-the-token");
    block_on(async {
        let spawn = SpawnProbe::new(wrong.clone(), settings("monitor"))
            .run()
            .await;
        check(&spawn, Status::Critical, &hub);
        assert!(
            spawn
                .message
                .starts_with("the hub rejected the API token (HTTP 403)"),
            "{}",
            spawn.message
        );
        assert_eq!(
            phases(&spawn),
            ["user"],
            "nothing is started with a rejected token"
        );

        let reachable = HubReachable::new(wrong).run().await;
        check(&reachable, Status::Critical, &hub);
        assert!(
            reachable
                .message
                .starts_with("the hub rejected the API token"),
            "{}",
            reachable.message
        );
    });
}

#[test]
fn failing_spawn_is_reported_from_the_progress_stream_then_hub_stopped_is_critical() {
    let mut hub = start_hub();
    let client = client(&hub);
    let user = format!("{BROKEN_USER_PREFIX}monitor");
    block_on(async {
        let outcome = SpawnProbe::new(client.clone(), settings(&user)).run().await;
        check(&outcome, Status::Critical, &hub);
        assert!(
            outcome.message.starts_with("spawn failed: "),
            "{}",
            outcome.message
        );
        assert!(
            outcome.message.contains("No such file or directory"),
            "the hub's reason is in the message: {}",
            outcome.message
        );
        assert_eq!(phases(&outcome), ["user", "start", "ready", "stop"]);
        assert!(!outcome.phases[2].ok);
        assert_no_server(&client, &user, &hub).await;
    });

    hub.stop();
    block_on(async {
        for probe in [
            Box::new(HubReachable::new(client.clone())) as Box<dyn Probe>,
            Box::new(SpawnProbe::new(client.clone(), settings("monitor"))),
            Box::new(ExecuteProbe::new(client.clone(), settings("monitor"))),
        ] {
            let outcome = probe.run().await;
            assert_eq!(
                outcome.status,
                Status::Critical,
                "{}: {outcome:#?}",
                probe.name()
            );
            assert!(
                outcome.message.starts_with("cannot reach the hub"),
                "{}: {}",
                probe.name(),
                outcome.message
            );
        }
    });
}

#[test]
fn a_500_on_the_start_request_gives_the_hubs_message() {
    // JupyterHub's default slow_spawn_timeout (10 s): a spawn failing within it makes the
    // start request itself answer 500.
    let hub = JupyterHub::start_with(&Options {
        slow_spawn_timeout: Duration::from_secs(10),
        ..Options::default()
    })
    .unwrap_or_else(|e| panic!("starting JupyterHub: {e:#}"));
    let client = client(&hub);
    let user = format!("{BROKEN_USER_PREFIX}slow");
    block_on(async {
        let outcome = SpawnProbe::new(client.clone(), settings(&user)).run().await;
        check(&outcome, Status::Critical, &hub);
        // The hub's reason, from the failed spawn's progress stream, and its 500 message.
        assert!(
            outcome
                .message
                .starts_with("spawn failed: [Errno 2] No such file or directory"),
            "{}",
            outcome.message
        );
        assert!(
            outcome
                .message
                .ends_with("(the start request answered HTTP 500: Internal Server Error)"),
            "{}",
            outcome.message
        );
        assert_eq!(phases(&outcome), ["user", "start", "reason", "stop"]);
        assert_no_server(&client, &user, &hub).await;
    });
}
