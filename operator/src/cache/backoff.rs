//! The delay before restarting a failed watch: 200 ms doubling to a 4 s cap, each delay
//! jittered down to as little as half, and reset once the watch has delivered a change.
//!
//! Why not kube's `default_backoff()`: its client-go reflector parameters (800 ms doubling to
//! 30 s, reset only after 120 s without an error) kept the operator blind for 47.9 s after a
//! 30 s API server outage — the delays grow while the server is down and the first attempt
//! after its return waits out the last one. A 4 s cap bounds that wait at 4 s; the cost is one
//! list request per watch every 2–4 s while the server stays down, which is nothing next to
//! what a returning API server serves anyway.
//!
//! Why not `StreamBackoff` with a backon builder (what kube uses inside): it resets on every
//! `Ok` item, and a fresh watcher's first item, `Event::Init`, is yielded *before* its list
//! request is sent, so the delay would never grow past the first step. The reset must wait
//! for the watch to work (see [`super::relisting`]); [`WatchBackoff`] leaves that call to its
//! user. It is small enough that
//! owning it (deterministic, testable with the jitter injected) beats adding a dependency.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Delay before the first retry.
pub const FIRST_DELAY: Duration = Duration::from_millis(200);

/// Longest delay between two attempts: the most a watch waits after the API server returns.
pub const MAX_DELAY: Duration = Duration::from_secs(4);

/// Exponential backoff for restarting a watch: see the module documentation.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    first: Duration,
    cap: Duration,
    failures: u32,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self::new(FIRST_DELAY, MAX_DELAY)
    }
}

impl WatchBackoff {
    /// Doubling from `first` up to `cap`.
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap: cap.max(first),
            failures: 0,
        }
    }

    /// The delay the next failure earns before jitter: `first · 2^failures`, at most the cap.
    pub fn nominal(&self) -> Duration {
        crate::backoff::delay(self.failures.saturating_add(1), self.first, self.cap)
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_with(random_unit())
    }

    /// As [`WatchBackoff::next_delay`] with the jitter given: `unit` in `[0, 1)` picks a delay
    /// between half the nominal one and all of it ("equal jitter"), so operators that lost the
    /// same API server do not all come back in the same instant, and no delay exceeds the cap.
    pub fn next_delay_with(&mut self, unit: f64) -> Duration {
        let nominal = self.nominal();
        self.failures = self.failures.saturating_add(1);
        let half = nominal / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Back to the first delay: call it when the watch has listed successfully.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A number in `[0, 1)` that differs between calls and processes: std's `RandomState` is seeded
/// randomly per process and per instance, which is all jitter needs.
fn random_unit() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    // The top 53 bits fill an f64's mantissa exactly.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[test]
    fn doubles_from_200ms_to_the_4s_cap() {
        let mut backoff = WatchBackoff::default();
        let nominal: Vec<Duration> = (0..8)
            .map(|_| {
                let nominal = backoff.nominal();
                backoff.next_delay_with(0.999_999);
                nominal
            })
            .collect();
        assert_eq!(
            nominal,
            [
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(4000),
                ms(4000),
                ms(4000)
            ]
        );
    }

    #[test]
    fn jitter_stays_between_half_the_delay_and_the_delay() {
        let mut low = WatchBackoff::default();
        let mut high = WatchBackoff::default();
        for _ in 0..10 {
            let nominal = low.nominal();
            assert_eq!(low.next_delay_with(0.0), nominal / 2);
            let top = high.next_delay_with(0.999_999);
            assert!(top <= nominal && top > nominal.mul_f64(0.99), "{top:?}");
        }
        // Out-of-range jitter cannot push a delay past the cap.
        assert_eq!(WatchBackoff::default().next_delay_with(7.0), ms(200));
        for _ in 0..100 {
            let delay = WatchBackoff::new(ms(4000), ms(4000)).next_delay();
            assert!(delay >= ms(2000) && delay <= MAX_DELAY, "{delay:?}");
        }
    }

    #[test]
    fn reset_starts_over_and_many_failures_do_not_overflow() {
        let mut backoff = WatchBackoff::default();
        for _ in 0..1000 {
            backoff.next_delay_with(0.5);
        }
        assert_eq!(backoff.nominal(), MAX_DELAY);
        backoff.reset();
        assert_eq!(backoff.nominal(), FIRST_DELAY);
    }
}
