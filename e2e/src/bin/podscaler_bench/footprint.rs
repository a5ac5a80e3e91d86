//! P4: the operator's memory and CPU over an idle window after it converged on many pods,
//! next to kube-controller-manager's over the same window.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::Cluster;
use e2e::cluster::ensure_namespace;
use e2e::product::Operator;
use e2e::usage::Usage;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use podscaler::api::PodScaler;
use serde_json::json;

use crate::timeline::{PodWatch, Timeline};
use crate::workload::LABEL;

/// The namespace of the P4 objects.
const NAMESPACE: &str = "bench-footprint";

/// How many PodScalers (or their pods) are created or deleted at once.
const CREATES_IN_FLIGHT: usize = 16;

/// One P4 configuration: `scalers` PodScalers of `pods` pods each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub scalers: usize,
    pub pods: usize,
}

impl Shape {
    /// Parses `200x5`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scalers, pods) = text
            .split_once('x')
            .ok_or_else(|| format!("{text:?} is not <scalers>x<pods>"))?;
        let number = |part: &str| {
            part.trim()
                .parse::<usize>()
                .map_err(|error| format!("{part:?} in {text:?}: {error}"))
        };
        Ok(Self {
            scalers: number(scalers)?,
            pods: number(pods)?,
        })
    }

    /// Every pod of the shape.
    pub fn total(self) -> usize {
        self.scalers * self.pods
    }
}

/// What one shape cost.
#[derive(Clone, Copy, Debug)]
pub struct Footprint {
    pub shape: Shape,
    /// From the first create to every pod Running.
    pub converged: Duration,
    pub window: Duration,
    /// The operator at the end of the window.
    pub operator: Usage,
    /// CPU cores the operator used on average over the window.
    pub operator_cores: f64,
    pub controller_manager: Usage,
    pub controller_manager_cores: f64,
}

/// Starts a fresh operator (its peak RSS is this shape's), creates the shape, waits until every
/// pod runs, measures over an idle `window`, then removes everything.
pub async fn measure(
    cluster: &Cluster,
    operator_binary: &Path,
    shape: Shape,
    window: Duration,
    timeout: Duration,
) -> anyhow::Result<Footprint> {
    let client = cluster.client();
    ensure_namespace(&client, NAMESPACE).await?;
    let operator = Operator::launch_binary(
        operator_binary,
        "operator-footprint",
        cluster.kubeconfig(),
        cluster.dir(),
        &[
            format!("--namespace={NAMESPACE}"),
            "--log-level=info".to_owned(),
        ],
    )
    .await?;
    let controller_manager = cluster
        .component_pid("kube-controller-manager")
        .context("the cluster has no kube-controller-manager")?;
    let mut watch = PodWatch::start(&client, NAMESPACE, LABEL).await?;
    let started = Instant::now();
    create_scalers(&client, shape).await?;
    let mut timeline = Timeline::new(started, shape.total());
    let converged = watch.follow(&mut timeline, timeout).await;
    let measured = match converged {
        Ok(()) => {
            let converged = started.elapsed();
            let (operator_before, kcm_before) = (
                Usage::read(operator.pid())?,
                Usage::read(controller_manager)?,
            );
            // The idle window itself: nothing changes, the processes are only watched.
            tokio::time::sleep(window).await;
            let (operator_after, kcm_after) = (
                Usage::read(operator.pid())?,
                Usage::read(controller_manager)?,
            );
            let cores = |after: &Usage, before: &Usage| {
                after.cpu_since(before).as_secs_f64() / window.as_secs_f64()
            };
            Ok(Footprint {
                shape,
                converged,
                window,
                operator_cores: cores(&operator_after, &operator_before),
                operator: operator_after,
                controller_manager_cores: cores(&kcm_after, &kcm_before),
                controller_manager: kcm_after,
            })
        }
        Err(error) => Err(error.context(format!(
            "{}x{}: operator log:\n{}",
            shape.scalers,
            shape.pods,
            operator.log_tail(20)
        ))),
    };
    if let Ok(footprint) = &measured {
        // On stderr at once: removing 10,000 pods takes minutes, and may fail.
        tracing::info!(?footprint, "P4 measured");
    }
    // Stopped first, so nothing recreates the pods deleted next.
    drop(operator);
    remove_all(&client, shape, &mut watch, timeout).await?;
    measured
}

async fn create_scalers(client: &kube::Client, shape: Shape) -> anyhow::Result<()> {
    let api: Api<PodScaler> = Api::namespaced(client.clone(), NAMESPACE);
    let count = i32::try_from(shape.pods).context("pods per PodScaler fit an i32")?;
    let params = PostParams::default();
    futures::stream::iter(0..shape.scalers)
        .map(|index| {
            let (api, params) = (&api, &params);
            async move {
                let name = format!("fp-{index}");
                let scaler: PodScaler = serde_json::from_value(json!({
                    "apiVersion": "scaling.example.com/v1",
                    "kind": "PodScaler",
                    "metadata": {"name": name},
                    "spec": {
                        "count": count,
                        "selector": {LABEL: name},
                        "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}},
                    },
                }))?;
                api.create(params, &scaler)
                    .await
                    .with_context(|| format!("creating PodScaler {name}"))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CREATES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

/// Deletes every pod (grace period 0, a PodScaler's pods per call: one call for 10,000 pods
/// outlived the API server's request timeout), then every PodScaler, and waits until the pods
/// are gone. The PodScalers go last: deleted first, the garbage collector would delete their
/// pods with the default grace period, slower than the calls here.
async fn remove_all(
    client: &kube::Client,
    shape: Shape,
    watch: &mut PodWatch,
    timeout: Duration,
) -> anyhow::Result<()> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let now = DeleteParams::default().grace_period(0);
    futures::stream::iter(0..shape.scalers)
        .map(|index| {
            let (pods, now) = (&pods, &now);
            async move {
                let selector = ListParams::default().labels(&format!("{LABEL}=fp-{index}"));
                pods.delete_collection(now, &selector)
                    .await
                    .with_context(|| format!("deleting the pods of fp-{index}"))
                    .map(drop)
            }
        })
        .buffer_unordered(CREATES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Api::<PodScaler>::namespaced(client.clone(), NAMESPACE)
        .delete_collection(&DeleteParams::background(), &ListParams::default())
        .await
        .context("deleting the PodScalers")?;
    watch.until_empty(timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_as_scalers_by_pods() {
        assert_eq!(
            Shape::parse("1000x10"),
            Ok(Shape {
                scalers: 1000,
                pods: 10
            })
        );
        assert_eq!(Shape::parse("200x5").map(Shape::total), Ok(1000));
        assert!(Shape::parse("200").is_err());
        assert!(Shape::parse("ax5").is_err());
    }
}
