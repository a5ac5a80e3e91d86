//! The admission webhook run as its real binary on 127.0.0.1, registered with the cluster the
//! way the Helm chart registers it, but with a `url` clientConfig (the API server runs on this
//! machine, not in a pod network) and a namespace selector that confines it to one namespace.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use kube::api::{Api, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::binaries::Product;
use crate::certs::Issued;
use crate::cluster::{Cluster, free_port};
use crate::kubectl::Kubectl;
use crate::process::Process;
use crate::product;
use crate::{local_http, wait};

/// How long the webhook may take to report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variable naming a webhook binary to run instead of the workspace's: an older
/// commit's build, to see a scenario fail without the fix it tests.
pub const WEBHOOK_OVERRIDE: &str = "PODSCALER_E2E_WEBHOOK";

/// The label a namespace carries to have its PodScalers reviewed by one test webhook.
pub const NAMESPACE_LABEL: &str = "podscaler-e2e/webhook";

/// Admission paths, as the chart registers them.
pub const MUTATE_PATH: &str = "/mutate-scaling-example-com-v1-podscaler";
/// See [`MUTATE_PATH`].
pub const VALIDATE_PATH: &str = "/validate-scaling-example-com-v1-podscaler";

/// `podscaler-webhook` serving from a certificate directory laid out like a mounted Secret.
pub struct Webhook {
    process: Process,
    port: u16,
    metrics_port: u16,
    health_port: u16,
    certs: SecretVolume,
}

impl Webhook {
    /// Starts the webhook with a serving certificate from the cluster's CA (which the API
    /// server is told to trust) and waits for `/readyz`. The certificate files are re-read
    /// every second so rotation is quick to observe.
    pub async fn start(cluster: &Cluster, name: &str, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_as(cluster, name, cluster.kubeconfig(), extra_args).await
    }

    /// As [`Webhook::start`], with the identity `kubeconfig` gives (a ServiceAccount's token,
    /// to run with exactly the chart's RBAC).
    pub async fn start_as(
        cluster: &Cluster,
        name: &str,
        kubeconfig: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let product = Product::build().await?;
        let binary = std::env::var_os(WEBHOOK_OVERRIDE).map_or(product.webhook, PathBuf::from);
        Self::start_binary(cluster, name, &binary, kubeconfig, extra_args).await
    }

    /// As [`Webhook::start_as`], running `binary` (a release build, for the benchmark).
    pub async fn start_binary(
        cluster: &Cluster,
        name: &str,
        binary: &Path,
        kubeconfig: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Self> {
        let certs = SecretVolume::create(&cluster.dir().join(format!("{name}-certs")))?;
        certs.write(&serving_certificate(cluster)?)?;
        let port = free_port()?;
        let metrics_port = free_port()?;
        let health_port = free_port()?;
        let mut args = vec![
            format!("--port={port}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--cert-dir={}", certs.dir.display()),
            "--cert-poll-interval=1s".to_owned(),
            format!("--metrics-bind-address=127.0.0.1:{metrics_port}"),
            format!("--health-probe-bind-address=127.0.0.1:{health_port}"),
            "--log-level=info,podscaler_webhook=debug".to_owned(),
        ];
        args.extend(extra_args.iter().map(|arg| (*arg).to_owned()));
        let mut process = Process::spawn(
            &format!("webhook-{name}"),
            binary,
            &args,
            &[("KUBECONFIG", kubeconfig.display().to_string())],
            cluster.dir(),
        )?;
        product::wait_ready(&mut process, health_port).await?;
        Ok(Self {
            process,
            port,
            metrics_port,
            health_port,
            certs,
        })
    }

    /// Registers mutating and validating configurations named `name` for PodScaler CREATE and
    /// UPDATE (and, for validation, UPDATE of `podscalers/scale`, as the chart does) in
    /// namespaces labelled [`NAMESPACE_LABEL`]`=name`, with `failurePolicy: Fail`. They are
    /// cluster-scoped but, through that label, concern no other namespace, so they stay until
    /// the cluster goes.
    async fn register(&self, cluster: &Cluster, name: &str) -> anyhow::Result<()> {
        let client = cluster.client();
        let ca_bundle = k8s_openapi::ByteString(cluster.authority().cert_pem().as_bytes().to_vec());
        let podscalers = json!({
            "apiGroups": ["scaling.example.com"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["podscalers"],
            "scope": "Namespaced",
        });
        let scale = json!({
            "apiGroups": ["scaling.example.com"],
            "apiVersions": ["v1"],
            "operations": ["UPDATE"],
            "resources": ["podscalers/scale"],
            "scope": "Namespaced",
        });
        let hook = |prefix: &str, path: &str, rules: serde_json::Value| {
            json!({
                "name": format!("{prefix}{name}.podscaler.scaling.example.com"),
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 10,
                "clientConfig": {
                    "url": format!("https://127.0.0.1:{}{path}", self.port),
                    "caBundle": ca_bundle,
                },
                "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: name}},
                // The chart's: the API server sends a Scale as autoscaling/v1 whatever version
                // the client used.
                "matchPolicy": "Equivalent",
                "rules": rules,
            })
        };
        let mutating: MutatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": name},
            "webhooks": [hook("m", MUTATE_PATH, json!([podscalers.clone()]))],
        }))?;
        let validating: ValidatingWebhookConfiguration = serde_json::from_value(json!({
            "metadata": {"name": name},
            "webhooks": [hook("v", VALIDATE_PATH, json!([podscalers, scale]))],
        }))?;
        Api::<MutatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &mutating)
            .await
            .context("creating the MutatingWebhookConfiguration")?;
        Api::<ValidatingWebhookConfiguration>::all(client.clone())
            .create(&PostParams::default(), &validating)
            .await
            .context("creating the ValidatingWebhookConfiguration")?;
        Ok(())
    }

    /// Has the API server send PodScalers in `namespace` to this webhook: registers
    /// configurations named after the namespace, labels it, and waits until the API server
    /// calls the webhook (it learns of new configurations through a watch) — a server-side dry
    /// run of a PodScaler without a template comes back defaulted.
    pub async fn admit_namespace(&self, cluster: &Cluster, namespace: &str) -> anyhow::Result<()> {
        self.register(cluster, namespace).await?;
        let kubectl = Kubectl::new(cluster.kubeconfig());
        let label = format!("{NAMESPACE_LABEL}={namespace}");
        kubectl
            .run(&["label", "namespace", namespace, &label, "--overwrite"])
            .await?;
        let probe = "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: webhook-probe\nspec:\n  count: 0\n  selector:\n    probe: webhook\n";
        wait::until(
            "the API server to call the webhook",
            READY_TIMEOUT,
            || async {
                let image = kubectl
                    .run_with_input(
                        &[
                            "-n",
                            namespace,
                            "apply",
                            "--dry-run=server",
                            "-o",
                            "jsonpath={.spec.template.spec.containers[0].image}",
                            "-f",
                            "-",
                        ],
                        Some(probe),
                    )
                    .await?;
                anyhow::ensure!(!image.is_empty(), "a dry run was not defaulted yet");
                Ok(())
            },
        )
        .await
    }

    /// Issues a new serving certificate and swaps it in as the kubelet swaps a Secret
    /// volume's contents (a new timestamped directory, then `..data` re-pointed atomically).
    pub fn rotate(&self, cluster: &Cluster) -> anyhow::Result<Issued> {
        let issued = serving_certificate(cluster)?;
        self.certs.write(&issued)?;
        Ok(issued)
    }

    /// Writes unparsable certificate files (a botched rotation).
    pub fn break_certificate(&self) -> anyhow::Result<()> {
        self.certs.write(&Issued {
            cert_pem: "not a certificate\n".to_owned(),
            key_pem: "not a key\n".to_owned(),
            cert_der: Vec::new(),
        })
    }

    /// The certificate the webhook presents to a new TLS handshake, DER.
    pub async fn served_certificate(&self, cluster: &Cluster) -> anyhow::Result<Vec<u8>> {
        served_leaf(
            std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            "127.0.0.1",
            cluster.authority().cert_pem(),
        )
        .await
    }

    /// The HTTPS port of the admission paths on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, to read its usage from `/proc`.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The port of `/metrics` on 127.0.0.1.
    pub fn metrics_port(&self) -> u16 {
        self.metrics_port
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> anyhow::Result<String> {
        let (code, body) = local_http::get(self.metrics_port, "/metrics").await?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        Ok(body)
    }

    /// The port of `/healthz` and `/readyz` on 127.0.0.1.
    pub fn health_port(&self) -> u16 {
        self.health_port
    }

    /// Fails when the webhook has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.process.check_running()
    }

    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last lines of the webhook's log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

fn serving_certificate(cluster: &Cluster) -> anyhow::Result<Issued> {
    cluster
        .authority()
        .serving("podscaler-webhook", &["localhost"], &[])
}

/// A directory laid out as the kubelet lays out a Secret volume: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<generation>`; an update writes a new generation and re-points `..data`.
struct SecretVolume {
    dir: PathBuf,
    generation: AtomicU32,
}

impl SecretVolume {
    fn create(dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(file), dir.join(file))
                .with_context(|| format!("linking {file}"))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            generation: AtomicU32::new(0),
        })
    }

    fn write(&self, issued: &Issued) -> anyhow::Result<()> {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst);
        let data = format!("..{generation}");
        let target = self.dir.join(&data);
        fs::create_dir(&target).with_context(|| format!("creating {}", target.display()))?;
        fs::write(target.join("tls.crt"), &issued.cert_pem).context("writing tls.crt")?;
        fs::write(target.join("tls.key"), &issued.key_pem).context("writing tls.key")?;
        let staging = self.dir.join("..data_tmp");
        let _ = fs::remove_file(&staging);
        std::os::unix::fs::symlink(&data, &staging).context("linking ..data_tmp")?;
        fs::rename(&staging, self.dir.join("..data")).context("swapping ..data")?;
        Ok(())
    }
}

/// The leaf certificate (DER) a TLS server at `address` presents for `server_name`, verified
/// against the PEM CA `ca_pem`.
pub async fn served_leaf(
    address: std::net::SocketAddr,
    server_name: &str,
    ca_pem: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("parsing the CA")?;
    roots.add(ca).context("trusting the CA")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to {address}"))?;
    let server = ServerName::try_from(server_name.to_owned()).context("server name")?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(server, stream)
        .await
        .with_context(|| format!("TLS handshake with {address}"))?;
    let (_, session) = tls.get_ref();
    let leaf = session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .context("the server presented no certificate")?;
    Ok(leaf.to_vec())
}
