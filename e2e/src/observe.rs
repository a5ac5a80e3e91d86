//! Reading the cluster's state the way the assertions need it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use podscaler::api::PodScaler;
use podscaler::cache::backoff::WatchBackoff;
use podscaler::cache::relisting::relisting_watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Whether a pod counts as PodScaler counts it: not terminating, not Succeeded/Failed.
pub fn is_active(pod: &Pod) -> bool {
    podscaler::plan::is_active(pod)
}

/// Whether a pod is Running on a node.
pub fn is_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        && pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some()
}

/// Active pods in `namespace` matching the label `selector` (`app=nginx`).
pub async fn active_pods(
    client: &Client,
    namespace: &str,
    selector: &str,
) -> anyhow::Result<Vec<Pod>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods.list(&ListParams::default().labels(selector)).await?;
    Ok(list.items.into_iter().filter(is_active).collect())
}

/// Whether `pod` is controlled by the PodScaler with `uid`.
pub fn controlled_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.controller == Some(true) && owner.uid == uid)
}

/// The kind of a pod's controller, if any.
pub fn controller_kind(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| owner.kind.as_str())
}

/// A PodScaler as stored.
pub async fn scaler(client: &Client, namespace: &str, name: &str) -> anyhow::Result<PodScaler> {
    Ok(Api::<PodScaler>::namespaced(client.clone(), namespace)
        .get(name)
        .await?)
}

/// The value of one sample in a Prometheus text page, e.g.
/// `sample(page, "podscaler_desired_pods", &[("name", "web")])`.
pub fn sample(page: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(page, metric, labels).next()
}

/// The sum of every sample of `metric` whose labels include `labels` (0 when there is none),
/// e.g. every `result` of `controller_runtime_reconcile_total`.
pub fn sum(page: &str, metric: &str, labels: &[(&str, &str)]) -> f64 {
    samples(page, metric, labels).sum()
}

fn samples<'a>(
    page: &'a str,
    metric: &'a str,
    labels: &'a [(&'a str, &'a str)],
) -> impl Iterator<Item = f64> + 'a {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(move |(series, _)| {
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            name == metric
                && labels
                    .iter()
                    .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")))
        })
        .filter_map(|(_, value)| value.parse().ok())
}

/// Checks that a binary's `/metrics` page carries the standard process metrics, with values
/// a running process has.
pub fn ensure_process_metrics(page: &str) -> anyhow::Result<()> {
    let value = |metric| sample(page, metric, &[]);
    let resident = value("process_resident_memory_bytes");
    let started = value("process_start_time_seconds");
    let cpu = value("process_cpu_seconds_total");
    let open = value("process_open_fds");
    anyhow::ensure!(
        resident.is_some_and(|bytes| bytes > 0.0)
            && started.is_some_and(|seconds| seconds > 0.0)
            && cpu.is_some_and(|seconds| seconds >= 0.0)
            && open.is_some_and(|fds| fds > 0.0),
        "process metrics: resident {resident:?}, start {started:?}, cpu {cpu:?}, fds {open:?}"
    );
    Ok(())
}

/// Records, at every pod watch event, how many active pods match a selector: the exact
/// history the API server went through (between relists), to check bounds on it. It keeps
/// recording across an API server restart: after a watch error it relists.
pub struct ActiveCountRecorder {
    history: Arc<Mutex<Vec<usize>>>,
    current: watch::Receiver<usize>,
    task: JoinHandle<()>,
}

impl ActiveCountRecorder {
    /// Starts watching; returns once the initial list is in.
    pub async fn start(client: &Client, namespace: &str, selector: &str) -> anyhow::Result<Self> {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let history = Arc::new(Mutex::new(Vec::new()));
        let (sender, current) = watch::channel(0);
        let (initialised_tx, initialised) = tokio::sync::oneshot::channel();
        let record = Arc::clone(&history);
        let config = watcher::Config::default().labels(selector);
        let task = tokio::spawn(async move {
            let mut active: HashMap<String, bool> = HashMap::new();
            let mut relisting: HashMap<String, bool> = HashMap::new();
            let mut initialised_tx = Some(initialised_tx);
            // Not kube's bare watcher: it retries a failed watch at once, in a hot loop for as
            // long as an API server is down, and resumes silently. This one pauses (capped at
            // a few seconds) and relists, so the count is current soon after a restart.
            let mut events = std::pin::pin!(relisting_watcher(
                "recorded pods",
                api,
                config,
                WatchBackoff::default()
            ));
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue };
                match event {
                    watcher::Event::Init => relisting.clear(),
                    watcher::Event::InitApply(pod) => {
                        relisting.insert(uid(&pod), is_active(&pod));
                        continue;
                    }
                    watcher::Event::InitDone => {
                        active = std::mem::take(&mut relisting);
                        if let Some(tx) = initialised_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    watcher::Event::Apply(pod) => {
                        active.insert(uid(&pod), is_active(&pod));
                    }
                    watcher::Event::Delete(pod) => {
                        active.remove(&uid(&pod));
                    }
                }
                let count = active.values().filter(|active| **active).count();
                record
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(count);
                let _ = sender.send(count);
            }
        });
        initialised
            .await
            .map_err(|_| anyhow::anyhow!("the pod watch ended before its initial list"))?;
        Ok(Self {
            history,
            current,
            task,
        })
    }

    /// A position in the history, to look at what happened after it.
    pub fn mark(&self) -> usize {
        self.lock().len()
    }

    /// The largest count recorded since `mark`.
    pub fn max_since(&self, mark: usize) -> Option<usize> {
        self.lock()
            .get(mark..)
            .and_then(|slice| slice.iter().copied().max())
    }

    /// The smallest count recorded since `mark`.
    pub fn min_since(&self, mark: usize) -> Option<usize> {
        self.lock()
            .get(mark..)
            .and_then(|slice| slice.iter().copied().min())
    }

    /// Waits (event-driven, no polling) until the count satisfies `condition`; returns it.
    pub async fn wait_for(&mut self, condition: impl Fn(usize) -> bool) -> anyhow::Result<usize> {
        let count = self
            .current
            .wait_for(|count| condition(*count))
            .await
            .map_err(|_| anyhow::anyhow!("the pod watch ended"))?;
        Ok(*count)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ActiveCountRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}
