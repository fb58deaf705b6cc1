//! The PromQL of every accounting question: the single definition both sources follow.
//!
//! [`crate::prometheus::PrometheusSource`] sends these strings; [`crate::snapshot::SnapshotSource`]
//! evaluates the same semantics over parsed samples (Prometheus 2.x: range selectors are
//! closed intervals `[at - range, at]`).
//!
//! They are the Python tool's queries with its defects fixed:
//! - container usage is grouped by `namespace, pod` instead of cAdvisor's `name`, which only
//!   existed with dockershim, and by the pod UID read from the cgroup path (`id`), so that a
//!   user's consecutive sessions (same pod name, new UID) are not merged;
//! - CPU and memory count only real containers (`container!=''`, `container!='POD'`):
//!   the pod-level cgroup and the sandbox would count everything again;
//! - network counters belong to the pod's network namespace, which cAdvisor reports once per
//!   cgroup of the pod: they are de-duplicated with `max by (namespace, pod, interface)`
//!   before the interfaces are summed;
//! - a counter-reset question tells when network figures are lower bounds. It only looks
//!   where a reset can happen and change a figure, so that it costs Prometheus little: the
//!   pod-level cgroup's network counters ([`POD_CGROUP`]), which belong to the pod's network
//!   namespace and restart from 0 when the sandbox is recreated. A container or a sandbox gets
//!   a new cgroup, hence a new series starting at 0, whenever it restarts, so its counters
//!   never go down within a series, and the pod cgroup's CPU counter is in no figure. The
//!   series are filtered with `> 0` right after `resets()`, so the label work and the sum only
//!   run on the few series that did reset.

use crate::metrics::{Usage, Window};

/// Which question a query answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Question {
    /// [`crate::MetricsSource::pods`].
    Pods,
    /// [`crate::MetricsSource::running`] (a range-vector query).
    Running,
    /// [`crate::MetricsSource::annotations`].
    Annotations,
    /// [`crate::MetricsSource::images`].
    Images,
    /// [`crate::MetricsSource::cpu_requests`].
    CpuRequests,
    /// [`crate::MetricsSource::usage`].
    Usage(Usage),
}

impl Question {
    /// Every question, the slowest first (the Running range vector), so that a run with
    /// bounded concurrency starts it at once.
    pub const ALL: [Question; 10] = [
        Question::Running,
        Question::Pods,
        Question::Annotations,
        Question::Images,
        Question::CpuRequests,
        Question::Usage(Usage::CpuSeconds),
        Question::Usage(Usage::PeakMemoryBytes),
        Question::Usage(Usage::NetworkReceivedBytes),
        Question::Usage(Usage::NetworkTransmittedBytes),
        Question::Usage(Usage::CounterResets),
    ];

    /// The metric names this question reads.
    pub const fn metric_names(self) -> &'static [&'static str] {
        match self {
            Question::Pods => &["kube_pod_created"],
            Question::Running => &["kube_pod_status_phase"],
            Question::Annotations => &["kube_pod_annotations"],
            Question::Images => &["kube_pod_container_info"],
            Question::CpuRequests => &["kube_pod_container_resource_requests"],
            Question::Usage(u) => u.metric_names(),
        }
    }
}

/// Matchers that keep real containers only (not the pod cgroup, not the sandbox).
pub const REAL_CONTAINERS: &str = "container!='',container!='POD'";

/// Matchers that keep the pod-level cgroup's series only: cAdvisor names no image for a cgroup
/// that is not a container (the pod's cgroup), while sandboxes and containers carry theirs. A
/// cAdvisor that names no image at all selects every series, which is only slower.
pub const POD_CGROUP: &str = "image=''";

/// Extracts the pod UID from cAdvisor's `id` label, the cgroup path, for both cgroup
/// drivers: `/kubepods/burstable/pod<uid>/...` (cgroupfs) and
/// `.../kubepods-burstable-pod<uid with _>.slice/...` (systemd). PromQL anchors it.
pub const CGROUP_UID_REGEX: &str = ".*pod([0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12}).*";

/// `label_replace(expr, "uid", "$1", "id", CGROUP_UID_REGEX)`.
fn with_uid(expr: &str) -> String {
    format!("label_replace({expr}, \"uid\", \"$1\", \"id\", \"{CGROUP_UID_REGEX}\")")
}

/// The PromQL text of `question` for `window`.
pub fn promql(question: Question, window: &Window) -> String {
    let f = &window.filter;
    let r = window.range.as_str();
    let m = question.metric_names()[0];
    match question {
        Question::Pods | Question::Annotations => {
            format!("last_over_time({m}{{{}}}[{r}])", f.with(""))
        }
        Question::Running => format!("{m}{{{}}}[{r}]", f.with("phase='Running'")),
        Question::Images => format!(
            "last_over_time({m}{{{}}}[{r}])",
            f.with("container='notebook'")
        ),
        Question::CpuRequests => format!(
            "sum by (uid) (max_over_time({m}{{{}}}[{r}]))",
            f.with("resource='cpu'")
        ),
        Question::Usage(u @ (Usage::CpuSeconds | Usage::PeakMemoryBytes)) => format!(
            "sum by (namespace, pod, uid) ({})",
            with_uid(&format!(
                "{}({}{{{}}}[{r}])",
                u.range_function(),
                u.metric_names()[0],
                f.with(REAL_CONTAINERS)
            ))
        ),
        Question::Usage(u @ (Usage::NetworkReceivedBytes | Usage::NetworkTransmittedBytes)) => {
            format!(
                "sum by (namespace, pod, uid) (max by (namespace, pod, uid, interface) ({}))",
                with_uid(&format!(
                    "{}({}{{{}}}[{r}])",
                    u.range_function(),
                    u.metric_names()[0],
                    f.with("")
                ))
            )
        }
        Question::Usage(u @ Usage::CounterResets) => {
            // resets() drops the metric name, so the series of the two counters would
            // collide in one vector: tag each with its metric before joining them with `or`.
            // `> 0` first: the tagging, the UID regex and the sum only see series that reset.
            let parts: Vec<String> = u
                .metric_names()
                .iter()
                .map(|m| {
                    format!(
                        "label_replace(resets({m}{{{}}}[{r}]) > 0, \"metric\", \"{m}\", \"\", \"\")",
                        f.with(POD_CGROUP)
                    )
                })
                .collect();
            format!(
                "sum by (namespace, pod, uid) ({})",
                with_uid(&parts.join(" or "))
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Filter, LookBack, PodUid, Timestamp};

    #[test]
    fn cgroup_uid_regex_reads_both_drivers() {
        let re = regex::Regex::new(&format!("^(?:{CGROUP_UID_REGEX})$")).unwrap();
        let uid = |id: &str| re.captures(id).map(|c| PodUid::from_cgroup(&c[1]).0);
        let want = Some("c72ec8eb-1615-4ce3-b9c7-c8eddfd13afd".to_owned());
        assert_eq!(
            uid("/kubepods/burstable/podc72ec8eb-1615-4ce3-b9c7-c8eddfd13afd"),
            want
        );
        assert_eq!(
            uid("/kubepods/besteffort/podc72ec8eb-1615-4ce3-b9c7-c8eddfd13afd/0123abcd"),
            want
        );
        assert_eq!(
            uid(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podC72EC8EB_1615_4ce3_b9c7_c8eddfd13afd.slice/cri-containerd-0123.scope"
            ),
            want
        );
        assert_eq!(uid("/system.slice/docker.service"), None);
    }

    fn window() -> Window {
        Window {
            at: Timestamp::from_millis(0),
            range: LookBack::parse("4h").unwrap(),
            filter: Filter::default(),
        }
    }

    #[test]
    fn queries_keep_the_python_metric_names_and_fix_the_join() {
        let w = window();
        assert_eq!(
            promql(Question::Pods, &w),
            "last_over_time(kube_pod_created{pod=~'jupyter-.*'}[4h])"
        );
        assert_eq!(
            promql(Question::Running, &w),
            "kube_pod_status_phase{pod=~'jupyter-.*',phase='Running'}[4h]"
        );
        assert_eq!(
            promql(Question::Images, &w),
            "last_over_time(kube_pod_container_info{pod=~'jupyter-.*',container='notebook'}[4h])"
        );
        assert_eq!(
            promql(Question::CpuRequests, &w),
            "sum by (uid) (max_over_time(kube_pod_container_resource_requests{pod=~'jupyter-.*',resource='cpu'}[4h]))"
        );
        let uid = format!("\"uid\", \"$1\", \"id\", \"{CGROUP_UID_REGEX}\")");
        assert_eq!(
            promql(Question::Usage(Usage::CpuSeconds), &w),
            format!(
                "sum by (namespace, pod, uid) (label_replace(max_over_time(\
                 container_cpu_usage_seconds_total{{pod=~'jupyter-.*',container!='',container!='POD'}}[4h]), {uid})"
            )
        );
        assert_eq!(
            promql(Question::Usage(Usage::NetworkReceivedBytes), &w),
            format!(
                "sum by (namespace, pod, uid) (max by (namespace, pod, uid, interface) (label_replace(\
                 last_over_time(container_network_receive_bytes_total{{pod=~'jupyter-.*'}}[4h]), {uid}))"
            )
        );
        assert_eq!(
            promql(Question::Usage(Usage::CounterResets), &w),
            format!(
                "sum by (namespace, pod, uid) (label_replace(\
                 label_replace(resets(container_network_receive_bytes_total{{pod=~'jupyter-.*',image=''}}[4h]) > 0, \
                 \"metric\", \"container_network_receive_bytes_total\", \"\", \"\") or \
                 label_replace(resets(container_network_transmit_bytes_total{{pod=~'jupyter-.*',image=''}}[4h]) > 0, \
                 \"metric\", \"container_network_transmit_bytes_total\", \"\", \"\"), {uid})"
            )
        );
    }
}
