//! Two operator replicas with `--leader-elect` on one namespace, on a control plane of their
//! own (the trials kill and restart operators for minutes; they keep out of the other suites).
//!
//! Asserts on the cluster's state, the Lease and the operators' `/metrics`. The bounds on how
//! soon a standby takes over are generous (lease duration plus slack on a loaded machine);
//! the measured times are logged for the record.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::observe::{self, ActiveCountRecorder};
use e2e::product::{self, Operator};
use e2e::suite::{self, Env, Scenario};
use e2e::{Cluster, Options, wait};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::watcher;

/// Kills per scenario (the issue asks for 10). `PODSCALER_E2E_LEADER_TRIALS` runs fewer (or
/// more) when time is short.
const TRIALS: usize = 10;

/// Pods per PodScaler: enough slow-start batches that a kill lands mid-way.
const COUNT: usize = 60;

/// The operators' Lease (`--leader-election-id` default).
const LEASE: &str = "podscaler-operator-leader";

/// client-go's default lease duration, which the operators run with.
const LEASE_DURATION: Duration = Duration::from_secs(15);

/// How soon a standby must lead after the leader was killed: the lease duration, the longest
/// jittered retry (4.4 s) and generous slack for a loaded 2-core machine. Not a performance
/// assertion: it fails only if the standby waits for far more than the lease.
const TAKEOVER: Duration = Duration::from_secs(15 + 5 + 25);

/// Generous bound for convergence; not a performance assertion.
const CONVERGE: Duration = Duration::from_secs(180);

fn main() -> ExitCode {
    let scenarios: &[(&str, Scenario)] = &[
        ("l01_kill_the_leader_mid_scale_up", |env| {
            Box::pin(kill_mid_scale_up(env))
        }),
        ("l02_kill_the_leader_mid_churn", |env| {
            Box::pin(kill_mid_churn(env))
        }),
        ("l03_graceful_handover_on_sigterm", |env| {
            Box::pin(graceful_handover(env))
        }),
    ];
    suite::main(scenarios, Options::default(), |cluster| {
        Box::pin(setup(cluster))
    })
}

async fn setup(cluster: Arc<Cluster>) -> anyhow::Result<()> {
    product::install_crd(&cluster.client()).await
}

fn trials() -> usize {
    std::env::var("PODSCALER_E2E_LEADER_TRIALS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(TRIALS)
}

fn scaler_manifest(name: &str, count: usize, app: &str) -> String {
    format!(
        "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: {name}\nspec:\n  count: {count}\n  selector:\n    app: {app}\n"
    )
}

/// Two replicas contending for one Lease, and which of them leads.
struct Replicas {
    env: Env,
    operators: [Operator; 2],
    leader: usize,
}

impl Replicas {
    /// Starts two replicas; returns once one of them leads.
    async fn start(env: &Env) -> anyhow::Result<Self> {
        let first = start_replica(env).await?;
        let second = start_replica(env).await?;
        let mut replicas = Self {
            env: env.clone(),
            operators: [first, second],
            leader: 0,
        };
        replicas.leader = replicas.wait_for_leader(TAKEOVER).await?;
        Ok(replicas)
    }

    /// The replica whose `leader_election_master_status` is 1, once exactly one says so.
    async fn wait_for_leader(&self, within: Duration) -> anyhow::Result<usize> {
        wait::until("one replica to lead", within, || async {
            let mut leading = Vec::new();
            for (index, operator) in self.operators.iter().enumerate() {
                if master_status(operator).await? == 1.0 {
                    leading.push(index);
                }
            }
            match leading.as_slice() {
                [one] => Ok(*one),
                other => anyhow::bail!("replicas leading: {other:?}"),
            }
        })
        .await
    }

    /// `kill -9` of the leader; returns when it was killed.
    fn kill_leader(&mut self) -> anyhow::Result<Instant> {
        self.operators[self.leader].kill_hard()?;
        Ok(Instant::now())
    }

    /// Waits until the standby leads, returns how long that took after `killed_at`, and
    /// replaces the killed replica with a fresh standby, as its Deployment would.
    async fn take_over(&mut self, killed_at: Instant) -> anyhow::Result<Duration> {
        let killed = self.leader;
        let standby = 1 - killed;
        wait::until("the standby to lead", TAKEOVER, || async {
            let status = master_status(&self.operators[standby]).await?;
            anyhow::ensure!(status == 1.0, "leader_election_master_status {status}");
            Ok(())
        })
        .await
        .map_err(|error| {
            error.context(format!(
                "standby log:\n{}",
                self.operators[standby].log_tail(30)
            ))
        })?;
        let took = killed_at.elapsed();
        self.leader = standby;
        self.operators[killed] = start_replica(&self.env).await?;
        Ok(took)
    }
}

async fn start_replica(env: &Env) -> anyhow::Result<Operator> {
    let namespace = format!("--leader-election-namespace={}", env.namespace);
    Operator::start(
        &env.cluster,
        &env.namespace,
        &["--leader-elect", &namespace],
    )
    .await
}

async fn master_status(operator: &Operator) -> anyhow::Result<f64> {
    let page = operator.metrics().await?;
    observe::sample(&page, "leader_election_master_status", &[("name", LEASE)])
        .context("no leader_election_master_status on /metrics")
}

async fn lease(env: &Env) -> anyhow::Result<LeaseSpec> {
    let leases: Api<Lease> = Api::namespaced(env.client(), &env.namespace);
    Ok(leases.get(LEASE).await?.spec.unwrap_or_default())
}

/// Resolves at the first watch event of an active pod that did not exist when it started:
/// the moment the leader is mid-way through creating pods.
struct NewPodWatch {
    events: futures::stream::BoxStream<'static, Result<watcher::Event<Pod>, watcher::Error>>,
    known: HashSet<String>,
}

impl NewPodWatch {
    /// Starts watching; returns once the pods that exist now are known.
    async fn start(env: &Env, selector: &str) -> anyhow::Result<Self> {
        let api: Api<Pod> = Api::namespaced(env.client(), &env.namespace);
        let mut watch = Self {
            events: watcher(api, watcher::Config::default().labels(selector)).boxed(),
            known: HashSet::new(),
        };
        while let Some(event) = watch.events.next().await {
            match event? {
                watcher::Event::InitApply(pod) => {
                    watch.known.insert(uid(&pod));
                }
                watcher::Event::InitDone => return Ok(watch),
                _ => {}
            }
        }
        anyhow::bail!("the pod watch ended before its initial list")
    }

    /// Waits for a new active pod.
    async fn first_new(mut self) -> anyhow::Result<()> {
        while let Some(event) = self.events.next().await {
            if let Ok(watcher::Event::Apply(pod)) = event
                && observe::is_active(&pod)
                && !self.known.contains(&uid(&pod))
            {
                return Ok(());
            }
        }
        anyhow::bail!("the pod watch ended")
    }
}

fn uid(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// What one kill trial saw.
struct Trial {
    active_at_kill: usize,
    takeover: Duration,
}

/// One kill trial: watches for new pods under `selector`, runs `provoke` (what makes the leader
/// create pods), kills the leader at the first new pod, then checks that the standby converges
/// to `COUNT` with never more than `COUNT` active pods on the way. Returns what `provoke` did
/// too: a task of its own that must still run during the kill comes back unfinished.
async fn kill_at_first_new_pod<T>(
    replicas: &mut Replicas,
    recorder: &mut ActiveCountRecorder,
    selector: &str,
    provoke: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<(Trial, T)> {
    let env = replicas.env.clone();
    let new_pod = NewPodWatch::start(&env, selector).await?;
    let mark = recorder.mark();
    let provoked = provoke.await?;
    tokio::time::timeout(CONVERGE, new_pod.first_new())
        .await
        .context("waiting for the leader to create a pod")??;
    let killed_at = replicas.kill_leader()?;
    let active_at_kill = observe::active_pods(&env.client(), &env.namespace, selector)
        .await?
        .len();
    let takeover = replicas.take_over(killed_at).await?;
    tokio::time::timeout(CONVERGE, recorder.wait_for(|count| count == COUNT))
        .await
        .with_context(|| format!("converging to {COUNT} after the kill"))??;
    let highest = recorder.max_since(mark).context("no pod events recorded")?;
    anyhow::ensure!(
        highest <= COUNT,
        "active pods reached {highest}, above the count of {COUNT} (active when the leader \
         was killed: {active_at_kill})"
    );
    let trial = Trial {
        active_at_kill,
        takeover,
    };
    Ok((trial, provoked))
}

/// Most trials must have killed the leader before it had finished: else nothing was tested.
fn ensure_mid_way(trials: &[Trial]) -> anyhow::Result<()> {
    let mid_way = trials
        .iter()
        .filter(|trial| trial.active_at_kill < COUNT)
        .count();
    let takeovers: Vec<_> = trials.iter().map(|trial| trial.takeover).collect();
    let at_kill: Vec<_> = trials.iter().map(|trial| trial.active_at_kill).collect();
    tracing::info!(
        ?takeovers,
        ?at_kill,
        "kills: takeover times and active pods at each kill"
    );
    anyhow::ensure!(
        mid_way * 2 > trials.len(),
        "only {mid_way} of {} kills came before the leader had finished (active at each kill: \
         {at_kill:?}): too little was tested",
        trials.len()
    );
    Ok(())
}

/// Two replicas, and a PodScaler `app` (selecting `app=<app>`) the leader has converged to
/// `COUNT`, with a recorder of its active pods.
async fn converged_under_a_leader(
    env: &Env,
    app: &str,
) -> anyhow::Result<(Replicas, ActiveCountRecorder)> {
    let replicas = Replicas::start(env).await?;
    let mut recorder =
        ActiveCountRecorder::start(&env.client(), &env.namespace, &format!("app={app}")).await?;
    env.apply(&scaler_manifest(app, COUNT, app)).await?;
    tokio::time::timeout(CONVERGE, recorder.wait_for(|count| count == COUNT))
        .await
        .context("waiting for the count")??;
    Ok((replicas, recorder))
}

/// (1) `kill -9` of the leader while it scales a PodScaler from 0 to `COUNT`.
async fn kill_mid_scale_up(env: Env) -> anyhow::Result<()> {
    let mut replicas = Replicas::start(&env).await?;
    let mut results = Vec::new();
    for trial in 0..trials() {
        let app = format!("up-{trial}");
        let selector = format!("app={app}");
        let mut recorder =
            ActiveCountRecorder::start(&env.client(), &env.namespace, &selector).await?;
        let manifest = scaler_manifest(&app, COUNT, &app);
        let create = env.apply(&manifest);
        let (result, _) = kill_at_first_new_pod(&mut replicas, &mut recorder, &selector, create)
            .await
            .with_context(|| format!("trial {trial}"))?;
        results.push(result);
        // Out of the next trial's way: the PodScaler goes, its pods with it (garbage collection).
        env.kubectl(&["delete", "podscaler", &app, "--wait=false"])
            .await?;
    }
    ensure_mid_way(&results)
}

/// (2) `kill -9` of the leader while it replaces every pod of a converged PodScaler, deleted at
/// once.
async fn kill_mid_churn(env: Env) -> anyhow::Result<()> {
    const APP: &str = "churn";
    let selector = format!("app={APP}");
    let (mut replicas, mut recorder) = converged_under_a_leader(&env, APP)
        .await
        .context("converging before the churn")?;
    let pods: Api<Pod> = Api::namespaced(env.client(), &env.namespace);
    let mut results = Vec::new();
    for trial in 0..trials() {
        // The API server deletes the pods one by one and the leader replaces them as it sees
        // them go: the kill comes at its first replacement, while the deletions still run.
        let start_deleting = async {
            let (pods, selector) = (pods.clone(), selector.clone());
            Ok(tokio::spawn(async move {
                pods.delete_collection(
                    &DeleteParams::default(),
                    &ListParams::default().labels(&selector),
                )
                .await
            }))
        };
        let (result, deleting) =
            kill_at_first_new_pod(&mut replicas, &mut recorder, &selector, start_deleting)
                .await
                .with_context(|| format!("trial {trial}"))?;
        deleting
            .await
            .context("the deletion task")?
            .context("deleting every pod at once")?;
        results.push(result);
    }
    ensure_mid_way(&results)
}

/// (3) SIGTERM of the leader: it stops reconciling, then releases the Lease, and the standby
/// takes it at its next attempt. Shown by the Lease's history (held, released, taken by the
/// standby, one more transition) and by the standby's `acquireTime` coming before the lease
/// written before the SIGTERM would have run out: an ordering of the Lease's own timestamps.
async fn graceful_handover(env: Env) -> anyhow::Result<()> {
    let (mut replicas, mut recorder) = converged_under_a_leader(&env, "handover")
        .await
        .context("converging before the handover")?;
    let mark = recorder.mark();

    let leases: Api<Lease> = Api::namespaced(env.client(), &env.namespace);
    let history = Arc::new(Mutex::new(Vec::new()));
    let recording = tokio::spawn(record_holders(leases, Arc::clone(&history)));
    // The history starts with the current holder: the watch's initial list is in.
    wait::until("the Lease watch to start", CONVERGE, || async {
        let seen = history.lock().unwrap_or_else(PoisonError::into_inner).len();
        anyhow::ensure!(seen > 0, "nothing seen yet");
        Ok(())
    })
    .await?;
    let before = lease(&env).await?;
    let old_leader = before.holder_identity.clone().unwrap_or_default();
    let stopped_cleanly = replicas.operators[replicas.leader].stop()?;
    let standby = 1 - replicas.leader;
    let after = wait::until("the standby to take the lease", TAKEOVER, || async {
        let spec = lease(&env).await?;
        let holder = spec.holder_identity.clone().unwrap_or_default();
        anyhow::ensure!(
            !holder.is_empty() && holder != old_leader,
            "holder {holder:?}"
        );
        Ok(spec)
    })
    .await?;
    recording.abort();
    let history = std::mem::take(&mut *history.lock().unwrap_or_else(PoisonError::into_inner));

    anyhow::ensure!(stopped_cleanly, "the leader did not exit 0 after SIGTERM");
    anyhow::ensure!(
        master_status(&replicas.operators[standby]).await? == 1.0,
        "the standby holds the lease but does not report leader_election_master_status 1"
    );
    let transitions = (before.lease_transitions, after.lease_transitions);
    anyhow::ensure!(
        transitions.1 == transitions.0.map(|t| t + 1),
        "leaseTransitions went {:?} → {:?}: not one handover",
        transitions.0,
        transitions.1
    );
    let released_between = history
        .iter()
        .skip_while(|holder| **holder != old_leader)
        .find(|holder| **holder != old_leader)
        .is_some_and(String::is_empty);
    anyhow::ensure!(
        released_between,
        "the Lease went {history:?}: no release (empty holder) after {old_leader:?}"
    );
    let would_expire = before
        .renew_time
        .as_ref()
        .map(|time| time.0 + LEASE_DURATION)
        .context("the lease has no renewTime")?;
    let acquired = after.acquire_time.as_ref().context("no acquireTime")?.0;
    tracing::info!(
        before_expiry = ?(would_expire - acquired),
        "the standby acquired the released lease"
    );
    anyhow::ensure!(
        acquired < would_expire,
        "the standby acquired at {acquired}, not before the old lease ran out at {would_expire}"
    );
    // The new leader keeps the count; nothing was created twice across the handover.
    tokio::time::timeout(CONVERGE, recorder.wait_for(|count| count == COUNT))
        .await
        .context("the count after the handover")??;
    let highest = recorder.max_since(mark).unwrap_or(COUNT);
    anyhow::ensure!(
        highest <= COUNT,
        "active pods reached {highest} across the handover"
    );
    Ok(())
}

/// Appends every new holder the Lease has, in order, to `holders` (until aborted).
async fn record_holders(leases: Api<Lease>, holders: Arc<Mutex<Vec<String>>>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={LEASE}"));
    let mut events = std::pin::pin!(watcher(leases, config));
    while let Some(event) = events.next().await {
        if let Ok(watcher::Event::Apply(lease) | watcher::Event::InitApply(lease)) = event {
            let holder = lease
                .spec
                .and_then(|spec| spec.holder_identity)
                .unwrap_or_default();
            let mut holders = holders.lock().unwrap_or_else(PoisonError::into_inner);
            if holders.last() != Some(&holder) {
                holders.push(holder);
            }
        }
    }
}
