#![allow(missing_docs)] // criterion_group! generates an undocumented public function
//! Record builder throughput: synthetic answers for 10,000 and 100,000 pods turned into
//! validated records and APEL messages.
//!
//! `cargo bench -p egi-benches --bench records`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use egi_accounting::apel::{self, Limits};
use egi_accounting::metrics::{
    Annotations, Answers, ByPod, ByUid, PodAnnotations, PodCreated, PodKey, PodUid, RunningSamples,
    Timestamp,
};
use egi_accounting::record::{RecordConfig, build_records};

const T0: i64 = 1_700_000_000;
const VOS: [&str; 4] = [
    "vo.notebooks.egi.eu",
    "vo.access.egi.eu",
    "vo.example.org",
    "",
];

fn answers(n: usize) -> Answers {
    let mut a = Answers::default();
    for i in 0..n {
        let uid = PodUid(format!("{i:08x}-7c1e-4a8e-9d3b-{:012x}", i * 7919));
        let key = PodKey {
            namespace: "hub".into(),
            pod: format!("jupyter-user-{i}"),
        };
        let created = (T0 + (i as i64 % 80_000)) as f64;
        a.pods.push(PodCreated {
            uid: uid.clone(),
            key: key.clone(),
            created,
        });
        let running = (i % 5 != 0).then(|| Timestamp::from_millis((created as i64 + 3_600) * 1000));
        a.running.push(RunningSamples {
            uid: uid.clone(),
            last_running: running,
            running_count: 120,
        });
        let mut ann = Annotations::new();
        ann.insert(
            "hub_jupyter_org_username".into(),
            format!("user-{i}@egi.eu"),
        );
        ann.insert("egi_eu_primary_group".into(), VOS[i % VOS.len()].into());
        a.annotations.push(PodAnnotations {
            uid: uid.clone(),
            annotations: ann,
        });
        a.images.push(ByUid {
            uid: uid.clone(),
            value: "eginotebooks/single-user:2.1.0".into(),
        });
        a.cpu_requests.push(ByUid {
            uid: uid.clone(),
            value: 0.25 * (1 + i % 8) as f64,
        });
        let v = i as f64;
        a.cpu_seconds.push(ByPod {
            key: key.clone(),
            uid: Some(uid.clone()),
            value: 12.5 * v,
        });
        a.peak_memory.push(ByPod {
            key: key.clone(),
            uid: Some(uid.clone()),
            value: 2.0e8 + v,
        });
        a.network_received.push(ByPod {
            key: key.clone(),
            uid: Some(uid.clone()),
            value: 3.0e9 + v,
        });
        a.network_transmitted.push(ByPod {
            key,
            uid: Some(uid.clone()),
            value: 1.0e6 + v,
        });
    }
    a
}

fn bench(c: &mut Criterion) {
    let config = RecordConfig::default();
    let at = Timestamp::from_millis((T0 + 86_400) * 1000);
    let mut group = c.benchmark_group("records");
    group.sample_size(10);
    for n in [10_000usize, 100_000] {
        let input = answers(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("build", n), &input, |b, input| {
            b.iter(|| black_box(build_records(input, &config, at)));
        });
        group.bench_with_input(BenchmarkId::new("build+messages", n), &input, |b, input| {
            b.iter(|| {
                let built = build_records(input, &config, at);
                black_box(apel::messages(&built.records, Limits::default()))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
