//! Shared helpers: the example binaries, the bundled sample, windows, and answers in a comparable order.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use egi_accounting::metrics::{Answers, Filter, LookBack, Timestamp, Window};

/// The example binary `name` (egi-examples), every one of them built once per test run into
/// this test binary's target directory (cargo does not hold its lock while tests run).
pub(crate) fn example_bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        // target/debug/deps/it-HASH -> target/debug
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe.parent().and_then(Path::parent).expect("target/debug");
        let target_dir = profile_dir.parent().expect("target");
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "egi-examples", "--bins"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build");
        assert!(status.success(), "building the example binaries failed");
        profile_dir.to_owned()
    });
    dir.join(name)
}

/// Path of the bundled sample history.
pub(crate) fn sample_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/data/notebooks.om")
}

/// The bundled sample history's text.
pub(crate) fn sample_text() -> String {
    let path = sample_path();
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A window at `at` (epoch seconds) over `range` with the default filter.
pub(crate) fn window(at: i64, range: &str) -> Window {
    Window {
        at: Timestamp::from_millis(at * 1000),
        range: LookBack::parse(range).expect("valid range"),
        filter: Filter::default(),
    }
}

fn by_f64(a: f64, b: f64) -> Ordering {
    a.total_cmp(&b)
}

/// Sorts every answer by its key, so that two sources can be compared whatever order
/// they return series in.
pub(crate) fn normalized(mut a: Answers) -> Answers {
    a.pods.sort_by(|x, y| {
        (&x.uid, &x.key)
            .cmp(&(&y.uid, &y.key))
            .then(by_f64(x.created, y.created))
    });
    a.running.sort_by(|x, y| {
        (&x.uid, x.last_running, x.running_count).cmp(&(&y.uid, y.last_running, y.running_count))
    });
    a.annotations
        .sort_by(|x, y| (&x.uid, &x.annotations).cmp(&(&y.uid, &y.annotations)));
    a.images
        .sort_by(|x, y| (&x.uid, &x.value).cmp(&(&y.uid, &y.value)));
    a.cpu_requests
        .sort_by(|x, y| x.uid.cmp(&y.uid).then(by_f64(x.value, y.value)));
    for usage in [
        &mut a.cpu_seconds,
        &mut a.peak_memory,
        &mut a.network_received,
        &mut a.network_transmitted,
        &mut a.counter_resets,
    ] {
        usage.sort_by(|x, y| x.key.cmp(&y.key).then(by_f64(x.value, y.value)));
    }
    a
}
