//! Shared by the integration tests: certificates, a Secret-volume-style certificate directory,
//! the server started in-process with an injected PodScaler store, and a TLS client.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::runtime::reflector::{Store, store::Writer};
use kube::runtime::watcher::Event;
use podscaler::api::{PodScaler, PodScalerSpec};
use podscaler_webhook::{Options, Running, cache};
use prometheus_client::registry::Registry;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

pub const MUTATE: &str = "/mutate-scaling-example-com-v1-podscaler";
pub const VALIDATE: &str = "/validate-scaling-example-com-v1-podscaler";

/// Upper bound for anything the tests wait for; conditions are polled, never slept on.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if condition().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "podscaler-webhook-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate authority issuing serving certificates for 127.0.0.1 / localhost, as
/// cert-manager's CA issuer does.
pub struct Pki {
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    serial: AtomicU64,
}

/// One serving certificate.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Pki {
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "podscaler-webhook test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA cert");
        Self {
            ca_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
            serial: AtomicU64::new(1),
        }
    }

    /// A new serving certificate with its own key.
    pub fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("leaf params");
        let serial = self.serial.fetch_add(1, Ordering::Relaxed);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("podscaler-webhook {serial}"));
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial.to_be_bytes()));
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    /// A client configuration trusting this CA.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        self.client_config_with_versions(alpn, rustls::DEFAULT_VERSIONS)
    }

    /// A client configuration trusting this CA, speaking only `versions`.
    pub fn client_config_with_versions(
        &self,
        alpn: &[&[u8]],
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("CA is a valid root");
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// A certificate directory laid out as the kubelet projects a Secret volume:
/// `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`, updated by writing a new
/// timestamped directory and renaming a fresh `..data` symlink over the old one.
pub struct SecretVolume {
    dir: TempDir,
    version: u64,
}

impl SecretVolume {
    pub fn new(name: &str, leaf: &Leaf) -> Self {
        let mut volume = Self {
            dir: TempDir::new(name),
            version: 0,
        };
        volume.project(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes());
        for file in ["tls.crt", "tls.key"] {
            std::os::unix::fs::symlink(Path::new("..data").join(file), volume.path().join(file))
                .expect("file symlink");
        }
        volume
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Atomically switches the volume to `leaf`.
    pub fn rotate(&mut self, leaf: &Leaf) {
        self.project(leaf.cert_pem.as_bytes(), leaf.key_pem.as_bytes());
    }

    /// Atomically switches the volume to arbitrary contents.
    pub fn project(&mut self, cert: &[u8], key: &[u8]) {
        self.version += 1;
        let old = std::fs::read_link(self.path().join("..data")).ok();
        let name = format!("..2026_11_22_12_00_00.{:09}", self.version);
        let dir = self.path().join(&name);
        std::fs::create_dir(&dir).expect("version dir");
        std::fs::write(dir.join("tls.crt"), cert).expect("write cert");
        std::fs::write(dir.join("tls.key"), key).expect("write key");
        let tmp = self.path().join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&name, &tmp).expect("..data_tmp symlink");
        std::fs::rename(&tmp, self.path().join("..data")).expect("atomic ..data swap");
        if let Some(old) = old {
            std::fs::remove_dir_all(self.path().join(old)).expect("remove old version");
        }
    }
}

/// A store already synced with `scalers`, and its writer (to add more).
pub fn synced_store(scalers: &[PodScaler]) -> (Store<PodScaler>, Writer<PodScaler>) {
    let (store, mut writer) = cache::store();
    writer.apply_watcher_event(&Event::Init);
    for scaler in scalers {
        writer.apply_watcher_event(&Event::InitApply(scaler.clone()));
    }
    writer.apply_watcher_event(&Event::InitDone);
    (store, writer)
}

pub fn podscaler(namespace: &str, name: &str, selector: &[(&str, &str)]) -> PodScaler {
    let mut scaler = PodScaler::new(
        name,
        PodScalerSpec {
            count: 1,
            selector: selector
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            template: None,
        },
    );
    scaler.metadata.namespace = Some(namespace.to_owned());
    scaler
}

/// Test-friendly limits: short timeouts so "nothing hangs" is quick to prove.
pub fn quick_options() -> Options {
    Options {
        tls_handshake_timeout: Duration::from_millis(500),
        read_header_timeout: Duration::from_millis(500),
        read_body_timeout: Duration::from_millis(500),
        max_request_bytes: 64 * 1024,
        shutdown_timeout: Duration::from_secs(10),
        ..Options::default()
    }
}

/// A webhook server running in this process on 127.0.0.1.
pub struct Server {
    pub running: Option<Running>,
    pub addr: SocketAddr,
    pub registry: Registry,
    pub shutdown: CancellationToken,
}

impl Server {
    /// Serves with `options`, except where to listen and the certificate: 127.0.0.1 on a free
    /// port, `cert_dir`, looked at every 25 ms.
    pub async fn start(cert_dir: &Path, store: Store<PodScaler>, options: Options) -> Self {
        let mut registry = Registry::default();
        let shutdown = CancellationToken::new();
        let options = Options {
            bind: "127.0.0.1:0".parse().expect("addr"),
            cert_dir: cert_dir.to_owned(),
            cert_poll_interval: Duration::from_millis(25),
            ..options
        };
        let running =
            podscaler_webhook::start(options, Arc::new(store), &mut registry, shutdown.clone())
                .await
                .expect("server starts");
        let addr = running.local_addr();
        Self {
            running: Some(running),
            addr,
            registry,
            shutdown,
        }
    }

    /// The current value of a sample in the metrics exposition, e.g.
    /// `controller_runtime_webhook_requests_total{webhook="/x",code="200"}`.
    pub fn metric(&self, sample: &str) -> f64 {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("encode");
        text.lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .and_then(|value| value.split(' ').next())
                    .and_then(|value| value.parse().ok())
            })
            .unwrap_or(0.0)
    }

    pub fn requests(&self, webhook: &str, code: u16) -> f64 {
        self.metric(&format!(
            "controller_runtime_webhook_requests_total{{webhook=\"{webhook}\",code=\"{code}\"}}"
        ))
    }

    pub fn connection_errors(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "podscaler_webhook_connection_errors_total{{reason=\"{reason}\"}}"
        ))
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            tokio::time::timeout(PATIENCE, running.stopped())
                .await
                .expect("server stops in time");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A TLS connection to the server. The socket has `TCP_NODELAY`, as the API server's Go client
/// sets it (without it, each HTTP/2 request waits out a delayed ACK).
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from("localhost").expect("server name");
    TlsConnector::from(config).connect(name, tcp).await
}

/// The certificate the server presented on `stream`.
pub fn peer_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("server presented a certificate")
        .clone()
        .into_owned()
}

/// An HTTP/1.1 (or HTTP/2) client connection.
pub enum Client {
    Http1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Http2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// A response, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

impl Client {
    /// Connects and performs the HTTP handshake the negotiated ALPN protocol asks for.
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> std::io::Result<(Self, CertificateDer<'static>)> {
        let stream = connect(addr, config).await?;
        let certificate = peer_certificate(&stream);
        Ok((Self::over(stream).await?, certificate))
    }

    /// Performs, over an established TLS connection, the HTTP handshake its ALPN protocol asks
    /// for.
    pub async fn over(stream: TlsStream<TcpStream>) -> std::io::Result<Self> {
        let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
        let io = TokioIo::new(stream);
        Ok(if h2 {
            let (sender, connection) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                    .await
                    .map_err(std::io::Error::other)?;
            tokio::spawn(connection);
            Self::Http2(sender)
        } else {
            let (sender, connection) = hyper::client::conn::http1::handshake(io)
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(connection);
            Self::Http1(sender)
        })
    }

    pub fn is_http2(&self) -> bool {
        matches!(self, Self::Http2(_))
    }

    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Reply, hyper::Error> {
        let response = match self {
            Self::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Self::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let (parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> Result<Reply, hyper::Error> {
        self.send(post(
            path,
            "application/json",
            serde_json::to_vec(body).expect("json"),
        ))
        .await
    }
}

/// A POST request with the given content type and body.
pub fn post(path: &str, content_type: &str, body: Vec<u8>) -> Request<Full<Bytes>> {
    let mut builder = Request::post(path).header("host", "localhost");
    if !content_type.is_empty() {
        builder = builder.header("content-type", content_type);
    }
    builder.body(Full::new(Bytes::from(body))).expect("request")
}

/// Writes `bytes` over TLS and reads until the server closes the connection (or
/// [`PATIENCE`] passes, which fails the test): proves the server ends the exchange itself.
pub async fn raw_exchange(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    bytes: &[u8],
) -> String {
    let mut stream = connect(addr, config).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream.flush().await.expect("flush");
    let mut out = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&out).into_owned()
}

pub fn scaler_json(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "scaling.example.com/v1",
        "kind": "PodScaler",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    })
}

pub fn review(uid: &str, operation: &str, object: Option<Value>, old: Option<Value>) -> Value {
    let name = object
        .as_ref()
        .or(old.as_ref())
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or("example")
        .to_owned();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "scaling.example.com", "version": "v1", "kind": "PodScaler"},
            "resource": {"group": "scaling.example.com", "version": "v1", "resource": "podscalers"},
            "name": name,
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin"},
            "object": object,
            "oldObject": old,
            "dryRun": false,
        }
    })
}

/// A CREATE review of the seed sample, with `uid`.
pub fn sample_review(uid: &str) -> Value {
    review(
        uid,
        "CREATE",
        Some(scaler_json(
            "example-podscaler",
            json!({"count": 4, "selector": {"app": "nginx"}}),
        )),
        None,
    )
}
