//! Reading an OpenMetrics history as a stream, line by line, holding no sample.
//!
//! [`read`] accepts exactly what [`History::parse`](super::History::parse) accepts (the line
//! syntax is the same code, in `openmetrics.rs`) and reports to a [`Visitor`] each series
//! once, when it is first written, and then each of its samples. A series is known by a
//! 128-bit hash of its raw `name{labels}` bytes (looked up only when a line's series differs
//! from the previous line's) and of its sorted label set (so that a series written in
//! several ways is one series): what the reader keeps per series is two hashes and an id, not
//! its text. The hashes are SipHash with random keys; two series of one history colliding
//! in 128 bits is not a practical concern.
//!
//! [`Scan`], the first pass over a history, checks the whole text, finds its last
//! timestamp and the series whose samples are not in time order, and counts the members of
//! each group that the questions sum, so that the second pass (in `eval.rs`) keeps the label
//! sets it needs to add in Prometheus' order only for groups of three series or more.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::io::BufRead;
use std::path::Path;

use super::history::Labels;
use super::openmetrics::{comment, sample_fields, series_labels};
use super::syntax::series_end;
use crate::error::{Error, Result};
use crate::metrics::Timestamp;

/// What a pass over a history does with what it reads.
pub(super) trait Visitor {
    /// A series seen for the first time, numbered from 0 in order of appearance.
    fn series(&mut self, id: u32, labels: &Labels);

    /// A sample of series `id`, in file order.
    fn sample(&mut self, id: u32, t: Timestamp, v: f64);
}

/// Two hash states: one 128-bit hash.
#[derive(Debug, Clone, Default)]
struct Hash128(RandomState, RandomState);

impl Hash128 {
    /// Two 64-bit halves rather than a `u128`, whose 16-byte alignment would make every map
    /// entry 32 bytes instead of 24.
    fn of<T: std::hash::Hash + ?Sized>(&self, value: &T) -> (u64, u64) {
        (self.0.hash_one(value), self.1.hash_one(value))
    }
}

/// Reads a whole history from `input`, reporting to `visitor`. `path` names the input in
/// I/O errors. A read failure is [`Error::Io`], a malformed line [`Error::OpenMetrics`].
pub(super) fn read(mut input: impl BufRead, path: &Path, visitor: &mut impl Visitor) -> Result<()> {
    let hash = Hash128::default();
    let mut raw: HashMap<(u64, u64), u32> = HashMap::new();
    let mut canonical: HashMap<(u64, u64), u32> = HashMap::new();
    let mut prev_key: Vec<u8> = Vec::new();
    let mut prev_id: Option<u32> = None;
    let mut buf: Vec<u8> = Vec::new();
    let (mut scratch, mut spans) = (String::new(), Vec::new());
    let mut line_no = 0;
    let io = |e| Error::io("cannot read OpenMetrics history", path, e);
    let err = |line, message: String| Error::OpenMetrics { line, message };
    loop {
        line_no += 1;
        buf.clear();
        if input.read_until(b'\n', &mut buf).map_err(io)? == 0 {
            return Err(err(
                line_no,
                "the text does not end with `# EOF`".to_owned(),
            ));
        }
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let outcome = if line.first() == Some(&b'#') {
            if line == b"# EOF" {
                if !input.fill_buf().map_err(io)?.is_empty() {
                    return Err(err(line_no + 1, "unexpected data after `# EOF`".to_owned()));
                }
                return Ok(());
            }
            comment(line)
        } else {
            let known = match prev_id {
                Some(id)
                    if line.len() > prev_key.len()
                        && line[prev_key.len()] == b' '
                        && line.starts_with(&prev_key) =>
                {
                    Ok((prev_key.len(), id))
                }
                _ => series_end(line).and_then(|key_len| {
                    let key = &line[..key_len];
                    let id = match raw.get(&hash.of(key)) {
                        Some(&id) => id,
                        None => {
                            let labels = series_labels(key, &mut scratch, &mut spans)?;
                            let next = u32::try_from(canonical.len())
                                .map_err(|_| "more than 2^32 series".to_owned())?;
                            let id = *canonical.entry(hash.of(&labels)).or_insert(next);
                            if id == next {
                                visitor.series(id, &labels);
                            }
                            raw.insert(hash.of(key), id);
                            id
                        }
                    };
                    prev_key.clear();
                    prev_key.extend_from_slice(key);
                    prev_id = Some(id);
                    Ok((key_len, id))
                }),
            };
            known.and_then(|(key_len, id)| {
                let (t, v) = sample_fields(line, key_len, &mut scratch, &mut spans)?;
                visitor.sample(id, t, v);
                Ok(())
            })
        };
        if let Err(message) = outcome {
            let hint = if line.last() == Some(&b'\r') {
                " (lines must end with \\n, not \\r\\n)"
            } else {
                ""
            };
            return Err(err(line_no, format!("{message}{hint}")));
        }
    }
}

/// The first pass: what evaluating any window needs to know about the whole history.
#[derive(Debug, Clone, Default)]
pub(super) struct Scan {
    /// The newest sample time.
    pub(super) last: Option<Timestamp>,
    /// How many samples, repeated timestamps included.
    pub(super) samples: usize,
    /// Series whose samples are not all newer than the one before (in file order).
    pub(super) unsorted: HashSet<u32>,
    /// Members per summed group (see [`super::reduce::sum_group`]), by group hash.
    pub(super) group_sizes: HashMap<u64, u32>,
    /// The newest sample time per series, to find the unsorted ones.
    newest: Vec<Option<Timestamp>>,
}

impl Scan {
    /// Reads `input` through.
    pub(super) fn run(input: impl BufRead, path: &Path) -> Result<Self> {
        let mut scan = Scan::default();
        read(input, path, &mut scan)?;
        scan.newest = Vec::new();
        if !scan.unsorted.is_empty() {
            tracing::warn!(
                series = scan.unsorted.len(),
                "OpenMetrics history lists samples of some series out of time order or in \
                 several ways: they are sorted here, but promtool drops samples older than the \
                 previous one of their series"
            );
        }
        Ok(scan)
    }

    /// Whether groups of `hash` hold three series or more, so that their order matters.
    pub(super) fn large_group(&self, hash: u64) -> bool {
        self.group_sizes.get(&hash).is_some_and(|&n| n >= 3)
    }
}

impl Visitor for Scan {
    fn series(&mut self, _id: u32, labels: &Labels) {
        self.newest.push(None);
        if let Some(hash) = super::reduce::sum_group(labels) {
            *self.group_sizes.entry(hash).or_insert(0) += 1;
        }
    }

    fn sample(&mut self, id: u32, t: Timestamp, _v: f64) {
        self.samples += 1;
        self.last = self.last.max(Some(t));
        let newest = &mut self.newest[id as usize];
        if newest.is_some_and(|n| t <= n) {
            self.unsorted.insert(id);
        }
        *newest = (*newest).max(Some(t));
    }
}
