//! client-go's `workqueue_*` metrics, for the queue in front of the reconcilers.
//!
//! kube-runtime has no workqueue to instrument (and no metrics hooks at all, kube-rs#1917): its
//! controller feeds triggers into a scheduler that keeps one entry per object, at the earliest
//! time any trigger asked for, and holds an entry back while that object is being reconciled.
//! This module models that scheduler from what the controller sees at its own boundaries
//! (see [`crate::controller`]):
//!
//! - **add**: a trigger entering the controller (a PodScaler watch event, a pod event mapped to
//!   its PodScalers), due at once; or the requeue a reconcile or the error policy asked for,
//!   due after its delay.
//! - **take**: a worker starts the reconcile of a key (the scheduler released it).
//! - **done**: that reconcile ends (finished, failed, or cancelled at shutdown).
//!
//! What each metric measures, with labels `name` and `controller` both `podscaler`, as
//! controller-runtime sets them:
//!
//! - `workqueue_adds_total`: adds of a key that had no pending entry. An add merged into a
//!   pending entry is not counted, as client-go does not count adding a key already queued;
//!   a requeue is counted when it is scheduled, not when its delay ends.
//! - `workqueue_depth{priority=""}`: pending keys that are due (a requeue still in its delay
//!   is not in the queue yet, as in client-go's delaying queue), computed at each scrape.
//! - `workqueue_queue_duration_seconds`: from when a key was due to when a worker took it.
//! - `workqueue_work_duration_seconds`: from take to done.
//! - `workqueue_retries_total`: requeues with a non-zero delay (the error policy's backoff and
//!   every pass's `--requeue-after`), merged or not, as controller-runtime ≥0.24 counts them.
//! - `workqueue_unfinished_work_seconds`, `workqueue_longest_running_processor_seconds`: the
//!   summed and the largest age of the reconciles running now, computed at each scrape
//!   (client-go updates them every 500 ms).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// client-go's workqueue duration buckets, `ExponentialBuckets(10e-9, 10, 12)`: 10 ns to
/// 1000 s.
pub const DURATION_BUCKETS: [f64; 12] = [
    1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    name: &'static str,
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DepthLabels {
    name: &'static str,
    controller: &'static str,
    /// controller-runtime ≥0.21 labels depth by priority; its plain queue reports "".
    priority: &'static str,
}

type HistogramFamily = Family<QueueLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The modelled queue: pending keys with when they are due, and the reconciles in progress.
/// Pure bookkeeping; every method is told the time.
#[derive(Debug)]
struct QueueState<K> {
    pending: HashMap<K, Instant>,
    running: HashMap<u64, Instant>,
    next_ticket: u64,
}

impl<K: Hash + Eq> QueueState<K> {
    fn new() -> Self {
        Self {
            pending: HashMap::new(),
            running: HashMap::new(),
            next_ticket: 0,
        }
    }

    /// Asks for `key` at `due`; true when it had no pending entry. Like the scheduler, a
    /// pending entry keeps the earlier of the two times.
    fn add(&mut self, key: K, due: Instant) -> bool {
        match self.pending.get_mut(&key) {
            Some(pending) => {
                *pending = (*pending).min(due);
                false
            }
            None => {
                self.pending.insert(key, due);
                true
            }
        }
    }

    /// A worker took `key` at `now`: how long it had been due, if it was pending.
    fn take(&mut self, key: &K, now: Instant) -> Option<Duration> {
        self.pending
            .remove(key)
            .map(|due| now.saturating_duration_since(due))
    }
}

/// The work in progress needs nothing of the keys.
impl<K> QueueState<K> {
    fn start(&mut self, now: Instant) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.running.insert(ticket, now);
        ticket
    }

    /// How long the work of `ticket` ran.
    fn finish(&mut self, ticket: u64, now: Instant) -> Option<Duration> {
        self.running
            .remove(&ticket)
            .map(|started| now.saturating_duration_since(started))
    }

    fn depth(&self, now: Instant) -> usize {
        self.pending.values().filter(|due| **due <= now).count()
    }

    /// The summed and the longest age of the work in progress, in seconds.
    fn unfinished(&self, now: Instant) -> (f64, f64) {
        self.running
            .values()
            .map(|started| now.saturating_duration_since(*started).as_secs_f64())
            .fold((0.0, 0.0), |(sum, longest), age| {
                (sum + age, f64::max(longest, age))
            })
    }
}

/// The workqueue metrics of one controller, keyed by `K` (the controller's object
/// references). Cloning is cheap and shares the state.
#[derive(Debug)]
pub struct WorkqueueMetrics<K> {
    state: Arc<Mutex<QueueState<K>>>,
    adds: Family<QueueLabels, Counter>,
    retries: Family<QueueLabels, Counter>,
    queue_duration: HistogramFamily,
    work_duration: HistogramFamily,
    labels: QueueLabels,
}

// Not derived: that would ask for `K: Clone`, and no key is cloned.
impl<K> Clone for WorkqueueMetrics<K> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
            adds: self.adds.clone(),
            retries: self.retries.clone(),
            queue_duration: self.queue_duration.clone(),
            work_duration: self.work_duration.clone(),
            labels: self.labels.clone(),
        }
    }
}

impl<K> WorkqueueMetrics<K>
where
    K: Hash + Eq + fmt::Debug + Send + 'static,
{
    /// Registers the metrics of the queue of `controller` (also its `name`), every series at
    /// zero.
    pub fn register(registry: &mut Registry, controller: &'static str) -> Self {
        let labels = QueueLabels {
            name: controller,
            controller,
        };
        let metrics = Self {
            state: Arc::new(Mutex::new(QueueState::new())),
            adds: Family::default(),
            retries: Family::default(),
            queue_duration: Family::new_with_constructor(duration_histogram),
            work_duration: Family::new_with_constructor(duration_histogram),
            labels: labels.clone(),
        };
        drop(metrics.adds.get_or_create(&labels));
        drop(metrics.retries.get_or_create(&labels));
        drop(metrics.queue_duration.get_or_create(&labels));
        drop(metrics.work_duration.get_or_create(&labels));

        // client-go's help texts, without the final period prometheus-client adds itself.
        let workqueue = registry.sub_registry_with_prefix("workqueue");
        workqueue.register(
            "adds",
            "Total number of adds handled by workqueue",
            metrics.adds.clone(),
        );
        workqueue.register(
            "retries",
            "Total number of items added to the workqueue with a non-zero delay \
             (rate-limited requeues, explicit RequeueAfter or AddAfter calls)",
            metrics.retries.clone(),
        );
        workqueue.register(
            "queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            metrics.queue_duration.clone(),
        );
        workqueue.register(
            "work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            metrics.work_duration.clone(),
        );
        workqueue.register_collector(Box::new(QueueCollector {
            state: Arc::clone(&metrics.state),
            labels,
        }));
        metrics
    }

    /// A trigger for `key` entered the controller.
    pub fn added(&self, key: K) {
        self.add(key, Instant::now());
    }

    /// A reconcile or the error policy asked for `key` again after `delay`.
    pub fn requeued(&self, key: K, delay: Duration) {
        if !delay.is_zero() {
            self.retries.get_or_create(&self.labels).inc();
        }
        self.add(key, Instant::now() + delay);
    }

    fn add(&self, key: K, due: Instant) {
        if self.lock().add(key, due) {
            self.adds.get_or_create(&self.labels).inc();
        }
    }

    /// A worker started on `key`; the work is done when the returned guard is dropped.
    pub fn started(&self, key: &K) -> Work<K> {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(waited) = state.take(key, now) {
            self.queue_duration
                .get_or_create(&self.labels)
                .observe(waited.as_secs_f64());
        }
        let ticket = state.start(now);
        drop(state);
        Work {
            metrics: self.clone(),
            ticket,
        }
    }

    /// The controller took `key` off the queue without reconciling it (its object was
    /// deleted meanwhile).
    pub fn discarded(&self, key: &K) {
        let waited = self.lock().take(key, Instant::now());
        if let Some(waited) = waited {
            self.queue_duration
                .get_or_create(&self.labels)
                .observe(waited.as_secs_f64());
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState<K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A reconcile in progress; dropping it marks the work done.
#[must_use = "the work is done when this is dropped"]
pub struct Work<K> {
    metrics: WorkqueueMetrics<K>,
    ticket: u64,
}

impl<K> Drop for Work<K> {
    fn drop(&mut self) {
        let ran = self
            .metrics
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .finish(self.ticket, Instant::now());
        if let Some(ran) = ran {
            self.metrics
                .work_duration
                .get_or_create(&self.metrics.labels)
                .observe(ran.as_secs_f64());
        }
    }
}

/// Computes the gauges that change with time alone at each scrape.
#[derive(Debug)]
struct QueueCollector<K> {
    state: Arc<Mutex<QueueState<K>>>,
    labels: QueueLabels,
}

impl<K> Collector for QueueCollector<K>
where
    K: Hash + Eq + fmt::Debug + Send + 'static,
{
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let now = Instant::now();
        let (depth, (unfinished, longest)) = {
            let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            (state.depth(now), state.unfinished(now))
        };
        let depth = ConstGauge::new(i64::try_from(depth).unwrap_or(i64::MAX));
        let mut metric = encoder.encode_descriptor(
            "depth",
            "Current depth of workqueue by workqueue and priority",
            None,
            depth.metric_type(),
        )?;
        depth.encode(metric.encode_family(&DepthLabels {
            name: self.labels.name,
            controller: self.labels.controller,
            priority: "",
        })?)?;

        let gauges = [
            (
                "unfinished_work_seconds",
                "How many seconds of work has been done that is in progress and hasn't been \
                 observed by work_duration. Large values indicate stuck threads. One can deduce \
                 the number of stuck threads by observing the rate at which this increases",
                unfinished,
            ),
            (
                "longest_running_processor_seconds",
                "How many seconds has the longest running processor for workqueue been running",
                longest,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            let mut metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric.encode_family(&self.labels)?)?;
        }
        Ok(())
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

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    #[test]
    fn a_pending_key_keeps_its_earliest_due_time_and_counts_one_add() {
        let start = Instant::now();
        let mut queue = QueueState::new();
        assert!(queue.add("web", start + secs(300)), "a resync requeue");
        assert_eq!(queue.depth(start), 0, "still in its delay");
        assert!(!queue.add("web", start + secs(1)), "merged");
        assert!(!queue.add("web", start + secs(600)), "merged, later");
        assert_eq!(queue.depth(start + secs(1)), 1);
        assert_eq!(queue.take(&"web", start + secs(4)), Some(secs(3)));
        assert_eq!(queue.depth(start + secs(4)), 0);
        assert_eq!(queue.take(&"web", start + secs(4)), None, "taken once");
        assert!(queue.add("web", start), "pending again after the take");
    }

    #[test]
    fn unfinished_work_sums_and_maxes_the_running_ages() {
        let start = Instant::now();
        let mut queue: QueueState<&str> = QueueState::new();
        assert_eq!(queue.unfinished(start), (0.0, 0.0));
        let first = queue.start(start);
        let second = queue.start(start + secs(2));
        assert_eq!(queue.unfinished(start + secs(5)), (8.0, 5.0));
        assert_eq!(queue.finish(first, start + secs(6)), Some(secs(6)));
        assert_eq!(queue.unfinished(start + secs(6)), (4.0, 4.0));
        assert_eq!(queue.finish(second, start + secs(6)), Some(secs(4)));
        assert_eq!(queue.finish(second, start + secs(6)), None);
    }

    #[test]
    fn every_series_exists_at_zero_with_controller_runtimes_labels() {
        let mut registry = Registry::default();
        let _queue = WorkqueueMetrics::<String>::register(&mut registry, "podscaler");
        let text = encode(&registry);
        for line in [
            "workqueue_adds_total{name=\"podscaler\",controller=\"podscaler\"} 0\n",
            "workqueue_retries_total{name=\"podscaler\",controller=\"podscaler\"} 0\n",
            "workqueue_depth{name=\"podscaler\",controller=\"podscaler\",priority=\"\"} 0\n",
            "workqueue_unfinished_work_seconds{name=\"podscaler\",controller=\"podscaler\"} 0.0\n",
            "workqueue_longest_running_processor_seconds{name=\"podscaler\",controller=\"podscaler\"} 0.0\n",
            "workqueue_queue_duration_seconds_bucket{le=\"1e-8\",name=\"podscaler\",controller=\"podscaler\"} 0\n",
            "workqueue_work_duration_seconds_bucket{le=\"1000.0\",name=\"podscaler\",controller=\"podscaler\"} 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let doubled = crate::exposition::doubled_help_periods(&text);
        assert!(doubled.is_empty(), "{doubled:?}");
    }

    #[test]
    fn adds_takes_and_work_are_counted_at_the_boundaries() {
        let mut registry = Registry::default();
        let queue = WorkqueueMetrics::<String>::register(&mut registry, "podscaler");
        queue.added("ns/web".to_owned());
        queue.added("ns/web".to_owned());
        queue.added("ns/api".to_owned());
        let text = encode(&registry);
        assert!(
            text.contains("workqueue_adds_total{name=\"podscaler\",controller=\"podscaler\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "workqueue_depth{name=\"podscaler\",controller=\"podscaler\",priority=\"\"} 2\n"
            ),
            "{text}"
        );

        let work = queue.started(&"ns/web".to_owned());
        let text = encode(&registry);
        assert!(
            text.contains(
                "workqueue_depth{name=\"podscaler\",controller=\"podscaler\",priority=\"\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("workqueue_queue_duration_seconds_count{name=\"podscaler\",controller=\"podscaler\"} 1\n"), "{text}");
        assert!(!text.contains("workqueue_longest_running_processor_seconds{name=\"podscaler\",controller=\"podscaler\"} 0.0\n"), "one reconcile is running:\n{text}");
        // A requeue asked while the work runs is pending, but not due for a minute.
        queue.requeued("ns/web".to_owned(), secs(60));
        drop(work);
        queue.discarded(&"ns/api".to_owned());

        let text = encode(&registry);
        for line in [
            "workqueue_adds_total{name=\"podscaler\",controller=\"podscaler\"} 3\n",
            "workqueue_retries_total{name=\"podscaler\",controller=\"podscaler\"} 1\n",
            "workqueue_depth{name=\"podscaler\",controller=\"podscaler\",priority=\"\"} 0\n",
            "workqueue_queue_duration_seconds_count{name=\"podscaler\",controller=\"podscaler\"} 2\n",
            "workqueue_work_duration_seconds_count{name=\"podscaler\",controller=\"podscaler\"} 1\n",
            "workqueue_unfinished_work_seconds{name=\"podscaler\",controller=\"podscaler\"} 0.0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        queue.requeued("ns/web".to_owned(), Duration::ZERO);
        let text = encode(&registry);
        assert!(
            text.contains(
                "workqueue_retries_total{name=\"podscaler\",controller=\"podscaler\"} 1\n"
            ),
            "a requeue without delay is no retry:\n{text}"
        );
        assert!(
            text.contains(
                "workqueue_depth{name=\"podscaler\",controller=\"podscaler\",priority=\"\"} 1\n"
            ),
            "and it is due at once:\n{text}"
        );
    }
}
