//! Running the installed `kubectl` against a kubeconfig, as a user would.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context;
use tokio::io::AsyncWriteExt;

/// `kubectl` bound to one kubeconfig.
#[derive(Clone, Debug)]
pub struct Kubectl {
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// `kubectl --kubeconfig <kubeconfig>`.
    pub fn new(kubeconfig: &Path) -> Self {
        Self {
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    /// Runs `kubectl <args>` and returns stdout; fails with stderr when it exits non-zero.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        self.run_with_input(args, None).await
    }

    /// Runs `kubectl <args>` with `input` on stdin (`apply -f -`).
    pub async fn run_with_input(
        &self,
        args: &[&str],
        input: Option<&str>,
    ) -> anyhow::Result<String> {
        let (status, stdout, stderr) = self.output(args, input).await?;
        anyhow::ensure!(
            status.success(),
            "kubectl {} failed ({status}): {}",
            args.join(" "),
            stderr.trim()
        );
        Ok(stdout)
    }

    /// Runs `kubectl <args>` expecting it to fail; returns stderr.
    pub async fn run_failing(&self, args: &[&str], input: Option<&str>) -> anyhow::Result<String> {
        let (status, stdout, stderr) = self.output(args, input).await?;
        anyhow::ensure!(
            !status.success(),
            "kubectl {} succeeded but should have failed: {}",
            args.join(" "),
            stdout.trim()
        );
        Ok(stderr)
    }

    async fn output(
        &self,
        args: &[&str],
        input: Option<&str>,
    ) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
        let mut child = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting kubectl (is it installed?)")?;
        if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
            stdin
                .write_all(input.as_bytes())
                .await
                .context("writing to kubectl")?;
        }
        let output = child
            .wait_with_output()
            .await
            .context("waiting for kubectl")?;
        Ok((
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }
}
