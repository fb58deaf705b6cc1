//! Shared helpers: the bundled sample, windows, and answers in a comparable order.

use std::cmp::Ordering;
use std::path::PathBuf;

use egi_accounting::metrics::{Answers, Filter, LookBack, Timestamp, Window};

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
