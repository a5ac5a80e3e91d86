//! Wiring: the pod cache, the PodScaler controller and the mapping from pod events to every
//! PodScaler whose selector matches (not only the pod's owner).
//!
//! Both caches are fed by watches that relist after every error and report whether they can
//! be trusted (see [`crate::cache`]): that drives `/readyz`, and while the pod cache is stale
//! reconciles are held back.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::admin::Readiness;
use crate::api::{PodScaler, selector_matches};
use crate::cache::backoff::WatchBackoff;
use crate::cache::metrics::CacheMetrics;
use crate::cache::pods::{PodCache, pod_cache};
use crate::cache::relisting::relisting_watcher;
use crate::cache::sync::CacheSync;
use crate::observed::ObservedPod;
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

/// Why the controller stopped other than by a shutdown.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pod watch ended before its first list completed.
    #[error("the pod cache stopped before it was filled")]
    PodCacheNeverFilled,
}

/// How often a PodScaler whose reconcile was held back (the pod cache is stale) is looked at
/// again, in case the wake-up at the relist's end were missed.
const STALE_CACHE_RECHECK: Duration = Duration::from_secs(5);

/// Runs the controller until `shutdown` is cancelled; in-flight reconciles finish first.
///
/// Adds a part per cache to `readiness` (`pod cache`, `podscaler cache`) and marks its startup
/// done: from then on `/readyz` answers 200 exactly while both caches are synced (the rule in
/// [`crate::cache`]). Each watch starts over with a full list after an error, after a pause of
/// at most [`crate::cache::backoff::MAX_DELAY`]; `metrics` counts the errors and relists.
pub async fn run(
    client: Client,
    scope: Scope,
    concurrency: u16,
    make_context: impl FnOnce(PodCache) -> Context,
    readiness: Readiness,
    metrics: CacheMetrics,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let mut pod_sync = CacheSync::new("pods", readiness.part("pod cache"), metrics.clone());
    let mut scaler_sync = CacheSync::new("podscalers", readiness.part("podscaler cache"), metrics);
    let pods_synced = pod_sync.synced();
    readiness.set_ready();

    // The PodScaler cache is reflected here rather than inside `Controller::new` so readiness
    // can follow its lists: a second waiter on the controller's store readiness would never
    // wake (it is a oneshot that keeps one waker).
    let (scalers, scaler_writer) = reflector::store();
    let scaler_events = relisting_watcher(
        "podscalers",
        scope.api::<PodScaler>(client.clone()),
        watcher::Config::default().any_semantic(),
        WatchBackoff::default(),
    )
    // Nothing reads them, and they are most of a PodScaler's size.
    .modify(|scaler| scaler.managed_fields_mut().clear())
    .reflect(scaler_writer)
    .inspect(move |item| scaler_sync.observe(item))
    .touched_objects()
    // Logged and counted above; the controller would only log them again.
    .filter(|item| std::future::ready(item.is_ok()));

    // Pod events wake the PodScalers they concern through an unbounded channel: the pod watch
    // must never wait on the controller (that could stall the cache the controller reads), and
    // the controller's scheduler deduplicates what queues up.
    let (triggers, triggered) = mpsc::unbounded();
    let (pods, mut pod_writer) = pod_cache();
    let ctx = Arc::new(make_context(pods.clone()));
    let pod_cache = {
        let observer = Arc::clone(&ctx);
        let scalers = scalers.clone();
        let cached = pods.clone();
        relisting_watcher(
            "pods",
            scope.api::<Pod>(client),
            watcher::Config::default(),
            WatchBackoff::default(),
        )
        // What `reflect` does, keeping the version the event replaces: a pod relabelled out
        // of a selector concerns the PodScalers its old labels matched. A relist after an
        // error restarts the writer's buffer at its `Init` and swaps it in at `InitDone`.
        .map(move |item| {
            let previous = item
                .as_ref()
                .ok()
                .and_then(|event| previous_version(&cached, event));
            if let Ok(event) = &item {
                pod_writer.apply_watcher_event(event);
            }
            // After the store applied it, and before InitDone's wake-ups below go out: a
            // reconcile woken by a relist always finds the cache synced.
            pod_sync.observe(&item);
            item.map(|event| (event, previous))
        })
        .for_each(move |item| {
            if let Ok((event, previous)) = &item {
                observer.observe_pod_event(event);
                for scaler in scalers_to_wake(&scalers, event, previous.as_deref()) {
                    // Fails only once the controller has stopped.
                    let _ = triggers.unbounded_send(scaler);
                }
            }
            // Errors were logged and counted where they happened.
            std::future::ready(())
        })
    };
    let pod_cache = tokio::spawn(pod_cache);

    // A reconcile on an empty pod cache would see no pods and create them all again.
    let filled = tokio::select! {
        filled = pods.wait_until_filled() => filled.map_err(|_| RunError::PodCacheNeverFilled),
        () = shutdown.cancelled() => {
            pod_cache.abort();
            return Ok(());
        }
    };
    if let Err(error) = filled {
        pod_cache.abort();
        return Err(error);
    }
    tracing::info!(pods = pods.len(), "pod cache filled");

    // A PodScaler event that is only this operator's own status write wakes nothing: that
    // write would otherwise wake the pass after every pass that changed the status.
    let own_writes = Arc::clone(&ctx);
    let scaler_events = scaler_events.filter(move |item| {
        std::future::ready(!matches!(item, Ok(scaler) if own_writes.is_own_status_write(scaler)))
    });
    // The workqueue metrics' boundaries (see `crate::workqueue_metrics`): what enters the
    // controller's scheduler here, and when a worker starts and ends a reconcile below; the
    // requeues are told by `reconcile::reconcile` and `reconcile::error_policy`.
    let queue = ctx.metrics().workqueue().clone();
    let scaler_events = scaler_events.inspect({
        let queue = queue.clone();
        move |item| {
            if let Ok(scaler) = item {
                queue.added(ObjectRef::from_obj(scaler));
            }
        }
    });
    let triggered = triggered.inspect({
        let queue = queue.clone();
        move |scaler: &ObjectRef<PodScaler>| queue.added(scaler.clone())
    });
    let controller = Controller::for_stream(scaler_events, scalers)
        .with_config(controller::Config::default().concurrency(concurrency));
    controller
        .reconcile_on(triggered)
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(
            move |scaler, ctx| {
                let synced = pods_synced.is_ready();
                let key = ObjectRef::from_obj(scaler.as_ref());
                // Done when the pass ends or is dropped at shutdown.
                let work = ctx.metrics().workqueue().started(&key);
                async move {
                    let _work = work;
                    if !synced {
                        // A stale pod cache can miss pods created just before an outage (too
                        // few: create again) or show deleted ones (too many). The relist's
                        // InitDone wakes every PodScaler.
                        tracing::debug!(podscaler = %reconcile::ref_key(&key), "pod cache stale; reconcile held back");
                        ctx.metrics().workqueue().requeued(key, STALE_CACHE_RECHECK);
                        return Ok(Action::requeue(STALE_CACHE_RECHECK));
                    }
                    reconcile::reconcile(scaler, ctx).await
                }
            },
            reconcile::error_policy,
            Arc::clone(&ctx),
        )
        .for_each(|outcome| {
            let ctx = Arc::clone(&ctx);
            let queue = queue.clone();
            async move {
                match outcome {
                    Ok((scaler, _)) => tracing::debug!(podscaler = %reconcile::ref_key(&scaler), "reconciled"),
                    // The PodScaler was deleted: nothing left to reconcile, only to forget.
                    Err(controller::Error::ObjectNotFound(gone)) => {
                        let namespace = gone.namespace.clone().unwrap_or_default();
                        tracing::info!(podscaler = %reconcile::ref_key(&gone), "PodScaler deleted");
                        queue.discarded(&ObjectRef::new(&gone.name).within(&namespace));
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
    Ok(())
}

/// The cached version of the pod a live Apply replaces (None for a new pod and for every other
/// event).
fn previous_version(pods: &PodCache, event: &watcher::Event<Pod>) -> Option<Arc<ObservedPod>> {
    match event {
        watcher::Event::Apply(pod) => pods.get(&pod.namespace()?, &pod.name_any()),
        _ => None,
    }
}

/// The PodScalers a pod watch event wakes: for a changed pod, those its new version concerns
/// and those its `previous` version did. A relist reaches the cache all at once at InitDone
/// (pods deleted while the watch was down show up only as a changed count), so that wakes
/// every PodScaler; the relist's pods one by one wake none.
fn scalers_to_wake(
    scalers: &Store<PodScaler>,
    event: &watcher::Event<Pod>,
    previous: Option<&ObservedPod>,
) -> Vec<ObjectRef<PodScaler>> {
    match event {
        watcher::Event::Apply(pod) | watcher::Event::Delete(pod) => {
            let pod = ObservedPod::from_pod(pod);
            let mut woken = scalers_selecting(scalers, &pod);
            // Only new labels or a new controller can make the old version concern other
            // PodScalers; most updates are status changes.
            let moved =
                previous.filter(|old| old.labels != pod.labels || old.controller != pod.controller);
            for scaler in moved
                .into_iter()
                .flat_map(|old| scalers_selecting(scalers, old))
            {
                if !woken.contains(&scaler) {
                    woken.push(scaler);
                }
            }
            woken
        }
        watcher::Event::InitDone => scalers
            .state()
            .iter()
            .map(|scaler| ObjectRef::from_obj(scaler.as_ref()))
            .collect(),
        watcher::Event::Init | watcher::Event::InitApply(_) => Vec::new(),
    }
}

/// Every PodScaler a pod concerns: those whose selector matches the pod in its namespace, and
/// the PodScaler that controls it (its labels may have changed).
pub fn scalers_selecting(
    scalers: &Store<PodScaler>,
    pod: &ObservedPod,
) -> Vec<ObjectRef<PodScaler>> {
    let owner = pod.controlling_podscaler();
    scalers
        .state()
        .iter()
        .filter(|scaler| scaler.namespace().as_deref() == Some(pod.namespace.as_str()))
        .filter(|scaler| {
            owner == Some(scaler.name_any().as_str())
                || selector_matches(&scaler.spec.selector, Some(&pod.labels))
        })
        .map(|scaler| ObjectRef::from_obj(scaler.as_ref()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scaler(name: &str, app: &str) -> PodScaler {
        serde_json::from_value(json!({
            "apiVersion": "scaling.example.com/v1",
            "kind": "PodScaler",
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
            "spec": {"count": 1, "selector": {"app": app}},
        }))
        .expect("a valid PodScaler")
    }

    fn pod(labels: serde_json::Value, owner: Option<&str>) -> Pod {
        let owners: Vec<_> = owner
            .map(|name| {
                json!({"apiVersion": "scaling.example.com/v1", "kind": "PodScaler",
                       "name": name, "uid": format!("uid-{name}"), "controller": true})
            })
            .into_iter()
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": labels, "ownerReferences": owners},
        }))
        .expect("a valid Pod")
    }

    fn observed(labels: serde_json::Value, owner: Option<&str>) -> ObservedPod {
        ObservedPod::from_pod(&pod(labels, owner))
    }

    fn store(scalers: &[PodScaler]) -> Store<PodScaler> {
        let (store, mut writer) = reflector::store();
        for scaler in scalers {
            writer.apply_watcher_event(&watcher::Event::Apply(scaler.clone()));
        }
        store
    }

    fn names(refs: Vec<ObjectRef<PodScaler>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn pod_events_wake_the_matching_scalers_and_the_owner() {
        let scalers = store(&[scaler("web", "web"), scaler("api", "api")]);
        let matching = pod(json!({"app": "web"}), None);
        assert_eq!(
            names(scalers_to_wake(
                &scalers,
                &watcher::Event::Apply(matching.clone()),
                None
            )),
            ["web"]
        );
        assert_eq!(
            names(scalers_to_wake(
                &scalers,
                &watcher::Event::Delete(matching),
                None
            )),
            ["web"]
        );
        // Relabelled away from its owner: the owner still hears of it.
        let relabelled = pod(json!({"app": "other"}), Some("api"));
        assert_eq!(
            names(scalers_to_wake(
                &scalers,
                &watcher::Event::Apply(relabelled),
                None
            )),
            ["api"]
        );
    }

    #[test]
    fn a_pod_relabelled_out_of_a_selector_wakes_the_scalers_it_left() {
        let scalers = store(&[scaler("web", "web"), scaler("api", "api")]);
        let before = observed(json!({"app": "web"}), None);
        let after = pod(json!({"app": "api"}), None);
        let event = watcher::Event::Apply(after.clone());
        let after = ObservedPod::from_pod(&after);
        assert_eq!(
            names(scalers_to_wake(&scalers, &event, Some(&before))),
            ["api", "web"]
        );
        // Unchanged labels and owners (a status update): as without a previous version.
        assert_eq!(
            names(scalers_to_wake(&scalers, &event, Some(&after))),
            ["api"]
        );
        // Its owner, matched by the old labels too, is woken once.
        let owned_before = observed(json!({"app": "api"}), Some("api"));
        let owned_after = watcher::Event::Apply(pod(json!({"app": "web"}), Some("api")));
        assert_eq!(
            names(scalers_to_wake(&scalers, &owned_after, Some(&owned_before))),
            ["api", "web"]
        );
        // Out of every selector: only the PodScaler it left.
        let elsewhere = watcher::Event::Apply(pod(json!({"app": "elsewhere"}), None));
        assert_eq!(
            names(scalers_to_wake(&scalers, &elsewhere, Some(&before))),
            ["web"]
        );
    }

    #[test]
    fn only_a_live_change_has_a_previous_version() {
        let (pods, mut writer) = pod_cache();
        let cached = pod(json!({"app": "web"}), None);
        writer.apply_watcher_event(&watcher::Event::Apply(cached.clone()));
        let relabelled = pod(json!({"app": "api"}), None);
        let previous = previous_version(&pods, &watcher::Event::Apply(relabelled.clone()));
        assert_eq!(previous.as_deref(), Some(&ObservedPod::from_pod(&cached)));
        assert!(previous_version(&pods, &watcher::Event::Delete(relabelled.clone())).is_none());
        assert!(previous_version(&pods, &watcher::Event::InitApply(relabelled)).is_none());
    }

    #[test]
    fn a_relist_wakes_every_scaler_once_it_is_in_the_cache() {
        let scalers = store(&[scaler("web", "web"), scaler("api", "api")]);
        let relisted = pod(json!({"app": "web"}), None);
        assert!(scalers_to_wake(&scalers, &watcher::Event::Init, None).is_empty());
        assert!(scalers_to_wake(&scalers, &watcher::Event::InitApply(relisted), None).is_empty());
        assert_eq!(
            names(scalers_to_wake(&scalers, &watcher::Event::InitDone, None)),
            ["api", "web"]
        );
    }
}
