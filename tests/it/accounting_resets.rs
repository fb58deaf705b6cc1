//! Counter resets where they matter survive the cheaper reset question: a pod whose sandbox
//! was recreated (the pod cgroup's network counters restart from 0) is reported as a lower
//! bound by a real Prometheus and by the snapshot source alike, while counters that go down
//! where no figure reads them (the pod cgroup's CPU) and restarted containers (new series) are
//! not. Dropping the reset question, or asking it where resets never happen, fails here.

use std::fmt::Write as _;

use egi_accounting::apel::Limits;
use egi_accounting::config::Config;
use egi_accounting::job;
use egi_accounting::metrics::{MetricsSource, PodKey, PodUid, ask_all};
use egi_accounting::prometheus::{PrometheusConfig, PrometheusSource};
use egi_accounting::snapshot::SnapshotSource;
use egi_accounting::spool::WriterSink;
use egi_test_harness::Prometheus;

use crate::helpers::{normalized, window};

/// Time of the last scrape (a multiple of the interval, in the past).
const END: i64 = 1_789_999_800;
const INTERVAL: i64 = 300;
const SCRAPES: i64 = 5;

/// A pod of the history: name, uid and its cAdvisor series (`id` suffix under the pod
/// cgroup, extra labels, values per scrape; `None` where the series has no sample).
struct Pod {
    name: &'static str,
    uid: &'static str,
    cpu: Vec<(&'static str, &'static str, [Option<f64>; 5])>,
    network: Vec<(&'static str, &'static str, [Option<f64>; 5])>,
}

fn pods() -> Vec<Pod> {
    let all = |v: [f64; 5]| v.map(Some);
    vec![
        // The sandbox was recreated between the 3rd and 4th scrape: the pod cgroup's
        // network counters restart, each sandbox is its own series.
        Pod {
            name: "jupyter-reset",
            uid: "0a1b2c3d-0000-4000-8000-000000000001",
            cpu: vec![(
                "/c1",
                "container=\"notebook\",image=\"nb:1\",name=\"c1\"",
                all([10.0, 20.0, 30.0, 40.0, 50.0]),
            )],
            network: vec![
                ("", "", all([1e3, 2e3, 3e3, 500.0, 900.0])),
                (
                    "/sb1",
                    "image=\"pause\",name=\"sb1\"",
                    [Some(1e3), Some(2e3), Some(3e3), None, None],
                ),
                (
                    "/sb2",
                    "image=\"pause\",name=\"sb2\"",
                    [None, None, None, Some(500.0), Some(900.0)],
                ),
            ],
        },
        // The notebook container restarted: a new series from 0, not a reset. The pod
        // cgroup's CPU goes down with it, but no figure reads the pod cgroup's CPU.
        Pod {
            name: "jupyter-restart",
            uid: "0a1b2c3d-0000-4000-8000-000000000002",
            cpu: vec![
                ("", "", all([10.0, 20.0, 30.0, 5.0, 15.0])),
                (
                    "/c1",
                    "container=\"notebook\",image=\"nb:1\",name=\"c1\"",
                    [Some(10.0), Some(20.0), Some(30.0), None, None],
                ),
                (
                    "/c2",
                    "container=\"notebook\",image=\"nb:1\",name=\"c2\"",
                    [None, None, None, Some(5.0), Some(15.0)],
                ),
            ],
            network: vec![("", "", all([1e3, 2e3, 3e3, 4e3, 5e3]))],
        },
        Pod {
            name: "jupyter-plain",
            uid: "0a1b2c3d-0000-4000-8000-000000000003",
            cpu: vec![(
                "/c1",
                "container=\"notebook\",image=\"nb:1\",name=\"c1\"",
                all([1.0, 2.0, 3.0, 4.0, 5.0]),
            )],
            network: vec![("", "", all([10.0, 20.0, 30.0, 40.0, 50.0]))],
        },
    ]
}

/// One series of a family: labels and values per scrape.
type Row = (String, [Option<f64>; 5]);

/// The OpenMetrics history of [`pods`]: kube-state-metrics and cAdvisor series.
fn history() -> String {
    let pods = pods();
    let times: Vec<i64> = (0..SCRAPES)
        .map(|i| END - (SCRAPES - 1 - i) * INTERVAL)
        .collect();
    let mut out = String::new();
    let mut family = |kind: &str, name: &str, sample: &str, rows: &dyn Fn(&Pod) -> Vec<Row>| {
        writeln!(out, "# TYPE {name} {kind}").unwrap();
        for p in &pods {
            for (labels, values) in rows(p) {
                for (t, v) in times.iter().zip(values) {
                    if let Some(v) = v {
                        writeln!(out, "{sample}{{{labels}}} {v} {t}").unwrap();
                    }
                }
            }
        }
    };
    let pod_labels = |p: &Pod| format!("namespace=\"hub\",pod=\"{}\",uid=\"{}\"", p.name, p.uid);
    let always = |v: f64| [Some(v); 5];
    family("gauge", "kube_pod_created", "kube_pod_created", &|p| {
        vec![(pod_labels(p), always((END - 3600) as f64))]
    });
    family(
        "gauge",
        "kube_pod_status_phase",
        "kube_pod_status_phase",
        &|p| vec![(format!("{},phase=\"Running\"", pod_labels(p)), always(1.0))],
    );
    family(
        "gauge",
        "kube_pod_annotations",
        "kube_pod_annotations",
        &|p| {
            let user = p.name.trim_start_matches("jupyter-");
            vec![(
                format!(
                    "annotation_hub_jupyter_org_username=\"{user}\",{}",
                    pod_labels(p)
                ),
                always(1.0),
            )]
        },
    );
    family(
        "gauge",
        "kube_pod_container_info",
        "kube_pod_container_info",
        &|p| {
            vec![(
                format!("container=\"notebook\",image=\"nb:1\",{}", pod_labels(p)),
                always(1.0),
            )]
        },
    );
    family(
        "gauge",
        "kube_pod_container_resource_requests",
        "kube_pod_container_resource_requests",
        &|p| {
            vec![(
                format!(
                    "container=\"notebook\",{},resource=\"cpu\",unit=\"core\"",
                    pod_labels(p)
                ),
                always(0.5),
            )]
        },
    );
    let cadvisor = |p: &Pod, id: &str, extra: &str, interface: bool| {
        let extra = if extra.is_empty() {
            String::new()
        } else {
            format!("{extra},")
        };
        let interface = if interface { "interface=\"eth0\"," } else { "" };
        format!(
            "{extra}id=\"/kubepods/burstable/pod{}{id}\",{interface}namespace=\"hub\",pod=\"{}\"",
            p.uid, p.name
        )
    };
    family(
        "counter",
        "container_cpu_usage_seconds",
        "container_cpu_usage_seconds_total",
        &|p| {
            p.cpu
                .iter()
                .map(|(id, extra, v)| (cadvisor(p, id, extra, false), *v))
                .collect()
        },
    );
    for name in [
        "container_network_receive_bytes",
        "container_network_transmit_bytes",
    ] {
        family("counter", name, &format!("{name}_total"), &|p| {
            p.network
                .iter()
                .map(|(id, extra, v)| (cadvisor(p, id, extra, true), *v))
                .collect()
        });
    }
    out.push_str("# EOF\n");
    out
}

async fn run(source: &dyn MetricsSource) -> (job::Report, String) {
    let config = Config::from_ini_str("", |_| None).unwrap();
    let mut sink = WriterSink::new(Vec::new(), "buffer");
    let w = window(END, "1h");
    let report = job::run(source, &w, &config.records, Limits::default(), &mut sink)
        .await
        .expect("accounting run");
    (report, String::from_utf8(sink.into_inner()).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recreated_sandbox_is_a_lower_bound_from_both_sources() {
    let text = history();
    let prometheus = Prometheus::backfill(&text).unwrap();
    let live =
        PrometheusSource::new(PrometheusConfig::new(prometheus.url().parse().unwrap())).unwrap();
    let snapshot = SnapshotSource::from_bytes(text.as_bytes()).unwrap();

    let w = window(END, "1h");
    let from_prometheus = normalized(ask_all(&live, &w).await.unwrap());
    let from_snapshot = normalized(ask_all(&snapshot, &w).await.unwrap());
    assert_eq!(from_prometheus.pods.len(), 3, "{from_prometheus:?}");
    // Only the recreated sandbox's pod: its received and transmitted counters reset once each.
    let resets: Vec<(&PodKey, Option<&PodUid>, f64)> = from_prometheus
        .counter_resets
        .iter()
        .map(|r| (&r.key, r.uid.as_ref(), r.value))
        .collect();
    let reset_pod = &pods()[0];
    assert_eq!(
        resets,
        [(
            &PodKey {
                namespace: "hub".to_owned(),
                pod: reset_pod.name.to_owned()
            },
            Some(&PodUid(reset_pod.uid.to_owned())),
            2.0
        )]
    );
    assert_eq!(from_snapshot, from_prometheus);

    let (live_report, live_text) = run(&live).await;
    let (snap_report, snap_text) = run(&snapshot).await;
    assert_eq!(live_report, snap_report);
    assert_eq!(live_text, snap_text);
    assert_eq!(
        (live_report.records, live_report.lower_bounds),
        (3, 1),
        "{live_report:?}"
    );
}
