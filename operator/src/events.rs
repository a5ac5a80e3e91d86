//! Events that stay true under a storm: client-go's event correlator, and the recorder that
//! writes its decisions as core/v1 Events.
//!
//! kube-runtime's `Recorder` groups repeats by reason and object and keeps the first message,
//! so after a scale-up `kubectl describe` showed `Created 3 pod(s): a, b, c` counted 962 times.
//! client-go's `EventCorrelator` (what the ReplicaSet controller and controller-runtime use)
//! keys a series on the message too, and bounds what a storm costs:
//! - the same message again on the same object bumps that event's `count`;
//! - from the [`CorrelatorConfig::max_similar`]th different message with the same reason on
//!   the same object within [`CorrelatorConfig::similar_window`], they are combined into one
//!   event whose message is the latest, prefixed `(combined from similar events): `;
//! - each object has a token bucket ([`CorrelatorConfig::burst`], then one write per
//!   [`CorrelatorConfig::refill_every`]); a write over budget is skipped, but its occurrence is
//!   still counted, so the next write carries the true count.
//!
//! core/v1 Events are written (not events.k8s.io/v1, whose `note` cannot change after create)
//! because an aggregated series must be able to take its latest message.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// Prefix of an aggregated event's message (client-go's wording).
pub const COMBINED_PREFIX: &str = "(combined from similar events): ";

/// client-go's correlator defaults.
#[derive(Clone, Copy, Debug)]
pub struct CorrelatorConfig {
    /// Different messages with one reason on one object before they are combined.
    pub max_similar: usize,
    /// How long similar messages are remembered.
    pub similar_window: Duration,
    /// Event writes an object may make at once.
    pub burst: u32,
    /// One more write is allowed per this interval.
    pub refill_every: Duration,
    /// Series remembered before the oldest quiet ones are dropped.
    pub max_series: usize,
}

impl Default for CorrelatorConfig {
    fn default() -> Self {
        Self {
            max_similar: 10,
            similar_window: Duration::from_secs(600),
            burst: 25,
            refill_every: Duration::from_secs(300),
            max_series: 4096,
        }
    }
}

/// One occurrence to report about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// Machine-readable reason (`SuccessfulCreate` …).
    pub reason: String,
    /// What the controller did (`CreatePods` …).
    pub action: String,
    /// Human-readable message.
    pub message: String,
}

/// What to write for one occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A new event `name`.
    Create(Series),
    /// Event `name` with its new count and message.
    Update(Series),
    /// Nothing: the object is over its budget (the occurrence is counted for the next write).
    Skip,
}

/// The state of one event series, as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// The Event object's name.
    pub name: String,
    /// The message it carries.
    pub message: String,
    /// Occurrences it counts.
    pub count: i32,
    /// When it first and last occurred.
    pub first: Timestamp,
    /// When it last occurred.
    pub last: Timestamp,
}

#[derive(Debug)]
struct Similar {
    messages: HashSet<String>,
    last: Instant,
}

#[derive(Debug)]
struct Recorded {
    series: Series,
    seen: Instant,
}

#[derive(Debug)]
struct TokenBucket {
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn take(&mut self, config: &CorrelatorConfig, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        let rate = 1.0 / config.refill_every.as_secs_f64().max(f64::MIN_POSITIVE);
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(config.burst));
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Decides, per occurrence, which event to create or update (pure: time comes in).
#[derive(Debug, Default)]
pub struct Correlator {
    config: CorrelatorConfig,
    similar: HashMap<String, Similar>,
    series: HashMap<String, Recorded>,
    budgets: HashMap<String, TokenBucket>,
}

impl Correlator {
    /// A correlator with `config`.
    pub fn new(config: CorrelatorConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Correlates `occurrence` about the object `object` (`namespace/name/uid`), whose events
    /// are named `<object_name>.<unique>`.
    pub fn observe(
        &mut self,
        object: &str,
        object_name: &str,
        occurrence: &Occurrence,
        now: Instant,
        wall: Timestamp,
    ) -> Write {
        let similar_key = format!(
            "{object}\u{0}{}\u{0}{}\u{0}{}",
            occurrence.type_, occurrence.reason, occurrence.action
        );
        let window = self.config.similar_window;
        let similar = self
            .similar
            .entry(similar_key.clone())
            .or_insert_with(|| Similar {
                messages: HashSet::new(),
                last: now,
            });
        if now.saturating_duration_since(similar.last) > window {
            similar.messages.clear();
        }
        similar.last = now;
        // Past the threshold every message is combined, so the set need not grow further.
        if similar.messages.len() < self.config.max_similar {
            similar.messages.insert(occurrence.message.clone());
        }
        let (series_key, message) = if similar.messages.len() >= self.config.max_similar {
            (
                similar_key,
                format!("{COMBINED_PREFIX}{}", occurrence.message),
            )
        } else {
            (
                format!("{similar_key}\u{0}{}", occurrence.message),
                occurrence.message.clone(),
            )
        };

        self.forget_quiet(now);
        let write = match self.series.get_mut(&series_key) {
            Some(recorded) => {
                recorded.seen = now;
                recorded.series.count = recorded.series.count.saturating_add(1);
                recorded.series.last = wall;
                recorded.series.message = message;
                Write::Update(recorded.series.clone())
            }
            None => {
                let series = Series {
                    name: format!("{object_name}.{:x}", wall.as_nanosecond()),
                    message,
                    count: 1,
                    first: wall,
                    last: wall,
                };
                self.series.insert(
                    series_key,
                    Recorded {
                        series: series.clone(),
                        seen: now,
                    },
                );
                Write::Create(series)
            }
        };

        let config = self.config;
        let budget = self
            .budgets
            .entry(format!("{object}\u{0}"))
            .or_insert_with(|| TokenBucket {
                tokens: f64::from(config.burst),
                refilled: now,
            });
        if budget.take(&config, now) {
            write
        } else {
            Write::Skip
        }
    }

    /// Forgets every series of the objects whose key starts with `prefix` (they are gone).
    pub fn forget(&mut self, prefix: &str) {
        self.similar.retain(|key, _| !key.starts_with(prefix));
        self.series.retain(|key, _| !key.starts_with(prefix));
        self.budgets.retain(|key, _| !key.starts_with(prefix));
    }

    /// Keeps the caches bounded: past `max_series` series, those quiet for the similar window
    /// go, with their similar-message sets and the budgets that have refilled completely (a
    /// fresh bucket is the same).
    fn forget_quiet(&mut self, now: Instant) {
        if self.series.len() < self.config.max_series && self.budgets.len() < self.config.max_series
        {
            return;
        }
        let window = self.config.similar_window;
        let refilled = self.config.refill_every.saturating_mul(self.config.burst);
        self.series
            .retain(|_, recorded| now.saturating_duration_since(recorded.seen) <= window);
        self.similar
            .retain(|_, similar| now.saturating_duration_since(similar.last) <= window);
        self.budgets
            .retain(|_, bucket| now.saturating_duration_since(bucket.refilled) < refilled);
    }
}

/// Writes correlated events about objects as this controller.
pub struct EventRecorder {
    client: Client,
    component: String,
    instance: Option<String>,
    correlator: std::sync::Mutex<Correlator>,
}

impl EventRecorder {
    /// A recorder reporting as `component` (and `instance`, the pod's name when known).
    pub fn new(client: Client, component: &str, instance: Option<String>) -> Self {
        Self {
            client,
            component: component.to_owned(),
            instance,
            correlator: std::sync::Mutex::new(Correlator::new(CorrelatorConfig::default())),
        }
    }

    /// Records `occurrence` about `regarding`; returns what was written.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        occurrence: &Occurrence,
    ) -> Result<Write, kube::Error> {
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let name = regarding.name.clone().unwrap_or_default();
        let object = object_key(regarding);
        let write = self
            .correlator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .observe(&object, &name, occurrence, Instant::now(), Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        match &write {
            Write::Skip => {}
            Write::Create(series) => {
                self.create(&api, regarding, occurrence, series).await?;
            }
            Write::Update(series) => {
                let patch = Patch::Merge(json!({
                    "count": series.count,
                    "message": series.message,
                    "lastTimestamp": Time(series.last),
                }));
                match api
                    .patch(&series.name, &PatchParams::default(), &patch)
                    .await
                {
                    Ok(_) => {}
                    // Expired or deleted meanwhile: start it again with the count it has.
                    Err(kube::Error::Api(status)) if status.is_not_found() => {
                        self.create(&api, regarding, occurrence, series).await?;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(write)
    }

    /// Forgets the series about every object `kind` `namespace/name` (it was deleted; its
    /// uid is no longer known).
    pub fn forget_object(&self, kind: &str, namespace: &str, name: &str) {
        self.correlator
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .forget(&format!("{kind}/{namespace}/{name}/"));
    }

    async fn create(
        &self,
        api: &Api<Event>,
        regarding: &ObjectReference,
        occurrence: &Occurrence,
        series: &Series,
    ) -> Result<(), kube::Error> {
        let event = Event {
            metadata: ObjectMeta {
                name: Some(series.name.clone()),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            involved_object: regarding.clone(),
            type_: Some(occurrence.type_.to_owned()),
            reason: Some(occurrence.reason.clone()),
            action: Some(occurrence.action.clone()),
            message: Some(series.message.clone()),
            count: Some(series.count),
            first_timestamp: Some(Time(series.first)),
            last_timestamp: Some(Time(series.last)),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: self.instance.clone(),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        Ok(())
    }
}

fn object_key(regarding: &ObjectReference) -> String {
    format!(
        "{}/{}/{}/{}",
        regarding.kind.as_deref().unwrap_or_default(),
        regarding.namespace.as_deref().unwrap_or_default(),
        regarding.name.as_deref().unwrap_or_default(),
        regarding.uid.as_deref().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests;
