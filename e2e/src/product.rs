//! PodScaler's own parts against a cluster: the CRD, and the operator run as its real binary.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use crate::binaries::Product;
use crate::cluster::{Cluster, free_port};
use crate::kubectl::Kubectl;
use crate::local_http;
use crate::process::Process;
use crate::wait;

/// The seed article's sample PodScaler, byte for byte: it must apply unchanged.
pub const SEED_SAMPLE: &str = "\
apiVersion: scaling.example.com/v1
kind: PodScaler
metadata:
  name: example-podscaler
spec:
  count: 4
  selector:
    app: nginx
";

/// How long a binary may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable naming a CRD manifest to install instead of the library's: an older
/// commit's (`git show 30bc556:charts/podscaler/crds/scaling.example.com_podscalers.yaml`), to
/// see a scenario fail without the fix it tests. With `PODSCALER_E2E_OPERATOR` and
/// `PODSCALER_E2E_WEBHOOK` it runs an older commit as a whole.
pub const CRD_OVERRIDE: &str = "PODSCALER_E2E_CRD";

/// Installs the CRD manifest [`CRD_OVERRIDE`] names when it is set, the library's otherwise.
pub async fn install_crd_or_override(cluster: &Cluster) -> anyhow::Result<()> {
    let Some(manifest) = std::env::var_os(CRD_OVERRIDE) else {
        return install_crd(&cluster.client()).await;
    };
    let manifest = manifest.to_string_lossy().into_owned();
    let kubectl = Kubectl::new(cluster.kubeconfig());
    // Server-side, as install_crd applies: the CRD is too large for client-side apply's
    // last-applied annotation.
    kubectl
        .run(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            &manifest,
        ])
        .await
        .with_context(|| format!("applying the CRD in {CRD_OVERRIDE}={manifest}"))?;
    kubectl
        .run(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/podscalers.scaling.example.com",
        ])
        .await
        .map(drop)
}

/// Installs (server-side applies) the PodScaler CRD and waits until it is established.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = podscaler::crd::custom_resource_definition();
    let name = crd.metadata.name.clone().context("the CRD has a name")?;
    crds.patch(
        &name,
        &PatchParams::apply("podscaler-e2e").force(),
        &Patch::Apply(&crd),
    )
    .await
    .context("applying the PodScaler CRD")?;
    wait::until(
        "the PodScaler CRD to be established",
        READY_TIMEOUT,
        || async {
            let crd = crds.get(&name).await?;
            let established = crd
                .status
                .and_then(|status| status.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            anyhow::ensure!(established, "not established yet");
            Ok(())
        },
    )
    .await
}

/// Waits until `process` answers 200 on `/readyz` at `health_port`; fails early if it exits,
/// and with its log's tail if it never gets ready.
pub(crate) async fn wait_ready(process: &mut Process, health_port: u16) -> anyhow::Result<()> {
    let what = format!("{} to report ready", process.name());
    let ready = wait::until(&what, READY_TIMEOUT, || {
        let running = process.check_running();
        async move {
            running?;
            let (code, body) = local_http::get(health_port, "/readyz").await?;
            anyhow::ensure!(code == 200, "/readyz answered {code}: {body}");
            Ok(())
        }
    })
    .await;
    ready.map_err(|error| {
        error.context(format!("{} log:\n{}", process.name(), process.log_tail(40)))
    })
}

/// How a run of the operator that was expected to end by itself ended.
pub struct Exited {
    pub status: std::process::ExitStatus,
    /// Everything it printed.
    pub output: String,
}

/// Runs `podscaler-operator` with `kubeconfig` and `args` and waits up to `timeout` for it to
/// exit by itself (a refusal to start); fails if it is still running then.
pub async fn run_operator_to_exit(
    kubeconfig: &Path,
    log_dir: &Path,
    args: &[&str],
    timeout: Duration,
) -> anyhow::Result<Exited> {
    let product = Product::build().await?;
    let mut args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
    args.push("--metrics-bind-address=0".to_owned());
    args.push("--health-probe-bind-address=0".to_owned());
    let name = format!("operator-to-exit-{}", free_port()?);
    let mut process = Process::spawn(
        &name,
        &product.operator,
        &args,
        &[("KUBECONFIG", kubeconfig.display().to_string())],
        log_dir,
    )?;
    let status = tokio::task::block_in_place(|| process.wait_exit(timeout))?;
    let Some(status) = status else {
        anyhow::bail!(
            "the operator was still running after {timeout:?}:\n{}",
            process.log_tail(20)
        );
    };
    Ok(Exited {
        status,
        output: process.log_tail(200),
    })
}

/// The operator binary running against a cluster.
pub struct Operator {
    process: Process,
    metrics_port: u16,
    health_port: u16,
}

impl Operator {
    /// Starts `podscaler-operator` with the cluster's kubeconfig, confined to `namespace`, and
    /// waits for `/readyz`.
    pub async fn start(
        cluster: &Cluster,
        namespace: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let mut args = vec![
            format!("--namespace={namespace}"),
            "--log-level=info,podscaler=debug".to_owned(),
        ];
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        let name = format!("operator-{namespace}");
        Self::launch(&name, cluster.kubeconfig(), cluster.dir(), &args).await
    }

    /// Starts `podscaler-operator` against the cluster `kubeconfig` points at, with `args` plus
    /// loopback metrics and health ports, logging to `<log_dir>/<name>-<port>.log`; waits for
    /// `/readyz`.
    pub async fn launch(
        name: &str,
        kubeconfig: &Path,
        log_dir: &Path,
        args: &[String],
    ) -> anyhow::Result<Self> {
        let product = Product::build().await?;
        Self::launch_binary(&product.operator, name, kubeconfig, log_dir, args).await
    }

    /// As [`Operator::launch`], running `binary` (a release build, for the benchmark).
    pub async fn launch_binary(
        binary: &Path,
        name: &str,
        kubeconfig: &Path,
        log_dir: &Path,
        args: &[String],
    ) -> anyhow::Result<Self> {
        let metrics_port = free_port()?;
        let health_port = free_port()?;
        let mut args = args.to_vec();
        args.push(format!("--metrics-bind-address=127.0.0.1:{metrics_port}"));
        args.push(format!(
            "--health-probe-bind-address=127.0.0.1:{health_port}"
        ));
        let mut process = Process::spawn(
            &format!("{name}-{metrics_port}"),
            binary,
            &args,
            &[("KUBECONFIG", kubeconfig.display().to_string())],
            log_dir,
        )?;
        wait_ready(&mut process, health_port).await?;
        Ok(Self {
            process,
            metrics_port,
            health_port,
        })
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The process id, to read its usage from `/proc`.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The port of `/metrics` on 127.0.0.1.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (code, body) = local_http::get(self.metrics_port, "/metrics").await?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        Ok(body)
    }

    /// The port of `/healthz` and `/readyz` on 127.0.0.1.
    pub fn health_port(&self) -> u16 {
        self.health_port
    }

    /// `GET /readyz`: the status code and the body (which names what is not ready).
    pub async fn readyz(&self) -> anyhow::Result<(u16, String)> {
        local_http::get(self.health_port, "/readyz").await
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill_hard(&mut self) -> anyhow::Result<()> {
        self.process.kill().map(drop)
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn stop(&mut self) -> anyhow::Result<bool> {
        Ok(self.process.terminate(Duration::from_secs(30))?.success())
    }

    /// The last lines of the operator's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}
