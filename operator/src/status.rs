//! Pure status computation: counts, the selector string and the three conditions, from what a
//! reconcile pass observed and did (ReplicaSet's `calculateStatus`, kept apart from acting).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::api::{PodScalerSpec, PodScalerStatus, selector_string};
use crate::contention::Fight;
use crate::plan::{Controller, OwnerName, PodFacts, foreign_controllers};

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
    /// Which call failed.
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
    AwaitingCache {
        /// Created pods not yet seen.
        creations: usize,
        /// Deleted pods not yet seen gone.
        deletions: usize,
    },
    /// Created or deleted pods; `failure` tells whether a call failed.
    Acted {
        /// The first failure of the pass, if any.
        failure: Option<Failure>,
    },
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
            .filter(|pod| matches!(pod.controller, Controller::Other(_)))
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
        Progress::AwaitingCache { .. } => {
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
        Progress::AwaitingCache { .. } if replicas == observed.spec.count.max(0) => cleared(),
        Progress::AwaitingCache { .. } => previous
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
mod tests {
    use super::*;
    use crate::plan::Phase;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("valid timestamp")
    }

    fn spec(count: i32) -> PodScalerSpec {
        PodScalerSpec {
            count,
            selector: BTreeMap::from([("app".to_owned(), "nginx".to_owned())]),
            template: None,
        }
    }

    fn pod(name: &str, ready: bool, controller: Controller) -> PodFacts {
        PodFacts {
            name: name.to_owned(),
            uid: name.to_owned(),
            controller,
            scheduled: true,
            phase: Phase::Running,
            ready,
            ready_since: None,
            deletion_cost: 0,
            restarts: 0,
            created: None,
        }
    }

    fn rs(name: &str) -> Controller {
        Controller::Other(OwnerName {
            kind: "ReplicaSet".into(),
            name: name.into(),
        })
    }

    fn condition<'a>(status: &'a PodScalerStatus, type_: &str) -> &'a Condition {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
    }

    fn observe<'a>(
        spec: &'a PodScalerSpec,
        pods: &'a [PodFacts],
        progress: Progress,
        fights: &'a [Fight],
    ) -> Observation<'a> {
        Observation {
            generation: Some(3),
            spec,
            pods,
            progress,
            fights,
        }
    }

    #[test]
    fn counts_selector_and_generation() {
        let spec = spec(4);
        let pods = [
            pod("a", true, Controller::This),
            pod("b", false, Controller::This),
            pod("c", true, rs("web")),
        ];
        let none: [Fight; 0] = [];
        let status = compute(None, &observe(&spec, &pods, Progress::Idle, &none), at(0));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.replicas, 3);
        assert_eq!(status.ready_replicas, 2);
        assert_eq!(status.available_replicas, 2);
        assert_eq!(status.foreign_replicas, 1);
        assert_eq!(status.selector, "app=nginx");
        let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, REPLICA_FAILURE, CONTENDED]);
        assert!(
            status
                .conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
    }

    #[test]
    fn ready_condition_table() {
        let none: [Fight; 0] = [];
        type Case = (
            &'static str,
            i32,
            usize,
            usize,
            Progress,
            bool,
            &'static str,
            &'static str,
        );
        let cases: [Case; 6] = [
            (
                "converged",
                2,
                2,
                2,
                Progress::Idle,
                true,
                reason::CONVERGED,
                "2 of 2 pods are ready",
            ),
            (
                "zero of zero",
                0,
                0,
                0,
                Progress::Idle,
                true,
                reason::CONVERGED,
                "0 of 0 pods are ready",
            ),
            (
                "missing pods",
                4,
                1,
                1,
                Progress::Acted { failure: None },
                false,
                reason::SCALING_UP,
                "1 of 4 pods exist",
            ),
            (
                "surplus",
                1,
                3,
                3,
                Progress::Acted { failure: None },
                false,
                reason::SCALING_DOWN,
                "3 pods exist, 1 wanted",
            ),
            (
                "not ready",
                2,
                2,
                1,
                Progress::Idle,
                false,
                reason::PODS_NOT_READY,
                "1 of 2 pods are ready",
            ),
            (
                "waiting for the cache",
                4,
                2,
                2,
                Progress::AwaitingCache {
                    creations: 2,
                    deletions: 0,
                },
                false,
                reason::SCALING_UP,
                "2 of 4 pods exist; waiting to observe its earlier pod creations and deletions before acting again",
            ),
        ];
        for (name, count, existing, ready, progress, want_true, want_reason, want_message) in cases
        {
            let spec = spec(count);
            let pods: Vec<PodFacts> = (0..existing)
                .map(|i| pod(&format!("p{i}"), i < ready, Controller::This))
                .collect();
            let status = compute(None, &observe(&spec, &pods, progress, &none), at(0));
            let ready_condition = condition(&status, READY);
            assert_eq!(
                ready_condition.status,
                if want_true { "True" } else { "False" },
                "{name}"
            );
            assert_eq!(ready_condition.reason, want_reason, "{name}");
            assert_eq!(ready_condition.message, want_message, "{name}");
        }
    }

    #[test]
    fn failure_condition_carries_the_api_message_and_survives_a_held_pass() {
        let spec = spec(5);
        let pods = [
            pod("a", true, Controller::This),
            pod("b", true, Controller::This),
        ];
        let none: [Fight; 0] = [];
        let quota = "pods \"web-x\" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2";
        let failed = compute(
            None,
            &observe(
                &spec,
                &pods,
                Progress::Acted {
                    failure: Some(Failure {
                        action: FailedAction::Create,
                        message: quota.to_owned(),
                    }),
                },
                &none,
            ),
            at(0),
        );
        let failure = condition(&failed, REPLICA_FAILURE);
        assert_eq!(
            (failure.status.as_str(), failure.reason.as_str()),
            ("True", reason::FAILED_CREATE)
        );
        assert_eq!(
            failure.message,
            format!("creating pods failed: {quota}; retrying with backoff")
        );

        let held = compute(
            Some(&failed),
            &observe(
                &spec,
                &pods,
                Progress::AwaitingCache {
                    creations: 1,
                    deletions: 0,
                },
                &none,
            ),
            at(10),
        );
        assert_eq!(
            condition(&held, REPLICA_FAILURE),
            failure,
            "held pass keeps the failure unchanged"
        );

        let recovered = compute(
            Some(&held),
            &observe(&spec, &pods, Progress::Acted { failure: None }, &none),
            at(20),
        );
        let cleared = condition(&recovered, REPLICA_FAILURE);
        assert_eq!(
            (cleared.status.as_str(), cleared.reason.as_str()),
            ("False", reason::NO_FAILURE)
        );
        assert_eq!(cleared.last_transition_time, Time(at(20)));

        let delete_failed = compute(
            None,
            &observe(
                &spec,
                &pods,
                Progress::Acted {
                    failure: Some(Failure {
                        action: FailedAction::Delete,
                        message: "denied".into(),
                    }),
                },
                &none,
            ),
            at(0),
        );
        assert_eq!(
            condition(&delete_failed, REPLICA_FAILURE).reason,
            reason::FAILED_DELETE
        );
    }

    #[test]
    fn transition_time_holds_while_the_status_holds() {
        let spec = spec(1);
        let pods = [pod("a", true, Controller::This)];
        let none: [Fight; 0] = [];
        let first = compute(None, &observe(&spec, &pods, Progress::Idle, &none), at(0));
        let second = compute(
            Some(&first),
            &observe(&spec, &pods, Progress::Idle, &none),
            at(60),
        );
        assert_eq!(
            first, second,
            "nothing changed, so the status is identical (no write needed)"
        );
        let unready = [pod("a", false, Controller::This)];
        let third = compute(
            Some(&second),
            &observe(&spec, &unready, Progress::Idle, &none),
            at(90),
        );
        assert_eq!(condition(&third, READY).last_transition_time, Time(at(90)));
        assert_eq!(
            condition(&third, CONTENDED).last_transition_time,
            Time(at(0))
        );
    }

    #[test]
    fn contention_condition_table() {
        let spec = spec(4);
        let own = [
            pod("a", true, Controller::This),
            pod("b", true, Controller::Nobody),
        ];
        let shared = [
            pod("a", true, Controller::This),
            pod("r1", true, rs("nginx-1")),
            pod("r2", true, rs("nginx-1")),
            pod("r3", true, rs("nginx-1")),
        ];
        let none: [Fight; 0] = [];
        let owner = OwnerName {
            kind: "ReplicaSet".into(),
            name: "nginx-1".into(),
        };
        let fighting = [Fight {
            owner: owner.clone(),
            holding_until: None,
        }];
        let holding = [Fight {
            owner,
            holding_until: Some(at(75)),
        }];
        type Case<'a> = (
            &'a str,
            &'a [PodFacts],
            &'a [Fight],
            &'a str,
            &'a str,
            &'a str,
        );
        let cases: [Case<'_>; 4] = [
            (
                "own and bare pods only",
                &own,
                &none,
                "False",
                reason::NO_CONTENTION,
                "no other controller manages pods matching app=nginx",
            ),
            (
                "another controller's pods are counted",
                &shared,
                &none,
                "True",
                reason::SHARED_SELECTOR,
                "3 of 4 pods matching app=nginx are controlled by ReplicaSet/nginx-1 (3)",
            ),
            (
                "this PodScaler deleted another controller's pods",
                &shared,
                &fighting,
                "True",
                reason::FIGHTING_CONTROLLER,
                "this PodScaler deleted pods controlled by ReplicaSet/nginx-1 to hold app=nginx at 4, and they were recreated",
            ),
            (
                "holding off",
                &shared,
                &holding,
                "True",
                reason::FIGHTING_CONTROLLER,
                "ReplicaSet/nginx-1 recreates the pods this PodScaler deletes: holding off deleting its pods until 2023-11-14T22:14:35Z",
            ),
        ];
        for (name, pods, deletions, want_status, want_reason, want_prefix) in cases {
            let status = compute(
                None,
                &observe(&spec, pods, Progress::Idle, deletions),
                at(0),
            );
            let contended = condition(&status, CONTENDED);
            assert_eq!(contended.status, want_status, "{name}");
            assert_eq!(contended.reason, want_reason, "{name}");
            assert!(
                contended.message.starts_with(want_prefix),
                "{name}: {}",
                contended.message
            );
        }
    }

    #[test]
    fn refusal_messages_leave_out_the_refused_pod() {
        let quota = "exceeded quota: two-pods, requested: pods=1, used: pods=2, limited: pods=2";
        let cases = [
            (
                format!("pods \"web-x7k2p\" is forbidden: {quota}"),
                Some("web-x7k2p"),
                quota.to_owned(),
            ),
            (
                format!("pods \"web-abcde\" is forbidden: {quota}"),
                None,
                quota.to_owned(),
            ),
            (
                "admission webhook \"deny.example.com\" denied the request: pod web-q1w2e is not allowed".to_owned(),
                Some("web-q1w2e"),
                "admission webhook \"deny.example.com\" denied the request: pod <generated> is not allowed".to_owned(),
            ),
            ("etcdserver: request timed out".to_owned(), Some(""), "etcdserver: request timed out".to_owned()),
        ];
        for (message, name, want) in cases {
            assert_eq!(refusal_message(&message, name), want, "{message}");
        }
        // Two attempts refused for the same reason read the same: no status write between them.
        assert_eq!(
            refusal_message(&format!("pods \"a-1\" is forbidden: {quota}"), Some("a-1")),
            refusal_message(&format!("pods \"a-2\" is forbidden: {quota}"), Some("a-2"))
        );
    }

    #[test]
    fn contention_news_only_on_transitions_to_true() {
        let spec = spec(2);
        let none: [Fight; 0] = [];
        let calm = compute(
            None,
            &observe(
                &spec,
                &[pod("a", true, Controller::This)],
                Progress::Idle,
                &none,
            ),
            at(0),
        );
        let shared_pods = [pod("a", true, Controller::This), pod("r", true, rs("x"))];
        let shared = compute(
            Some(&calm),
            &observe(&spec, &shared_pods, Progress::Idle, &none),
            at(1),
        );
        assert_eq!(contention_news(Some(&calm), &calm), None, "no change");
        assert_eq!(
            contention_news(Some(&calm), &shared).map(|(reason, _)| reason),
            Some(reason::SHARED_SELECTOR.to_owned())
        );
        assert_eq!(
            contention_news(Some(&shared), &shared),
            None,
            "already reported"
        );
        assert_eq!(
            contention_news(Some(&shared), &calm),
            None,
            "contention ending is not news"
        );
        let fought = [Fight {
            owner: OwnerName {
                kind: "ReplicaSet".into(),
                name: "x".into(),
            },
            holding_until: None,
        }];
        let fighting = compute(
            Some(&shared),
            &observe(&spec, &shared_pods, Progress::Idle, &fought),
            at(2),
        );
        assert_eq!(
            contention_news(Some(&shared), &fighting).map(|(reason, _)| reason),
            Some(reason::FIGHTING_CONTROLLER.to_owned())
        );
    }
}
