//! Keeping the operator's watch-fed caches (pods, PodScalers) trustworthy across API server
//! outages, and saying so when they are not.
//!
//! - [`backoff`]: the delay between attempts to restart a failed watch (short, capped low).
//! - [`pods`]: the pod cache, indexed by namespace and label.
//! - [`relisting`]: a watch that starts over with a complete list after every error.
//! - [`sync`]: the rule for when a cache can be trusted; it drives `/readyz`, the metrics of
//!   [`metrics`] and the recovery logs.
//!
//! The readiness rule, as documented for users: `/readyz` answers 200 only while both caches
//! are synced. A cache is synced from the end of a complete list until its watch reports an
//! error; from that error (a dropped connection, a refused request, `410 Gone`) it is stale
//! until a fresh watch has listed every object again. While the pod cache is stale no
//! PodScaler is reconciled: its counts could be wrong in either direction.

pub mod backoff;
pub mod metrics;
pub mod pods;
pub mod relisting;
pub mod sync;
