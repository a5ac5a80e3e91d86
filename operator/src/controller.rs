//! Wiring: the pod cache, the PodScaler controller and the mapping from pod events to every
//! PodScaler whose selector matches (not only the pod's owner).

use std::sync::Arc;

use futures::channel::mpsc;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::admin::Readiness;
use crate::api::{PodScaler, selector_matches};
use crate::reconcile::{self, Context};

/// Which namespaces to manage.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every namespace.
    Cluster,
    /// One namespace.
    Namespace(String),
}

impl Scope {
    /// An API handle for `K` within this scope.
    pub fn api<K>(&self, client: Client) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match self {
            Self::Cluster => Api::all(client),
            Self::Namespace(namespace) => Api::namespaced(client, namespace),
        }
    }
}

/// Runs the controller until `shutdown` is cancelled; in-flight reconciles finish first.
/// `readiness` turns ready once both caches are filled (the pod cache first).
pub async fn run(
    client: Client,
    scope: Scope,
    concurrency: u16,
    make_context: impl FnOnce(Store<Pod>) -> Context,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    // The PodScaler cache is reflected here rather than inside `Controller::new` so readiness
    // can follow its initial list: a second waiter on the controller's store readiness would
    // never wake (it is a oneshot that keeps one waker).
    let (scalers, scaler_writer) = reflector::store();
    let scaler_events = watcher(
        scope.api::<PodScaler>(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .default_backoff()
    .reflect(scaler_writer)
    .inspect_ok(move |event| {
        if matches!(event, watcher::Event::InitDone) && !readiness.is_ready() {
            tracing::info!("PodScaler cache filled; ready");
            readiness.set_ready();
        }
    })
    .touched_objects();

    // Pod events wake the PodScalers they concern through an unbounded channel: the pod watch
    // must never wait on the controller (that could stall the cache the controller reads), and
    // the controller's scheduler deduplicates what queues up.
    let (triggers, triggered) = mpsc::unbounded();
    let (pods, pod_writer) = reflector::store();
    let ctx = Arc::new(make_context(pods.clone()));
    let pod_cache = {
        let observer = Arc::clone(&ctx);
        let scalers = scalers.clone();
        watcher(scope.api::<Pod>(client), watcher::Config::default())
            .default_backoff()
            .modify(|pod| pod.managed_fields_mut().clear())
            .reflect(pod_writer)
            .inspect_ok(move |event| {
                observer.observe_pod_event(event);
                if let Some(pod) = event_pod(event) {
                    for scaler in scalers_selecting(&scalers, pod) {
                        // Fails only once the controller has stopped.
                        let _ = triggers.unbounded_send(scaler);
                    }
                }
            })
            .for_each(|event| async move {
                if let Err(error) = event {
                    tracing::warn!(error = %error, "pod watch failed; retrying");
                }
            })
    };
    let pod_cache = tokio::spawn(pod_cache);

    // A reconcile on an empty pod cache would see no pods and create them all again.
    tokio::select! {
        ready = pods.wait_until_ready() => {
            if ready.is_err() {
                tracing::error!("the pod cache stopped before it was filled");
                return;
            }
        }
        () = shutdown.cancelled() => return,
    }
    tracing::info!(pods = pods.len(), "pod cache filled");

    let controller = Controller::for_stream(scaler_events, scalers)
        .with_config(controller::Config::default().concurrency(concurrency));
    controller
        .reconcile_on(triggered)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(
            reconcile::reconcile,
            reconcile::error_policy,
            Arc::clone(&ctx),
        )
        .for_each(|outcome| {
            let ctx = Arc::clone(&ctx);
            async move {
                match outcome {
                    Ok((scaler, _)) => tracing::debug!(podscaler = %scaler, "reconciled"),
                    // The PodScaler was deleted: nothing left to reconcile, only to forget.
                    Err(controller::Error::ObjectNotFound(gone)) => {
                        let namespace = gone.namespace.clone().unwrap_or_default();
                        tracing::info!(podscaler = %gone, "PodScaler deleted");
                        ctx.forget(&namespace, &gone.name);
                    }
                    Err(controller::Error::ReconcilerFailed(..)) => {} // logged by the error policy
                    Err(error) => tracing::warn!(error = %error, "controller error"),
                }
            }
        })
        .await;
    pod_cache.abort();
    tracing::info!("controller stopped");
}

/// The pod a watch event carries. A relist's pods wake their PodScalers too: pods deleted
/// while the watch was down show up only as a changed count.
fn event_pod(event: &watcher::Event<Pod>) -> Option<&Pod> {
    match event {
        watcher::Event::Apply(pod)
        | watcher::Event::Delete(pod)
        | watcher::Event::InitApply(pod) => Some(pod),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// Every PodScaler a pod event concerns: those whose selector matches the pod in its
/// namespace, and the PodScaler that controls it (its labels may have changed).
pub fn scalers_selecting(scalers: &Store<PodScaler>, pod: &Pod) -> Vec<ObjectRef<PodScaler>> {
    let namespace = pod.namespace();
    let owner = pod
        .owner_references()
        .iter()
        .find(|owner| owner.controller == Some(true) && owner.kind == "PodScaler")
        .map(|owner| owner.name.as_str());
    scalers
        .state()
        .iter()
        .filter(|scaler| scaler.namespace() == namespace)
        .filter(|scaler| {
            owner == Some(scaler.name_any().as_str())
                || selector_matches(&scaler.spec.selector, pod.metadata.labels.as_ref())
        })
        .map(|scaler| ObjectRef::from_obj(scaler.as_ref()))
        .collect()
}
