//! The network namespace the real-node tier lives in.
//!
//! The harness process itself joins it (on its main thread, before any other thread exists), so
//! every thread and child it starts afterwards — etcd, kube-apiserver, containerd, the kubelet,
//! kubectl, helm, Prometheus, and the kube clients of the test — talks inside it. The node's
//! address, the pod network and the Service IPs exist only there: nothing of the tier is ever
//! routed from the host's own namespace.
//!
//! `setns(2)` only, as `nsenter --net` does: `ip netns exec` would also remount /sys, which hides
//! /sys/fs/cgroup from runc and the kubelet.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// Where `ip netns add` bind-mounts named namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// A named network namespace (`/run/netns/<name>`), created by [`Netns::create`].
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name` (it must not exist).
    pub fn create(name: &str) -> anyhow::Result<Self> {
        run("ip", &["netns", "add", name])?;
        Ok(Self {
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`: what `nsenter --net=` takes.
    pub fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Moves the calling thread into the namespace. Call it on the main thread before any other
    /// thread is started: threads inherit the namespace of the thread that creates them, and a
    /// thread created earlier would stay outside.
    pub fn enter(&self) -> anyhow::Result<()> {
        let path = self.path();
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: setns on a namespace file descriptor we own; it changes only this thread's
        // network namespace.
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if result != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("entering network namespace {}", self.name));
        }
        Ok(())
    }
}

/// Deletes namespace `name` (`ip netns delete`). Its interfaces, addresses, routes and iptables
/// rules go with it once no process is left inside.
pub fn delete(name: &str) -> anyhow::Result<()> {
    run("ip", &["netns", "delete", name])
}

/// Names of the namespaces under [`NETNS_DIR`] that start with `prefix`.
pub fn named_with_prefix(prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

/// Runs a command to completion and fails with its stderr when it fails.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}
