//! The Helm chart against a real cluster: helm itself (the pinned build), the upstream CRDs its
//! optional objects need, and the metric names its alerts and dashboard query.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::LazyLock;

use anyhow::Context;
use regex::Regex;
use serde_json::Value;

use crate::binaries::{ControlPlane, directory_from_script, workspace_root};

/// `charts/podscaler` in the workspace.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/podscaler")
}

/// `helm` (the pinned build) with a kubeconfig.
pub struct Helm {
    binary: PathBuf,
    kubeconfig: PathBuf,
}

impl Helm {
    /// Helm for the cluster `kubeconfig` points at.
    pub async fn new(kubeconfig: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            binary: ControlPlane::locate().await?.path("helm"),
            kubeconfig: kubeconfig.to_path_buf(),
        })
    }

    /// Runs `helm <args>` and returns stdout; fails with stderr when it exits non-zero.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = tokio::process::Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .context("running helm")?;
        anyhow::ensure!(
            output.status.success(),
            "helm {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        String::from_utf8(output.stdout).context("helm printed non-UTF-8")
    }
}

/// What `promtool check metrics` made of a page.
#[derive(Debug)]
pub struct Lint {
    /// It exited 0: the page parses and no lint rule fired.
    pub success: bool,
    /// What it printed (the problems found).
    pub output: String,
}

/// Runs `promtool check metrics` (the pinned build at `promtool`) on a text-format page.
pub async fn promtool_check_metrics(promtool: &Path, page: &str) -> anyhow::Result<Lint> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("running {}", promtool.display()))?;
    let mut stdin = child.stdin.take().context("promtool's stdin")?;
    stdin.write_all(page.as_bytes()).await?;
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .context("waiting for promtool")?;
    Ok(Lint {
        success: output.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// The cached directory of cert-manager and Prometheus Operator CRDs (`third-party-crds.sh`
/// builds it from their Go modules on first use).
pub fn third_party_crds() -> anyhow::Result<PathBuf> {
    directory_from_script(
        std::process::Command::new("bash").arg(workspace_root().join("e2e/third-party-crds.sh")),
    )
}

/// Every PromQL expression of a rendered chart: the PrometheusRule's alert and record rules,
/// and the Grafana dashboard's panel queries and query variables. Each comes with where it
/// was found.
pub fn promql_expressions(rendered: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(rendered).context("parsing the rendered chart")?;
    for document in &documents {
        match document["kind"].as_str() {
            Some("PrometheusRule") => {
                for group in document["spec"]["groups"].as_array().into_iter().flatten() {
                    for rule in group["rules"].as_array().into_iter().flatten() {
                        let name = rule["alert"].as_str().or(rule["record"].as_str());
                        let expr = rule["expr"].as_str().context("a rule without expr")?;
                        found.push((format!("rule {}", name.unwrap_or("?")), expr.to_owned()));
                    }
                }
            }
            Some("ConfigMap") => {
                let data = document["data"].as_object().into_iter().flatten();
                for (file, json) in data.filter(|(file, _)| file.ends_with(".json")) {
                    let json = json.as_str().context("dashboard data is not a string")?;
                    let dashboard: Value = serde_json::from_str(json)
                        .with_context(|| format!("parsing dashboard {file}"))?;
                    dashboard_expressions(&dashboard, &mut found);
                }
            }
            _ => {}
        }
    }
    Ok(found)
}

fn dashboard_expressions(dashboard: &Value, found: &mut Vec<(String, String)>) {
    fn panels(items: &Value, found: &mut Vec<(String, String)>) {
        for panel in items.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = target["expr"].as_str() {
                    found.push((format!("panel {title}"), expr.to_owned()));
                }
            }
            panels(&panel["panels"], found);
        }
    }
    panels(&dashboard["panels"], found);
    static LABEL_VALUES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^label_values\((.*),\s*\w+\)$").expect("valid regex"));
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"].as_str() != Some("query") {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or(variable["query"].as_str())
            .unwrap_or_default();
        let query = LABEL_VALUES.replace(query, "$1");
        let name = variable["name"].as_str().unwrap_or("?");
        found.push((format!("variable {name}"), query.into_owned()));
    }
}

/// The metric names a PromQL expression selects (functions, keywords, label names, string
/// literals, durations and numbers left out).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    static STRINGS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""(?:[^"\\]|\\.)*""#).expect("valid regex"));
    static MATCHERS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\{[^}]*\}").expect("valid regex"));
    static RANGES: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\[[^\]]*\]").expect("valid regex"));
    static GROUPING: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
            .expect("valid regex")
    });
    static IDENTIFIER: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*").expect("valid regex"));
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ];
    let expr = STRINGS.replace_all(expr, "\"\"");
    let expr = MATCHERS.replace_all(&expr, "");
    let expr = RANGES.replace_all(&expr, "");
    let expr = GROUPING.replace_all(&expr, "");
    IDENTIFIER
        .find_iter(&expr)
        .filter(|found| !expr[found.end()..].trim_start().starts_with('('))
        .filter(|found| !KEYWORDS.contains(&found.as_str().to_ascii_lowercase().as_str()))
        .filter(|found| {
            let before = expr[..found.start()].chars().next_back();
            !before.is_some_and(|c| c.is_ascii_digit() || c == '.')
        })
        .map(|found| found.as_str().to_owned())
        .collect()
}

/// The metric names with at least one sample on a Prometheus text page.
pub fn exposed_names(page: &str) -> BTreeSet<String> {
    page.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_skip_functions_labels_and_durations() {
        let names = metric_names(
            r#"histogram_quantile(0.99, sum by (le, webhook) (rate(controller_runtime_webhook_latency_seconds_bucket{job=~"$job"}[5m]))) > 1e3"#,
        );
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["controller_runtime_webhook_latency_seconds_bucket"]
        );
        let names = metric_names(
            "podscaler_desired_pods != on (namespace, name) podscaler_current_pods unless up == 0",
        );
        assert_eq!(
            names.into_iter().collect::<Vec<_>>(),
            ["podscaler_current_pods", "podscaler_desired_pods", "up"]
        );
    }

    #[test]
    fn exposed_names_are_the_sample_names() {
        let page = "# HELP a_total A.\n# TYPE a counter\na_total{x=\"1\"} 1\nb 2\n# EOF\n";
        assert_eq!(
            exposed_names(page).into_iter().collect::<Vec<_>>(),
            ["a_total", "b"]
        );
    }
}
