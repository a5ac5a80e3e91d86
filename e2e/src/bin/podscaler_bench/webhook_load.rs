//! The admission webhook under load: keep-alive HTTPS POSTs of realistic AdmissionReviews (a
//! PodScaler CREATE with a full pod template), at a fixed rate and at the most the client can
//! send, with the webhook as its own release process so its CPU time is its own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use e2e::stats::quantile;
use e2e::usage::Usage;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// How requests are sent.
#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// `per_second` requests a second on one connection.
    Fixed { per_second: u32 },
    /// Back to back on `connections` connections, each on a client thread of its own.
    Max { connections: usize },
}

/// One load run's figures.
#[derive(Clone, Debug)]
pub struct LoadResult {
    pub path: &'static str,
    pub pace: Pace,
    pub requests: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// The webhook's CPU time per 10,000 requests.
    pub cpu_per_10k: Duration,
    /// The webhook at the end of the run.
    pub usage: Usage,
}

/// Where the webhook listens and how to trust it.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    pub pid: u32,
    pub tls: Arc<rustls::ClientConfig>,
}

impl Target {
    /// A target at `port` (process `pid`) whose certificate `ca_pem` signed.
    pub fn new(port: u16, pid: u32, ca_pem: &str) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("parsing the CA")?;
        roots.add(ca).context("trusting the CA")?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            port,
            pid,
            tls: Arc::new(config),
        })
    }
}

/// A CREATE review of a PodScaler as the API server sends it, with a template of the size a
/// real workload has (two containers, probes, resources, env).
pub fn review_body() -> Bytes {
    let scaler = json!({
        "apiVersion": "scaling.example.com/v1",
        "kind": "PodScaler",
        "metadata": {
            "name": "web", "namespace": "shop", "uid": "7f0c6a1e-3b9d-4c55-9a59-1f2e3d4c5b6a",
            "labels": {"app.kubernetes.io/name": "web", "app.kubernetes.io/part-of": "shop"},
            "annotations": {"team": "storefront"},
        },
        "spec": {
            "count": 12,
            "selector": {"app": "web"},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "frontend"}},
                "spec": {"containers": [
                    {
                        "name": "web", "image": "registry.example.com/shop/web:1.42.0",
                        "ports": [{"containerPort": 8080, "name": "http"}],
                        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "REGION", "value": "eu-west-1"}],
                        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
                        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
                    },
                    {
                        "name": "proxy", "image": "registry.example.com/mesh/proxy:2.3.1",
                        "args": ["--listen=:15001", "--upstream=127.0.0.1:8080"],
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                    },
                ]},
            },
        },
    });
    let review = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0d6b5c34-2a1f-4e7b-8c9d-0123456789ab",
            "kind": {"group": "scaling.example.com", "version": "v1", "kind": "PodScaler"},
            "resource": {"group": "scaling.example.com", "version": "v1", "resource": "podscalers"},
            "requestKind": {"group": "scaling.example.com", "version": "v1", "kind": "PodScaler"},
            "requestResource": {"group": "scaling.example.com", "version": "v1", "resource": "podscalers"},
            "name": "web",
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:ci:deployer", "groups": ["system:serviceaccounts", "system:authenticated"]},
            "object": scaler,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    });
    Bytes::from(review.to_string())
}

/// Sends reviews to `path` for `duration` at `pace`, on a runtime of its own (one thread per
/// connection) so the benchmark's control-plane work does not share the client's threads.
pub async fn run(
    target: &Target,
    path: &'static str,
    pace: Pace,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let threads = match pace {
        Pace::Fixed { .. } => 1,
        Pace::Max { connections } => connections.max(1),
    };
    let target = target.clone();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
            .context("starting the load client's runtime")?;
        runtime.block_on(load(&target, path, pace, duration))
    })
    .await
    .context("the load client panicked")?
}

async fn load(
    target: &Target,
    path: &'static str,
    pace: Pace,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let body = review_body();
    let (connections, interval) = match pace {
        Pace::Fixed { per_second } => (
            1,
            Some(Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)))),
        ),
        Pace::Max { connections } => (connections.max(1), None),
    };
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections {
        senders.push(connect(target).await?);
    }
    let before = Usage::read(target.pid)?;
    let started = Instant::now();
    let until = started + duration;
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|sender| tokio::spawn(send_until(sender, path, body.clone(), until, interval)))
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("a client task panicked")??);
    }
    let elapsed = started.elapsed();
    let after = Usage::read(target.pid)?;
    latencies.sort_unstable();
    let requests = latencies.len();
    anyhow::ensure!(requests > 0, "no request was answered");
    let cpu = after.cpu_since(&before);
    Ok(LoadResult {
        path,
        pace,
        requests,
        per_second: requests as f64 / elapsed.as_secs_f64(),
        p50: quantile(&latencies, 0.5).unwrap_or_default(),
        p99: quantile(&latencies, 0.99).unwrap_or_default(),
        cpu_per_10k: cpu.mul_f64(10_000.0 / requests as f64),
        usage: after,
    })
}

/// One keep-alive HTTP/1.1 connection over TLS.
async fn connect(target: &Target) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(("127.0.0.1", target.port))
        .await
        .context("connecting to the webhook")?;
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    let name = ServerName::try_from("localhost").context("server name")?;
    let tls = TlsConnector::from(Arc::clone(&target.tls))
        .connect(name, tcp)
        .await
        .context("TLS handshake with the webhook")?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends requests until `until` (every `interval`, or back to back); returns each latency.
/// A refused request (not 200) fails the run: the figures would not be of admissions.
async fn send_until(
    mut sender: SendRequest<Full<Bytes>>,
    path: &'static str,
    body: Bytes,
    until: Instant,
    interval: Option<Duration>,
) -> anyhow::Result<Vec<Duration>> {
    let mut ticker = interval.map(|period| {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticker
    });
    let mut latencies = Vec::new();
    while Instant::now() < until {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        let request = http::Request::post(path)
            .header(http::header::HOST, "localhost")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
            .context("building a request")?;
        let sent = Instant::now();
        sender.ready().await.context("the connection closed")?;
        let response = sender
            .send_request(request)
            .await
            .context("sending a review")?;
        let status = response.status();
        let answer = response
            .into_body()
            .collect()
            .await
            .context("reading a response")?
            .to_bytes();
        latencies.push(sent.elapsed());
        anyhow::ensure!(
            status == http::StatusCode::OK,
            "the webhook answered {status}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    Ok(latencies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_review_is_a_create_of_a_podscaler_with_a_template() {
        let review: serde_json::Value =
            serde_json::from_slice(&review_body()).expect("the body is JSON");
        assert_eq!(review["request"]["operation"], "CREATE");
        let scaler: podscaler::api::PodScaler =
            serde_json::from_value(review["request"]["object"].clone())
                .expect("the object is a PodScaler");
        assert_eq!(scaler.spec.count, 12);
        let template = scaler.spec.template.expect("a template");
        assert_eq!(template.spec.expect("a pod spec").containers.len(), 2);
    }
}
