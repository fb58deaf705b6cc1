//! The PromQL of every accounting question: the single definition both sources follow.
//!
//! [`crate::prometheus::PrometheusSource`] sends these strings; [`crate::snapshot::SnapshotSource`]
//! evaluates the same semantics over parsed samples (Prometheus 2.x: range selectors are
//! closed intervals `[at - range, at]`).
//!
//! They are the Python tool's queries with its defects fixed:
//! - container usage is grouped by `namespace, pod` instead of cAdvisor's `name`, which only
//!   existed with dockershim;
//! - CPU and memory count only real containers (`container!=''`, `container!='POD'`):
//!   the pod-level cgroup and the sandbox would count everything again;
//! - network counters belong to the pod's network namespace, which cAdvisor reports once per
//!   cgroup of the pod: they are de-duplicated with `max by (namespace, pod, interface)`
//!   before the interfaces are summed;
//! - a counter-reset question tells when CPU and network figures are lower bounds.

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

/// Matchers that keep real containers only (not the pod cgroup, not the sandbox).
pub const REAL_CONTAINERS: &str = "container!='',container!='POD'";

/// The PromQL text of `question` for `window`.
pub fn promql(question: Question, window: &Window) -> String {
    let f = &window.filter;
    let r = window.range.as_str();
    match question {
        Question::Pods => format!("last_over_time(kube_pod_created{{{}}}[{r}])", f.with("")),
        Question::Running => format!(
            "kube_pod_status_phase{{{}}}[{r}]",
            f.with("phase='Running'")
        ),
        Question::Annotations => {
            format!(
                "last_over_time(kube_pod_annotations{{{}}}[{r}])",
                f.with("")
            )
        }
        Question::Images => format!(
            "last_over_time(kube_pod_container_info{{{}}}[{r}])",
            f.with("container='notebook'")
        ),
        Question::CpuRequests => format!(
            "sum by (uid) (max_over_time(kube_pod_container_resource_requests{{{}}}[{r}]))",
            f.with("resource='cpu'")
        ),
        Question::Usage(u @ (Usage::CpuSeconds | Usage::PeakMemoryBytes)) => format!(
            "sum by (namespace, pod) ({}({}{{{}}}[{r}]))",
            u.range_function(),
            u.metric_names()[0],
            f.with(REAL_CONTAINERS)
        ),
        Question::Usage(u @ (Usage::NetworkReceivedBytes | Usage::NetworkTransmittedBytes)) => {
            format!(
                "sum by (namespace, pod) (max by (namespace, pod, interface) ({}({}{{{}}}[{r}])))",
                u.range_function(),
                u.metric_names()[0],
                f.with("")
            )
        }
        Question::Usage(u @ Usage::CounterResets) => {
            // resets() drops the metric name, so the series of the three counters would
            // collide in one vector: tag each with its metric before joining them with `or`.
            let parts: Vec<String> = u
                .metric_names()
                .iter()
                .map(|m| {
                    format!(
                        "label_replace(resets({m}{{{}}}[{r}]), \"metric\", \"{m}\", \"\", \"\")",
                        f.with("")
                    )
                })
                .collect();
            format!("sum by (namespace, pod) ({})", parts.join(" or "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Filter, LookBack, Timestamp};

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
        assert_eq!(
            promql(Question::Usage(Usage::CpuSeconds), &w),
            "sum by (namespace, pod) (max_over_time(container_cpu_usage_seconds_total{pod=~'jupyter-.*',container!='',container!='POD'}[4h]))"
        );
        assert_eq!(
            promql(Question::Usage(Usage::NetworkReceivedBytes), &w),
            "sum by (namespace, pod) (max by (namespace, pod, interface) (last_over_time(container_network_receive_bytes_total{pod=~'jupyter-.*'}[4h])))"
        );
        assert_eq!(
            promql(Question::Usage(Usage::CounterResets), &w),
            "sum by (namespace, pod) (\
             label_replace(resets(container_cpu_usage_seconds_total{pod=~'jupyter-.*'}[4h]), \"metric\", \"container_cpu_usage_seconds_total\", \"\", \"\") or \
             label_replace(resets(container_network_receive_bytes_total{pod=~'jupyter-.*'}[4h]), \"metric\", \"container_network_receive_bytes_total\", \"\", \"\") or \
             label_replace(resets(container_network_transmit_bytes_total{pod=~'jupyter-.*'}[4h]), \"metric\", \"container_network_transmit_bytes_total\", \"\", \"\"))"
        );
    }
}
