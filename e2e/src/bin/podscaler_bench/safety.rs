//! P3: the most active matching pods above `count` at any instant, from a watch of every pod
//! event (`ActiveCountRecorder`): during a scale-up, during churn (pods deleted under the
//! controller), and while the object is edited during a scale-up.

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::observe::{self, ActiveCountRecorder};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams};

use crate::timeline::{PodWatch, Timeline};
use crate::workload::{self, Owner, System};

/// How many pods above `count` each scenario saw at most.
#[derive(Clone, Copy, Debug, Default)]
pub struct Overshoot {
    pub scale_up: usize,
    pub churn: usize,
    pub edited: usize,
}

/// The sizes of the P3 scenarios.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    /// Pods to scale to.
    pub count: usize,
    /// Pods deleted at once in a churn round.
    pub churn_pods: usize,
    pub churn_rounds: usize,
}

/// Runs every P3 scenario against `system`.
pub async fn overshoot(
    client: &Client,
    system: System,
    sizes: Sizes,
    timeout: Duration,
) -> anyhow::Result<Overshoot> {
    let (scale_up, churn) = scale_up_then_churn(client, system, sizes, timeout).await?;
    let edited = edited_during_scale_up(client, system, sizes.count, timeout).await?;
    Ok(Overshoot {
        scale_up,
        churn,
        edited,
    })
}

/// 0 → count, then rounds of deleting `churn_pods` pods at once and waiting for the
/// replacements; the overshoot of each phase.
async fn scale_up_then_churn(
    client: &Client,
    system: System,
    sizes: Sizes,
    timeout: Duration,
) -> anyhow::Result<(usize, usize)> {
    let trial = "p3-churn";
    let selector = workload::selector(trial);
    let namespace = system.namespace();
    let mut recorder = ActiveCountRecorder::start(client, namespace, &selector).await?;
    let mut watch = PodWatch::start(client, namespace, &selector).await?;
    let scale_mark = recorder.mark();
    let owner = Owner::create(client, system, trial, replicas(sizes.count)?).await?;
    let mut timeline = Timeline::new(Instant::now(), sizes.count);
    watch.follow(&mut timeline, timeout).await?;
    let scale_up = above(recorder.max_since(scale_mark), sizes.count);

    let churn_mark = recorder.mark();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    for round in 0..sizes.churn_rounds {
        let deleted = delete_some(&pods, &selector, sizes.churn_pods)
            .await
            .with_context(|| format!("churn round {round}"))?;
        let count = sizes.count;
        // Settled when the deleted pods are gone, their replacements are active and nothing
        // else is terminating.
        tokio::time::timeout(timeout, async {
            watch.until_gone(&deleted, timeout).await?;
            recorder.wait_for(|active| active >= count).await?;
            watch.until_present(count, timeout).await
        })
        .await
        .map_err(|_| anyhow::anyhow!("churn round {round} did not converge in {timeout:?}"))??;
    }
    let churn = above(recorder.max_since(churn_mark), sizes.count);
    owner.remove(&mut watch).await?;
    Ok((scale_up, churn))
}

/// 0 → count with the template edited at a quarter, half and three quarters of the way.
async fn edited_during_scale_up(
    client: &Client,
    system: System,
    count: usize,
    timeout: Duration,
) -> anyhow::Result<usize> {
    let trial = "p3-edit";
    let selector = workload::selector(trial);
    let namespace = system.namespace();
    let mut recorder = ActiveCountRecorder::start(client, namespace, &selector).await?;
    let mut watch = PodWatch::start(client, namespace, &selector).await?;
    let mark = recorder.mark();
    let owner = Owner::create(client, system, trial, replicas(count)?).await?;
    let started = Instant::now();
    for (revision, quarter) in (1..=3).enumerate() {
        let reached = count * quarter / 4;
        tokio::time::timeout(timeout, recorder.wait_for(|active| active >= reached))
            .await
            .map_err(|_| anyhow::anyhow!("{reached} pods not reached in {timeout:?}"))??;
        owner.edit_template(revision + 1).await?;
    }
    let mut timeline = Timeline::new(started, count);
    watch.follow(&mut timeline, timeout).await?;
    let edited = above(recorder.max_since(mark), count);
    owner.remove(&mut watch).await?;
    Ok(edited)
}

/// Deletes `how_many` active pods (normal grace period, as a user or an eviction would): the
/// first by uid, which is random. Returns their uids.
async fn delete_some(
    pods: &Api<Pod>,
    selector: &str,
    how_many: usize,
) -> anyhow::Result<Vec<String>> {
    let list = pods
        .list(&kube::api::ListParams::default().labels(selector))
        .await
        .context("listing the pods to delete")?;
    let mut active: Vec<Pod> = list.items.into_iter().filter(observe::is_active).collect();
    active.sort_by(|a, b| a.metadata.uid.cmp(&b.metadata.uid));
    active.truncate(how_many);
    let params = DeleteParams::default();
    futures::future::try_join_all(
        active
            .iter()
            .filter_map(|pod| pod.metadata.name.as_deref())
            .map(|name| pods.delete(name, &params)),
    )
    .await
    .context("deleting pods")?;
    Ok(active
        .into_iter()
        .filter_map(|pod| pod.metadata.uid)
        .collect())
}

fn above(max: Option<usize>, count: usize) -> usize {
    max.unwrap_or(0).saturating_sub(count)
}

fn replicas(count: usize) -> anyhow::Result<i32> {
    i32::try_from(count).context("count fits an i32")
}
