//! Semantics of every question over small hand-written histories.

use futures_util::FutureExt;

use super::SnapshotSource;
use crate::error::{Error, Result};
use crate::metrics::{
    ByPod, ByUid, Filter, LookBack, MetricsSource, PodKey, PodUid, RunningSamples, Timestamp,
    Usage, Window,
};

/// A source over `body` (OpenMetrics lines without `# EOF`).
fn source(body: &str) -> SnapshotSource {
    SnapshotSource::from_bytes(format!("{body}# EOF\n").as_bytes()).unwrap()
}

/// Evaluation at `at` seconds over `range`, with `filter`.
fn window(at: i64, range: &str, filter: &str) -> Window {
    Window {
        at: Timestamp::from_millis(at * 1000),
        range: LookBack::parse(range).unwrap(),
        filter: Filter::new(filter).unwrap(),
    }
}

/// The answer of an (always ready) source future.
fn ready<T>(f: crate::metrics::BoxFuture<'_, Result<T>>) -> T {
    f.now_or_never().expect("snapshot answers at once").unwrap()
}

fn key(ns: &str, pod: &str) -> PodKey {
    PodKey {
        namespace: ns.to_owned(),
        pod: pod.to_owned(),
    }
}

fn by_pod(answers: &[ByPod]) -> Vec<(&str, &str, f64)> {
    answers
        .iter()
        .map(|a| (a.key.namespace.as_str(), a.key.pod.as_str(), a.value))
        .collect()
}

fn uid(u: &str) -> PodUid {
    PodUid(u.to_owned())
}

#[test]
fn pods_take_the_last_value_in_the_closed_window() {
    let s = source(concat!(
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-b\",uid=\"u2\"} 10 999\n",
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-b\",uid=\"u2\"} 11 1000\n",
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-b\",uid=\"u2\"} 12 1060\n",
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-b\",uid=\"u2\"} 13 1060.001\n",
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-a\",uid=\"u1\"} 20 1000\n",
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-old\",uid=\"u0\"} 30 999.999\n",
        "kube_pod_created{namespace=\"hub\",pod=\"other\",uid=\"u3\"} 40 1030\n",
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-nouid\"} 50 1030\n",
        "kube_pod_created{pod=\"jupyter-nons\",uid=\"u4\"} 60 1030\n",
    ));
    let w = window(1060, "1m", Filter::DEFAULT);
    let pods = ready(s.pods(&w));
    let got: Vec<(&str, &str, f64)> = pods
        .iter()
        .map(|p| (p.uid.0.as_str(), p.key.pod.as_str(), p.created))
        .collect();
    // [1000 s, 1060 s], both ends inclusive; u0 is 1 ms too old, u3 filtered out, the
    // series without uid or namespace left out; sorted by uid.
    assert_eq!(got, [("u1", "jupyter-a", 20.0), ("u2", "jupyter-b", 12.0)]);
    assert_eq!(pods[0].key, key("hub", "jupyter-a"));
    assert_eq!(s.last_timestamp(), Some(Timestamp::from_millis(1_060_001)));
}

#[test]
fn running_reduces_samples_and_merges_series_of_one_uid() {
    let s = source(concat!(
        "kube_pod_status_phase{phase=\"Running\",pod=\"jupyter-a\",uid=\"a\",instance=\"k1\"} 1 100\n",
        "kube_pod_status_phase{phase=\"Running\",pod=\"jupyter-a\",uid=\"a\",instance=\"k1\"} 1 160\n",
        "kube_pod_status_phase{phase=\"Running\",pod=\"jupyter-a\",uid=\"a\",instance=\"k1\"} 0 220\n",
        "kube_pod_status_phase{phase=\"Running\",pod=\"jupyter-a\",uid=\"a\",instance=\"k1\"} NaN 280\n",
        // A second exporter of the same pod: merged (last = max, count = sum).
        "kube_pod_status_phase{phase=\"Running\",pod=\"jupyter-a\",uid=\"a\",instance=\"k2\"} 1 190\n",
        "kube_pod_status_phase{phase=\"Pending\",pod=\"jupyter-a\",uid=\"a\",instance=\"k1\"} 1 200\n",
        "kube_pod_status_phase{phase=\"Running\",pod=\"jupyter-b\",uid=\"b\"} 0 100\n",
        "kube_pod_status_phase{phase=\"Running\",pod=\"jupyter-b\",uid=\"b\"} 1 40\n",
        "kube_pod_status_phase{phase=\"Running\",pod=\"jupyter-c\"} 1 100\n",
    ));
    let running = ready(s.running(&window(300, "250s", Filter::DEFAULT)));
    assert_eq!(
        running,
        [
            RunningSamples {
                uid: uid("a"),
                last_running: Some(Timestamp::from_millis(190_000)),
                running_count: 3,
            },
            // Its only 1 is before the window: present, never seen running.
            RunningSamples {
                uid: uid("b"),
                last_running: None,
                running_count: 0,
            },
        ]
    );
}

#[test]
fn annotations_strip_the_prefix() {
    let s = source(concat!(
        "kube_pod_annotations{pod=\"jupyter-a\",uid=\"a\",annotation_hub_jupyter_org_username=\"jürgen\",annotation_x=\"\",namespace=\"hub\"} 1 100\n",
        "kube_pod_annotations{pod=\"jupyter-b\",namespace=\"hub\"} 1 100\n",
    ));
    let a = ready(s.annotations(&window(100, "1h", Filter::DEFAULT)));
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].uid, uid("a"));
    // An empty label does not exist in Prometheus: no `x` annotation.
    assert_eq!(
        a[0].annotations,
        [("hub_jupyter_org_username".to_owned(), "jürgen".to_owned())]
            .into_iter()
            .collect()
    );
}

#[test]
fn images_of_the_notebook_container_only() {
    let s = source(concat!(
        "kube_pod_container_info{container=\"notebook\",image=\"jupyter/scipy:1\",pod=\"jupyter-a\",uid=\"a\"} 1 100\n",
        "kube_pod_container_info{container=\"sidecar\",image=\"proxy:2\",pod=\"jupyter-a\",uid=\"a\"} 1 100\n",
        "kube_pod_container_info{container=\"notebook\",pod=\"jupyter-b\",uid=\"b\"} 1 100\n",
        "kube_pod_container_info{container=\"notebook\",image=\"jupyter/r:1\",pod=\"jupyter-c\",uid=\"c\"} 1 10\n",
    ));
    let images = ready(s.images(&window(100, "30s", Filter::DEFAULT)));
    assert_eq!(
        images,
        [ByUid {
            uid: uid("a"),
            value: "jupyter/scipy:1".to_owned(),
        }]
    );
}

#[test]
fn cpu_requests_sum_per_uid_the_max_over_time() {
    let s = source(concat!(
        "kube_pod_container_resource_requests{resource=\"cpu\",container=\"notebook\",pod=\"jupyter-a\",uid=\"a\"} 0.5 100\n",
        "kube_pod_container_resource_requests{resource=\"cpu\",container=\"notebook\",pod=\"jupyter-a\",uid=\"a\"} 2 110\n",
        "kube_pod_container_resource_requests{resource=\"cpu\",container=\"notebook\",pod=\"jupyter-a\",uid=\"a\"} 1 120\n",
        "kube_pod_container_resource_requests{resource=\"cpu\",container=\"side\",pod=\"jupyter-a\",uid=\"a\"} NaN 100\n",
        "kube_pod_container_resource_requests{resource=\"cpu\",container=\"side\",pod=\"jupyter-a\",uid=\"a\"} 0.25 110\n",
        "kube_pod_container_resource_requests{resource=\"memory\",container=\"notebook\",pod=\"jupyter-a\",uid=\"a\"} 1e9 100\n",
        // All NaN: max_over_time is NaN, and NaN propagates through sum.
        "kube_pod_container_resource_requests{resource=\"cpu\",container=\"notebook\",pod=\"jupyter-b\",uid=\"b\"} NaN 100\n",
        "kube_pod_container_resource_requests{resource=\"cpu\",container=\"side\",pod=\"jupyter-b\",uid=\"b\"} 1 100\n",
        "kube_pod_container_resource_requests{resource=\"cpu\",container=\"notebook\",pod=\"jupyter-c\"} 4 100\n",
    ));
    let r = ready(s.cpu_requests(&window(120, "1h", Filter::DEFAULT)));
    assert_eq!(r.len(), 2);
    assert_eq!((r[0].uid.0.as_str(), r[0].value), ("a", 2.25));
    assert_eq!(r[1].uid, uid("b"));
    assert!(r[1].value.is_nan());
}

#[test]
fn cpu_and_memory_count_real_containers_only() {
    let s = source(concat!(
        "container_cpu_usage_seconds_total{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-a\"} 10 100\n",
        "container_cpu_usage_seconds_total{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-a\"} 30 160\n",
        "container_cpu_usage_seconds_total{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-a\"} 5 220\n",
        "container_cpu_usage_seconds_total{container=\"side\",namespace=\"hub\",pod=\"jupyter-a\"} +Inf 100\n",
        // Pod cgroup (no container label) and sandbox: not counted.
        "container_cpu_usage_seconds_total{namespace=\"hub\",pod=\"jupyter-a\"} 1000 100\n",
        "container_cpu_usage_seconds_total{container=\"POD\",namespace=\"hub\",pod=\"jupyter-a\"} 1000 100\n",
        "container_cpu_usage_seconds_total{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-b\"} 7 100\n",
        "container_memory_max_usage_bytes{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-a\"} NaN 100\n",
        "container_memory_max_usage_bytes{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-a\"} 3e8 160\n",
        "container_memory_max_usage_bytes{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-a\"} NaN 220\n",
        "container_memory_max_usage_bytes{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-a\"} 1e8 230\n",
    ));
    let w = window(300, "1h", Filter::DEFAULT);
    let cpu = ready(s.usage(&w, Usage::CpuSeconds));
    assert_eq!(
        by_pod(&cpu),
        [
            ("hub", "jupyter-a", f64::INFINITY),
            ("hub", "jupyter-b", 7.0)
        ]
    );
    let mem = ready(s.usage(&w, Usage::PeakMemoryBytes));
    assert_eq!(by_pod(&mem), [("hub", "jupyter-a", 3e8)]);
    // A window that only sees the lower sample after the reset.
    let late = ready(s.usage(&window(230, "15s", Filter::DEFAULT), Usage::CpuSeconds));
    assert_eq!(by_pod(&late), [("hub", "jupyter-a", 5.0)]);
}

#[test]
fn network_dedupes_cgroups_per_interface_then_sums_interfaces() {
    let s = source(concat!(
        // The pod's network namespace seen from two cgroups: counted once (max).
        "container_network_receive_bytes_total{id=\"/pod\",interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 100 100\n",
        "container_network_receive_bytes_total{id=\"/pod\",interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 150 160\n",
        "container_network_receive_bytes_total{id=\"/pod/pause\",interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 149 160\n",
        "container_network_receive_bytes_total{id=\"/pod\",interface=\"eth1\",namespace=\"hub\",pod=\"jupyter-a\"} 7 100\n",
        "container_network_receive_bytes_total{id=\"/pod/pause\",interface=\"eth1\",namespace=\"hub\",pod=\"jupyter-a\"} NaN 100\n",
        "container_network_transmit_bytes_total{id=\"/pod\",interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 5 100\n",
        // Without namespace: the group is left out (Prometheus would answer `{pod=...}`).
        "container_network_receive_bytes_total{id=\"/x\",interface=\"eth0\",pod=\"jupyter-x\"} 5 100\n",
    ));
    let w = window(160, "1h", Filter::DEFAULT);
    let rx = ready(s.usage(&w, Usage::NetworkReceivedBytes));
    // eth0: last values 150 and 149 -> max 150; eth1: max(7, NaN) = 7.
    assert_eq!(by_pod(&rx), [("hub", "jupyter-a", 157.0)]);
    let tx = ready(s.usage(&w, Usage::NetworkTransmittedBytes));
    assert_eq!(by_pod(&tx), [("hub", "jupyter-a", 5.0)]);
}

#[test]
fn counter_resets_of_the_pod_network_counters_are_summed_per_pod() {
    let s = source(concat!(
        // A container's CPU counter is in no reset question: a restart is a new series.
        "container_cpu_usage_seconds_total{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-a\"} 5 100\n",
        "container_cpu_usage_seconds_total{container=\"notebook\",namespace=\"hub\",pod=\"jupyter-a\"} 1 110\n",
        // The pod cgroup (no image). NaN compares false both ways: no reset counted around it.
        "container_network_receive_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 9 100\n",
        "container_network_receive_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} NaN 110\n",
        "container_network_receive_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 1 120\n",
        "container_network_transmit_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 9 100\n",
        "container_network_transmit_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 1 120\n",
        "container_network_transmit_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 4 125\n",
        "container_network_transmit_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 3 130\n",
        // Without a reset: absent from the answer (`> 0`).
        "container_network_transmit_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-b\"} 1 120\n",
        // A sandbox (it has an image) is not the pod cgroup.
        "container_network_receive_bytes_total{image=\"pause\",interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-c\"} 9 100\n",
        "container_network_receive_bytes_total{image=\"pause\",interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-c\"} 1 110\n",
    ));
    // Receive: none (NaN in between); transmit: 9 -> 1 and 4 -> 3.
    let r = ready(s.usage(&window(130, "1h", Filter::DEFAULT), Usage::CounterResets));
    assert_eq!(by_pod(&r), [("hub", "jupyter-a", 2.0)]);
    // The window start is inclusive: from 120 s on, transmit 1 -> 4 -> 3 has one reset.
    let r = ready(s.usage(&window(130, "10s", Filter::DEFAULT), Usage::CounterResets));
    assert_eq!(by_pod(&r), [("hub", "jupyter-a", 1.0)]);
    let r = ready(s.usage(&window(130, "4s", Filter::DEFAULT), Usage::CounterResets));
    assert!(r.is_empty(), "{r:?}");
}

#[test]
fn the_filter_applies_to_every_question() {
    let s = source(concat!(
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-a\",uid=\"a\"} 1 100\n",
        "kube_pod_created{namespace=\"dev\",pod=\"jupyter-b\",uid=\"b\"} 1 100\n",
        "kube_pod_status_phase{namespace=\"dev\",phase=\"Running\",pod=\"jupyter-b\",uid=\"b\"} 1 100\n",
        "kube_pod_annotations{namespace=\"dev\",pod=\"jupyter-b\",uid=\"b\"} 1 100\n",
        "kube_pod_container_info{container=\"notebook\",image=\"i\",namespace=\"dev\",pod=\"jupyter-b\",uid=\"b\"} 1 100\n",
        "kube_pod_container_resource_requests{namespace=\"dev\",pod=\"jupyter-b\",resource=\"cpu\",uid=\"b\"} 1 100\n",
        "container_cpu_usage_seconds_total{container=\"c\",namespace=\"dev\",pod=\"jupyter-b\"} 1 100\n",
        "container_memory_max_usage_bytes{container=\"c\",namespace=\"dev\",pod=\"jupyter-b\"} 1 100\n",
        "container_network_receive_bytes_total{namespace=\"dev\",pod=\"jupyter-b\"} 1 100\n",
        "container_network_transmit_bytes_total{namespace=\"dev\",pod=\"jupyter-b\"} 1 100\n",
    ));
    let hub = window(100, "1h", "namespace=\"hub\"");
    let pods = ready(s.pods(&hub));
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].uid, uid("a"));
    assert!(ready(s.running(&hub)).is_empty());
    assert!(ready(s.annotations(&hub)).is_empty());
    assert!(ready(s.images(&hub)).is_empty());
    assert!(ready(s.cpu_requests(&hub)).is_empty());
    for u in Usage::ALL {
        assert!(ready(s.usage(&hub, u)).is_empty(), "{u:?}");
    }
    // The same questions without the filter see namespace dev.
    let all = window(100, "1h", "");
    assert_eq!(ready(s.pods(&all)).len(), 2);
    assert_eq!(ready(s.running(&all)).len(), 1);
    assert_eq!(ready(s.annotations(&all)).len(), 1);
    assert_eq!(ready(s.images(&all)).len(), 1);
    assert_eq!(ready(s.cpu_requests(&all)).len(), 1);
    for u in Usage::ALL {
        // No counter went down: no pod has resets (`> 0`).
        let want = usize::from(u != Usage::CounterResets);
        assert_eq!(ready(s.usage(&all, u)).len(), want, "{u:?}");
    }
}

#[test]
fn groups_without_namespace_or_pod_are_left_out() {
    let s = source(concat!(
        "container_cpu_usage_seconds_total{container=\"c\",namespace=\"hub\",pod=\"p\"} 1 100\n",
        "container_cpu_usage_seconds_total{container=\"c\",id=\"/system\"} 50 100\n",
        "container_cpu_usage_seconds_total{container=\"c\",namespace=\"hub\"} 50 100\n",
    ));
    let r = ready(s.usage(&window(100, "1h", ""), Usage::CpuSeconds));
    assert_eq!(by_pod(&r), [("hub", "p", 1.0)]);
}

#[test]
fn an_invalid_filter_fails_the_question() {
    let s = source("kube_pod_created{namespace=\"hub\",pod=\"p\",uid=\"a\"} 1 100\n");
    let w = window(100, "1h", "pod=~'('");
    let err = s.pods(&w).now_or_never().expect("ready").unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
}

#[test]
fn from_path_reads_files_and_reports_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.om");
    std::fs::write(&path, "up{job=\"a\"} 1 5\n# EOF\n").unwrap();
    let s = SnapshotSource::from_path(&path).unwrap();
    assert_eq!(s.last_timestamp(), Some(Timestamp::from_millis(5000)));
    assert_eq!(s.sample_count(), 1);
    match SnapshotSource::from_path(dir.path().join("missing.om")) {
        Err(Error::Io { path: p, .. }) => assert!(p.ends_with("missing.om")),
        other => panic!("{other:?}"),
    }
    std::fs::write(&path, "up 1 5\n").unwrap();
    assert!(matches!(
        SnapshotSource::from_path(&path),
        Err(Error::OpenMetrics { line: 2, .. })
    ));
}

#[test]
fn three_series_or_more_are_summed_in_storage_order_not_file_order() {
    // Written c, a, b: added in that order the sum is 1; Prometheus adds in label order
    // (a, b, c), where 1e16 + 1 rounds back to 1e16, and gets 0.
    let s = source(concat!(
        "container_cpu_usage_seconds_total{container=\"c\",namespace=\"hub\",pod=\"jupyter-a\"} -1e16 100\n",
        "container_cpu_usage_seconds_total{container=\"a\",namespace=\"hub\",pod=\"jupyter-a\"} 1e16 100\n",
        "container_cpu_usage_seconds_total{container=\"b\",namespace=\"hub\",pod=\"jupyter-a\"} 1 100\n",
    ));
    let cpu = ready(s.usage(&window(100, "1h", Filter::DEFAULT), Usage::CpuSeconds));
    assert_eq!(by_pod(&cpu), [("hub", "jupyter-a", 0.0)]);
}

#[test]
fn samples_out_of_order_or_written_twice_are_read_in_time_order() {
    let s = source(concat!(
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-a\",uid=\"a\"} 3 130\n",
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-a\",uid=\"a\"} 1 110\n",
        // The same series with its labels in another order; 130 s again: the first one stays.
        "kube_pod_created{uid=\"a\",pod=\"jupyter-a\",namespace=\"hub\"} 9 130\n",
        "kube_pod_created{uid=\"a\",pod=\"jupyter-a\",namespace=\"hub\"} 2 120\n",
        "container_network_receive_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 5 120\n",
        "container_network_receive_bytes_total{interface=\"eth0\",namespace=\"hub\",pod=\"jupyter-a\"} 9 110\n",
    ));
    let w = window(130, "1h", Filter::DEFAULT);
    let pods = ready(s.pods(&w));
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0].created, 3.0);
    // In time order, 9 then 5: one reset, and 5 is the last value.
    let resets = ready(s.usage(&w, Usage::CounterResets));
    assert_eq!(by_pod(&resets), [("hub", "jupyter-a", 1.0)]);
    let rx = ready(s.usage(&w, Usage::NetworkReceivedBytes));
    assert_eq!(by_pod(&rx), [("hub", "jupyter-a", 5.0)]);
    // A window ending before the last sample.
    let pods = ready(s.pods(&window(125, "1h", Filter::DEFAULT)));
    assert_eq!(pods[0].created, 2.0);
}

#[test]
fn answers_are_the_same_however_often_and_in_whichever_window_they_are_asked() {
    let s = source(concat!(
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-a\",uid=\"a\"} 1 100\n",
        "kube_pod_created{namespace=\"hub\",pod=\"jupyter-b\",uid=\"b\"} 2 200\n",
    ));
    let (early, late) = (
        window(150, "1h", Filter::DEFAULT),
        window(200, "1h", Filter::DEFAULT),
    );
    let first = ready(s.pods(&late));
    assert_eq!(first.len(), 2);
    // Asked again (the cached answer was handed out): evaluated again.
    assert_eq!(ready(s.pods(&late)), first);
    // Another window in between, then the first one again.
    assert_eq!(ready(s.pods(&early)).len(), 1);
    assert!(ready(s.running(&early)).is_empty());
    assert_eq!(ready(s.pods(&late)), first);
    // A clone answers alike, and so does the original after it.
    let copy = s.clone();
    assert_eq!(ready(copy.pods(&early)).len(), 1);
    assert_eq!(ready(s.pods(&early)).len(), 1);
}

#[test]
fn a_file_gone_before_the_second_pass_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("history.om");
    std::fs::write(&path, "up{job=\"a\"} 1 5\n# EOF\n").unwrap();
    let s = SnapshotSource::from_path(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let w = window(5, "1h", Filter::DEFAULT);
    match s.pods(&w).now_or_never().expect("snapshot answers at once") {
        Err(Error::Io { path: p, .. }) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
}
