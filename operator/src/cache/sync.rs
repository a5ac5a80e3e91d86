//! When a watch-fed cache can be trusted, and what changes when that flips: the cache's part
//! of `/readyz`, the metrics of [`super::metrics`] and an info log.
//!
//! The rule: a cache is *filling* until its first complete list (`InitDone`), *synced* from
//! then until its watch reports an error, and *stale* from that error until a complete relist.
//! It counts as ready only while synced. With [`super::relisting`] every error is followed by
//! a fresh list, so a stale cache turns synced again as soon as the API server lists again —
//! also on an idle cluster, where "until the next event" would never come.

use std::time::Instant;

use kube::runtime::watcher;

use super::metrics::CacheMetrics;
use crate::admin::ReadinessPart;

/// Whether a cache can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Before the first complete list.
    Filling,
    /// Listed completely, and no watch error since.
    Synced,
    /// A watch error since the last complete list: changes may have been missed.
    Stale,
}

/// What a watch item tells about the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A list completed (`InitDone`): the cache now holds every object.
    Listed,
    /// The watch failed.
    Failed,
    /// Any other event: no news about trust.
    Other,
}

/// What a [`Signal`] changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// The first list completed.
    Filled,
    /// A synced cache turned stale.
    Lost,
    /// A list after the first one completed.
    Relisted,
}

impl SyncState {
    /// The state after `signal`, and what changed.
    pub fn after(self, signal: Signal) -> (Self, Change) {
        match (self, signal) {
            (Self::Filling, Signal::Listed) => (Self::Synced, Change::Filled),
            // Not only after an error: any later complete list replaced the cache's contents.
            (Self::Synced | Self::Stale, Signal::Listed) => (Self::Synced, Change::Relisted),
            (Self::Synced, Signal::Failed) => (Self::Stale, Change::Lost),
            // Still filling, or already stale: one more failure changes nothing.
            (state, Signal::Failed | Signal::Other) => (state, Change::None),
        }
    }
}

impl Signal {
    /// Classifies a watch item.
    pub fn of<K>(item: &Result<watcher::Event<K>, watcher::Error>) -> Self {
        match item {
            Ok(watcher::Event::InitDone) => Self::Listed,
            Ok(_) => Self::Other,
            Err(_) => Self::Failed,
        }
    }
}

/// Tracks one cache: feed it every item of its watch *after* the cache applied it, so
/// "ready" never runs ahead of what the cache shows.
pub struct CacheSync {
    resource: &'static str,
    state: SyncState,
    stale_since: Option<Instant>,
    ready: ReadinessPart,
    metrics: CacheMetrics,
}

impl CacheSync {
    /// Tracks the cache of `resource` (`pods`, `podscalers`: the metric label), reporting
    /// through `ready` (not ready until the first list) and `metrics`.
    pub fn new(resource: &'static str, ready: ReadinessPart, metrics: CacheMetrics) -> Self {
        ready.set(false);
        metrics.track(resource);
        Self {
            resource,
            state: SyncState::Filling,
            stale_since: None,
            ready,
            metrics,
        }
    }

    /// Whether the cache is synced; shared with whoever holds a clone of its readiness part.
    pub fn synced(&self) -> ReadinessPart {
        self.ready.clone()
    }

    /// Takes in one watch item.
    pub fn observe<K>(&mut self, item: &Result<watcher::Event<K>, watcher::Error>) {
        let signal = Signal::of(item);
        if signal == Signal::Failed {
            self.metrics.watch_failed(self.resource);
        }
        let (state, change) = self.state.after(signal);
        self.state = state;
        let resource = self.resource;
        match change {
            Change::None => {}
            Change::Filled => {
                self.ready.set(true);
                tracing::info!(resource, "cache filled; ready");
            }
            Change::Lost => {
                self.ready.set(false);
                self.stale_since = Some(Instant::now());
                tracing::info!(
                    resource,
                    "watch failed: cache may be stale; not ready until it is relisted"
                );
            }
            Change::Relisted => {
                self.ready.set(true);
                self.metrics.relisted(resource);
                let stale_for = self.stale_since.take().map(|since| since.elapsed());
                tracing::info!(resource, ?stale_for, "cache relisted; ready again");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::Readiness;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn trust_follows_complete_lists_and_errors() {
        use Change as C;
        use Signal as S;
        use SyncState::*;
        let table = [
            (Filling, S::Other, Filling, C::None),
            (Filling, S::Failed, Filling, C::None),
            (Filling, S::Listed, Synced, C::Filled),
            (Synced, S::Other, Synced, C::None),
            (Synced, S::Failed, Stale, C::Lost),
            (Synced, S::Listed, Synced, C::Relisted),
            // Events while stale (a relist's Init and InitApply) do not make it trusted.
            (Stale, S::Other, Stale, C::None),
            (Stale, S::Failed, Stale, C::None),
            (Stale, S::Listed, Synced, C::Relisted),
        ];
        for (before, signal, after, change) in table {
            assert_eq!(
                before.after(signal),
                (after, change),
                "{before:?} + {signal:?}"
            );
        }
    }

    #[test]
    fn readiness_and_metrics_follow_an_outage() {
        let readiness = Readiness::default();
        readiness.set_ready();
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = CacheMetrics::register(&mut registry);
        let mut pods = CacheSync::new("pods", readiness.part("pod cache"), metrics);
        let failed = || -> Result<watcher::Event<Pod>, watcher::Error> {
            Err(watcher::Error::NoResourceVersion)
        };
        assert!(!readiness.is_ready());
        for item in [Ok(watcher::Event::Init), Ok(watcher::Event::InitDone)] {
            pods.observe::<Pod>(&item);
        }
        assert!(readiness.is_ready());
        pods.observe(&failed());
        assert!(!readiness.is_ready());
        assert!(!pods.synced().is_ready());
        // The fresh watcher's Init, a failed list, a second Init: still not ready.
        pods.observe::<Pod>(&Ok(watcher::Event::Init));
        pods.observe(&failed());
        pods.observe::<Pod>(&Ok(watcher::Event::Init));
        assert!(!readiness.is_ready());
        pods.observe::<Pod>(&Ok(watcher::Event::InitDone));
        assert!(readiness.is_ready());
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &registry).expect("encodes");
        assert!(
            page.contains("podscaler_watch_errors_total{resource=\"pods\"} 2"),
            "{page}"
        );
        assert!(
            page.contains("podscaler_cache_relists_total{resource=\"pods\"} 1"),
            "{page}"
        );
    }
}
