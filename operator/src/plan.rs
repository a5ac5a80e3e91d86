//! Pure decisions: which pods count, whether a pass may act at all (the expectations gate),
//! what to create or delete, in which order.
//!
//! Modelled on Kubernetes' ReplicaSet controller (`FilterActivePods`, `manageReplicas`,
//! `ActivePodsWithRanks`): nothing here talks to the API server, so every rule is a table test.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::expectations::Check;

/// Annotation that lowers a pod's priority for deletion (ReplicaSet honours it too).
pub const DELETION_COST_ANNOTATION: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Most pods created or deleted in one reconcile pass (ReplicaSet's `burstReplicas`).
pub const MAX_PODS_PER_PASS: usize = 500;

/// Who controls a matching pod, as far as deletion order and contention care.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodOwner {
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
    Running,
}

/// What planning needs to know about one active matching pod.
#[derive(Clone, Debug, PartialEq)]
pub struct PodFacts {
    pub name: String,
    /// Pod UID (deletes are preconditioned on it).
    pub uid: String,
    /// Who controls the pod.
    pub controller: PodOwner,
    /// Whether the scheduler has bound the pod to a node.
    pub scheduled: bool,
    pub phase: Phase,
    /// Whether the pod's Ready condition is True.
    pub ready: bool,
    /// When the Ready condition last turned True (if ready).
    pub ready_since: Option<Timestamp>,
    /// `controller.kubernetes.io/pod-deletion-cost`, 0 when absent or malformed.
    pub deletion_cost: i32,
    /// The highest restart count of its containers (ReplicaSet's `maxContainerRestarts`).
    pub restarts: i32,
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
    fn controller_rank(controller: &PodOwner) -> u8 {
        match controller {
            PodOwner::This => 0,
            PodOwner::Nobody => 1,
            PodOwner::Other(_) => 2,
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
                .filter(|pod| !matches!(&pod.controller, PodOwner::Other(owner) if spared.contains(owner)))
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

/// Changes of earlier passes that the pod cache does not show yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unobserved {
    /// Created pods not yet in the cache.
    pub creations: usize,
    /// Deleted pods the cache does not show terminating or gone yet.
    pub deletions: usize,
}

/// What a pass does about the count: the expectations gate in front of [`plan`].
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Leave the pods alone until the cache shows the PodScaler's own earlier changes.
    AwaitCache(Unobserved),
    /// Carry out `plan`. `timed_out` holds the changes the cache never showed within the
    /// expectations' timeout: the plan ignores them, and the caller should say so.
    Act {
        plan: Plan,
        timed_out: Option<Unobserved>,
    },
}

/// The one rule that prevents overshoot: a PodScaler whose earlier creations or deletions the
/// cache does not show yet is not planned for, whatever the pods look like, since planning on
/// that cache would make the same changes again (ReplicaSet's `SatisfiedExpectations`). Once
/// the cache has caught up, or the expectations timed out, the plan is made on `pods`.
pub fn decide(
    check: Check,
    desired: i32,
    pods: &[PodFacts],
    spared: &BTreeSet<OwnerName>,
) -> Decision {
    match check {
        Check::Pending {
            creations,
            deletions,
        } => Decision::AwaitCache(Unobserved {
            creations,
            deletions,
        }),
        Check::TimedOut {
            creations,
            deletions,
        } => Decision::Act {
            plan: plan(desired, pods, spared),
            timed_out: Some(Unobserved {
                creations,
                deletions,
            }),
        },
        Check::Satisfied => Decision::Act {
            plan: plan(desired, pods, spared),
            timed_out: None,
        },
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
        if let PodOwner::Other(owner) = &pod.controller {
            *owners.entry(owner.clone()).or_insert(0) += 1;
        }
    }
    owners
}

#[cfg(test)]
mod tests;
