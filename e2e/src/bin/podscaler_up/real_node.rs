//! `podscaler-up --real-node`: PodScaler the way it runs in production — the Helm chart's
//! Deployments in real pods, the webhook called through its Service, certificates from
//! cert-manager — on the e2e suite's real-node tier (control plane, containerd and a kubelet in
//! a network namespace of this process's own).

use anyhow::Context;
use e2e::node::footprint::Footprint;
use e2e::node::stack::{RELEASE_NAMESPACE, Stack, pause_sample};
use e2e::{observe, wait};

use super::CONVERGE;

/// Where the sample goes.
const DEMO_NAMESPACE: &str = "podscaler-demo";
const SAMPLE: &str = "example-podscaler";
const SAMPLE_PODS: usize = 4;

/// Brings the tier up, installs the chart with its defaults, runs a sample and prints how to
/// reach it; then waits (Ctrl-C drops the stack, which tears everything down).
pub async fn run(footprint: Footprint) -> anyhow::Result<()> {
    tracing::info!("building the binaries and images, starting the control plane and the node");
    let stack = Stack::start(footprint).await?;
    tracing::info!("helm install of charts/podscaler into {RELEASE_NAMESPACE} (--wait)");
    stack.install_chart(&[]).await?;
    let kubectl = &stack.kubectl;
    kubectl
        .run_with_input(
            &["apply", "-f", "-"],
            Some(&format!(
                r#"{{"apiVersion": "v1", "kind": "Namespace", "metadata": {{"name": "{DEMO_NAMESPACE}"}}}}"#
            )),
        )
        .await?;
    tracing::info!("applying a sample PodScaler in namespace {DEMO_NAMESPACE}");
    kubectl
        .run_with_input(
            &["-n", DEMO_NAMESPACE, "apply", "-f", "-"],
            Some(&pause_sample(SAMPLE, SAMPLE_PODS as i32)),
        )
        .await
        .context("applying the sample")?;
    let client = stack.node.client();
    wait::until(
        &format!("the sample's {SAMPLE_PODS} pods to run"),
        CONVERGE,
        || async {
            let pods =
                observe::active_pods(&client, DEMO_NAMESPACE, &format!("app={SAMPLE}")).await?;
            let running = pods.iter().filter(|pod| observe::is_running(pod)).count();
            anyhow::ensure!(running == SAMPLE_PODS, "{running} of {SAMPLE_PODS} running");
            Ok(())
        },
    )
    .await?;
    println!(
        "{}",
        kubectl.run(&["get", "pods", "-A", "-o", "wide"]).await?
    );
    print!("{}", summary(&stack));
    std::future::pending::<()>().await;
    Ok(())
}

/// How to reach the tier from another shell: everything is inside the network namespace.
fn summary(stack: &Stack) -> String {
    let enter = format!("nsenter --net=/run/netns/{}", stack.node.netns_name());
    let kubeconfig = stack.node.kubeconfig().display();
    format!(
        "The cluster lives in network namespace {netns}; from another shell (as root):\n\
         \x20 {enter} kubectl --kubeconfig {kubeconfig} -n {DEMO_NAMESPACE} scale podscaler {SAMPLE} --replicas=6\n\
         \x20 {enter} kubectl --kubeconfig {kubeconfig} -n {RELEASE_NAMESPACE} logs deploy/podscaler-operator\n\
         \x20 {enter} kubectl --kubeconfig {kubeconfig} get --raw /metrics | grep apiserver_admission_webhook_request_total\n\
         Component logs: {dir}/*.log\n\n\
         Ctrl-C stops everything and removes the pods, mounts, cgroups and the namespace.\n",
        netns = stack.node.netns_name(),
        dir = stack.node.dir().display(),
    )
}
