//! When each part of the control plane is ready, told by what it answers (etcd's `/health`,
//! kube-apiserver's `/readyz`) or, for the components that answer nothing, by the objects they
//! make: nodes Ready with a heartbeat Lease, a namespace's `default` ServiceAccount, a probe
//! pod bound and Running.

use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::local_http;
use crate::process::Process;
use crate::wait;

/// How long each component may take to become ready.
pub(crate) const COMPONENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The namespace of the pod that proves the cluster runs pods; deleted once it did.
pub const PROBE_NAMESPACE: &str = "e2e-probe";

pub(crate) async fn wait_for_etcd(etcd: &mut Process, port: u16) -> anyhow::Result<()> {
    wait::until("etcd to report healthy", COMPONENT_TIMEOUT, || {
        let exited = etcd.check_running();
        async move {
            if let Err(exited) = exited {
                return Err(exited.context("etcd stopped"));
            }
            let (_, body) = local_http::get(port, "/health").await?;
            anyhow::ensure!(body.contains("\"health\":\"true\""), "health: {body}");
            Ok(())
        }
    })
    .await
}

pub(crate) async fn wait_for_apiserver(
    apiserver: &mut Process,
    client: &Client,
) -> anyhow::Result<()> {
    wait::until("kube-apiserver /readyz", COMPONENT_TIMEOUT, || {
        let exited = apiserver.check_running();
        async move {
            if let Err(exited) = exited {
                return Err(exited.context("kube-apiserver stopped"));
            }
            let request = http::Request::get("/readyz").body(Vec::new())?;
            let body = client.request_text(request).await?;
            anyhow::ensure!(body.trim() == "ok", "readyz: {body}");
            Ok(())
        }
    })
    .await
}

/// Every registered node Ready, each with a heartbeat Lease in `kube-node-lease` (kwok renews
/// one per node, see [`super::kwok::start`]).
pub(crate) async fn wait_for_kwok_nodes(client: &Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    wait::until("kwok nodes to be Ready", COMPONENT_TIMEOUT, || async {
        let list = nodes.list(&Default::default()).await?;
        let ready = list.items.iter().filter(|node| node_ready(node)).count();
        anyhow::ensure!(
            ready == list.items.len(),
            "{ready} of {} nodes Ready",
            list.items.len()
        );
        for node in &list.items {
            let name = node.name_any();
            anyhow::ensure!(
                leases.get_opt(&name).await?.is_some(),
                "node {name} has no heartbeat Lease yet"
            );
        }
        Ok(())
    })
    .await
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// Creates namespace `name` unless it exists, and waits for its `default` ServiceAccount
/// (pods cannot be created before the controller-manager made it).
pub async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(error) => return Err(error).with_context(|| format!("creating namespace {name}")),
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait::until(
        &format!("the default ServiceAccount in {name}"),
        COMPONENT_TIMEOUT,
        || async { accounts.get("default").await.map(drop).map_err(Into::into) },
    )
    .await
}

/// A pod in [`PROBE_NAMESPACE`] that the scheduler binds and the node runs: what proves the
/// cluster runs pods.
pub(crate) async fn run_probe_pod(client: &Client) -> anyhow::Result<()> {
    ensure_namespace(client, PROBE_NAMESPACE).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), PROBE_NAMESPACE);
    let probe: Pod = serde_json::from_value(json!({
        "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "probe", "image": "probe"}]}
    }))?;
    pods.create(&PostParams::default(), &probe)
        .await
        .context("creating the probe pod")?;
    wait::until("the probe pod to run", COMPONENT_TIMEOUT, || async {
        let pod = pods.get("probe").await?;
        let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
        anyhow::ensure!(phase == "Running", "phase {phase:?}");
        Ok(())
    })
    .await
}

/// Deletes the probe pod (at once: grace period 0) and its namespace, so a user of the
/// cluster finds only what they made. Does not wait for the namespace to be gone: nothing
/// here depends on that, and the namespace controller's few seconds would be added to every
/// start.
pub(crate) async fn delete_probe(client: &Client) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), PROBE_NAMESPACE);
    pods.delete("probe", &DeleteParams::default().grace_period(0))
        .await
        .context("deleting the probe pod")?;
    Api::<Namespace>::all(client.clone())
        .delete(PROBE_NAMESPACE, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting namespace {PROBE_NAMESPACE}"))?;
    Ok(())
}
