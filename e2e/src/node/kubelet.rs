//! The kubelet: one real node, on containerd, with every path and cgroup of its own.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::process::Process;

/// Where the kubelet keeps its state and what it needs to know.
pub struct KubeletLayout<'a> {
    pub program: &'a Path,
    pub node_name: &'a str,
    pub node_ip: Ipv4Addr,
    /// Its state (`--root-dir`), pod logs and configuration go below it.
    pub dir: &'a Path,
    /// Client certificate credentials for the API server (`system:node:<name>`).
    pub kubeconfig: &'a Path,
    /// CA whose client certificates the kubelet's own API accepts (the API server's, for
    /// `kubectl logs`).
    pub client_ca: &'a Path,
    pub runtime_endpoint: &'a str,
    /// The cgroup (in every v1 hierarchy) the pods' cgroups are created under: the tier's own,
    /// so a run never touches the host's `kubepods` and its teardown knows what to remove.
    pub cgroup_root: &'a str,
}

/// Starts the kubelet; it registers its node itself.
pub fn start(layout: &KubeletLayout<'_>, log_dir: &Path) -> anyhow::Result<Process> {
    let config = layout.dir.join("kubelet.yaml");
    std::fs::create_dir_all(layout.dir)
        .with_context(|| format!("creating {}", layout.dir.display()))?;
    std::fs::write(&config, config_yaml(layout)).context("writing the kubelet configuration")?;
    Process::spawn(
        "kubelet",
        layout.program,
        &[
            format!("--config={}", config.display()),
            format!("--kubeconfig={}", layout.kubeconfig.display()),
            format!("--root-dir={}", root_dir(layout.dir).display()),
            format!("--hostname-override={}", layout.node_name),
            format!("--node-ip={}", layout.node_ip),
            "--v=1".to_owned(),
        ],
        &[],
        log_dir,
    )
}

fn root_dir(dir: &Path) -> PathBuf {
    dir.join("root")
}

/// The KubeletConfiguration. cgroupfs, as cgroup v1 here has no systemd; eviction thresholds
/// near zero, so a busy shared disk never taints the only node; the serving port only on the
/// node's address, with x509 client authentication against the cluster CA.
fn config_yaml(layout: &KubeletLayout<'_>) -> String {
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
failSwapOn: false
address: {node_ip}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: false}}
  x509: {{clientCAFile: "{client_ca}"}}
authorization: {{mode: AlwaysAllow}}
containerRuntimeEndpoint: "{endpoint}"
podLogsDir: "{logs}"
evictionHard: {{memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
localStorageCapacityIsolation: false
"#,
        cgroup_root = layout.cgroup_root,
        node_ip = layout.node_ip,
        client_ca = layout.client_ca.display(),
        endpoint = layout.runtime_endpoint,
        logs = layout.dir.join("pod-logs").display(),
    )
}
