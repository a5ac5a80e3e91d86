//! The watched cache of PodScalers the overlap check reads: one list + watch for the whole
//! cluster kept current by a kube reflector, never a list per admission request.

use std::collections::BTreeMap;

use futures::{FutureExt, StreamExt};
use kube::runtime::reflector::{self, Store, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use podscaler::api::PodScaler;

use crate::admission::PodScalerIndex;

impl PodScalerIndex for Store<PodScaler> {
    fn selectors_in(&self, namespace: &str) -> Option<Vec<(String, BTreeMap<String, String>)>> {
        // Ready once the first full list has been applied; it never becomes unready again.
        if !matches!(self.wait_until_ready().now_or_never(), Some(Ok(()))) {
            return None;
        }
        Some(
            self.state()
                .iter()
                .filter(|scaler| scaler.metadata.namespace.as_deref() == Some(namespace))
                .filter_map(|scaler| {
                    scaler
                        .metadata
                        .name
                        .clone()
                        .map(|name| (name, scaler.spec.selector.clone()))
                })
                .collect(),
        )
    }
}

/// An empty store of PodScalers and the writer that fills it. The store answers `None`
/// (not synced) until [`watch`] has applied the first full list.
pub fn store() -> (Store<PodScaler>, Writer<PodScaler>) {
    reflector::store()
}

/// Keeps `writer`'s store equal to every PodScaler in the cluster; run it until shutdown.
/// Only what the overlap check needs is kept: templates, status, annotations and managed
/// fields are dropped before they reach the cache.
pub async fn watch(client: Client, writer: Writer<PodScaler>) {
    let api: Api<PodScaler> = Api::all(client);
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(|scaler: &mut PodScaler| {
            scaler.spec.template = None;
            scaler.status = None;
            scaler.metadata.annotations = None;
            scaler.metadata.managed_fields = None;
        })
        .reflect(writer)
        .for_each(|event| {
            if let Err(error) = event {
                tracing::warn!(
                    %error,
                    "watching PodScalers failed (retrying with backoff); the webhook needs list \
                     and watch on podscalers.scaling.example.com in all namespaces"
                );
            }
            futures::future::ready(())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::watcher::Event;
    use podscaler::api::PodScalerSpec;

    fn scaler(namespace: &str, name: &str, app: &str) -> PodScaler {
        let mut scaler = PodScaler::new(
            name,
            PodScalerSpec {
                count: 1,
                selector: BTreeMap::from([("app".to_owned(), app.to_owned())]),
                template: None,
            },
        );
        scaler.metadata.namespace = Some(namespace.to_owned());
        scaler
    }

    #[test]
    fn unsynced_store_answers_none_then_filters_by_namespace() {
        let (store, mut writer) = reflector::store::<PodScaler>();
        assert_eq!(store.selectors_in("default"), None);
        writer.apply_watcher_event(&Event::Init);
        writer.apply_watcher_event(&Event::InitApply(scaler("default", "a", "web")));
        writer.apply_watcher_event(&Event::InitApply(scaler("other", "b", "db")));
        assert_eq!(
            store.selectors_in("default"),
            None,
            "not synced until InitDone"
        );
        writer.apply_watcher_event(&Event::InitDone);
        let found = store.selectors_in("default").expect("synced");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, "a");
        assert_eq!(store.selectors_in("nowhere"), Some(vec![]));
    }
}
