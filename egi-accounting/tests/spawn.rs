//! A gateway or a cron job spawns an accounting run on a multi-threaded runtime, so the
//! futures of the public async functions must be `Send`.

use egi_accounting::apel::Limits;
use egi_accounting::job;
use egi_accounting::metrics::{self, MetricsSource, Window};
use egi_accounting::record::RecordConfig;
use egi_accounting::spool::{DirqSpool, WriterSink};

fn assert_send<T: Send>(_: &T) {}

/// Compiles only if the futures are `Send`; never called.
#[allow(dead_code)]
fn public_futures_are_send(
    source: &dyn MetricsSource,
    window: &Window,
    config: &RecordConfig,
    spool: &mut DirqSpool,
    buffer: &mut WriterSink<Vec<u8>>,
) {
    assert_send(&job::run(source, window, config, Limits::default(), spool));
    assert_send(&job::run(source, window, config, Limits::default(), buffer));
    assert_send(&metrics::ask_all(source, window));
    assert_send(&metrics::ask(
        source,
        window,
        egi_accounting::query::Question::Pods,
    ));
}

#[cfg(feature = "snapshot")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_run_fills_a_spool() {
    use std::sync::Arc;

    use egi_accounting::config::Config;
    use egi_accounting::snapshot::SnapshotSource;

    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/data/notebooks.om");
    let source = Arc::new(SnapshotSource::from_path(data).unwrap());
    let at = source.last_timestamp().expect("the sample has samples");
    let config = Config::from_ini_str("[default]\nsite=MY-SITE\n", |_| None).unwrap();
    let window = config.window(at);
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("outgoing");

    let task = tokio::spawn({
        let spool_dir = spool_dir.clone();
        async move {
            let mut spool = DirqSpool::open(spool_dir)?;
            job::run(
                source.as_ref(),
                &window,
                &config.records,
                config.limits,
                &mut spool,
            )
            .await
        }
    });
    let report = task
        .await
        .expect("the task ran")
        .expect("the run succeeded");

    // 24 pods, 3 of them never seen Running (no record until they run).
    assert_eq!(report.records, 21);
    assert_eq!(report.skipped, 3);
    let elements: Vec<_> = std::fs::read_dir(&spool_dir)
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(elements.len(), report.messages);
    let text = std::fs::read_to_string(&elements[0]).unwrap();
    assert_eq!(
        egi_accounting::apel::parse_message(&text).unwrap().len(),
        21
    );
}
