//! What the operator keeps of each pod it watches: the fields its decisions, its expectations
//! and its pod-event wake-ups read, extracted once when the watch delivers the pod.
//!
//! A `k8s_openapi` Pod is 2,176 bytes before any of its strings (its spec alone is 1,416 bytes
//! of inline options, however little of it is set); an [`ObservedPod`] is a few hundred bytes
//! with its strings, which is what lets the pod cache hold 10,000 pods in a few megabytes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use crate::plan::{self, DELETION_COST_ANNOTATION, OwnerName, Phase, PodFacts, PodOwner};

/// A pod as the operator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedPod {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Its labels, which selectors match.
    pub labels: BTreeMap<String, String>,
    /// The owner reference marked `controller: true`, if any.
    pub controller: Option<ControllerRef>,
    /// Whether it counts at all ([`plan::is_active`]).
    pub active: bool,
    /// Whether it has a deletion timestamp.
    pub terminating: bool,
    /// Whether the scheduler has bound it to a node.
    pub scheduled: bool,
    pub phase: Phase,
    /// Whether its Ready condition is True.
    pub ready: bool,
    /// When the Ready condition last turned True (if ready).
    pub ready_since: Option<Timestamp>,
    /// `controller.kubernetes.io/pod-deletion-cost`, 0 when absent or malformed.
    pub deletion_cost: i32,
    /// The highest restart count of its containers (ReplicaSet's `maxContainerRestarts`).
    pub restarts: i32,
    pub created: Option<Timestamp>,
}

/// A pod's controlling owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerRef {
    pub owner: OwnerName,
    pub uid: String,
}

impl ObservedPod {
    /// Extracts what the operator reads from `pod`.
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        let controller = meta
            .owner_references
            .iter()
            .flatten()
            .find(|owner| owner.controller == Some(true))
            .map(|owner| ControllerRef {
                owner: OwnerName {
                    kind: owner.kind.clone(),
                    name: owner.name.clone(),
                },
                uid: owner.uid.clone(),
            });
        let phase = match status.and_then(|s| s.phase.as_deref()) {
            Some("Running") => Phase::Running,
            Some("Unknown") => Phase::Unknown,
            _ => Phase::Pending,
        };
        let ready_condition = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"));
        let ready = ready_condition.is_some_and(|c| c.status == "True");
        let ready_since = ready_condition
            .filter(|_| ready)
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|time| time.0);
        let deletion_cost = meta
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(DELETION_COST_ANNOTATION))
            .and_then(|cost| cost.parse().ok())
            .unwrap_or(0);
        let restarts = status
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |statuses| {
                statuses.iter().map(|c| c.restart_count).max().unwrap_or(0)
            });
        Self {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            labels: meta.labels.clone().unwrap_or_default(),
            controller,
            active: plan::is_active(pod),
            terminating: meta.deletion_timestamp.is_some(),
            scheduled: pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|node| !node.is_empty()),
            phase,
            ready,
            ready_since,
            deletion_cost,
            restarts,
            created: meta.creation_timestamp.as_ref().map(|time| time.0),
        }
    }

    /// The facts planning reads, for the PodScaler whose UID is `scaler_uid`.
    pub fn facts(&self, scaler_uid: &str) -> PodFacts {
        let controller = match &self.controller {
            None => PodOwner::Nobody,
            Some(controller) if controller.uid == scaler_uid => PodOwner::This,
            Some(controller) => PodOwner::Other(controller.owner.clone()),
        };
        PodFacts {
            name: self.name.clone(),
            uid: self.uid.clone(),
            controller,
            scheduled: self.scheduled,
            phase: self.phase,
            ready: self.ready,
            ready_since: self.ready_since,
            deletion_cost: self.deletion_cost,
            restarts: self.restarts,
            created: self.created,
        }
    }

    /// The name of the PodScaler that controls the pod, if one does.
    pub fn controlling_podscaler(&self) -> Option<&str> {
        self.controller
            .as_ref()
            .filter(|controller| controller.owner.kind == "PodScaler")
            .map(|controller| controller.owner.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("valid timestamp")
    }

    fn other(kind: &str, name: &str) -> PodOwner {
        PodOwner::Other(OwnerName {
            kind: kind.to_owned(),
            name: name.to_owned(),
        })
    }

    #[test]
    fn facts_are_extracted_from_the_pod() {
        let owner = |uid: &str, controller: bool| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: "web-1".into(),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: None,
        };
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                uid: Some("u".into()),
                creation_timestamp: Some(Time(at(1))),
                annotations: Some(BTreeMap::from([(
                    DELETION_COST_ANNOTATION.to_owned(),
                    "-7".to_owned(),
                )])),
                owner_references: Some(vec![owner("x", false), owner("rs-uid", true)]),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    last_transition_time: Some(Time(at(9))),
                    ..PodCondition::default()
                }]),
                container_statuses: Some(vec![
                    ContainerStatus {
                        restart_count: 2,
                        ..ContainerStatus::default()
                    },
                    ContainerStatus {
                        restart_count: 3,
                        ..ContainerStatus::default()
                    },
                ]),
                ..PodStatus::default()
            }),
        };
        let got = ObservedPod::from_pod(&pod).facts("scaler-uid");
        assert_eq!(
            got,
            PodFacts {
                name: "p".into(),
                uid: "u".into(),
                controller: other("ReplicaSet", "web-1"),
                scheduled: true,
                phase: Phase::Running,
                ready: true,
                ready_since: Some(at(9)),
                deletion_cost: -7,
                restarts: 3,
                created: Some(at(1)),
            }
        );
        assert_eq!(
            ObservedPod::from_pod(&pod).facts("rs-uid").controller,
            PodOwner::This
        );
        let bare = Pod::default();
        let bare_facts = ObservedPod::from_pod(&bare).facts("scaler-uid");
        assert_eq!(bare_facts.controller, PodOwner::Nobody);
        assert_eq!(bare_facts.phase, Phase::Pending);
        assert!(!bare_facts.scheduled && !bare_facts.ready);
    }

    #[test]
    fn only_a_podscaler_controller_is_a_controlling_podscaler() {
        let owned = |kind: &str, controller: bool| {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "ownerReferences": [{
                    "apiVersion": "v1", "kind": kind, "name": "web", "uid": "u",
                    "controller": controller,
                }]},
            }))
            .expect("a valid Pod");
            ObservedPod::from_pod(&pod)
        };
        assert_eq!(
            owned("PodScaler", true).controlling_podscaler(),
            Some("web")
        );
        assert_eq!(owned("PodScaler", false).controlling_podscaler(), None);
        assert_eq!(owned("ReplicaSet", true).controlling_podscaler(), None);
    }
}
