//! The operator across a kube-apiserver restart, on a control plane of its own: restarting
//! the API server would break the other suites' scenarios running in parallel.
//!
//! Asserts on the cluster's state, the operator's `/readyz` and its `/metrics` — never on
//! wall time. Instants serve only to tell which `/readyz` answers came while the API server
//! was down; the measured recovery times are logged for the record.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use e2e::cluster::ApiserverRestart;
use e2e::observe::{self, ActiveCountRecorder};
use e2e::product::{self, Operator};
use e2e::suite::{self, Env, Scenario};
use e2e::{Cluster, Options, local_http, wait};
use k8s_openapi::api::core::v1::Pod;

/// Generous bound for convergence on a loaded 2-core machine; not a performance assertion.
const CONVERGE: Duration = Duration::from_secs(180);

/// How long the API server stays down: as long as the outage in issue 10, and short of the
/// kwok nodes' 40 s lease (nodes going NotReady would muddle the scenario).
const DOWN: Duration = Duration::from_secs(20);

/// How often `/readyz` is asked during the restart.
const READYZ_POLL: Duration = Duration::from_millis(200);

const TARGET: usize = 200;

fn main() -> ExitCode {
    let scenarios: &[(&str, Scenario)] = &[("o01_apiserver_restart_mid_scale_up", |env| {
        Box::pin(apiserver_restart_mid_scale_up(env))
    })];
    suite::main(scenarios, Options::default(), |cluster| {
        Box::pin(setup(cluster))
    })
}

async fn setup(cluster: Arc<Cluster>) -> anyhow::Result<()> {
    product::install_crd(&cluster.client()).await
}

/// One `/readyz` answer: when, and the status code (`None`: no answer at all).
type Answer = (Instant, Option<u16>);

async fn apiserver_restart_mid_scale_up(env: Env) -> anyhow::Result<()> {
    let operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    let mut recorder =
        ActiveCountRecorder::start(&env.client(), &env.namespace, "app=outage").await?;
    let page = operator.metrics().await?;
    let relists_before = pod_relists(&page);
    env.apply(&format!(
        "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: outage\nspec:\n  count: {TARGET}\n  selector:\n    app: outage\n"
    ))
    .await?;
    let start = recorder.mark();
    // Restart as soon as the first pods are seen: the operator is mid-way through its
    // slow-start batches.
    tokio::time::timeout(CONVERGE, recorder.wait_for(|count| count >= 1))
        .await
        .context("waiting for the first pod")??;
    let before_outage = recorder.max_since(start).unwrap_or(0);
    anyhow::ensure!(
        before_outage < TARGET,
        "the scale-up finished before the outage ({before_outage} pods): nothing was tested"
    );

    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let poller = tokio::spawn(poll_readyz(operator.health_port(), Arc::clone(&answers)));
    let restart = env.cluster.restart_apiserver(DOWN).await;
    // When the new API server process started, on the clock creationTimestamps use.
    let back = restart
        .as_ref()
        .map(|restart| SystemTime::now() - restart.starting.elapsed())
        .unwrap_or_else(|_| SystemTime::now());
    let ready_again = match &restart {
        Ok(_) => {
            wait::until("the operator to report ready again", CONVERGE, || async {
                let (code, body) = operator.readyz().await?;
                anyhow::ensure!(code == 200, "/readyz answered {code}: {body}");
                Ok(Instant::now())
            })
            .await
        }
        Err(_) => Err(anyhow::anyhow!("no restart")),
    };
    poller.abort();
    let restart = restart?;
    let answers = std::mem::take(&mut *answers.lock().unwrap_or_else(PoisonError::into_inner));

    let mut failures = Vec::new();
    if let Err(failure) = check_unready_while_down(&answers, &restart) {
        failures.push(format!("{failure:#}"));
    }
    match &ready_again {
        Ok(at) => tracing::info!(
            after_apiserver_healthy = ?at.saturating_duration_since(restart.healthy),
            "the operator reported ready again"
        ),
        Err(error) => failures.push(format!("{error:#}")),
    }
    let converged = tokio::time::timeout(CONVERGE, recorder.wait_for(|count| count == TARGET))
        .await
        .context("converging after the restart")
        .and_then(|reached| reached);
    if let Err(error) = converged {
        failures.push(format!("{error:#}"));
    }
    let highest = recorder.max_since(start).unwrap_or(0);
    if highest > TARGET {
        failures.push(format!(
            "active pods reached {highest}, above the count of {TARGET}"
        ));
    }
    if let Err(failure) = check_created_after(&env, back).await {
        failures.push(format!("{failure:#}"));
    }
    let page = operator.metrics().await?;
    let relists_after = pod_relists(&page);
    let errors = observe::sample(
        &page,
        "podscaler_watch_errors_total",
        &[("resource", "pods")],
    );
    match (relists_before, relists_after) {
        (Some(before), Some(after)) if after >= before + 1.0 => tracing::info!(
            pod_relists = after - before,
            pod_watch_errors = ?errors,
            podscaler_relists = ?observe::sample(&page, "podscaler_cache_relists_total", &[("resource", "podscalers")]),
            "the operator relisted"
        ),
        (before, after) => failures.push(format!(
            "podscaler_cache_relists_total{{resource=\"pods\"}} went from {before:?} to {after:?}: \
             no relist of the pod cache after the restart"
        )),
    }
    // For the record (how long recovery took, in the operator's own words); not asserted.
    for line in cache_log_lines(operator.log_path()) {
        tracing::info!("operator: {line}");
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{}\noperator log:\n{}",
        failures.join("\n"),
        operator.log_tail(40)
    );
    Ok(())
}

/// The operator's log lines about its caches (fills, losses, relists) and its watch errors.
fn cache_log_lines(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("cache") || line.contains("watch failed"))
        .map(without_colours)
        .collect()
}

/// A log line without its ANSI colour sequences (`ESC [ … m`).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| *c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

fn pod_relists(page: &str) -> Option<f64> {
    observe::sample(
        page,
        "podscaler_cache_relists_total",
        &[("resource", "pods")],
    )
}

/// Asks `/readyz` every [`READYZ_POLL`] until aborted, recording every answer.
async fn poll_readyz(port: u16, answers: Arc<Mutex<Vec<Answer>>>) {
    loop {
        let code = local_http::get(port, "/readyz")
            .await
            .ok()
            .map(|(code, _)| code);
        answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((Instant::now(), code));
        tokio::time::sleep(READYZ_POLL).await;
    }
}

/// While the API server was down the operator said it was not ready, and did not flip back:
/// some answer in the window was 503, and so was the last one.
fn check_unready_while_down(answers: &[Answer], restart: &ApiserverRestart) -> anyhow::Result<()> {
    let down: Vec<Option<u16>> = answers
        .iter()
        .filter(|(at, _)| *at >= restart.stopped && *at <= restart.starting)
        .map(|(_, code)| *code)
        .collect();
    let unready = down.iter().filter(|code| **code == Some(503)).count();
    let summary = format!(
        "{} answers while the API server was down: {unready} × 503, {} × 200, {} × none",
        down.len(),
        down.iter().filter(|code| **code == Some(200)).count(),
        down.iter().filter(|code| code.is_none()).count(),
    );
    tracing::info!("{summary}");
    anyhow::ensure!(
        unready > 0 && down.last() == Some(&Some(503)),
        "/readyz did not say 503 while the API server was down ({summary})"
    );
    Ok(())
}

/// Pods were created after the API server started again: the restart fell mid scale-up.
async fn check_created_after(env: &Env, back: SystemTime) -> anyhow::Result<()> {
    let pods = observe::active_pods(&env.client(), &env.namespace, "app=outage").await?;
    // creationTimestamp has whole seconds; pods from before the outage are `DOWN` older.
    let back = back
        .duration_since(SystemTime::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_secs();
    let created_after = pods
        .iter()
        .filter(|pod| created_at_or_after(pod, back))
        .count();
    tracing::info!(
        created_after,
        total = pods.len(),
        "pods created after the restart"
    );
    anyhow::ensure!(
        created_after > 0,
        "no pod was created after the restart: the scale-up finished before it, nothing was tested"
    );
    Ok(())
}

fn created_at_or_after(pod: &Pod, unix_seconds: u64) -> bool {
    pod.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|time| u64::try_from(time.0.as_second()).ok())
        .is_some_and(|created| created >= unix_seconds)
}
