//! The caches' recovery as metrics: how often a watch failed and how often a cache was filled
//! again by a complete relist, per resource (`pods`, `podscalers`).
//!
//! Registered on the operator's registry beside `crate::metrics` (which holds the reconcile
//! metrics) under the same `podscaler_` prefix:
//! `podscaler_watch_errors_total{resource}` and `podscaler_cache_relists_total{resource}`.
//! The first fill of a cache at startup is not a relist; every complete list after it is (each
//! follows a watch error).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

/// Counters of watch errors and relists; cheap to clone (the counters are shared).
#[derive(Clone, Debug, Default)]
pub struct CacheMetrics {
    watch_errors: Family<ResourceLabels, Counter>,
    relists: Family<ResourceLabels, Counter>,
}

impl CacheMetrics {
    /// Registers the counters on `registry` (under `podscaler_`).
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        let own = registry.sub_registry_with_prefix("podscaler");
        own.register(
            "watch_errors",
            "Errors reported by the operator's watches, by resource; each one is followed by a relist",
            metrics.watch_errors.clone(),
        );
        own.register(
            "cache_relists",
            "Complete lists that filled a cache again after its first fill (after a watch error), by resource",
            metrics.relists.clone(),
        );
        metrics
    }

    /// Shows `resource`'s series at 0 before anything happened, so a dashboard (or a test)
    /// sees the series from the start and an increase from 0 to 1 is visible to `rate()`.
    pub fn track(&self, resource: &str) {
        let labels = labels(resource);
        // Creating the series is the point; the guards returned are of no further use.
        drop(self.watch_errors.get_or_create(&labels));
        drop(self.relists.get_or_create(&labels));
    }

    /// A watch of `resource` reported an error.
    pub fn watch_failed(&self, resource: &str) {
        self.watch_errors.get_or_create(&labels(resource)).inc();
    }

    /// `resource`'s cache was filled again by a complete relist.
    pub fn relisted(&self, resource: &str) {
        self.relists.get_or_create(&labels(resource)).inc();
    }
}

fn labels(resource: &str) -> ResourceLabels {
    ResourceLabels {
        resource: resource.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_exist_from_the_start_and_count_per_resource() {
        let mut registry = Registry::default();
        let metrics = CacheMetrics::register(&mut registry);
        metrics.track("pods");
        metrics.track("podscalers");
        metrics.watch_failed("pods");
        metrics.watch_failed("pods");
        metrics.relisted("pods");
        let mut page = String::new();
        prometheus_client::encoding::text::encode(&mut page, &registry).expect("encodes");
        for line in [
            "podscaler_watch_errors_total{resource=\"pods\"} 2",
            "podscaler_watch_errors_total{resource=\"podscalers\"} 0",
            "podscaler_cache_relists_total{resource=\"pods\"} 1",
            "podscaler_cache_relists_total{resource=\"podscalers\"} 0",
        ] {
            assert!(page.contains(line), "{line} missing from\n{page}");
        }
    }
}
