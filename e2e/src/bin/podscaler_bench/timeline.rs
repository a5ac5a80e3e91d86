//! When pods appeared and started running, as the benchmark's own watch saw them: the clock
//! starts at the create call, and each milestone is the arrival of the watch event that
//! reached it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What one watch event said about one pod, stamped on arrival.
#[derive(Clone, Debug)]
pub enum PodEvent {
    /// The pod exists; whether it is Running on a node.
    Seen {
        uid: String,
        running: bool,
        at: Instant,
    },
    Gone {
        uid: String,
    },
    /// The initial list is complete: what follows is news.
    Listed,
}

/// The milestones of one scale-up from zero to `target` pods.
#[derive(Clone, Debug)]
pub struct Timeline {
    started: Instant,
    target: usize,
    seen: HashSet<String>,
    running: HashSet<String>,
    /// The first pod was seen.
    pub first_created: Option<Duration>,
    /// `target` pods had been seen.
    pub all_created: Option<Duration>,
    /// `target` pods were Running at once.
    pub all_running: Option<Duration>,
}

impl Timeline {
    /// A scale-up to `target` pods whose create call was made at `started`.
    pub fn new(started: Instant, target: usize) -> Self {
        Self {
            started,
            target,
            seen: HashSet::new(),
            running: HashSet::new(),
            first_created: None,
            all_created: None,
            all_running: None,
        }
    }

    pub fn observe(&mut self, event: &PodEvent) {
        match event {
            PodEvent::Seen { uid, running, at } => {
                let elapsed = at.saturating_duration_since(self.started);
                self.seen.insert(uid.clone());
                if *running {
                    self.running.insert(uid.clone());
                } else {
                    self.running.remove(uid);
                }
                if self.first_created.is_none() {
                    self.first_created = Some(elapsed);
                }
                if self.all_created.is_none() && self.seen.len() >= self.target {
                    self.all_created = Some(elapsed);
                }
                if self.all_running.is_none() && self.running.len() >= self.target {
                    self.all_running = Some(elapsed);
                }
            }
            PodEvent::Gone { uid } => {
                self.running.remove(uid);
            }
            PodEvent::Listed => {}
        }
    }

    /// Whether every milestone was reached.
    pub fn complete(&self) -> bool {
        self.all_running.is_some() && self.all_created.is_some()
    }
}

/// A watch of the pods matching one selector, forwarding stamped events.
pub struct PodWatch {
    events: mpsc::UnboundedReceiver<PodEvent>,
    present: HashSet<String>,
    task: JoinHandle<()>,
}

impl PodWatch {
    /// Starts watching pods in `namespace` matching `selector`; returns once the initial list
    /// is in, so no event of what is created afterwards can be missed.
    pub async fn start(client: &Client, namespace: &str, selector: &str) -> anyhow::Result<Self> {
        let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
        let config = watcher::Config::default().labels(selector);
        let (sender, mut events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(watcher(api, config));
            while let Some(event) = stream.next().await {
                let Ok(event) = event else { continue };
                let at = Instant::now();
                let forwarded = match event {
                    watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) => {
                        sender.send(seen(&pod, at))
                    }
                    watcher::Event::Delete(pod) => sender.send(PodEvent::Gone { uid: uid(&pod) }),
                    watcher::Event::InitDone => sender.send(PodEvent::Listed),
                    watcher::Event::Init => continue,
                };
                if forwarded.is_err() {
                    return;
                }
            }
        });
        let mut watch = Self {
            events: mpsc::unbounded_channel().1,
            present: HashSet::new(),
            task,
        };
        loop {
            match events.recv().await.context("the pod watch ended")? {
                PodEvent::Listed => break,
                event => watch.track(&event),
            }
        }
        watch.events = events;
        Ok(watch)
    }

    /// Feeds events to `timeline` until it is complete; fails after `timeout`.
    pub async fn follow(
        &mut self,
        timeline: &mut Timeline,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !timeline.complete() {
            let event = self.next(deadline).await.with_context(|| {
                format!(
                    "not converged after {timeout:?}: {} pods seen, {} running, of {}",
                    timeline.seen.len(),
                    timeline.running.len(),
                    timeline.target
                )
            })?;
            timeline.observe(&event);
        }
        Ok(())
    }

    /// Waits until no matching pod is left; fails after `timeout`.
    pub async fn until_empty(&mut self, timeout: Duration) -> anyhow::Result<()> {
        self.until_present(0, timeout).await
    }

    /// Waits until exactly `count` matching pods exist (terminating ones included); fails
    /// after `timeout`.
    pub async fn until_present(&mut self, count: usize, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.present.len() != count {
            let present = self.present.len();
            self.next(deadline)
                .await
                .with_context(|| format!("{present} pods, not {count}, after {timeout:?}"))?;
        }
        Ok(())
    }

    /// Waits until none of the pods `uids` is left; fails after `timeout`.
    pub async fn until_gone(&mut self, uids: &[String], timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while uids.iter().any(|uid| self.present.contains(uid)) {
            self.next(deadline)
                .await
                .with_context(|| format!("deleted pods still there after {timeout:?}"))?;
        }
        Ok(())
    }

    /// The next event, already tracked; fails at `deadline` or when the watch ended.
    async fn next(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<PodEvent> {
        let event = tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .map_err(|_| anyhow::anyhow!("timed out"))?
            .context("the pod watch ended")?;
        self.track(&event);
        Ok(event)
    }

    fn track(&mut self, event: &PodEvent) {
        match event {
            PodEvent::Seen { uid, .. } => self.present.insert(uid.clone()),
            PodEvent::Gone { uid } => self.present.remove(uid),
            PodEvent::Listed => false,
        };
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn seen(pod: &Pod, at: Instant) -> PodEvent {
    PodEvent::Seen {
        uid: uid(pod),
        running: e2e::observe::is_running(pod),
        at,
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen_at(start: Instant, uid: &str, running: bool, millis: u64) -> PodEvent {
        PodEvent::Seen {
            uid: uid.to_owned(),
            running,
            at: start + Duration::from_millis(millis),
        }
    }

    #[test]
    fn milestones_are_the_first_events_that_reach_them() {
        let start = Instant::now();
        let mut timeline = Timeline::new(start, 2);
        timeline.observe(&seen_at(start, "a", false, 10));
        assert_eq!(timeline.first_created, Some(Duration::from_millis(10)));
        assert!(!timeline.complete());
        timeline.observe(&seen_at(start, "a", false, 15));
        timeline.observe(&seen_at(start, "b", false, 20));
        assert_eq!(timeline.all_created, Some(Duration::from_millis(20)));
        timeline.observe(&seen_at(start, "a", true, 30));
        timeline.observe(&seen_at(start, "b", true, 40));
        assert_eq!(timeline.all_running, Some(Duration::from_millis(40)));
        assert!(timeline.complete());
        timeline.observe(&seen_at(start, "c", true, 50));
        assert_eq!(
            timeline.first_created,
            Some(Duration::from_millis(10)),
            "kept"
        );
    }

    #[test]
    fn running_counts_pods_running_at_the_same_time() {
        let start = Instant::now();
        let mut timeline = Timeline::new(start, 2);
        timeline.observe(&seen_at(start, "a", true, 10));
        timeline.observe(&PodEvent::Gone { uid: "a".into() });
        timeline.observe(&seen_at(start, "b", true, 20));
        assert_eq!(timeline.all_running, None, "a was gone when b ran");
        timeline.observe(&seen_at(start, "c", true, 30));
        assert_eq!(timeline.all_running, Some(Duration::from_millis(30)));
    }
}
