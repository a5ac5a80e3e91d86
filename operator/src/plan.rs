//! Pure decisions: which pods count, what to create or delete, in which order.
//!
//! Modelled on Kubernetes' ReplicaSet controller (`FilterActivePods`, `manageReplicas`,
//! `ActivePodsWithRanks`): nothing here talks to the API server, so every rule is a table test.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

/// Annotation that lowers a pod's priority for deletion (ReplicaSet honours it too).
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Most pods created or deleted in one reconcile pass (ReplicaSet's `burstReplicas`).
pub const MAX_PODS_PER_PASS: usize = 500;

/// Who controls a matching pod, as far as deletion order and contention care.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// Controlled by the PodScaler being reconciled.
    This,
    /// No controller: a bare pod nobody will recreate.
    Nobody,
    /// Controlled by another object, which will most likely recreate the pod if it goes.
    Other(OwnerName),
}

/// `Kind/name` of a pod's controller, for messages and events.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerName {
    /// Kind of the controller (`ReplicaSet`, `PodScaler` …).
    pub kind: String,
    /// Name of the controller.
    pub name: String,
}

impl std::fmt::Display for OwnerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Pod phase as deletion ranking orders it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Pending (or no phase reported yet).
    Pending,
    /// Unknown: the node stopped reporting.
    Unknown,
    /// Running.
    Running,
}

/// What planning needs to know about one active matching pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodFacts {
    /// Pod name.
    pub name: String,
    /// Pod UID (deletes are preconditioned on it).
    pub uid: String,
    /// Who controls the pod.
    pub controller: Controller,
    /// Whether the scheduler has bound the pod to a node.
    pub scheduled: bool,
    /// Phase, for ranking.
    pub phase: Phase,
    /// Whether the pod's Ready condition is True.
    pub ready: bool,
    /// When the Ready condition last turned True (if ready).
    pub ready_since: Option<Timestamp>,
    /// `controller.kubernetes.io/pod-deletion-cost`, 0 when absent or malformed.
    pub deletion_cost: i32,
    /// The highest restart count of its containers (ReplicaSet's `maxContainerRestarts`).
    pub restarts: i32,
    /// Creation time.
    pub created: Option<Timestamp>,
}

/// Whether a pod counts at all: not being deleted, not Succeeded, not Failed.
pub fn is_active(pod: &Pod) -> bool {
    let terminal = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    pod.metadata.deletion_timestamp.is_none() && !terminal
}

/// Order in which surplus pods are deleted: `Less` means `a` goes first. The first rule that
/// tells the pods apart decides:
/// 1. this PodScaler's pods, then bare pods, then pods another controller would recreate;
/// 2. unscheduled before scheduled;
/// 3. Pending before Unknown before Running;
/// 4. not ready before ready;
/// 5. lower `pod-deletion-cost` first;
/// 6. ready for a shorter time first (no ready time first);
/// 7. more restarts of its most restarted container first;
/// 8. newer first (no creation time first);
/// 9. name, so the order is total and stable.
///
/// Rules 6 and 8 compare as ReplicaSet's `afterOrZero` does, without its logarithmic buckets.
pub fn deletion_order(a: &PodFacts, b: &PodFacts) -> Ordering {
    fn controller_rank(controller: &Controller) -> u8 {
        match controller {
            Controller::This => 0,
            Controller::Nobody => 1,
            Controller::Other(_) => 2,
        }
    }
    controller_rank(&a.controller)
        .cmp(&controller_rank(&b.controller))
        .then_with(|| a.scheduled.cmp(&b.scheduled))
        .then_with(|| a.phase.cmp(&b.phase))
        .then_with(|| a.ready.cmp(&b.ready))
        .then_with(|| a.deletion_cost.cmp(&b.deletion_cost))
        .then_with(|| {
            // Only between ready pods: the one that became ready later has been ready for less.
            if a.ready && b.ready {
                later_or_missing_first(a.ready_since, b.ready_since)
            } else {
                Ordering::Equal
            }
        })
        .then_with(|| b.restarts.cmp(&a.restarts))
        .then_with(|| later_or_missing_first(a.created, b.created))
        .then_with(|| a.name.cmp(&b.name))
}

/// ReplicaSet's `afterOrZero` as an ordering: a missing time first, then the later time.
fn later_or_missing_first(a: Option<Timestamp>, b: Option<Timestamp>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.cmp(&a),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// What one reconcile pass does.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// The count is right.
    Nothing,
    /// Create this many pods (at most [`MAX_PODS_PER_PASS`]).
    Create(usize),
    /// Delete these pods, in this order (at most [`MAX_PODS_PER_PASS`]).
    Delete(Vec<PodFacts>),
}

/// Decides how to move from `pods` (the active matching pods) to `desired`. Pods controlled by
/// a `spared` controller (one this PodScaler is holding off fighting) still count, but are not
/// deleted; with nothing else to delete, the plan is [`Plan::Nothing`].
pub fn plan(desired: i32, pods: &[PodFacts], spared: &BTreeSet<OwnerName>) -> Plan {
    let desired = usize::try_from(desired).unwrap_or(0);
    match pods.len().cmp(&desired) {
        Ordering::Equal => Plan::Nothing,
        Ordering::Less => Plan::Create((desired - pods.len()).min(MAX_PODS_PER_PASS)),
        Ordering::Greater => {
            let surplus = (pods.len() - desired).min(MAX_PODS_PER_PASS);
            let mut ranked: Vec<PodFacts> = pods
                .iter()
                .filter(|pod| !matches!(&pod.controller, Controller::Other(owner) if spared.contains(owner)))
                .cloned()
                .collect();
            ranked.sort_by(deletion_order);
            ranked.truncate(surplus);
            if ranked.is_empty() {
                Plan::Nothing
            } else {
                Plan::Delete(ranked)
            }
        }
    }
}

/// Slow-start batch sizes for `total` operations: 1, 2, 4, 8 … until `total` is reached.
/// The caller stops at the first batch with a failure, so a quota or admission error costs a
/// handful of calls instead of hundreds.
pub fn slow_start_batches(total: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let mut remaining = total;
    let mut size = 1;
    while remaining > 0 {
        let batch = size.min(remaining);
        batches.push(batch);
        remaining -= batch;
        size = size.saturating_mul(2);
    }
    batches
}

/// Active matching pods grouped by the other controllers that control them.
pub fn foreign_controllers(pods: &[PodFacts]) -> BTreeMap<OwnerName, usize> {
    let mut owners = BTreeMap::new();
    for pod in pods {
        if let Controller::Other(owner) = &pod.controller {
            *owners.entry(owner.clone()).or_insert(0) += 1;
        }
    }
    owners
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("valid timestamp")
    }

    fn facts(name: &str) -> PodFacts {
        PodFacts {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            controller: Controller::This,
            scheduled: true,
            phase: Phase::Running,
            ready: true,
            ready_since: Some(at(100)),
            deletion_cost: 0,
            restarts: 0,
            created: Some(at(0)),
        }
    }

    fn other(kind: &str, name: &str) -> Controller {
        Controller::Other(OwnerName {
            kind: kind.to_owned(),
            name: name.to_owned(),
        })
    }

    #[test]
    fn active_filter_table() {
        fn pod(phase: Option<&str>, deleting: bool) -> Pod {
            Pod {
                metadata: ObjectMeta {
                    deletion_timestamp: deleting.then(|| Time(at(5))),
                    ..ObjectMeta::default()
                },
                status: Some(PodStatus {
                    phase: phase.map(str::to_owned),
                    ..PodStatus::default()
                }),
                ..Pod::default()
            }
        }
        let cases = [
            ("no phase yet", pod(None, false), true),
            ("pending", pod(Some("Pending"), false), true),
            ("running", pod(Some("Running"), false), true),
            ("unknown", pod(Some("Unknown"), false), true),
            ("succeeded", pod(Some("Succeeded"), false), false),
            ("failed", pod(Some("Failed"), false), false),
            ("running but terminating", pod(Some("Running"), true), false),
            ("no status at all", Pod::default(), true),
        ];
        for (name, pod, want) in cases {
            assert_eq!(is_active(&pod), want, "{name}");
        }
    }

    /// Each rule on its own: `first` must be deleted before `second`, whatever order they are
    /// given in, and every earlier rule is a tie.
    #[test]
    fn deletion_ranking_rules_table() {
        let base = facts("base");
        let cases: Vec<(&str, PodFacts, PodFacts)> = vec![
            (
                "own pods before bare pods",
                PodFacts {
                    controller: Controller::This,
                    ..facts("a")
                },
                PodFacts {
                    controller: Controller::Nobody,
                    ..facts("b")
                },
            ),
            (
                "bare pods before another controller's",
                PodFacts {
                    controller: Controller::Nobody,
                    ..facts("a")
                },
                PodFacts {
                    controller: other("ReplicaSet", "rs"),
                    ..facts("b")
                },
            ),
            (
                "unscheduled before scheduled",
                PodFacts {
                    scheduled: false,
                    ..base.clone()
                },
                PodFacts {
                    scheduled: true,
                    ..base.clone()
                },
            ),
            (
                "pending before unknown",
                PodFacts {
                    phase: Phase::Pending,
                    ..base.clone()
                },
                PodFacts {
                    phase: Phase::Unknown,
                    ..base.clone()
                },
            ),
            (
                "unknown before running",
                PodFacts {
                    phase: Phase::Unknown,
                    ..base.clone()
                },
                PodFacts {
                    phase: Phase::Running,
                    ..base.clone()
                },
            ),
            (
                "not ready before ready",
                PodFacts {
                    ready: false,
                    ready_since: None,
                    ..base.clone()
                },
                PodFacts {
                    ready: true,
                    ..base.clone()
                },
            ),
            (
                "lower deletion cost first",
                PodFacts {
                    deletion_cost: -5,
                    ..base.clone()
                },
                PodFacts {
                    deletion_cost: 10,
                    ..base.clone()
                },
            ),
            (
                "ready for a shorter time first",
                PodFacts {
                    ready_since: Some(at(500)),
                    ..base.clone()
                },
                PodFacts {
                    ready_since: Some(at(100)),
                    ..base.clone()
                },
            ),
            (
                "more restarts first",
                PodFacts {
                    restarts: 4,
                    ..base.clone()
                },
                PodFacts {
                    restarts: 1,
                    ..base.clone()
                },
            ),
            (
                "newer first",
                PodFacts {
                    created: Some(at(50)),
                    ..base.clone()
                },
                PodFacts {
                    created: Some(at(10)),
                    ..base.clone()
                },
            ),
            (
                "no creation time before any",
                PodFacts {
                    created: None,
                    ..base.clone()
                },
                PodFacts {
                    created: Some(at(50)),
                    ..base.clone()
                },
            ),
            (
                "ready with no ready time before ready for a while",
                PodFacts {
                    ready_since: None,
                    ..base.clone()
                },
                PodFacts {
                    ready_since: Some(at(100)),
                    ..base.clone()
                },
            ),
            ("name breaks the last tie", facts("a"), facts("b")),
            (
                "controller outranks readiness",
                PodFacts {
                    controller: Controller::This,
                    ready: true,
                    ..facts("a")
                },
                PodFacts {
                    controller: other("ReplicaSet", "rs"),
                    ready: false,
                    ready_since: None,
                    ..facts("b")
                },
            ),
            (
                "scheduling outranks deletion cost",
                PodFacts {
                    scheduled: false,
                    deletion_cost: 100,
                    ..base.clone()
                },
                PodFacts {
                    scheduled: true,
                    deletion_cost: -100,
                    ..base.clone()
                },
            ),
        ];
        for (name, first, second) in cases {
            assert_eq!(deletion_order(&first, &second), Ordering::Less, "{name}");
            assert_eq!(
                deletion_order(&second, &first),
                Ordering::Greater,
                "{name} (reversed)"
            );
        }
    }

    #[test]
    fn planning_table() {
        let pods =
            |n: usize| -> Vec<PodFacts> { (0..n).map(|i| facts(&format!("p{i:03}"))).collect() };
        let cases: [(&str, i32, usize, Plan); 7] = [
            ("converged", 3, 3, Plan::Nothing),
            ("zero and none", 0, 0, Plan::Nothing),
            ("create the missing", 4, 1, Plan::Create(3)),
            ("create from nothing", 5, 0, Plan::Create(5)),
            (
                "creation is capped per pass",
                2000,
                10,
                Plan::Create(MAX_PODS_PER_PASS),
            ),
            ("negative count is treated as zero", -3, 0, Plan::Nothing),
            ("scale to zero deletes all", 0, 2, Plan::Delete(pods(2))),
        ];
        for (name, desired, existing, want) in cases {
            assert_eq!(
                plan(desired, &pods(existing), &BTreeSet::new()),
                want,
                "{name}"
            );
        }
        match plan(10, &pods(800), &BTreeSet::new()) {
            Plan::Delete(victims) => assert_eq!(victims.len(), MAX_PODS_PER_PASS),
            other => panic!("expected a capped delete, got {other:?}"),
        }
    }

    #[test]
    fn surplus_deletes_own_pods_before_a_deployments() {
        let mut pods: Vec<PodFacts> = (0..4).map(|i| facts(&format!("own-{i}"))).collect();
        for i in 0..3 {
            pods.push(PodFacts {
                controller: other("ReplicaSet", "nginx-abc"),
                // Another controller's pods are fresher and not ready yet: ownership still wins.
                ready: false,
                ready_since: None,
                created: Some(at(900)),
                ..facts(&format!("rs-{i}"))
            });
        }
        let Plan::Delete(victims) = plan(4, &pods, &BTreeSet::new()) else {
            panic!("expected deletions");
        };
        let names: Vec<&str> = victims.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names.len(), 3);
        assert!(
            names.iter().all(|name| name.starts_with("own-")),
            "{names:?}"
        );
    }

    #[test]
    fn a_spared_controllers_pods_count_but_are_not_deleted() {
        let rs = OwnerName {
            kind: "ReplicaSet".into(),
            name: "web-1".into(),
        };
        let spared = BTreeSet::from([rs.clone()]);
        let foreign = |name: &str| PodFacts {
            controller: Controller::Other(rs.clone()),
            ..facts(name)
        };
        let bare = PodFacts {
            controller: Controller::Nobody,
            ..facts("bare")
        };
        let held: Vec<PodFacts> = (0..5).map(|i| foreign(&format!("rs-{i}"))).collect();
        assert_eq!(
            plan(4, &held, &spared),
            Plan::Nothing,
            "nothing else to delete"
        );
        assert_eq!(plan(6, &held, &spared), Plan::Create(1), "they still count");
        let mut mixed = held.clone();
        mixed.push(bare.clone());
        assert_eq!(plan(4, &mixed, &spared), Plan::Delete(vec![bare]));
        let Plan::Delete(victims) = plan(4, &held, &BTreeSet::new()) else {
            panic!("without a hold the surplus is deleted");
        };
        assert_eq!(victims.len(), 1);
    }

    #[test]
    fn slow_start_batches_table() {
        let cases: [(usize, &[usize]); 6] = [
            (0, &[]),
            (1, &[1]),
            (2, &[1, 1]),
            (3, &[1, 2]),
            (10, &[1, 2, 4, 3]),
            (100, &[1, 2, 4, 8, 16, 32, 37]),
        ];
        for (total, want) in cases {
            let got = slow_start_batches(total);
            assert_eq!(got, want, "total {total}");
            assert_eq!(got.iter().sum::<usize>(), total);
        }
    }

    #[test]
    fn foreign_controllers_are_counted_per_owner() {
        let pods = vec![
            facts("own"),
            PodFacts {
                controller: Controller::Nobody,
                ..facts("bare")
            },
            PodFacts {
                controller: other("ReplicaSet", "a"),
                ..facts("a1")
            },
            PodFacts {
                controller: other("ReplicaSet", "a"),
                ..facts("a2")
            },
            PodFacts {
                controller: other("StatefulSet", "b"),
                ..facts("b1")
            },
        ];
        let owners = foreign_controllers(&pods);
        assert_eq!(
            owners
                .into_iter()
                .map(|(o, n)| (o.to_string(), n))
                .collect::<Vec<_>>(),
            [
                ("ReplicaSet/a".to_owned(), 2),
                ("StatefulSet/b".to_owned(), 1)
            ]
        );
    }
}
