//! OpenMetrics history parsing throughput: our parser (`SnapshotSource::from_bytes`, which
//! parses and indexes) against the `prometheus-parse` crate, on the same synthetic history:
//! notebook pods with every metric family the accounting queries read (32 series per pod),
//! labelled the way kube-state-metrics and cAdvisor label them, scraped every minute.
//!
//! Each parser gets the text it accepts, with the same samples:
//! - ours: OpenMetrics, timestamps in seconds with millisecond decimals, ending in `# EOF`;
//! - prometheus-parse: the Prometheus text format, timestamps in integer milliseconds (it
//!   reads fractional seconds as "no timestamp"), no `# EOF`; it takes an iterator of owned
//!   lines, so each line is copied into a `String` as its API requires.
//!
//! Three histories of about 8.6 MB: 300 pods x 4 scrapes (mostly new series) and 30 pods x
//! 40 scrapes (mostly samples), the latter in two layouts: `by_time` (every series at each
//! scrape, as a scrape dump) and `by_series` (each series' samples together, as a range-query
//! export).
//!
//! `cargo bench -p egi-benches --bench openmetrics -- --warm-up-time 1 --measurement-time 3`

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_main};
use egi_accounting::snapshot::SnapshotSource;

const T0_MS: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 60_000;

/// One series: its `name{labels}` and how its value evolves.
struct Synthetic {
    key: String,
    kind: Kind,
}

enum Kind {
    Constant(f64),
    /// A counter growing by this much per scrape.
    Counter(f64),
    /// 0 or 1, Running after a few scrapes.
    Phase(bool),
}

fn families(pods: usize) -> Vec<Synthetic> {
    let mut out = Vec::new();
    let users = ["alice", "jürgen", "zoë", "bob.smith", "李雷", "o'neil"];
    for p in 0..pods {
        let uid = format!(
            "{:08x}-7c1e-4a8e-9d3b-{:012x}",
            p * 2_654_435_761 % (1 << 32),
            p * 7919
        );
        let user = format!("{}-{p}", users[p % users.len()]);
        let pod = format!("jupyter-{}", user.replace(['\'', '.'], "-"));
        let node = format!("worker-{:02}", p % 17);
        let ksm = format!(
            "namespace=\"hub\",pod=\"{pod}\",uid=\"{uid}\",instance=\"10.0.3.7:8080\",job=\"kube-state-metrics\""
        );
        let push =
            |out: &mut Vec<Synthetic>, key: String, kind: Kind| out.push(Synthetic { key, kind });
        push(
            &mut out,
            format!("kube_pod_created{{{ksm}}}"),
            Kind::Constant(1.7e9 + p as f64),
        );
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let running = phase == "Running";
            push(
                &mut out,
                format!("kube_pod_status_phase{{{ksm},phase=\"{phase}\"}}"),
                Kind::Phase(running),
            );
        }
        push(
            &mut out,
            format!(
                "kube_pod_annotations{{{ksm},annotation_hub_jupyter_org_username=\"{user}@egi.eu\",\
                 annotation_egi_eu_primary_group=\"vo.notebooks.egi.eu\"}}"
            ),
            Kind::Constant(1.0),
        );
        for (container, image) in [
            ("notebook", "eginotebooks/single-user:2.1.0"),
            ("sidecar", "eginotebooks/sidecar:1.4"),
        ] {
            push(
                &mut out,
                format!(
                    "kube_pod_container_info{{{ksm},container=\"{container}\",image=\"{image}\",\
                     image_id=\"docker.io/{image}@sha256:{:064x}\",container_id=\"containerd://{:064x}\"}}",
                    p + 1,
                    p * 31 + 7
                ),
                Kind::Constant(1.0),
            );
            for (resource, unit, v) in [("cpu", "core", 0.25), ("memory", "byte", 2.0e9)] {
                push(
                    &mut out,
                    format!(
                        "kube_pod_container_resource_requests{{{ksm},container=\"{container}\",node=\"{node}\",\
                         resource=\"{resource}\",unit=\"{unit}\"}}"
                    ),
                    Kind::Constant(v),
                );
            }
        }
        let cadvisor = |container: &str, id: &str| {
            format!(
                "container=\"{container}\",endpoint=\"https-metrics\",id=\"/kubepods/burstable/pod{uid}{id}\",\
                 instance=\"{node}\",job=\"kubelet\",metrics_path=\"/metrics/cadvisor\",namespace=\"hub\",\
                 node=\"{node}\",pod=\"{pod}\",service=\"kubelet\""
            )
        };
        for (container, id) in [
            ("notebook", "/a1"),
            ("sidecar", "/b2"),
            ("", ""),
            ("POD", "/c3"),
        ] {
            let labels = cadvisor(container, id);
            push(
                &mut out,
                format!("container_cpu_usage_seconds_total{{{labels},cpu=\"total\"}}"),
                Kind::Counter(1.5 + p as f64 / 100.0),
            );
            push(
                &mut out,
                format!("container_memory_max_usage_bytes{{{labels}}}"),
                Kind::Constant(3.0e8 + p as f64 * 1.0e5),
            );
        }
        for (container, id) in [("", ""), ("POD", "/c3")] {
            let labels = cadvisor(container, id);
            for name in [
                "container_network_receive_bytes_total",
                "container_network_transmit_bytes_total",
            ] {
                push(
                    &mut out,
                    format!("{name}{{{labels},interface=\"eth0\"}}"),
                    Kind::Counter(12_345.0 + p as f64),
                );
            }
        }
    }
    out
}

fn value(kind: &Kind, scrape: usize) -> f64 {
    match *kind {
        Kind::Constant(v) => v,
        Kind::Counter(rate) => rate * (scrape + 1) as f64,
        Kind::Phase(running) => f64::from(u8::from(running == (scrape >= 2))),
    }
}

/// (OpenMetrics text for us, Prometheus text for prometheus-parse).
fn history(pods: usize, scrapes: usize, by_series: bool) -> (String, String) {
    let series = families(pods);
    let mut ours = String::new();
    let mut theirs = String::new();
    for (name, kind) in [
        ("kube_pod_created", "gauge"),
        ("kube_pod_status_phase", "gauge"),
        ("container_cpu_usage_seconds", "counter"),
        ("container_network_receive_bytes", "counter"),
    ] {
        let line = format!("# HELP {name} Synthetic.\n# TYPE {name} {kind}\n");
        ours.push_str(&line);
        theirs.push_str(&line);
    }
    let mut line = |s: &Synthetic, scrape: usize| {
        let t = T0_MS + scrape as i64 * STEP_MS;
        let v = value(&s.kind, scrape);
        let _ = writeln!(ours, "{} {v} {}.{:03}", s.key, t / 1000, t % 1000);
        let _ = writeln!(theirs, "{} {v} {t}", s.key);
    };
    if by_series {
        for s in &series {
            for scrape in 0..scrapes {
                line(s, scrape);
            }
        }
    } else {
        for scrape in 0..scrapes {
            for s in &series {
                line(s, scrape);
            }
        }
    }
    ours.push_str("# EOF\n");
    (ours, theirs)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("openmetrics");
    group.sample_size(10);
    // Few samples per series (new series dominate) and many (samples dominate),
    // about 8.6 MB each.
    for (pods, scrapes, by_series) in [(300, 4, false), (30, 40, false), (30, 40, true)] {
        let layout = format!(
            "{pods}pods_{scrapes}scrapes_{}",
            if by_series { "by_series" } else { "by_time" }
        );
        let (ours, theirs) = history(pods, scrapes, by_series);
        let parsed = SnapshotSource::from_bytes(ours.as_bytes()).expect("valid history");
        let check = prometheus_parse::Scrape::parse(theirs.lines().map(|l| Ok(l.to_owned())))
            .expect("prometheus-parse reads it");
        assert_eq!(parsed.sample_count(), check.samples.len());

        group.throughput(Throughput::Bytes(ours.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("egi_accounting", &layout),
            &ours,
            |b, text| {
                b.iter(|| SnapshotSource::from_bytes(black_box(text.as_bytes())).expect("valid"))
            },
        );
        group.throughput(Throughput::Bytes(theirs.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("prometheus_parse", &layout),
            &theirs,
            |b, text| {
                b.iter(|| {
                    prometheus_parse::Scrape::parse(
                        black_box(text).lines().map(|l| Ok(l.to_owned())),
                    )
                    .expect("valid")
                })
            },
        );
    }
    group.finish();
}

/// Criterion's entry point (`criterion_group!` generates an undocumented `pub fn`).
#[allow(missing_docs, unreachable_pub)]
mod harness {
    criterion::criterion_group!(benches, super::bench);
}

criterion_main!(harness::benches);
