//! `--metrics-secure` against the real API server, on a control plane of its own: both binaries
//! run as their chart ServiceAccounts with exactly the chart's RBAC (rendered from
//! charts/podscaler), and `/metrics` answers 401 without a token, 403 to a ServiceAccount
//! without the metrics-reader ClusterRole, and the page to one bound to it — over HTTPS only,
//! while the health probes stay plain HTTP.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use e2e::chart::{Helm, chart_dir};
use e2e::product::{self, Operator};
use e2e::suite::{self, Env, Scenario};
use e2e::webhook::Webhook;
use e2e::{Cluster, Options, local_http, observe, wait};
use kube::api::Api;
use podscaler::api::PodScaler;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Generous bound for convergence on a loaded 2-core machine; not a performance assertion.
const CONVERGE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    let scenarios: &[(&str, Scenario)] = &[
        ("m01_operator", |env| Box::pin(operator_metrics(env))),
        ("m02_webhook", |env| Box::pin(webhook_metrics(env))),
    ];
    suite::main(scenarios, Options { nodes: 1 }, |cluster| {
        Box::pin(setup(cluster))
    })
}

async fn setup(cluster: Arc<Cluster>) -> anyhow::Result<()> {
    product::install_crd(&cluster.client()).await
}

/// The chart's names for release `release` (the release name never contains "podscaler" here).
struct ChartNames {
    operator_sa: String,
    webhook_sa: String,
    metrics_reader: String,
}

impl ChartNames {
    fn of(release: &str) -> Self {
        Self {
            operator_sa: format!("{release}-podscaler-operator"),
            webhook_sa: format!("{release}-podscaler-webhook"),
            metrics_reader: format!("{release}-podscaler-metrics-reader"),
        }
    }
}

/// Renders the chart's ServiceAccounts and RBAC for a release named after the scenario's
/// namespace (operator confined to it, metrics.secure as by default) and applies them.
async fn install_chart_rbac(env: &Env) -> anyhow::Result<ChartNames> {
    let helm = Helm::new(env.cluster.kubeconfig()).await?;
    let chart = chart_dir();
    let watch = format!("operator.watchNamespace={}", env.namespace);
    let rendered = helm
        .run(&[
            "template",
            &env.namespace,
            &chart.display().to_string(),
            "--namespace",
            &env.namespace,
            "--set",
            &watch,
            "--show-only",
            "templates/serviceaccounts.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ])
        .await
        .context("rendering the chart's RBAC")?;
    anyhow::ensure!(
        rendered.contains("tokenreviews") && rendered.contains("subjectaccessreviews"),
        "the chart's RBAC grants no review rights:\n{rendered}"
    );
    env.apply(&rendered)
        .await
        .context("applying the chart's RBAC")?;
    Ok(ChartNames::of(&env.namespace))
}

/// A token for ServiceAccount `name` in the scenario's namespace (TokenRequest API).
async fn token(env: &Env, name: &str) -> anyhow::Result<String> {
    let token = env
        .kubectl(&["create", "token", name, "--duration=2h"])
        .await
        .with_context(|| format!("requesting a token for {name}"))?;
    Ok(token.trim().to_owned())
}

/// A kubeconfig that authenticates as ServiceAccount `name`.
async fn service_account_kubeconfig(env: &Env, name: &str) -> anyhow::Result<PathBuf> {
    let dir = env
        .cluster
        .dir()
        .join("service-accounts")
        .join(&env.namespace);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, env.cluster.authority().cert_pem()).context("writing the CA")?;
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {
            "server": env.cluster.server(),
            "certificate-authority": ca,
        }}],
        "users": [{"name": name, "user": {"token": token(env, name).await?}}],
        "contexts": [{"name": name, "context": {"cluster": "e2e", "user": name}}],
        "current-context": name,
    });
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, serde_json::to_vec(&kubeconfig)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Creates the scrapers: `reader`, bound to the chart's metrics-reader ClusterRole, and
/// `stranger`, bound to nothing. Returns their tokens.
async fn scrapers(env: &Env, names: &ChartNames) -> anyhow::Result<(String, String)> {
    for account in ["reader", "stranger"] {
        env.kubectl(&["create", "serviceaccount", account]).await?;
    }
    let binding = format!("{}-reader", env.namespace);
    let role = format!("--clusterrole={}", names.metrics_reader);
    let subject = format!("--serviceaccount={}:reader", env.namespace);
    env.kubectl(&["create", "clusterrolebinding", &binding, &role, &subject])
        .await?;
    Ok((token(env, "reader").await?, token(env, "stranger").await?))
}

async fn operator_metrics(env: Env) -> anyhow::Result<()> {
    let names = install_chart_rbac(&env).await?;
    let (reader, stranger) = scrapers(&env, &names).await?;
    let kubeconfig = service_account_kubeconfig(&env, &names.operator_sa).await?;
    let operator = Operator::launch(
        &format!("operator-{}", env.namespace),
        &kubeconfig,
        env.cluster.dir(),
        &[
            format!("--namespace={}", env.namespace),
            "--metrics-secure".to_owned(),
        ],
    )
    .await?;
    let checked = async {
        check_guarded(
            operator.metrics_port(),
            operator.health_port(),
            &reader,
            &stranger,
            &env.namespace,
            "controller_runtime_reconcile_total",
        )
        .await?;
        scales_with_exactly_the_chart_rbac(&env).await
    }
    .await;
    checked.map_err(|error| error.context(format!("operator log:\n{}", operator.log_tail(30))))
}

/// The chart's rules are all the operator needs (and it needs no `get`): running as the chart's
/// ServiceAccount it scales a PodScaler up and down and writes its status.
async fn scales_with_exactly_the_chart_rbac(env: &Env) -> anyhow::Result<()> {
    let scalers: Api<PodScaler> = Api::namespaced(env.client(), &env.namespace);
    for count in [2, 1] {
        let manifest = format!(
            "apiVersion: scaling.example.com/v1\nkind: PodScaler\nmetadata:\n  name: web\n\
             spec:\n  count: {count}\n  selector:\n    app: web\n"
        );
        env.apply(&manifest).await?;
        wait::until(
            &format!("{count} pod(s) and the status saying so"),
            CONVERGE,
            || async {
                let pods = observe::active_pods(&env.client(), &env.namespace, "app=web").await?;
                let replicas = scalers
                    .get_status("web")
                    .await?
                    .status
                    .map(|status| status.replicas);
                anyhow::ensure!(
                    pods.len() == count && replicas == Some(count as i32),
                    "{} active pods, status.replicas {replicas:?}",
                    pods.len()
                );
                Ok(())
            },
        )
        .await?;
    }
    Ok(())
}

async fn webhook_metrics(env: Env) -> anyhow::Result<()> {
    let names = install_chart_rbac(&env).await?;
    let (reader, stranger) = scrapers(&env, &names).await?;
    let kubeconfig = service_account_kubeconfig(&env, &names.webhook_sa).await?;
    let webhook = Webhook::start_as(
        &env.cluster,
        &env.namespace,
        &kubeconfig,
        &["--metrics-secure"],
    )
    .await?;
    let checked = check_guarded(
        webhook.metrics_port(),
        webhook.health_port(),
        &reader,
        &stranger,
        &env.namespace,
        "controller_runtime_webhook_requests_in_flight",
    )
    .await;
    checked.map_err(|error| error.context(format!("webhook log:\n{}", webhook.log_tail(30))))
}

/// The expectations both binaries share.
async fn check_guarded(
    metrics_port: u16,
    health_port: u16,
    reader: &str,
    stranger: &str,
    namespace: &str,
    family: &str,
) -> anyhow::Result<()> {
    let (code, body) = https_get(metrics_port, None).await?;
    anyhow::ensure!(code == 401, "no token: {code} {body}");

    let (code, body) = https_get(metrics_port, Some("not-a-token")).await?;
    anyhow::ensure!(code == 401, "a made-up token: {code} {body}");

    let (code, body) = https_get(metrics_port, Some(stranger)).await?;
    let user = format!("system:serviceaccount:{namespace}:stranger");
    anyhow::ensure!(
        code == 403 && body.contains(&user),
        "a token without the role: {code} {body}"
    );

    let (code, body) = https_get(metrics_port, Some(reader)).await?;
    anyhow::ensure!(code == 200, "a metrics reader: {code} {body}");
    anyhow::ensure!(
        body.contains(&format!("# TYPE {family}")) || body.contains(&format!("\n{family}")),
        "a metrics reader got a page without {family}:\n{body}"
    );

    // HTTPS only: a plain-HTTP GET gets no page.
    let plain = local_http::get(metrics_port, "/metrics").await;
    anyhow::ensure!(
        !matches!(plain, Ok((200, _))),
        "/metrics answered 200 over plain HTTP"
    );
    // The probes stay plain HTTP.
    let (code, body) = local_http::get(health_port, "/readyz").await?;
    anyhow::ensure!(code == 200, "/readyz over plain HTTP: {code} {body}");
    Ok(())
}

/// `GET https://127.0.0.1:<port>/metrics` with an optional bearer token, without verifying the
/// certificate (the binary generates it in memory; signatures are still checked).
async fn https_get(port: u16, token: Option<&str>) -> anyhow::Result<(u16, String)> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
    let name = ServerName::try_from("localhost").context("server name")?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .context("TLS handshake with /metrics")?;
    let mut request =
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_owned();
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    tls.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response)
        .await
        .context("reading the answer")?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    Ok((code, body.to_owned()))
}

/// Accepts any certificate chain, but still checks the handshake signatures with it.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
