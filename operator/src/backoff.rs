//! Per-PodScaler backoff after failed passes: the pure schedule and the gate every reconcile
//! passes through.
//!
//! controller-runtime (and the ReplicaSet controller's queue) retry a failed object after 5 ms,
//! doubling to a cap. A status or pod event can wake a PodScaler long before its retry is due,
//! so the delay alone would not hold: the gate turns such a wake into a no-op until the retry
//! time. A new `metadata.generation` (someone changed the spec) passes at once, since a user's
//! edit may be the fix; success forgets the failures.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// First retry delay after a failed pass (controller-runtime's base delay).
pub const BASE_DELAY: Duration = Duration::from_millis(5);

/// Longest retry delay. controller-runtime caps at 1000 s; a refused create is usually fixed by
/// a person (a raised quota, a fixed admission policy) who expects the PodScaler to notice, so
/// the cap is two resync periods: a stuck PodScaler costs one refused call every 30 s and picks
/// up a fix within 30 s.
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// The delay before retry number `failures` (1 for the first failure): `base · 2^(failures-1)`,
/// never above `max`.
pub fn delay(failures: u32, base: Duration, max: Duration) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    base.saturating_mul(1 << doublings).min(max)
}

/// What a reconcile may do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead.
    Proceed,
    /// A failed pass's retry is not due yet: do nothing, come back after this long.
    Wait(Duration),
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    retry_at: Instant,
    generation: Option<i64>,
}

/// Failed passes per PodScaler (keyed `namespace/name`).
#[derive(Debug)]
pub struct FailureBackoff {
    base: Duration,
    max: Duration,
    failures: HashMap<String, Failures>,
}

impl Default for FailureBackoff {
    fn default() -> Self {
        Self::new(BASE_DELAY, MAX_DELAY)
    }
}

impl FailureBackoff {
    /// A backoff doubling from `base` to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max,
            failures: HashMap::new(),
        }
    }

    /// Whether a pass of `key` at `generation` may act at `now`.
    pub fn gate(&self, key: &str, generation: Option<i64>, now: Instant) -> Gate {
        match self.failures.get(key) {
            Some(failed) if failed.generation == generation && now < failed.retry_at => {
                Gate::Wait(failed.retry_at - now)
            }
            _ => Gate::Proceed,
        }
    }

    /// Records a failed pass and returns the delay until its retry.
    pub fn failed(&mut self, key: &str, generation: Option<i64>, now: Instant) -> Duration {
        let count = self
            .failures
            .get(key)
            .map_or(1, |failed| failed.count.saturating_add(1));
        let wait = delay(count, self.base, self.max);
        self.failures.insert(
            key.to_owned(),
            Failures {
                count,
                retry_at: now + wait,
                generation,
            },
        );
        wait
    }

    /// Forgets the failures of `key`: its pass succeeded, or the PodScaler is gone.
    pub fn reset(&mut self, key: &str) {
        self.failures.remove(key);
    }

    /// Failed passes of `key` since its last success.
    #[cfg(test)]
    fn failures(&self, key: &str) -> u32 {
        self.failures.get(key).map_or(0, |failed| failed.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_from_the_base_to_the_cap() {
        let ms = Duration::from_millis;
        let table = [
            (0, ms(5)),
            (1, ms(5)),
            (2, ms(10)),
            (3, ms(20)),
            (10, ms(2560)),
            (13, ms(20480)),
            (14, MAX_DELAY),
            (40, MAX_DELAY),
            (u32::MAX, MAX_DELAY),
        ];
        for (failures, want) in table {
            assert_eq!(delay(failures, BASE_DELAY, MAX_DELAY), want, "{failures}");
        }
    }

    #[test]
    fn failures_in_two_minutes_are_few() {
        // What the quota scenario bounds: a refusal that lasts two minutes costs this many passes.
        let mut elapsed = Duration::ZERO;
        let mut passes = 0;
        while elapsed < Duration::from_secs(120) {
            passes += 1;
            elapsed += delay(passes, BASE_DELAY, MAX_DELAY);
        }
        assert_eq!(passes, 16);
    }

    #[test]
    fn the_gate_holds_a_failed_scaler_until_its_retry() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut backoff = FailureBackoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(backoff.gate("ns/a", Some(1), start), Gate::Proceed);

        assert_eq!(
            backoff.failed("ns/a", Some(1), start),
            Duration::from_millis(100)
        );
        let cases = [
            (
                "a wake before the retry waits",
                "ns/a",
                Some(1),
                at(40),
                Gate::Wait(Duration::from_millis(60)),
            ),
            (
                "the retry itself proceeds",
                "ns/a",
                Some(1),
                at(100),
                Gate::Proceed,
            ),
            (
                "a new generation proceeds at once",
                "ns/a",
                Some(2),
                at(40),
                Gate::Proceed,
            ),
            (
                "other scalers are not held",
                "ns/b",
                Some(1),
                at(40),
                Gate::Proceed,
            ),
        ];
        for (what, key, generation, now, want) in cases {
            assert_eq!(backoff.gate(key, generation, now), want, "{what}");
        }

        assert_eq!(
            backoff.failed("ns/a", Some(1), at(100)),
            Duration::from_millis(200)
        );
        assert_eq!(backoff.failures("ns/a"), 2);
        assert_eq!(
            backoff.gate("ns/a", Some(1), at(250)),
            Gate::Wait(Duration::from_millis(50))
        );
        backoff.reset("ns/a");
        assert_eq!(backoff.failures("ns/a"), 0);
        assert_eq!(backoff.gate("ns/a", Some(1), at(250)), Gate::Proceed);
        assert_eq!(
            backoff.failed("ns/a", Some(1), at(250)),
            Duration::from_millis(100),
            "success starts the schedule over"
        );
    }
}
