//! Running scenarios as named test trials against one shared control plane.
//!
//! `main()` of a suite starts the control plane, runs every scenario (in parallel, each in its
//! own namespace), prints the components' logs when one failed and stops the control plane
//! before exiting, so a run never leaves processes or directories behind.

use std::future::Future;
use std::io::IsTerminal as _;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use libtest_mimic::{Arguments, Failed, Trial};
use tokio::runtime::Runtime;

use crate::cluster::{Cluster, Options};
use crate::kubectl::Kubectl;

/// What a scenario gets: the cluster and a fresh namespace of its own.
#[derive(Clone)]
pub struct Env {
    pub cluster: Arc<Cluster>,
    /// This scenario's namespace (already created, with its default ServiceAccount).
    pub namespace: String,
    /// `kubectl` with the admin kubeconfig.
    pub kubectl: Kubectl,
}

impl Env {
    /// A kube client with cluster-admin rights.
    pub fn client(&self) -> kube::Client {
        self.cluster.client()
    }

    /// `kubectl -n <namespace> <args>`.
    pub async fn kubectl(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec!["-n", self.namespace.as_str()];
        full.extend_from_slice(args);
        self.kubectl.run(&full).await
    }

    /// `kubectl -n <namespace> apply -f -` with `manifest` on stdin.
    pub async fn apply(&self, manifest: &str) -> anyhow::Result<String> {
        self.kubectl
            .run_with_input(
                &["-n", self.namespace.as_str(), "apply", "-f", "-"],
                Some(manifest),
            )
            .await
    }

    /// `kubectl -n <namespace> apply -f -` expected to be refused; returns kubectl's stderr.
    pub async fn apply_refused(&self, manifest: &str) -> anyhow::Result<String> {
        self.kubectl
            .run_failing(
                &["-n", self.namespace.as_str(), "apply", "-f", "-"],
                Some(manifest),
            )
            .await
    }
}

/// A scenario: an async test body.
pub type Scenario = fn(Env) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Prepares the shared cluster (install CRDs, start shared services) before the scenarios.
pub type Setup = fn(Arc<Cluster>) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// Runs `scenarios` against one control plane and returns the process exit code.
pub fn main(scenarios: &[(&'static str, Scenario)], options: Options, setup: Setup) -> ExitCode {
    run_suite(scenarios, options, setup, Arguments::from_args())
}

/// As [`main`], one scenario at a time: for scenarios that change what the whole cluster does
/// (cluster-scoped webhook configurations) and must not overlap.
pub fn main_serial(
    scenarios: &[(&'static str, Scenario)],
    options: Options,
    setup: Setup,
) -> ExitCode {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    run_suite(scenarios, options, setup, args)
}

fn run_suite(
    scenarios: &[(&'static str, Scenario)],
    options: Options,
    setup: Setup,
    args: Arguments,
) -> ExitCode {
    init_logging();
    if let Some(listed) = list(&args, scenarios.iter().map(|(name, _)| *name)) {
        return listed;
    }
    let runtime = match trial_runtime() {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let cluster = match runtime.block_on(start(options, setup)) {
        Ok(cluster) => cluster,
        Err(error) => {
            eprintln!("the control plane did not start: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let trials = scenarios
        .iter()
        .map(|&(name, scenario)| {
            let runtime = Arc::clone(&runtime);
            let cluster = Arc::clone(&cluster);
            Trial::test(name, move || {
                run_scenario(&runtime, cluster, name, scenario)
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);
    if conclusion.has_failed() {
        eprintln!(
            "\n===== control-plane logs (last lines) =====\n{}",
            cluster.logs(60)
        );
    }
    drop(cluster);
    conclusion.exit_code()
}

/// With `--list`, lists `names` (starting nothing) and returns the exit code; `None` otherwise.
pub fn list(args: &Arguments, names: impl IntoIterator<Item = &'static str>) -> Option<ExitCode> {
    if !args.list {
        return None;
    }
    let trials = names
        .into_iter()
        .map(|name| Trial::test(name, || Ok(())))
        .collect();
    Some(libtest_mimic::run(args, trials).exit_code())
}

/// The runtime a suite's trials block on (each on a libtest-mimic thread of its own), with
/// worker threads for what they spawn. On failure, says so and returns the exit code.
pub fn trial_runtime() -> Result<Arc<Runtime>, ExitCode> {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => Ok(Arc::new(runtime)),
        Err(error) => {
            eprintln!("cannot start a tokio runtime: {error}");
            Err(ExitCode::FAILURE)
        }
    }
}

async fn start(options: Options, setup: Setup) -> anyhow::Result<Arc<Cluster>> {
    let cluster = Arc::new(Cluster::start(options).await?);
    setup(Arc::clone(&cluster))
        .await
        .context("preparing the cluster")?;
    Ok(cluster)
}

fn run_scenario(
    runtime: &Runtime,
    cluster: Arc<Cluster>,
    name: &str,
    scenario: Scenario,
) -> Result<(), Failed> {
    let namespace = namespace_for(name);
    let outcome = runtime.block_on(async {
        cluster.create_namespace(&namespace).await?;
        let env = Env {
            kubectl: Kubectl::new(cluster.kubeconfig()),
            cluster: Arc::clone(&cluster),
            namespace: namespace.clone(),
        };
        scenario(env).await
    });
    outcome.map_err(|error| {
        Failed::from(format!(
            "{error:#}\n{}",
            scenario_logs(cluster.dir(), &namespace)
        ))
    })
}

/// The last lines of the logs of the binaries a scenario started (they are named after its
/// namespace), which go with the cluster's directory when the suite ends.
fn scenario_logs(dir: &std::path::Path, namespace: &str) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return String::new();
    };
    let mut logs: Vec<_> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.contains(namespace) && name.ends_with(".log"))
        })
        .collect();
    logs.sort();
    logs.iter()
        .map(|path| {
            format!(
                "===== {} =====\n{}\n",
                path.display(),
                crate::process::tail(path, 40)
            )
        })
        .collect()
}

/// A namespace name from a scenario name: lowercase, `-` for anything else, at most 63 chars.
fn namespace_for(name: &str) -> String {
    let mut namespace: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    namespace.truncate(63);
    namespace.trim_matches('-').to_owned()
}

/// Logs to stderr at `info` (kube's own at `warn`) unless `RUST_LOG` says otherwise.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a suite's output is often kept in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
