//! Expectations: pod creations and deletions this operator has made but not yet seen in its
//! cache.
//!
//! The pod cache lags the API server. Acting on a stale cache right after creating pods would
//! create them again, so — as Kubernetes' ReplicaSet controller does — a PodScaler with
//! unobserved creations or deletions is not acted on until the watch has caught up or the
//! expectations time out. Expectations are tracked by pod UID: a creation is observed once the
//! pod shows up (in a watch event or in the cache), a deletion once the pod is terminating or
//! gone.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Default time after which unobserved expectations are dropped (ReplicaSet uses 5 minutes).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A pod this operator created or deleted: its name (to look it up in the cache, which is
/// keyed by name) and its UID (so a namesake pod created later is not mistaken for it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodRef {
    pub name: String,
    pub uid: String,
}

/// How the pod cache currently sees a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheView {
    /// Not in the cache.
    Absent,
    /// In the cache, not being deleted.
    Present,
    /// In the cache with a deletion timestamp.
    Terminating,
}

/// The outcome of [`Expectations::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing outstanding: the cache reflects every change made.
    Satisfied,
    /// Changes made but not observed yet: do not act.
    Pending {
        /// Created pods not yet seen.
        creations: usize,
        /// Deleted pods not yet seen terminating or gone.
        deletions: usize,
    },
    /// Changes made long ago and never observed: dropped, act again.
    TimedOut {
        /// Creations that were never observed.
        creations: usize,
        /// Deletions that were never observed.
        deletions: usize,
    },
}

#[derive(Debug, Default)]
struct Outstanding {
    creations: HashSet<PodRef>,
    deletions: HashSet<PodRef>,
    last_change: Option<Instant>,
}

/// Outstanding expectations per PodScaler (keyed `namespace/name`).
#[derive(Debug)]
pub struct Expectations {
    timeout: Duration,
    outstanding: HashMap<String, Outstanding>,
}

impl Expectations {
    /// Expectations that time out after `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            outstanding: HashMap::new(),
        }
    }

    /// Records pods created for `key` that the cache must show before acting again.
    pub fn expect_creations(
        &mut self,
        key: &str,
        pods: impl IntoIterator<Item = PodRef>,
        now: Instant,
    ) {
        self.expect(key, now, |outstanding| &mut outstanding.creations, pods);
    }

    /// Records pods deleted for `key` that the cache must show terminating or gone.
    pub fn expect_deletions(
        &mut self,
        key: &str,
        pods: impl IntoIterator<Item = PodRef>,
        now: Instant,
    ) {
        self.expect(key, now, |outstanding| &mut outstanding.deletions, pods);
    }

    fn expect(
        &mut self,
        key: &str,
        now: Instant,
        set: impl Fn(&mut Outstanding) -> &mut HashSet<PodRef>,
        pods: impl IntoIterator<Item = PodRef>,
    ) {
        let mut pods = pods.into_iter().peekable();
        if pods.peek().is_none() {
            return;
        }
        let outstanding = self.outstanding.entry(key.to_owned()).or_default();
        set(outstanding).extend(pods);
        outstanding.last_change = Some(now);
    }

    /// Feeds one pod sighting from the watch, after the cache has applied it: a pod seen at all
    /// settles its creation; a pod seen terminating or deleted also settles its deletion.
    pub fn observe(&mut self, uid: &str, view: CacheView) {
        for outstanding in self.outstanding.values_mut() {
            outstanding.creations.retain(|pod| pod.uid != uid);
            if view != CacheView::Present {
                outstanding.deletions.retain(|pod| pod.uid != uid);
            }
        }
    }

    /// Settles `key`'s expectations against the cache (`view` tells how it sees a pod) and says
    /// whether the PodScaler may be acted on. Satisfied or timed-out expectations are dropped.
    pub fn check(&mut self, key: &str, now: Instant, view: impl Fn(&PodRef) -> CacheView) -> Check {
        let Some(outstanding) = self.outstanding.get_mut(key) else {
            return Check::Satisfied;
        };
        outstanding
            .creations
            .retain(|pod| view(pod) == CacheView::Absent);
        outstanding
            .deletions
            .retain(|pod| view(pod) == CacheView::Present);
        let (creations, deletions) = (outstanding.creations.len(), outstanding.deletions.len());
        let expired = outstanding
            .last_change
            .is_some_and(|since| now.saturating_duration_since(since) >= self.timeout);
        if creations == 0 && deletions == 0 {
            self.outstanding.remove(key);
            Check::Satisfied
        } else if expired {
            self.outstanding.remove(key);
            Check::TimedOut {
                creations,
                deletions,
            }
        } else {
            Check::Pending {
                creations,
                deletions,
            }
        }
    }

    /// Drops everything recorded for `key` (the PodScaler is gone).
    pub fn forget(&mut self, key: &str) {
        self.outstanding.remove(key);
    }

    /// Number of PodScalers with outstanding expectations.
    pub fn len(&self) -> usize {
        self.outstanding.len()
    }

    /// Whether no PodScaler has outstanding expectations.
    pub fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "default/web";

    fn uids(names: &[&str]) -> Vec<PodRef> {
        names
            .iter()
            .map(|n| PodRef {
                name: format!("pod-{n}"),
                uid: (*n).to_owned(),
            })
            .collect()
    }

    fn cache(
        present: &'static [&'static str],
        terminating: &'static [&'static str],
    ) -> impl Fn(&PodRef) -> CacheView {
        move |pod| {
            let uid = pod.uid.as_str();
            if terminating.contains(&uid) {
                CacheView::Terminating
            } else if present.contains(&uid) {
                CacheView::Present
            } else {
                CacheView::Absent
            }
        }
    }

    #[test]
    fn nothing_recorded_is_satisfied() {
        let mut expectations = Expectations::new(DEFAULT_TIMEOUT);
        assert_eq!(
            expectations.check(KEY, Instant::now(), cache(&[], &[])),
            Check::Satisfied
        );
        expectations.expect_creations(KEY, Vec::new(), Instant::now());
        assert!(expectations.is_empty(), "an empty batch records nothing");
    }

    #[test]
    fn check_table() {
        let start = Instant::now();
        struct Case {
            name: &'static str,
            created: &'static [&'static str],
            deleted: &'static [&'static str],
            present: &'static [&'static str],
            terminating: &'static [&'static str],
            elapsed: Duration,
            want: Check,
        }
        let cases = [
            Case {
                name: "creations not in the cache yet",
                created: &["a", "b"],
                deleted: &[],
                present: &["a"],
                terminating: &[],
                elapsed: Duration::from_secs(1),
                want: Check::Pending {
                    creations: 1,
                    deletions: 0,
                },
            },
            Case {
                name: "all creations in the cache",
                created: &["a", "b"],
                deleted: &[],
                present: &["a", "b"],
                terminating: &[],
                elapsed: Duration::from_secs(1),
                want: Check::Satisfied,
            },
            Case {
                name: "created pod already terminating counts as seen",
                created: &["a"],
                deleted: &[],
                present: &[],
                terminating: &["a"],
                elapsed: Duration::from_secs(1),
                want: Check::Satisfied,
            },
            Case {
                name: "deleted pod still present",
                created: &[],
                deleted: &["x", "y"],
                present: &["x"],
                terminating: &["y"],
                elapsed: Duration::from_secs(1),
                want: Check::Pending {
                    creations: 0,
                    deletions: 1,
                },
            },
            Case {
                name: "deleted pods terminating or gone",
                created: &[],
                deleted: &["x", "y"],
                present: &[],
                terminating: &["y"],
                elapsed: Duration::from_secs(1),
                want: Check::Satisfied,
            },
            Case {
                name: "unobserved past the timeout",
                created: &["a"],
                deleted: &["x"],
                present: &["x"],
                terminating: &[],
                elapsed: DEFAULT_TIMEOUT,
                want: Check::TimedOut {
                    creations: 1,
                    deletions: 1,
                },
            },
            Case {
                name: "observed just before the timeout",
                created: &["a"],
                deleted: &[],
                present: &["a"],
                terminating: &[],
                elapsed: DEFAULT_TIMEOUT,
                want: Check::Satisfied,
            },
        ];
        for case in cases {
            let mut expectations = Expectations::new(DEFAULT_TIMEOUT);
            expectations.expect_creations(KEY, uids(case.created), start);
            expectations.expect_deletions(KEY, uids(case.deleted), start);
            let got = expectations.check(
                KEY,
                start + case.elapsed,
                cache(case.present, case.terminating),
            );
            assert_eq!(got, case.want, "{}", case.name);
            let dropped = matches!(got, Check::Satisfied | Check::TimedOut { .. });
            assert_eq!(
                expectations.is_empty(),
                dropped,
                "{}: entry dropped when settled",
                case.name
            );
        }
    }

    #[test]
    fn watch_sightings_settle_what_the_cache_no_longer_shows() {
        // A pod created and deleted before the reconcile looked: the cache never shows it, but
        // the watch saw it come and go.
        let start = Instant::now();
        let mut expectations = Expectations::new(DEFAULT_TIMEOUT);
        expectations.expect_creations(KEY, uids(&["a", "b"]), start);
        expectations.expect_deletions(KEY, uids(&["x"]), start);
        expectations.observe("a", CacheView::Present);
        expectations.observe("x", CacheView::Present);
        assert_eq!(
            expectations.check(KEY, start, cache(&[], &[])),
            Check::Pending {
                creations: 1,
                deletions: 0
            },
            "x absent from the cache settles its deletion; b is still unseen"
        );
        expectations.observe("b", CacheView::Absent);
        assert_eq!(
            expectations.check(KEY, start, cache(&[], &[])),
            Check::Satisfied
        );
    }

    #[test]
    fn present_sighting_does_not_settle_a_deletion() {
        let start = Instant::now();
        let mut expectations = Expectations::new(DEFAULT_TIMEOUT);
        expectations.expect_deletions(KEY, uids(&["x"]), start);
        expectations.observe("x", CacheView::Present);
        assert_eq!(
            expectations.check(KEY, start, cache(&["x"], &[])),
            Check::Pending {
                creations: 0,
                deletions: 1
            }
        );
        expectations.observe("x", CacheView::Terminating);
        assert_eq!(
            expectations.check(KEY, start, cache(&["x"], &[])),
            Check::Satisfied
        );
    }

    #[test]
    fn timeout_counts_from_the_latest_change_and_keys_are_independent() {
        let start = Instant::now();
        let mut expectations = Expectations::new(Duration::from_secs(10));
        expectations.expect_creations(KEY, uids(&["a"]), start);
        expectations.expect_creations(KEY, uids(&["b"]), start + Duration::from_secs(8));
        expectations.expect_creations("default/other", uids(&["c"]), start);
        assert_eq!(
            expectations.check(KEY, start + Duration::from_secs(12), cache(&[], &[])),
            Check::Pending {
                creations: 2,
                deletions: 0
            }
        );
        assert_eq!(
            expectations.check(
                "default/other",
                start + Duration::from_secs(12),
                cache(&[], &[])
            ),
            Check::TimedOut {
                creations: 1,
                deletions: 0
            }
        );
        expectations.forget(KEY);
        assert!(expectations.is_empty());
    }
}
