//! Where the binaries come from: the pinned control plane (built by `controlplane/build.sh`
//! into a cache outside the repository) and this workspace's own binaries (built by cargo).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::Context;

/// The pinned upstream tools `controlplane/build.sh` built, in its cache directory.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    dir: PathBuf,
}

impl ControlPlane {
    /// The kwok control plane's binaries and the chart tools (helm, helm-docs, promtool):
    /// built (minutes, once per machine) or found in the cache (instant).
    pub async fn locate() -> anyhow::Result<Self> {
        static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        Self::located(&DIR, "control-plane").await
    }

    /// Everything [`ControlPlane::locate`] gives, and the real node's tools: kubelet, pause,
    /// cert-manager and its manifest, prometheus.
    pub async fn locate_all() -> anyhow::Result<Self> {
        static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        Self::located(&DIR, "all").await
    }

    /// `build.sh <set>` once per process. It blocks (for minutes when it builds), so it runs
    /// on tokio's blocking pool, never on a runtime thread; callers that come while it runs
    /// wait for the same run.
    async fn located(
        dir: &'static OnceLock<Result<PathBuf, String>>,
        set: &'static str,
    ) -> anyhow::Result<Self> {
        let dir = match dir.get() {
            Some(dir) => dir,
            None => tokio::task::spawn_blocking(move || {
                dir.get_or_init(|| build_tools(set).map_err(|error| format!("{error:#}")))
            })
            .await
            .with_context(|| format!("the task running build.sh {set}"))?,
        };
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

/// `build.sh <set>`: the directory of that set of tools.
fn build_tools(set: &str) -> anyhow::Result<PathBuf> {
    directory_from_script(
        Command::new("bash")
            .arg(workspace_root().join("e2e/controlplane/build.sh"))
            .arg(set),
    )
}

/// Runs one of the repository's cache scripts (progress on stderr, passed through) and returns
/// the directory it prints on stdout.
pub fn directory_from_script(command: &mut Command) -> anyhow::Result<PathBuf> {
    let script = format!("{command:?}");
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {script}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{script} failed ({}); see its output above",
        output.status
    );
    let dir = String::from_utf8(output.stdout)
        .with_context(|| format!("{script} printed a non-UTF-8 path"))?;
    Ok(PathBuf::from(dir.trim()))
}

/// This workspace's binaries, built in the debug profile.
#[derive(Clone, Debug)]
pub struct Product {
    /// `podscaler-operator`.
    pub operator: PathBuf,
    /// `podscaler-webhook`.
    pub webhook: PathBuf,
}

impl Product {
    /// Runs `cargo build` for the binaries once per process (a no-op when they are up to date)
    /// so the suite never tests a stale binary. Cancel-safe: a caller dropped mid-build (Ctrl-C
    /// in `podscaler-up`) kills that cargo, and the next caller builds again.
    pub async fn build() -> anyhow::Result<Self> {
        static BUILT: tokio::sync::OnceCell<Result<Product, String>> =
            tokio::sync::OnceCell::const_new();
        BUILT
            .get_or_init(|| async { build_product().await.map_err(|error| format!("{error:#}")) })
            .await
            .clone()
            .map_err(|error| anyhow::anyhow!(error))
    }

    /// As [`Product::build`], in the release profile: what the benchmark measures, as users
    /// run it. Ignores [`OPERATOR_OVERRIDE`] (a benchmark compares this tree's build).
    pub async fn build_release() -> anyhow::Result<Self> {
        let root = workspace_root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        tracing::info!(
            "building {} in release (cargo build --release; a no-op when up to date)",
            PRODUCT_BINARIES.join(" and ")
        );
        let status = cargo_build_command(&cargo, &root)
            .arg("--release")
            .status()
            .await
            .with_context(|| format!("running {cargo} build --release"))?;
        anyhow::ensure!(
            status.success(),
            "cargo build --release of the product binaries failed ({status}); see above"
        );
        let release = target_dir(&root).join("release");
        Ok(Self {
            operator: release.join("podscaler-operator"),
            webhook: release.join("podscaler-webhook"),
        })
    }
}

/// Where cargo puts its output for the workspace at `root`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Environment variable naming an operator binary to use instead of the workspace's.
pub const OPERATOR_OVERRIDE: &str = "PODSCALER_E2E_OPERATOR";

/// The product binaries `cargo build` makes. crd-gen is not among them: the harness installs
/// the CRD from the library, so building it would only cost time.
const PRODUCT_BINARIES: [&str; 2] = ["podscaler-operator", "podscaler-webhook"];

/// Whether `name` is one of the variables cargo sets for the program it runs (`cargo run`,
/// `cargo test`), as opposed to the user's own cargo configuration (`CARGO_HOME`,
/// `CARGO_TARGET_DIR`, `CARGO_PROFILE_*` …).
///
/// A nested `cargo build` must not inherit them: build scripts that declare
/// `rerun-if-env-changed` for variables they read (ring does, for `CARGO_MANIFEST_DIR` and
/// `CARGO_PKG_*`) see them change between the outer build (unset) and the nested one (set to
/// `e2e/`), so ring and everything above it (rustls, kube, podscaler) was rebuilt by the nested
/// build and then again by the next outer one: about a minute per run on a loaded 2-core
/// machine, with no output.
fn set_by_cargo_for_its_program(name: &str) -> bool {
    const NAMES: [&str; 9] = [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    const PREFIXES: [&str; 2] = ["CARGO_PKG_", "CARGO_BIN_EXE_"];
    NAMES.contains(&name) || PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// `cargo build` of [`PRODUCT_BINARIES`], with cargo's progress on stderr.
///
/// `--workspace`: features are unified over the selected packages, and the whole workspace
/// resolves them as `cargo run -p e2e` and `cargo test -p e2e` do (e2e depends on the library
/// with every feature the binaries use), so the dependencies those built are reused as they are.
fn cargo_build_command(cargo: &str, root: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(cargo);
    command
        .current_dir(root)
        .args(["build", "--workspace"])
        .args(PRODUCT_BINARIES.iter().flat_map(|binary| ["--bin", binary]))
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        // Its stdout (nothing, for a build) must not mix into a caller's output.
        .stdout(Stdio::null())
        // A caller that gives up (Ctrl-C) takes the build with it.
        .kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_its_program) {
            command.env_remove(name);
        }
    }
    command
}

async fn build_product() -> anyhow::Result<Product> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    tracing::info!(
        "building {} (cargo build; a no-op when they are up to date)",
        PRODUCT_BINARIES.join(" and ")
    );
    let status = cargo_build_command(&cargo, &root)
        .status()
        .await
        .with_context(|| format!("running {cargo} build"))?;
    anyhow::ensure!(
        status.success(),
        "cargo build of the product binaries failed ({status}); see its output above"
    );
    let debug = target_dir(&root).join("debug");
    // To run a scenario against another build of the operator (an older commit's, to see the
    // scenario fail without the fix it tests), point this at that binary.
    let operator = std::env::var_os(OPERATOR_OVERRIDE)
        .map_or_else(|| debug.join("podscaler-operator"), PathBuf::from);
    Ok(Product {
        operator,
        webhook: debug.join("podscaler-webhook"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_cargo_sets_for_its_program_is_not_passed_on() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "CARGO_BIN_EXE_podscaler-up",
            "CARGO_TARGET_TMPDIR",
            "CARGO_CRATE_NAME",
        ] {
            assert!(set_by_cargo_for_its_program(name), "{name}");
        }
    }

    #[test]
    fn the_users_cargo_configuration_is_passed_on() {
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_PROFILE_DEV_DEBUG",
            "CARGO_BUILD_JOBS",
            "CARGO_TERM_COLOR",
            "PATH",
        ] {
            assert!(!set_by_cargo_for_its_program(name), "{name}");
        }
    }

    #[test]
    fn the_nested_build_drops_the_manifest_dir_it_was_run_with() {
        // This test binary runs with CARGO_MANIFEST_DIR set by `cargo test`.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let command = cargo_build_command("cargo", Path::new("."));
        let removed = command
            .as_std()
            .get_envs()
            .any(|(name, value)| name == "CARGO_MANIFEST_DIR" && value.is_none());
        assert!(
            removed,
            "CARGO_MANIFEST_DIR is passed on to the nested build"
        );
    }

    #[test]
    fn only_the_binaries_the_harness_runs_are_built() {
        let command = cargo_build_command("cargo", Path::new("."));
        let args: Vec<_> = command
            .as_std()
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "build",
                "--workspace",
                "--bin",
                "podscaler-operator",
                "--bin",
                "podscaler-webhook"
            ]
        );
    }
}
