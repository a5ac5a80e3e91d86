//! The README's run command, `podscaler-up`, where no cluster is reachable: it starts the local
//! control plane itself, runs the sample, says how to reach everything, and stops all it
//! started on Ctrl-C. (`operator.rs` s14 runs it on a cluster that was already there.)
//!
//! No shared control plane here: the command under test starts its own.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use e2e::cluster::{PROBE_NAMESPACE, client_for, private_tempdir};
use e2e::process::Process;
use e2e::{observe, procs, wait};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use libtest_mimic::{Arguments, Failed, Trial};

/// Long enough for a first run that builds the control plane (about 7 minutes on 2 cores).
const SHOWN_WITHIN: Duration = Duration::from_secs(900);
/// How long the namespace controller may take to remove the probe's namespace.
const NAMESPACE_GONE_WITHIN: Duration = Duration::from_secs(120);
/// How long podscaler-up may take to stop after Ctrl-C.
const STOP_WITHIN: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let trials = vec![Trial::test(
        "u01_run_command_on_a_local_control_plane",
        || in_runtime(run_command_on_a_local_control_plane()),
    )];
    libtest_mimic::run(&args, trials).exit_code()
}

fn in_runtime(test: impl Future<Output = anyhow::Result<()>>) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| Failed::from(format!("starting a runtime: {error}")))?;
    runtime
        .block_on(test)
        .map_err(|error| Failed::from(format!("{error:#}")))
}

async fn run_command_on_a_local_control_plane() -> anyhow::Result<()> {
    let dir = private_tempdir("podscaler-e2e-up-")?;
    // A kubeconfig that does not exist: no cluster to use, so it starts its own.
    let absent = dir.path().join("absent.kubeconfig");
    let mut up = Process::spawn(
        "podscaler-up",
        Path::new(env!("CARGO_BIN_EXE_podscaler-up")),
        &[],
        &[("KUBECONFIG", absent.display().to_string())],
        dir.path(),
    )?;
    let shown = up
        .wait_for_log(
            "podscaler-up to show the pods",
            "Ctrl-C stops the operator, the webhook and the local control",
            SHOWN_WITHIN,
        )
        .await?;
    let kubeconfig = exported_kubeconfig(&shown)?;

    let client = client_for(&kubeconfig).await?;
    let pods = observe::active_pods(&client, "podscaler-demo", "app=nginx").await?;
    anyhow::ensure!(pods.len() == 4, "{} pods:\n{shown}", pods.len());
    for pod in &pods {
        let name = pod.metadata.name.as_deref().context("pod name")?;
        anyhow::ensure!(shown.contains(name), "pod {name} not shown:\n{shown}");
    }
    for address in ["/metrics", "/readyz"] {
        anyhow::ensure!(
            shown.matches(address).count() == 2,
            "the operator's and the webhook's {address} not shown:\n{shown}"
        );
    }
    // The cluster's own readiness probe leaves nothing behind.
    let namespaces: Api<Namespace> = Api::all(client);
    wait::until(
        "the probe's namespace to be gone",
        NAMESPACE_GONE_WITHIN,
        || async {
            let left = namespaces.get_opt(PROBE_NAMESPACE).await?;
            anyhow::ensure!(left.is_none(), "{PROBE_NAMESPACE} is still there");
            Ok(())
        },
    )
    .await?;
    anyhow::ensure!(
        !shown.contains('\u{1b}'),
        "podscaler-up wrote colour codes to a file:\n{shown}"
    );
    // Neither do the operator's and the webhook's logs (nor the control plane's) it shows.
    let cluster_dir = kubeconfig.parent().context("the kubeconfig's directory")?;
    let mut logs = 0;
    for entry in std::fs::read_dir(cluster_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "log") {
            logs += 1;
            let text = std::fs::read_to_string(&path)?;
            anyhow::ensure!(
                !text.contains('\u{1b}'),
                "{} holds colour codes",
                path.display()
            );
        }
    }
    anyhow::ensure!(
        logs >= 2,
        "no operator and webhook logs in {}",
        cluster_dir.display()
    );

    let started = procs::descendants(up.pid())?;
    for program in [
        "etcd",
        "kube-apiserver",
        "kwok",
        "podscaler-operator",
        "podscaler-webhook",
    ] {
        anyhow::ensure!(
            started.iter().any(|id| id.program == program),
            "{program} is not among podscaler-up's processes: {started:?}"
        );
    }
    up.signal(libc::SIGINT);
    let status = tokio::task::block_in_place(|| up.wait_exit(STOP_WITHIN))?;
    anyhow::ensure!(
        status.is_some_and(|status| status.success()),
        "podscaler-up did not exit cleanly on Ctrl-C ({status:?}):\n{}",
        up.log_tail(20)
    );
    let left: Vec<_> = started.iter().filter(|id| id.is_alive()).collect();
    anyhow::ensure!(left.is_empty(), "still running after Ctrl-C: {left:?}");
    anyhow::ensure!(
        !cluster_dir.exists(),
        "{} is left behind",
        cluster_dir.display()
    );
    Ok(())
}

/// The path in the `export KUBECONFIG=…` line.
fn exported_kubeconfig(output: &str) -> anyhow::Result<PathBuf> {
    output
        .lines()
        .find_map(|line| line.trim().strip_prefix("export KUBECONFIG="))
        .map(PathBuf::from)
        .with_context(|| format!("no `export KUBECONFIG=` line in:\n{output}"))
}
