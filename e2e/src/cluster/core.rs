//! The components every tier shares — etcd, kube-apiserver, kube-controller-manager and
//! kube-scheduler — with their flags, started in that order, each once the one before it is
//! ready.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kube::Client;

use super::credentials::{Credentials, client_for, write_credentials, write_kubeconfig};
use super::readiness::{wait_for_apiserver, wait_for_etcd};
use super::{free_port, progress};
use crate::binaries::ControlPlane;
use crate::certs::Authority;
use crate::process::Process;

/// The Service IP range; its first address is the `kubernetes` Service.
pub(crate) const SERVICE_CIDR: &str = "10.0.0.0/24";

/// The name of the API server's process (and the prefix of its restarts' names).
pub(crate) const APISERVER: &str = "kube-apiserver";

/// Where kube-apiserver listens, and the flags a tier adds to the common ones.
pub(crate) struct ApiserverPlacement {
    pub address: Ipv4Addr,
    pub port: u16,
    pub extra_args: Vec<String>,
}

/// etcd, kube-apiserver, kube-controller-manager and kube-scheduler, running.
pub(crate) struct CoreComponents {
    /// In start order.
    pub processes: Vec<Process>,
    pub apiserver_launch: ApiserverLaunch,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// `https://<address>:<port>`.
    pub server: String,
    pub client: Client,
    pub files: Credentials,
}

/// How kube-apiserver is started: kept to start it again identically.
pub(crate) struct ApiserverLaunch {
    program: PathBuf,
    args: Vec<String>,
    log_dir: PathBuf,
}

/// `Process::spawn` or `Process::spawn_kept`.
pub(crate) type Spawn =
    fn(&str, &Path, &[String], &[(&str, String)], &Path) -> anyhow::Result<Process>;

impl ApiserverLaunch {
    pub(crate) fn spawn(&self, name: &str, spawn: Spawn) -> anyhow::Result<Process> {
        spawn(name, &self.program, &self.args, &[], &self.log_dir)
    }
}

/// Starts the components every tier shares, each once the one before it is ready (the
/// controller-manager and the scheduler are not waited for: nothing answers for them but the
/// objects they make).
pub(crate) async fn start_core(
    binaries: &ControlPlane,
    root: &Path,
    authority: &Authority,
    placement: ApiserverPlacement,
    started: Instant,
) -> anyhow::Result<CoreComponents> {
    let files = write_credentials(root, authority, IpAddr::V4(placement.address))?;
    let mut processes = Vec::new();
    let (etcd, etcd_port) = start_etcd(binaries, root).await?;
    processes.push(etcd);
    progress(started, "etcd is healthy");

    let server = format!("https://{}:{}", placement.address, placement.port);
    let kubeconfig = root.join("admin.kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        &server,
        &files.ca_cert,
        &files.admin_cert,
        &files.admin_key,
    )?;
    let mut args = apiserver_args(etcd_port, &placement, &files);
    args.extend(placement.extra_args);
    let apiserver_launch = ApiserverLaunch {
        program: binaries.path(APISERVER),
        args,
        log_dir: root.to_path_buf(),
    };
    let (apiserver, client) = start_apiserver(&apiserver_launch, &kubeconfig).await?;
    processes.push(apiserver);
    progress(started, "kube-apiserver is ready");

    processes.push(start_controller_manager(
        binaries,
        root,
        &kubeconfig,
        &files,
    )?);
    processes.push(start_scheduler(binaries, root, &kubeconfig)?);
    Ok(CoreComponents {
        processes,
        apiserver_launch,
        kubeconfig,
        server,
        client,
        files,
    })
}

/// Starts etcd on free ports and waits until it reports healthy; returns it with its client
/// port.
async fn start_etcd(binaries: &ControlPlane, root: &Path) -> anyhow::Result<(Process, u16)> {
    let client_port = free_port()?;
    let peer_port = free_port()?;
    let mut etcd = Process::spawn(
        "etcd",
        &binaries.path("etcd"),
        &[
            format!("--data-dir={}", root.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{client_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"),
            format!("--initial-cluster=default=http://127.0.0.1:{peer_port}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ],
        &[],
        root,
    )?;
    wait_for_etcd(&mut etcd, client_port).await?;
    Ok((etcd, client_port))
}

/// Starts kube-apiserver and waits until it answers `/readyz` to a client of `kubeconfig`;
/// returns it with that client.
async fn start_apiserver(
    launch: &ApiserverLaunch,
    kubeconfig: &Path,
) -> anyhow::Result<(Process, Client)> {
    let mut apiserver = launch.spawn(APISERVER, Process::spawn)?;
    let client = client_for(kubeconfig).await?;
    wait_for_apiserver(&mut apiserver, &client).await?;
    Ok((apiserver, client))
}

/// kube-apiserver's flags: the same for its first start and every restart.
fn apiserver_args(
    etcd_port: u16,
    placement: &ApiserverPlacement,
    files: &Credentials,
) -> Vec<String> {
    vec![
        format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
        format!("--bind-address={}", placement.address),
        format!("--advertise-address={}", placement.address),
        format!("--secure-port={}", placement.port),
        format!("--tls-cert-file={}", files.apiserver_cert.display()),
        format!("--tls-private-key-file={}", files.apiserver_key.display()),
        format!("--client-ca-file={}", files.ca_cert.display()),
        format!("--service-account-key-file={}", files.sa_public.display()),
        format!(
            "--service-account-signing-key-file={}",
            files.sa_private.display()
        ),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_owned(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--authorization-mode=Node,RBAC".to_owned(),
        "--allow-privileged=true".to_owned(),
        "--profiling=false".to_owned(),
    ]
}

/// The flags kube-controller-manager and kube-scheduler share: the admin kubeconfig for the
/// API and for delegated authentication and authorization of their own (unused) secure port,
/// on 127.0.0.1, and no leader election (there is one of each).
fn delegating_component_args(kubeconfig: &Path) -> anyhow::Result<Vec<String>> {
    Ok(vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={}", free_port()?),
        "--leader-elect=false".to_owned(),
        format!("--authentication-kubeconfig={}", kubeconfig.display()),
        format!("--authorization-kubeconfig={}", kubeconfig.display()),
    ])
}

fn start_controller_manager(
    binaries: &ControlPlane,
    root: &Path,
    kubeconfig: &Path,
    files: &Credentials,
) -> anyhow::Result<Process> {
    let mut args = delegating_component_args(kubeconfig)?;
    args.extend([
        format!(
            "--service-account-private-key-file={}",
            files.sa_private.display()
        ),
        format!("--root-ca-file={}", files.ca_cert.display()),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--kube-api-qps=200".to_owned(),
        "--kube-api-burst=400".to_owned(),
    ]);
    Process::spawn(
        "kube-controller-manager",
        &binaries.path("kube-controller-manager"),
        &args,
        &[],
        root,
    )
}

fn start_scheduler(
    binaries: &ControlPlane,
    root: &Path,
    kubeconfig: &Path,
) -> anyhow::Result<Process> {
    Process::spawn(
        "kube-scheduler",
        &binaries.path("kube-scheduler"),
        &delegating_component_args(kubeconfig)?,
        &[],
        root,
    )
}
