//! The two `MetricsSource`s of `egi-accounting` give the same answers for the same history:
//! a real Prometheus loaded with the bundled sample, and the sample file itself. Both are
//! also checked against what the generator planned, so that agreeing on nothing fails.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use egi_accounting::metrics::{Answers, MetricsSource, Timestamp, Window, ask_all};
use egi_accounting::prometheus::{PrometheusConfig, PrometheusSource};
use egi_accounting::snapshot::SnapshotSource;
use egi_test_harness::Prometheus;
use egi_test_harness::synthetic::{self, Params, Pod};

use crate::helpers::{normalized, sample_path, sample_text, window};

/// The windows asked: the whole history at its last timestamp, and two earlier 2-hour
/// windows, one between scrapes and one whose both ends fall exactly on scrapes (range
/// selectors include both ends).
fn windows(end: i64) -> [Window; 3] {
    [
        window(end, "24h"),
        window(end - 4 * 3600 - 600, "2h"),
        window(end - 4 * 3600, "2h"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_and_snapshot_sources_give_the_same_answers() {
    let params = Params::sample();
    let pods = synthetic::plan(&params).unwrap();
    let prometheus = Prometheus::backfill(&sample_text()).unwrap();
    let url = prometheus.url().parse().unwrap();
    let live = PrometheusSource::new(PrometheusConfig::new(url)).unwrap();
    let snapshot = SnapshotSource::from_path(sample_path()).unwrap();
    assert_eq!(
        snapshot.last_timestamp(),
        Some(Timestamp::from_millis(params.end * 1000)),
        "the sample's last timestamp"
    );
    for w in windows(params.end) {
        let from_prometheus = ask(&live, &w).await;
        let from_snapshot = ask(&snapshot, &w).await;
        let context = format!("at {} over {}", w.at.as_secs(), w.range);
        check_against_plan(
            &from_prometheus,
            &pods,
            &w,
            &format!("prometheus {context}"),
        );
        check_against_plan(&from_snapshot, &pods, &w, &format!("snapshot {context}"));
        same(&context, "pods", &from_snapshot.pods, &from_prometheus.pods);
        same(
            &context,
            "running",
            &from_snapshot.running,
            &from_prometheus.running,
        );
        same(
            &context,
            "annotations",
            &from_snapshot.annotations,
            &from_prometheus.annotations,
        );
        same(
            &context,
            "images",
            &from_snapshot.images,
            &from_prometheus.images,
        );
        same(
            &context,
            "cpu_requests",
            &from_snapshot.cpu_requests,
            &from_prometheus.cpu_requests,
        );
        same(
            &context,
            "cpu_seconds",
            &from_snapshot.cpu_seconds,
            &from_prometheus.cpu_seconds,
        );
        same(
            &context,
            "peak_memory",
            &from_snapshot.peak_memory,
            &from_prometheus.peak_memory,
        );
        same(
            &context,
            "network_received",
            &from_snapshot.network_received,
            &from_prometheus.network_received,
        );
        same(
            &context,
            "network_transmitted",
            &from_snapshot.network_transmitted,
            &from_prometheus.network_transmitted,
        );
        same(
            &context,
            "counter_resets",
            &from_snapshot.counter_resets,
            &from_prometheus.counter_resets,
        );
        assert_eq!(from_snapshot, from_prometheus, "{context}");
    }
}

async fn ask(source: &dyn MetricsSource, w: &Window) -> Answers {
    normalized(ask_all(source, w).await.expect("every question answered"))
}

/// Fails with the first differing entry rather than two screens of Debug output.
fn same<T: PartialEq + Debug>(context: &str, what: &str, snapshot: &[T], prometheus: &[T]) {
    if let Some((s, p)) = snapshot.iter().zip(prometheus).find(|(s, p)| s != p) {
        panic!("{context}: {what} differ:\n  snapshot:   {s:?}\n  prometheus: {p:?}");
    }
    assert_eq!(
        snapshot.len(),
        prometheus.len(),
        "{context}: {what}: snapshot has {} entries, prometheus {}",
        snapshot.len(),
        prometheus.len()
    );
}

/// The answers hold what the generator planned for the window.
fn check_against_plan(answers: &Answers, pods: &[Pod], w: &Window, context: &str) {
    let (from, to) = (
        w.at.as_secs() - w.range.duration().as_secs() as i64,
        w.at.as_secs(),
    );
    let filtered: Vec<&Pod> = pods.iter().filter(|p| p.in_default_filter()).collect();
    let seen: BTreeMap<&str, &Pod> = filtered
        .iter()
        .filter(|p| p.seen_in(from, to))
        .map(|p| (p.uid.as_str(), *p))
        .collect();
    assert!(!seen.is_empty(), "{context}: the window should hold pods");

    // One pod per uid, with its name and creation time.
    let got: BTreeMap<&str, (&str, &str, f64)> = answers
        .pods
        .iter()
        .map(|p| {
            (
                p.uid.0.as_str(),
                (p.key.namespace.as_str(), p.key.pod.as_str(), p.created),
            )
        })
        .collect();
    assert_eq!(
        got.len(),
        answers.pods.len(),
        "{context}: a uid twice in pods"
    );
    let expected: BTreeMap<&str, (&str, &str, f64)> = seen
        .iter()
        .map(|(uid, p)| {
            (
                *uid,
                (p.namespace.as_str(), p.name.as_str(), p.created as f64),
            )
        })
        .collect();
    assert_eq!(got, expected, "{context}: pods");

    // Running samples: how many and the last one.
    let running: BTreeMap<&str, (u64, Option<i64>)> = answers
        .running
        .iter()
        .filter(|r| r.running_count > 0)
        .map(|r| {
            (
                r.uid.0.as_str(),
                (r.running_count, r.last_running.map(Timestamp::as_secs)),
            )
        })
        .collect();
    let expected: BTreeMap<&str, (u64, Option<i64>)> = seen
        .iter()
        .map(|(uid, p)| (*uid, p.running_in(from, to)))
        .filter(|(_, (n, _))| *n > 0)
        .collect();
    assert!(
        !expected.is_empty(),
        "{context}: the window should hold running pods"
    );
    assert_eq!(running, expected, "{context}: running samples");
    for r in &answers.running {
        assert!(
            seen.contains_key(r.uid.0.as_str()),
            "{context}: running {r:?} not in the window"
        );
    }

    // Annotations, non-ASCII usernames included.
    let annotations: BTreeMap<&str, (Option<&str>, Option<&str>)> = answers
        .annotations
        .iter()
        .map(|a| {
            let get = |k: &str| a.annotations.get(k).map(String::as_str);
            (
                a.uid.0.as_str(),
                (get("hub_jupyter_org_username"), get("egi_eu_primary_group")),
            )
        })
        .collect();
    let expected: BTreeMap<&str, (Option<&str>, Option<&str>)> = seen
        .iter()
        .map(|(uid, p)| (*uid, (Some(p.user.as_str()), p.primary_group.as_deref())))
        .collect();
    assert_eq!(annotations, expected, "{context}: annotations");

    // Images: every pod seen running has one, and only the planned image.
    let image_uids: BTreeSet<&str> = answers.images.iter().map(|i| i.uid.0.as_str()).collect();
    for i in &answers.images {
        let pod = seen
            .get(i.uid.0.as_str())
            .unwrap_or_else(|| panic!("{context}: {i:?}"));
        assert_eq!(i.value, pod.image, "{context}: image of {}", pod.name);
    }
    for uid in running.keys() {
        assert!(
            image_uids.contains(uid),
            "{context}: no image for running pod {uid}"
        );
    }

    // CPU requests: the notebook container's, per uid.
    let requests: BTreeMap<&str, f64> = answers
        .cpu_requests
        .iter()
        .map(|r| (r.uid.0.as_str(), r.value))
        .collect();
    let expected: BTreeMap<&str, f64> = seen.iter().map(|(uid, p)| (*uid, p.cpu_request)).collect();
    assert_eq!(requests, expected, "{context}: CPU requests");

    // Usage, grouped by namespace + pod + the pod UID of the cgroup path: pods whose
    // container (CPU, memory) or sandbox (network) cAdvisor reported in the window, all with
    // positive values; a user's two sessions under one pod name stay apart.
    let keys = |pick: &dyn Fn(&Pod) -> bool| -> BTreeSet<(String, String, Option<String>)> {
        filtered
            .iter()
            .filter(|p| pick(p))
            .map(|p| (p.namespace.clone(), p.name.clone(), Some(p.uid.clone())))
            .collect()
    };
    let containers = keys(&|p| p.container_seen_in(from, to));
    let sandboxes = keys(&|p| p.sandbox_seen_in(from, to));
    assert!(
        !containers.is_empty(),
        "{context}: the window should hold container usage"
    );
    for (what, usage, expected) in [
        ("cpu_seconds", &answers.cpu_seconds, &containers),
        ("peak_memory", &answers.peak_memory, &containers),
        ("network_received", &answers.network_received, &sandboxes),
        (
            "network_transmitted",
            &answers.network_transmitted,
            &sandboxes,
        ),
    ] {
        let got: BTreeSet<(String, String, Option<String>)> = usage
            .iter()
            .map(|u| {
                let uid = u.uid.as_ref().map(|u| u.0.clone());
                (u.key.namespace.clone(), u.key.pod.clone(), uid)
            })
            .collect();
        assert_eq!(&got, expected, "{context}: {what} keys");
        assert_eq!(got.len(), usage.len(), "{context}: {what}: a pod twice");
        for u in usage {
            assert!(
                u.value > 0.0 && u.value.is_finite(),
                "{context}: {what} {u:?}"
            );
        }
    }

    // Counter resets: only where the sandbox was recreated (the pod-level received and
    // transmitted counters restart; one of them may not show it if the new namespace's first
    // sample already exceeds the old total); container restarts start new series, which are
    // not resets.
    let resets: BTreeMap<&str, f64> = answers
        .counter_resets
        .iter()
        .filter(|r| r.value != 0.0)
        .map(|r| (r.key.pod.as_str(), r.value))
        .collect();
    let expected: BTreeSet<&str> = filtered
        .iter()
        .filter(|p| p.network_reset_in(from, to))
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(
        resets.keys().copied().collect::<BTreeSet<_>>(),
        expected,
        "{context}: pods with counter resets"
    );
    for (pod, n) in resets {
        assert!(n == 1.0 || n == 2.0, "{context}: {n} resets for {pod}");
    }
}
