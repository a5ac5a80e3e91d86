//! containerd (Debian's package) as the node's container runtime, with every path of its own in
//! the tier's directory: root, state, sockets, the pod sandboxes' network namespaces and the CNI
//! configuration.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

use crate::process::Process;
use crate::wait;

/// Where Debian's containernetworking-plugins installs the CNI plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// The containerd namespace the kubelet's CRI calls use.
const K8S_NAMESPACE: &str = "k8s.io";

/// A running containerd.
pub struct Containerd {
    process: Process,
    socket: PathBuf,
}

/// What the configuration depends on.
pub struct ContainerdLayout<'a> {
    /// Everything containerd writes goes below it.
    pub dir: &'a Path,
    /// The sandbox ("pause") image every pod starts with; imported before the first pod.
    pub sandbox_image: &'a str,
    /// The pod network's subnet, for the CNI bridge.
    pub pod_cidr: &'a str,
}

impl Containerd {
    /// Writes the CNI and containerd configuration and starts containerd; returns once its
    /// socket answers.
    pub async fn start(layout: &ContainerdLayout<'_>, log_dir: &Path) -> anyhow::Result<Self> {
        let cni_conf_dir = layout.dir.join("cni/net.d");
        std::fs::create_dir_all(&cni_conf_dir)
            .with_context(|| format!("creating {}", cni_conf_dir.display()))?;
        std::fs::write(
            cni_conf_dir.join("10-podscaler-bridge.conflist"),
            cni_bridge_config(layout.pod_cidr, &layout.dir.join("cni/ipam")),
        )
        .context("writing the CNI configuration")?;
        let config = layout.dir.join("containerd.toml");
        let socket = layout.dir.join("containerd.sock");
        std::fs::write(&config, config_toml(layout, &socket, &cni_conf_dir))
            .context("writing containerd's configuration")?;
        let mut process = Process::spawn(
            "containerd",
            Path::new("containerd"),
            &[format!("--config={}", config.display())],
            &[],
            log_dir,
        )?;
        let containerd_socket = socket.clone();
        wait::until("containerd's socket", Duration::from_secs(60), || {
            let exited = process.check_running();
            let socket = containerd_socket.clone();
            async move {
                exited.context("containerd stopped")?;
                ctr(&socket, &["version"]).await.map(drop)
            }
        })
        .await?;
        Ok(Self { process, socket })
    }

    /// `unix://…`, for the kubelet's `containerRuntimeEndpoint`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// Imports a `docker save` archive into the kubelet's containerd namespace.
    pub async fn import(&self, archive: &Path) -> anyhow::Result<()> {
        let path = archive.to_string_lossy();
        ctr(&self.socket, &["images", "import", &path])
            .await
            .map(drop)
            .with_context(|| format!("importing {path}"))
    }

    /// The containerd process (for health checks and its log).
    pub fn process_mut(&mut self) -> &mut Process {
        &mut self.process
    }
}

async fn ctr(socket: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = tokio::process::Command::new("ctr")
        .arg(format!("--address={}", socket.display()))
        .arg(format!("--namespace={K8S_NAMESPACE}"))
        .args(args)
        .output()
        .await
        .context("running ctr")?;
    anyhow::ensure!(
        output.status.success(),
        "ctr {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// containerd's configuration (version 2, as containerd 1.6 reads it).
fn config_toml(layout: &ContainerdLayout<'_>, socket: &Path, cni_conf_dir: &Path) -> String {
    let dir = layout.dir.display();
    format!(
        r#"version = 2
root = "{dir}/root"
state = "{dir}/state"

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  # This machine withholds CAP_SYS_RESOURCE: runc cannot lower oom_score_adj, and without this
  # every sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  # The sandboxes' network namespaces under the state directory, not /var/run/netns.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#,
        socket = socket.display(),
        sandbox = layout.sandbox_image,
        cni_bin = CNI_BIN_DIR,
        cni_conf = cni_conf_dir.display(),
    )
}

/// A bridge with the node side as the pods' gateway. No masquerading: everything a pod talks to
/// (the API server on the node's address, other pods, Prometheus) is inside the namespace.
fn cni_bridge_config(pod_cidr: &str, ipam_dir: &Path) -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "podscaler-e2e",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": ipam_dir,
                },
            },
            {"type": "loopback"},
        ],
    })
    .to_string()
}
