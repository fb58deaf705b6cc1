//! The whole accounting run over the bundled sample: both sources give byte-identical APEL
//! messages, the records are what the sample's pods call for, and the spool is read back by
//! the real python-dirq `QueueSimple` that the APEL SSM sender uses.

use std::path::Path;
use std::process::Command;

use egi_accounting::apel::{self, Limits, ParsedRecord};
use egi_accounting::config::Config;
use egi_accounting::job::{self, Report};
use egi_accounting::metrics::{MetricsSource, Window};
use egi_accounting::prometheus::{PrometheusConfig, PrometheusSource};
use egi_accounting::record::RecordConfig;
use egi_accounting::snapshot::SnapshotSource;
use egi_accounting::spool::{DirqSpool, WriterSink};
use egi_test_harness::Prometheus;
use egi_test_harness::synthetic::Params;

use crate::helpers::{sample_path, sample_text, window};

const VO_SECTION: &str = "[VO]\nnotebooks = urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu, vo.notebooks.egi.eu\n";

fn record_config() -> RecordConfig {
    Config::from_ini_str(VO_SECTION, |_| None).unwrap().records
}

async fn run_to_text(source: &dyn MetricsSource, w: &Window, limits: Limits) -> (Report, String) {
    let mut sink = WriterSink::new(Vec::new(), "buffer");
    let report = job::run(source, w, &record_config(), limits, &mut sink)
        .await
        .expect("accounting run");
    (report, String::from_utf8(sink.into_inner()).unwrap())
}

fn field<'r>(r: &'r ParsedRecord, key: &str) -> Option<&'r str> {
    r.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn parse_all(text: &str) -> Vec<ParsedRecord> {
    text.split("\nAPEL-cloud-message: v0.4\n")
        .enumerate()
        .flat_map(|(i, m)| {
            let m = if i == 0 {
                m.to_owned()
            } else {
                format!("APEL-cloud-message: v0.4\n{m}")
            };
            apel::parse_message(&m).unwrap_or_else(|e| panic!("message {i} rejected: {e}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_and_snapshot_give_identical_records() {
    let params = Params::sample();
    let prometheus = Prometheus::backfill(&sample_text()).unwrap();
    let live =
        PrometheusSource::new(PrometheusConfig::new(prometheus.url().parse().unwrap())).unwrap();
    let snapshot = SnapshotSource::from_path(sample_path()).unwrap();
    for w in [
        window(params.end, "24h"),
        window(params.end - 5 * 3600, "3h"),
    ] {
        let (live_report, live_text) = run_to_text(&live, &w, Limits::default()).await;
        let (snap_report, snap_text) = run_to_text(&snapshot, &w, Limits::default()).await;
        assert_eq!(live_report, snap_report, "at {}", w.at.as_secs());
        assert_eq!(live_text, snap_text, "at {}", w.at.as_secs());
        assert!(live_report.records > 0);
    }

    // What the sample's pods call for, over the whole history.
    let (report, text) =
        run_to_text(&snapshot, &window(params.end, "24h"), Limits::default()).await;
    let records = parse_all(&text);
    assert_eq!(records.len(), report.records);
    // 24 of the 25 pods pass the default filter (not the dask worker); every one of them
    // has a CPU request. The two short-lived pods and the one still Pending were never seen
    // Running: they are not reported (not `completed` with EndTime = StartTime as the
    // Python tool says); the other 21 give a valid record.
    assert_eq!(report.pods, 24, "{report:?}");
    assert_eq!((report.records, report.skipped), (21, 3));
    // The sandbox-recreated pod's network counters were reset.
    assert_eq!(report.lower_bounds, 1);
    assert!(
        records
            .iter()
            .all(|r| field(r, "SiteName") == Some("EGI-NOTEBOOKS"))
    );
    assert!(
        records
            .iter()
            .all(|r| field(r, "CloudType") == Some("EGI Notebooks"))
    );
    assert!(
        !text.contains("dask-worker"),
        "pods outside the filter are not accounted"
    );
    let users: Vec<_> = records
        .iter()
        .filter_map(|r| field(r, "GlobalUserName"))
        .collect();
    assert!(users.contains(&"zo%C3%AB"), "{users:?}");
    assert!(users.contains(&"Jos%C3%A9 M%C3%BCller"), "{users:?}");
    let fqans: Vec<_> = records.iter().filter_map(|r| field(r, "FQAN")).collect();
    assert!(fqans.contains(&"notebooks"), "mapped VO: {fqans:?}");
    assert!(
        fqans.contains(&"vo.access.egi.eu"),
        "unmapped VO kept: {fqans:?}"
    );
    assert!(
        !fqans.iter().any(|f| f.starts_with("urn:")),
        "entitlements mapped: {fqans:?}"
    );
    let started = records
        .iter()
        .filter(|r| field(r, "Status") == Some("started"))
        .count();
    let completed = records
        .iter()
        .filter(|r| field(r, "Status") == Some("completed"))
        .count();
    assert!(
        started >= 5 && completed >= 7,
        "{started} started, {completed} completed"
    );
    for r in records
        .iter()
        .filter(|r| field(r, "Status") == Some("completed"))
    {
        let start: i64 = field(r, "StartTime").unwrap().parse().unwrap();
        let end: i64 = field(r, "EndTime")
            .expect("completed has EndTime")
            .parse()
            .unwrap();
        let wall: i64 = field(r, "WallDuration").unwrap().parse().unwrap();
        assert!(end >= start && wall == end - start, "{r:?}");
    }
    // The same user's two sessions (same pod name, two uids) are two records.
    let mut names: Vec<_> = records
        .iter()
        .filter_map(|r| field(r, "MachineName"))
        .collect();
    let before = names.len();
    names.sort_unstable();
    names.dedup();
    assert_eq!(before - names.len(), 1, "one pod name used by two sessions");

    // Chunking keeps every record.
    let limits = Limits {
        max_records: std::num::NonZeroUsize::new(7).unwrap(),
        ..Limits::default()
    };
    let (small, chunked) = run_to_text(&snapshot, &window(params.end, "24h"), limits).await;
    assert_eq!(small.messages, report.records.div_ceil(7));
    assert_eq!(parse_all(&chunked), records);
}

const READ_BACK: &str = r#"
import sys
from dirq.QueueSimple import QueueSimple
q = QueueSimple(sys.argv[1])
names = [n for n in q]
for n in names:
    if q.lock(n):
        body = q.get(n)
        sys.stdout.write(body if isinstance(body, str) else body.decode("ascii"))
        sys.stdout.write("\n=====\n")
        q.remove(n)
sys.stderr.write("%d\n" % len(names))
"#;

fn read_with_python_dirq(spool: &Path) -> (usize, String) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(READ_BACK)
        .arg(spool)
        .output()
        .expect("python3 runs (.ci/install-peers installs python-dirq)");
    assert!(
        out.status.success(),
        "python-dirq failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = String::from_utf8_lossy(&out.stderr)
        .trim()
        .parse()
        .expect("element count");
    (count, String::from_utf8(out.stdout).expect("ASCII bodies"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_spool_is_read_back_by_python_dirq() {
    let params = Params::sample();
    let snapshot = SnapshotSource::from_path(sample_path()).unwrap();
    let w = window(params.end, "24h");
    let limits = Limits {
        max_records: std::num::NonZeroUsize::new(5).unwrap(),
        ..Limits::default()
    };
    let (report, text) = run_to_text(&snapshot, &w, limits).await;

    let dir = tempfile::tempdir().unwrap();
    let mut spool = DirqSpool::open(dir.path().join("outgoing")).unwrap();
    let spooled = job::run(&snapshot, &w, &record_config(), limits, &mut spool)
        .await
        .unwrap();
    assert_eq!(spooled, report);

    let (count, bodies) = read_with_python_dirq(spool.path());
    assert_eq!(count, report.messages);
    let mut got: Vec<&str> = bodies
        .split("\n=====\n")
        .filter(|b| !b.is_empty())
        .collect();
    let mut want: Vec<&str> = text.split("\nAPEL").collect();
    // The writer sink separates messages with a blank line; put the headers back to compare.
    let want_owned: Vec<String> = want
        .drain(..)
        .enumerate()
        .map(|(i, m)| {
            if i == 0 {
                m.trim_end().to_owned()
            } else {
                format!("APEL{}", m.trim_end())
            }
        })
        .collect();
    let mut want: Vec<&str> = want_owned.iter().map(String::as_str).collect();
    got.iter_mut().for_each(|b| *b = b.trim_end());
    got.sort_unstable();
    want.sort_unstable();
    assert_eq!(got, want);
    // python-dirq removed what it consumed: no temporary or lock file is left either.
    let leftovers: Vec<_> = std::fs::read_dir(spool.path())
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
