//! The pod cache: every watched pod as the operator sees it ([`ObservedPod`]: what a
//! reconcile reads, a few hundred bytes instead of the whole pod), indexed by namespace and by
//! label so that a reconcile reads only the pods its selector can
//! match instead of walking every pod of the cluster.
//!
//! It takes the place of kube-runtime's reflector store, whose only lookup is by name: with
//! 1,000 PodScalers of 10 pods each, every resync walked all 10,000 pods (see BENCHMARKS.md,
//! P4). Watch events are applied as kube's store writer applies them: a relist (`Init`,
//! `InitApply` …) is collected aside and replaces the cache whole at `InitDone`, so a reader
//! never sees half a relist. Every reader sees one consistent version: the pods, the index and
//! the readiness change together under one lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::api::selector_matches;
use crate::observed::ObservedPod;

/// The pods of one namespace, by name and by label.
#[derive(Debug, Default)]
struct Namespace {
    by_name: HashMap<String, Arc<ObservedPod>>,
    /// `(key, value)` → the names of the pods carrying that label.
    by_label: HashMap<(String, String), HashSet<String>>,
}

impl Namespace {
    fn insert(&mut self, pod: Arc<ObservedPod>) {
        let name = pod.name.clone();
        self.remove(&name);
        for label in labels(&pod) {
            self.by_label.entry(label).or_default().insert(name.clone());
        }
        self.by_name.insert(name, pod);
    }

    fn remove(&mut self, name: &str) {
        let Some(old) = self.by_name.remove(name) else {
            return;
        };
        for label in labels(&old) {
            if let Some(names) = self.by_label.get_mut(&label) {
                names.remove(name);
                if names.is_empty() {
                    self.by_label.remove(&label);
                }
            }
        }
    }

    /// The pods matching `selector`, read through its rarest label.
    fn select(&self, selector: &BTreeMap<String, String>) -> Vec<Arc<ObservedPod>> {
        let rarest = selector
            .iter()
            .map(|(key, value)| self.by_label.get(&(key.clone(), value.clone())))
            .min_by_key(|names| names.map_or(0, HashSet::len));
        let matching = |pod: &&Arc<ObservedPod>| selector_matches(selector, Some(&pod.labels));
        match rarest {
            // An empty selector matches every pod of the namespace.
            None => self.by_name.values().filter(matching).cloned().collect(),
            // No pod carries one of the selector's labels.
            Some(None) => Vec::new(),
            Some(Some(names)) => names
                .iter()
                .filter_map(|name| self.by_name.get(name))
                .filter(matching)
                .cloned()
                .collect(),
        }
    }
}

fn labels(pod: &ObservedPod) -> impl Iterator<Item = (String, String)> + '_ {
    pod.labels
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
}

/// Every cached pod, by namespace.
#[derive(Debug, Default)]
struct Pods {
    namespaces: HashMap<String, Namespace>,
    len: usize,
}

impl Pods {
    fn insert(&mut self, pod: &Pod) {
        let pod = Arc::new(ObservedPod::from_pod(pod));
        let pods = self.namespaces.entry(pod.namespace.clone()).or_default();
        let before = pods.by_name.len();
        pods.insert(pod);
        self.len += pods.by_name.len() - before;
    }

    fn remove(&mut self, pod: &Pod) {
        let (Some(namespace), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
            return;
        };
        let Some(pods) = self.namespaces.get_mut(namespace) else {
            return;
        };
        let before = pods.by_name.len();
        pods.remove(name);
        self.len -= before - pods.by_name.len();
        if pods.by_name.is_empty() {
            self.namespaces.remove(namespace);
        }
    }
}

#[derive(Debug, Default)]
struct State {
    current: Pods,
    /// The relist in progress, from its `Init` to its `InitDone`.
    relist: Option<Pods>,
}

/// The read side of the pod cache; cheap to clone.
#[derive(Clone, Debug)]
pub struct PodCache {
    state: Arc<RwLock<State>>,
    filled: watch::Receiver<bool>,
}

/// The write side of the pod cache: the pod watch applies its events here.
#[derive(Debug)]
pub struct PodCacheWriter {
    state: Arc<RwLock<State>>,
    filled: watch::Sender<bool>,
}

/// The writer was dropped before the first list ended.
#[derive(Debug, thiserror::Error)]
#[error("the pod watch stopped before its first list was complete")]
pub struct NeverFilled;

/// A new, empty pod cache and its writer.
pub fn pod_cache() -> (PodCache, PodCacheWriter) {
    let state = Arc::new(RwLock::new(State::default()));
    let (filled_tx, filled_rx) = watch::channel(false);
    (
        PodCache {
            state: Arc::clone(&state),
            filled: filled_rx,
        },
        PodCacheWriter {
            state,
            filled: filled_tx,
        },
    )
}

impl PodCache {
    /// The cached pod `name` in `namespace`.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<ObservedPod>> {
        self.read(|state| {
            state
                .current
                .namespaces
                .get(namespace)
                .and_then(|pods| pods.by_name.get(name))
                .cloned()
        })
    }

    /// The cached pods of `namespace` whose labels match `selector` (every pod of the
    /// namespace for an empty selector), in no particular order.
    pub fn select(
        &self,
        namespace: &str,
        selector: &BTreeMap<String, String>,
    ) -> Vec<Arc<ObservedPod>> {
        self.read(|state| {
            state
                .current
                .namespaces
                .get(namespace)
                .map_or_else(Vec::new, |pods| pods.select(selector))
        })
    }

    /// How many pods the cache holds.
    pub fn len(&self) -> usize {
        self.read(|state| state.current.len)
    }

    /// Whether the cache holds no pod.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits for the end of the watch's first list.
    pub async fn wait_until_filled(&self) -> Result<(), NeverFilled> {
        let mut filled = self.filled.clone();
        filled
            .wait_for(|filled| *filled)
            .await
            .map(|_| ())
            .map_err(|_| NeverFilled)
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        // A panic while the lock was held left no half-applied event: every write below
        // finishes its change before it could panic.
        f(&self.state.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl PodCacheWriter {
    /// Applies one watch event, as kube's reflector writer does.
    pub fn apply_watcher_event(&mut self, event: &watcher::Event<Pod>) {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(pod) => state.current.insert(pod),
            watcher::Event::Delete(pod) => state.current.remove(pod),
            watcher::Event::Init => state.relist = Some(Pods::default()),
            watcher::Event::InitApply(pod) => {
                state.relist.get_or_insert_with(Pods::default).insert(pod)
            }
            watcher::Event::InitDone => {
                state.current = state.relist.take().unwrap_or_default();
                drop(state);
                self.filled.send_replace(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(namespace: &str, name: &str, labels: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
        }))
        .expect("a valid Pod")
    }

    fn selector(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn names(pods: Vec<Arc<ObservedPod>>) -> Vec<String> {
        let mut names: Vec<String> = pods.iter().map(|pod| pod.name.clone()).collect();
        names.sort();
        names
    }

    fn filled(pods: Vec<Pod>) -> (PodCache, PodCacheWriter) {
        let (cache, mut writer) = pod_cache();
        writer.apply_watcher_event(&watcher::Event::Init);
        for pod in pods {
            writer.apply_watcher_event(&watcher::Event::InitApply(pod));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        (cache, writer)
    }

    #[test]
    fn a_selector_reads_the_pods_carrying_all_its_labels_in_its_namespace() {
        let (cache, _writer) = filled(vec![
            pod("ns", "web-1", json!({"app": "web", "tier": "front"})),
            pod("ns", "web-2", json!({"app": "web"})),
            pod("ns", "api-1", json!({"app": "api", "tier": "front"})),
            pod("other", "web-3", json!({"app": "web", "tier": "front"})),
            pod("ns", "bare", json!(null)),
        ]);
        assert_eq!(
            names(cache.select("ns", &selector(&[("app", "web")]))),
            ["web-1", "web-2"]
        );
        assert_eq!(
            names(cache.select("ns", &selector(&[("app", "web"), ("tier", "front")]))),
            ["web-1"]
        );
        assert!(cache.select("ns", &selector(&[("app", "db")])).is_empty());
        assert!(
            cache
                .select("nowhere", &selector(&[("app", "web")]))
                .is_empty()
        );
        assert_eq!(
            names(cache.select("ns", &BTreeMap::new())),
            ["api-1", "bare", "web-1", "web-2"]
        );
        assert_eq!(cache.len(), 5);
    }

    #[test]
    fn a_relabelled_pod_leaves_its_old_labels_index() {
        let (cache, mut writer) = filled(vec![pod("ns", "p", json!({"app": "web"}))]);
        writer.apply_watcher_event(&watcher::Event::Apply(pod(
            "ns",
            "p",
            json!({"app": "api"}),
        )));
        assert!(cache.select("ns", &selector(&[("app", "web")])).is_empty());
        assert_eq!(
            names(cache.select("ns", &selector(&[("app", "api")]))),
            ["p"]
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_deleted_pod_is_gone_from_every_lookup() {
        let (cache, mut writer) = filled(vec![
            pod("ns", "p", json!({"app": "web"})),
            pod("ns", "q", json!({"app": "web"})),
        ]);
        writer.apply_watcher_event(&watcher::Event::Delete(pod(
            "ns",
            "p",
            json!({"app": "web"}),
        )));
        assert!(cache.get("ns", "p").is_none());
        assert!(cache.get("ns", "q").is_some());
        assert_eq!(
            names(cache.select("ns", &selector(&[("app", "web")]))),
            ["q"]
        );
        assert_eq!(cache.len(), 1);
        // Deleting what is not there changes nothing.
        writer.apply_watcher_event(&watcher::Event::Delete(pod(
            "ns",
            "p",
            json!({"app": "web"}),
        )));
        writer.apply_watcher_event(&watcher::Event::Delete(pod("x", "p", json!(null))));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_relist_replaces_the_cache_only_when_it_is_complete() {
        let (cache, mut writer) = filled(vec![pod("ns", "old", json!({"app": "web"}))]);
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(pod(
            "ns",
            "new",
            json!({"app": "web"}),
        )));
        assert_eq!(
            names(cache.select("ns", &selector(&[("app", "web")]))),
            ["old"]
        );
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert_eq!(
            names(cache.select("ns", &selector(&[("app", "web")]))),
            ["new"]
        );
        assert!(cache.get("ns", "old").is_none());
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn filled_at_the_end_of_the_first_list_and_never_if_the_watch_stops_before() {
        let (cache, writer) = filled(Vec::new());
        cache.wait_until_filled().await.expect("filled");
        assert!(cache.is_empty());
        drop(writer);

        let (cache, mut writer) = pod_cache();
        writer.apply_watcher_event(&watcher::Event::Init);
        drop(writer);
        assert!(cache.wait_until_filled().await.is_err());
    }
}
