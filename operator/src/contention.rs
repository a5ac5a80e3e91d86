//! Fights with other controllers: when to stop deleting their pods, and for how long.
//!
//! A controller recreates the pods it loses, so every pass that deletes another controller's
//! pods is one round of a fight between two controllers selecting the same pods. Deleting
//! forever would be a hot loop against the API server (the ReplicaSet controller recreates a
//! pod within milliseconds). After [`FightPolicy::rounds_before_holding`] rounds against the
//! same controller, its pods are spared for a hold that doubles with every further round, up to
//! [`FightPolicy::max_hold`]. When the other controller stops recreating pods there is no next
//! round, and once the fight has been quiet for [`FightPolicy::memory`] it is forgotten.
//! Every matching pod still counts toward `spec.count` meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::plan::OwnerName;

/// When fights turn into holds and how long they are remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FightPolicy {
    /// Rounds against one controller before its pods are spared (the first round may be a plain
    /// scale-down; the second and third show that controller replacing what was deleted).
    pub rounds_before_holding: u32,
    /// The first hold; each later round doubles it.
    pub first_hold: Duration,
    /// The longest hold.
    pub max_hold: Duration,
    /// How long a fight stays remembered (and reported) after its last round or hold.
    pub memory: Duration,
}

impl Default for FightPolicy {
    fn default() -> Self {
        Self {
            rounds_before_holding: 3,
            first_hold: Duration::from_secs(15),
            max_hold: Duration::from_secs(5 * 60),
            memory: Duration::from_secs(5 * 60),
        }
    }
}

impl FightPolicy {
    /// The hold that the `holds`-th hold (1 for the first) lasts.
    pub fn hold(&self, holds: u32) -> Duration {
        let doublings = holds.saturating_sub(1).min(31);
        self.first_hold
            .saturating_mul(1 << doublings)
            .min(self.max_hold)
    }
}

/// A hold on deleting one controller's pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The controller whose pods are spared.
    pub owner: OwnerName,
    /// How long the hold lasts.
    pub duration: Duration,
    /// When it ends, on the wall clock (whole seconds, so messages built from it are stable).
    pub until: Timestamp,
}

/// A fight as the status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fight {
    pub owner: OwnerName,
    /// When the current hold ends, if its pods are being spared now.
    pub holding_until: Option<Timestamp>,
}

#[derive(Clone, Debug)]
struct Record {
    rounds: u32,
    holds: u32,
    quiet_from: Instant,
    hold: Option<(Instant, Timestamp)>,
}

/// Fights per PodScaler (keyed `namespace/name`).
#[derive(Debug, Default)]
pub struct Fights {
    policy: FightPolicy,
    fights: HashMap<String, BTreeMap<OwnerName, Record>>,
}

impl Fights {
    /// Fights decided by `policy`.
    pub fn new(policy: FightPolicy) -> Self {
        Self {
            policy,
            fights: HashMap::new(),
        }
    }

    /// Records that a pass of `key` deleted pods controlled by `owner`; returns the hold this
    /// round starts, if it is one round too many.
    pub fn round(
        &mut self,
        key: &str,
        owner: &OwnerName,
        now: Instant,
        wall: Timestamp,
    ) -> Option<Hold> {
        self.expire(key, now);
        let policy = self.policy;
        let record = self
            .fights
            .entry(key.to_owned())
            .or_default()
            .entry(owner.clone())
            .or_insert(Record {
                rounds: 0,
                holds: 0,
                quiet_from: now,
                hold: None,
            });
        record.rounds = record.rounds.saturating_add(1);
        record.quiet_from = now;
        if record.rounds < policy.rounds_before_holding {
            return None;
        }
        record.holds = record.holds.saturating_add(1);
        let duration = policy.hold(record.holds);
        let until = whole_seconds_after(wall, duration);
        let ends = now + duration;
        record.hold = Some((ends, until));
        record.quiet_from = ends;
        Some(Hold {
            owner: owner.clone(),
            duration,
            until,
        })
    }

    /// Controllers whose pods `key` must not delete at `now`.
    pub fn spared(&mut self, key: &str, now: Instant) -> BTreeSet<OwnerName> {
        self.expire(key, now);
        self.fights
            .get(key)
            .into_iter()
            .flatten()
            .filter(|(_, record)| record.hold.is_some_and(|(ends, _)| now < ends))
            .map(|(owner, _)| owner.clone())
            .collect()
    }

    /// The fights `key` is in at `now`, for the status: from the second round against a
    /// controller (the first may be a plain scale-down; a second shows it replaced the pods).
    pub fn report(&mut self, key: &str, now: Instant) -> Vec<Fight> {
        self.expire(key, now);
        self.fights
            .get(key)
            .into_iter()
            .flatten()
            .filter(|(_, record)| record.rounds >= 2)
            .map(|(owner, record)| Fight {
                owner: owner.clone(),
                holding_until: record
                    .hold
                    .filter(|(ends, _)| now < *ends)
                    .map(|(_, until)| until),
            })
            .collect()
    }

    /// The earliest end of a running hold of `key`, so the PodScaler is looked at again then.
    pub fn next_hold_end(&self, key: &str, now: Instant) -> Option<Duration> {
        self.fights
            .get(key)
            .into_iter()
            .flatten()
            .filter_map(|(_, record)| record.hold.map(|(ends, _)| ends))
            .filter(|ends| now < *ends)
            .min()
            .map(|ends| ends - now)
    }

    /// Ends the fights of `key` that are being held off against a controller none of whose
    /// pods match any more (its Deployment was deleted or scaled to zero): it stopped. A dip
    /// in the surplus is no such sign: right after the deletion that started a hold, the other
    /// side has simply not replaced the pod yet.
    pub fn settle(&mut self, key: &str, present: &BTreeSet<OwnerName>, now: Instant) {
        if let Some(owners) = self.fights.get_mut(key) {
            owners.retain(|owner, record| {
                present.contains(owner) || record.hold.is_none_or(|(ends, _)| now >= ends)
            });
            if owners.is_empty() {
                self.fights.remove(key);
            }
        }
    }

    /// Forgets `key` (the PodScaler is gone).
    pub fn forget(&mut self, key: &str) {
        self.fights.remove(key);
    }

    fn expire(&mut self, key: &str, now: Instant) {
        let memory = self.policy.memory;
        if let Some(owners) = self.fights.get_mut(key) {
            owners.retain(|_, record| now.saturating_duration_since(record.quiet_from) < memory);
            if owners.is_empty() {
                self.fights.remove(key);
            }
        }
    }
}

/// `wall + duration`, rounded up to a whole second so the time a message shows is never
/// before the hold really ends.
fn whole_seconds_after(wall: Timestamp, duration: Duration) -> Timestamp {
    let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
    let end = wall
        .checked_add(SignedDuration::from_secs(seconds))
        .unwrap_or(wall);
    let second = if end.subsec_nanosecond() > 0 {
        end.as_second().saturating_add(1)
    } else {
        end.as_second()
    };
    Timestamp::from_second(second).unwrap_or(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(name: &str) -> OwnerName {
        OwnerName {
            kind: "ReplicaSet".into(),
            name: name.into(),
        }
    }

    fn wall(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("valid timestamp")
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn holds_double_from_the_first_to_the_cap() {
        let policy = FightPolicy::default();
        let holds: Vec<u64> = (1..=7).map(|n| policy.hold(n).as_secs()).collect();
        assert_eq!(holds, [15, 30, 60, 120, 240, 300, 300]);
    }

    #[test]
    fn the_third_round_against_one_controller_starts_a_hold() {
        let start = Instant::now();
        let mut fights = Fights::new(FightPolicy::default());
        let rs = owner("web-1");
        assert_eq!(fights.round("ns/a", &rs, start, wall(0)), None);
        assert!(
            fights.report("ns/a", start).is_empty(),
            "one deletion is no fight yet"
        );
        assert_eq!(fights.round("ns/a", &rs, start + S, wall(1)), None);
        assert_eq!(
            fights.report("ns/a", start + S),
            [Fight {
                owner: rs.clone(),
                holding_until: None
            }]
        );
        assert!(fights.spared("ns/a", start + S).is_empty());
        let hold = fights
            .round("ns/a", &rs, start + 2 * S, wall(2))
            .expect("a hold");
        assert_eq!(hold.duration, 15 * S);
        assert_eq!(hold.until, wall(17));
        assert_eq!(
            fights.spared("ns/a", start + 3 * S),
            BTreeSet::from([rs.clone()])
        );
        assert!(
            fights.spared("ns/b", start + 3 * S).is_empty(),
            "per PodScaler"
        );
        assert_eq!(fights.next_hold_end("ns/a", start + 7 * S), Some(10 * S));
        assert_eq!(
            fights.report("ns/a", start + 3 * S),
            [Fight {
                owner: rs.clone(),
                holding_until: Some(wall(17))
            }]
        );

        // The hold ends; the next round against the same controller holds twice as long.
        let after = start + 17 * S;
        assert!(fights.spared("ns/a", after).is_empty());
        assert_eq!(
            fights.report("ns/a", after),
            [Fight {
                owner: rs.clone(),
                holding_until: None
            }],
            "still remembered between holds"
        );
        let again = fights.round("ns/a", &rs, after, wall(17)).expect("a hold");
        assert_eq!(again.duration, 30 * S);
    }

    #[test]
    fn a_hold_ends_when_the_controller_has_no_pods_left() {
        let start = Instant::now();
        let mut fights = Fights::new(FightPolicy::default());
        let (held, fighting) = (owner("held"), owner("fighting"));
        for n in 0..3 {
            fights.round("ns/a", &held, start + n * S, wall(0));
        }
        fights.round("ns/a", &fighting, start, wall(0));
        fights.round("ns/a", &fighting, start + S, wall(0));
        let still_there = BTreeSet::from([held.clone(), fighting.clone()]);
        fights.settle("ns/a", &still_there, start + 4 * S);
        assert_eq!(
            fights.spared("ns/a", start + 4 * S),
            BTreeSet::from([held.clone()]),
            "a controller whose pods still match is still held off"
        );
        fights.settle("ns/a", &BTreeSet::from([fighting.clone()]), start + 4 * S);
        assert!(fights.spared("ns/a", start + 4 * S).is_empty());
        assert_eq!(
            fights.report("ns/a", start + 4 * S),
            [Fight {
                owner: fighting,
                holding_until: None
            }],
            "a fight between rounds is kept: its pod may not be replaced yet"
        );
    }

    #[test]
    fn a_holds_end_is_shown_rounded_up() {
        let at = Timestamp::from_second(1_700_000_000)
            .expect("valid timestamp")
            .checked_add(SignedDuration::from_millis(200))
            .expect("valid timestamp");
        assert_eq!(whole_seconds_after(at, 15 * S), wall(16));
        assert_eq!(whole_seconds_after(wall(0), 15 * S), wall(15));
    }

    #[test]
    fn each_controller_is_held_on_its_own() {
        let start = Instant::now();
        let mut fights = Fights::new(FightPolicy::default());
        for n in 0..3 {
            fights.round("ns/a", &owner("x"), start + n * S, wall(0));
        }
        fights.round("ns/a", &owner("y"), start + 3 * S, wall(0));
        assert_eq!(
            fights.spared("ns/a", start + 4 * S),
            BTreeSet::from([owner("x")])
        );
    }

    #[test]
    fn a_quiet_fight_is_forgotten_after_its_memory() {
        let start = Instant::now();
        let policy = FightPolicy::default();
        let mut fights = Fights::new(policy);
        let rs = owner("web-1");
        for n in 0..3 {
            fights.round("ns/a", &rs, start + n * S, wall(0));
        }
        // Remembered from the end of the hold, not from its start.
        let hold_end = start + 2 * S + policy.first_hold;
        assert_eq!(fights.report("ns/a", hold_end + policy.memory - S).len(), 1);
        assert!(fights.report("ns/a", hold_end + policy.memory).is_empty());
        assert!(fights.fights.is_empty(), "forgotten entries are dropped");
        // A new fight starts from scratch: no hold on its first round.
        assert_eq!(
            fights.round("ns/a", &rs, hold_end + policy.memory, wall(0)),
            None
        );
        fights.forget("ns/a");
        assert!(fights.report("ns/a", hold_end + policy.memory).is_empty());
    }
}
