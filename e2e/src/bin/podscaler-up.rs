//! `podscaler-up`: runs PodScaler the quickest way a user can see it work.
//!
//! Uses the cluster the current kubeconfig points at when it answers; otherwise starts the
//! local control plane the e2e suite uses (etcd, kube-apiserver, controller-manager, scheduler,
//! kwok nodes on 127.0.0.1). Then installs the CRD, runs the operator binary as a local
//! process (and, on the local control plane, the admission webhook, registered for the
//! demo namespace), applies the seed sample in namespace `podscaler-demo` (the only one the
//! operator manages here), waits for its pods and shows them. Ctrl-C, at any point, stops the
//! operator (and the local control plane, if it started one); the sample stays in a cluster
//! that was already there, so `kubectl delete namespace podscaler-demo` cleans it up.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use e2e::cluster::ensure_namespace;
use e2e::kubectl::Kubectl;
use e2e::product::{self, Operator, SEED_SAMPLE};
use e2e::webhook::Webhook;
use e2e::{Cluster, Options, observe, wait};
use kube::Client;
use kube::config::Kubeconfig;

/// Where the sample goes, and the only namespace the operator manages: on a cluster that was
/// already there, the sample's `app: nginx` selector must not claim anybody else's pods.
const DEMO_NAMESPACE: &str = "podscaler-demo";
/// How long an existing cluster may take to answer before the local one is started.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // kube_client logs every refused connection while the local apiserver starts.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube_client=off".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Current-thread runtime on the main thread: the child processes' parent-death signal is
    // tied to the thread that started them, which must live as long as they do.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Ctrl-C at any point drops `run`: the operator, the webhook and a local control plane
    // stop, and the control plane's directory is removed.
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run() => outcome,
            interrupted = tokio::signal::ctrl_c() => {
                interrupted.context("waiting for Ctrl-C")?;
                eprintln!("stopping");
                Ok(())
            }
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs until Ctrl-C (see `main`); returns only on failure.
async fn run() -> anyhow::Result<()> {
    let target = match existing_cluster().await? {
        Some(existing) => existing,
        None => {
            eprintln!(
                "no reachable cluster in the current kubeconfig: starting a local control plane"
            );
            eprintln!("(the first run builds it from source and takes about 7 minutes on 2 cores)");
            Target::Local(Box::new(Cluster::start(Options::default()).await?))
        }
    };
    let kubeconfig = target.kubeconfig();
    let client = target.client();

    product::install_crd(&client).await?;
    let namespace = DEMO_NAMESPACE;
    ensure_namespace(&client, namespace).await?;
    let webhook = match &target {
        Target::Local(cluster) => Some(start_webhook(cluster, namespace).await?),
        Target::Existing { .. } => {
            eprintln!(
                "not running the webhook: a cluster that was already there cannot call this \
                 machine's 127.0.0.1 (install the Helm chart for that)"
            );
            None
        }
    };
    let operator = Operator::launch(
        "podscaler-operator",
        &kubeconfig,
        &target.log_dir(),
        &[
            format!("--namespace={namespace}"),
            "--log-level=info".to_owned(),
        ],
    )
    .await?;
    let kubectl = Kubectl::new(&kubeconfig);
    kubectl
        .run_with_input(&["-n", namespace, "apply", "-f", "-"], Some(SEED_SAMPLE))
        .await
        .context("applying the seed sample")?;
    wait::until("the sample's 4 pods to run", CONVERGE, || async {
        let pods = observe::active_pods(&client, namespace, "app=nginx").await?;
        let running = pods.iter().filter(|pod| observe::is_running(pod)).count();
        anyhow::ensure!(running >= 4, "{running} running");
        Ok(())
    })
    .await?;
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
    println!("operator log: {}", operator.log_path().display());
    if let Some(webhook) = &webhook {
        println!("webhook log:  {}", webhook.log_path().display());
    }
    let scale = format!("kubectl -n {namespace} scale podscaler example-podscaler --replicas=6");
    match target {
        Target::Local(_) => println!("try:  KUBECONFIG={} {scale}", kubeconfig.display()),
        Target::Existing { .. } => println!("try:  {scale}"),
    }
    println!(
        "Ctrl-C stops the operator{}.",
        match target {
            Target::Local(_) => " and the local control plane",
            Target::Existing { .. } => "",
        }
    );

    std::future::pending::<()>().await;
    Ok(())
}

/// Runs the webhook and has the API server send it the PodScalers in `namespace`.
async fn start_webhook(cluster: &Cluster, namespace: &str) -> anyhow::Result<Webhook> {
    let webhook = Webhook::start(cluster, "podscaler-webhook", &[]).await?;
    webhook.admit_namespace(cluster, namespace).await?;
    Ok(webhook)
}

/// The current kubeconfig's cluster, when there is one and it answers within [`PROBE_TIMEOUT`].
async fn existing_cluster() -> anyhow::Result<Option<Target>> {
    let Ok(config) = kube::Config::infer().await else {
        return Ok(None);
    };
    let Ok(client) = Client::try_from(config) else {
        return Ok(None);
    };
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Ok(Ok(version)) => {
            eprintln!(
                "using the current kubeconfig's cluster (Kubernetes {})",
                version.git_version
            );
        }
        Ok(Err(error)) => {
            eprintln!("the current kubeconfig's cluster does not answer: {error}");
            return Ok(None);
        }
        Err(_) => {
            eprintln!("the current kubeconfig's cluster did not answer within {PROBE_TIMEOUT:?}");
            return Ok(None);
        }
    }
    let logs = tempfile::Builder::new()
        .prefix("podscaler-up-")
        .tempdir()
        .context("creating a directory for the operator's log")?;
    let kubeconfig = write_current_kubeconfig(logs.path())?;
    Ok(Some(Target::Existing {
        kubeconfig,
        client,
        logs,
    }))
}

/// Writes the kubeconfig kube-rs and kubectl resolve (every file `$KUBECONFIG` lists, merged as
/// kubectl merges them, or `~/.kube/config`) to one file in `dir`, for the operator and the
/// kubectl calls: both then see exactly the cluster, user and context probed above.
fn write_current_kubeconfig(dir: &Path) -> anyhow::Result<PathBuf> {
    let merged = Kubeconfig::read().context("reading the current kubeconfig")?;
    let path = dir.join("kubeconfig");
    // JSON is YAML: kube-rs and kubectl read it as a kubeconfig.
    let text = serde_json::to_vec_pretty(&merged).context("serializing the kubeconfig")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
