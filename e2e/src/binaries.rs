//! Where the binaries come from: the pinned control plane (built by `controlplane/build.sh`
//! into a cache outside the repository) and this workspace's own binaries (built by cargo).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::Context;

/// The upstream control-plane binaries.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    dir: PathBuf,
}

impl ControlPlane {
    /// Builds the control plane (minutes, once per machine) or finds it in the cache (instant).
    pub fn locate() -> anyhow::Result<Self> {
        static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        let dir = DIR.get_or_init(|| build_control_plane().map_err(|error| format!("{error:#}")));
        match dir {
            Ok(dir) => Ok(Self { dir: dir.clone() }),
            Err(error) => anyhow::bail!("{error}"),
        }
    }

    /// Path of one binary (`kube-apiserver`, `etcd`, `helm` …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn build_control_plane() -> anyhow::Result<PathBuf> {
    directory_from_script(&workspace_root().join("e2e/controlplane/build.sh"))
}

/// Runs one of the repository's cache scripts (progress on stderr, passed through) and returns
/// the directory it prints on stdout.
pub fn directory_from_script(script: &Path) -> anyhow::Result<PathBuf> {
    let output = Command::new("bash")
        .arg(script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed ({}); see its output above",
        script.display(),
        output.status
    );
    let dir = String::from_utf8(output.stdout)
        .with_context(|| format!("{} printed a non-UTF-8 path", script.display()))?;
    Ok(PathBuf::from(dir.trim()))
}

/// This workspace's binaries, built in the debug profile.
#[derive(Clone, Debug)]
pub struct Product {
    /// `podscaler-operator`.
    pub operator: PathBuf,
    /// `podscaler-webhook`.
    pub webhook: PathBuf,
    /// `crd-gen`.
    pub crd_gen: PathBuf,
}

impl Product {
    /// Runs `cargo build` for the binaries once per process (a no-op when they are up to date)
    /// so the suite never tests a stale binary.
    pub fn build() -> anyhow::Result<Self> {
        static BUILT: OnceLock<Result<Product, String>> = OnceLock::new();
        BUILT
            .get_or_init(|| build_product().map_err(|error| format!("{error:#}")))
            .clone()
            .map_err(|error| anyhow::anyhow!(error))
    }
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Environment variable naming an operator binary to use instead of the workspace's.
pub const OPERATOR_OVERRIDE: &str = "PODSCALER_E2E_OPERATOR";

fn build_product() -> anyhow::Result<Product> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args([
            "build",
            "--quiet",
            "--bin",
            "podscaler-operator",
            "--bin",
            "podscaler-webhook",
            "--bin",
            "crd-gen",
        ])
        .status()
        .with_context(|| format!("running {cargo} build"))?;
    anyhow::ensure!(
        status.success(),
        "cargo build of the product binaries failed ({status})"
    );
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let debug = target.join("debug");
    // To run a scenario against another build of the operator (an older commit's, to see the
    // scenario fail without the fix it tests), point this at that binary.
    let operator = std::env::var_os(OPERATOR_OVERRIDE)
        .map_or_else(|| debug.join("podscaler-operator"), PathBuf::from);
    Ok(Product {
        operator,
        webhook: debug.join("podscaler-webhook"),
        crd_gen: debug.join("crd-gen"),
    })
}
