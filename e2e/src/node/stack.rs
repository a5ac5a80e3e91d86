//! What runs on the real node, installed the way a user installs it: cert-manager from its
//! manifest, then PodScaler's Helm chart with its default images — built here from the
//! workspace's binaries under the names the chart's values give.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context;
use regex::Regex;
use serde_json::Value;

use super::footprint::{Footprint, Leftovers};
use super::image::ImageSpec;
use super::{PAUSE_IMAGE, RealNode};
use crate::binaries::{ControlPlane, Product};
use crate::chart::{Helm, chart_dir};
use crate::kubectl::Kubectl;
use crate::wait;

/// The Helm release and its namespace.
pub const RELEASE: &str = "podscaler";
pub const RELEASE_NAMESPACE: &str = "podscaler-system";

/// cert-manager's manifest in the tool cache (rendered from its module's chart by build.sh).
const CERT_MANAGER_MANIFEST: &str = "cert-manager.yaml";
const CERT_MANAGER_NAMESPACE: &str = "cert-manager";

/// How long cert-manager or the chart may take to become available on a loaded machine.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);

/// The real node with cert-manager running and the images the chart uses imported.
pub struct Stack {
    pub node: RealNode,
    pub kubectl: Kubectl,
    pub helm: Helm,
}

impl Stack {
    /// Builds the product's binaries and the images, starts the node and installs cert-manager.
    pub async fn start(footprint: Footprint) -> anyhow::Result<Self> {
        let binaries = ControlPlane::locate_all().await?;
        let product = Product::build().await?;
        let cert_manager = binaries.path(CERT_MANAGER_MANIFEST);
        let mut images = product_images(&product)?;
        images.extend(cert_manager_images(&cert_manager, &binaries)?);
        let node = RealNode::start(footprint, &images).await?;
        let stack = Self {
            kubectl: Kubectl::new(node.kubeconfig()),
            helm: Helm::new(node.kubeconfig()).await?,
            node,
        };
        stack
            .install_cert_manager(&cert_manager)
            .await
            .map_err(|error| error.context(stack.node.logs(30)))?;
        Ok(stack)
    }

    /// `helm install` of the chart into [`RELEASE_NAMESPACE`] (labelled to enforce the
    /// restricted Pod Security profile) with `--wait`, and `values` as `--set`/`--set-json`
    /// arguments.
    pub async fn install_chart(&self, values: &[&str]) -> anyhow::Result<String> {
        self.kubectl
            .run_with_input(
                &["apply", "-f", "-"],
                Some(&restricted_namespace(RELEASE_NAMESPACE)),
            )
            .await?;
        let chart = chart_dir();
        let chart = chart.to_string_lossy();
        let mut args = vec![
            "install",
            RELEASE,
            chart.as_ref(),
            "--namespace",
            RELEASE_NAMESPACE,
            "--wait",
            "--timeout",
            "5m",
        ];
        args.extend_from_slice(values);
        self.helm.run(&args).await
    }

    /// Stops everything and reports what could not be removed.
    pub fn shut_down(self) -> Leftovers {
        self.node.shut_down()
    }

    async fn install_cert_manager(&self, manifest: &Path) -> anyhow::Result<()> {
        let manifest_arg = manifest.to_string_lossy();
        self.kubectl
            .run(&["apply", "--server-side", "-f", &manifest_arg])
            .await
            .context("applying cert-manager's manifest")?;
        let timeout = format!("--timeout={}s", INSTALL_TIMEOUT.as_secs());
        self.kubectl
            .run(&[
                "-n",
                CERT_MANAGER_NAMESPACE,
                "wait",
                "--for=condition=Available",
                "deployment",
                "--all",
                &timeout,
            ])
            .await
            .context("waiting for cert-manager's Deployments")?;
        // Available is not enough: its webhook must serve and cainjector must have given the
        // API server its CA. A server-side dry run of an Issuer passes through both.
        let issuer = r#"{"apiVersion": "cert-manager.io/v1", "kind": "Issuer",
            "metadata": {"name": "probe", "namespace": "default"}, "spec": {"selfSigned": {}}}"#;
        wait::until(
            "cert-manager's webhook to admit",
            INSTALL_TIMEOUT,
            || async {
                self.kubectl
                    .run_with_input(&["apply", "--dry-run=server", "-f", "-"], Some(issuer))
                    .await
                    .map(drop)
            },
        )
        .await
    }
}

/// A Namespace manifest enforcing the restricted Pod Security profile.
pub fn restricted_namespace(name: &str) -> String {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        }},
    })
    .to_string()
}

/// A PodScaler whose pods run the sandbox image's process — the only image on the node besides
/// the product's and cert-manager's (there is no registry) — and pass the restricted profile.
pub fn pause_sample(name: &str, count: i32) -> String {
    serde_json::json!({
        "apiVersion": "scaling.example.com/v1",
        "kind": "PodScaler",
        "metadata": {"name": name},
        "spec": {
            "count": count,
            "selector": {"app": name},
            "template": {"spec": {
                "terminationGracePeriodSeconds": 1,
                "securityContext": {
                    "runAsNonRoot": true,
                    "runAsUser": 65532,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "containers": [{
                    "name": "pause",
                    "image": PAUSE_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": {
                        "allowPrivilegeEscalation": false,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }],
            }},
        },
    })
    .to_string()
}

/// The operator's and the webhook's images, under the names the chart's defaults give
/// (`<component>.image.repository` in values.yaml, tagged with Chart.yaml's appVersion): the
/// one place both the chart and this tier read them from.
pub fn product_images(product: &Product) -> anyhow::Result<Vec<ImageSpec>> {
    let (operator, webhook) = chart_default_images(&chart_dir())?;
    Ok(vec![
        ImageSpec::for_binary(&operator, &product.operator)?,
        ImageSpec::for_binary(&webhook, &product.webhook)?,
    ])
}

/// The operator's and the webhook's default image references in the chart at `dir`.
pub fn chart_default_images(dir: &Path) -> anyhow::Result<(String, String)> {
    let read = |name: &str| -> anyhow::Result<Value> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    };
    let values = read("values.yaml")?;
    let chart = read("Chart.yaml")?;
    let tag = chart["appVersion"]
        .as_str()
        .context("Chart.yaml has no appVersion")?;
    let reference = |component: &str| -> anyhow::Result<String> {
        let image = &values[component]["image"];
        let repository = image["repository"]
            .as_str()
            .with_context(|| format!("values.yaml has no {component}.image.repository"))?;
        // A tag set in values.yaml wins over appVersion, as in the chart's templates.
        let tag = image["tag"]
            .as_str()
            .filter(|tag| !tag.is_empty())
            .unwrap_or(tag);
        Ok(format!("{repository}:{tag}"))
    };
    Ok((reference("operator")?, reference("webhook")?))
}

/// cert-manager's images, named as its manifest names them, each built from the binary of the
/// same name (`quay.io/jetstack/cert-manager-controller:v1.11.5` → `cert-manager-controller`).
fn cert_manager_images(manifest: &Path, binaries: &ControlPlane) -> anyhow::Result<Vec<ImageSpec>> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let references = image_references(&text);
    anyhow::ensure!(
        !references.is_empty(),
        "{} names no image",
        manifest.display()
    );
    references
        .iter()
        .map(|reference| {
            let binary: PathBuf = binaries.path(binary_of(reference));
            ImageSpec::for_binary(reference, &binary)
        })
        .collect()
}

/// The distinct `image:` references of a manifest, in order.
fn image_references(manifest: &str) -> Vec<String> {
    static IMAGE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r#"(?m)^\s*(?:-\s+)?image:\s*"?([^"\s]+)"?\s*$"#).expect("a valid regex")
    });
    let mut references: Vec<String> = Vec::new();
    for capture in IMAGE.captures_iter(manifest) {
        let reference = capture[1].to_owned();
        if !references.contains(&reference) {
            references.push(reference);
        }
    }
    references
}

/// The last path segment of an image reference, without its tag or digest.
fn binary_of(reference: &str) -> &str {
    let name = reference.split('@').next().unwrap_or(reference);
    let last = name.rsplit('/').next().unwrap_or(name);
    last.split(':').next().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifests_images_are_listed_once_in_order() {
        let manifest = "\
spec:
  containers:
    - name: cert-manager-controller
      image: \"quay.io/jetstack/cert-manager-controller:v1.11.5\"
---
      containers:
      - image: quay.io/jetstack/cert-manager-webhook:v1.11.5
        imagePullPolicy: IfNotPresent
      - image: quay.io/jetstack/cert-manager-controller:v1.11.5
";
        assert_eq!(
            image_references(manifest),
            [
                "quay.io/jetstack/cert-manager-controller:v1.11.5",
                "quay.io/jetstack/cert-manager-webhook:v1.11.5"
            ]
        );
    }

    #[test]
    fn an_images_binary_is_its_last_path_segment() {
        assert_eq!(
            binary_of("quay.io/jetstack/cert-manager-cainjector:v1.11.5"),
            "cert-manager-cainjector"
        );
        assert_eq!(binary_of("registry.k8s.io/pause@sha256:abc"), "pause");
        assert_eq!(binary_of("localhost:5000/tool:1"), "tool");
    }

    #[test]
    fn the_charts_default_images_are_tagged_with_its_app_version() {
        let (operator, webhook) = chart_default_images(&chart_dir()).expect("the chart's images");
        assert!(
            operator.starts_with("ghcr.io/example/podscaler/operator:"),
            "{operator}"
        );
        assert!(
            webhook.starts_with("ghcr.io/example/podscaler/webhook:"),
            "{webhook}"
        );
        assert!(operator.ends_with(env!("CARGO_PKG_VERSION")), "{operator}");
    }
}
