//! kwok: fake nodes that run pods (they turn Running without a container), for the tier
//! without a real node. Its process, and the nodes it is told to manage.

use std::path::Path;

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

use super::free_port;
use crate::binaries::ControlPlane;
use crate::process::Process;

/// The annotation kwok is told to manage nodes by.
const MANAGED_BY_KWOK: &str = "kwok.x-k8s.io/node";

/// Starts kwok against the API server of `kubeconfig`, managing the nodes
/// [`register_nodes`] creates.
pub(crate) fn start(
    binaries: &ControlPlane,
    root: &Path,
    kubeconfig: &Path,
) -> anyhow::Result<Process> {
    // kwok's built-in stages (node heartbeat, pod ready, pod deletion) are used when the
    // config names none; an explicit empty file keeps ~/.kwok out of the test.
    let config = root.join("kwok.yaml");
    std::fs::write(&config, "").context("writing the kwok config")?;
    Process::spawn(
        "kwok",
        &binaries.path("kwok"),
        &[
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--config={}", config.display()),
            "--manage-all-nodes=false".to_owned(),
            format!("--manage-nodes-with-annotation-selector={MANAGED_BY_KWOK}=fake"),
            "--cidr=10.244.0.1/16".to_owned(),
            // Heartbeats by node Lease (renewed every 10 s), as a kubelet sends them.
            // Without it the only heartbeat is kwok's node-status patch, seen here ~55 s
            // apart on a busy machine: past the controller-manager's 50 s grace period,
            // nodes flapped NotReady and every pod on them turned unready mid-test.
            "--node-lease-duration-seconds=40".to_owned(),
            format!("--server-address=127.0.0.1:{}", free_port()?),
        ],
        &[],
        root,
    )
}

/// Registers `count` nodes (`kwok-node-0` …) for kwok to run pods on, each with room for 250.
pub(crate) async fn register_nodes(client: &Client, count: usize) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for index in 0..count {
        let name = format!("kwok-node-{index}");
        nodes
            .create(&PostParams::default(), &fake_node(&name)?)
            .await
            .with_context(|| format!("registering node {name}"))?;
    }
    Ok(())
}

fn fake_node(name: &str) -> anyhow::Result<Node> {
    Ok(serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "annotations": {MANAGED_BY_KWOK: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
        },
        "status": {
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"},
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"},
        }
    }))?)
}
