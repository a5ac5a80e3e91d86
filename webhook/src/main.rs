//! `podscaler-webhook`: parses flags and wires the library together. See README.md.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use podscaler::admin::{self, Endpoints, Readiness};
use podscaler::rest_client_metrics::RestClientMetrics;
use podscaler::{runtime, telemetry};
use podscaler_webhook::cli::Cli;
use podscaler_webhook::{PodScalerIndex, cache};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// How failures are signed on stderr and in the log.
const BINARY: &str = "podscaler-webhook";

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = telemetry::init(&cli.log) {
        return runtime::exit_code(BINARY, Err(error));
    }
    runtime::exit_code(BINARY, run(cli).await)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // kube's client builds its TLS configuration from the process-wide provider; the server
    // passes the same provider explicitly. Installing fails only if one is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let shutdown = CancellationToken::new();
    let readiness = Readiness::default();
    let mut registry = Registry::default();
    podscaler::process_metrics::register(&mut registry);
    let api_metrics = RestClientMetrics::register(&mut registry);

    // The certificate first: a bad file is reported (naming it) before anything else.
    let (store, writer) = cache::store();
    let index: Arc<dyn PodScalerIndex> = Arc::new(store.clone());
    let running =
        podscaler_webhook::start(cli.options(), index, &mut registry, shutdown.clone()).await?;

    let config = kube::Config::infer().await.context(
        "creating the Kubernetes client: run in a cluster, or set KUBECONFIG to a kubeconfig",
    )?;
    let client = api_metrics
        .client(config)
        .context("building the Kubernetes client")?;
    let registry = Arc::new(registry);
    let mut admin_servers = Vec::new();
    if let Some(listener) = admin::bind(cli.metrics_bind_address, "--metrics-bind-address").await? {
        let secure = cli.metrics_secure.then(|| admin::SecureMetrics {
            cert_dir: cli.metrics_cert_dir.as_deref(),
            client: client.clone(),
        });
        admin_servers.push(admin::spawn_metrics(
            listener,
            registry.clone(),
            secure,
            shutdown.clone(),
        )?);
    }
    if let Some(listener) =
        admin::bind(cli.health_probe_bind_address, "--health-probe-bind-address").await?
    {
        admin_servers.push(admin::spawn(
            listener,
            Endpoints::Health(readiness.clone()),
            shutdown.clone(),
        ));
    }

    let cache_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                () = cache::watch(client, writer) => {}
                () = shutdown.cancelled() => {}
            }
        }
    });
    let ready_task = tokio::spawn({
        let readiness = readiness.clone();
        let shutdown = shutdown.clone();
        async move {
            tokio::select! {
                synced = store.wait_until_ready() => {
                    if synced.is_ok() {
                        tracing::info!("PodScaler cache synced; ready");
                        readiness.set_ready();
                    }
                }
                () = shutdown.cancelled() => {}
            }
        }
    });

    let signal = podscaler::runtime::stop_signal()
        .await
        .context("installing the SIGTERM and SIGINT handlers")?;
    tracing::info!(
        signal,
        "shutting down: finishing in-flight admission requests"
    );
    shutdown.cancel();
    running.stopped().await;
    for task in admin_servers.into_iter().chain([cache_task, ready_task]) {
        if let Err(error) = task.await {
            tracing::warn!(%error, "a background task failed during shutdown");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
