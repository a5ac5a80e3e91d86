//! Memory of the pods this operator deleted although another controller controls them.
//!
//! A controller recreates the pods it loses, so each such deletion is one round of a fight
//! between two controllers that select the same pods. The log keeps those deletions for a
//! window so the status, events and metrics can say so while it lasts.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::plan::OwnerName;

/// How long a deletion of another controller's pod keeps a PodScaler `Contended`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Deletions of other controllers' pods, per PodScaler (keyed `namespace/name`).
#[derive(Debug)]
pub struct ContentionLog {
    window: Duration,
    deletions: HashMap<String, Vec<(Instant, OwnerName)>>,
}

impl ContentionLog {
    /// A log that remembers deletions for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            deletions: HashMap::new(),
        }
    }

    /// How far back the log looks.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Records that `key` deleted a pod controlled by `owner`.
    pub fn record(&mut self, key: &str, owner: OwnerName, now: Instant) {
        self.deletions
            .entry(key.to_owned())
            .or_default()
            .push((now, owner));
    }

    /// Deletions by `key` within the window, counted per owner; older ones are forgotten.
    pub fn recent(&mut self, key: &str, now: Instant) -> BTreeMap<OwnerName, usize> {
        let window = self.window;
        let mut recent = BTreeMap::new();
        if let Some(deletions) = self.deletions.get_mut(key) {
            deletions.retain(|(at, _)| now.saturating_duration_since(*at) < window);
            for (_, owner) in deletions.iter() {
                *recent.entry(owner.clone()).or_insert(0) += 1;
            }
            if deletions.is_empty() {
                self.deletions.remove(key);
            }
        }
        recent
    }

    /// Forgets `key` (the PodScaler is gone).
    pub fn forget(&mut self, key: &str) {
        self.deletions.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str) -> OwnerName {
        OwnerName {
            kind: "ReplicaSet".into(),
            name: name.into(),
        }
    }

    #[test]
    fn recent_deletions_are_counted_per_owner_within_the_window() {
        let start = Instant::now();
        let mut log = ContentionLog::new(Duration::from_secs(60));
        log.record("ns/a", owner("x"), start);
        log.record("ns/a", owner("x"), start + Duration::from_secs(30));
        log.record("ns/a", owner("y"), start + Duration::from_secs(40));
        log.record("ns/b", owner("x"), start);
        let at = |s| start + Duration::from_secs(s);
        assert_eq!(
            log.recent("ns/a", at(50)),
            BTreeMap::from([(owner("x"), 2), (owner("y"), 1)])
        );
        assert_eq!(
            log.recent("ns/a", at(80)),
            BTreeMap::from([(owner("x"), 1), (owner("y"), 1)])
        );
        assert_eq!(log.recent("ns/a", at(200)), BTreeMap::new());
        assert_eq!(
            log.recent("ns/b", at(10)),
            BTreeMap::from([(owner("x"), 1)])
        );
        log.forget("ns/b");
        assert_eq!(log.recent("ns/b", at(10)), BTreeMap::new());
        assert!(
            log.deletions.is_empty(),
            "expired and forgotten entries are dropped"
        );
    }
}
