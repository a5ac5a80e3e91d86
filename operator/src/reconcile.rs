//! One reconcile pass for one PodScaler: read the caches, let the pure modules decide
//! ([`plan::decide`] for the count, [`status::compute`] for the status), then do the API
//! calls, record expectations, publish events and write the status. The only I/O of the
//! controller's decisions lives here and in its submodules: [`context`] (state shared by all
//! passes), `pod_calls` (creates and deletes) and `report` (events).

mod context;
mod pod_calls;
mod report;

use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::api::{PodScaler, PodScalerStatus};
use crate::backoff::Gate;
use crate::cache::pods::PodCache;
use crate::expectations::{CacheView, PodRef};
use crate::metrics::ReconcileResult;
use crate::plan::{self, Decision, OwnerName, Plan, PodFacts};
use crate::status::{self, Observation, Progress};
pub use context::Context;
use context::{OwnStatusWrite, lock};
pub(crate) use context::{ref_key, scaler_key};
pub use pod_calls::new_pod;
use pod_calls::{create_pods, delete_pods};
use report::{WARNING, publish};

/// Name the operator reports events and field ownership under.
pub const MANAGER: &str = "podscaler-operator";

/// Why a reconcile failed. Create and delete failures are reported in the status and events
/// first; returning them as errors also counts them in the reconcile error metrics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// PodScalers are namespaced; one without a namespace cannot be reconciled.
    #[error("PodScaler {0} has no namespace")]
    MissingNamespace(String),
    /// Writing the status failed.
    #[error("writing the status of PodScaler {key}: {source}")]
    WriteStatus {
        /// `namespace/name`.
        key: String,
        #[source]
        source: kube::Error,
    },
    /// A pod could not be created or deleted; the status says which and why.
    #[error("PodScaler {key}: {message}")]
    Replicas {
        /// `namespace/name`.
        key: String,
        /// The failure, as written to the `ReplicaFailure` condition.
        message: String,
    },
    /// The pass panicked. Caught so that it fails this pass (and is retried with backoff, as
    /// controller-runtime's `RecoverPanic` does) instead of ending the controller.
    #[error("PodScaler {key}: the reconcile panicked: {message}")]
    Panicked {
        /// `namespace/name`.
        key: String,
        /// The panic's message, when it has one.
        message: String,
    },
}

impl Error {
    /// Whether retrying cannot fix this error, so the PodScaler waits for a change instead:
    /// controller-runtime's terminal error. Only a PodScaler without a namespace is; API
    /// errors, refused creates and deletes, and panics may pass.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::MissingNamespace(_))
    }
}

/// When a PodScaler is looked at again after a pass: its kube-runtime `Action`, kept as its
/// own type because an `Action` does not tell its delay, which the workqueue metrics count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Requeue {
    /// After this delay, or at the next change if that comes first.
    After(Duration),
    /// Only at the next change.
    OnChange,
}

impl From<Requeue> for Action {
    fn from(requeue: Requeue) -> Self {
        match requeue {
            Requeue::After(delay) => Action::requeue(delay),
            Requeue::OnChange => Action::await_change(),
        }
    }
}

/// Knobs of the reconcile loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requeue interval for a PodScaler after a successful pass.
    pub requeue_after: Duration,
}

/// The controller's reconcile function: times and counts the pass around [`reconcile_scaler`],
/// turns a panic into [`Error::Panicked`], and tells the workqueue metrics of the requeue.
/// Everything the pass logs carries the span's `podscaler = "namespace/name"`.
#[tracing::instrument(name = "reconcile", skip_all, fields(podscaler = %scaler_key(&scaler)))]
pub async fn reconcile(scaler: Arc<PodScaler>, ctx: Arc<Context>) -> Result<Action, Error> {
    let timer = ctx.metrics.reconcile_started();
    let result = catch_panic(scaler_key(&scaler), reconcile_scaler(&scaler, &ctx)).await;
    timer.finish(match &result {
        Ok(Requeue::OnChange) => ReconcileResult::Success,
        Ok(Requeue::After(_)) => ReconcileResult::RequeueAfter,
        Err(_) => ReconcileResult::Error,
    });
    match &result {
        Ok(Requeue::After(delay)) => ctx
            .metrics
            .workqueue()
            .requeued(ObjectRef::from_obj(scaler.as_ref()), *delay),
        Ok(Requeue::OnChange) => {}
        Err(Error::Panicked { .. }) => ctx.metrics.reconcile_panicked(),
        Err(error) if error.is_terminal() => ctx.metrics.terminal_error(),
        Err(_) => {}
    }
    result.map(Action::from)
}

/// Runs `pass`, turning a panic into [`Error::Panicked`]. kube-runtime polls reconcile futures
/// inside the controller's own stream, so an uncaught panic would end the controller.
///
/// `AssertUnwindSafe`: what a pass shares with others sits behind mutexes whose poisoning is
/// ignored and whose critical sections leave consistent state; a pass that stops halfway
/// leaves what a pass cancelled at shutdown leaves, which the next pass reads from the caches
/// and the expectations again.
async fn catch_panic<T>(
    key: String,
    pass: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match AssertUnwindSafe(pass).catch_unwind().await {
        Ok(result) => result,
        Err(payload) => Err(Error::Panicked {
            key,
            message: panic_message(payload.as_ref()),
        }),
    }
}

/// The message of a `panic!` (a `&str` or a `String`; anything else has none to show).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|message| (*message).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The controller's error policy: log and retry after the PodScaler's backoff; after a
/// terminal error, wait for the PodScaler to change.
#[tracing::instrument(name = "error_policy", skip_all, fields(podscaler = %scaler_key(&scaler)))]
pub fn error_policy(scaler: Arc<PodScaler>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_terminal() {
        tracing::error!(error = %error, "reconcile failed; not retried until the PodScaler changes");
        return Action::await_change();
    }
    let delay = ctx.error_delay(&scaler);
    ctx.metrics
        .workqueue()
        .requeued(ObjectRef::from_obj(scaler.as_ref()), delay);
    tracing::warn!(error = %error, ?delay, "reconcile failed; backing off");
    Action::requeue(delay)
}

async fn reconcile_scaler(scaler: &PodScaler, ctx: &Context) -> Result<Requeue, Error> {
    let name = scaler.name_any();
    let namespace = scaler
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let key = format!("{namespace}/{name}");
    if scaler.meta().deletion_timestamp.is_some() {
        // Garbage collection removes the pods through their owner references.
        ctx.forget(&namespace, &name);
        return Ok(Requeue::OnChange);
    }

    // A failed pass is retried on its backoff schedule, whatever wakes the PodScaler before
    // then: its own status write, an event of one of its pods, the resync. Only a spec change
    // (a new generation) is looked at at once, since it may be the fix.
    let now = Instant::now();
    if let Gate::Wait(remaining) = lock(&ctx.backoff).gate(&key, scaler.metadata.generation, now) {
        tracing::debug!(?remaining, "backing off after a failed pass");
        return Ok(Requeue::After(remaining));
    }

    // Expectations first, then the pods: the cache only moves forward, so pods read after a
    // satisfied check include every change the check saw observed. Read the other way round,
    // a pod observed between the two reads would be missing from the list and made again.
    let check =
        lock(&ctx.expectations).check(&key, now, |pod| cache_view(&ctx.pods, &namespace, pod));
    let scaler_uid = scaler.uid().unwrap_or_default();
    let pods: Vec<PodFacts> = ctx
        .pods
        .select(&namespace, &scaler.spec.selector)
        .iter()
        .filter(|pod| pod.active)
        .map(|pod| pod.facts(&scaler_uid))
        .collect();
    let present: BTreeSet<OwnerName> = plan::foreign_controllers(&pods).into_keys().collect();
    let spared = {
        let mut fights = lock(&ctx.fights);
        fights.settle(&key, &present, now);
        fights.spared(&key, now)
    };
    let progress = match plan::decide(check, scaler.spec.count, &pods, &spared) {
        Decision::AwaitCache(unobserved) => {
            tracing::debug!(
                creations = unobserved.creations,
                deletions = unobserved.deletions,
                "waiting for the pod cache"
            );
            Progress::AwaitingCache(unobserved)
        }
        Decision::Act { plan, timed_out } => {
            if let Some(unobserved) = timed_out {
                tracing::warn!(
                    creations = unobserved.creations,
                    deletions = unobserved.deletions,
                    "pod changes were never observed; acting on the cache as it is"
                );
            }
            act(scaler, &namespace, &key, plan, ctx).await
        }
    };

    let fights = lock(&ctx.fights).report(&key, Instant::now());
    let observation = Observation {
        generation: scaler.metadata.generation,
        spec: &scaler.spec,
        pods: &pods,
        progress: progress.clone(),
        fights: &fights,
    };
    let previous = scaler.status.as_ref();
    let status = status::compute(previous, &observation, Timestamp::now());
    ctx.metrics
        .set_scaler(&namespace, &name, scaler.spec.count, &status);
    // The cached PodScaler may not show this operator's latest write yet (a pass woken by a
    // pod event can start before that write's watch event arrives, and the event wakes
    // nothing). A status equal to the cached one but not to that write is written again, or
    // the outdated write would stand until the resync.
    let outdated_write = lock(&ctx.own_status_writes)
        .get(&key)
        .is_some_and(|own| own.status != status);
    if previous != Some(&status) || outdated_write {
        write_status(ctx, scaler, &namespace, &name, &status)
            .await
            .map_err(|source| Error::WriteStatus {
                key: key.clone(),
                source,
            })?;
    }
    // After the write: a failed write is retried, and would publish the news again.
    if let Some((reason, note)) = status::contention_news(previous, &status) {
        publish(ctx, scaler, WARNING, &reason, "Reconcile", note).await;
    }

    if let Progress::Acted {
        failure: Some(failure),
    } = progress
    {
        return Err(Error::Replicas {
            key,
            message: failure.message,
        });
    }
    if progress.is_success() {
        lock(&ctx.backoff).reset(&key);
    }
    // Look again when a hold on a fight ends, if that comes before the resync.
    let next_hold_end = lock(&ctx.fights).next_hold_end(&key, Instant::now());
    let requeue = next_hold_end.map_or(ctx.settings.requeue_after, |end| {
        end.min(ctx.settings.requeue_after)
    });
    Ok(Requeue::After(requeue))
}

fn cache_view(pods: &PodCache, namespace: &str, pod: &PodRef) -> CacheView {
    match pods.get(namespace, &pod.name) {
        Some(cached) if cached.uid == pod.uid => {
            if cached.terminating {
                CacheView::Terminating
            } else {
                CacheView::Present
            }
        }
        _ => CacheView::Absent,
    }
}

async fn act(
    scaler: &PodScaler,
    namespace: &str,
    key: &str,
    plan: Plan,
    ctx: &Context,
) -> Progress {
    match plan {
        Plan::Nothing => Progress::Idle,
        Plan::Create(count) => create_pods(scaler, namespace, key, count, ctx).await,
        Plan::Delete(victims) => delete_pods(scaler, namespace, key, victims, ctx).await,
    }
}

async fn write_status(
    ctx: &Context,
    scaler: &PodScaler,
    namespace: &str,
    name: &str,
    status: &PodScalerStatus,
) -> Result<(), kube::Error> {
    let api: Api<PodScaler> = Api::namespaced(ctx.client.clone(), namespace);
    let patch = Patch::Merge(json!({ "status": status }));
    let written = api
        .patch_status(name, &PatchParams::default(), &patch)
        .await?;
    // Only when the object is still the generation this pass computed from: a patch that
    // changed nothing returns the object's current version, which may be a spec change
    // someone made meanwhile (`kubectl scale`), and that change must wake a pass.
    let version = written
        .metadata
        .resource_version
        .filter(|_| written.metadata.generation == scaler.metadata.generation);
    lock(&ctx.own_status_writes).insert(
        format!("{namespace}/{name}"),
        OwnStatusWrite {
            version,
            status: status.clone(),
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests;
