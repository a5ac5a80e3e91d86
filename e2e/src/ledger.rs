//! Every pod a label selector ever matched, by UID, and whether it is gone: to count exactly
//! how many pods a controller created and deleted over a stretch of time.
//!
//! [`crate::observe::ActiveCountRecorder`] says how many pods were active at each instant;
//! that cannot tell "500 created" from "501 created, one deleted again between two events".
//! The ledger keeps every UID it has seen, so a pod made and removed again still counts.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use podscaler::cache::backoff::WatchBackoff;
use podscaler::cache::relisting::relisting_watcher;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::observe::is_active;

/// What the ledger knows of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Record {
    name: String,
    /// Deleted, terminating or finished: it no longer counts, and never will again.
    gone: bool,
}

/// The pods seen so far, by UID. Pure bookkeeping over watch events.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    pods: HashMap<String, Record>,
    /// The UIDs of a relist in progress: pods it does not return were deleted meanwhile.
    relisting: Option<HashSet<String>>,
    /// Lists completed (the first, and one per relist after a watch error).
    lists: usize,
}

impl Ledger {
    /// Takes one watch event into account.
    pub fn apply(&mut self, event: &watcher::Event<Pod>) {
        match event {
            watcher::Event::Init => self.relisting = Some(HashSet::new()),
            watcher::Event::InitApply(pod) => {
                let uid = self.record(pod);
                if let Some(listed) = &mut self.relisting {
                    listed.insert(uid);
                }
            }
            watcher::Event::InitDone => self.end_relist(),
            watcher::Event::Apply(pod) => {
                self.record(pod);
            }
            watcher::Event::Delete(pod) => {
                let uid = self.record(pod);
                if let Some(record) = self.pods.get_mut(&uid) {
                    record.gone = true;
                }
            }
        }
    }

    /// Distinct pods ever seen.
    pub fn seen(&self) -> usize {
        self.pods.len()
    }

    /// Pods seen and not gone.
    pub fn active(&self) -> usize {
        self.pods.values().filter(|record| !record.gone).count()
    }

    /// The names of the pods seen now that `earlier` had not seen: pods created in between.
    pub fn new_since(&self, earlier: &Ledger) -> Vec<String> {
        let mut names: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, _)| !earlier.pods.contains_key(*uid))
            .map(|(_, record)| record.name.clone())
            .collect();
        names.sort();
        names
    }

    /// How many pods that were active in `earlier` are gone now: pods deleted in between.
    pub fn gone_since(&self, earlier: &Ledger) -> usize {
        earlier
            .pods
            .iter()
            .filter(|(_, before)| !before.gone)
            .filter(|(uid, _)| self.pods.get(*uid).is_some_and(|now| now.gone))
            .count()
    }

    /// Lists completed: the first, plus one per relist after a watch error. While it stays
    /// the same the ledger has seen every event, hence every pod that existed.
    pub fn lists(&self) -> usize {
        self.lists
    }

    /// How many of the pods seen are gone.
    pub fn gone(&self) -> usize {
        self.seen() - self.active()
    }

    /// Adds or updates `pod`; returns its UID.
    fn record(&mut self, pod: &Pod) -> String {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let record = self.pods.entry(uid.clone()).or_insert_with(|| Record {
            name: pod.metadata.name.clone().unwrap_or_default(),
            gone: false,
        });
        record.gone |= !is_active(pod);
        uid
    }

    /// Marks the pods a finished relist did not return as gone.
    fn end_relist(&mut self) {
        let Some(listed) = self.relisting.take() else {
            return;
        };
        self.lists += 1;
        for (uid, record) in &mut self.pods {
            if !listed.contains(uid) {
                record.gone = true;
            }
        }
    }
}

/// A [`Ledger`] kept current by a watch on one selector in one namespace.
pub struct PodLedger {
    ledger: watch::Receiver<Ledger>,
    task: JoinHandle<()>,
}

impl PodLedger {
    /// Starts watching; returns once the initial list is in.
    pub async fn start(client: &Client, namespace: &str, selector: &str) -> anyhow::Result<Self> {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let config = watcher::Config::default().labels(selector);
        let (sender, mut ledger) = watch::channel(Ledger::default());
        let task = tokio::spawn(async move {
            // Relists after a watch error (paced), as the active-count recorder does: a pod
            // created and deleted while the watch was down is missed, which is why a test
            // that counts creations also checks the API server's own counter.
            let mut events = std::pin::pin!(relisting_watcher(
                "ledger pods",
                api,
                config,
                WatchBackoff::default()
            ));
            while let Some(event) = events.next().await {
                let Ok(event) = event else { continue };
                sender.send_modify(|ledger| ledger.apply(&event));
            }
        });
        ledger
            .wait_for(|ledger| ledger.lists > 0)
            .await
            .map_err(|_| anyhow::anyhow!("the pod watch ended before its initial list"))?;
        Ok(Self { ledger, task })
    }

    /// A copy of what the ledger holds now.
    pub fn snapshot(&self) -> Ledger {
        self.ledger.borrow().clone()
    }

    /// Waits (event-driven) until the ledger satisfies `condition`; returns a copy of it.
    pub async fn wait_for(
        &mut self,
        condition: impl Fn(&Ledger) -> bool,
    ) -> anyhow::Result<Ledger> {
        let ledger = self
            .ledger
            .wait_for(|ledger| condition(ledger))
            .await
            .map_err(|_| anyhow::anyhow!("the pod watch ended"))?;
        Ok(ledger.clone())
    }
}

impl Drop for PodLedger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, phase: &str, terminating: bool) -> Pod {
        let mut metadata = json!({"name": format!("pod-{uid}"), "uid": uid});
        if terminating {
            metadata["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(json!({"metadata": metadata, "status": {"phase": phase}}))
            .expect("a valid pod")
    }

    fn listed(pods: &[Pod]) -> Ledger {
        let mut ledger = Ledger::default();
        ledger.apply(&watcher::Event::Init);
        for pod in pods {
            ledger.apply(&watcher::Event::InitApply(pod.clone()));
        }
        ledger.apply(&watcher::Event::InitDone);
        ledger
    }

    #[test]
    fn a_pod_deleted_again_still_counts_as_seen() {
        let before = listed(&[pod("a", "Running", false)]);
        let mut after = before.clone();
        after.apply(&watcher::Event::Apply(pod("b", "Pending", false)));
        after.apply(&watcher::Event::Delete(pod("b", "Pending", false)));
        assert_eq!((after.seen(), after.active(), after.gone()), (2, 1, 1));
        assert_eq!(after.new_since(&before), vec!["pod-b".to_owned()]);
        assert_eq!(after.gone_since(&before), 0, "b was not active before");
    }

    #[test]
    fn terminating_and_finished_pods_are_gone() {
        let before = listed(&[
            pod("a", "Running", false),
            pod("b", "Running", false),
            pod("c", "Running", false),
        ]);
        let mut after = before.clone();
        after.apply(&watcher::Event::Apply(pod("a", "Running", true)));
        after.apply(&watcher::Event::Apply(pod("b", "Succeeded", false)));
        assert_eq!(after.gone_since(&before), 2);
        assert!(after.new_since(&before).is_empty());
        // A later update of a terminating pod does not bring it back.
        after.apply(&watcher::Event::Apply(pod("a", "Running", false)));
        assert_eq!(after.active(), 1);
    }

    #[test]
    fn a_relist_marks_the_pods_it_no_longer_returns_as_gone() {
        let mut ledger = listed(&[pod("a", "Running", false), pod("b", "Running", false)]);
        ledger.apply(&watcher::Event::Init);
        ledger.apply(&watcher::Event::InitApply(pod("b", "Running", false)));
        assert_eq!(ledger.active(), 2, "nothing is gone before the relist ends");
        ledger.apply(&watcher::Event::InitDone);
        assert_eq!((ledger.seen(), ledger.active(), ledger.lists()), (2, 1, 2));
    }
}
