//! `podscaler-up`: runs PodScaler the quickest way a user can see it work.
//!
//! Uses the cluster the current kubeconfig points at when it answers; otherwise starts the
//! local control plane the e2e suite uses (etcd, kube-apiserver, controller-manager, scheduler,
//! kwok nodes on 127.0.0.1), while cargo brings the operator and webhook binaries up to date.
//! Then installs the CRD, runs the operator binary as a local process (and, on the local
//! control plane, the admission webhook, registered for the demo namespace), applies the seed
//! sample in namespace `podscaler-demo` (the only one the operator manages here), waits for its
//! pods and shows them, with the kubeconfig to export and the binaries' metrics and health
//! addresses. Every step is reported on stderr as it starts, with the seconds since the start.
//! Ctrl-C, at any point, stops a build under way, the operator, the webhook and the local
//! control plane (whatever it started), as do SIGTERM and SIGHUP; the sample stays in a
//! cluster that was already there, so `kubectl delete namespace podscaler-demo` cleans it up.
//!
//! `--real-node` instead starts the e2e suite's real-node tier and installs the Helm chart
//! there (see `real_node`).

mod real_node;
mod summary;

use std::cell::Cell;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use e2e::binaries::Product;
use e2e::cluster::{ensure_namespace, private_tempdir};
use e2e::command::{self, LogStyle};
use e2e::kubectl::Kubectl;
use e2e::product::{self, Operator, SEED_SAMPLE};
use e2e::webhook::Webhook;
use e2e::{Cluster, Options, observe, wait};
use kube::Client;
use kube::config::Kubeconfig;
use summary::{Endpoints, Summary};

/// Where the sample goes, and the only namespace the operator manages: on a cluster that was
/// already there, the sample's `app: nginx` selector must not claim anybody else's pods.
const DEMO_NAMESPACE: &str = "podscaler-demo";
/// How long an existing cluster may take to answer before the local one is started.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many pods the seed sample asks for.
const SAMPLE_PODS: usize = 4;
/// How long the sample's pods may take to run.
const CONVERGE: Duration = Duration::from_secs(180);

/// Where PodScaler runs: a cluster that was there, or one this command started.
enum Target {
    Existing {
        kubeconfig: PathBuf,
        client: Client,
        logs: tempfile::TempDir,
    },
    Local(Box<Cluster>),
}

impl Target {
    fn kubeconfig(&self) -> PathBuf {
        match self {
            Self::Existing { kubeconfig, .. } => kubeconfig.clone(),
            Self::Local(cluster) => cluster.kubeconfig().to_path_buf(),
        }
    }

    fn client(&self) -> Client {
        match self {
            Self::Existing { client, .. } => client.clone(),
            Self::Local(cluster) => cluster.client(),
        }
    }

    fn log_dir(&self) -> PathBuf {
        match self {
            Self::Existing { logs, .. } => logs.path().to_path_buf(),
            Self::Local(cluster) => cluster.dir().to_path_buf(),
        }
    }
}

/// Runs PodScaler the quickest way you can see it work: on the current kubeconfig's cluster when
/// it answers, otherwise on a local control plane this command starts (and stops on Ctrl-C).
#[derive(Parser)]
struct Args {
    /// Start a control plane with one real node instead (containerd and a kubelet, everything
    /// in a network namespace of its own; needs root) and install the Helm chart on it, with
    /// cert-manager: PodScaler in real pods, as it runs in production (about 45 s when warm).
    #[arg(long)]
    real_node: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // kube_client logs every refused connection while the local apiserver starts.
    command::init_logging("info,kube_client=off", LogStyle::Progress);
    // Before the runtime exists: the threads it starts must be inside the namespace.
    let footprint = if args.real_node {
        match e2e::node::enter() {
            Ok(footprint) => Some(footprint),
            Err(error) => return command::fail(&error.context("preparing the real node")),
        }
    } else {
        None
    };
    // Ctrl-C (or SIGTERM, or the terminal closing) at any point drops `run`: a cargo build
    // under way, the operator, the webhook and a local control plane stop, and their
    // directories are removed.
    command::run_on_main_thread(async {
        let run = async {
            match footprint {
                Some(footprint) => real_node::run(footprint).await,
                None => run().await,
            }
        };
        tokio::select! {
            outcome = run => outcome,
            stop = stop_signal() => {
                let signal = stop?;
                eprintln!("{signal}: stopping");
                Ok(())
            }
        }
    })
}

/// Waits for SIGINT, SIGTERM or SIGHUP; returns its name.
async fn stop_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut hangup = signal(SignalKind::hangup()).context("handling SIGHUP")?;
    Ok(tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
        _ = hangup.recv() => "SIGHUP",
    })
}

/// Runs until a stop signal (see `main`); returns only on failure.
async fn run() -> anyhow::Result<()> {
    // Building the binaries and starting a control plane need nothing from each other.
    let (_built, target) = tokio::try_join!(Product::build(), target())?;
    let kubeconfig = target.kubeconfig();
    let client = target.client();
    let namespace = DEMO_NAMESPACE;

    tracing::info!("installing the PodScaler CRD and namespace {namespace}");
    product::install_crd(&client).await?;
    ensure_namespace(&client, namespace).await?;
    tracing::info!(
        "starting the operator{}",
        match target {
            Target::Local(_) => " and the webhook",
            Target::Existing { .. } => "",
        }
    );
    let (webhook, operator) = tokio::try_join!(
        start_webhook(&target, namespace),
        start_operator(&target, namespace)
    )?;
    tracing::info!("applying the seed sample in namespace {namespace}");
    let kubectl = Kubectl::new(&kubeconfig);
    kubectl
        .run_with_input(&["-n", namespace, "apply", "-f", "-"], Some(SEED_SAMPLE))
        .await
        .context("applying the seed sample")?;
    wait_for_pods(&client, namespace).await?;

    println!(
        "{}",
        kubectl
            .run(&["-n", namespace, "get", "podscaler", "example-podscaler"])
            .await?
    );
    println!(
        "{}",
        kubectl
            .run(&[
                "-n",
                namespace,
                "get",
                "pods",
                "-l",
                "app=nginx",
                "-o",
                "wide"
            ])
            .await?
    );
    let summary = Summary {
        namespace,
        local_kubeconfig: match &target {
            Target::Local(cluster) => Some(cluster.kubeconfig()),
            Target::Existing { .. } => None,
        },
        operator: Endpoints {
            metrics_port: operator.metrics_port(),
            health_port: operator.health_port(),
            log: operator.log_path(),
        },
        webhook: webhook.as_ref().map(|webhook| Endpoints {
            metrics_port: webhook.metrics_port(),
            health_port: webhook.health_port(),
            log: webhook.log_path(),
        }),
    };
    print!("{}", summary.render());

    std::future::pending::<()>().await;
    Ok(())
}

/// The current kubeconfig's cluster when it answers, a local control plane otherwise.
async fn target() -> anyhow::Result<Target> {
    if let Some(existing) = existing_cluster().await? {
        return Ok(existing);
    }
    tracing::info!(
        "no reachable cluster in the current kubeconfig: starting a local control plane"
    );
    Ok(Target::Local(Box::new(
        Cluster::start(Options::default()).await?,
    )))
}

/// On a local control plane: runs the webhook and has the API server send it the PodScalers
/// in `namespace`. A cluster that was already there cannot call this machine's 127.0.0.1.
async fn start_webhook(target: &Target, namespace: &str) -> anyhow::Result<Option<Webhook>> {
    let Target::Local(cluster) = target else {
        tracing::info!(
            "not running the webhook: a cluster that was already there cannot call this \
             machine's 127.0.0.1 (install the Helm chart for that)"
        );
        return Ok(None);
    };
    let webhook = Webhook::start(cluster, "podscaler-webhook", &[]).await?;
    webhook.admit_namespace(cluster, namespace).await?;
    Ok(Some(webhook))
}

/// Runs the operator, confined to `namespace`.
async fn start_operator(target: &Target, namespace: &str) -> anyhow::Result<Operator> {
    Operator::launch(
        "podscaler-operator",
        &target.kubeconfig(),
        &target.log_dir(),
        &[
            format!("--namespace={namespace}"),
            "--log-level=info".to_owned(),
        ],
    )
    .await
}

/// Waits for the sample's pods to run, reporting each change in how many are created and
/// running.
async fn wait_for_pods(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let reported = Cell::new(None);
    let reported = &reported;
    wait::until(
        &format!("the sample's {SAMPLE_PODS} pods to run"),
        CONVERGE,
        || async move {
            let pods = observe::active_pods(client, namespace, "app=nginx").await?;
            let running = pods.iter().filter(|pod| observe::is_running(pod)).count();
            let seen = (pods.len(), running);
            if reported.replace(Some(seen)) != Some(seen) {
                tracing::info!(
                    "pods: {running} of {SAMPLE_PODS} running ({} created)",
                    pods.len()
                );
            }
            anyhow::ensure!(running >= SAMPLE_PODS, "{running} running");
            Ok(())
        },
    )
    .await
}

/// The current kubeconfig's cluster, when there is one and it answers within [`PROBE_TIMEOUT`].
async fn existing_cluster() -> anyhow::Result<Option<Target>> {
    let kubeconfig = match current_kubeconfig() {
        Ok(Some(kubeconfig)) => kubeconfig,
        Ok(None) => return Ok(None),
        Err(error) => {
            tracing::warn!("the current kubeconfig cannot be used: {error:#}");
            return Ok(None);
        }
    };
    let config =
        match kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &Default::default()).await {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!("the current kubeconfig cannot be used: {error}");
                return Ok(None);
            }
        };
    let client =
        Client::try_from(config).context("building a client for the current kubeconfig")?;
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(version)) => {
            tracing::info!(
                "using the current kubeconfig's cluster (Kubernetes {})",
                version.git_version
            );
        }
        Ok(Err(error)) => {
            tracing::info!("the current kubeconfig's cluster does not answer: {error}");
            return Ok(None);
        }
        Err(_) => {
            tracing::info!(
                "the current kubeconfig's cluster did not answer within {PROBE_TIMEOUT:?}"
            );
            return Ok(None);
        }
    }
    let logs = private_tempdir("podscaler-up-").context("creating a directory for the logs")?;
    let path = write_kubeconfig(&kubeconfig, logs.path())?;
    Ok(Some(Target::Existing {
        kubeconfig: path,
        client,
        logs,
    }))
}

/// The kubeconfig kubectl would use: the files `$KUBECONFIG` lists, merged in order (those
/// that do not exist skipped), or `~/.kube/config`. None when there is no such file.
fn current_kubeconfig() -> anyhow::Result<Option<Kubeconfig>> {
    let paths: Vec<PathBuf> = match std::env::var_os("KUBECONFIG") {
        Some(list) => std::env::split_paths(&list)
            .filter(|path| path.is_file())
            .collect(),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".kube/config"))
            .filter(|path| path.is_file())
            .into_iter()
            .collect(),
    };
    let mut merged: Option<Kubeconfig> = None;
    for path in paths {
        let next =
            Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
        merged = Some(match merged {
            None => next,
            Some(merged) => merged
                .merge(next)
                .with_context(|| format!("merging {}", path.display()))?,
        });
    }
    Ok(merged)
}

/// Writes `kubeconfig` to `dir` (private to this user: it holds credentials) for the operator
/// and the kubectl calls, so both use exactly the cluster, user and context probed.
fn write_kubeconfig(kubeconfig: &Kubeconfig, dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("kubeconfig");
    // JSON is YAML: kube-rs and kubectl read it as a kubeconfig.
    let text = serde_json::to_vec_pretty(kubeconfig).context("serializing the kubeconfig")?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(&text))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
