//! [`MetricsSource`] over an OpenMetrics history file (the format `promtool tsdb
//! create-blocks-from openmetrics` backfills).
//!
//! The history is streamed, never held: [`SnapshotSource::from_path`] reads the file through
//! once to check it and find what every evaluation needs (its last timestamp, the series whose
//! samples are out of time order, the size of the groups the questions sum); the first
//! question for a [`Window`] then reads it through once more and evaluates the PromQL of every
//! question of [`crate::query`] at once, the way Prometheus 2.42 does, reducing each series as
//! its samples go by. Memory grows with the number of series, not of samples (a 1.3 GB,
//! 10,000-pod history needs a few tens of megabytes, see benches/README.md), and a history
//! answers the same through this source and through Prometheus after a backfill. The filter of
//! the [`Window`] is applied through [`Matchers`]. [`History`] parses a whole text into memory
//! instead, for inspection.
//!
//! ```no_run
//! use egi_accounting::metrics::{Filter, LookBack, MetricsSource, Window};
//! use egi_accounting::snapshot::SnapshotSource;
//!
//! # async fn run() -> egi_accounting::Result<()> {
//! let source = SnapshotSource::from_path("history.om")?;
//! let window = Window {
//!     at: source.last_timestamp().expect("history has samples"),
//!     range: LookBack::parse("24h")?,
//!     filter: Filter::default(),
//! };
//! for pod in source.pods(&window).await? {
//!     println!("{} {}/{}", pod.uid.0, pod.key.namespace, pod.key.pod);
//! }
//! # Ok(())
//! # }
//! ```

mod eval;
mod history;
mod matchers;
mod openmetrics;
mod reduce;
mod scan;
mod syntax;

#[cfg(test)]
mod eval_tests;
#[cfg(test)]
mod openmetrics_tests;

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::{Error, Result};
use crate::metrics::{
    Answers, BoxFuture, ByPod, ByUid, MetricsSource, PodAnnotations, PodCreated, RunningSamples,
    Timestamp, Usage, Window,
};
use crate::query::Question;

pub use history::{History, Labels, Series};
pub use matchers::Matchers;

use scan::Scan;

/// Read buffer of the file passes.
const READ_BUFFER: usize = 256 * 1024;

/// An OpenMetrics history, answering the questions like PromQL would without holding it.
///
/// A file source reads its file again for each new window: the file must not change in
/// between.
pub struct SnapshotSource {
    text: Text,
    scan: Scan,
    /// The answers of the last window evaluated, each handed out once.
    cache: Mutex<Option<Cached>>,
}

/// Where the history is read from.
#[derive(Clone)]
enum Text {
    File(PathBuf),
    Bytes(Arc<[u8]>),
}

/// The path, or the size of a text in memory (not its bytes).
impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Text::File(path) => f.debug_tuple("File").field(path).finish(),
            Text::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
        }
    }
}

/// Every answer for one window, and which were already handed out.
#[derive(Debug)]
struct Cached {
    window: Window,
    answers: Answers,
    taken: Vec<Question>,
}

/// Where it reads from and what the first pass found, not the per-series details.
impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSource")
            .field("text", &self.text)
            .field("last_timestamp", &self.scan.last)
            .field("samples", &self.scan.samples)
            .finish_non_exhaustive()
    }
}

impl Clone for SnapshotSource {
    fn clone(&self) -> Self {
        Self {
            text: self.text.clone(),
            scan: self.scan.clone(),
            cache: Mutex::new(None),
        }
    }
}

impl SnapshotSource {
    /// Opens a file and reads it through once to check it. An unreadable file is
    /// [`Error::Io`], a malformed one [`Error::OpenMetrics`] (see [`History::parse`] for what
    /// is accepted).
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let scan = Scan::run(open(&path)?, &path)?;
        Ok(Self {
            text: Text::File(path),
            scan,
            cache: Mutex::new(None),
        })
    }

    /// Checks an OpenMetrics text held in memory (see [`History::parse`]) and answers from
    /// it.
    pub fn from_bytes(text: &[u8]) -> Result<Self> {
        let scan = Scan::run(text, Path::new("(memory)"))?;
        Ok(Self {
            text: Text::Bytes(text.into()),
            scan,
            cache: Mutex::new(None),
        })
    }

    /// The newest sample timestamp in the history (the default evaluation time).
    pub fn last_timestamp(&self) -> Option<Timestamp> {
        self.scan.last
    }

    /// How many samples the history holds, repeated timestamps included.
    pub fn sample_count(&self) -> usize {
        self.scan.samples
    }

    /// Evaluates every question for `window` (one pass over the history).
    fn evaluate(&self, window: &Window) -> Result<Answers> {
        match &self.text {
            Text::File(path) => eval::answers(open(path)?, path, &self.scan, window),
            Text::Bytes(bytes) => {
                eval::answers(&bytes[..], Path::new("(memory)"), &self.scan, window)
            }
        }
    }

    /// Hands out the answer to `question` for `window`, taken out of the cached answers
    /// of that window; a new window, or a question asked again, evaluates them all again.
    fn answer<T>(
        &self,
        window: &Window,
        question: Question,
        take: impl FnOnce(&mut Answers) -> Vec<T>,
    ) -> Result<Vec<T>> {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let fresh = cache
            .as_ref()
            .is_none_or(|c| c.window != *window || c.taken.contains(&question));
        if fresh {
            *cache = None;
            *cache = Some(Cached {
                window: window.clone(),
                answers: self.evaluate(window)?,
                taken: Vec::new(),
            });
        }
        let Some(cached) = cache.as_mut() else {
            unreachable!("just filled");
        };
        cached.taken.push(question);
        let answer = take(&mut cached.answers);
        if cached.taken.len() == Question::ALL.len() {
            *cache = None;
        }
        Ok(answer)
    }
}

/// Opens a history file for a pass.
fn open(path: &Path) -> Result<BufReader<File>> {
    let file =
        File::open(path).map_err(|e| Error::io("cannot read OpenMetrics history", path, e))?;
    Ok(BufReader::with_capacity(READ_BUFFER, file))
}

impl MetricsSource for SnapshotSource {
    fn pods<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<PodCreated>>> {
        Box::pin(
            async move { self.answer(window, Question::Pods, |a| std::mem::take(&mut a.pods)) },
        )
    }

    fn running<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<RunningSamples>>> {
        Box::pin(async move {
            self.answer(window, Question::Running, |a| {
                std::mem::take(&mut a.running)
            })
        })
    }

    fn annotations<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<PodAnnotations>>> {
        Box::pin(async move {
            self.answer(window, Question::Annotations, |a| {
                std::mem::take(&mut a.annotations)
            })
        })
    }

    fn images<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<String>>>> {
        Box::pin(
            async move { self.answer(window, Question::Images, |a| std::mem::take(&mut a.images)) },
        )
    }

    fn cpu_requests<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<f64>>>> {
        Box::pin(async move {
            self.answer(window, Question::CpuRequests, |a| {
                std::mem::take(&mut a.cpu_requests)
            })
        })
    }

    fn usage<'a>(&'a self, window: &'a Window, usage: Usage) -> BoxFuture<'a, Result<Vec<ByPod>>> {
        Box::pin(async move {
            self.answer(window, Question::Usage(usage), |a| {
                std::mem::take(match usage {
                    Usage::CpuSeconds => &mut a.cpu_seconds,
                    Usage::PeakMemoryBytes => &mut a.peak_memory,
                    Usage::NetworkReceivedBytes => &mut a.network_received,
                    Usage::NetworkTransmittedBytes => &mut a.network_transmitted,
                    Usage::CounterResets => &mut a.counter_resets,
                })
            })
        })
    }
}
