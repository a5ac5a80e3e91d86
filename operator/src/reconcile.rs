//! One reconcile pass for one PodScaler: read the caches, let the pure modules decide, then do
//! the API calls, record expectations, publish events and write the status. The only I/O of
//! the controller's decisions lives here.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt, stream};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::api::{PodScaler, PodScalerStatus, effective_template};
use crate::backoff::{FailureBackoff, Gate};
use crate::cache::pods::PodCache;
use crate::contention::Fights;
use crate::events::{EventRecorder, Occurrence};
use crate::expectations::{CacheView, Check, Expectations, PodRef};
use crate::metrics::{Metrics, ReconcileResult};
use crate::plan::{self, Controller, OwnerName, Plan, PodFacts};
use crate::status::{self, FailedAction, Failure, Observation, Progress};

/// Name the operator reports events and field ownership under.
pub const MANAGER: &str = "podscaler-operator";

/// Concurrent delete calls in one round of deletions. Deletes have no slow start, so this
/// is what bounds a round that fails throughout, and the connections it opens (kube's client
/// speaks HTTP/1.1: one pooled connection per call in flight). Creates have no such cap: each
/// slow-start batch is issued whole (see [`create_batch`]).
const MAX_DELETES_IN_FLIGHT: usize = 32;

/// Pod names listed in one event before the rest is summarised.
const NAMES_PER_EVENT: usize = 10;

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
        /// The API error.
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

/// A status this operator wrote.
#[derive(Debug)]
struct OwnStatusWrite {
    /// The resourceVersion the write produced, when the object was still the generation the
    /// status was computed from.
    version: Option<String>,
    /// What was written.
    status: PodScalerStatus,
}

/// Knobs of the reconcile loop.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requeue interval for a PodScaler after a successful pass.
    pub requeue_after: Duration,
}

/// Everything a reconcile needs, shared by all of them.
pub struct Context {
    client: Client,
    pods: PodCache,
    expectations: Mutex<Expectations>,
    backoff: Mutex<FailureBackoff>,
    fights: Mutex<Fights>,
    /// This operator's latest status write of each PodScaler (`namespace/name`).
    own_status_writes: Mutex<HashMap<String, OwnStatusWrite>>,
    metrics: Metrics,
    recorder: EventRecorder,
    settings: Settings,
}

impl Context {
    /// A context reading pods from `pods` (a cache kept up to date elsewhere).
    pub fn new(
        client: Client,
        pods: PodCache,
        metrics: Metrics,
        expectations: Expectations,
        fights: Fights,
        settings: Settings,
    ) -> Self {
        Self {
            recorder: EventRecorder::new(client.clone(), MANAGER, std::env::var("POD_NAME").ok()),
            client,
            pods,
            expectations: Mutex::new(expectations),
            backoff: Mutex::new(FailureBackoff::default()),
            fights: Mutex::new(fights),
            own_status_writes: Mutex::new(HashMap::new()),
            metrics,
            settings,
        }
    }

    /// Feeds a pod watch event to the expectations. Call it after the pod store applied the
    /// event, so a settled expectation always means the store shows the change. Events of a
    /// re-list (`Init*`) are skipped: the store applies them only at `InitDone`, and
    /// [`Expectations::check`] reads the store itself.
    pub fn observe_pod_event(&self, event: &watcher::Event<Pod>) {
        let (pod, view) = match event {
            watcher::Event::Apply(pod) if pod.metadata.deletion_timestamp.is_some() => {
                (pod, CacheView::Terminating)
            }
            watcher::Event::Apply(pod) => (pod, CacheView::Present),
            watcher::Event::Delete(pod) => (pod, CacheView::Absent),
            // A relist's pods reach the cache only at InitDone, all at once: observing them
            // one by one before that would satisfy expectations the cache does not show yet.
            // The reconciles InitDone triggers check expectations against the new cache.
            watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::InitDone => {
                return;
            }
        };
        if let Some(uid) = pod.metadata.uid.as_deref() {
            lock(&self.expectations).observe(uid, view);
        }
    }

    /// Forgets a PodScaler that no longer exists: its expectations, backoff, fights and
    /// metric series.
    pub fn forget(&self, namespace: &str, name: &str) {
        let key = format!("{namespace}/{name}");
        lock(&self.expectations).forget(&key);
        lock(&self.backoff).reset(&key);
        lock(&self.fights).forget(&key);
        lock(&self.own_status_writes).remove(&key);
        self.recorder
            .forget_object(PodScaler::kind(&()).as_ref(), namespace, name);
        self.metrics.remove_scaler(namespace, name);
    }

    /// Whether `scaler` is exactly the object this operator's own latest status write made:
    /// a watch event of it carries nothing the operator does not know, so it should not wake
    /// a reconcile. (When the watch event outruns the write's response, it is not recognised
    /// and wakes one pass, which finds the same status and writes nothing.)
    pub fn is_own_status_write(&self, scaler: &PodScaler) -> bool {
        let Some(version) = scaler.metadata.resource_version.as_deref() else {
            return false;
        };
        lock(&self.own_status_writes)
            .get(&scaler_key(scaler))
            .and_then(|own| own.version.as_deref())
            .is_some_and(|own| own == version)
    }

    /// Records a failed pass of `scaler` and returns when to retry it: 5 ms doubling to
    /// [`crate::backoff::MAX_DELAY`], per PodScaler.
    pub fn error_delay(&self, scaler: &PodScaler) -> Duration {
        lock(&self.backoff).failed(
            &scaler_key(scaler),
            scaler.metadata.generation,
            Instant::now(),
        )
    }

    /// The operator's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

fn scaler_key(scaler: &PodScaler) -> String {
    format!(
        "{}/{}",
        scaler.namespace().unwrap_or_default(),
        scaler.name_any()
    )
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The controller's reconcile function: times and counts the pass around [`reconcile_scaler`],
/// turns a panic into [`Error::Panicked`], and tells the workqueue metrics of the requeue.
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
pub fn error_policy(scaler: Arc<PodScaler>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = scaler_key(&scaler);
    if error.is_terminal() {
        tracing::error!(podscaler = %key, error = %error, "reconcile failed; not retried until the PodScaler changes");
        return Action::await_change();
    }
    let delay = ctx.error_delay(&scaler);
    ctx.metrics
        .workqueue()
        .requeued(ObjectRef::from_obj(scaler.as_ref()), delay);
    tracing::warn!(podscaler = %key, error = %error, ?delay, "reconcile failed; backing off");
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
        tracing::debug!(podscaler = %key, ?remaining, "backing off after a failed pass");
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
    lock(&ctx.fights).settle(&key, &present, now);
    let progress = match check {
        Check::Pending {
            creations,
            deletions,
        } => {
            tracing::debug!(podscaler = %key, creations, deletions, "waiting for the pod cache");
            Progress::AwaitingCache {
                creations,
                deletions,
            }
        }
        Check::TimedOut {
            creations,
            deletions,
        } => {
            tracing::warn!(
                podscaler = %key, creations, deletions,
                "pod changes were never observed; acting on the cache as it is"
            );
            act(scaler, &namespace, &key, &pods, ctx).await
        }
        Check::Satisfied => act(scaler, &namespace, &key, &pods, ctx).await,
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
    // Only a pass that acted without a refusal, or found nothing to do, is a success: one
    // that waited for the cache says nothing about whether the calls would work now.
    if matches!(progress, Progress::Acted { failure: None } | Progress::Idle) {
        lock(&ctx.backoff).reset(&key);
    }
    // Look again when a hold on a fight ends, if that comes before the resync.
    let next_hold_end = lock(&ctx.fights).next_hold_end(&key, Instant::now());
    let requeue = next_hold_end.map_or(ctx.settings.requeue_after, |end| {
        end.min(ctx.settings.requeue_after)
    });
    Ok(Requeue::After(requeue))
}

/// Event types (core/v1 `type`).
const NORMAL: &str = "Normal";
const WARNING: &str = "Warning";

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
    pods: &[PodFacts],
    ctx: &Context,
) -> Progress {
    let spared: BTreeSet<OwnerName> = lock(&ctx.fights).spared(key, Instant::now());
    match plan::plan(scaler.spec.count, pods, &spared) {
        Plan::Nothing => Progress::Idle,
        Plan::Create(count) => create_pods(scaler, namespace, key, count, ctx).await,
        Plan::Delete(victims) => delete_pods(scaler, namespace, key, victims, ctx).await,
    }
}

/// Creates `count` pods in slow-start batches, stopping after the first batch with a failure.
async fn create_pods(
    scaler: &PodScaler,
    namespace: &str,
    key: &str,
    count: usize,
    ctx: &Context,
) -> Progress {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let pod = new_pod(scaler, namespace);
    let params = PostParams::default();
    let mut created = Vec::new();
    let mut failure = None;
    let mut first_error = None;
    for batch in plan::slow_start_batches(count) {
        let mut batch_created = Vec::new();
        for result in create_batch(&api, &params, &pod, batch).await {
            match result {
                Ok(pod) => batch_created.push(PodRef {
                    name: pod.name_any(),
                    uid: pod.uid().unwrap_or_default(),
                }),
                Err(error) => {
                    if first_error.is_none() {
                        failure = Some(Failure {
                            action: FailedAction::Create,
                            message: stable_api_message(&error),
                        });
                        first_error = Some(api_message(&error));
                    }
                }
            }
        }
        lock(&ctx.expectations).expect_creations(
            key,
            batch_created.iter().cloned(),
            Instant::now(),
        );
        created.extend(batch_created);
        if failure.is_some() {
            break;
        }
    }
    let names: Vec<&str> = created.iter().map(|pod| pod.name.as_str()).collect();
    report_calls(ctx, scaler, FailedAction::Create, &names, first_error).await;
    Progress::Acted { failure }
}

/// Issues all `size` creates of one slow-start batch at once and waits for every answer, as
/// the ReplicaSet controller's `slowStartBatch` does (one goroutine per call). Slow start
/// already bounds what a failing batch costs; a cap on calls in flight within a batch would
/// only serialise the large batches of a big scale-up (500 pods end in batches of 128 and
/// 245). Over kube's HTTP/1.1 client each call in flight takes a pooled connection of its own,
/// opened on first use and kept for 90 s idle (hyper-util's pool has no upper bound).
async fn create_batch(
    api: &Api<Pod>,
    params: &PostParams,
    pod: &Pod,
    size: usize,
) -> Vec<Result<Pod, kube::Error>> {
    futures::future::join_all((0..size).map(|_| api.create(params, pod))).await
}

/// Deletes `victims`, preconditioned on their UIDs; a pod already gone counts as deleted.
async fn delete_pods(
    scaler: &PodScaler,
    namespace: &str,
    key: &str,
    victims: Vec<PodFacts>,
    ctx: &Context,
) -> Progress {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let results: Vec<(PodFacts, Result<(), kube::Error>)> = stream::iter(victims)
        .map(|victim| {
            let api = api.clone();
            async move {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: Some(victim.uid.clone()),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                let result = match api.delete(&victim.name, &params).await {
                    Ok(_) => Ok(()),
                    // Gone already, or replaced by a namesake (UID precondition failed).
                    Err(kube::Error::Api(status))
                        if status.is_not_found() || status.is_conflict() =>
                    {
                        Ok(())
                    }
                    Err(error) => Err(error),
                };
                (victim, result)
            }
        })
        .buffer_unordered(MAX_DELETES_IN_FLIGHT)
        .collect()
        .await;

    let mut deleted = Vec::new();
    let mut failure = None;
    let mut first_error = None;
    for (victim, result) in results {
        match result {
            Ok(()) => deleted.push(victim),
            Err(error) => {
                if first_error.is_none() {
                    failure = Some(Failure {
                        action: FailedAction::Delete,
                        message: stable_api_message(&error),
                    });
                    first_error = Some(api_message(&error));
                }
            }
        }
    }
    let now = Instant::now();
    lock(&ctx.expectations).expect_deletions(
        key,
        deleted.iter().map(|pod| PodRef {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
        }),
        now,
    );
    let name = scaler.name_any();
    let mut foreign_owners: BTreeSet<&OwnerName> = BTreeSet::new();
    let mut foreign = 0_u64;
    for pod in &deleted {
        if let Controller::Other(owner) = &pod.controller {
            foreign_owners.insert(owner);
            foreign += 1;
        }
    }
    if foreign > 0 {
        ctx.metrics.foreign_pods_deleted(namespace, &name, foreign);
    }
    // One round of a fight per controller per pass: a pass deletes every surplus pod at once.
    let holds: Vec<_> = {
        let mut fights = lock(&ctx.fights);
        foreign_owners
            .into_iter()
            .filter_map(|owner| fights.round(key, owner, now, Timestamp::now()))
            .collect()
    };
    for hold in holds {
        let note = format!(
            "{} recreated the pods this PodScaler deleted: not deleting its pods for {}s, until {}",
            hold.owner,
            hold.duration.as_secs(),
            hold.until
        );
        publish(
            ctx,
            scaler,
            WARNING,
            status::reason::FIGHTING_CONTROLLER,
            "DeletePods",
            note,
        )
        .await;
    }
    let names: Vec<&str> = deleted.iter().map(|pod| pod.name.as_str()).collect();
    report_calls(ctx, scaler, FailedAction::Delete, &names, first_error).await;
    Progress::Acted { failure }
}

/// The events of one round of creates or deletes: one naming the pods the calls succeeded for,
/// one with the first refusal. The refusal keeps the API's whole message (the refused pod's
/// name too), as the ReplicaSet controller's does; the correlator combines a run of them.
async fn report_calls(
    ctx: &Context,
    scaler: &PodScaler,
    operation: FailedAction,
    done: &[&str],
    first_error: Option<String>,
) {
    let (done_reason, failed_reason, action, past, verb) = match operation {
        FailedAction::Create => (
            "SuccessfulCreate",
            "FailedCreate",
            "CreatePods",
            "Created",
            "creating",
        ),
        FailedAction::Delete => (
            "SuccessfulDelete",
            "FailedDelete",
            "DeletePods",
            "Deleted",
            "deleting",
        ),
    };
    if !done.is_empty() {
        let note = format!("{past} {} pod(s): {}", done.len(), list_names(done));
        publish(ctx, scaler, NORMAL, done_reason, action, note).await;
    }
    if let Some(error) = first_error {
        let note = format!("Error {verb}: {error}");
        publish(ctx, scaler, WARNING, failed_reason, action, note).await;
    }
}

/// The pod created for `scaler`: its template (defaulted), a `<name>-` generated name and a
/// controller owner reference so garbage collection removes it with the PodScaler.
pub fn new_pod(scaler: &PodScaler, namespace: &str) -> Pod {
    let template = effective_template(&scaler.spec);
    let template_meta = template.metadata.unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", scaler.name_any())),
            namespace: Some(namespace.to_owned()),
            labels: template_meta.labels,
            annotations: template_meta.annotations,
            owner_references: scaler.controller_owner_ref(&()).map(|mut owner| {
                owner.block_owner_deletion = Some(true);
                vec![owner]
            }),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
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

async fn publish(
    ctx: &Context,
    scaler: &PodScaler,
    type_: &'static str,
    reason: &str,
    action: &str,
    message: String,
) {
    let occurrence = Occurrence {
        type_,
        reason: reason.to_owned(),
        action: action.to_owned(),
        message,
    };
    if let Err(error) = ctx
        .recorder
        .publish(&scaler.object_ref(&()), &occurrence)
        .await
    {
        tracing::warn!(podscaler = %scaler_key(scaler), reason, error = %error, "publishing an event failed");
    }
}

/// The API server's own message for an API error, the error's text otherwise.
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

/// [`api_message`] without the name of the refused pod, for the `ReplicaFailure` condition.
fn stable_api_message(error: &kube::Error) -> String {
    let refused = match error {
        kube::Error::Api(status) => status.details.as_ref().map(|d| d.name.as_str()),
        _ => None,
    };
    status::refusal_message(&api_message(error), refused)
}

fn list_names(names: &[&str]) -> String {
    let shown = names
        .iter()
        .take(NAMES_PER_EVENT)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len().saturating_sub(NAMES_PER_EVENT) {
        0 => shown,
        more => format!("{shown} and {more} more"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_pass_fails_with_its_message() {
        let failed = catch_panic::<()>("ns/web".to_owned(), async {
            panic!("index out of bounds: {}", 3);
        })
        .await;
        match failed {
            Err(error @ Error::Panicked { .. }) => {
                assert_eq!(
                    error.to_string(),
                    "PodScaler ns/web: the reconcile panicked: index out of bounds: 3"
                );
                assert!(!error.is_terminal(), "a panic is retried");
            }
            other => panic!("not a caught panic: {other:?}"),
        }
        let passed = catch_panic("ns/web".to_owned(), async { Ok(Requeue::OnChange) }).await;
        assert!(matches!(passed, Ok(Requeue::OnChange)));
    }

    #[test]
    fn only_a_missing_namespace_is_terminal() {
        assert!(Error::MissingNamespace("web".to_owned()).is_terminal());
        let refused = Error::Replicas {
            key: "ns/web".to_owned(),
            message: "exceeded quota".to_owned(),
        };
        assert!(!refused.is_terminal());
    }

    #[test]
    fn event_names_are_summarised() {
        assert_eq!(list_names(&["a", "b"]), "a, b");
        let many: Vec<String> = (0..13).map(|i| format!("p{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(
            list_names(&many),
            "p0, p1, p2, p3, p4, p5, p6, p7, p8, p9 and 3 more"
        );
    }
}
