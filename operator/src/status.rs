//! Pure status computation: counts, the selector string and the three conditions, from what a
//! reconcile pass observed and did (ReplicaSet's `calculateStatus`, kept apart from acting).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{PodScalerSpec, PodScalerStatus, selector_string};
use crate::contention::Fight;
use crate::plan::{OwnerName, PodFacts, PodOwner, Unobserved, foreign_controllers};

/// Condition: the count is right and every pod is ready.
pub const READY: &str = "Ready";
/// Condition: the latest create or delete call failed.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
/// Condition: another controller manages pods matching the selector.
pub const CONTENDED: &str = "Contended";

/// `Ready` reasons.
pub mod reason {
    /// Count reached and all pods ready.
    pub const CONVERGED: &str = "Converged";
    /// Fewer pods than `spec.count`.
    pub const SCALING_UP: &str = "ScalingUp";
    /// More pods than `spec.count`.
    pub const SCALING_DOWN: &str = "ScalingDown";
    /// Count reached, some pods not ready.
    pub const PODS_NOT_READY: &str = "PodsNotReady";
    /// A pod create call failed (`ReplicaFailure`).
    pub const FAILED_CREATE: &str = "FailedCreate";
    /// A pod delete call failed (`ReplicaFailure`).
    pub const FAILED_DELETE: &str = "FailedDelete";
    /// The latest create/delete calls succeeded (`ReplicaFailure` False).
    pub const NO_FAILURE: &str = "NoFailure";
    /// Matching pods of another controller are counted (`Contended`).
    pub const SHARED_SELECTOR: &str = "SharedSelector";
    /// Another controller recreates the pods this PodScaler deletes (`Contended`).
    pub const FIGHTING_CONTROLLER: &str = "FightingController";
    /// No other controller's pods match (`Contended` False).
    pub const NO_CONTENTION: &str = "NoContention";
}

/// Which call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailedAction {
    /// Creating a pod.
    Create,
    /// Deleting a pod.
    Delete,
}

/// A failed create or delete, with the API server's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub action: FailedAction,
    /// The API server's message, as [`refusal_message`] makes it stable.
    pub message: String,
}

/// The API server's message for a refused create or delete, without the name of the refused
/// pod: a generated name differs on every attempt, and a condition message that changes each
/// pass would write the status, and so wake the PodScaler, on every pass. Events keep the
/// full message.
///
/// `pods "web-x7k2p" is forbidden: exceeded quota: q, …` becomes `exceeded quota: q, …`.
pub fn refusal_message(message: &str, refused_name: Option<&str>) -> String {
    let reason = forbidden_reason(message).unwrap_or(message);
    match refused_name.filter(|name| !name.is_empty()) {
        Some(name) => reason.replace(name, "<generated>"),
        None => reason.to_owned(),
    }
}

/// `<reason>` of the API server's `<resource> "<name>" is forbidden: <reason>`.
fn forbidden_reason(message: &str) -> Option<&str> {
    let (resource, rest) = message.split_once(" \"")?;
    let (_, reason) = rest.split_once("\" is forbidden: ")?;
    (!resource.is_empty() && !resource.contains(' ')).then_some(reason)
}

/// What the pass did about the count.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The count was right; nothing to do.
    Idle,
    /// Waiting for the cache to show earlier changes before acting again.
    AwaitingCache(Unobserved),
    /// Created or deleted pods; `failure` tells whether a call failed.
    Acted {
        /// The first failure of the pass, if any.
        failure: Option<Failure>,
    },
}

impl Progress {
    /// Whether the pass succeeded, which forgets its PodScaler's failure backoff: it acted
    /// without a refusal, or found nothing to do. One that waited for the cache says nothing
    /// about whether the calls would work now.
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Idle | Self::Acted { failure: None })
    }
}

/// Everything the status is computed from.
#[derive(Clone, Debug)]
pub struct Observation<'a> {
    /// The PodScaler's `metadata.generation`.
    pub generation: Option<i64>,
    /// The PodScaler's spec.
    pub spec: &'a PodScalerSpec,
    /// Active matching pods seen at the start of the pass.
    pub pods: &'a [PodFacts],
    /// What the pass did.
    pub progress: Progress,
    /// The fights with other controllers this PodScaler is in.
    pub fights: &'a [Fight],
}

/// Computes the status; conditions keep their `lastTransitionTime` while their status holds.
pub fn compute(
    previous: Option<&PodScalerStatus>,
    observed: &Observation<'_>,
    now: Timestamp,
) -> PodScalerStatus {
    let pods = observed.pods;
    let replicas = count(pods.len());
    let ready_replicas = count(pods.iter().filter(|pod| pod.ready).count());
    let foreign_replicas = count(
        pods.iter()
            .filter(|pod| matches!(pod.controller, PodOwner::Other(_)))
            .count(),
    );
    let previous_conditions = previous
        .map(|status| status.conditions.as_slice())
        .unwrap_or_default();
    let conditions = [
        ready_condition(observed, replicas, ready_replicas),
        failure_condition(observed, previous_conditions, replicas),
        contention_condition(observed),
    ]
    .into_iter()
    .map(|draft| draft.into_condition(previous_conditions, observed.generation, now))
    .collect();
    PodScalerStatus {
        observed_generation: observed.generation,
        replicas,
        ready_replicas,
        available_replicas: ready_replicas,
        foreign_replicas,
        selector: selector_string(&observed.spec.selector),
        conditions,
    }
}

/// A contention event worth publishing: the `Contended` condition became True or changed reason.
pub fn contention_news(
    previous: Option<&PodScalerStatus>,
    current: &PodScalerStatus,
) -> Option<(String, String)> {
    let find = |status: &PodScalerStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == CONTENDED)
            .cloned()
    };
    let now = find(current)?;
    let before = previous.and_then(find);
    let changed = before.is_none_or(|b| b.status != now.status || b.reason != now.reason);
    (now.status == "True" && changed).then_some((now.reason, now.message))
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

struct Draft {
    type_: &'static str,
    status: bool,
    reason: String,
    message: String,
}

impl Draft {
    fn new(type_: &'static str, status: bool, reason: &str, message: String) -> Self {
        Self {
            type_,
            status,
            reason: reason.to_owned(),
            message,
        }
    }

    fn into_condition(
        self,
        previous: &[Condition],
        generation: Option<i64>,
        now: Timestamp,
    ) -> Condition {
        let status = if self.status { "True" } else { "False" };
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == self.type_ && c.status == status)
            .map_or(Time(now), |c| c.last_transition_time.clone());
        Condition {
            type_: self.type_.to_owned(),
            status: status.to_owned(),
            reason: self.reason,
            message: self.message,
            observed_generation: generation,
            last_transition_time,
        }
    }
}

fn ready_condition(observed: &Observation<'_>, replicas: i32, ready: i32) -> Draft {
    let desired = observed.spec.count.max(0);
    // No counts of the unobserved changes: they shrink with every pod event, and each
    // different message would be another status write.
    let waiting = match observed.progress {
        Progress::AwaitingCache(_) => {
            "; waiting to observe its earlier pod creations and deletions before acting again"
        }
        _ => "",
    };
    if replicas < desired {
        Draft::new(
            READY,
            false,
            reason::SCALING_UP,
            format!("{replicas} of {desired} pods exist{waiting}"),
        )
    } else if replicas > desired {
        Draft::new(
            READY,
            false,
            reason::SCALING_DOWN,
            format!("{replicas} pods exist, {desired} wanted{waiting}"),
        )
    } else if ready < desired {
        Draft::new(
            READY,
            false,
            reason::PODS_NOT_READY,
            format!("{ready} of {desired} pods are ready"),
        )
    } else {
        Draft::new(
            READY,
            true,
            reason::CONVERGED,
            format!("{ready} of {desired} pods are ready"),
        )
    }
}

fn failure_condition(observed: &Observation<'_>, previous: &[Condition], replicas: i32) -> Draft {
    let cleared = || {
        Draft::new(
            REPLICA_FAILURE,
            false,
            reason::NO_FAILURE,
            "the latest pod create and delete calls succeeded".to_owned(),
        )
    };
    match &observed.progress {
        Progress::Acted {
            failure: Some(failure),
        } => {
            let (reason, verb) = match failure.action {
                FailedAction::Create => (reason::FAILED_CREATE, "creating"),
                FailedAction::Delete => (reason::FAILED_DELETE, "deleting"),
            };
            Draft::new(
                REPLICA_FAILURE,
                true,
                reason,
                format!(
                    "{verb} pods failed: {}; retrying with backoff",
                    failure.message
                ),
            )
        }
        Progress::Acted { failure: None } | Progress::Idle => cleared(),
        // Not acting this pass says nothing new about failures until the count is right.
        Progress::AwaitingCache(_) if replicas == observed.spec.count.max(0) => cleared(),
        Progress::AwaitingCache(_) => previous
            .iter()
            .find(|c| c.type_ == REPLICA_FAILURE && c.status == "True")
            .map_or_else(cleared, |c| {
                Draft::new(REPLICA_FAILURE, true, &c.reason, c.message.clone())
            }),
    }
}

fn contention_condition(observed: &Observation<'_>) -> Draft {
    let selector = selector_string(&observed.spec.selector);
    if !observed.fights.is_empty() {
        let (held, fighting): (Vec<&Fight>, Vec<&Fight>) = observed
            .fights
            .iter()
            .partition(|fight| fight.holding_until.is_some());
        let mut parts = Vec::new();
        for fight in held {
            if let Some(until) = fight.holding_until {
                parts.push(format!(
                    "{} recreates the pods this PodScaler deletes: holding off deleting its pods until {until}",
                    fight.owner
                ));
            }
        }
        if !fighting.is_empty() {
            let owners: Vec<String> = fighting.iter().map(|f| f.owner.to_string()).collect();
            parts.push(format!(
                "this PodScaler deleted pods controlled by {} to hold {selector} at {count}, and they were recreated",
                owners.join(", "),
                count = observed.spec.count,
            ));
        }
        return Draft::new(
            CONTENDED,
            true,
            reason::FIGHTING_CONTROLLER,
            format!(
                "{}; give the controllers selectors that do not overlap",
                parts.join("; ")
            ),
        );
    }
    let foreign = foreign_controllers(observed.pods);
    if foreign.is_empty() {
        return Draft::new(
            CONTENDED,
            false,
            reason::NO_CONTENTION,
            format!("no other controller manages pods matching {selector}"),
        );
    }
    let foreign_pods: usize = foreign.values().sum();
    Draft::new(
        CONTENDED,
        true,
        reason::SHARED_SELECTOR,
        format!(
            "{foreign_pods} of {total} pods matching {selector} are controlled by {owners}; they count toward \
             spec.count and this PodScaler deletes its own pods first",
            total = observed.pods.len(),
            owners = list_owners(&foreign),
        ),
    )
}

fn list_owners(owners: &BTreeMap<OwnerName, usize>) -> String {
    let mut out = String::new();
    for (i, (owner, pods)) in owners.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "{owner} ({pods})");
    }
    out
}

#[cfg(test)]
mod tests;
