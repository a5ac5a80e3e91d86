//! A real Kubernetes control plane as local processes on 127.0.0.1: etcd → kube-apiserver →
//! kube-controller-manager → kube-scheduler → kwok (fake nodes that run pods).
//!
//! [`Cluster`] is the handle a suite holds; the components every tier shares are started by
//! [`core`], kwok and its nodes by [`kwok`], each step's wait lives in [`readiness`], and the
//! certificates and kubeconfigs on disk in [`credentials`].

pub(crate) mod core;
pub(crate) mod credentials;
pub(crate) mod kwok;
pub(crate) mod readiness;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use kube::Client;
use tempfile::TempDir;

use crate::binaries::ControlPlane;
use crate::certs::Authority;
use crate::process::Process;
// `self::`: a bare `core` would also name the standard library's crate.
use self::core::{APISERVER, ApiserverLaunch, ApiserverPlacement, CoreComponents};

pub use credentials::client_for;
pub use readiness::{PROBE_NAMESPACE, ensure_namespace};

/// How long kube-apiserver may take to shut down gracefully before it is killed. It keeps open
/// watches running for up to its 60 s request timeout after SIGTERM (seen here: killed at a
/// 60 s grace); a restart test wants the outage, not that drain, so it is cut short.
const APISERVER_STOP_GRACE: Duration = Duration::from_secs(10);

/// Options for [`Cluster::start`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Number of kwok nodes to register.
    pub nodes: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self { nodes: 3 }
    }
}

/// When the steps of [`Cluster::restart_apiserver`] ended.
#[derive(Clone, Copy, Debug)]
pub struct ApiserverRestart {
    /// The old process had exited.
    pub stopped: Instant,
    /// The new process was about to start.
    pub starting: Instant,
    /// The new process answered `/readyz` with `ok`.
    pub healthy: Instant,
}

/// A running control plane. Dropping it stops every component and removes its directory.
pub struct Cluster {
    // Dropped before `dir`: the processes stop (see Drop) before their directory goes.
    // In start order (etcd, kube-apiserver, …); a restart replaces a process in place. Behind a
    // lock because the cluster is shared (`Arc<Cluster>`) and a restart replaces one.
    processes: Mutex<Vec<Process>>,
    apiserver_launch: ApiserverLaunch,
    apiserver_restarts: AtomicUsize,
    authority: Authority,
    kubeconfig: PathBuf,
    server: String,
    client: Client,
    version: String,
    dir: TempDir,
}

/// A temporary directory only this user can enter (tempfile's default is world-readable): the
/// harness keeps private keys and admin kubeconfigs in it.
pub fn private_tempdir(prefix: &str) -> std::io::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
}

impl Cluster {
    /// Starts every component, waits until each is ready, registers `options.nodes` kwok nodes
    /// and proves that a pod gets scheduled and reaches Running.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let binaries = ControlPlane::locate().await?;
        let dir = private_tempdir("podscaler-e2e-").context("creating the cluster directory")?;
        let started = Instant::now();
        let authority = Authority::new("podscaler-e2e-ca")?;
        let placement = ApiserverPlacement {
            address: Ipv4Addr::LOCALHOST,
            port: free_port()?,
            extra_args: vec![
                // The apiserver would otherwise publish 127.0.0.1 as the `kubernetes` Service's
                // endpoint, which endpoint validation rejects; nothing in the cluster needs it.
                "--endpoint-reconciler-type=none".to_owned(),
            ],
        };
        let mut core =
            self::core::start_core(&binaries, dir.path(), &authority, placement, started).await?;
        core.processes
            .push(kwok::start(&binaries, dir.path(), &core.kubeconfig)?);
        let mut cluster = Self::assemble(core, authority, dir).await?;
        kwok::register_nodes(&cluster.client, options.nodes).await?;
        progress(
            started,
            "controller-manager, scheduler and kwok started; waiting for the nodes and a probe pod",
        );
        cluster.wait_until_usable().await?;
        tracing::info!(
            version = %cluster.version,
            server = %cluster.server,
            seconds = %format_args!("{:.1}", started.elapsed().as_secs_f32()),
            "control plane ready"
        );
        Ok(cluster)
    }

    /// The handle over running components, with the API server's version read.
    async fn assemble(
        core: CoreComponents,
        authority: Authority,
        dir: TempDir,
    ) -> anyhow::Result<Self> {
        let CoreComponents {
            processes,
            apiserver_launch,
            kubeconfig,
            server,
            client,
            files: _,
        } = core;
        let mut cluster = Self {
            processes: Mutex::new(processes),
            apiserver_launch,
            apiserver_restarts: AtomicUsize::new(0),
            authority,
            kubeconfig,
            server,
            client,
            version: String::new(),
            dir,
        };
        // Read through the handle: when it fails, dropping the handle stops the components.
        cluster.version = cluster
            .client
            .apiserver_version()
            .await
            .context("reading the apiserver version")?
            .git_version;
        Ok(cluster)
    }

    /// A client with cluster-admin rights.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig for user `name` in `groups`, with a client certificate from the cluster
    /// CA and no RBAC rights of its own.
    pub fn user_kubeconfig(&self, name: &str, groups: &[&str]) -> anyhow::Result<PathBuf> {
        credentials::write_user_kubeconfig(
            &self.authority,
            &self.dir().join("users"),
            &self.server,
            name,
            groups,
        )
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The apiserver's `gitVersion` (`v1.33.13`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The cluster's CA, to issue more certificates (the webhook's) that the apiserver trusts.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// A scratch directory that lives as long as the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Fails when a component has exited.
    pub fn check_health(&mut self) -> anyhow::Result<()> {
        let processes = self
            .processes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        for process in processes {
            process.check_running()?;
        }
        Ok(())
    }

    /// The last `lines` lines of every component's log, for a failure report.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for process in self.lock_processes().iter() {
            let _ = writeln!(
                out,
                "===== {} ({}) =====\n{}\n",
                process.name(),
                process.log_path().display(),
                process.log_tail(lines)
            );
        }
        out
    }

    /// Stops kube-apiserver (SIGTERM, waiting for it to exit; SIGKILL after
    /// [`APISERVER_STOP_GRACE`]), keeps it down for `down`, starts
    /// it again with the same flags, port and certificates (etcd keeps the data), and waits
    /// until it answers `/readyz`. Every client sees its connections drop, then refused, then
    /// the server back. Returns when each step ended, to tell apart what a probe saw while the
    /// server was down.
    pub async fn restart_apiserver(&self, down: Duration) -> anyhow::Result<ApiserverRestart> {
        let index = self
            .lock_processes()
            .iter()
            .position(|process| process.name().starts_with(APISERVER))
            .context("the cluster has no kube-apiserver process")?;
        tracing::info!("stopping kube-apiserver (SIGTERM)");
        // Blocking (it polls for the exit), so off the async worker's hands.
        let status = tokio::task::block_in_place(|| {
            self.lock_processes()[index].terminate(APISERVER_STOP_GRACE)
        })
        .context("stopping kube-apiserver")?;
        let stopped = Instant::now();
        tracing::info!(%status, ?down, "kube-apiserver stopped");
        tokio::time::sleep(down).await;

        let restart = self.apiserver_restarts.fetch_add(1, Ordering::Relaxed) + 1;
        let starting = Instant::now();
        // A log of its own (the first run's stays readable), and a thread of its own: this
        // runs on a scenario's thread, whose end would kill it through PR_SET_PDEATHSIG.
        let mut apiserver = self.apiserver_launch.spawn(
            &format!("{APISERVER}-restart-{restart}"),
            Process::spawn_kept,
        )?;
        let healthy = readiness::wait_for_apiserver(&mut apiserver, &self.client).await;
        // In place of the stopped one either way, so `logs` shows the new process's log.
        drop(std::mem::replace(
            &mut self.lock_processes()[index],
            apiserver,
        ));
        healthy.context("kube-apiserver did not come back after a restart")?;
        tracing::info!(restart, "kube-apiserver is back");
        Ok(ApiserverRestart {
            stopped,
            starting,
            healthy: Instant::now(),
        })
    }

    /// The process id of component `name` (`kube-controller-manager`), to read its usage.
    pub fn component_pid(&self, name: &str) -> Option<u32> {
        self.lock_processes()
            .iter()
            .find(|process| process.name() == name)
            .map(Process::pid)
    }

    fn lock_processes(&self) -> MutexGuard<'_, Vec<Process>> {
        // Only ever replaced element by element: a panic cannot leave it half-changed.
        self.processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a namespace and waits for its `default` ServiceAccount.
    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        ensure_namespace(&self.client, name).await
    }

    /// Nodes Ready with a heartbeat Lease (kwok), and a pod that gets its default
    /// ServiceAccount (controller-manager), bound (scheduler) and Running (kwok); then the probe
    /// is deleted.
    async fn wait_until_usable(&mut self) -> anyhow::Result<()> {
        readiness::wait_for_kwok_nodes(&self.client)
            .await
            .map_err(|error| self.annotate(error))?;
        readiness::run_probe_pod(&self.client)
            .await
            .map_err(|error| self.annotate(error))?;
        readiness::delete_probe(&self.client).await
    }

    /// `error` with the log tail of a component that exited, the likely cause.
    fn annotate(&mut self, error: anyhow::Error) -> anyhow::Error {
        match self.check_health() {
            Err(exited) => error.context(format!("{exited:#}")),
            Ok(()) => error,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Last started, first stopped: nothing is left talking to a dead apiserver or etcd.
        crate::process::kill_in_reverse(
            self.processes
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
    }
}

/// Reports a finished step of [`Cluster::start`]: starting takes tens of seconds on a busy
/// machine, and a silent wait looks like a hang.
pub(crate) fn progress(started: Instant, step: &str) {
    tracing::info!(
        seconds = %format_args!("{:.1}", started.elapsed().as_secs_f32()),
        "{step}"
    );
}

/// A free TCP port on 127.0.0.1, never the same twice in this process.
pub fn free_port() -> anyhow::Result<u16> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..64 {
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
        let port = listener.local_addr()?.port();
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
        if handed_out.get_or_insert_with(HashSet::new).insert(port) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port on 127.0.0.1 after 64 tries")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_tempdirs_are_closed_to_other_users() {
        let dir = private_tempdir("podscaler-e2e-test-").expect("a temporary directory");
        let mode = std::fs::metadata(dir.path())
            .expect("its metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "mode {mode:o}");
    }
}
