//! The real-node tier: the control plane and ONE real node — containerd, runc, the CNI bridge
//! and a kubelet — whose pods really run, all inside one network namespace this process
//! creates and enters (see [`netns`]). Used by the `node` suite and `podscaler-up --real-node`.
//!
//! Addresses exist only inside the namespace: the node's is on its loopback device (this
//! kernel has no `dummy` driver), pods get 10.244.0.0/24 on a bridge, and without kube-proxy one
//! DNAT rule gives pods the `kubernetes` Service while the API server reaches webhooks at their
//! endpoints (`--enable-aggregator-routing`).
//!
//! Lifecycle: [`enter`] (on the main thread, before the async runtime: it sweeps what killed
//! runs left, creates the namespace and the directory, and joins the namespace), then
//! [`RealNode::start`], and at the end [`RealNode::shut_down`], which reports anything left.

pub mod containerd;
pub mod footprint;
pub mod image;
pub mod kubelet;
pub mod netns;
pub mod prometheus;
pub mod stack;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::{Client, ResourceExt};

use crate::binaries::ControlPlane;
use crate::certs::Authority;
use crate::cluster::core::{ApiserverPlacement, CoreComponents, start_core};
use crate::cluster::credentials::write_kubeconfig;
use crate::cluster::progress;
use crate::process::Process;
use crate::wait;
use containerd::{Containerd, ContainerdLayout};
use footprint::{Footprint, Leftovers};
use image::ImageSpec;
use netns::Netns;

/// The node's name and address.
pub const NODE_NAME: &str = "podscaler-node";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
/// The pods' subnet on the node's bridge.
pub const POD_CIDR: &str = "10.244.0.0/24";
/// The `kubernetes` Service: the first address of the Service range.
const KUBERNETES_SERVICE_IP: &str = "10.0.0.1";
const APISERVER_PORT: u16 = 6443;
/// The sandbox image: the kubelet's default for v1.33, so its image GC keeps it.
pub const PAUSE_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// How long the node may take to register and turn Ready (25–45 s measured here).
const NODE_READY_TIMEOUT: Duration = Duration::from_secs(180);

/// Sweeps what earlier, killed runs left; creates this run's directory, cgroup and network
/// namespace, and moves the calling thread into the namespace with its addresses set up. Call it
/// first in `main`, before any thread (the async runtime, the test harness) starts.
pub fn enter() -> anyhow::Result<Footprint> {
    for stale in Footprint::stale() {
        let left = stale.remove();
        anyhow::ensure!(
            left.is_empty(),
            "an earlier run ({}) left what cannot be removed: {left}",
            stale.name
        );
        eprintln!(
            "node: removed what an earlier, killed run left ({})",
            stale.name
        );
    }
    let footprint = Footprint::of_this_process();
    let left = footprint.remove();
    anyhow::ensure!(left.is_empty(), "cannot clear {}: {left}", footprint.name);
    std::fs::create_dir(&footprint.dir)
        .with_context(|| format!("creating {}", footprint.dir.display()))?;
    std::fs::set_permissions(
        &footprint.dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    footprint.create_cgroups()?;
    let namespace = Netns::create(&footprint.name)?;
    namespace.enter()?;
    // Children started from here on are inside the namespace.
    netns::run("ip", &["link", "set", "lo", "up"])?;
    netns::run(
        "ip",
        &["addr", "add", &format!("{NODE_IP}/32"), "dev", "lo"],
    )?;
    netns::run(
        "iptables",
        &[
            "-t",
            "nat",
            "-A",
            "PREROUTING",
            "-d",
            &format!("{KUBERNETES_SERVICE_IP}/32"),
            "-p",
            "tcp",
            "--dport",
            "443",
            "-j",
            "DNAT",
            "--to-destination",
            &format!("{NODE_IP}:{APISERVER_PORT}"),
        ],
    )?;
    Ok(footprint)
}

/// A running control plane with one real node.
pub struct RealNode {
    /// Last started, first stopped.
    processes: Mutex<Vec<Process>>,
    containerd: Containerd,
    client: Client,
    kubeconfig: PathBuf,
    authority: Authority,
    footprint: Footprint,
}

impl RealNode {
    /// Starts the control plane, containerd and the kubelet inside the namespace [`enter`]
    /// created, imports `images` (and the sandbox image built from `pause`), and waits until the
    /// node is Ready.
    pub async fn start(footprint: Footprint, images: &[ImageSpec]) -> anyhow::Result<Self> {
        let started = Instant::now();
        let binaries = ControlPlane::locate_all().await?;
        let root = footprint.dir.clone();
        let authority = Authority::new("podscaler-node-ca")?;
        let mut extra_args = vec![
            // No kube-proxy: the API server dials webhook Services at their endpoints.
            "--enable-aggregator-routing=true".to_owned(),
            // No DNS for node names inside the namespace: reach the kubelet at its address.
            "--kubelet-preferred-address-types=InternalIP".to_owned(),
        ];
        // `kubectl logs` goes API server → kubelet, with a client certificate.
        extra_args.extend(write_kubelet_client_flags(&root, &authority)?);
        let placement = ApiserverPlacement {
            address: NODE_IP,
            port: APISERVER_PORT,
            extra_args,
        };
        let core = start_core(&binaries, &root, &authority, placement, started).await?;
        let CoreComponents {
            processes,
            kubeconfig,
            client,
            files,
            ..
        } = core;

        let mut containerd = Containerd::start(
            &ContainerdLayout {
                dir: &root.join("containerd"),
                sandbox_image: PAUSE_IMAGE,
                pod_cidr: POD_CIDR,
            },
            &root,
        )
        .await?;
        containerd.process_mut().check_running()?;
        let images_dir = root.join("images");
        std::fs::create_dir_all(&images_dir)?;
        let pause = ImageSpec::for_binary(PAUSE_IMAGE, &binaries.path("pause"))?;
        for (index, spec) in std::iter::once(&pause).chain(images).enumerate() {
            let archive = images_dir.join(format!("{index}.tar"));
            spec.write_archive(&archive)?;
            containerd.import(&archive).await?;
            std::fs::remove_file(&archive).ok();
        }
        progress(started, "containerd is up with the images imported");

        let node_kubeconfig = root.join("kubelet.kubeconfig");
        let node_identity =
            authority.client(&format!("system:node:{NODE_NAME}"), &["system:nodes"])?;
        let pki = root.join("pki");
        std::fs::write(pki.join("kubelet-client.crt"), &node_identity.cert_pem)?;
        std::fs::write(pki.join("kubelet-client.key"), &node_identity.key_pem)?;
        write_kubeconfig(
            &node_kubeconfig,
            &format!("https://{NODE_IP}:{APISERVER_PORT}"),
            &files.ca_cert,
            &pki.join("kubelet-client.crt"),
            &pki.join("kubelet-client.key"),
        )?;
        let kubelet = kubelet::start(
            &kubelet::KubeletLayout {
                program: &binaries.path("kubelet"),
                node_name: NODE_NAME,
                node_ip: NODE_IP,
                dir: &root.join("kubelet"),
                kubeconfig: &node_kubeconfig,
                client_ca: &files.ca_cert,
                runtime_endpoint: &containerd.endpoint(),
                cgroup_root: &footprint.name,
            },
            &root,
        )?;
        let mut processes = processes;
        processes.push(kubelet);
        let node = Self {
            processes: Mutex::new(processes),
            containerd,
            client,
            kubeconfig,
            authority,
            footprint,
        };
        node.wait_until_ready().await?;
        progress(started, "the node is Ready");
        Ok(node)
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig (usable only inside the namespace).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The run's directory (logs of every component are `<dir>/<name>.log`).
    pub fn dir(&self) -> &Path {
        &self.footprint.dir
    }

    /// The network namespace's name, for `nsenter --net=/run/netns/<name>`.
    pub fn netns_name(&self) -> &str {
        &self.footprint.name
    }

    /// The last `lines` lines of every component's log, for a failure report.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for process in self
            .processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            out.push_str(&format!(
                "===== {} ({}) =====\n{}\n\n",
                process.name(),
                process.log_path().display(),
                process.log_tail(lines)
            ));
        }
        out.push_str(&format!(
            "===== containerd =====\n{}\n",
            crate::process::tail(&self.footprint.dir.join("containerd.log"), lines)
        ));
        out
    }

    /// Stops everything (kubelet first, etcd last), kills what the pods left, unmounts, removes
    /// the cgroups, the namespace and the directory, and returns what could not be removed.
    pub fn shut_down(mut self) -> Leftovers {
        self.stop_processes();
        self.footprint.remove()
    }

    fn stop_processes(&mut self) {
        crate::process::kill_in_reverse(
            self.processes
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let _ = self.containerd.process_mut().kill();
    }

    async fn wait_until_ready(&self) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        wait::until("the node to be Ready", NODE_READY_TIMEOUT, || async {
            let node = nodes
                .get_opt(NODE_NAME)
                .await?
                .with_context(|| format!("node {NODE_NAME} has not registered"))?;
            let ready = node
                .status
                .as_ref()
                .and_then(|status| status.conditions.as_ref())
                .and_then(|conditions| conditions.iter().find(|c| c.type_ == "Ready"))
                .with_context(|| format!("{} has no Ready condition", node.name_any()))?;
            anyhow::ensure!(
                ready.status == "True",
                "Ready={}: {}",
                ready.status,
                ready.message.as_deref().unwrap_or_default()
            );
            Ok(())
        })
        .await
        .map_err(|error| error.context(self.logs(30)))
    }
}

/// Dropped without [`RealNode::shut_down`] (an error, Ctrl-C): the same teardown, unreported.
impl Drop for RealNode {
    fn drop(&mut self) {
        self.stop_processes();
        let left = self.footprint.remove();
        if !left.is_empty() {
            eprintln!("node: teardown left {left}");
        }
    }
}

/// The API server's flags for calling the kubelet (logs, exec) with a client certificate the
/// kubelet's x509 authentication accepts.
fn write_kubelet_client_flags(root: &Path, authority: &Authority) -> anyhow::Result<Vec<String>> {
    let issued = authority.client("kube-apiserver-kubelet-client", &["system:masters"])?;
    let pki = root.join("pki");
    std::fs::create_dir_all(&pki).context("creating the pki directory")?;
    let (cert, key) = (
        pki.join("apiserver-kubelet-client.crt"),
        pki.join("apiserver-kubelet-client.key"),
    );
    std::fs::write(&cert, &issued.cert_pem).context("writing the kubelet client certificate")?;
    std::fs::write(&key, &issued.key_pem).context("writing the kubelet client key")?;
    Ok(vec![
        format!("--kubelet-client-certificate={}", cert.display()),
        format!("--kubelet-client-key={}", key.display()),
    ])
}
