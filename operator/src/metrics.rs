//! Operator metrics, under the names controller-runtime uses so existing dashboards and alerts
//! work unchanged, plus per-PodScaler gauges.

use std::time::Instant;

use std::fmt::Write as _;

use kube::runtime::reflector::ObjectRef;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::api::{PodScaler, PodScalerStatus};
use crate::workqueue_metrics::WorkqueueMetrics;

/// The `controller` label value.
pub const CONTROLLER: &str = "podscaler";

/// controller-runtime's `controller_runtime_reconcile_time_seconds` buckets.
pub const RECONCILE_TIME_BUCKETS: [f64; 40] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 15.0, 20.0,
    25.0, 30.0, 40.0, 50.0, 60.0,
];

/// controller-runtime's reconcile `result` label values.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReconcileResult {
    /// Finished, nothing scheduled.
    Success,
    /// Returned an error.
    Error,
    /// Asked to run again at once.
    Requeue,
    /// Asked to run again after a delay (the normal outcome with `--requeue-after`).
    RequeueAfter,
}

impl ReconcileResult {
    const ALL: [Self; 4] = [
        Self::Success,
        Self::Error,
        Self::Requeue,
        Self::RequeueAfter,
    ];

    /// The label value controller-runtime uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Requeue => "requeue",
            Self::RequeueAfter => "requeue_after",
        }
    }
}

impl EncodeLabelValue for ReconcileResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: &'static str,
    result: ReconcileResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScalerLabels {
    namespace: String,
    name: String,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;

/// Every metric the operator publishes.
#[derive(Clone)]
pub struct Metrics {
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    reconcile_panics: Family<ControllerLabels, Counter>,
    terminal_errors: Family<ControllerLabels, Counter>,
    reconcile_time: HistogramFamily,
    active_workers: Family<ControllerLabels, Gauge>,
    desired: Family<ScalerLabels, Gauge>,
    current: Family<ScalerLabels, Gauge>,
    ready: Family<ScalerLabels, Gauge>,
    available: Family<ScalerLabels, Gauge>,
    foreign: Family<ScalerLabels, Gauge>,
    foreign_deletions: Family<ScalerLabels, Counter>,
    workqueue: WorkqueueMetrics<ObjectRef<PodScaler>>,
}

const LABELS: ControllerLabels = ControllerLabels {
    controller: CONTROLLER,
};

impl Metrics {
    /// Registers the metrics, the controller's workqueue metrics with them;
    /// `max_concurrent_reconciles` is published as a constant gauge.
    pub fn register(registry: &mut Registry, max_concurrent_reconciles: u16) -> Self {
        let workqueue = WorkqueueMetrics::register(registry, CONTROLLER);
        let metrics = Self {
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_panics: Family::default(),
            terminal_errors: Family::default(),
            reconcile_time: Family::new_with_constructor(|| Histogram::new(RECONCILE_TIME_BUCKETS)),
            active_workers: Family::default(),
            desired: Family::default(),
            current: Family::default(),
            ready: Family::default(),
            available: Family::default(),
            foreign: Family::default(),
            foreign_deletions: Family::default(),
            workqueue,
        };
        let max_concurrent: Family<ControllerLabels, Gauge> = Family::default();
        max_concurrent
            .get_or_create(&LABELS)
            .set(i64::from(max_concurrent_reconciles));

        // Like controller-runtime, publish every series at zero before the first reconcile.
        for result in ReconcileResult::ALL {
            drop(metrics.reconcile_total.get_or_create(&ResultLabels {
                controller: CONTROLLER,
                result,
            }));
        }
        drop(metrics.reconcile_errors.get_or_create(&LABELS));
        drop(metrics.reconcile_panics.get_or_create(&LABELS));
        drop(metrics.terminal_errors.get_or_create(&LABELS));
        drop(metrics.reconcile_time.get_or_create(&LABELS));
        drop(metrics.active_workers.get_or_create(&LABELS));

        let runtime = registry.sub_registry_with_prefix("controller_runtime");
        runtime.register(
            "reconcile",
            "Total number of reconciliations per controller",
            metrics.reconcile_total.clone(),
        );
        runtime.register(
            "reconcile_errors",
            "Total number of reconciliation errors per controller",
            metrics.reconcile_errors.clone(),
        );
        runtime.register(
            "reconcile_panics",
            "Total number of reconciliation panics per controller",
            metrics.reconcile_panics.clone(),
        );
        // See `Metrics::terminal_error` for what is terminal here.
        runtime.register(
            "terminal_reconcile_errors",
            "Total number of terminal reconciliation errors per controller",
            metrics.terminal_errors.clone(),
        );
        runtime.register(
            "reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            metrics.reconcile_time.clone(),
        );
        runtime.register(
            "active_workers",
            "Number of currently used workers per controller",
            metrics.active_workers.clone(),
        );
        runtime.register(
            "max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            max_concurrent,
        );

        let own = registry.sub_registry_with_prefix("podscaler");
        own.register(
            "desired_pods",
            "spec.count of the PodScaler",
            metrics.desired.clone(),
        );
        own.register(
            "current_pods",
            "Active pods matching the PodScaler's selector",
            metrics.current.clone(),
        );
        own.register(
            "ready_pods",
            "Matching active pods that are ready",
            metrics.ready.clone(),
        );
        own.register(
            "available_pods",
            "Matching active pods that are available",
            metrics.available.clone(),
        );
        own.register(
            "foreign_pods",
            "Matching active pods controlled by another controller",
            metrics.foreign.clone(),
        );
        own.register(
            "foreign_pod_deletions",
            "Pods controlled by another controller that the PodScaler deleted to hold its count",
            metrics.foreign_deletions.clone(),
        );
        metrics
    }

    /// Starts timing a reconcile and counts the worker as active until [`ReconcileTimer::finish`].
    pub fn reconcile_started(&self) -> ReconcileTimer {
        self.active_workers.get_or_create(&LABELS).inc();
        ReconcileTimer {
            metrics: self.clone(),
            started: Instant::now(),
        }
    }

    /// Counts a reconcile that panicked (caught, and failed as an error: see
    /// [`crate::reconcile::reconcile`]).
    pub fn reconcile_panicked(&self) {
        self.reconcile_panics.get_or_create(&LABELS).inc();
    }

    /// Counts a reconcile that failed with an error retrying cannot fix, which is not retried
    /// until the PodScaler changes ([`crate::reconcile::Error::is_terminal`]). The only such error is a
    /// PodScaler without a namespace, which the API server never serves for a namespaced CRD,
    /// so in practice this stays at 0: every other failure (API errors, refused creates and
    /// deletes, panics) may pass and is retried with backoff.
    pub fn terminal_error(&self) {
        self.terminal_errors.get_or_create(&LABELS).inc();
    }

    /// The controller's workqueue metrics.
    pub fn workqueue(&self) -> &WorkqueueMetrics<ObjectRef<PodScaler>> {
        &self.workqueue
    }

    /// Publishes a PodScaler's counts.
    pub fn set_scaler(&self, namespace: &str, name: &str, desired: i32, status: &PodScalerStatus) {
        let labels = scaler_labels(namespace, name);
        self.desired.get_or_create(&labels).set(i64::from(desired));
        self.current
            .get_or_create(&labels)
            .set(i64::from(status.replicas));
        self.ready
            .get_or_create(&labels)
            .set(i64::from(status.ready_replicas));
        self.available
            .get_or_create(&labels)
            .set(i64::from(status.available_replicas));
        self.foreign
            .get_or_create(&labels)
            .set(i64::from(status.foreign_replicas));
        // Created at 0 with the gauges, so rate() and increase() see the first deletion.
        drop(self.foreign_deletions.get_or_create(&labels));
    }

    /// Counts deletions of another controller's pods.
    pub fn foreign_pods_deleted(&self, namespace: &str, name: &str, pods: u64) {
        self.foreign_deletions
            .get_or_create(&scaler_labels(namespace, name))
            .inc_by(pods);
    }

    /// Removes every series of a PodScaler that no longer exists.
    pub fn remove_scaler(&self, namespace: &str, name: &str) {
        let labels = scaler_labels(namespace, name);
        for family in [
            &self.desired,
            &self.current,
            &self.ready,
            &self.available,
            &self.foreign,
        ] {
            family.remove(&labels);
        }
        self.foreign_deletions.remove(&labels);
    }
}

fn scaler_labels(namespace: &str, name: &str) -> ScalerLabels {
    ScalerLabels {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

/// An in-progress reconcile: holds an active worker until dropped; [`ReconcileTimer::finish`]
/// also records the duration and result (a cancelled reconcile only releases the worker).
pub struct ReconcileTimer {
    metrics: Metrics,
    started: Instant,
}

impl ReconcileTimer {
    /// Records the reconcile's duration and result.
    pub fn finish(self, result: ReconcileResult) {
        let metrics = &self.metrics;
        metrics
            .reconcile_time
            .get_or_create(&LABELS)
            .observe(self.started.elapsed().as_secs_f64());
        metrics
            .reconcile_total
            .get_or_create(&ResultLabels {
                controller: CONTROLLER,
                result,
            })
            .inc();
        if result == ReconcileResult::Error {
            metrics.reconcile_errors.get_or_create(&LABELS).inc();
        }
    }
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.metrics.active_workers.get_or_create(&LABELS).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    #[test]
    fn result_series_exist_at_zero_before_any_reconcile() {
        let mut registry = Registry::default();
        let _metrics = Metrics::register(&mut registry, 7);
        let text = encode(&registry);
        for result in ["success", "error", "requeue", "requeue_after"] {
            let line = format!(
                "controller_runtime_reconcile_total{{controller=\"podscaler\",result=\"{result}\"}} 0\n"
            );
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        assert!(text.contains(
            "controller_runtime_max_concurrent_reconciles{controller=\"podscaler\"} 7\n"
        ));
        assert!(text.contains("controller_runtime_active_workers{controller=\"podscaler\"} 0\n"));
        assert!(
            text.contains(
                "controller_runtime_reconcile_errors_total{controller=\"podscaler\"} 0\n"
            )
        );
        assert!(text.contains("controller_runtime_reconcile_time_seconds_bucket{le=\"60.0\",controller=\"podscaler\"} 0\n"));
        for zero in [
            "controller_runtime_reconcile_panics_total{controller=\"podscaler\"} 0\n",
            "controller_runtime_terminal_reconcile_errors_total{controller=\"podscaler\"} 0\n",
            "workqueue_adds_total{name=\"podscaler\",controller=\"podscaler\"} 0\n",
        ] {
            assert!(text.contains(zero), "missing {zero:?} in\n{text}");
        }
        let doubled = crate::exposition::doubled_help_periods(&text);
        assert!(doubled.is_empty(), "{doubled:?}");
    }

    #[test]
    fn a_reconcile_is_timed_counted_and_releases_its_worker() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, 1);
        let timer = metrics.reconcile_started();
        assert!(
            encode(&registry)
                .contains("controller_runtime_active_workers{controller=\"podscaler\"} 1\n")
        );
        timer.finish(ReconcileResult::Error);
        let text = encode(&registry);
        assert!(text.contains("controller_runtime_active_workers{controller=\"podscaler\"} 0\n"));
        assert!(text.contains(
            "controller_runtime_reconcile_total{controller=\"podscaler\",result=\"error\"} 1\n"
        ));
        assert!(
            text.contains(
                "controller_runtime_reconcile_errors_total{controller=\"podscaler\"} 1\n"
            )
        );
        assert!(text.contains(
            "controller_runtime_reconcile_time_seconds_count{controller=\"podscaler\"} 1\n"
        ));

        drop(metrics.reconcile_started());
        let text = encode(&registry);
        assert!(
            text.contains("controller_runtime_active_workers{controller=\"podscaler\"} 0\n"),
            "a cancelled reconcile releases its worker"
        );
        assert!(text.contains(
            "controller_runtime_reconcile_time_seconds_count{controller=\"podscaler\"} 1\n"
        ));
    }

    #[test]
    fn panics_and_terminal_errors_are_counted() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, 1);
        metrics.reconcile_panicked();
        metrics.terminal_error();
        metrics.terminal_error();
        let text = encode(&registry);
        assert!(
            text.contains(
                "controller_runtime_reconcile_panics_total{controller=\"podscaler\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "controller_runtime_terminal_reconcile_errors_total{controller=\"podscaler\"} 2\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn scaler_series_are_removed_with_the_scaler() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, 1);
        let status = PodScalerStatus {
            replicas: 3,
            ready_replicas: 2,
            available_replicas: 2,
            foreign_replicas: 1,
            ..PodScalerStatus::default()
        };
        metrics.set_scaler("ns", "web", 4, &status);
        metrics.set_scaler("ns", "other", 1, &PodScalerStatus::default());
        metrics.foreign_pods_deleted("ns", "web", 2);
        let text = encode(&registry);
        for line in [
            "podscaler_desired_pods{namespace=\"ns\",name=\"web\"} 4\n",
            "podscaler_current_pods{namespace=\"ns\",name=\"web\"} 3\n",
            "podscaler_ready_pods{namespace=\"ns\",name=\"web\"} 2\n",
            "podscaler_available_pods{namespace=\"ns\",name=\"web\"} 2\n",
            "podscaler_foreign_pods{namespace=\"ns\",name=\"web\"} 1\n",
            "podscaler_foreign_pod_deletions_total{namespace=\"ns\",name=\"web\"} 2\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        metrics.remove_scaler("ns", "web");
        let text = encode(&registry);
        assert!(
            !text.contains("name=\"web\""),
            "series left behind:\n{text}"
        );
        assert!(text.contains("podscaler_desired_pods{namespace=\"ns\",name=\"other\"} 1\n"));
        assert!(
            text.contains(
                "podscaler_foreign_pod_deletions_total{namespace=\"ns\",name=\"other\"} 0\n"
            ),
            "the deletion counter is not created at 0:\n{text}"
        );
    }
}
