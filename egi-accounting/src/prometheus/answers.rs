//! From a response body to the answer of one question: pure functions over [`Read`].
//!
//! Each keeps only the labels its answer needs, skips (with one warning per missing label)
//! the series that lack one, and sorts its output (by uid, or by namespace and pod) so that
//! answers do not depend on Prometheus' series order.

use std::collections::BTreeMap;
use std::io::Read;

use crate::error::Result;
use crate::metrics::{
    Answer, ByPod, ByUid, PodAnnotations, PodCreated, PodKey, PodUid, RunningSamples, Usage,
};
use crate::query::Question;

use super::response::{Labels, RangeSummary, parse_matrix, parse_vector};

/// Prefix of the annotation labels of `kube_pod_annotations`.
const ANNOTATION_PREFIX: &str = "annotation_";

/// Series skipped because a label was missing, reported once per label when done.
struct Skipped {
    question: Question,
    missing: BTreeMap<&'static str, u64>,
}

impl Skipped {
    fn new(question: Question) -> Self {
        Self {
            question,
            missing: BTreeMap::new(),
        }
    }

    /// Takes the labels `names` from `labels`, or records the first missing one.
    fn require<const N: usize>(
        &mut self,
        labels: &mut Labels,
        names: [&'static str; N],
    ) -> Option<[String; N]> {
        let mut values: [String; N] = std::array::from_fn(|_| String::new());
        for (slot, name) in values.iter_mut().zip(names) {
            match labels.take(name) {
                Some(v) => *slot = v,
                None => {
                    *self.missing.entry(name).or_insert(0) += 1;
                    return None;
                }
            }
        }
        Some(values)
    }

    fn report(self) {
        let metric = metric_of(self.question);
        for (label, series) in self.missing {
            tracing::warn!(
                question = ?self.question,
                metric = %metric,
                missing_label = label,
                series,
                "skipped {series} series of {metric} without label {label:?}"
            );
        }
    }
}

/// The metric a question reads, for messages.
fn metric_of(question: Question) -> String {
    question.metric_names().join("|")
}

/// Parses a vector response keeping `wanted` labels, requiring `names`, maps each series
/// that has them with `make` and hands the row to `out` as soon as it is parsed.
fn vector_rows<T, const N: usize>(
    reader: impl Read,
    question: Question,
    names: [&'static str; N],
    wanted: &dyn Fn(&str) -> bool,
    mut make: impl FnMut([String; N], Labels, f64) -> T,
    out: &mut dyn FnMut(T),
) -> Result<()> {
    let mut skipped = Skipped::new(question);
    parse_vector(reader, wanted, &mut |mut labels, value| {
        if let Some(values) = skipped.require(&mut labels, names) {
            out(make(values, labels, value));
        }
    })?;
    skipped.report();
    Ok(())
}

/// Rows handed to a caller per batch, so that nothing holds a whole answer.
const BATCH: usize = 256;

/// Parses the answer to `question` and hands its rows to `emit` as they are parsed, in
/// batches of at most [`BATCH`] rows, each wrapped as a partial [`Answer`]: unsorted, and
/// Running series not merged per uid (the [`crate::record::Joiner`] merges them).
pub(crate) fn stream(
    reader: impl Read,
    question: Question,
    emit: &mut dyn FnMut(Answer),
) -> Result<()> {
    fn batched<T>(
        rows: impl FnOnce(&mut dyn FnMut(T)) -> Result<()>,
        wrap: impl Fn(Vec<T>) -> Answer,
        emit: &mut dyn FnMut(Answer),
    ) -> Result<()> {
        let mut batch = Vec::with_capacity(BATCH);
        rows(&mut |t| {
            batch.push(t);
            if batch.len() == BATCH {
                emit(wrap(std::mem::replace(
                    &mut batch,
                    Vec::with_capacity(BATCH),
                )));
            }
        })?;
        if !batch.is_empty() {
            emit(wrap(batch));
        }
        Ok(())
    }
    match question {
        Question::Pods => batched(|out| pods_rows(reader, out), Answer::Pods, emit),
        Question::Running => batched(|out| running_rows(reader, out), Answer::Running, emit),
        Question::Annotations => batched(
            |out| annotations_rows(reader, out),
            Answer::Annotations,
            emit,
        ),
        Question::Images => batched(|out| images_rows(reader, out), Answer::Images, emit),
        Question::CpuRequests => batched(
            |out| cpu_requests_rows(reader, out),
            Answer::CpuRequests,
            emit,
        ),
        Question::Usage(u) => batched(
            |out| usage_rows(reader, u, out),
            move |rows| Answer::Usage(u, rows),
            emit,
        ),
    }
}

/// `last_over_time(kube_pod_created{F}[R])`: one entry per series with uid, namespace and
/// pod; `created` is the value. Sorted by uid, then namespace and pod, then value.
pub(crate) fn pods(reader: impl Read) -> Result<Vec<PodCreated>> {
    let mut out = Vec::new();
    pods_rows(reader, &mut |r| out.push(r))?;
    out.sort_by(|a, b| {
        (&a.uid, &a.key)
            .cmp(&(&b.uid, &b.key))
            .then(a.created.total_cmp(&b.created))
    });
    Ok(out)
}

fn pods_rows(reader: impl Read, out: &mut dyn FnMut(PodCreated)) -> Result<()> {
    let names = ["uid", "namespace", "pod"];
    vector_rows(
        reader,
        Question::Pods,
        names,
        &|n| names.contains(&n),
        |[uid, namespace, pod], _, created| PodCreated {
            uid: PodUid(uid),
            key: PodKey { namespace, pod },
            created,
        },
        out,
    )
}

/// `kube_pod_status_phase{F,phase='Running'}[R]`: series merged per uid (latest running
/// time = max, count = sum). Sorted by uid.
pub(crate) fn running(reader: impl Read) -> Result<Vec<RunningSamples>> {
    let mut merged: BTreeMap<PodUid, RangeSummary> = BTreeMap::new();
    running_rows(reader, &mut |r| {
        let entry = merged.entry(r.uid).or_default();
        entry.last_one = entry.last_one.max(r.last_running);
        entry.ones = entry.ones.saturating_add(r.running_count);
    })?;
    Ok(merged
        .into_iter()
        .map(|(uid, s)| RunningSamples {
            uid,
            last_running: s.last_one,
            running_count: s.ones,
        })
        .collect())
}

/// One row per series (not merged per uid).
fn running_rows(reader: impl Read, out: &mut dyn FnMut(RunningSamples)) -> Result<()> {
    let mut skipped = Skipped::new(Question::Running);
    parse_matrix(reader, &|n| n == "uid", &mut |mut labels, summary| {
        if let Some([uid]) = skipped.require(&mut labels, ["uid"]) {
            out(RunningSamples {
                uid: PodUid(uid),
                last_running: summary.last_one,
                running_count: summary.ones,
            });
        }
    })?;
    skipped.report();
    Ok(())
}

/// `last_over_time(kube_pod_annotations{F}[R])`: one entry per series with a uid, holding
/// its `annotation_*` labels with the prefix stripped. Sorted by uid, then annotations.
pub(crate) fn annotations(reader: impl Read) -> Result<Vec<PodAnnotations>> {
    let mut out = Vec::new();
    annotations_rows(reader, &mut |r| out.push(r))?;
    out.sort_by(|a, b| (&a.uid, &a.annotations).cmp(&(&b.uid, &b.annotations)));
    Ok(out)
}

fn annotations_rows(reader: impl Read, out: &mut dyn FnMut(PodAnnotations)) -> Result<()> {
    vector_rows(
        reader,
        Question::Annotations,
        ["uid"],
        &|n| n == "uid" || n.starts_with(ANNOTATION_PREFIX),
        |[uid], labels, _| PodAnnotations {
            uid: PodUid(uid),
            annotations: labels
                .into_pairs()
                .filter_map(|(name, value)| {
                    let name = name.strip_prefix(ANNOTATION_PREFIX)?;
                    (!name.is_empty()).then(|| (name.to_owned(), value))
                })
                .collect(),
        },
        out,
    )
}

/// `last_over_time(kube_pod_container_info{F,container='notebook'}[R])`: the `image` label
/// per uid, one entry per series. Sorted by uid, then image.
pub(crate) fn images(reader: impl Read) -> Result<Vec<ByUid<String>>> {
    let mut out = Vec::new();
    images_rows(reader, &mut |r| out.push(r))?;
    out.sort_by(|a, b| (&a.uid, &a.value).cmp(&(&b.uid, &b.value)));
    Ok(out)
}

fn images_rows(reader: impl Read, out: &mut dyn FnMut(ByUid<String>)) -> Result<()> {
    let names = ["uid", "image"];
    vector_rows(
        reader,
        Question::Images,
        names,
        &|n| names.contains(&n),
        |[uid, image], _, _| ByUid {
            uid: PodUid(uid),
            value: image,
        },
        out,
    )
}

/// `sum by (uid) (...)` of CPU requests: the value per uid. Sorted by uid, then value.
pub(crate) fn cpu_requests(reader: impl Read) -> Result<Vec<ByUid<f64>>> {
    let mut out = Vec::new();
    cpu_requests_rows(reader, &mut |r| out.push(r))?;
    out.sort_by(|a, b| a.uid.cmp(&b.uid).then(a.value.total_cmp(&b.value)));
    Ok(out)
}

fn cpu_requests_rows(reader: impl Read, out: &mut dyn FnMut(ByUid<f64>)) -> Result<()> {
    vector_rows(
        reader,
        Question::CpuRequests,
        ["uid"],
        &|n| n == "uid",
        |[uid], _, value| ByUid {
            uid: PodUid(uid),
            value,
        },
        out,
    )
}

/// `sum by (namespace, pod, uid) (...)` of a usage question: the value per namespace, pod
/// and cgroup pod UID (normalised by [`PodUid::from_cgroup`]). Sorted by namespace and pod,
/// then uid, then value.
pub(crate) fn usage(reader: impl Read, usage: Usage) -> Result<Vec<ByPod>> {
    let mut out = Vec::new();
    usage_rows(reader, usage, &mut |r| out.push(r))?;
    out.sort_by(|a, b| {
        (&a.key, &a.uid)
            .cmp(&(&b.key, &b.uid))
            .then(a.value.total_cmp(&b.value))
    });
    Ok(out)
}

fn usage_rows(reader: impl Read, usage: Usage, out: &mut dyn FnMut(ByPod)) -> Result<()> {
    let names = ["namespace", "pod"];
    vector_rows(
        reader,
        Question::Usage(usage),
        names,
        &|n| names.contains(&n) || n == "uid",
        |[namespace, pod], mut labels, value| ByPod {
            key: PodKey { namespace, pod },
            uid: labels.take("uid").map(|u| PodUid::from_cgroup(&u)),
            value,
        },
        out,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Timestamp;

    fn vector_body(series: &[(&str, &str)]) -> String {
        let result: Vec<String> = series
            .iter()
            .map(|(metric, value)| {
                format!(r#"{{"metric":{metric},"value":[1700000000,"{value}"]}}"#)
            })
            .collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            result.join(",")
        )
    }

    fn key(namespace: &str, pod: &str) -> PodKey {
        PodKey {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
        }
    }

    #[test]
    fn pods_need_uid_namespace_and_pod_and_are_sorted() {
        let body = vector_body(&[
            (
                r#"{"uid":"u2","namespace":"hub","pod":"jupyter-b"}"#,
                "1700000100",
            ),
            (r#"{"namespace":"hub","pod":"jupyter-nouid"}"#, "1"),
            (r#"{"uid":"u3","pod":"jupyter-nons"}"#, "1"),
            (
                r#"{"uid":"u1","namespace":"hub","pod":"jupyter-a","container":"x"}"#,
                "1700000000.5",
            ),
        ]);
        let got = pods(body.as_bytes()).unwrap();
        assert_eq!(
            got,
            vec![
                PodCreated {
                    uid: PodUid("u1".to_owned()),
                    key: key("hub", "jupyter-a"),
                    created: 1_700_000_000.5,
                },
                PodCreated {
                    uid: PodUid("u2".to_owned()),
                    key: key("hub", "jupyter-b"),
                    created: 1_700_000_100.0,
                },
            ]
        );
    }

    #[test]
    fn running_merges_series_per_uid() {
        let body = r#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"uid":"b","instance":"ksm-1"},"values":[[100,"1"],[200,"1"]]},
            {"metric":{"uid":"a"},"values":[[100,"0"]]},
            {"metric":{"uid":"b","instance":"ksm-2"},"values":[[150,"1"],[300,"1"],[330,"0"]]},
            {"metric":{"pod":"no-uid"},"values":[[100,"1"]]}
        ]}}"#;
        let got = running(body.as_bytes()).unwrap();
        assert_eq!(
            got,
            vec![
                RunningSamples {
                    uid: PodUid("a".to_owned()),
                    last_running: None,
                    running_count: 0,
                },
                RunningSamples {
                    uid: PodUid("b".to_owned()),
                    last_running: Some(Timestamp::from_millis(300_000)),
                    running_count: 4,
                },
            ]
        );
    }

    #[test]
    fn annotations_strip_the_prefix() {
        let body = vector_body(&[
            (
                r#"{"uid":"u1","pod":"p","annotation_hub_jupyter_org_username":"alice","annotation_egi_eu_primary_group":"vo.example"}"#,
                "1",
            ),
            (r#"{"pod":"p2","annotation_x":"y"}"#, "1"),
        ]);
        let got = annotations(body.as_bytes()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].uid, PodUid("u1".to_owned()));
        let expected: crate::metrics::Annotations = [
            ("egi_eu_primary_group", "vo.example"),
            ("hub_jupyter_org_username", "alice"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(got[0].annotations, expected);
    }

    #[test]
    fn images_need_the_image_label() {
        let body = vector_body(&[
            (r#"{"uid":"u2","image":"jupyter/base:1"}"#, "1"),
            (r#"{"uid":"u1"}"#, "1"),
            (r#"{"uid":"u0","image":"jupyter/scipy:2"}"#, "1"),
        ]);
        let got = images(body.as_bytes()).unwrap();
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|b| (b.uid.0.as_str(), b.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("u0", "jupyter/scipy:2"), ("u2", "jupyter/base:1")]
        );
    }

    #[test]
    fn cpu_requests_and_usage_keep_values_as_found() {
        let body = vector_body(&[
            (r#"{"uid":"u2"}"#, "0.5"),
            (r#"{"uid":"u1"}"#, "NaN"),
            (r#"{}"#, "3"),
        ]);
        let got = cpu_requests(body.as_bytes()).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].uid.0, "u1");
        assert!(got[0].value.is_nan());
        assert_eq!(got[1].value, 0.5);

        let body = vector_body(&[
            (r#"{"namespace":"hub","pod":"jupyter-b"}"#, "+Inf"),
            (
                r#"{"namespace":"hub","pod":"jupyter-a","uid":"AB_CD"}"#,
                "12.5",
            ),
            (r#"{"namespace":"hub","pod":"jupyter-a"}"#, "2"),
            (r#"{"namespace":"hub"}"#, "1"),
        ]);
        let got = usage(body.as_bytes(), Usage::CpuSeconds).unwrap();
        assert_eq!(
            got,
            vec![
                ByPod {
                    key: key("hub", "jupyter-a"),
                    uid: None,
                    value: 2.0
                },
                ByPod {
                    key: key("hub", "jupyter-a"),
                    uid: Some(PodUid("ab-cd".into())),
                    value: 12.5
                },
                ByPod {
                    key: key("hub", "jupyter-b"),
                    uid: None,
                    value: f64::INFINITY
                },
            ]
        );
    }

    #[test]
    fn wrong_kind_of_answer_is_refused() {
        let body = vector_body(&[(r#"{"uid":"u"}"#, "1")]);
        assert!(matches!(
            running(body.as_bytes()),
            Err(crate::Error::MalformedResponse(_))
        ));
    }

    #[test]
    fn skipped_labels_are_counted_per_label() {
        let mut skipped = Skipped::new(Question::Pods);
        let mut labels = Labels::default();
        assert_eq!(skipped.require(&mut labels, ["uid", "pod"]), None);
        assert_eq!(skipped.missing.get("uid"), Some(&1));
        assert_eq!(
            metric_of(Question::Usage(Usage::CounterResets))
                .matches('|')
                .count(),
            1
        );
    }
}
