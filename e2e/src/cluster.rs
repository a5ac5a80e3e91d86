//! A real Kubernetes control plane as local processes on 127.0.0.1: etcd → kube-apiserver →
//! kube-controller-manager → kube-scheduler → kwok (fake nodes that run pods).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use serde_json::json;
use tempfile::TempDir;

use crate::binaries::ControlPlane;
use crate::certs::{self, Authority};
use crate::local_http;
use crate::process::Process;
use crate::wait;

/// How long each component may take to become ready.
const COMPONENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The Service IP range; its first address is the `kubernetes` Service.
pub(crate) const SERVICE_CIDR: &str = "10.0.0.0/24";

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

/// The namespace of the pod that proves the cluster runs pods; deleted once it did.
pub const PROBE_NAMESPACE: &str = "e2e-probe";

/// The name of the API server's process (and the prefix of its restarts' names).
const APISERVER: &str = "kube-apiserver";

/// How long kube-apiserver may take to shut down gracefully before it is killed. It keeps open
/// watches running for up to its 60 s request timeout after SIGTERM (seen here: killed at a
/// 60 s grace); a restart test wants the outage, not that drain, so it is cut short.
const APISERVER_STOP_GRACE: Duration = Duration::from_secs(10);

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

/// How kube-apiserver is started: kept to start it again identically.
pub(crate) struct ApiserverLaunch {
    program: PathBuf,
    args: Vec<String>,
    log_dir: PathBuf,
}

/// `Process::spawn` or `Process::spawn_kept`.
type Spawn = fn(&str, &Path, &[String], &[(&str, String)], &Path) -> anyhow::Result<Process>;

impl ApiserverLaunch {
    fn spawn(&self, name: &str, spawn: Spawn) -> anyhow::Result<Process> {
        spawn(name, &self.program, &self.args, &[], &self.log_dir)
    }
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
        let binaries = ControlPlane::locate()?;
        let dir = private_tempdir("podscaler-e2e-").context("creating the cluster directory")?;
        let root = dir.path().to_path_buf();
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
        let core = start_core(&binaries, &root, &authority, placement, started).await?;
        let CoreComponents {
            mut processes,
            apiserver_launch,
            kubeconfig,
            server,
            client,
            files,
        } = core;
        processes.push(Process::spawn(
            "kwok",
            &binaries.path("kwok"),
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--config={}", files.kwok_config.display()),
                "--manage-all-nodes=false".to_owned(),
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".to_owned(),
                "--cidr=10.244.0.1/16".to_owned(),
                // Heartbeats by node Lease (renewed every 10 s), as a kubelet sends them.
                // Without it the only heartbeat is kwok's node-status patch, seen here ~55 s
                // apart on a busy machine: past the controller-manager's 50 s grace period,
                // nodes flapped NotReady and every pod on them turned unready mid-test.
                "--node-lease-duration-seconds=40".to_owned(),
                format!("--server-address=127.0.0.1:{}", free_port()?),
            ],
            &[],
            &root,
        )?);

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
        cluster.version = cluster
            .client
            .apiserver_version()
            .await
            .context("reading the apiserver version")?
            .git_version;
        for index in 0..options.nodes {
            cluster.register_node(&format!("kwok-node-{index}")).await?;
        }
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
        let issued = self.authority.client(name, groups)?;
        let dir = self.dir().join("users").join(name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (ca, cert, key) = (
            dir.join("ca.crt"),
            dir.join("user.crt"),
            dir.join("user.key"),
        );
        std::fs::write(&ca, self.authority.cert_pem()).context("writing the CA")?;
        std::fs::write(&cert, &issued.cert_pem).context("writing the user certificate")?;
        std::fs::write(&key, &issued.key_pem).context("writing the user key")?;
        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &self.server, &ca, &cert, &key)?;
        Ok(kubeconfig)
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
        let healthy = wait_for_apiserver(&mut apiserver, &self.client).await;
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

    fn lock_processes(&self) -> std::sync::MutexGuard<'_, Vec<Process>> {
        // Only ever replaced element by element: a panic cannot leave it half-changed.
        self.processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates a namespace and waits for its `default` ServiceAccount.
    pub async fn create_namespace(&self, name: &str) -> anyhow::Result<()> {
        ensure_namespace(&self.client, name).await
    }

    async fn register_node(&self, name: &str) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({
            "metadata": {
                "name": name,
                "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"},
            },
            "status": {
                "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"},
                "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"},
            }
        }))?;
        nodes
            .create(&PostParams::default(), &node)
            .await
            .with_context(|| format!("registering node {name}"))?;
        Ok(())
    }

    /// Nodes Ready with a heartbeat Lease (kwok), the default ServiceAccount (controller-manager)
    /// and a pod that gets bound (scheduler) and Running (kwok).
    async fn wait_until_usable(&mut self) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        wait::until("kwok nodes to be Ready", COMPONENT_TIMEOUT, || async {
            let list = nodes.list(&Default::default()).await?;
            let ready = list.items.iter().filter(|node| node_ready(node)).count();
            anyhow::ensure!(
                ready == list.items.len(),
                "{ready} of {} nodes Ready",
                list.items.len()
            );
            for node in &list.items {
                let name = node.name_any();
                anyhow::ensure!(
                    leases.get_opt(&name).await?.is_some(),
                    "node {name} has no heartbeat Lease yet"
                );
            }
            Ok(())
        })
        .await
        .map_err(|error| self.annotate(error))?;
        self.create_namespace(PROBE_NAMESPACE)
            .await
            .map_err(|error| self.annotate(error))?;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), PROBE_NAMESPACE);
        let probe: Pod = serde_json::from_value(json!({
            "metadata": {"name": "probe"},
            "spec": {"containers": [{"name": "probe", "image": "probe"}]}
        }))?;
        pods.create(&PostParams::default(), &probe)
            .await
            .context("creating the probe pod")?;
        wait::until("the probe pod to run", COMPONENT_TIMEOUT, || async {
            let pod = pods.get("probe").await?;
            let phase = pod.status.and_then(|s| s.phase).unwrap_or_default();
            anyhow::ensure!(phase == "Running", "phase {phase:?}");
            Ok(())
        })
        .await
        .map_err(|error| self.annotate(error))?;
        self.delete_probe().await
    }

    /// Deletes the probe pod (at once: grace period 0) and its namespace, so a user of the
    /// cluster finds only what they made. Does not wait for the namespace to be gone: nothing
    /// here depends on that, and the namespace controller's few seconds would be added to every
    /// start.
    async fn delete_probe(&self) -> anyhow::Result<()> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), PROBE_NAMESPACE);
        pods.delete("probe", &DeleteParams::default().grace_period(0))
            .await
            .context("deleting the probe pod")?;
        Api::<Namespace>::all(self.client.clone())
            .delete(PROBE_NAMESPACE, &DeleteParams::default())
            .await
            .with_context(|| format!("deleting namespace {PROBE_NAMESPACE}"))?;
        Ok(())
    }

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
    let etcd_port = free_port()?;
    let etcd_peer_port = free_port()?;
    let mut etcd = Process::spawn(
        "etcd",
        &binaries.path("etcd"),
        &[
            format!("--data-dir={}", root.join("etcd").display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
            format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ],
        &[],
        root,
    )?;
    wait_for_etcd(&mut etcd, etcd_port).await?;
    processes.push(etcd);
    progress(started, "etcd is healthy");

    let server = format!("https://{}:{}", placement.address, placement.port);
    let mut args = apiserver_args(etcd_port, &placement, &files);
    args.extend(placement.extra_args);
    let apiserver_launch = ApiserverLaunch {
        program: binaries.path("kube-apiserver"),
        args,
        log_dir: root.to_path_buf(),
    };
    let mut apiserver = apiserver_launch.spawn(APISERVER, Process::spawn)?;
    let kubeconfig = root.join("admin.kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        &server,
        &files.ca_cert,
        &files.admin_cert,
        &files.admin_key,
    )?;
    let client = client_for(&kubeconfig).await?;
    wait_for_apiserver(&mut apiserver, &client).await?;
    processes.push(apiserver);
    progress(started, "kube-apiserver is ready");

    let kubeconfig_arg = format!("--kubeconfig={}", kubeconfig.display());
    let delegated = [
        format!("--authentication-kubeconfig={}", kubeconfig.display()),
        format!("--authorization-kubeconfig={}", kubeconfig.display()),
    ];
    let mut controller_manager_args = vec![
        kubeconfig_arg.clone(),
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={}", free_port()?),
        "--leader-elect=false".to_owned(),
        format!(
            "--service-account-private-key-file={}",
            files.sa_private.display()
        ),
        format!("--root-ca-file={}", files.ca_cert.display()),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--kube-api-qps=200".to_owned(),
        "--kube-api-burst=400".to_owned(),
    ];
    controller_manager_args.extend(delegated.iter().cloned());
    processes.push(Process::spawn(
        "kube-controller-manager",
        &binaries.path("kube-controller-manager"),
        &controller_manager_args,
        &[],
        root,
    )?);
    let mut scheduler_args = vec![
        kubeconfig_arg,
        "--bind-address=127.0.0.1".to_owned(),
        format!("--secure-port={}", free_port()?),
        "--leader-elect=false".to_owned(),
    ];
    scheduler_args.extend(delegated.iter().cloned());
    processes.push(Process::spawn(
        "kube-scheduler",
        &binaries.path("kube-scheduler"),
        &scheduler_args,
        &[],
        root,
    )?);
    Ok(CoreComponents {
        processes,
        apiserver_launch,
        kubeconfig,
        server,
        client,
        files,
    })
}

/// Creates namespace `name` unless it exists, and waits for its `default` ServiceAccount
/// (pods cannot be created before the controller-manager made it).
pub async fn ensure_namespace(client: &Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(error) => return Err(error).with_context(|| format!("creating namespace {name}")),
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    wait::until(
        &format!("the default ServiceAccount in {name}"),
        COMPONENT_TIMEOUT,
        || async { accounts.get("default").await.map(drop).map_err(Into::into) },
    )
    .await
}

/// A kube client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<Client> {
    let parsed = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")?;
    Client::try_from(config).context("building a client")
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

pub(crate) struct Credentials {
    pub ca_cert: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub sa_private: PathBuf,
    pub sa_public: PathBuf,
    pub kwok_config: PathBuf,
}

fn write_credentials(
    root: &Path,
    authority: &Authority,
    apiserver_address: IpAddr,
) -> anyhow::Result<Credentials> {
    let pki = root.join("pki");
    std::fs::create_dir_all(&pki).context("creating the pki directory")?;
    let write = |name: &str, contents: &str| -> anyhow::Result<PathBuf> {
        let path = pki.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let apiserver = authority.serving(
        "kube-apiserver",
        &[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
        &[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), apiserver_address],
    )?;
    let admin = authority.client("e2e-admin", &["system:masters"])?;
    let (sa_private, sa_public) = certs::service_account_key()?;
    // kwok's built-in stages (node heartbeat, pod ready, pod deletion) are used when the
    // config names none; an explicit empty file keeps ~/.kwok out of the test.
    let kwok_config = root.join("kwok.yaml");
    std::fs::write(&kwok_config, "").context("writing the kwok config")?;
    Ok(Credentials {
        ca_cert: write("ca.crt", authority.cert_pem())?,
        apiserver_cert: write("apiserver.crt", &apiserver.cert_pem)?,
        apiserver_key: write("apiserver.key", &apiserver.key_pem)?,
        admin_cert: write("admin.crt", &admin.cert_pem)?,
        admin_key: write("admin.key", &admin.key_pem)?,
        sa_private: write("sa.key", &sa_private)?,
        sa_public: write("sa.pub", &sa_public)?,
        kwok_config,
    })
}

pub(crate) fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<()> {
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "e2e-admin", "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e-admin", "namespace": "default"}}],
        "current-context": "e2e",
    });
    let yaml = serde_saphyr::to_string(&kubeconfig).context("serializing the kubeconfig")?;
    std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))
}

async fn wait_for_etcd(etcd: &mut Process, port: u16) -> anyhow::Result<()> {
    wait::until("etcd to report healthy", COMPONENT_TIMEOUT, || {
        let exited = etcd.check_running();
        async move {
            if let Err(exited) = exited {
                return Err(exited.context("etcd stopped"));
            }
            let (_, body) = local_http::get(port, "/health").await?;
            anyhow::ensure!(body.contains("\"health\":\"true\""), "health: {body}");
            Ok(())
        }
    })
    .await
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

async fn wait_for_apiserver(apiserver: &mut Process, client: &Client) -> anyhow::Result<()> {
    wait::until("kube-apiserver /readyz", COMPONENT_TIMEOUT, || {
        let exited = apiserver.check_running();
        async move {
            if let Err(exited) = exited {
                return Err(exited.context("kube-apiserver stopped"));
            }
            let request = http::Request::get("/readyz").body(Vec::new())?;
            let body = client.request_text(request).await?;
            anyhow::ensure!(body.trim() == "ok", "readyz: {body}");
            Ok(())
        }
    })
    .await
}

/// A free TCP port on 127.0.0.1, never the same twice in this process.
pub fn free_port() -> anyhow::Result<u16> {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    for _ in 0..64 {
        let listener =
            std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
        let port = listener.local_addr()?.port();
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
