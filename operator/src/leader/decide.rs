//! The pure half of leader election: client-go's `tryAcquireOrRenew` decision, the timing rules
//! and their validation. No I/O: [`super::elector`] reads and writes the Lease around it.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use tokio::time::Instant;

/// client-go's `JitterFactor`: a failed acquire waits `retry · (1 + 1.2 · rand)`, and the retry
/// period must fit 1.2 times into the renew deadline.
pub const JITTER_FACTOR: f64 = 1.2;

/// How long a lease lasts and how its holder keeps it (client-go's names and defaults:
/// 15 s / 10 s / 2 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a lease stays valid after a candidate last saw it change; written into the
    /// Lease as `leaseDurationSeconds` (whole seconds, the fraction is dropped as client-go does).
    pub lease_duration: Duration,
    /// The leader gives up when no renewal has succeeded this long after the last successful
    /// one was sent: it stops before any candidate can see the lease as expired.
    pub renew_deadline: Duration,
    /// The pause between attempts, to acquire or to renew.
    pub retry_period: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Why a [`Timing`] cannot fence a leader.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    /// The Lease stores whole seconds.
    #[error("the lease duration ({0:?}) must be at least 1s")]
    LeaseTooShort(Duration),
    /// A leader must stop before its lease can expire for the others.
    #[error(
        "the lease duration ({lease_duration:?}) must be longer than the renew deadline ({renew_deadline:?})"
    )]
    DeadlineNotShorter {
        /// The lease duration given.
        lease_duration: Duration,
        /// The renew deadline given.
        renew_deadline: Duration,
    },
    /// A leader must get more than one (jittered) attempt to renew before its deadline.
    #[error(
        "the renew deadline ({renew_deadline:?}) must be longer than {JITTER_FACTOR} × the retry period ({retry_period:?})"
    )]
    RetryTooSlow {
        /// The renew deadline given.
        renew_deadline: Duration,
        /// The retry period given.
        retry_period: Duration,
    },
    /// Zero would retry in a hot loop.
    #[error("the retry period must be longer than 0s")]
    NoRetryPeriod,
}

impl Timing {
    /// client-go's rule: lease duration > renew deadline > 1.2 × retry period > 0.
    pub fn validate(&self) -> Result<(), TimingError> {
        if self.lease_duration_seconds() < 1 {
            return Err(TimingError::LeaseTooShort(self.lease_duration));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(TimingError::DeadlineNotShorter {
                lease_duration: self.lease_duration,
                renew_deadline: self.renew_deadline,
            });
        }
        if self.retry_period.is_zero() {
            return Err(TimingError::NoRetryPeriod);
        }
        if self.renew_deadline.as_secs_f64() <= JITTER_FACTOR * self.retry_period.as_secs_f64() {
            return Err(TimingError::RetryTooSlow {
                renew_deadline: self.renew_deadline,
                retry_period: self.retry_period,
            });
        }
        Ok(())
    }

    /// `leaseDurationSeconds` as written into the Lease.
    pub fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs()).unwrap_or(i32::MAX)
    }

    /// How long to wait after a failed acquire: the retry period plus up to 1.2 times it, so
    /// candidates that lost the same race do not all come back in the same instant. `unit` is
    /// a random number in `[0, 1)`.
    pub fn acquire_pause(&self, unit: f64) -> Duration {
        self.retry_period
            + self
                .retry_period
                .mul_f64(JITTER_FACTOR * unit.clamp(0.0, 1.0))
    }
}

/// The lease as a candidate knows it: its spec as last read or written, and since when (on the
/// local monotonic clock) the spec has been exactly that.
///
/// Validity is judged from that local instant, never from the Lease's `renewTime`: a holder
/// that stops renewing is seen as gone `leaseDurationSeconds` after its last visible change,
/// whatever the clocks of the two nodes say (client-go's `observedTime`).
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    spec: LeaseSpec,
    since: Instant,
}

impl Observation {
    /// What is known after reading or writing `spec` at `now`: a spec seen before keeps the
    /// instant it was first seen (an unrenewed lease runs out), a changed one starts over.
    pub fn after(previous: Option<Self>, spec: LeaseSpec, now: Instant) -> Self {
        match previous {
            Some(previous) if previous.spec == spec => previous,
            _ => Self { spec, since: now },
        }
    }

    /// The holder's identity; empty when nobody holds the lease (a release writes "").
    pub fn holder(&self) -> &str {
        self.spec.holder_identity.as_deref().unwrap_or_default()
    }

    /// The spec as seen.
    pub fn spec(&self) -> &LeaseSpec {
        &self.spec
    }

    /// Whether the lease still runs at `now` for whoever holds it.
    pub fn is_valid(&self, now: Instant) -> bool {
        let seconds = self.spec.lease_duration_seconds.unwrap_or(0).max(0);
        let lasts = Duration::from_secs(u64::try_from(seconds).unwrap_or(0));
        self.since + lasts > now
    }
}

/// What to do with a lease just read.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Another candidate holds a lease that has not run out: leave it alone.
    Wait {
        /// Who holds it.
        holder: String,
    },
    /// Write this spec over the lease as read. The write carries the read's resourceVersion,
    /// so of two candidates writing at once, one gets a conflict and stays a candidate.
    Write(LeaseSpec),
}

/// client-go's decision, for a candidate `me` that read the lease (`observed`) at `now`
/// (`wall`: the same instant on the wall clock, for the times written into the Lease).
///
/// - held by another and still valid: [`Action::Wait`];
/// - held by `me`: renew, keeping `acquireTime` and `leaseTransitions`;
/// - free (holder "", as a release leaves it) or run out: take it, counting one transition.
pub fn decide(
    observed: &Observation,
    now: Instant,
    wall: Timestamp,
    me: &str,
    timing: &Timing,
) -> Action {
    let holder = observed.holder();
    let mine = holder == me;
    if !holder.is_empty() && !mine && observed.is_valid(now) {
        return Action::Wait {
            holder: holder.to_owned(),
        };
    }
    let previous = observed.spec();
    let mut spec = claim(me, wall, timing);
    if mine {
        spec.acquire_time.clone_from(&previous.acquire_time);
        spec.lease_transitions = previous.lease_transitions;
    } else {
        spec.lease_transitions = Some(previous.lease_transitions.unwrap_or(0).saturating_add(1));
    }
    Action::Write(spec)
}

/// A lease held by `me` from `wall` on, as a create writes it (no transitions yet).
pub fn claim(me: &str, wall: Timestamp, timing: &Timing) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(me.to_owned()),
        lease_duration_seconds: Some(timing.lease_duration_seconds()),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: Some(0),
        ..LeaseSpec::default()
    }
}

/// What a graceful release writes over `held` (client-go's `ReleaseOnCancel`): no holder, and a
/// one-second duration for candidates that do not treat an empty holder as free.
pub fn released(held: &LeaseSpec, wall: Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(String::new()),
        lease_duration_seconds: Some(1),
        acquire_time: Some(MicroTime(wall)),
        renew_time: Some(MicroTime(wall)),
        lease_transitions: held.lease_transitions,
        ..LeaseSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me_1";
    const OTHER: &str = "other_2";

    fn secs(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    fn wall(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).expect("a valid timestamp")
    }

    fn held_by(holder: &str, duration: i32, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(duration),
            acquire_time: Some(MicroTime(wall(-100))),
            renew_time: Some(MicroTime(wall(-1))),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn timing_validation_table() {
        let timing = |lease, deadline, retry_ms| Timing {
            lease_duration: secs(lease),
            renew_deadline: secs(deadline),
            retry_period: Duration::from_millis(retry_ms),
        };
        let cases = [
            (Timing::default(), true),
            (timing(15, 10, 2000), true),
            (
                Timing {
                    lease_duration: Duration::from_millis(900),
                    ..timing(15, 0, 0)
                },
                false,
            ),
            (timing(10, 10, 2000), false),
            (timing(10, 12, 2000), false),
            (timing(15, 10, 0), false),
            // 1.2 × 8.4 s = 10.08 s: the deadline would allow only one attempt.
            (timing(15, 10, 8400), false),
            (timing(15, 10, 8300), true),
        ];
        for (timing, valid) in cases {
            assert_eq!(
                timing.validate().is_ok(),
                valid,
                "{timing:?}: {:?}",
                timing.validate()
            );
        }
    }

    #[test]
    fn acquire_pauses_range_from_the_retry_period_to_2_2_times_it() {
        let timing = Timing::default();
        assert_eq!(timing.acquire_pause(0.0), secs(2));
        assert_eq!(timing.acquire_pause(0.5), Duration::from_millis(3200));
        assert_eq!(timing.acquire_pause(1.0), Duration::from_millis(4400));
        assert_eq!(timing.acquire_pause(7.0), Duration::from_millis(4400));
    }

    #[test]
    fn an_unchanged_lease_keeps_the_instant_it_was_first_seen() {
        let t0 = Instant::now();
        let first = Observation::after(None, held_by(OTHER, 15, 3), t0);
        let again = Observation::after(Some(first.clone()), held_by(OTHER, 15, 3), t0 + secs(9));
        assert_eq!(again, first);
        assert!(again.is_valid(t0 + secs(14)));
        assert!(
            !again.is_valid(t0 + secs(15)),
            "not renewed for the lease duration"
        );

        // A renewal (a new renewTime) starts the clock over.
        let mut renewed = held_by(OTHER, 15, 3);
        renewed.renew_time = Some(MicroTime(wall(5)));
        let renewed = Observation::after(Some(again), renewed, t0 + secs(10));
        assert!(renewed.is_valid(t0 + secs(24)));
    }

    /// One row: what was observed (spec, seconds since it was first seen), who decides, and
    /// the expected action as (holder written, transitions written) or None for Wait.
    #[test]
    fn decision_table() {
        let t0 = Instant::now();
        let timing = Timing::default();
        let released = released(&held_by(OTHER, 15, 4), wall(0));
        let no_duration = LeaseSpec {
            lease_duration_seconds: None,
            ..held_by(OTHER, 15, 2)
        };
        let cases: [(&str, LeaseSpec, u64, Option<i32>); 8] = [
            ("another's fresh lease", held_by(OTHER, 15, 4), 0, None),
            (
                "another's lease, 14 s unchanged",
                held_by(OTHER, 15, 4),
                14,
                None,
            ),
            (
                "another's lease ran out",
                held_by(OTHER, 15, 4),
                15,
                Some(5),
            ),
            ("a released lease, at once", released, 0, Some(5)),
            ("my own lease: renew", held_by(ME, 15, 4), 3, Some(4)),
            (
                "my own lease, run out: still mine",
                held_by(ME, 15, 4),
                30,
                Some(4),
            ),
            (
                "another's lease without a duration",
                no_duration,
                0,
                Some(3),
            ),
            (
                "no transitions recorded",
                LeaseSpec {
                    lease_transitions: None,
                    ..held_by(OTHER, 1, 0)
                },
                1,
                Some(1),
            ),
        ];
        for (name, spec, age, want) in cases {
            let observed = Observation::after(None, spec.clone(), t0);
            let action = decide(
                &observed,
                t0 + secs(age),
                wall(age.cast_signed()),
                ME,
                &timing,
            );
            match (action, want) {
                (Action::Wait { holder }, None) => assert_eq!(holder, OTHER, "{name}"),
                (Action::Write(written), Some(transitions)) => {
                    assert_eq!(written.holder_identity.as_deref(), Some(ME), "{name}");
                    assert_eq!(written.lease_transitions, Some(transitions), "{name}");
                    assert_eq!(written.lease_duration_seconds, Some(15), "{name}");
                    assert_eq!(
                        written.renew_time,
                        Some(MicroTime(wall(age.cast_signed()))),
                        "{name}"
                    );
                    let kept = spec.holder_identity.as_deref() == Some(ME);
                    let acquired = if kept {
                        spec.acquire_time.clone()
                    } else {
                        written.renew_time.clone()
                    };
                    assert_eq!(written.acquire_time, acquired, "{name}: acquireTime");
                }
                (action, want) => panic!("{name}: got {action:?}, wanted {want:?}"),
            }
        }
    }

    #[test]
    fn a_release_frees_the_lease_and_keeps_the_count_of_transitions() {
        let spec = released(&held_by(ME, 15, 7), wall(3));
        assert_eq!(spec.holder_identity.as_deref(), Some(""));
        assert_eq!(spec.lease_duration_seconds, Some(1));
        assert_eq!(spec.lease_transitions, Some(7));
        let observed = Observation::after(None, spec, Instant::now());
        assert_eq!(observed.holder(), "");
    }

    #[test]
    fn a_claim_starts_with_no_transitions() {
        let spec = claim(ME, wall(0), &Timing::default());
        assert_eq!(spec.holder_identity.as_deref(), Some(ME));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(spec.acquire_time, spec.renew_time);
    }
}
