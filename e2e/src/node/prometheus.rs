//! A real Prometheus server (the pinned build) next to the node: it finds the chart's metrics
//! Services through Kubernetes service discovery (role `endpoints`), scrapes both binaries over
//! HTTPS with a ServiceAccount token the chart's metrics-reader role admits, and evaluates the
//! chart's PrometheusRule groups as rule files.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

use crate::binaries::ControlPlane;
use crate::cluster::free_port;
use crate::local_http;
use crate::process::Process;
use crate::wait;

/// Scrape and rule-evaluation interval: short, so a scenario sees data within seconds.
const INTERVAL: &str = "2s";

/// What Prometheus scrapes and with which credentials.
pub struct ScrapeTarget<'a> {
    /// The namespace whose Endpoints are discovered.
    pub namespace: &'a str,
    /// The Endpoints port name to keep (the chart's metrics Services name theirs `metrics`).
    pub port_name: &'a str,
    /// Credentials for discovery (an admin kubeconfig: Prometheus runs outside the cluster).
    pub kubeconfig: &'a Path,
    /// A ServiceAccount token file for the scrapes.
    pub token_file: &'a Path,
}

/// A running Prometheus on 127.0.0.1 inside the namespace.
pub struct Prometheus {
    process: Process,
    port: u16,
}

impl Prometheus {
    /// Starts Prometheus with `rule_groups` (a PrometheusRule's `spec.groups`) as its rule file.
    pub async fn start(
        target: &ScrapeTarget<'_>,
        rule_groups: &Value,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let rules = dir.join("rules.yaml");
        std::fs::write(&rules, json!({"groups": rule_groups}).to_string())
            .context("writing the rule file")?;
        let config_file = dir.join("prometheus.yml");
        std::fs::write(&config_file, config(target, &rules).to_string())
            .context("writing Prometheus's configuration")?;
        let port = free_port()?;
        let mut process = Process::spawn(
            "prometheus",
            &ControlPlane::locate_all().await?.path("prometheus"),
            &[
                format!("--config.file={}", config_file.display()),
                format!("--storage.tsdb.path={}", dir.join("data").display()),
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--log.level=warn".to_owned(),
            ],
            &[],
            dir,
        )?;
        wait::until("Prometheus to be ready", Duration::from_secs(60), || {
            let exited = process.check_running();
            async move {
                exited.context("prometheus stopped")?;
                let (code, body) = local_http::get(port, "/-/ready").await?;
                anyhow::ensure!(code == 200, "{code}: {body}");
                Ok(())
            }
        })
        .await?;
        Ok(Self { process, port })
    }

    /// `GET /api/v1/query?query=…`: the result vector (or matrix/scalar value) of an instant
    /// query; fails when Prometheus reports an error.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Value>> {
        let path = format!(
            "/api/v1/query?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", promql)
                .finish()
        );
        let answer = self.api_get(&path).await?;
        anyhow::ensure!(
            answer["status"] == "success",
            "query {promql:?} failed: {}",
            answer["error"]
        );
        Ok(match &answer["data"]["result"] {
            Value::Array(items) => items.clone(),
            Value::Null => Vec::new(),
            scalar => vec![scalar.clone()],
        })
    }

    /// The scrape targets, as `/api/v1/targets` lists the active ones.
    pub async fn active_targets(&self) -> anyhow::Result<Vec<Value>> {
        let answer = self.api_get("/api/v1/targets?state=active").await?;
        Ok(answer["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The alerts the rules currently hold, as `/api/v1/alerts` lists them.
    pub async fn alerts(&self) -> anyhow::Result<Vec<Value>> {
        let answer = self.api_get("/api/v1/alerts").await?;
        Ok(answer["data"]["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// `GET <path>` of the HTTP API, parsed; the body is in the error when it is not JSON.
    async fn api_get(&self, path: &str) -> anyhow::Result<Value> {
        let (code, body) = local_http::get(self.port, path).await?;
        serde_json::from_str(&body).with_context(|| format!("Prometheus answered {code}: {body}"))
    }

    /// Fails when Prometheus has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.process.check_running()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

/// The configuration: one scrape job over the namespace's Endpoints, keeping the metrics port,
/// with `job` set to the Service's name — what the chart's ServiceMonitor makes the Prometheus
/// Operator generate, and the job name the chart's rules and dashboard select by default.
fn config(target: &ScrapeTarget<'_>, rules: &Path) -> Value {
    json!({
        "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
        "rule_files": [rules],
        "scrape_configs": [{
            "job_name": "podscaler-chart-services",
            "scheme": "https",
            // The per-PodScaler series carry the PodScaler's own namespace and name, as with
            // the chart's ServiceMonitor (honorLabels: true).
            "honor_labels": true,
            // The binaries serve /metrics with a certificate generated in memory at each start.
            "tls_config": {"insecure_skip_verify": true},
            "authorization": {"credentials_file": target.token_file},
            "kubernetes_sd_configs": [{
                "role": "endpoints",
                "kubeconfig_file": target.kubeconfig,
                "namespaces": {"names": [target.namespace]},
            }],
            "relabel_configs": [
                {"source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": target.port_name, "action": "keep"},
                {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
                {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
            ],
        }],
    })
}

/// A dashboard query with Grafana's variables replaced: `$__rate_interval` by a window that
/// spans several scrapes, the job variables by the jobs, every other variable (all of them
/// used in `=~` matchers) by `.*`.
pub fn instantiate_dashboard_query(expr: &str, operator_job: &str, webhook_job: &str) -> String {
    static VARIABLE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\$\{?(\w+)\}?").expect("a valid regex"));
    VARIABLE
        .replace_all(expr, |captures: &regex::Captures<'_>| match &captures[1] {
            "__rate_interval" | "__interval" | "__range" => "30s".to_owned(),
            "operator_job" => operator_job.to_owned(),
            "webhook_job" => webhook_job.to_owned(),
            _ => ".*".to_owned(),
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashboard_variables_become_jobs_windows_and_wildcards() {
        let expr = r#"sum(rate(x{cluster=~"$cluster",job=~"$operator_job|$webhook_job"}[$__rate_interval]))"#;
        assert_eq!(
            instantiate_dashboard_query(expr, "op", "wh"),
            r#"sum(rate(x{cluster=~".*",job=~"op|wh"}[30s]))"#
        );
    }
}
