//! P1 (latency to the first pod and to `count` Running), P2 (0 → N: all created, all Running,
//! next to the raw limit of parallel creates) and the API calls of one 0 → N run.

use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::request_counts::RequestCounts;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};

use crate::timeline::{PodWatch, Timeline};
use crate::workload::{self, Owner, System};

/// The milestones of one trial.
#[derive(Clone, Copy, Debug)]
pub struct Milestones {
    /// When the owner's create call was answered: the API server's own share of the time to
    /// the first pod (None for the benchmark's bare pods, which have no owner).
    pub owner_stored: Option<Duration>,
    pub first_created: Duration,
    pub all_created: Duration,
    pub all_running: Duration,
}

impl Milestones {
    fn of(timeline: &Timeline, owner_stored: Option<Duration>) -> anyhow::Result<Self> {
        Ok(Self {
            owner_stored,
            first_created: timeline.first_created.context("no pod was seen")?,
            all_created: timeline.all_created.context("not all pods were seen")?,
            all_running: timeline.all_running.context("not all pods ran")?,
        })
    }
}

/// Requests the API server served, and those the operator made, during one run.
#[derive(Clone, Debug, Default)]
pub struct ApiCalls {
    /// `apiserver_request_total` by verb, resource and subresource: every client (the controller, the
    /// scheduler binding, kwok's status updates, the benchmark's own watch).
    pub apiserver: RequestCounts,
    /// The operator's `rest_client_requests_total` by method and code (PodScaler runs only).
    pub operator: Option<RequestCounts>,
}

/// Reads the counters [`ApiCalls`] subtracts.
pub struct ApiMeter<'a> {
    client: &'a Client,
    operator: Option<&'a e2e::product::Operator>,
}

impl<'a> ApiMeter<'a> {
    pub fn new(client: &'a Client, operator: Option<&'a e2e::product::Operator>) -> Self {
        Self { client, operator }
    }

    async fn read(&self) -> anyhow::Result<ApiCalls> {
        let request = http::Request::get("/metrics").body(Vec::new())?;
        let page = self
            .client
            .request_text(request)
            .await
            .context("reading the API server's /metrics")?;
        let apiserver = RequestCounts::parse(
            &page,
            "apiserver_request_total",
            &["verb", "resource", "subresource"],
        );
        let operator = match self.operator {
            Some(operator) => Some(RequestCounts::parse(
                &operator.metrics().await?,
                "rest_client_requests_total",
                &["method", "code"],
            )),
            None => None,
        };
        Ok(ApiCalls {
            apiserver,
            operator,
        })
    }
}

/// Scales a new `system` object named `trial` from 0 to `count`, then removes it and its pods.
/// With a `meter`, also returns the API calls between the create call and all Running.
pub async fn scale_up(
    client: &Client,
    system: System,
    trial: &str,
    count: usize,
    timeout: Duration,
    meter: Option<&ApiMeter<'_>>,
) -> anyhow::Result<(Milestones, Option<ApiCalls>)> {
    let namespace = system.namespace();
    let mut watch = PodWatch::start(client, namespace, &workload::selector(trial)).await?;
    let before = match meter {
        Some(meter) => Some(meter.read().await?),
        None => None,
    };
    let replicas = i32::try_from(count).context("count fits an i32")?;
    let started = Instant::now();
    let owner = Owner::create(client, system, trial, replicas).await?;
    let owner_stored = started.elapsed();
    let mut timeline = Timeline::new(started, count);
    let followed = watch
        .follow(&mut timeline, timeout)
        .await
        .with_context(|| format!("{system:?} {trial}: 0 → {count}"));
    let calls = match (meter, before) {
        (Some(meter), Some(before)) if followed.is_ok() => {
            let after = meter.read().await?;
            Some(ApiCalls {
                apiserver: after.apiserver.since(&before.apiserver),
                operator: after
                    .operator
                    .zip(before.operator)
                    .map(|(after, before)| after.since(&before)),
            })
        }
        _ => None,
    };
    owner.remove(&mut watch).await?;
    followed?;
    Ok((Milestones::of(&timeline, Some(owner_stored))?, calls))
}

/// The benchmark's own creates of `count` bare pods, `in_flight` at a time, in the
/// PodScaler's namespace: what the API server, scheduler and kwok allow without a controller.
pub async fn raw_creates(
    client: &Client,
    trial: &str,
    count: usize,
    in_flight: usize,
    timeout: Duration,
) -> anyhow::Result<Milestones> {
    let namespace = System::PodScaler.namespace();
    let mut watch = PodWatch::start(client, namespace, &workload::selector(trial)).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let bodies = (0..count)
        .map(|index| workload::bare_pod(trial, index))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    let params = PostParams::default();
    let created = futures::stream::iter(bodies.iter().map(|pod| {
        let (pods, params) = (&pods, &params);
        async move { pods.create(params, pod).await.map(drop) }
    }))
    .buffer_unordered(in_flight)
    .try_collect::<Vec<()>>()
    .await
    .with_context(|| format!("creating {count} bare pods"));
    let mut timeline = Timeline::new(started, count);
    let followed = match created {
        Ok(_) => watch.follow(&mut timeline, timeout).await,
        Err(error) => Err(error),
    };
    workload::delete_pods(client, namespace, trial).await?;
    watch.until_empty(timeout).await?;
    followed?;
    Milestones::of(&timeline, None)
}
