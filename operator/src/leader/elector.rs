//! The I/O half of leader election: reads and writes one `coordination.k8s.io/v1` Lease around
//! the decisions of [`super::decide`], and keeps `leader_election_master_status` current.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::decide::{self, Action, Observation, Timing};
use super::metrics::MasterStatus;

/// Which lease, who this process is, and how the lease is held.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    /// The Lease's name (`--leader-election-id`), also the metric's `name` label.
    pub lease_name: String,
    /// The Lease's namespace.
    pub namespace: String,
    /// This process's identity, unique among the candidates (`<hostname>_<uuid>`).
    pub identity: String,
    /// Lease duration, renew deadline and retry period.
    pub timing: Timing,
}

/// Why leader election stopped this process.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// RBAC refuses what leader election needs; retrying would not help.
    #[error(
        "RBAC: not allowed to read or write Lease {namespace}/{name} ({message}); \
         grant get, create and update on leases.coordination.k8s.io in {namespace}"
    )]
    Forbidden {
        /// The lease's namespace.
        namespace: String,
        /// The lease's name.
        name: String,
        /// The API server's message.
        message: String,
    },
    /// No renewal succeeded within the renew deadline, or another candidate took the lease.
    #[error("leader election lost: {0}")]
    Lost(String),
}

/// One candidate for one lease.
pub struct Elector {
    leases: Api<Lease>,
    config: ElectionConfig,
    observed: Option<Observation>,
    /// The Lease as last read or written: a write replaces it, carrying its resourceVersion.
    lease: Option<Lease>,
    status: MasterStatus,
}

impl Elector {
    /// A candidate that does not hold the lease yet; `status` reads 0 from here on.
    pub fn new(client: Client, config: ElectionConfig, status: MasterStatus) -> Self {
        status.set(false);
        Self {
            leases: Api::namespaced(client, &config.namespace),
            config,
            observed: None,
            lease: None,
            status,
        }
    }

    /// Whether the lease, as last seen, names this process.
    pub fn is_leader(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|observed| observed.holder() == self.config.identity)
    }

    /// Tries until this process holds the lease (`Ok(true)`) or `shutdown` is cancelled
    /// (`Ok(false)`). Fails only when RBAC refuses the Lease.
    pub async fn acquire(&mut self, shutdown: &CancellationToken) -> Result<bool, ElectionError> {
        let mut last_holder = None;
        loop {
            // Bounded, so a hung connection cannot stall a candidate forever.
            let timeout = self.config.timing.renew_deadline;
            let attempt = tokio::select! {
                attempt = tokio::time::timeout(timeout, self.attempt()) => attempt,
                () = shutdown.cancelled() => return Ok(false),
            };
            match attempt {
                Err(_) => tracing::warn!(?timeout, "acquiring the lease: no answer; retrying"),
                Ok(Ok(true)) => {
                    self.status.set(true);
                    tracing::info!(
                        lease = %self.config.lease_name,
                        identity = %self.config.identity,
                        transitions = ?self.observed.as_ref().and_then(|o| o.spec().lease_transitions),
                        "acquired the lease: this replica is the leader"
                    );
                    return Ok(true);
                }
                Ok(Ok(false)) => {
                    let holder = self.observed.as_ref().map(|o| o.holder().to_owned());
                    if holder != last_holder {
                        tracing::info!(lease = %self.config.lease_name, holder = ?holder,
                                       "standing by: another replica holds the lease");
                        last_holder = holder;
                    }
                }
                Ok(Err(error)) => self.forbidden_or_log(error, "acquiring the lease")?,
            }
            let pause = self.config.timing.acquire_pause(random_unit());
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.cancelled() => return Ok(false),
            }
        }
    }

    /// Renews the lease every retry period for as long as it can; returns why it stopped: no
    /// renewal succeeded within the renew deadline after the last successful one was sent, or
    /// another candidate holds the lease. The status reads 0 from then on.
    ///
    /// The deadline is counted from when the last successful renewal was *sent*, which is no
    /// later than when the API server stored it and so than when any candidate saw it: this
    /// process stops at least `lease duration - renew deadline` before a candidate may take
    /// over, however slow the answer was.
    pub async fn hold(&mut self) -> ElectionError {
        let timing = self.config.timing;
        let mut renewed_at = Instant::now();
        loop {
            tokio::time::sleep(timing.retry_period).await;
            let deadline = renewed_at + timing.renew_deadline;
            match tokio::time::timeout_at(deadline, self.renew_before_deadline()).await {
                Ok(Ok(sent)) => renewed_at = sent,
                Ok(Err(lost)) => return self.lost(lost),
                Err(_) => {
                    return self.lost(ElectionError::Lost(format!(
                        "no renewal succeeded within the renew deadline ({:?})",
                        timing.renew_deadline
                    )));
                }
            }
        }
    }

    /// Gives the lease up, as client-go's `ReleaseOnCancel` does, so a standby takes over at its
    /// next attempt instead of after the lease duration. Call it only once nothing acts on the
    /// leadership any more. Bounded by the renew deadline; a failure only costs the standby
    /// the wait for the lease to run out.
    pub async fn release(&mut self) {
        self.status.set(false);
        let deadline = self.config.timing.renew_deadline;
        match tokio::time::timeout(deadline, self.release_until_done()).await {
            Ok(Ok(true)) => tracing::info!(lease = %self.config.lease_name, "released the lease"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                tracing::warn!(error = %error, "could not release the lease: standbys wait for it to run out");
            }
            Err(_) => tracing::warn!(
                "releasing the lease took longer than the renew deadline: standbys wait for it to run out"
            ),
        }
    }

    /// Retries a renewal every retry period until one succeeds (returning when it was sent) or
    /// the lease is seen held by another.
    async fn renew_before_deadline(&mut self) -> Result<Instant, ElectionError> {
        loop {
            let sent = Instant::now();
            match self.attempt().await {
                Ok(true) => return Ok(sent),
                Ok(false) if !self.is_leader() => {
                    let holder = self.observed.as_ref().map(|o| o.holder().to_owned());
                    return Err(ElectionError::Lost(format!(
                        "the lease is held by {holder:?}"
                    )));
                }
                Ok(false) => tracing::debug!("renewing the lease: a conflicting write; retrying"),
                Err(error) => {
                    tracing::warn!(error = %error, "renewing the lease failed; retrying");
                }
            }
            tokio::time::sleep(self.config.timing.retry_period).await;
        }
    }

    fn lost(&self, error: ElectionError) -> ElectionError {
        self.status.set(false);
        error
    }

    /// One `tryAcquireOrRenew`: whether this process holds the lease after it.
    async fn attempt(&mut self) -> Result<bool, kube::Error> {
        let now = Instant::now();
        // Fast path: the leader writes over the Lease it last wrote, without reading it first.
        // A conflict (someone else wrote since) falls back to reading it.
        if self.is_leader()
            && let Some(observed) = self.observed.as_ref().filter(|o| o.is_valid(now))
            && let Action::Write(spec) = decide::decide(
                observed,
                now,
                Timestamp::now(),
                &self.config.identity,
                &self.config.timing,
            )
            && self.write(spec, now).await?
        {
            return Ok(true);
        }
        let Some(current) = self.leases.get_opt(&self.config.lease_name).await? else {
            let spec = decide::claim(&self.config.identity, Timestamp::now(), &self.config.timing);
            return self.create(spec, now).await;
        };
        let spec = current.spec.clone().unwrap_or_default();
        self.lease = Some(current);
        self.observed = Some(Observation::after(self.observed.take(), spec, now));
        let Some(observed) = self.observed.as_ref() else {
            return Ok(false);
        };
        match decide::decide(
            observed,
            now,
            Timestamp::now(),
            &self.config.identity,
            &self.config.timing,
        ) {
            Action::Wait { .. } => Ok(false),
            Action::Write(spec) => self.write(spec, now).await,
        }
    }

    /// Replaces the cached Lease's spec with `spec`; `false` on a conflict.
    async fn write(&mut self, spec: LeaseSpec, now: Instant) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.lease.clone() else {
            return Ok(false);
        };
        lease.spec = Some(spec);
        let result = self
            .leases
            .replace(&self.config.lease_name, &PostParams::default(), &lease)
            .await;
        self.stored(result, now)
    }

    async fn create(&mut self, spec: LeaseSpec, now: Instant) -> Result<bool, kube::Error> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.lease_name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec),
        };
        let result = self.leases.create(&PostParams::default(), &lease).await;
        self.stored(result, now)
    }

    /// Records what the API server stored; a conflict (another writer got there first) is no
    /// error, only a lost race.
    fn stored(
        &mut self,
        result: Result<Lease, kube::Error>,
        now: Instant,
    ) -> Result<bool, kube::Error> {
        match result {
            Ok(stored) => {
                let spec = stored.spec.clone().unwrap_or_default();
                self.lease = Some(stored);
                self.observed = Some(Observation::after(self.observed.take(), spec, now));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.is_conflict() || status.is_already_exists() => {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Writes the release until it is stored; `false` when the lease is not this process's.
    async fn release_until_done(&mut self) -> Result<bool, kube::Error> {
        loop {
            let Some(current) = self.leases.get_opt(&self.config.lease_name).await? else {
                return Ok(false);
            };
            let spec = current.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
                return Ok(false);
            }
            self.lease = Some(current);
            if self
                .write(decide::released(&spec, Timestamp::now()), Instant::now())
                .await?
            {
                return Ok(true);
            }
        }
    }

    fn forbidden_or_log(&self, error: kube::Error, doing: &str) -> Result<(), ElectionError> {
        match error {
            kube::Error::Api(status) if status.is_forbidden() => Err(ElectionError::Forbidden {
                namespace: self.config.namespace.clone(),
                name: self.config.lease_name.clone(),
                message: status.message,
            }),
            error => {
                tracing::warn!(error = %error, "{doing} failed; retrying");
                Ok(())
            }
        }
    }
}

/// A number in `[0, 1)` that differs between calls and processes (std's `RandomState` is seeded
/// randomly per instance), which is all jitter needs.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    // The top 53 bits fill an f64's mantissa exactly.
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests;
