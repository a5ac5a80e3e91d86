//! What every reconcile pass shares: the clients and caches, the pure modules' state behind
//! mutexes (expectations, backoff, fights), and what the operator wrote itself, so that its
//! own status writes do not wake it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

use super::{MANAGER, Settings};
use crate::api::{PodScaler, PodScalerStatus};
use crate::backoff::FailureBackoff;
use crate::cache::pods::PodCache;
use crate::contention::Fights;
use crate::events::EventRecorder;
use crate::expectations::{CacheView, Expectations};
use crate::metrics::Metrics;

/// A status this operator wrote.
#[derive(Debug)]
pub(super) struct OwnStatusWrite {
    /// The resourceVersion the write produced, when the object was still the generation the
    /// status was computed from.
    pub(super) version: Option<String>,
    pub(super) status: PodScalerStatus,
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    pub(super) client: Client,
    pub(super) pods: PodCache,
    pub(super) expectations: Mutex<Expectations>,
    pub(super) backoff: Mutex<FailureBackoff>,
    pub(super) fights: Mutex<Fights>,
    /// This operator's latest status write of each PodScaler (`namespace/name`).
    pub(super) own_status_writes: Mutex<HashMap<String, OwnStatusWrite>>,
    pub(super) metrics: Metrics,
    pub(super) recorder: EventRecorder,
    pub(super) settings: Settings,
}

impl Context {
    /// A context reading pods from `pods` (a cache kept up to date elsewhere).
    pub fn new(
        client: Client,
        pods: PodCache,
        metrics: Metrics,
        expectations: Expectations,
        fights: Fights,
        settings: Settings,
    ) -> Self {
        Self {
            recorder: EventRecorder::new(client.clone(), MANAGER, std::env::var("POD_NAME").ok()),
            client,
            pods,
            expectations: Mutex::new(expectations),
            backoff: Mutex::new(FailureBackoff::default()),
            fights: Mutex::new(fights),
            own_status_writes: Mutex::new(HashMap::new()),
            metrics,
            settings,
        }
    }

    /// Feeds a pod watch event to the expectations. Call it after the pod store applied the
    /// event, so a settled expectation always means the store shows the change. Events of a
    /// re-list (`Init*`) are skipped: the store applies them only at `InitDone`, and
    /// [`Expectations::check`] reads the store itself.
    pub fn observe_pod_event(&self, event: &watcher::Event<Pod>) {
        let (pod, view) = match event {
            watcher::Event::Apply(pod) if pod.metadata.deletion_timestamp.is_some() => {
                (pod, CacheView::Terminating)
            }
            watcher::Event::Apply(pod) => (pod, CacheView::Present),
            watcher::Event::Delete(pod) => (pod, CacheView::Absent),
            // A relist's pods reach the cache only at InitDone, all at once: observing them
            // one by one before that would satisfy expectations the cache does not show yet.
            // The reconciles InitDone triggers check expectations against the new cache.
            watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::InitDone => {
                return;
            }
        };
        if let Some(uid) = pod.metadata.uid.as_deref() {
            lock(&self.expectations).observe(uid, view);
        }
    }

    /// Forgets a PodScaler that no longer exists: its expectations, backoff, fights and
    /// metric series.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        lock(&self.expectations).forget(&key);
        lock(&self.backoff).reset(&key);
        lock(&self.fights).forget(&key);
        lock(&self.own_status_writes).remove(&key);
        self.recorder
            .forget_object(PodScaler::kind(&()).as_ref(), namespace, name);
        self.metrics.remove_scaler(namespace, name);
    }

    /// Whether `scaler` is exactly the object this operator's own latest status write made:
    /// a watch event of it carries nothing the operator does not know, so it should not wake
    /// a reconcile. (When the watch event outruns the write's response, it is not recognised
    /// and wakes one pass, which finds the same status and writes nothing.)
    pub fn is_own_status_write(&self, scaler: &PodScaler) -> bool {
        let Some(version) = scaler.metadata.resource_version.as_deref() else {
            return false;
        };
        lock(&self.own_status_writes)
            .get(&scaler_key(scaler))
            .and_then(|own| own.version.as_deref())
            .is_some_and(|own| own == version)
    }

    /// Records a failed pass of `scaler` and returns when to retry it: 5 ms doubling to
    /// [`crate::backoff::MAX_DELAY`], per PodScaler.
    pub fn error_delay(&self, scaler: &PodScaler) -> Duration {
        lock(&self.backoff).failed(
            &scaler_key(scaler),
            scaler.metadata.generation,
            Instant::now(),
        )
    }

    /// The operator's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

pub(crate) fn scaler_key(scaler: &PodScaler) -> String {
    format!(
        "{}/{}",
        scaler.namespace().unwrap_or_default(),
        scaler.name_any()
    )
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `namespace/name` key of a PodScaler reference, as [`scaler_key`] makes it of the object.
pub(crate) fn ref_key<K: kube::runtime::reflector::Lookup + ?Sized>(
    scaler: &ObjectRef<K>,
) -> String {
    format!(
        "{}/{}",
        scaler.namespace.as_deref().unwrap_or_default(),
        scaler.name
    )
}
