//! The parsed history: series with their labels and samples, in Prometheus' storage order.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;

use crate::error::Result;
use crate::metrics::Timestamp;

/// The label set of a series, sorted by label name, `__name__` (the metric name) included.
///
/// Like Prometheus, a label with an empty value does not exist: such labels are dropped when
/// the set is built. All the text lives in one allocation.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Labels {
    /// `name\0value\0name\0value\0...`: with NUL below every other byte, comparing two texts
    /// byte by byte orders the sets like comparing them label by label, unless a value
    /// contains a NUL itself (`nul`).
    text: Box<str>,
    /// `(name start, name end, value end)` in `text`; the value starts after the NUL that
    /// ends the name.
    spans: Box<[(usize, usize, usize)]>,
    /// Some value contains a NUL: compare label by label.
    nul: bool,
}

impl Labels {
    /// Builds from pairs sorted by name, without repeated names or empty values.
    fn from_sorted<'p>(pairs: impl ExactSizeIterator<Item = (&'p str, &'p str)> + Clone) -> Self {
        let len = pairs.clone().map(|(n, v)| n.len() + v.len() + 2).sum();
        let mut text = String::with_capacity(len);
        let mut spans = Vec::with_capacity(pairs.len());
        let mut nul = false;
        for (n, v) in pairs {
            let start = text.len();
            text.push_str(n);
            let mid = text.len();
            text.push('\0');
            text.push_str(v);
            spans.push((start, mid, text.len()));
            text.push('\0');
            nul |= v.contains('\0');
        }
        Self {
            text: text.into_boxed_str(),
            spans: spans.into_boxed_slice(),
            nul,
        }
    }

    /// Builds from `(name start, value start, value end)` spans of `text`, sorted by name,
    /// without repeated names or empty values.
    pub(super) fn from_spans(text: &str, spans: &[(usize, usize, usize)]) -> Self {
        Self::from_sorted(spans.iter().map(|&(s, m, e)| (&text[s..m], &text[m..e])))
    }

    /// The value of label `name`, if the set has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.spans
            .binary_search_by(|&(s, m, _)| self.text[s..m].cmp(name))
            .ok()
            .map(|i| self.value(i))
    }

    /// `(name, value)` pairs, sorted by name.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str)> + ExactSizeIterator {
        self.spans
            .iter()
            .map(|&(s, m, e)| (&self.text[s..m], &self.text[m + 1..e]))
    }

    /// How many labels there are, `__name__` included.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no labels at all.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    fn value(&self, i: usize) -> &str {
        let (_, m, e) = self.spans[i];
        &self.text[m + 1..e]
    }
}

/// Collects `(name, value)` pairs in any order: empty values are dropped and, if a name
/// repeats, its last value wins.
impl<'a> FromIterator<(&'a str, &'a str)> for Labels {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        let mut pairs: Vec<(&str, &str)> = iter.into_iter().collect();
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        pairs.dedup_by(|later, earlier| later.0 == earlier.0);
        pairs.retain(|(_, v)| !v.is_empty());
        Self::from_sorted(pairs.into_iter())
    }
}

/// Prometheus' order of label sets: label by label, name then value.
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> Ordering {
        if self.nul || other.nul {
            self.iter().cmp(other.iter())
        } else {
            self.text.as_bytes().cmp(other.text.as_bytes())
        }
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// `{name="value", ...}` with Rust string escapes.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (n, v)) in self.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{n}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// One time series of a [`History`]: its labels and its samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    labels: Labels,
    /// Sorted by time, one sample per timestamp.
    samples: Vec<(Timestamp, f64)>,
}

impl Series {
    /// The metric name (label `__name__`).
    pub fn name(&self) -> &str {
        self.labels.get("__name__").unwrap_or_default()
    }

    /// All labels, `__name__` included.
    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    /// The value of label `name`, if the series has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name)
    }

    /// The samples, sorted by time, at most one per timestamp.
    pub fn samples(&self) -> &[(Timestamp, f64)] {
        &self.samples
    }
}

/// A series as the parser leaves it.
pub(super) struct Parsed {
    pub(super) labels: Labels,
    pub(super) samples: Vec<(Timestamp, f64)>,
    /// Every sample was newer than the one before.
    pub(super) sorted: bool,
}

/// A parsed OpenMetrics history: every series with its samples.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// In Prometheus' storage order: sorted by label set.
    series: Vec<Series>,
    /// Indices into `series`, increasing, per metric name.
    by_name: HashMap<String, Vec<usize>>,
    last: Option<Timestamp>,
    samples: usize,
}

impl History {
    /// Parses an OpenMetrics text that ends with `# EOF` and gives every sample a timestamp.
    ///
    /// What is accepted follows what `promtool tsdb create-blocks-from openmetrics` (2.42)
    /// accepts and stores:
    /// - timestamps are seconds, possibly fractional, and become milliseconds the way promtool
    ///   converts them, `int64(seconds * 1000)` (truncating);
    /// - labels with an empty value are dropped (`{a="",b="1"}` is the series `{b="1"}`), and a
    ///   series written with its labels in another order is the same series;
    /// - exemplars are only allowed on `_total` and `_bucket` samples;
    /// - blank lines, unknown `#` lines, a trailing comma in a label set, repeated label
    ///   names, double spaces and anything after `# EOF` are errors.
    ///
    /// Stricter than promtool: an escape other than `\\`, `\"` and `\n` in a label value is an
    /// error (promtool keeps it verbatim). More lenient: samples of a series may come in any
    /// order (promtool drops a sample older than the previous one of its series in the same
    /// block); they are sorted, a repeated timestamp keeps its first sample, as promtool does,
    /// and both are reported with a warning.
    ///
    /// Any malformed line is an [`Error::OpenMetrics`](crate::Error::OpenMetrics) naming the
    /// line and what is wrong.
    pub fn parse(text: &[u8]) -> Result<Self> {
        super::openmetrics::parse(text)
    }

    /// Assembles parsed series: merges those written in several ways, sorts samples where
    /// needed and orders series like Prometheus' storage.
    pub(super) fn assemble(mut parsed: Vec<Parsed>) -> Self {
        parsed.sort_by(|a, b| a.labels.cmp(&b.labels));
        let mut series: Vec<Series> = Vec::with_capacity(parsed.len());
        let mut unsorted = Vec::new();
        for Parsed {
            labels,
            samples,
            sorted,
        } in parsed
        {
            match series.last_mut() {
                Some(prev) if prev.labels == labels => {
                    prev.samples.extend(samples);
                    if unsorted.last() != Some(&(series.len() - 1)) {
                        unsorted.push(series.len() - 1);
                    }
                }
                _ => {
                    if !sorted {
                        unsorted.push(series.len());
                    }
                    series.push(Series { labels, samples });
                }
            }
        }
        let mut repeated = 0;
        for &i in &unsorted {
            let samples = &mut series[i].samples;
            // Stable: of two samples with the same time, the first in the file stays.
            samples.sort_by_key(|&(t, _)| t);
            let before = samples.len();
            samples.dedup_by_key(|&mut (t, _)| t);
            repeated += before - samples.len();
        }
        if !unsorted.is_empty() {
            tracing::warn!(
                series = unsorted.len(),
                repeated_timestamps_dropped = repeated,
                "OpenMetrics history lists samples of some series out of time order or in \
                 several ways: they are sorted here, but promtool drops samples older than the \
                 previous one of their series"
            );
        }
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, s) in series.iter().enumerate() {
            match by_name.get_mut(s.name()) {
                Some(ids) => ids.push(i),
                None => {
                    by_name.insert(s.name().to_owned(), vec![i]);
                }
            }
        }
        History {
            last: series
                .iter()
                .filter_map(|s| s.samples.last())
                .map(|&(t, _)| t)
                .max(),
            samples: series.iter().map(|s| s.samples.len()).sum(),
            series,
            by_name,
        }
    }

    /// Every series, sorted by label set like Prometheus' storage.
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// The series of metric `name`, in storage order.
    pub fn series_named<'h>(&'h self, name: &str) -> impl Iterator<Item = &'h Series> + 'h {
        self.ids_named(name).iter().map(|&i| &self.series[i])
    }

    /// Indices in [`History::series`] of the series of metric `name`, increasing.
    pub(super) fn ids_named(&self, name: &str) -> &[usize] {
        self.by_name
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The metric names present, in no particular order.
    pub fn metric_names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// The newest sample time, `None` for a history without samples.
    pub fn last_timestamp(&self) -> Option<Timestamp> {
        self.last
    }

    /// How many samples the history holds (after dropping repeated timestamps).
    pub fn sample_count(&self) -> usize {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_of_the_text_is_prometheus_label_order() {
        let sets: Vec<Labels> = [
            vec![],
            vec![("a", "1")],
            vec![("ab", "0")],
            vec![("a", "1"), ("b", "2")],
            vec![("a", "x")],
            vec![("a", "xy")],
            vec![("a", "x"), ("b", "1")],
            // A NUL inside a value: byte order would put this before the previous set.
            vec![("a", "x\0a")],
            vec![("Z", "1"), ("__name__", "m")],
            vec![("__name__", "m"), ("a", "é")],
            vec![("__name__", "m"), ("a", "z")],
        ]
        .into_iter()
        .map(|pairs| pairs.into_iter().collect())
        .collect();
        for a in &sets {
            for b in &sets {
                assert_eq!(a.cmp(b), a.iter().cmp(b.iter()), "{a} vs {b}");
            }
        }
        assert!(sets[6] < sets[7]);
    }

    #[test]
    fn labels_collect_sorted_without_empty_values() {
        let l: Labels = [("b", "2"), ("a", "1"), ("c", ""), ("a", "3")]
            .into_iter()
            .collect();
        assert_eq!(l.iter().collect::<Vec<_>>(), [("a", "3"), ("b", "2")]);
        assert_eq!((l.get("a"), l.get("c"), l.len()), (Some("3"), None, 2));
        assert_eq!(l.to_string(), "{a=\"3\", b=\"2\"}");
        assert!(Labels::default().is_empty());
    }
}
