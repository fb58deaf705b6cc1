//! The accounting questions and the [`MetricsSource`] trait that answers them.
//!
//! Every question is asked for a [`Window`]: an evaluation time and a look-back
//! range, exactly like the instant queries of the Python accounting tool
//! (`last_over_time(kube_pod_created{FILTER}[RANGE])` evaluated at `time=`).
//! Answers are plain data; joining them into records is done by the pure
//! functions in [`crate::record`].

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};

/// A boxed, sendable future, so that [`MetricsSource`] stays object-safe: `futures_util`'s,
/// the one name the workspace uses for it.
pub use futures_util::future::BoxFuture;

/// A point in time, in milliseconds since the Unix epoch (Prometheus' own resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// From (possibly fractional) seconds since the Unix epoch, rounded to the millisecond
    /// as Prometheus does when it parses a `time=` parameter.
    pub fn from_secs_f64(secs: f64) -> Option<Self> {
        let ms = (secs * 1000.0).round();
        (ms.is_finite() && ms.abs() < 9.0e15).then_some(Self(ms as i64))
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch (rounded towards negative infinity).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// `self - d`, saturating.
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// The value Prometheus' HTTP API accepts for `time=`: seconds with millisecond decimals.
    pub fn to_prometheus_param(self) -> String {
        let secs = self.0.div_euclid(1000);
        let ms = self.0.rem_euclid(1000);
        if ms == 0 {
            secs.to_string()
        } else {
            format!("{secs}.{ms:03}")
        }
    }
}

/// A PromQL look-back range such as `24h` or `1h30m`, kept both as the text the operator
/// wrote (sent to Prometheus verbatim) and as a [`Duration`] (used by the snapshot source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookBack {
    text: String,
    duration: Duration,
}

impl LookBack {
    /// Parses a PromQL duration: one or more `<integer><unit>` pairs with units
    /// `ms`, `s`, `m`, `h`, `d`, `w`, `y` (365 days), largest unit first.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::Config(format!("range {text:?}: {why}"));
        let t = text.trim();
        if t.is_empty() {
            return Err(bad("empty"));
        }
        let mut total: u128 = 0;
        let mut rest = t;
        let mut last_unit = u128::MAX;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let n: u128 = rest[..digits]
                .parse()
                .map_err(|_| bad("number too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit_ms: u128 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                "w" => 7 * 86_400_000,
                "y" => 365 * 86_400_000,
                "" => return Err(bad("missing unit")),
                other => return Err(bad(&format!("unknown unit {other:?}"))),
            };
            if unit_ms >= last_unit {
                return Err(bad("units must go from largest to smallest"));
            }
            last_unit = unit_ms;
            rest = &rest[unit_len..];
            total = total
                .checked_add(n.checked_mul(unit_ms).ok_or_else(|| bad("too large"))?)
                .ok_or_else(|| bad("too large"))?;
        }
        if total == 0 {
            return Err(bad("must be positive"));
        }
        let ms = u64::try_from(total).map_err(|_| bad("too large"))?;
        Ok(Self {
            text: t.to_owned(),
            duration: Duration::from_millis(ms),
        })
    }

    /// The range as written, for PromQL.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The range as a duration.
    pub fn duration(&self) -> Duration {
        self.duration
    }
}

impl fmt::Display for LookBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// PromQL label matchers applied to every question, such as `pod=~'jupyter-.*'`
/// (the Python tool's default). Kept as text: Prometheus parses it, and the snapshot
/// source parses it with [`crate::snapshot::Matchers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter(String);

impl Filter {
    /// The Python tool's default filter: pods whose name starts with `jupyter-`.
    pub const DEFAULT: &'static str = "pod=~'jupyter-.*'";

    /// Wraps a matcher list. Braces are refused so that the filter can only add matchers.
    /// An empty list selects every pod (`kube_pod_created{}` is valid PromQL).
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        if text.contains(['{', '}']) {
            return Err(Error::Config(format!(
                "filter {text:?}: give label matchers without braces"
            )));
        }
        Ok(Self(text.trim().to_owned()))
    }

    /// The matcher text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The matchers followed by `extra` (also matchers), as the inside of a PromQL selector.
    pub fn with(&self, extra: &str) -> String {
        match (self.0.is_empty(), extra.is_empty()) {
            (true, _) => extra.to_owned(),
            (false, true) => self.0.clone(),
            (false, false) => format!("{},{extra}", self.0),
        }
    }
}

impl Default for Filter {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

/// When and over what range the questions are asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Evaluation time (`time=` of the instant queries); also "now" for the status rules.
    pub at: Timestamp,
    /// Look-back range (`[RANGE]` of the queries).
    pub range: LookBack,
    /// Label matchers every question applies.
    pub filter: Filter,
}

/// A Kubernetes pod UID: the record's VMUUID.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodUid(pub String);

impl PodUid {
    /// The UID as cAdvisor's cgroup path carries it (the `uid` label extracted by
    /// [`crate::query::CGROUP_UID_REGEX`]): the systemd cgroup driver writes `_` for `-`.
    pub fn from_cgroup(text: &str) -> Self {
        Self(text.replace('_', "-").to_ascii_lowercase())
    }
}

/// Namespace and pod name: the key on which container usage is joined to pods
/// (never cAdvisor's `name` label, which only worked with dockershim).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub pod: String,
}

/// One pod seen in the window (`last_over_time(kube_pod_created{F}[R])`).
#[derive(Debug, Clone, PartialEq)]
pub struct PodCreated {
    /// Pod UID.
    pub uid: PodUid,
    /// Namespace and name.
    pub key: PodKey,
    /// Creation time, epoch seconds (the metric's value).
    pub created: f64,
}

/// The pod's Running-phase samples in the window (`kube_pod_status_phase{F,phase='Running'}[R]`),
/// reduced to what the status rules need so that memory stays bounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningSamples {
    /// Pod UID.
    pub uid: PodUid,
    /// Time of the last sample whose value is 1, if any.
    pub last_running: Option<Timestamp>,
    /// How many samples had the value 1.
    pub running_count: u64,
}

/// Annotations of a pod exported by kube-state-metrics
/// (`last_over_time(kube_pod_annotations{F}[R])`), keyed by the label name without its
/// `annotation_` prefix, for example `hub_jupyter_org_username`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAnnotations {
    /// Pod UID.
    pub uid: PodUid,
    /// Annotation labels, prefix stripped.
    pub annotations: Annotations,
}

/// Annotation names and values, sorted by name: a small sorted vector rather than a map,
/// because a run holds one per pod (a `BTreeMap` node alone is half a kilobyte).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Annotations(Vec<(String, String)>);

impl Annotations {
    /// No annotations.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Sets `name`, returning the previous value.
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        match self.0.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    /// Names and values, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many annotations.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for Annotations {
    /// Later values of a repeated name win.
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut a = Annotations::new();
        for (n, v) in iter {
            a.insert(n, v);
        }
        a
    }
}

/// A value attached to a pod UID (image, CPU request).
#[derive(Debug, Clone, PartialEq)]
pub struct ByUid<T> {
    /// Pod UID.
    pub uid: PodUid,
    /// The value.
    pub value: T,
}

/// A value attached to namespace + pod (container usage), and to the pod UID when
/// cAdvisor's cgroup path names it.
#[derive(Debug, Clone, PartialEq)]
pub struct ByPod {
    /// Namespace and pod name.
    pub key: PodKey,
    /// The pod UID found in the cgroup path (`id` label), if any: it tells apart two pods of
    /// the same name in one window (a user's consecutive sessions).
    pub uid: Option<PodUid>,
    /// The value.
    pub value: f64,
}

/// The container usage questions, all summed over a pod's containers and grouped by
/// namespace, pod and the pod UID of the cgroup path. Only real containers count (`container!=""`, `container!="POD"`):
/// the pod-level cgroup series would count everything twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Usage {
    /// `sum by (namespace,pod) (max_over_time(container_cpu_usage_seconds_total{..}[R]))`.
    CpuSeconds,
    /// `sum by (namespace,pod) (max_over_time(container_memory_max_usage_bytes{..}[R]))`.
    PeakMemoryBytes,
    /// `sum by (namespace,pod) (last_over_time(container_network_receive_bytes_total{..}[R]))`.
    NetworkReceivedBytes,
    /// `sum by (namespace,pod) (last_over_time(container_network_transmit_bytes_total{..}[R]))`.
    NetworkTransmittedBytes,
    /// Counter resets in the window of the network counters of the pod-level cgroup, the only
    /// series where a reset can happen and change a figure (see [`crate::query`]):
    /// `sum by (namespace,pod) (resets(...[R]) > 0)`, so pods without resets are absent. Where
    /// there are some, the network figures are lower bounds.
    CounterResets,
}

impl Usage {
    /// Every usage question, in the order they are asked.
    pub const ALL: [Usage; 5] = [
        Usage::CpuSeconds,
        Usage::PeakMemoryBytes,
        Usage::NetworkReceivedBytes,
        Usage::NetworkTransmittedBytes,
        Usage::CounterResets,
    ];

    /// The metric names this question reads.
    pub const fn metric_names(self) -> &'static [&'static str] {
        match self {
            Usage::CpuSeconds => &["container_cpu_usage_seconds_total"],
            Usage::PeakMemoryBytes => &["container_memory_max_usage_bytes"],
            Usage::NetworkReceivedBytes => &["container_network_receive_bytes_total"],
            Usage::NetworkTransmittedBytes => &["container_network_transmit_bytes_total"],
            Usage::CounterResets => &[
                "container_network_receive_bytes_total",
                "container_network_transmit_bytes_total",
            ],
        }
    }

    /// The range function applied to each series before summing.
    pub fn range_function(self) -> &'static str {
        match self {
            Usage::CpuSeconds | Usage::PeakMemoryBytes => "max_over_time",
            Usage::NetworkReceivedBytes | Usage::NetworkTransmittedBytes => "last_over_time",
            Usage::CounterResets => "resets",
        }
    }
}

/// Something that can answer the accounting questions for a window: Prometheus over HTTP
/// ([`crate::prometheus::PrometheusSource`]) or an OpenMetrics history file
/// ([`crate::snapshot::SnapshotSource`]).
///
/// The trait is object-safe (methods return [`BoxFuture`]) so that a hub or a job can hold
/// a `Box<dyn MetricsSource>` chosen at run time; one allocation per question is nothing
/// next to the query itself.
///
/// Series that lack a label the answer needs (uid, namespace, pod) are left out with a
/// warning; values are returned as found (NaN and infinities included), the record
/// builder decides what to do with them.
pub trait MetricsSource: Send + Sync {
    /// Pods created or alive in the window, one entry per series of `kube_pod_created`.
    fn pods<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<PodCreated>>>;

    /// Running-phase samples per pod UID.
    fn running<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<RunningSamples>>>;

    /// Pod annotations exported by kube-state-metrics.
    fn annotations<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<PodAnnotations>>>;

    /// Image of the `notebook` container.
    fn images<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<String>>>>;

    /// Requested CPU cores summed over containers
    /// (`sum by (uid) (max_over_time(kube_pod_container_resource_requests{F,resource='cpu'}[R]))`).
    fn cpu_requests<'a>(&'a self, window: &'a Window) -> BoxFuture<'a, Result<Vec<ByUid<f64>>>>;

    /// One container usage question.
    fn usage<'a>(&'a self, window: &'a Window, usage: Usage) -> BoxFuture<'a, Result<Vec<ByPod>>>;

    /// Hands the answer to `question` to `sink` in batches (each a partial [`Answer`]) as it
    /// is read, so that a caller folding rows in never holds a whole answer. Batches come in
    /// no particular order and Running series are not merged per uid; a retried request may
    /// hand over rows again, so the sink must fold idempotently (as
    /// [`crate::record::Joiner`] does). The default asks the question whole and hands it
    /// over as one batch.
    fn stream<'a>(
        &'a self,
        window: &'a Window,
        question: crate::query::Question,
        sink: &'a mut (dyn FnMut(Answer) + Send),
    ) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            sink(answer(self, window, question).await?);
            Ok(())
        })
    }
}

/// Every answer for one window: the input of [`crate::record::build_records`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answers {
    /// See [`MetricsSource::pods`].
    pub pods: Vec<PodCreated>,
    /// See [`MetricsSource::running`].
    pub running: Vec<RunningSamples>,
    /// See [`MetricsSource::annotations`].
    pub annotations: Vec<PodAnnotations>,
    /// See [`MetricsSource::images`].
    pub images: Vec<ByUid<String>>,
    /// See [`MetricsSource::cpu_requests`].
    pub cpu_requests: Vec<ByUid<f64>>,
    /// [`Usage::CpuSeconds`].
    pub cpu_seconds: Vec<ByPod>,
    /// [`Usage::PeakMemoryBytes`].
    pub peak_memory: Vec<ByPod>,
    /// [`Usage::NetworkReceivedBytes`].
    pub network_received: Vec<ByPod>,
    /// [`Usage::NetworkTransmittedBytes`].
    pub network_transmitted: Vec<ByPod>,
    /// [`Usage::CounterResets`].
    pub counter_resets: Vec<ByPod>,
}

impl Answers {
    /// Puts an answer (or a batch of one) in its place.
    pub fn add(&mut self, answer: Answer) {
        match answer {
            Answer::Pods(rows) => self.pods.extend(rows),
            Answer::Running(rows) => self.running.extend(rows),
            Answer::Annotations(rows) => self.annotations.extend(rows),
            Answer::Images(rows) => self.images.extend(rows),
            Answer::CpuRequests(rows) => self.cpu_requests.extend(rows),
            Answer::Usage(u, rows) => match u {
                Usage::CpuSeconds => self.cpu_seconds.extend(rows),
                Usage::PeakMemoryBytes => self.peak_memory.extend(rows),
                Usage::NetworkReceivedBytes => self.network_received.extend(rows),
                Usage::NetworkTransmittedBytes => self.network_transmitted.extend(rows),
                Usage::CounterResets => self.counter_resets.extend(rows),
            },
        }
    }
}

/// One answer, tagged with its question.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Answer {
    /// See [`MetricsSource::pods`].
    Pods(Vec<PodCreated>),
    /// See [`MetricsSource::running`].
    Running(Vec<RunningSamples>),
    /// See [`MetricsSource::annotations`].
    Annotations(Vec<PodAnnotations>),
    /// See [`MetricsSource::images`].
    Images(Vec<ByUid<String>>),
    /// See [`MetricsSource::cpu_requests`].
    CpuRequests(Vec<ByUid<f64>>),
    /// See [`MetricsSource::usage`].
    Usage(Usage, Vec<ByPod>),
}

/// Asks one question.
pub async fn ask(
    source: &dyn MetricsSource,
    window: &Window,
    question: crate::query::Question,
) -> Result<Answer> {
    answer(source, window, question).await
}

/// The one place that maps a question to its [`MetricsSource`] method.
async fn answer<S: MetricsSource + ?Sized>(
    source: &S,
    window: &Window,
    question: crate::query::Question,
) -> Result<Answer> {
    use crate::query::Question;
    Ok(match question {
        Question::Pods => Answer::Pods(source.pods(window).await?),
        Question::Running => Answer::Running(source.running(window).await?),
        Question::Annotations => Answer::Annotations(source.annotations(window).await?),
        Question::Images => Answer::Images(source.images(window).await?),
        Question::CpuRequests => Answer::CpuRequests(source.cpu_requests(window).await?),
        Question::Usage(u) => Answer::Usage(u, source.usage(window, u).await?),
    })
}

/// Asks every question concurrently and gathers the answers. The first error wins and
/// the other questions are dropped: a run is all or nothing.
pub async fn ask_all(source: &dyn MetricsSource, window: &Window) -> Result<Answers> {
    let answers = futures_util::future::try_join_all(
        crate::query::Question::ALL.map(|q| ask(source, window, q)),
    )
    .await?;
    let mut all = Answers::default();
    for a in answers {
        all.add(a);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookback_parses_promql_durations() {
        assert_eq!(
            LookBack::parse("24h").unwrap().duration(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            LookBack::parse("1h30m").unwrap().duration(),
            Duration::from_secs(5_400)
        );
        assert_eq!(
            LookBack::parse("90s").unwrap().duration(),
            Duration::from_secs(90)
        );
        assert_eq!(LookBack::parse("1d").unwrap().as_str(), "1d");
        for bad in ["", "h", "24", "1x", "30m1h", "0s", "-1h", "1h 30m"] {
            assert!(LookBack::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn timestamp_renders_prometheus_time_param() {
        assert_eq!(
            Timestamp::from_millis(1_700_000_000_000).to_prometheus_param(),
            "1700000000"
        );
        assert_eq!(
            Timestamp::from_millis(1_700_000_000_005).to_prometheus_param(),
            "1700000000.005"
        );
        assert_eq!(
            Timestamp::from_secs_f64(1.2345),
            Some(Timestamp::from_millis(1235))
        );
        assert_eq!(Timestamp::from_secs_f64(f64::NAN), None);
        assert_eq!(Timestamp::from_millis(-1).as_secs(), -1);
    }

    #[test]
    fn annotations_keep_names_sorted_and_unique() {
        let mut a: Annotations = [("b", "2"), ("a", "1"), ("b", "3")]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(a.iter().collect::<Vec<_>>(), [("a", "1"), ("b", "3")]);
        assert_eq!(a.get("b").map(String::as_str), Some("3"));
        assert_eq!(a.get("c"), None);
        assert_eq!(a.insert("a".into(), "x".into()).as_deref(), Some("1"));
        assert_eq!(a.len(), 2);
        assert!(!a.is_empty() && Annotations::new().is_empty());
    }

    #[test]
    fn filter_composes_matchers() {
        let f = Filter::default();
        assert_eq!(
            f.with("phase='Running'"),
            "pod=~'jupyter-.*',phase='Running'"
        );
        assert_eq!(Filter::new("x='y'").unwrap().with(""), "x='y'");
        assert_eq!(Filter::new(" ").unwrap().with(""), "");
        assert!(Filter::new("pod='x'}").is_err());
    }
}
