//! `podscaler-operator`: runs the PodScaler controller with its metrics and health servers.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, ListParams};
use podscaler::admin::{self, Endpoints, Readiness};
use podscaler::api::PodScaler;
use podscaler::cache::metrics::CacheMetrics;
use podscaler::cli::{LeaderElectionArgs, OperatorArgs};
use podscaler::contention::Fights;
use podscaler::controller::{self, Scope};
use podscaler::expectations::Expectations;
use podscaler::leader::{self, ElectionConfig, Elector, MasterStatus};
use podscaler::metrics::Metrics;
use podscaler::reconcile::{Context, Settings};
use podscaler::rest_client_metrics::RestClientMetrics;
use podscaler::{runtime, telemetry};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// How failures are signed on stderr and in the log.
const BINARY: &str = "podscaler-operator";

#[tokio::main]
async fn main() -> ExitCode {
    let args = OperatorArgs::parse();
    if let Err(error) = telemetry::init(&args.log) {
        return runtime::exit_code(BINARY, Err(error));
    }
    runtime::exit_code(BINARY, run(args).await)
}

async fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let mut registry = Registry::default();
    let election = election_config(&args.leader_election)?.map(|config| {
        let status = MasterStatus::register(&mut registry, &config.lease_name);
        (config, status)
    });
    let metrics = Metrics::register(&mut registry, args.max_concurrent_reconciles);
    podscaler::process_metrics::register(&mut registry);
    let cache_metrics = CacheMetrics::register(&mut registry);
    let api_metrics = RestClientMetrics::register(&mut registry);
    let readiness = Readiness::default();
    let config = kube::Config::infer().await.context(
        "no Kubernetes configuration: set KUBECONFIG, use ~/.kube/config, or run in a cluster",
    )?;
    let api_url = config.cluster_url.to_string();
    let client = api_metrics
        .client(config)
        .context("building the Kubernetes client")?;

    let mut servers = Vec::new();
    if let Some(listener) = admin::bind(args.metrics_bind_address, "--metrics-bind-address").await?
    {
        tracing::info!(address = %listener.local_addr()?, secure = args.metrics_secure, "serving metrics");
        let secure = args.metrics_secure.then(|| admin::SecureMetrics {
            cert_dir: args.metrics_cert_dir.as_deref(),
            client: client.clone(),
        });
        servers.push(admin::spawn_metrics(
            listener,
            Arc::new(registry),
            secure,
            shutdown.clone(),
        )?);
    }
    if let Some(listener) = admin::bind(
        args.health_probe_bind_address,
        "--health-probe-bind-address",
    )
    .await?
    {
        tracing::info!(address = %listener.local_addr()?, "serving health probes");
        servers.push(admin::spawn(
            listener,
            Endpoints::Health(readiness.clone()),
            shutdown.clone(),
        ));
    }

    let scope = args.scope();
    preflight(&client, &scope, &api_url).await?;

    let settings = Settings {
        requeue_after: args.requeue_after,
    };
    let expectations = Expectations::new(args.expectations_timeout);
    let make_context = |pods| {
        Context::new(
            client.clone(),
            pods,
            metrics,
            expectations,
            Fights::default(),
            settings,
        )
    };
    let run_controller = || {
        tracing::info!(?scope, requeue_after = ?args.requeue_after, "starting the PodScaler controller");
        controller::run(
            client.clone(),
            scope,
            args.max_concurrent_reconciles,
            make_context,
            readiness.clone(),
            cache_metrics,
            shutdown.clone(),
        )
    };
    let stopped = match election {
        None => run_controller().await,
        Some((config, status)) => {
            // A standby is ready: it serves probes and metrics, and a rolling update must be
            // able to start the next replica while the leader still holds the lease.
            readiness.set_ready();
            let mut elector = Elector::new(client.clone(), config, status);
            leader::lead(&mut elector, &shutdown, run_controller)
                .await?
                .unwrap_or(Ok(()))
        }
    };
    shutdown.cancel();
    for server in servers {
        let _ = server.await;
    }
    stopped.context("the controller stopped")
}

/// The Lease to hold with `--leader-elect` (`None` without it), checked before anything starts.
fn election_config(args: &LeaderElectionArgs) -> anyhow::Result<Option<ElectionConfig>> {
    if !args.leader_elect {
        return Ok(None);
    }
    let timing = args.timing();
    timing
        .validate()
        .context("--leader-election-lease-duration, --leader-election-renew-deadline, --leader-election-retry-period")?;
    let in_cluster = leader::in_cluster_namespace();
    let namespace = leader::namespace(
        args.leader_election_namespace.as_deref(),
        in_cluster.as_deref(),
    )?;
    let identity = leader::identity().context("making a leader election identity")?;
    Ok(Some(ElectionConfig {
        lease_name: args.leader_election_id.clone(),
        namespace,
        identity,
        timing,
    }))
}

/// Fails early, with what to do, when the CRD is missing or RBAC denies what the operator needs.
async fn preflight(client: &Client, scope: &Scope, api_url: &str) -> anyhow::Result<()> {
    let where_ = match scope {
        Scope::Cluster => "in all namespaces".to_owned(),
        Scope::Namespace(namespace) => format!("in namespace {namespace:?}"),
    };
    let probe = ListParams::default().limit(1);
    let scalers: Api<PodScaler> = scope.api(client.clone());
    match scalers.list_metadata(&probe).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => anyhow::bail!(
            "the PodScaler CRD (podscalers.scaling.example.com) is not installed: \
             run `cargo run -p crd-gen | kubectl create -f -` or install the Helm chart"
        ),
        Err(kube::Error::Api(status)) if status.is_forbidden() => anyhow::bail!(
            "RBAC: not allowed to list podscalers.scaling.example.com {where_} ({}); \
             grant list/watch on podscalers and patch on podscalers/status",
            status.message
        ),
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot reach the Kubernetes API at {api_url}"));
        }
    }
    let pods: Api<Pod> = scope.api(client.clone());
    match pods.list_metadata(&probe).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_forbidden() => anyhow::bail!(
            "RBAC: not allowed to list pods {where_} ({}); grant list/watch/create/delete on pods",
            status.message
        ),
        Err(error) => Err(error).context("listing pods"),
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT. Without the handlers the operator still runs, but
/// it can only be killed, so say so.
async fn cancel_on_signal(shutdown: CancellationToken) {
    match podscaler::runtime::stop_signal().await {
        Ok(signal) => {
            tracing::info!(signal, "shutting down: letting in-flight reconciles finish");
            shutdown.cancel();
        }
        Err(error) => tracing::warn!(%error, "cannot listen for SIGTERM and SIGINT"),
    }
}
