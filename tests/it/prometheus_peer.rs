//! The Prometheus peer: backfilling, serving, stopping.

use std::collections::BTreeSet;
use std::net::TcpStream;

use egi_test_harness::Prometheus;
use egi_test_harness::synthetic::{self, Params};

use crate::helpers::sample_text;

fn strings(data: &serde_json::Value, label: &str) -> BTreeSet<String> {
    data["result"]
        .as_array()
        .expect("a vector result")
        .iter()
        .map(|s| s["metric"][label].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn backfilled_sample_is_served_with_every_pod_and_label() {
    let params = Params::sample();
    let pods = synthetic::plan(&params).unwrap();
    let prometheus = Prometheus::backfill(&sample_text()).unwrap();
    assert!(prometheus.url().starts_with("http://127.0.0.1:"));

    // Every pod, filtered or not, with its uid and non-ASCII usernames intact.
    let created = prometheus
        .query("last_over_time(kube_pod_created[24h])", params.end)
        .unwrap();
    let uids: BTreeSet<String> = pods.iter().map(|p| p.uid.clone()).collect();
    assert_eq!(strings(&created, "uid"), uids);
    let annotations = prometheus
        .query("last_over_time(kube_pod_annotations[24h])", params.end)
        .unwrap();
    let users = strings(&annotations, "annotation_hub_jupyter_org_username");
    assert!(
        users.contains("zoë") && users.contains("José Müller"),
        "{users:?}"
    );

    // Samples end at the configured end: nothing is left 5 minutes later.
    let live = prometheus.query("kube_pod_created", params.end).unwrap();
    let later = prometheus
        .query("kube_pod_created", params.end + 301)
        .unwrap();
    assert!(!live["result"].as_array().unwrap().is_empty());
    assert_eq!(later["result"], serde_json::json!([]));

    // Counters were backfilled as counters (`_total` samples of a family declared without).
    let rate = prometheus
        .query(
            "sum(rate(container_cpu_usage_seconds_total{container='notebook'}[1h]))",
            params.end,
        )
        .unwrap();
    let value: f64 = rate["result"][0]["value"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(value > 0.0, "{rate}");
}

#[test]
fn dropping_stops_the_server_and_removes_its_directory() {
    let text = "# TYPE up gauge\nup{job=\"x\"} 1 1700000000\n# EOF\n";
    let prometheus = Prometheus::backfill(text).unwrap();
    let address = prometheus.url().trim_start_matches("http://").to_owned();
    let dir = prometheus.dir().to_owned();
    let up = prometheus.query("up", 1_700_000_000).unwrap();
    assert_eq!(up["result"][0]["value"][1], "1");
    assert!(
        prometheus
            .log_tail(50)
            .contains("Server is ready to receive web requests")
    );
    drop(prometheus);
    assert!(
        TcpStream::connect(&address).is_err(),
        "still listening on {address}"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn invalid_history_fails_with_promtool_message() {
    let err = Prometheus::backfill("this is not openmetrics\n").unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("create-blocks-from openmetrics"),
        "{message}"
    );
}

#[test]
fn servers_run_side_by_side() {
    let text = "# TYPE up gauge\nup 1 1700000000\n# EOF\n";
    let a = Prometheus::backfill(text).unwrap();
    let b = Prometheus::backfill(text).unwrap();
    assert_ne!(a.url(), b.url());
    assert_ne!(a.dir(), b.dir());
    for p in [&a, &b] {
        assert_eq!(
            p.query("up", 1_700_000_000).unwrap()["result"][0]["value"][1],
            "1"
        );
    }
}
