//! What of a pod the operator keeps in its cache: only the fields a reconcile reads (the
//! facts of [`crate::plan::PodFacts`], the selector's labels, the owners and what the pod
//! events wake), so that 10,000 pods cost a few megabytes rather than a full copy of every
//! pod's spec and status.

use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodSpec, PodStatus};

use crate::plan::DELETION_COST_ANNOTATION;

/// The pod condition [`crate::plan::PodFacts`] reads.
const READY: &str = "Ready";

/// Drops from `pod` every field no reconcile reads. Kept: the identity (name, namespace, uid,
/// resourceVersion), labels, owner references, creation and deletion timestamps, the
/// deletion-cost annotation, the node name, the phase, the Ready condition and each
/// container's restart count.
pub fn keep_what_reconciles_read(pod: &mut Pod) {
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.finalizers = None;
    meta.generate_name = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.retain(|key, _| key == DELETION_COST_ANNOTATION);
    }
    if meta
        .annotations
        .as_ref()
        .is_some_and(|kept| kept.is_empty())
    {
        meta.annotations = None;
    }

    pod.spec = pod.spec.take().map(|spec| PodSpec {
        node_name: spec.node_name,
        ..PodSpec::default()
    });
    pod.status = pod.status.take().map(|status| PodStatus {
        phase: status.phase,
        conditions: status.conditions.map(|conditions| {
            conditions
                .into_iter()
                .filter(|condition| condition.type_ == READY)
                .map(|condition| PodCondition {
                    type_: condition.type_,
                    status: condition.status,
                    last_transition_time: condition.last_transition_time,
                    ..PodCondition::default()
                })
                .collect()
        }),
        container_statuses: status.container_statuses.map(|containers| {
            containers
                .into_iter()
                .map(|container| ContainerStatus {
                    name: container.name,
                    restart_count: container.restart_count,
                    ..ContainerStatus::default()
                })
                .collect()
        }),
        ..PodStatus::default()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PodFacts;
    use serde_json::json;

    fn full_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "web-1", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
                "generateName": "web-",
                "labels": {"app": "web"},
                "annotations": {
                    "controller.kubernetes.io/pod-deletion-cost": "5",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}",
                },
                "ownerReferences": [{"apiVersion": "scaling.example.com/v1", "kind": "PodScaler",
                                     "name": "web", "uid": "s1", "controller": true}],
                "creationTimestamp": "2026-12-01T10:00:00Z",
                "deletionTimestamp": "2026-12-01T11:00:00Z",
                "finalizers": ["example.com/f"],
                "managedFields": [{"manager": "kubelet", "operation": "Update"}],
            },
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "app", "image": "nginx", "env": [{"name": "A", "value": "b"}]}],
            },
            "status": {
                "phase": "Running",
                "podIP": "10.0.0.1",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True",
                     "lastTransitionTime": "2026-12-01T10:01:00Z", "message": "ok"},
                ],
                "containerStatuses": [{"name": "app", "image": "nginx", "imageID": "sha",
                                        "ready": true, "restartCount": 3}],
            },
        }))
        .expect("a valid Pod")
    }

    #[test]
    fn what_a_reconcile_reads_survives_the_slimming() {
        let full = full_pod();
        let mut slim = full.clone();
        keep_what_reconciles_read(&mut slim);
        for scaler_uid in ["s1", "other"] {
            assert_eq!(
                PodFacts::from_pod(&slim, scaler_uid),
                PodFacts::from_pod(&full, scaler_uid)
            );
        }
        assert_eq!(crate::plan::is_active(&slim), crate::plan::is_active(&full));
        assert_eq!(slim.metadata.labels, full.metadata.labels);
        assert_eq!(slim.metadata.uid, full.metadata.uid);
        assert_eq!(
            slim.metadata.resource_version,
            full.metadata.resource_version
        );
    }

    #[test]
    fn the_rest_is_dropped() {
        let mut pod = full_pod();
        keep_what_reconciles_read(&mut pod);
        let meta = &pod.metadata;
        assert!(meta.managed_fields.is_none() && meta.finalizers.is_none());
        assert_eq!(
            meta.annotations.as_ref().map(|kept| kept.len()),
            Some(1),
            "only the deletion cost"
        );
        let spec = pod.spec.as_ref().expect("the spec's node name");
        assert!(spec.containers.is_empty());
        let status = pod.status.as_ref().expect("the status's phase");
        assert!(status.pod_ip.is_none());
        assert_eq!(status.conditions.as_ref().map(Vec::len), Some(1));
        let container = &status.container_statuses.as_ref().expect("restart counts")[0];
        assert!(container.image.is_empty() && !container.ready);

        let mut bare: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "annotations": {"other": "x"}},
        }))
        .expect("a valid Pod");
        keep_what_reconciles_read(&mut bare);
        assert!(bare.metadata.annotations.is_none());
        assert!(bare.spec.is_none() && bare.status.is_none());
    }
}
