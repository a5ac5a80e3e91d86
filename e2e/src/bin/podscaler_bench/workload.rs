//! What the benchmark scales: a PodScaler or its equivalent ReplicaSet (same selector, same pod
//! template), each in a namespace of its own on the same cluster, and bare pods for the raw
//! limit of the API server.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use podscaler::api::PodScaler;
use serde_json::{Value, json};

use crate::timeline::PodWatch;

/// The label every benchmark pod carries; its value names the trial.
pub const LABEL: &str = "bench";

/// How long pods of a finished trial may take to go.
const CLEANUP: Duration = Duration::from_secs(300);

/// Which controller makes the pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    PodScaler,
    ReplicaSet,
}

impl System {
    /// Both, in the order trials interleave them.
    pub const BOTH: [System; 2] = [System::PodScaler, System::ReplicaSet];

    /// The namespace its trials run in.
    pub fn namespace(self) -> &'static str {
        match self {
            Self::PodScaler => "bench-podscaler",
            Self::ReplicaSet => "bench-replicaset",
        }
    }
}

/// The pod template both systems use: one container, as a small real workload has.
fn template(trial: &str) -> Value {
    json!({
        "metadata": {"labels": {LABEL: trial}},
        "spec": {"containers": [{
            "name": "app",
            "image": "nginx:1.27",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
        }]}
    })
}

/// One controller object, named after its trial.
pub struct Owner {
    client: Client,
    system: System,
    name: String,
}

impl Owner {
    /// Creates the PodScaler or ReplicaSet of `trial` asking for `count` pods.
    pub async fn create(
        client: &Client,
        system: System,
        trial: &str,
        count: i32,
    ) -> anyhow::Result<Self> {
        let namespace = system.namespace();
        let create = PostParams::default();
        match system {
            System::PodScaler => {
                let scaler: PodScaler = serde_json::from_value(json!({
                    "apiVersion": "scaling.example.com/v1",
                    "kind": "PodScaler",
                    "metadata": {"name": trial},
                    "spec": {"count": count, "selector": {LABEL: trial}, "template": template(trial)},
                }))?;
                Api::<PodScaler>::namespaced(client.clone(), namespace)
                    .create(&create, &scaler)
                    .await
                    .with_context(|| format!("creating PodScaler {trial}"))?;
            }
            System::ReplicaSet => {
                let replica_set: ReplicaSet = serde_json::from_value(json!({
                    "metadata": {"name": trial},
                    "spec": {
                        "replicas": count,
                        "selector": {"matchLabels": {LABEL: trial}},
                        "template": template(trial),
                    },
                }))?;
                Api::<ReplicaSet>::namespaced(client.clone(), namespace)
                    .create(&create, &replica_set)
                    .await
                    .with_context(|| format!("creating ReplicaSet {trial}"))?;
            }
        }
        Ok(Self {
            client: client.clone(),
            system,
            name: trial.to_owned(),
        })
    }

    /// Changes the pod template (an annotation), as a rollout of a new config does: an edit
    /// that is not a change of `count`.
    pub async fn edit_template(&self, revision: usize) -> anyhow::Result<()> {
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {
            "bench/revision": revision.to_string()
        }}}}});
        let params = PatchParams::default();
        let namespace = self.system.namespace();
        match self.system {
            System::PodScaler => Api::<PodScaler>::namespaced(self.client.clone(), namespace)
                .patch(&self.name, &params, &Patch::Merge(&patch))
                .await
                .map(drop),
            System::ReplicaSet => Api::<ReplicaSet>::namespaced(self.client.clone(), namespace)
                .patch(&self.name, &params, &Patch::Merge(&patch))
                .await
                .map(drop),
        }
        .with_context(|| format!("editing {}", self.name))
    }

    /// Deletes the object, then its pods at once (grace period 0, rather than waiting for the
    /// garbage collector), and waits until `watch` sees none left.
    pub async fn remove(self, watch: &mut PodWatch) -> anyhow::Result<()> {
        let namespace = self.system.namespace();
        let params = DeleteParams::background();
        match self.system {
            System::PodScaler => Api::<PodScaler>::namespaced(self.client.clone(), namespace)
                .delete(&self.name, &params)
                .await
                .map(drop),
            System::ReplicaSet => Api::<ReplicaSet>::namespaced(self.client.clone(), namespace)
                .delete(&self.name, &params)
                .await
                .map(drop),
        }
        .with_context(|| format!("deleting {}", self.name))?;
        delete_pods(&self.client, namespace, &self.name).await?;
        watch.until_empty(CLEANUP).await
    }
}

/// Deletes every pod of `trial` in `namespace` at once.
pub async fn delete_pods(client: &Client, namespace: &str, trial: &str) -> anyhow::Result<()> {
    Api::<Pod>::namespaced(client.clone(), namespace)
        .delete_collection(
            &DeleteParams::default().grace_period(0),
            &ListParams::default().labels(&selector(trial)),
        )
        .await
        .with_context(|| format!("deleting the pods of {trial}"))?;
    Ok(())
}

/// The label selector of `trial`'s pods.
pub fn selector(trial: &str) -> String {
    format!("{LABEL}={trial}")
}

/// A bare pod of `trial` (no controller), for the raw limit.
pub fn bare_pod(trial: &str, index: usize) -> anyhow::Result<Pod> {
    let mut pod = template(trial);
    pod["metadata"]["name"] = json!(format!("{trial}-{index}"));
    serde_json::from_value(pod).context("building a bare pod")
}
