//! The operator, run as its real binary, against a real control plane: every scenario asserts
//! on the cluster's state (and the operator's /metrics, or what the run command shows its
//! user), never on logs.

use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use e2e::observe::{self, ActiveCountRecorder};
use e2e::process::Process;
use e2e::product::{self, Operator, SEED_SAMPLE};
use e2e::suite::{self, Env, Scenario};
use e2e::{Cluster, Options};
use e2e::{procs, wait};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::config::Kubeconfig;
use podscaler::status;

/// Generous bound for convergence on a loaded 2-core machine; not a performance assertion.
const CONVERGE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let scenarios: &[(&str, Scenario)] = &[
        ("s01_seed_sample_converges", |env| {
            Box::pin(seed_sample_converges(env))
        }),
        ("s02_deleted_pod_is_replaced", |env| {
            Box::pin(deleted_pod_is_replaced(env))
        }),
        ("s03_existing_deployment_pods_count", |env| {
            Box::pin(existing_deployment_pods_count(env))
        }),
        ("s04_deployment_added_later_own_pods_go_first", |env| {
            Box::pin(deployment_added_later_own_pods_go_first(env))
        }),
        ("s05_kubectl_scale_up_and_down", |env| {
            Box::pin(kubectl_scale_up_and_down(env))
        }),
        ("s06_deleting_the_podscaler", |env| {
            Box::pin(deleting_the_podscaler(env))
        }),
        ("s07_no_overshoot_either_way", |env| {
            Box::pin(no_overshoot_either_way(env))
        }),
        ("s08_kill_9_mid_scale_up", |env| {
            Box::pin(kill_9_mid_scale_up(env))
        }),
        ("s09_schema_rejects_bad_input", |env| {
            Box::pin(schema_rejects_bad_input(env))
        }),
        ("s10_refused_creates_back_off", |env| {
            Box::pin(refused_creates_back_off(env))
        }),
        ("s11_a_fight_with_a_deployment_ends", |env| {
            Box::pin(a_fight_with_a_deployment_ends(env))
        }),
        ("s12_refusals_to_start_are_explained", |env| {
            Box::pin(refusals_to_start_are_explained(env))
        }),
        ("s13_relabelled_pods_are_noticed_at_once", |env| {
            Box::pin(relabelled_pods_are_noticed_at_once(env))
        }),
        ("s14_run_command_on_the_current_kubeconfig", |env| {
            Box::pin(run_command_on_the_current_kubeconfig(env))
        }),
        ("s15_events_stay_true", |env| {
            Box::pin(events_stay_true(env))
        }),
    ];
    suite::main(scenarios, Options::default(), |cluster| {
        Box::pin(setup(cluster))
    })
}

async fn setup(cluster: Arc<Cluster>) -> anyhow::Result<()> {
    product::install_crd(&cluster.client()).await
}

fn scaler_manifest(name: &str, count: i32, app: &str) -> String {
    format!(
        "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: {name}\nspec:\n  count: {count}\n  selector:\n    app: {app}\n"
    )
}

fn deployment_manifest(name: &str, replicas: i32, app: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {app}\n  template:\n    metadata:\n      labels:\n        app: {app}\n    spec:\n      containers:\n      - name: nginx\n        image: nginx:latest\n"
    )
}

/// Waits until exactly `count` active pods match `selector` and all of them are Running.
async fn wait_running(
    env: &Env,
    selector: &str,
    count: usize,
) -> anyhow::Result<Vec<k8s_openapi::api::core::v1::Pod>> {
    let client = env.client();
    wait::until(
        &format!("{count} running pods matching {selector}"),
        CONVERGE,
        || async {
            let pods = observe::active_pods(&client, &env.namespace, selector).await?;
            let running = pods.iter().filter(|pod| observe::is_running(pod)).count();
            anyhow::ensure!(
                pods.len() == count && running == count,
                "{} active, {running} running",
                pods.len()
            );
            Ok(pods)
        },
    )
    .await
}

/// Waits until the PodScaler's status reports `count` ready pods for its current generation.
async fn wait_status_converged(
    env: &Env,
    name: &str,
    count: i32,
) -> anyhow::Result<podscaler::api::PodScaler> {
    let client = env.client();
    wait::until(
        &format!("{name} to report {count}/{count} ready"),
        CONVERGE,
        || async {
            let scaler = observe::scaler(&client, &env.namespace, name).await?;
            let status = scaler.status.clone().unwrap_or_default();
            anyhow::ensure!(
                status.observed_generation == scaler.metadata.generation
                    && status.replicas == count
                    && status.ready_replicas == count,
                "status {status:?} at generation {:?}",
                scaler.metadata.generation
            );
            Ok(scaler)
        },
    )
    .await
}

async fn events_for(env: &Env, name: &str) -> anyhow::Result<Vec<Event>> {
    let events: Api<Event> = Api::namespaced(env.client(), &env.namespace);
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|event| event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect())
}

async fn wait_event(env: &Env, name: &str, reason: &str) -> anyhow::Result<Event> {
    wait::until(&format!("a {reason} event on {name}"), CONVERGE, || async {
        let events = events_for(env, name).await?;
        events
            .iter()
            .find(|event| event.reason.as_deref() == Some(reason))
            .cloned()
            .with_context(|| {
                let seen: Vec<_> = events.iter().filter_map(|e| e.reason.clone()).collect();
                format!("events so far: {seen:?}")
            })
    })
    .await
}

fn condition<'a>(
    scaler: &'a podscaler::api::PodScaler,
    type_: &str,
) -> anyhow::Result<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    scaler
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == type_))
        .with_context(|| format!("no {type_} condition in {:?}", scaler.status))
}

async fn seed_sample_converges(env: Env) -> anyhow::Result<()> {
    let operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(SEED_SAMPLE).await?;
    let pods = wait_running(&env, "app=nginx", 4).await?;
    for pod in &pods {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or_default();
        anyhow::ensure!(
            node.starts_with("kwok-node-"),
            "pod on {node:?}, not a kwok node"
        );
        anyhow::ensure!(
            observe::controller_kind(pod) == Some("PodScaler"),
            "pod not owned by the PodScaler"
        );
    }
    let scaler = wait_status_converged(&env, "example-podscaler", 4).await?;
    let status = scaler.status.clone().unwrap_or_default();
    anyhow::ensure!(
        status.selector == "app=nginx",
        "selector {:?}",
        status.selector
    );
    let ready = condition(&scaler, status::READY)?;
    anyhow::ensure!(
        ready.status == "True" && ready.reason == status::reason::CONVERGED,
        "{ready:?}"
    );

    let table = env.kubectl(&["get", "podscaler"]).await?;
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    anyhow::ensure!(
        header == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        "header {header:?}"
    );
    let row: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    anyhow::ensure!(
        row.get(..4) == Some(&["example-podscaler", "4", "4", "4"][..]),
        "row {row:?}"
    );
    let short = env.kubectl(&["get", "psc", "-o", "name"]).await?;
    anyhow::ensure!(
        short.trim() == "podscaler.scaling.example.com/example-podscaler",
        "{short}"
    );

    let metrics = wait::until(
        "the per-PodScaler gauges and a requeue_after reconcile",
        CONVERGE,
        || async {
            let page = operator.metrics().await?;
            let labels = [
                ("namespace", env.namespace.as_str()),
                ("name", "example-podscaler"),
            ];
            let desired = observe::sample(&page, "podscaler_desired_pods", &labels);
            let ready = observe::sample(&page, "podscaler_ready_pods", &labels);
            let requeued = observe::sample(
                &page,
                "controller_runtime_reconcile_total",
                &[("controller", "podscaler"), ("result", "requeue_after")],
            );
            anyhow::ensure!(
                desired == Some(4.0) && ready == Some(4.0) && requeued.is_some_and(|n| n >= 1.0),
                "desired {desired:?}, ready {ready:?}, requeue_after {requeued:?}"
            );
            Ok(page)
        },
    )
    .await?;
    anyhow::ensure!(
        observe::sample(
            &metrics,
            "controller_runtime_reconcile_errors_total",
            &[("controller", "podscaler")]
        ) == Some(0.0),
        "no reconcile errors expected"
    );
    observe::ensure_process_metrics(&metrics)?;
    let mut operator = operator;
    anyhow::ensure!(
        operator.stop()?,
        "the operator did not exit cleanly on SIGTERM:\n{}",
        operator.log_tail(20)
    );
    Ok(())
}

async fn deleted_pod_is_replaced(env: Env) -> anyhow::Result<()> {
    let _operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(SEED_SAMPLE).await?;
    let before = wait_running(&env, "app=nginx", 4).await?;
    let victim = before[0].metadata.name.clone().context("pod name")?;
    let victim_uid = before[0].metadata.uid.clone().context("pod uid")?;
    env.kubectl(&["delete", "pod", &victim, "--wait=false"])
        .await?;
    let client = env.client();
    wait::until("a running replacement pod", CONVERGE, || async {
        let pods = observe::active_pods(&client, &env.namespace, "app=nginx").await?;
        let replaced = pods
            .iter()
            .all(|pod| pod.metadata.uid.as_deref() != Some(victim_uid.as_str()));
        let running = pods.iter().filter(|pod| observe::is_running(pod)).count();
        anyhow::ensure!(
            replaced && running == 4 && pods.len() == 4,
            "replaced {replaced}, {running} running of {}",
            pods.len()
        );
        Ok(())
    })
    .await?;
    wait_status_converged(&env, "example-podscaler", 4).await?;
    Ok(())
}

async fn existing_deployment_pods_count(env: Env) -> anyhow::Result<()> {
    env.apply(&deployment_manifest("nginx", 1, "nginx")).await?;
    let deployment_pod = wait_running(&env, "app=nginx", 1).await?.remove(0);
    let _operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(&scaler_manifest("web", 4, "nginx")).await?;
    let scaler = wait_status_converged(&env, "web", 4).await?;
    let uid = scaler.metadata.uid.clone().context("uid")?;
    let pods = wait_running(&env, "app=nginx", 4).await?;
    let own = pods
        .iter()
        .filter(|pod| observe::controlled_by(pod, &uid))
        .count();
    anyhow::ensure!(own == 3, "the PodScaler created {own} pods, expected 3");
    anyhow::ensure!(
        pods.iter()
            .any(|pod| pod.metadata.uid == deployment_pod.metadata.uid),
        "the Deployment's pod must be kept"
    );
    anyhow::ensure!(
        scaler
            .status
            .as_ref()
            .is_some_and(|s| s.foreign_replicas == 1),
        "{:?}",
        scaler.status
    );
    Ok(())
}

async fn deployment_added_later_own_pods_go_first(env: Env) -> anyhow::Result<()> {
    let _operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(SEED_SAMPLE).await?;
    wait_running(&env, "app=nginx", 4).await?;
    let uid = observe::scaler(&env.client(), &env.namespace, "example-podscaler")
        .await?
        .metadata
        .uid
        .context("uid")?;
    env.apply(&deployment_manifest("nginx", 3, "nginx")).await?;

    let client = env.client();
    wait::until("1 own pod and the Deployment's 3", CONVERGE, || async {
        let pods = observe::active_pods(&client, &env.namespace, "app=nginx").await?;
        let own = pods
            .iter()
            .filter(|pod| observe::controlled_by(pod, &uid))
            .count();
        let replica_set = pods
            .iter()
            .filter(|pod| observe::controller_kind(pod) == Some("ReplicaSet"))
            .count();
        anyhow::ensure!(
            own == 1 && replica_set == 3 && pods.len() == 4,
            "own {own}, ReplicaSet {replica_set}"
        );
        Ok(())
    })
    .await?;
    let scaler = wait_status_converged(&env, "example-podscaler", 4).await?;
    anyhow::ensure!(
        scaler
            .status
            .as_ref()
            .is_some_and(|s| s.foreign_replicas == 3),
        "{:?}",
        scaler.status
    );
    let contended = condition(&scaler, status::CONTENDED)?;
    anyhow::ensure!(
        contended.status == "True" && contended.reason == status::reason::SHARED_SELECTOR,
        "{contended:?}"
    );
    anyhow::ensure!(
        contended.message.contains("ReplicaSet/nginx-"),
        "{}",
        contended.message
    );
    let event = wait_event(&env, "example-podscaler", status::reason::SHARED_SELECTOR).await?;
    anyhow::ensure!(event.type_.as_deref() == Some("Warning"), "{event:?}");
    wait_event(&env, "example-podscaler", "SuccessfulDelete").await?;
    Ok(())
}

async fn kubectl_scale_up_and_down(env: Env) -> anyhow::Result<()> {
    let _operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(&scaler_manifest("web", 2, "web")).await?;
    wait_running(&env, "app=web", 2).await?;
    for replicas in [6, 1] {
        env.kubectl(&["scale", "podscaler/web", &format!("--replicas={replicas}")])
            .await?;
        wait_running(&env, "app=web", replicas).await?;
        let count = i32::try_from(replicas)?;
        let scaler = wait_status_converged(&env, "web", count).await?;
        anyhow::ensure!(scaler.spec.count == count);
    }
    let scale = env
        .kubectl(&[
            "get",
            "--raw",
            &format!(
                "/apis/scaling.example.com/v1/namespaces/{}/podscalers/web/scale",
                env.namespace
            ),
        ])
        .await?;
    let scale: serde_json::Value = serde_json::from_str(&scale)?;
    anyhow::ensure!(
        scale["status"]["selector"] == "app=web",
        "scale subresource: {scale}"
    );
    anyhow::ensure!(
        scale["status"]["replicas"] == 1,
        "scale subresource: {scale}"
    );
    Ok(())
}

async fn deleting_the_podscaler(env: Env) -> anyhow::Result<()> {
    let operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(&scaler_manifest("web", 3, "web")).await?;
    wait_running(&env, "app=web", 3).await?;
    let labels = [("namespace", env.namespace.as_str()), ("name", "web")];
    wait::until("the PodScaler's gauges", CONVERGE, || async {
        let page = operator.metrics().await?;
        anyhow::ensure!(
            observe::sample(&page, "podscaler_current_pods", &labels) == Some(3.0),
            "not yet"
        );
        Ok(())
    })
    .await?;
    env.kubectl(&["delete", "podscaler", "web", "--wait=true"])
        .await?;
    let client = env.client();
    wait::until(
        "garbage collection of the PodScaler's pods",
        CONVERGE,
        || async {
            let pods: Api<k8s_openapi::api::core::v1::Pod> =
                Api::namespaced(client.clone(), &env.namespace);
            let left = pods
                .list(&ListParams::default().labels("app=web"))
                .await?
                .items
                .len();
            anyhow::ensure!(left == 0, "{left} pods left");
            Ok(())
        },
    )
    .await?;
    wait::until(
        "the PodScaler's metric series to disappear",
        CONVERGE,
        || async {
            let page = operator.metrics().await?;
            let left: Vec<&str> = page
                .lines()
                .filter(|line| line.contains(&format!("namespace=\"{}\"", env.namespace)))
                .collect();
            anyhow::ensure!(left.is_empty(), "series left: {left:?}");
            Ok(())
        },
    )
    .await
}

async fn no_overshoot_either_way(env: Env) -> anyhow::Result<()> {
    let _operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    let mut recorder =
        ActiveCountRecorder::start(&env.client(), &env.namespace, "app=burst").await?;
    env.apply(&scaler_manifest("burst", 0, "burst")).await?;

    let up = recorder.mark();
    env.kubectl(&["scale", "podscaler/burst", "--replicas=100"])
        .await?;
    tokio::time::timeout(CONVERGE, recorder.wait_for(|count| count == 100))
        .await
        .context("scaling up to 100")??;
    wait_status_converged(&env, "burst", 100).await?;
    let highest = recorder.max_since(up).context("no events recorded")?;
    anyhow::ensure!(
        highest == 100,
        "active pods reached {highest} on the way to 100"
    );

    let down = recorder.mark();
    env.kubectl(&["scale", "podscaler/burst", "--replicas=10"])
        .await?;
    tokio::time::timeout(CONVERGE, recorder.wait_for(|count| count == 10))
        .await
        .context("scaling down to 10")??;
    wait_status_converged(&env, "burst", 10).await?;
    let lowest = recorder.min_since(down).context("no events recorded")?;
    anyhow::ensure!(
        lowest == 10,
        "active pods fell to {lowest} on the way down to 10"
    );
    let highest = recorder.max_since(down).context("no events recorded")?;
    // Samples after the mark start at 99 (the first deletion): never above where it started.
    anyhow::ensure!(
        highest <= 100,
        "active pods rose to {highest} while scaling down"
    );
    Ok(())
}

async fn kill_9_mid_scale_up(env: Env) -> anyhow::Result<()> {
    const TARGET: usize = 200;
    let mut operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    let mut recorder =
        ActiveCountRecorder::start(&env.client(), &env.namespace, "app=restart").await?;
    env.apply(&scaler_manifest("restart", 0, "restart")).await?;
    let start = recorder.mark();
    env.kubectl(&[
        "scale",
        "podscaler/restart",
        &format!("--replicas={TARGET}"),
    ])
    .await?;
    // Kill as soon as the watch sees the first new pods: the operator is mid-way through its
    // slow-start batches.
    let seen = tokio::time::timeout(CONVERGE, recorder.wait_for(|count| count >= 1))
        .await
        .context("waiting for the first pod")??;
    operator.kill_hard()?;
    let at_kill = observe::active_pods(&env.client(), &env.namespace, "app=restart")
        .await?
        .len();
    anyhow::ensure!(
        at_kill < TARGET,
        "the scale-up finished before the kill ({at_kill} pods, first seen {seen}): nothing was tested"
    );

    let _restarted = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    tokio::time::timeout(CONVERGE, recorder.wait_for(|count| count == TARGET))
        .await
        .context("converging after the restart")??;
    wait_status_converged(&env, "restart", i32::try_from(TARGET)?).await?;
    let highest = recorder.max_since(start).context("no events")?;
    anyhow::ensure!(
        highest == TARGET,
        "active pods reached {highest} (killed at {at_kill})"
    );
    Ok(())
}

async fn schema_rejects_bad_input(env: Env) -> anyhow::Result<()> {
    let negative = env
        .apply_refused(&scaler_manifest("negative", -1, "x"))
        .await?;
    anyhow::ensure!(
        negative.contains("spec.count") && negative.contains("greater than or equal to 0"),
        "{negative}"
    );
    let empty = env
        .apply_refused(
            "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: empty\nspec:\n  count: 1\n  selector: {}\n",
        )
        .await?;
    anyhow::ensure!(
        empty.contains("spec.selector must contain at least one label"),
        "{empty}"
    );
    env.apply(&scaler_manifest("immutable", 0, "first")).await?;
    let changed = env
        .apply_refused(&scaler_manifest("immutable", 0, "second"))
        .await?;
    anyhow::ensure!(changed.contains("spec.selector is immutable"), "{changed}");
    let stored = observe::scaler(&env.client(), &env.namespace, "immutable").await?;
    anyhow::ensure!(
        stored.spec.selector.get("app").map(String::as_str) == Some("first"),
        "the stored selector changed: {:?}",
        stored.spec.selector
    );
    Ok(())
}

/// The window over which the pressure scenarios count what the operator does.
const PRESSURE_WINDOW: Duration = Duration::from_secs(120);

/// Reconciles the operator has run, whatever their result.
async fn reconciles(operator: &Operator) -> anyhow::Result<f64> {
    let page = operator.metrics().await?;
    Ok(observe::sum(
        &page,
        "controller_runtime_reconcile_total",
        &[("controller", "podscaler")],
    ))
}

/// Pod creates the API server refused (403), counted by the API server itself.
async fn refused_pod_creates(env: &Env) -> anyhow::Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let page = env.client().request_text(request).await?;
    Ok(observe::sum(
        &page,
        "apiserver_request_total",
        &[("verb", "POST"), ("resource", "pods"), ("code", "403")],
    ))
}

/// Occurrences counted by the events about `name` with `reason` (an event's count, 1 if unset).
fn occurrences(events: &[Event], reason: &str) -> i32 {
    events
        .iter()
        .filter(|event| event.reason.as_deref() == Some(reason))
        .map(|event| event.deprecated_count.unwrap_or(1))
        .sum()
}

/// Counts the status writes that changed a PodScaler (each is a new resourceVersion).
struct StatusWrites {
    count: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl StatusWrites {
    fn start(env: &Env, name: &str) -> Self {
        use futures::StreamExt;
        use kube::runtime::watcher;
        let api: Api<podscaler::api::PodScaler> = Api::namespaced(env.client(), &env.namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let task = tokio::spawn(async move {
            let mut versions = std::collections::HashSet::new();
            let mut events = std::pin::pin!(watcher(api, config));
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Apply(scaler)) = event
                    && versions.insert(scaler.metadata.resource_version.clone())
                {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Self { count, task }
    }

    fn count(&self) -> usize {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for StatusWrites {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn refused_creates_back_off(env: Env) -> anyhow::Result<()> {
    env.apply(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: two-pods\nspec:\n  hard:\n    pods: \"2\"\n",
    )
    .await?;
    let client = env.client();
    // The quota only admits pods once the controller-manager has computed its usage.
    wait::until("the quota's usage to be computed", CONVERGE, || async {
        let quota = env
            .kubectl(&[
                "get",
                "resourcequota",
                "two-pods",
                "-o",
                "jsonpath={.status.used.pods}",
            ])
            .await?;
        anyhow::ensure!(quota.trim() == "0", "used: {quota:?}");
        Ok(())
    })
    .await?;
    let operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(&scaler_manifest("quota", 5, "quota")).await?;
    wait::until("a FailedCreate condition", CONVERGE, || async {
        let scaler = observe::scaler(&client, &env.namespace, "quota").await?;
        let failure = condition(&scaler, status::REPLICA_FAILURE)?;
        anyhow::ensure!(
            failure.status == "True" && failure.reason == status::reason::FAILED_CREATE,
            "{failure:?}"
        );
        Ok(())
    })
    .await?;
    wait_running(&env, "app=quota", 2).await?;

    // Count what the refusal costs over the window: before the fix, ~38 passes a second, each
    // with a refused create, a status write and an event.
    let writes = StatusWrites::start(&env, "quota");
    let reconciles_before = reconciles(&operator).await?;
    let refused_before = refused_pod_creates(&env).await?;
    let events_before = occurrences(&events_for(&env, "quota").await?, "FailedCreate");
    tokio::time::sleep(PRESSURE_WINDOW).await;
    let reconciled = reconciles(&operator).await? - reconciles_before;
    let refused = refused_pod_creates(&env).await? - refused_before;
    let events = events_for(&env, "quota").await?;
    let reported = occurrences(&events, "FailedCreate") - events_before;
    let written = writes.count();
    eprintln!(
        "quota window: {reconciled} reconciles, {refused} refused creates, {written} status writes, {reported} FailedCreate occurrences"
    );
    // The backoff (5 ms doubling to 30 s) allows 16 failed passes in two minutes; pod events
    // and the resync add wakes that the gate turns into no-ops.
    anyhow::ensure!(reconciled <= 60.0, "{reconciled} reconciles in the window");
    anyhow::ensure!(refused <= 20.0, "{refused} refused creates in the window");
    anyhow::ensure!(written <= 2, "{written} status writes in the window");
    anyhow::ensure!(
        reported <= 20,
        "{reported} FailedCreate occurrences in the window"
    );
    // Every refused pod had its own name: from the tenth, the correlator combines them.
    anyhow::ensure!(
        events.iter().any(|event| {
            event.reason.as_deref() == Some("FailedCreate")
                && event
                    .note
                    .as_deref()
                    .is_some_and(|note| note.starts_with(podscaler::events::COMBINED_PREFIX))
        }),
        "no combined FailedCreate event: {:?}",
        events.iter().map(|e| &e.note).collect::<Vec<_>>()
    );

    let scaler = observe::scaler(&client, &env.namespace, "quota").await?;
    let failure = condition(&scaler, status::REPLICA_FAILURE)?;
    anyhow::ensure!(
        failure.message.contains("exceeded quota: two-pods")
            && failure.message.contains("limited: pods=2")
            && !failure.message.contains("\"quota-"),
        "the condition names the quota and its limit, not a pod: {}",
        failure.message
    );

    env.kubectl(&[
        "patch",
        "resourcequota",
        "two-pods",
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"10"}}}"#,
    ])
    .await?;
    wait_running(&env, "app=quota", 5).await?;
    let scaler = wait_status_converged(&env, "quota", 5).await?;
    let cleared = condition(&scaler, status::REPLICA_FAILURE)?;
    anyhow::ensure!(cleared.status == "False", "{cleared:?}");
    Ok(())
}

async fn a_fight_with_a_deployment_ends(env: Env) -> anyhow::Result<()> {
    let operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(&scaler_manifest("fight", 4, "fight")).await?;
    wait_running(&env, "app=fight", 4).await?;
    // A Deployment that wants more pods than the PodScaler allows: once the PodScaler's own
    // pods are gone, every ReplicaSet pod it deletes is recreated at once.
    env.apply(&deployment_manifest("fight", 5, "fight")).await?;
    let client = env.client();
    let scaler = wait::until("the PodScaler to hold off", CONVERGE, || async {
        let scaler = observe::scaler(&client, &env.namespace, "fight").await?;
        let contended = condition(&scaler, status::CONTENDED)?;
        anyhow::ensure!(
            contended.status == "True"
                && contended.reason == status::reason::FIGHTING_CONTROLLER
                && contended.message.contains("holding off"),
            "{contended:?}"
        );
        Ok(scaler)
    })
    .await?;
    let message = &condition(&scaler, status::CONTENDED)?.message;
    anyhow::ensure!(
        message.contains("ReplicaSet/fight-") && message.contains(" until 20"),
        "the condition names the controller and the end of the hold: {message}"
    );
    let event = wait_event(&env, "fight", status::reason::FIGHTING_CONTROLLER).await?;
    anyhow::ensure!(event.type_.as_deref() == Some("Warning"), "{event:?}");

    tokio::time::sleep(PRESSURE_WINDOW).await;
    let page = operator.metrics().await?;
    let deleted = observe::sample(
        &page,
        "podscaler_foreign_pod_deletions_total",
        &[("namespace", env.namespace.as_str()), ("name", "fight")],
    )
    .context("no foreign deletion counter")?;
    eprintln!("fight window: {deleted} ReplicaSet pods deleted");
    // Three rounds, then holds of 15 s, 30 s, 60 s …: a handful of deletions, not ~10 a second.
    anyhow::ensure!(
        (1.0..=10.0).contains(&deleted),
        "{deleted} foreign deletions"
    );
    let holding = observe::scaler(&client, &env.namespace, "fight").await?;
    let contended = condition(&holding, status::CONTENDED)?;
    anyhow::ensure!(
        contended.status == "True" && contended.reason == status::reason::FIGHTING_CONTROLLER,
        "{contended:?}"
    );

    // The other side leaves: the PodScaler takes over with pods of its own.
    env.kubectl(&["delete", "deployment/fight", "--wait=false"])
        .await?;
    wait::until("4 pods of the PodScaler's own", CONVERGE, || async {
        let pods = observe::active_pods(&client, &env.namespace, "app=fight").await?;
        let own = pods
            .iter()
            .filter(|pod| observe::controller_kind(pod) == Some("PodScaler"))
            .count();
        anyhow::ensure!(
            pods.len() == 4 && own == 4,
            "{} active, {own} own",
            pods.len()
        );
        Ok(())
    })
    .await?;
    wait_status_converged(&env, "fight", 4).await?;
    Ok(())
}

/// Every event `kubectl describe` shows is true for each occurrence it counts: two scale-ups
/// are two events with their own pods, not one event counted twice with the first message.
async fn events_stay_true(env: Env) -> anyhow::Result<()> {
    let _operator = Operator::start(&env.cluster, &env.namespace, &[]).await?;
    env.apply(&scaler_manifest("told", 3, "told")).await?;
    wait_running(&env, "app=told", 3).await?;
    wait_status_converged(&env, "told", 3).await?;
    env.kubectl(&["scale", "psc/told", "--replicas=5"]).await?;
    wait_running(&env, "app=told", 5).await?;
    wait_status_converged(&env, "told", 5).await?;

    let names: Vec<String> = observe::active_pods(&env.client(), &env.namespace, "app=told")
        .await?
        .iter()
        .filter_map(|pod| pod.metadata.name.clone())
        .collect();
    let created: Vec<Event> = wait::until("two SuccessfulCreate events", CONVERGE, || async {
        let created: Vec<Event> = events_for(&env, "told")
            .await?
            .into_iter()
            .filter(|event| event.reason.as_deref() == Some("SuccessfulCreate"))
            .collect();
        anyhow::ensure!(
            created.len() == 2,
            "{:?}",
            created
                .iter()
                .map(|e| (&e.note, e.deprecated_count))
                .collect::<Vec<_>>()
        );
        Ok(created)
    })
    .await?;
    let mut notes: Vec<String> = created.iter().filter_map(|e| e.note.clone()).collect();
    notes.sort();
    anyhow::ensure!(
        notes[0].starts_with("Created 2 pod(s): ") && notes[1].starts_with("Created 3 pod(s): "),
        "{notes:?}"
    );
    for event in &created {
        anyhow::ensure!(
            event.deprecated_count.unwrap_or(1) == 1,
            "one occurrence each: {event:?}"
        );
    }
    // Between them, the two messages name each of the five pods once.
    let mut named: Vec<&str> = notes
        .iter()
        .filter_map(|note| note.split_once(": ").map(|(_, list)| list))
        .flat_map(|list| list.split(", "))
        .collect();
    named.sort_unstable();
    let mut running: Vec<&str> = names.iter().map(String::as_str).collect();
    running.sort_unstable();
    anyhow::ensure!(named == running, "named {named:?}, running {running:?}");
    Ok(())
}

/// A pod relabelled out of a selector, or into it, wakes the PodScaler through the pod watch
/// alone: the periodic resync is an hour away, so only the event can make it converge.
async fn relabelled_pods_are_noticed_at_once(env: Env) -> anyhow::Result<()> {
    let bare_pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: stray\n  labels:\n    app: relabel\nspec:\n  containers:\n  - name: nginx\n    image: nginx:latest\n";
    env.apply(bare_pod).await?;
    wait_running(&env, "app=relabel", 1).await?;
    let _operator = Operator::start(&env.cluster, &env.namespace, &["--requeue-after=1h"]).await?;
    env.apply(&scaler_manifest("relabel", 2, "relabel")).await?;
    let before = wait_running(&env, "app=relabel", 2).await?;
    // Converged and reported: the reconcile that the status write itself triggers finds
    // nothing to do, so nothing but the relabelling below can wake the PodScaler.
    wait_status_converged(&env, "relabel", 2).await?;

    // The stray pod leaves the selector: it was not the PodScaler's, and after the change it
    // matches no PodScaler, yet the PodScaler must hear of it and make up the count.
    env.kubectl(&["label", "pod", "stray", "app=elsewhere", "--overwrite"])
        .await?;
    let after = wait_running(&env, "app=relabel", 2).await?;
    let added = after
        .iter()
        .filter(|pod| {
            before
                .iter()
                .all(|old| old.metadata.uid != pod.metadata.uid)
        })
        .count();
    anyhow::ensure!(added == 1, "{added} pods created for the one relabelled");
    let moved = observe::active_pods(&env.client(), &env.namespace, "app=elsewhere").await?;
    anyhow::ensure!(
        moved.len() == 1 && moved[0].metadata.name.as_deref() == Some("stray"),
        "the relabelled pod is left alone under its new label"
    );

    // And back in: now one pod too many, and the PodScaler's own pods go first.
    env.kubectl(&["label", "pod", "stray", "app=relabel", "--overwrite"])
        .await?;
    let client = env.client();
    wait::until("the returning pod to be kept", CONVERGE, || async {
        let pods = observe::active_pods(&client, &env.namespace, "app=relabel").await?;
        let names: Vec<_> = pods
            .iter()
            .filter_map(|pod| pod.metadata.name.as_deref())
            .collect();
        anyhow::ensure!(
            pods.len() == 2 && names.contains(&"stray"),
            "active pods {names:?}"
        );
        Ok(())
    })
    .await?;
    wait_status_converged(&env, "relabel", 2).await?;
    Ok(())
}

/// The README's run command, `podscaler-up`, on a cluster the current kubeconfig reaches, with
/// that kubeconfig split over two files in `$KUBECONFIG` (clusters and users in one, contexts in
/// the other) as kubectl allows: it runs the sample in its namespace until Ctrl-C, then stops
/// the operator it started.
async fn run_command_on_the_current_kubeconfig(env: Env) -> anyhow::Result<()> {
    const DEMO: &str = "podscaler-demo";
    let kubeconfig = split_kubeconfig(
        env.cluster.kubeconfig(),
        &env.cluster.dir().join(&env.namespace),
    )?;
    let up = Mutex::new(Process::spawn(
        &format!("podscaler-up-{}", env.namespace),
        Path::new(env!("CARGO_BIN_EXE_podscaler-up")),
        &[],
        &[("KUBECONFIG", kubeconfig)],
        env.cluster.dir(),
    )?);
    let up_pid = up.lock().unwrap_or_else(PoisonError::into_inner).pid();
    let client = env.client();
    wait::until("the sample's 4 pods to run", CONVERGE, || async {
        up.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .check_running()?;
        let pods = observe::active_pods(&client, DEMO, "app=nginx").await?;
        let running = pods.iter().filter(|pod| observe::is_running(pod)).count();
        anyhow::ensure!(
            running == 4 && pods.len() == 4,
            "{running} running of {}",
            pods.len()
        );
        Ok(())
    })
    .await?;
    let operators: Vec<_> = procs::descendants(up_pid)?
        .into_iter()
        .filter(|process| process.program == "podscaler-operator")
        .collect();
    anyhow::ensure!(
        operators.len() == 1,
        "podscaler-up runs one operator, found {operators:?}"
    );
    // It shows the pods once they run, and says how to stop.
    let shown = wait::until("podscaler-up to show the pods", CONVERGE, || async {
        let output =
            std::fs::read_to_string(up.lock().unwrap_or_else(PoisonError::into_inner).log_path())?;
        anyhow::ensure!(output.contains("Ctrl-C stops the operator."), "{output}");
        Ok(output)
    })
    .await?;
    for pod in observe::active_pods(&client, DEMO, "app=nginx").await? {
        let name = pod.metadata.name.as_deref().context("pod name")?;
        anyhow::ensure!(shown.contains(name), "pod {name} not shown:\n{shown}");
    }

    let mut up = up.into_inner().unwrap_or_else(PoisonError::into_inner);
    up.signal(libc::SIGINT);
    let status = up.wait_exit(Duration::from_secs(60))?;
    anyhow::ensure!(
        status.is_some_and(|status| status.success()),
        "podscaler-up did not exit cleanly on Ctrl-C ({status:?}):\n{}",
        up.log_tail(20)
    );
    wait::until("the operator it started to stop", CONVERGE, || async {
        let left: Vec<_> = operators.iter().filter(|child| child.is_alive()).collect();
        anyhow::ensure!(left.is_empty(), "still running: {left:?}");
        Ok(())
    })
    .await?;
    env.kubectl
        .run(&["delete", "namespace", DEMO, "--wait=false"])
        .await?;
    Ok(())
}

/// Writes the clusters and users of `kubeconfig` to one file and its contexts to another, in
/// `dir`; returns them as a `$KUBECONFIG` value.
fn split_kubeconfig(kubeconfig: &Path, dir: &Path) -> anyhow::Result<String> {
    let whole = Kubeconfig::read_from(kubeconfig)?;
    let credentials = Kubeconfig {
        clusters: whole.clusters.clone(),
        auth_infos: whole.auth_infos.clone(),
        ..kubeconfig_header(&whole)
    };
    let contexts = Kubeconfig {
        contexts: whole.contexts.clone(),
        current_context: whole.current_context.clone(),
        ..kubeconfig_header(&whole)
    };
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::new();
    for (name, part) in [("credentials", credentials), ("contexts", contexts)] {
        let path = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(&path, serde_json::to_vec(&part)?)?;
        paths.push(path);
    }
    Ok(std::env::join_paths(paths)?.to_string_lossy().into_owned())
}

fn kubeconfig_header(of: &Kubeconfig) -> Kubeconfig {
    Kubeconfig {
        kind: of.kind.clone(),
        api_version: of.api_version.clone(),
        ..Kubeconfig::default()
    }
}

/// Without RBAC rights, or without a reachable API server, the operator exits at once with a
/// message that says what to do — never a panic.
async fn refusals_to_start_are_explained(env: Env) -> anyhow::Result<()> {
    const EXIT_WITHIN: Duration = Duration::from_secs(60);
    let namespace = format!("--namespace={}", env.namespace);
    let nobody = env.cluster.user_kubeconfig("podscaler-nobody", &[])?;
    let denied =
        product::run_operator_to_exit(&nobody, env.cluster.dir(), &[&namespace], EXIT_WITHIN)
            .await?;
    anyhow::ensure!(
        !denied.status.success()
            && denied
                .output
                .contains("RBAC: not allowed to list podscalers.scaling.example.com")
            && denied.output.contains("grant list/watch on podscalers")
            && !denied.output.contains("panicked"),
        "without RBAC rights: {} with\n{}",
        denied.status,
        denied.output
    );

    // The admin kubeconfig pointed at a port nothing listens on.
    let closed = format!("https://127.0.0.1:{}", e2e::cluster::free_port()?);
    let admin = std::fs::read_to_string(env.cluster.kubeconfig())?;
    let unreachable = env
        .cluster
        .dir()
        .join(format!("{}-unreachable.kubeconfig", env.namespace));
    std::fs::write(&unreachable, admin.replace(env.cluster.server(), &closed))?;
    let refused =
        product::run_operator_to_exit(&unreachable, env.cluster.dir(), &[&namespace], EXIT_WITHIN)
            .await?;
    anyhow::ensure!(
        !refused.status.success()
            && refused
                .output
                .contains(&format!("cannot reach the Kubernetes API at {closed}"))
            && !refused.output.contains("panicked"),
        "without an API server: {} with\n{}",
        refused.status,
        refused.output
    );
    Ok(())
}
