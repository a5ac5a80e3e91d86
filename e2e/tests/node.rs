//! The real-node tier: PodScaler installed by its Helm chart on a node whose pods really run
//! (containerd + kubelet in a network namespace of this process's own), with cert-manager
//! issuing and rotating the webhook's certificate and a real Prometheus scraping both binaries.
//!
//! One node serves every scenario; they run one at a time, in order, and the chart is installed
//! once (by whichever scenario needs it first — `n01` when the whole suite runs). At the end the
//! suite tears the tier down and fails when any process, mount, cgroup, the network namespace or
//! the directory is left.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::chart::promql_expressions;
use e2e::kubectl::Kubectl;
use e2e::node::footprint::Footprint;
use e2e::node::prometheus::{self, Prometheus, ScrapeTarget};
use e2e::node::stack::{RELEASE, RELEASE_NAMESPACE, Stack, pause_sample};
use e2e::node::{self, PAUSE_IMAGE};
use e2e::observe;
use e2e::process::{Process, last_lines};
use e2e::suite;
use e2e::wait;
use e2e::webhook::served_leaf;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use libtest_mimic::{Arguments, Failed, Trial};
use serde_json::Value;
use tokio::sync::OnceCell;

/// How long pods on the real node may take to start, or to go, on a loaded machine.
const CONVERGE: Duration = Duration::from_secs(180);
/// How long `podscaler-up --real-node` may take to show its sample (about 45 s here when the
/// binaries are built; longer on a loaded machine).
const UP_WITHIN: Duration = Duration::from_secs(600);

/// The values a user of a one-node cluster with cert-manager and Prometheus would pass:
/// a short-lived serving certificate so n04 sees it rotate, and the ServiceAccount n05's
/// Prometheus scrapes with bound to the chart's metrics-reader role.
const INSTALL_VALUES: &[&str] = &[
    // cert-manager's minimum duration is 1h; renewing 15 s after issue rotates every ~15 s.
    "--set",
    "webhook.tls.certManager.duration=1h",
    "--set",
    "webhook.tls.certManager.renewBefore=59m45s",
    "--set-json",
    r#"monitoring.metricsReader.subjects=[{"kind":"ServiceAccount","name":"prometheus","namespace":"monitoring"}]"#,
];

/// The chart's object names for release [`RELEASE`] (its name contains the chart's).
const OPERATOR: &str = "podscaler-operator";
const WEBHOOK: &str = "podscaler-webhook";
const OPERATOR_JOB: &str = "podscaler-operator-metrics";
const WEBHOOK_JOB: &str = "podscaler-webhook-metrics";
const MUTATING_WEBHOOK: &str = "mpodscaler.scaling.example.com";
const VALIDATING_WEBHOOK: &str = "vpodscaler.scaling.example.com";

/// The tier, shared by the scenarios.
struct Tier {
    stack: Stack,
    installed: OnceCell<String>,
}

impl Tier {
    fn kubectl(&self) -> &Kubectl {
        &self.stack.kubectl
    }

    fn client(&self) -> kube::Client {
        self.stack.node.client()
    }

    /// Installs the chart once and returns helm's output.
    async fn installed(&self) -> anyhow::Result<&str> {
        self.installed
            .get_or_try_init(|| self.stack.install_chart(INSTALL_VALUES))
            .await
            .map(String::as_str)
    }

    /// A namespace for a scenario's PodScalers (plain: their pods are not the chart's).
    async fn namespace(&self, name: &str) -> anyhow::Result<()> {
        self.kubectl()
            .run_with_input(&["apply", "-f", "-"], Some(&namespace_manifest(name)))
            .await
            .map(drop)
    }
}

type Scenario = fn(Arc<Tier>) -> std::pin::Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

fn main() -> ExitCode {
    let scenarios: &[(&str, Scenario)] = &[
        (
            "n01_helm_install_runs_both_deployments_under_restricted",
            |tier| Box::pin(helm_install_runs_both_deployments_under_restricted(tier)),
        ),
        (
            "n02_the_in_cluster_operator_scales_real_containers",
            |tier| Box::pin(the_in_cluster_operator_scales_real_containers(tier)),
        ),
        (
            "n03_the_api_server_calls_the_webhook_through_its_service",
            |tier| Box::pin(the_api_server_calls_the_webhook_through_its_service(tier)),
        ),
        (
            "n04_cert_manager_issues_and_rotates_without_a_failed_admission",
            |tier| {
                Box::pin(cert_manager_issues_and_rotates_without_a_failed_admission(
                    tier,
                ))
            },
        ),
        (
            "n05_prometheus_scrapes_both_binaries_and_evaluates_the_rules",
            |tier| {
                Box::pin(prometheus_scrapes_both_binaries_and_evaluates_the_rules(
                    tier,
                ))
            },
        ),
        ("n06_uninstall_leaves_only_the_crd", |tier| {
            Box::pin(uninstall_leaves_only_the_crd(tier))
        }),
        (
            "n07_podscaler_up_real_node_runs_the_chart_and_a_killed_run_is_swept",
            |_| Box::pin(podscaler_up_real_node_runs_the_chart_and_a_killed_run_is_swept()),
        ),
    ];
    let mut args = Arguments::from_args();
    // In order, one at a time: they share one release, and n06 removes it.
    args.test_threads = Some(1);
    if let Some(listed) = suite::list(&args, scenarios.iter().map(|(name, _)| *name)) {
        return listed;
    }
    suite::init_logging();
    // Before any thread exists: every thread started later is inside the namespace.
    let footprint = match node::enter() {
        Ok(footprint) => footprint,
        Err(error) => {
            eprintln!("cannot prepare the real node: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match suite::trial_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let started = Instant::now();
    let tier = match runtime.block_on(Stack::start(footprint.clone())) {
        Ok(stack) => Arc::new(Tier {
            stack,
            installed: OnceCell::new(),
        }),
        Err(error) => {
            eprintln!("the real node did not start: {error:#}");
            return teardown_failed_start(footprint);
        }
    };
    eprintln!(
        "node: control plane, node and cert-manager up in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let trials = scenarios
        .iter()
        .map(|&(name, scenario)| {
            let runtime = Arc::clone(&runtime);
            let tier = Arc::clone(&tier);
            Trial::test(name, move || {
                runtime
                    .block_on(scenario(tier))
                    .map_err(|error| Failed::from(format!("{error:#}")))
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed() {
        eprintln!(
            "\n===== real-node logs (last lines) =====\n{}",
            tier.stack.node.logs(40)
        );
    }
    drop(runtime);
    let Ok(tier) = Arc::try_unwrap(tier) else {
        eprintln!("teardown: the tier is still in use");
        return ExitCode::FAILURE;
    };
    let started = Instant::now();
    let left = tier.stack.shut_down();
    if !left.is_empty() {
        eprintln!("teardown left: {left}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "teardown: no process, mount, cgroup, network namespace or directory of {} is left ({:.1} s)",
        footprint.name,
        started.elapsed().as_secs_f64()
    );
    conclusion.exit_code()
}

fn teardown_failed_start(footprint: node::footprint::Footprint) -> ExitCode {
    let left = footprint.remove();
    if !left.is_empty() {
        eprintln!("teardown left: {left}");
    }
    ExitCode::FAILURE
}

fn namespace_manifest(name: &str) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        .to_string()
}

async fn get_json(kubectl: &Kubectl, args: &[&str]) -> anyhow::Result<Value> {
    let mut full = args.to_vec();
    full.extend(["-o", "json"]);
    let out = kubectl.run(&full).await?;
    serde_json::from_str(&out)
        .with_context(|| format!("kubectl {} printed no JSON", args.join(" ")))
}

/// Pods of `selector` in `namespace` whose containers are all running in containerd.
async fn running_pods(tier: &Tier, namespace: &str, selector: &str) -> anyhow::Result<Vec<Pod>> {
    let pods = observe::active_pods(&tier.client(), namespace, selector).await?;
    Ok(pods
        .into_iter()
        .filter(|pod| {
            let statuses = pod
                .status
                .as_ref()
                .and_then(|status| status.container_statuses.as_ref());
            statuses.is_some_and(|statuses| {
                statuses.iter().all(|status| {
                    status
                        .state
                        .as_ref()
                        .is_some_and(|state| state.running.is_some())
                        && status
                            .container_id
                            .as_deref()
                            .is_some_and(|id| id.starts_with("containerd://"))
                })
            })
        })
        .collect())
}

async fn wait_running_count(
    tier: &Tier,
    namespace: &str,
    selector: &str,
    count: usize,
) -> anyhow::Result<()> {
    wait::until(
        &format!("{count} running pods of {selector} in {namespace}"),
        CONVERGE,
        || async {
            let active = observe::active_pods(&tier.client(), namespace, selector).await?;
            let running = running_pods(tier, namespace, selector).await?;
            anyhow::ensure!(
                active.len() == count && running.len() == count,
                "{} active, {} running in containerd",
                active.len(),
                running.len()
            );
            Ok(())
        },
    )
    .await
}

async fn helm_install_runs_both_deployments_under_restricted(
    tier: Arc<Tier>,
) -> anyhow::Result<()> {
    let output = tier.installed().await?;
    anyhow::ensure!(
        output.contains("STATUS: deployed"),
        "helm install: {output}"
    );

    let deployments: Api<Deployment> = Api::namespaced(tier.client(), RELEASE_NAMESPACE);
    for name in [OPERATOR, WEBHOOK] {
        let deployment = deployments
            .get(name)
            .await
            .with_context(|| format!("deployment {name}"))?;
        let wanted = deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.replicas)
            .unwrap_or(1);
        let ready = deployment
            .status
            .as_ref()
            .and_then(|status| status.ready_replicas)
            .unwrap_or(0);
        anyhow::ensure!(
            wanted >= 1 && ready == wanted,
            "{name}: {ready} of {wanted} Ready"
        );
    }
    // Ready through their real probes: every container reports ready with a readiness probe set.
    let pods: Api<Pod> = Api::namespaced(tier.client(), RELEASE_NAMESPACE);
    let listed = pods.list(&ListParams::default()).await?;
    anyhow::ensure!(
        listed.items.len() >= 4,
        "{} pods in {RELEASE_NAMESPACE}",
        listed.items.len()
    );
    for pod in &listed.items {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let spec = pod.spec.as_ref().context("a pod without spec")?;
        anyhow::ensure!(
            spec.containers
                .iter()
                .all(|c| c.readiness_probe.is_some() && c.liveness_probe.is_some()),
            "{name} has a container without readiness or liveness probe"
        );
        anyhow::ensure!(observe::is_running(pod), "{name} is not Running and Ready");
    }
    // The namespace enforces restricted, and it does: a privileged pod is refused.
    let refused = tier
        .kubectl()
        .run_failing(
            &[
                "-n",
                RELEASE_NAMESPACE,
                "run",
                "privileged",
                "--image",
                PAUSE_IMAGE,
                "--privileged",
            ],
            None,
        )
        .await?;
    anyhow::ensure!(
        refused.contains("violates PodSecurity \"restricted:latest\""),
        "a privileged pod was not refused by Pod Security: {refused}"
    );
    Ok(())
}

async fn the_in_cluster_operator_scales_real_containers(tier: Arc<Tier>) -> anyhow::Result<()> {
    tier.installed().await?;
    let namespace = "n02-scale";
    tier.namespace(namespace).await?;
    let scaler = "n02-pause";
    tier.kubectl()
        .run_with_input(
            &["-n", namespace, "apply", "-f", "-"],
            Some(&pause_sample(scaler, 3)),
        )
        .await?;
    let selector = format!("app={scaler}");
    wait_running_count(&tier, namespace, &selector, 3).await?;
    for count in [1, 2] {
        tier.kubectl()
            .run(&[
                "-n",
                namespace,
                "scale",
                &format!("podscaler/{scaler}"),
                &format!("--replicas={count}"),
            ])
            .await?;
        wait_running_count(&tier, namespace, &selector, count).await?;
    }

    // Its logs come through the API server from the kubelet, one JSON object per line: the
    // leader's say it leads and runs the controller.
    let logs = tier
        .kubectl()
        .run(&[
            "-n",
            RELEASE_NAMESPACE,
            "logs",
            "-l",
            "app.kubernetes.io/component=operator",
            "--tail=-1",
        ])
        .await?;
    let messages: Vec<String> = logs
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
                .with_context(|| format!("a log line that is not JSON: {line}"))
        })
        .collect::<anyhow::Result<_>>()?;
    for expected in [
        "acquired the lease: this replica is the leader",
        "starting the PodScaler controller",
    ] {
        anyhow::ensure!(
            messages.iter().any(|message| message == expected),
            "no {expected:?} in the operator's logs:\n{}",
            last_lines(&logs, 20)
        );
    }
    Ok(())
}

async fn the_api_server_calls_the_webhook_through_its_service(
    tier: Arc<Tier>,
) -> anyhow::Result<()> {
    tier.installed().await?;
    let namespace = "n03-webhook";
    tier.namespace(namespace).await?;
    let before = apiserver_metrics(&tier).await?;

    // No template: the mutating webhook stores the seed's default one.
    let bare = "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: bare\nspec:\n  count: 0\n  selector:\n    app: n03\n";
    tier.kubectl()
        .run_with_input(&["-n", namespace, "apply", "-f", "-"], Some(bare))
        .await?;
    let stored = observe::scaler(&tier.client(), namespace, "bare").await?;
    let template = stored
        .spec
        .template
        .context("the stored PodScaler has no template: the mutating webhook did not run")?;
    let images: Vec<String> = template
        .spec
        .map(|spec| {
            spec.containers
                .into_iter()
                .filter_map(|c| c.image)
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(
        images == ["nginx:latest"],
        "stored template images {images:?}"
    );

    // Above the webhook's --max-count (the chart's webhook.maxCount, 1000), below the schema's.
    let too_many = bare
        .replace("name: bare", "name: too-many")
        .replace("app: n03", "app: n03-too-many")
        .replace("count: 0", "count: 5000");
    let refused = tier
        .kubectl()
        .run_failing(&["-n", namespace, "apply", "-f", "-"], Some(&too_many))
        .await?;
    // "at most 1000" can only be the webhook's: the schema's cap is 100000.
    anyhow::ensure!(
        refused.contains("spec.count: must be at most 1000"),
        "not refused by the webhook naming spec.count: {refused}"
    );

    let after = apiserver_metrics(&tier).await?;
    for name in [MUTATING_WEBHOOK, VALIDATING_WEBHOOK] {
        let calls = |page: &str| {
            observe::sum(
                page,
                "apiserver_admission_webhook_request_total",
                &[("name", name)],
            )
        };
        let made = calls(&after) - calls(&before);
        anyhow::ensure!(made >= 1.0, "the API server counted {made} calls of {name}");
    }
    let rejected = observe::sum(
        &after,
        "apiserver_admission_webhook_request_total",
        &[("name", VALIDATING_WEBHOOK), ("rejected", "true")],
    ) - observe::sum(
        &before,
        "apiserver_admission_webhook_request_total",
        &[("name", VALIDATING_WEBHOOK), ("rejected", "true")],
    );
    anyhow::ensure!(
        rejected >= 1.0,
        "the API server counted {rejected} rejections by {VALIDATING_WEBHOOK}"
    );
    Ok(())
}

async fn apiserver_metrics(tier: &Tier) -> anyhow::Result<String> {
    tier.kubectl().run(&["get", "--raw", "/metrics"]).await
}

/// Admission calls of our two webhooks the API server counted as failed: rejections for any
/// reason but a validation refusal (calling errors, timeouts, TLS failures), and fail-opens.
fn failed_admissions(page: &str) -> f64 {
    [MUTATING_WEBHOOK, VALIDATING_WEBHOOK]
        .iter()
        .map(|name| {
            observe::sum(
                page,
                "apiserver_admission_webhook_rejection_count",
                &[("name", name), ("error_type", "calling_webhook_error")],
            ) + observe::sum(
                page,
                "apiserver_admission_webhook_rejection_count",
                &[("name", name), ("error_type", "apiserver_internal_error")],
            ) + observe::sum(
                page,
                "apiserver_admission_webhook_fail_open_count",
                &[("name", name)],
            )
        })
        .sum()
}

async fn cert_manager_issues_and_rotates_without_a_failed_admission(
    tier: Arc<Tier>,
) -> anyhow::Result<()> {
    tier.installed().await?;
    let kubectl = tier.kubectl();
    // The chain is issued: every Certificate of the release is Ready.
    let certificates = get_json(
        kubectl,
        &[
            "-n",
            RELEASE_NAMESPACE,
            "get",
            "certificates.cert-manager.io",
        ],
    )
    .await?;
    let items = certificates["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        items.len() >= 2,
        "{} Certificates (want the CA and the serving one)",
        items.len()
    );
    for certificate in &items {
        let ready = certificate["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        anyhow::ensure!(
            ready,
            "Certificate {} is not Ready",
            certificate["metadata"]["name"]
        );
    }
    // cainjector put the CA into both webhook configurations.
    let serving_secret = items
        .iter()
        .find(|c| c["spec"]["isCA"] != true)
        .and_then(|c| c["spec"]["secretName"].as_str())
        .context("no serving Certificate")?
        .to_owned();
    let secret = get_json(
        kubectl,
        &["-n", RELEASE_NAMESPACE, "get", "secret", &serving_secret],
    )
    .await?;
    let ca = secret["data"]["ca.crt"]
        .as_str()
        .context("the serving secret has no ca.crt")?
        .to_owned();
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        let config = get_json(kubectl, &["get", kind, WEBHOOK]).await?;
        let bundle = config["webhooks"][0]["clientConfig"]["caBundle"]
            .as_str()
            .unwrap_or_default();
        anyhow::ensure!(
            bundle == ca,
            "{kind} {WEBHOOK}: caBundle is not the issuing CA"
        );
    }

    // Rotation: the serving certificate (1h, renewed 15 s after issue) changes again and again
    // while a writer keeps changing a PodScaler through both webhooks, until the webhook has
    // been seen serving two certificates after the first.
    let namespace = "n04-rotation";
    tier.namespace(namespace).await?;
    let before = apiserver_metrics(&tier).await?;
    let secrets: Api<Secret> = Api::namespaced(tier.client(), RELEASE_NAMESPACE);
    let webhook_pod = webhook_address(&tier).await?;
    let server_name = format!("{WEBHOOK}.{RELEASE_NAMESPACE}.svc");
    let mut served = vec![
        served_leaf(
            webhook_pod,
            &server_name,
            &ca_pem(&secrets, &serving_secret).await?,
        )
        .await?,
    ];
    let (mut writes, mut failures) = (0_u32, Vec::new());
    let deadline = Instant::now() + CONVERGE;
    while served.len() < 3 && Instant::now() < deadline {
        let manifest = pause_sample("n04-writer", (writes % 2) as i32);
        if let Err(error) = kubectl
            .run_with_input(&["-n", namespace, "apply", "-f", "-"], Some(&manifest))
            .await
        {
            failures.push(format!("{error:#}"));
        }
        writes += 1;
        let leaf = served_leaf(
            webhook_pod,
            &server_name,
            &ca_pem(&secrets, &serving_secret).await?,
        )
        .await?;
        if served.last() != Some(&leaf) {
            served.push(leaf);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::ensure!(
        served.len() >= 3,
        "the webhook served {} certificates in {CONVERGE:?}",
        served.len()
    );
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {writes} writes failed: {failures:?}",
        failures.len()
    );
    let after = apiserver_metrics(&tier).await?;
    let failed = failed_admissions(&after) - failed_admissions(&before);
    anyhow::ensure!(
        failed == 0.0,
        "the API server counted {failed} failed admissions during the rotation"
    );
    let calls = |page: &str| {
        observe::sum(
            page,
            "apiserver_admission_webhook_request_total",
            &[("name", VALIDATING_WEBHOOK)],
        )
    };
    anyhow::ensure!(
        calls(&after) - calls(&before) >= f64::from(writes) / 2.0,
        "fewer admission calls than writes"
    );
    Ok(())
}

/// One webhook pod's HTTPS address (the pod network, inside the namespace).
async fn webhook_address(tier: &Tier) -> anyhow::Result<std::net::SocketAddr> {
    let pods = observe::active_pods(
        &tier.client(),
        RELEASE_NAMESPACE,
        "app.kubernetes.io/component=webhook",
    )
    .await?;
    let ip = pods
        .iter()
        .find_map(|pod| pod.status.as_ref()?.pod_ip.clone())
        .context("no webhook pod has an IP")?;
    Ok(std::net::SocketAddr::new(
        ip.parse().context("the webhook pod's IP")?,
        9443,
    ))
}

/// The CA (PEM) in a cert-manager Secret.
async fn ca_pem(secrets: &Api<Secret>, name: &str) -> anyhow::Result<String> {
    let secret = secrets
        .get(name)
        .await
        .with_context(|| format!("secret {name}"))?;
    let ca = secret
        .data
        .as_ref()
        .and_then(|data| data.get("ca.crt"))
        .with_context(|| format!("secret {name} has no ca.crt"))?;
    String::from_utf8(ca.0.clone()).context("ca.crt is not PEM")
}

async fn prometheus_scrapes_both_binaries_and_evaluates_the_rules(
    tier: Arc<Tier>,
) -> anyhow::Result<()> {
    tier.installed().await?;
    let kubectl = tier.kubectl();
    kubectl
        .run_with_input(
            &["apply", "-f", "-"],
            Some(&namespace_manifest("monitoring")),
        )
        .await?;
    kubectl
        .run(&["-n", "monitoring", "create", "serviceaccount", "prometheus"])
        .await
        .ok();
    let token = kubectl
        .run(&[
            "-n",
            "monitoring",
            "create",
            "token",
            "prometheus",
            "--duration=2h",
        ])
        .await?;
    let dir = tier.stack.node.dir().join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("token");
    std::fs::write(&token_file, token.trim())?;

    // The chart's PrometheusRule and dashboard, rendered with the install's values.
    let chart = e2e::chart::chart_dir();
    let chart = chart.to_string_lossy();
    let mut args = vec![
        "template",
        RELEASE,
        chart.as_ref(),
        "--namespace",
        RELEASE_NAMESPACE,
        "--set",
        "monitoring.prometheusRule.enabled=true",
        "--set",
        "monitoring.grafanaDashboard.enabled=true",
        "--api-versions",
        "monitoring.coreos.com/v1",
    ];
    args.extend_from_slice(INSTALL_VALUES);
    let rendered = tier.stack.helm.run(&args).await?;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&rendered).context("parsing the rendered chart")?;
    let rule = documents
        .iter()
        .find(|document| document["kind"] == "PrometheusRule")
        .context("the chart rendered no PrometheusRule")?;

    let mut prometheus = Prometheus::start(
        &ScrapeTarget {
            namespace: RELEASE_NAMESPACE,
            port_name: "metrics",
            kubeconfig: tier.stack.node.kubeconfig(),
            token_file: &token_file,
        },
        &rule["spec"]["groups"],
        &dir,
    )
    .await?;
    let outcome = check_prometheus(&tier, &prometheus, &rendered).await;
    prometheus.check_running()?;
    outcome.map_err(|error| error.context(format!("prometheus log:\n{}", prometheus.log_tail(20))))
}

async fn check_prometheus(
    tier: &Tier,
    prometheus: &Prometheus,
    rendered: &str,
) -> anyhow::Result<()> {
    // Every discovered target is up: both replicas of both binaries.
    wait::until("every target up", CONVERGE, || async {
        let targets = prometheus.active_targets().await?;
        let mut up: BTreeMap<String, usize> = BTreeMap::new();
        for target in &targets {
            anyhow::ensure!(
                target["health"] == "up",
                "{} is {}: {}",
                target["scrapeUrl"],
                target["health"],
                target["lastError"]
            );
            *up.entry(target["labels"]["job"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        anyhow::ensure!(
            up.get(OPERATOR_JOB) == Some(&2) && up.get(WEBHOOK_JOB) == Some(&2),
            "targets up per job: {up:?}"
        );
        Ok(())
    })
    .await?;

    // Nothing is down or failing: every alert of the chart goes silent (the absent()-based ones
    // may be pending from an evaluation before the first scrape of a job).
    wait::until("every alert to be silent", CONVERGE, || async {
        let alerts = prometheus.alerts().await?;
        anyhow::ensure!(
            alerts.is_empty(),
            "alerts while nothing is wrong: {alerts:?}"
        );
        Ok(())
    })
    .await?;

    // A PodScaler that cannot reach its count: its namespace's quota allows one pod of three.
    let namespace = "n05-short";
    tier.namespace(namespace).await?;
    tier.kubectl()
        .run(&[
            "-n",
            namespace,
            "create",
            "quota",
            "one-pod",
            "--hard=pods=1",
        ])
        .await?;
    tier.kubectl()
        .run_with_input(
            &["-n", namespace, "apply", "-f", "-"],
            Some(&pause_sample("short", 3)),
        )
        .await?;
    wait::until(
        "PodScalerReplicasMismatch to go pending for n05-short/short",
        CONVERGE,
        || async {
            let alerts = prometheus.alerts().await?;
            let mine = alerts.iter().find(|alert| {
                alert["labels"]["alertname"] == "PodScalerReplicasMismatch"
                    && alert["labels"]["namespace"] == namespace
                    && alert["labels"]["name"] == "short"
            });
            let state = mine.map(|alert| alert["state"].clone());
            anyhow::ensure!(
                state == Some(Value::from("pending")),
                "its state: {state:?}; alerts: {alerts:?}"
            );
            Ok(())
        },
    )
    .await?;
    // Nothing is down: the absent()-based alerts stay silent while the scrapes go on.
    let alerts = prometheus.alerts().await?;
    let down: Vec<&Value> = alerts
        .iter()
        .filter(|alert| {
            alert["labels"]["alertname"]
                .as_str()
                .is_some_and(|name| name.ends_with("Down"))
        })
        .collect();
    anyhow::ensure!(
        down.is_empty(),
        "down alerts while both binaries are scraped: {down:?}"
    );

    // Every dashboard query returns data.
    let queries: Vec<(String, String)> = promql_expressions(rendered)?
        .into_iter()
        .filter(|(place, _)| !place.starts_with("rule "))
        .collect();
    anyhow::ensure!(!queries.is_empty(), "the dashboard has no queries");
    wait::until("every dashboard query to return data", CONVERGE, || async {
        let mut empty = Vec::new();
        for (place, expr) in &queries {
            let query = prometheus::instantiate_dashboard_query(expr, OPERATOR_JOB, WEBHOOK_JOB);
            if prometheus.query(&query).await?.is_empty() {
                empty.push(format!("{place}: {query}"));
            }
        }
        anyhow::ensure!(
            empty.is_empty(),
            "{} of {} queries return nothing: {empty:#?}",
            empty.len(),
            queries.len()
        );
        Ok(())
    })
    .await
}

async fn uninstall_leaves_only_the_crd(tier: Arc<Tier>) -> anyhow::Result<()> {
    tier.installed().await?;
    let kubectl = tier.kubectl();
    // A PodScaler with running pods outlives the release (the CRD stays)...
    let namespace = "n06-leftover";
    tier.namespace(namespace).await?;
    kubectl
        .run_with_input(
            &["-n", namespace, "apply", "-f", "-"],
            Some(&pause_sample("stays", 2)),
        )
        .await?;
    wait_running_count(&tier, namespace, "app=stays", 2).await?;

    tier.stack
        .helm
        .run(&[
            "uninstall",
            RELEASE,
            "--namespace",
            RELEASE_NAMESPACE,
            "--wait",
        ])
        .await?;
    let kinds = "deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,roles,rolebindings,\
                 poddisruptionbudgets,certificates.cert-manager.io,issuers.cert-manager.io";
    let cluster_kinds = "clusterroles,clusterrolebindings,mutatingwebhookconfigurations,validatingwebhookconfigurations";
    wait::until("nothing of the release to be left", CONVERGE, || async {
        let namespaced = kubectl
            .run(&["-n", RELEASE_NAMESPACE, "get", kinds, "-o", "name"])
            .await?;
        let labelled = kubectl
            .run(&[
                "get",
                cluster_kinds,
                "-l",
                &format!("app.kubernetes.io/instance={RELEASE}"),
                "-o",
                "name",
            ])
            .await?;
        let left: Vec<&str> = namespaced
            .lines()
            .chain(labelled.lines())
            // The namespace's own root CA ConfigMap is the controller-manager's, not the chart's.
            .filter(|line| {
                !line.is_empty()
                    && *line != "configmap/kube-root-ca.crt"
                    && *line != "serviceaccount/default"
            })
            .collect();
        anyhow::ensure!(left.is_empty(), "left: {left:?}");
        Ok(())
    })
    .await?;
    let crd = kubectl
        .run(&["get", "crd", "podscalers.scaling.example.com", "-o", "name"])
        .await?;
    anyhow::ensure!(
        crd.trim()
            == "customresourcedefinition.apiextensions.k8s.io/podscalers.scaling.example.com",
        "{crd}"
    );

    // ...and deleting its namespace removes the PodScaler and garbage-collects its pods.
    kubectl
        .run(&["delete", "namespace", namespace, "--wait=false"])
        .await?;
    wait::until(
        "the namespace and its pods to be gone",
        CONVERGE,
        || async {
            let pods: Api<Pod> = Api::namespaced(tier.client(), namespace);
            let left = pods.list(&ListParams::default()).await?.items.len();
            let gone = kubectl
                .run(&[
                    "get",
                    "namespace",
                    namespace,
                    "--ignore-not-found",
                    "-o",
                    "name",
                ])
                .await?;
            anyhow::ensure!(
                left == 0 && gone.trim().is_empty(),
                "{left} pods left; namespace: {gone:?}"
            );
            Ok(())
        },
    )
    .await?;
    Ok(())
}

/// `podscaler-up --real-node`: a tier of its own (another namespace, cgroup and directory),
/// the chart installed with its defaults, a sample running. Then `kill -9`: no teardown runs,
/// the containers' shims, mounts and cgroups outlive it, and the sweep every run starts with
/// (`node::enter`) removes all of it.
async fn podscaler_up_real_node_runs_the_chart_and_a_killed_run_is_swept() -> anyhow::Result<()> {
    let dir = e2e::cluster::private_tempdir("podscaler-e2e-up-real-node-")?;
    let mut up = Process::spawn(
        "podscaler-up",
        std::path::Path::new(env!("CARGO_BIN_EXE_podscaler-up")),
        &["--real-node".to_owned()],
        &[],
        dir.path(),
    )?;
    let footprint = Footprint::of(up.pid());
    let shown = up
        .wait_for_log(
            "podscaler-up --real-node to show the sample",
            "Ctrl-C stops everything",
            UP_WITHIN,
        )
        .await?;
    anyhow::ensure!(
        shown.contains(&format!("network namespace {}", footprint.name)),
        "the summary does not name {}:\n{shown}",
        footprint.name
    );
    // `kubectl get pods -A -o wide`: NAMESPACE NAME READY STATUS …
    let running = |prefix: &str| {
        shown
            .lines()
            .map(|line| line.split_whitespace().collect::<Vec<_>>())
            .filter(|columns| columns.get(1).is_some_and(|pod| pod.starts_with(prefix)))
            .filter(|columns| columns.get(3) == Some(&"Running"))
            .count()
    };
    anyhow::ensure!(
        running("example-podscaler-") == 4,
        "not 4 sample pods Running:\n{shown}"
    );
    anyhow::ensure!(
        running("podscaler-operator-") == 2 && running("podscaler-webhook-") == 2,
        "the chart's pods are not all Running:\n{shown}"
    );

    up.kill()?;
    let left = footprint.leftovers();
    anyhow::ensure!(
        !left.processes.is_empty() && !left.mounts.is_empty() && left.netns,
        "kill -9 left no shims, mounts or namespace to sweep: {left}"
    );
    anyhow::ensure!(
        Footprint::stale().contains(&footprint),
        "{} is not seen as a killed run's",
        footprint.name
    );
    let left = footprint.remove();
    anyhow::ensure!(
        left.is_empty(),
        "the sweep of {} left: {left}",
        footprint.name
    );
    Ok(())
}
