//! The Helm chart against the real control plane, and its PromQL against the real binaries.
//!
//! Serial: the chart's webhook configurations are cluster-wide and point at a Service this
//! control plane has no network for, so no PodScaler may be written while they exist.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use e2e::binaries::ControlPlane;
use e2e::chart::{self, Helm};
use e2e::local_http;
use e2e::observe;
use e2e::product::{self, Operator};
use e2e::suite::{self, Env, Scenario};
use e2e::wait;
use e2e::webhook::Webhook;
use e2e::{Cluster, Options};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};

/// Generous bound for convergence on a loaded 2-core machine; not a performance assertion.
const CONVERGE: Duration = Duration::from_secs(120);
const RELEASE: &str = "psc";

fn main() -> ExitCode {
    let scenarios: &[(&str, Scenario)] = &[
        ("c01_alerts_and_dashboard_query_exposed_metrics", |env| {
            Box::pin(alerts_and_dashboard_query_exposed_metrics(env))
        }),
        ("c02_helm_install_then_uninstall", |env| {
            Box::pin(helm_install_then_uninstall(env))
        }),
        ("c03_metrics_pass_promtool_in_both_formats", |env| {
            Box::pin(metrics_pass_promtool_in_both_formats(env))
        }),
        (
            "c04_helm_install_without_cert_manager_names_the_fix",
            |env| Box::pin(helm_install_without_cert_manager_names_the_fix(env)),
        ),
    ];
    suite::main_serial(scenarios, Options::default(), |cluster| {
        Box::pin(setup(cluster))
    })
}

/// The PodScaler CRD, and the cert-manager and Prometheus Operator CRDs the chart's optional
/// objects are instances of.
async fn setup(cluster: Arc<Cluster>) -> anyhow::Result<()> {
    product::install_crd(&cluster.client()).await?;
    let crds = tokio::task::spawn_blocking(chart::third_party_crds).await??;
    let kubectl = e2e::kubectl::Kubectl::new(cluster.kubeconfig());
    let dir = crds.display().to_string();
    kubectl.run(&["apply", "--server-side", "-f", &dir]).await?;
    kubectl
        .run(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            &dir,
        ])
        .await?;
    Ok(())
}

fn all_on_values() -> String {
    chart::chart_dir()
        .join("ci/all-on-values.yaml")
        .display()
        .to_string()
}

/// Every metric name the PrometheusRule and the dashboard (every toggle on) select is one the
/// operator or the webhook exposes once they have done their work.
async fn alerts_and_dashboard_query_exposed_metrics(env: Env) -> anyhow::Result<()> {
    let helm = Helm::new(env.cluster.kubeconfig()).await?;
    let chart_dir = chart::chart_dir().display().to_string();
    let rendered = helm
        .run(&[
            "template",
            RELEASE,
            &chart_dir,
            "--namespace",
            &env.namespace,
            "--kube-version",
            env.cluster.version(),
            "-f",
            &all_on_values(),
        ])
        .await?;
    let expressions = chart::promql_expressions(&rendered)?;
    // The alerts and the dashboard's panels and variables: far more than this.
    anyhow::ensure!(
        expressions.len() >= 20,
        "only {} PromQL expressions found in the rendered chart",
        expressions.len()
    );

    let (operator, webhook) = binaries_that_have_worked(&env).await?;
    let mut exposed: BTreeSet<String> = chart::exposed_names(&operator.metrics().await?);
    exposed.extend(chart::exposed_names(&webhook.metrics().await?));
    exposed.insert("up".to_owned()); // Prometheus' own, per scrape target.
    let unknown: Vec<String> = expressions
        .iter()
        .flat_map(|(place, expr)| {
            chart::metric_names(expr)
                .into_iter()
                .filter(|name| !exposed.contains(name))
                .map(move |name| format!("{place}: {name}"))
        })
        .collect();
    anyhow::ensure!(
        unknown.is_empty(),
        "metrics the chart queries but no binary exposes:\n{}\nexposed: {exposed:?}",
        unknown.join("\n")
    );
    Ok(())
}

/// The operator and the webhook, after the webhook admitted a PodScaler and the operator
/// converged it: both have served and reconciled, so their per-request and per-PodScaler series
/// exist. The operator elects itself leader as the chart runs it, so its election series exist
/// too.
async fn binaries_that_have_worked(env: &Env) -> anyhow::Result<(Operator, Webhook)> {
    let lease_namespace = format!("--leader-election-namespace={}", env.namespace);
    let election = ["--leader-elect", lease_namespace.as_str()];
    let operator = Operator::start(&env.cluster, &env.namespace, &election).await?;
    let webhook = Webhook::start(&env.cluster, &env.namespace, &[]).await?;
    webhook
        .admit_namespace(&env.cluster, &env.namespace)
        .await?;
    let manifest = "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: web\nspec:\n  count: 2\n  selector:\n    app: web\n";
    env.apply(manifest).await?;
    wait::until("the PodScaler's pods", CONVERGE, || async {
        let pods = observe::active_pods(&env.client(), &env.namespace, "app=web").await?;
        anyhow::ensure!(pods.len() == 2, "{} pods", pods.len());
        Ok(())
    })
    .await?;
    Ok((operator, webhook))
}

/// Both binaries' real `/metrics` pages pass `promtool check metrics` in the text format 0.0.4
/// (what a scraper that does not ask for OpenMetrics gets), and answer OpenMetrics, with the
/// same samples, when it is asked for.
async fn metrics_pass_promtool_in_both_formats(env: Env) -> anyhow::Result<()> {
    let (operator, webhook) = binaries_that_have_worked(&env).await?;
    let promtool = ControlPlane::locate().await?.path("promtool");
    for (binary, port) in [
        ("operator", operator.metrics_port()),
        ("webhook", webhook.metrics_port()),
    ] {
        let text = scrape(port, "text/plain;version=0.0.4").await?;
        anyhow::ensure!(
            text.content_type.as_deref() == Some("text/plain; version=0.0.4; charset=utf-8"),
            "{binary}: asked for 0.0.4, got {:?}",
            text.content_type
        );
        let lint = chart::promtool_check_metrics(&promtool, &text.body).await?;
        anyhow::ensure!(
            lint.success,
            "{binary}: promtool check metrics failed:\n{}\n--- the page:\n{}",
            lint.output,
            text.body
        );

        let openmetrics = scrape(port, "application/openmetrics-text;version=1.0.0").await?;
        anyhow::ensure!(
            openmetrics
                .content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("application/openmetrics-text; version=1.0.0")),
            "{binary}: asked for OpenMetrics, got {:?}",
            openmetrics.content_type
        );
        anyhow::ensure!(
            openmetrics.body.ends_with("# EOF\n"),
            "{binary}: an OpenMetrics page ends with # EOF"
        );
        let (in_text, in_openmetrics) = (
            chart::exposed_names(&text.body),
            chart::exposed_names(&openmetrics.body),
        );
        anyhow::ensure!(
            in_text == in_openmetrics,
            "{binary}: the formats expose different samples: only in 0.0.4 {:?}, only in \
             OpenMetrics {:?}",
            in_text.difference(&in_openmetrics).collect::<Vec<_>>(),
            in_openmetrics.difference(&in_text).collect::<Vec<_>>()
        );
    }
    Ok(())
}

async fn scrape(port: u16, accept: &str) -> anyhow::Result<local_http::Response> {
    let response = local_http::get_with(port, "/metrics", &[("Accept", accept)]).await?;
    anyhow::ensure!(response.code == 200, "/metrics answered {}", response.code);
    Ok(response)
}

/// `helm install` with every toggle on: every object accepted by the API server, both
/// Deployments available (on kwok nodes); `helm uninstall` removes every object but the CRD.
async fn helm_install_then_uninstall(env: Env) -> anyhow::Result<()> {
    let helm = Helm::new(env.cluster.kubeconfig()).await?;
    let chart_dir = chart::chart_dir().display().to_string();
    helm.run(&[
        "install",
        RELEASE,
        &chart_dir,
        "--namespace",
        &env.namespace,
        "-f",
        &all_on_values(),
    ])
    .await?;
    let manifest = helm
        .run(&["get", "manifest", RELEASE, "--namespace", &env.namespace])
        .await?;
    let manifest_file = env
        .cluster
        .dir()
        .join(format!("{}-manifest.yaml", env.namespace));
    std::fs::write(&manifest_file, &manifest).context("saving the release manifest")?;
    let manifest_path = manifest_file.display().to_string();
    let documents = manifest
        .lines()
        .filter(|line| line.starts_with("kind: "))
        .count();
    let installed = env
        .kubectl
        .run(&["get", "-f", &manifest_path, "-o", "name"])
        .await
        .context("an object of the release is missing")?;
    anyhow::ensure!(
        installed.lines().count() == documents && documents >= 20,
        "{documents} objects in the manifest, {} found:\n{installed}",
        installed.lines().count()
    );

    let deployments: Api<Deployment> = Api::namespaced(env.client(), &env.namespace);
    wait::until("both Deployments to be available", CONVERGE, || async {
        let list = deployments.list(&ListParams::default()).await?;
        let available: Vec<_> = list
            .items
            .iter()
            .map(|deployment| {
                let want = deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .unwrap_or(1);
                let have = deployment
                    .status
                    .as_ref()
                    .and_then(|s| s.available_replicas)
                    .unwrap_or(0);
                (
                    deployment.metadata.name.clone().unwrap_or_default(),
                    have,
                    want,
                )
            })
            .collect();
        anyhow::ensure!(
            available.len() == 2 && available.iter().all(|(_, have, want)| have == want),
            "{available:?}"
        );
        Ok(())
    })
    .await?;

    helm.run(&[
        "uninstall",
        RELEASE,
        "--namespace",
        &env.namespace,
        "--wait",
    ])
    .await?;
    wait::until("the release's objects to be gone", CONVERGE, || async {
        let left = env
            .kubectl
            .run(&[
                "get",
                "-f",
                &manifest_path,
                "--ignore-not-found",
                "-o",
                "name",
            ])
            .await?;
        anyhow::ensure!(left.trim().is_empty(), "still there:\n{left}");
        Ok(())
    })
    .await?;
    env.kubectl
        .run(&["get", "crd", "podscalers.scaling.example.com"])
        .await
        .context("helm uninstall removed the CRD")?;
    Ok(())
}

/// `helm install` (default values: TLS from cert-manager) on a cluster that does not serve
/// cert-manager's API stops before creating anything, with the chart's message naming what to
/// install or which value to set, not helm's "no matches for kind Certificate".
///
/// The suite's setup installed the cert-manager CRDs for the other scenarios; this one deletes
/// them and applies them again afterwards, whatever its outcome. That is safe because the suite
/// is serial (no scenario runs meanwhile) and no cert-manager object exists between scenarios
/// (c02 uninstalls its release). A server-side dry run would not do: it renders against the
/// same cluster, which serves cert-manager while the CRDs are there.
async fn helm_install_without_cert_manager_names_the_fix(env: Env) -> anyhow::Result<()> {
    let crds = tokio::task::spawn_blocking(chart::third_party_crds).await??;
    let cert_manager = crds.join("cert-manager.crds.yaml").display().to_string();
    env.kubectl
        .run(&["delete", "--wait", "-f", &cert_manager])
        .await
        .context("deleting the cert-manager CRDs")?;
    let outcome = refused_without_cert_manager(&env).await;
    let restored = restore_crds(&env, &cert_manager).await;
    match (outcome, restored) {
        (Err(error), Err(restoring)) => {
            Err(error.context(format!("restoring the CRDs failed too: {restoring:#}")))
        }
        (outcome, restored) => outcome.and(restored),
    }
}

async fn refused_without_cert_manager(env: &Env) -> anyhow::Result<()> {
    // Discovery drops a deleted CRD's group a moment after the delete returns.
    wait::until("cert-manager.io to leave discovery", CONVERGE, || async {
        let versions = env.kubectl.run(&["api-versions"]).await?;
        anyhow::ensure!(
            !versions
                .lines()
                .any(|line| line.starts_with("cert-manager.io/")),
            "still served"
        );
        Ok(())
    })
    .await?;
    let helm = Helm::new(env.cluster.kubeconfig()).await?;
    let chart_dir = chart::chart_dir().display().to_string();
    let install = helm
        .run(&[
            "install",
            RELEASE,
            &chart_dir,
            "--namespace",
            &env.namespace,
        ])
        .await;
    let refusal = match install {
        Ok(_) => anyhow::bail!("helm install succeeded without cert-manager"),
        Err(error) => format!("{error:#}"),
    };
    for expected in [
        "webhook.tls.mode=certManager needs cert-manager",
        "install cert-manager first",
        "--set webhook.tls.mode=secret",
        "webhook.tls.secret.caBundle",
        "webhook.enabled=false",
    ] {
        anyhow::ensure!(
            refusal.contains(expected),
            "the refusal does not mention {expected:?}: {refusal}"
        );
    }
    let releases = helm
        .run(&["list", "--namespace", &env.namespace, "--all", "--short"])
        .await?;
    anyhow::ensure!(
        releases.trim().is_empty(),
        "the refused install left a release: {releases}"
    );
    Ok(())
}

/// The cert-manager CRDs back, as the suite's setup left them.
async fn restore_crds(env: &Env, file: &str) -> anyhow::Result<()> {
    env.kubectl
        .run(&["apply", "--server-side", "-f", file])
        .await
        .context("applying the cert-manager CRDs again")?;
    env.kubectl
        .run(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "-f",
            file,
        ])
        .await?;
    Ok(())
}
