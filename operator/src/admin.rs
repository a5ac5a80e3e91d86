//! The small HTTP servers both binaries run beside their main work: `/metrics` on
//! `--metrics-bind-address` (HTTPS and authorized with `--metrics-secure`, see
//! [`crate::metrics_auth`]) and `/healthz` + `/readyz` on `--health-probe-bind-address`,
//! always plain HTTP (the kubelet probes it).

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::exposition;
use crate::metrics_auth::{KubeReviewer, MetricsAuth};
use crate::metrics_tls;
use crate::runtime::{self, AcceptBackoff};

/// A `--*-bind-address` value as kubebuilder users write it: `:8080` (every interface),
/// `127.0.0.1:8080`, `[::1]:8080`, or `0` to turn the server off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindAddress {
    /// The server is not started.
    Disabled,
    /// Listen on this address.
    Listen(SocketAddr),
}

impl FromStr for BindAddress {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        if value == "0" {
            return Ok(Self::Disabled);
        }
        if let Some(port) = value.strip_prefix(':') {
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("{value:?}: {port:?} is not a port number"))?;
            return Ok(Self::Listen(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                port,
            )));
        }
        value.parse::<SocketAddr>().map(Self::Listen).map_err(|_| {
            format!("{value:?} is not an address: use \":PORT\", \"HOST:PORT\" or \"0\" to disable")
        })
    }
}

impl std::fmt::Display for BindAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Disabled => f.write_str("0"),
            Self::Listen(addr) => write!(f, "{addr}"),
        }
    }
}

/// Whether the binary is ready to serve: `/readyz` answers 200 while every part is ready.
///
/// A new `Readiness` has one part, `startup`, which [`Readiness::set_ready`] marks ready: a
/// binary with one condition (the webhook: its certificate is loaded) needs nothing else. A
/// binary whose readiness comes and goes adds parts with [`Readiness::part`] (the operator:
/// one per cache, not ready while that cache cannot be trusted).
#[derive(Clone, Debug)]
pub struct Readiness(Arc<Mutex<Vec<ReadinessPart>>>);

impl Default for Readiness {
    fn default() -> Self {
        let startup = ReadinessPart::new(STARTUP);
        Self(Arc::new(Mutex::new(vec![startup])))
    }
}

/// The part every [`Readiness`] starts with.
const STARTUP: &str = "startup";

impl Readiness {
    /// Marks the `startup` part ready.
    pub fn set_ready(&self) {
        for part in self.parts().iter().filter(|part| part.name == STARTUP) {
            part.set(true);
        }
    }

    /// Whether every part is ready.
    pub fn is_ready(&self) -> bool {
        self.parts().iter().all(ReadinessPart::is_ready)
    }

    /// Adds a part named `name`, not ready until its handle says so.
    pub fn part(&self, name: &str) -> ReadinessPart {
        let part = ReadinessPart::new(name);
        self.parts().push(part.clone());
        part
    }

    /// The names of the parts that are not ready, in the order they were added.
    pub fn unready_parts(&self) -> Vec<String> {
        self.parts()
            .iter()
            .filter(|part| !part.is_ready())
            .map(|part| part.name.clone())
            .collect()
    }

    fn parts(&self) -> std::sync::MutexGuard<'_, Vec<ReadinessPart>> {
        // The list is only ever pushed to: a panic elsewhere cannot leave it inconsistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One condition of a [`Readiness`]; clones share it.
#[derive(Clone, Debug)]
pub struct ReadinessPart {
    name: String,
    ready: Arc<AtomicBool>,
}

impl ReadinessPart {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ready: Arc::default(),
        }
    }

    /// Marks this part ready or not.
    pub fn set(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether this part is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// What an admin server answers.
#[derive(Clone)]
pub enum Endpoints {
    /// `GET /metrics`: the registry, in the format the `Accept` header asks for
    /// ([`exposition::Format::negotiate`]).
    Metrics(Arc<Registry>),
    /// `GET /metrics` as [`Endpoints::Metrics`], for callers [`MetricsAuth`] allows: 401
    /// without a valid bearer token, 403 without RBAC's `get` on the `/metrics` URL.
    AuthorizedMetrics(Arc<Registry>, Arc<MetricsAuth>),
    /// `GET /healthz` (always 200 while the process serves) and `GET /readyz`.
    Health(Readiness),
}

/// Binds `address` (or returns `None` when the server is disabled), naming the flag on error.
pub async fn bind(address: BindAddress, flag: &str) -> anyhow::Result<Option<TcpListener>> {
    match address {
        BindAddress::Disabled => Ok(None),
        BindAddress::Listen(addr) => TcpListener::bind(addr)
            .await
            .map(Some)
            .with_context(|| format!("{flag}: cannot listen on {addr}")),
    }
}

/// What `--metrics-secure` needs: where the certificate is (none: generated) and the client
/// the reviews are made with.
#[derive(Clone)]
pub struct SecureMetrics<'a> {
    /// `--metrics-cert-dir`.
    pub cert_dir: Option<&'a std::path::Path>,
    /// The binary's own client: its identity needs `create` on tokenreviews and
    /// subjectaccessreviews.
    pub client: kube::Client,
}

/// Serves `registry` at `/metrics` on `listener`: plain HTTP, or with `secure` HTTPS to
/// authorized callers only. Fails when the certificate cannot be loaded or generated.
pub fn spawn_metrics(
    listener: TcpListener,
    registry: Arc<Registry>,
    secure: Option<SecureMetrics<'_>>,
    shutdown: CancellationToken,
) -> anyhow::Result<JoinHandle<()>> {
    let Some(secure) = secure else {
        return Ok(spawn(listener, Endpoints::Metrics(registry), shutdown));
    };
    let cert = metrics_tls::serving_cert(secure.cert_dir)?;
    let tls = metrics_tls::server_config(cert)?;
    let auth = MetricsAuth::new(KubeReviewer::new(secure.client));
    Ok(spawn_tls(
        listener,
        Arc::new(tls),
        Endpoints::AuthorizedMetrics(registry, Arc::new(auth)),
        shutdown,
    ))
}

/// How long a client may take for its TLS handshake, and for a request's headers. Scrapers and
/// probes send a few hundred bytes; a slow client only holds a connection this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// See [`HANDSHAKE_TIMEOUT`].
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head read: a scrape's headers (a bearer token of a few KiB included)
/// fit many times over.
const MAX_BUF_SIZE: usize = 64 * 1024;

/// Serves `endpoints` over plain HTTP on `listener` until `shutdown` is cancelled, then lets
/// open requests finish.
pub fn spawn(
    listener: TcpListener,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    serve(listener, None, endpoints, shutdown)
}

/// As [`spawn`], over TLS with `tls` (see [`crate::metrics_tls`]).
pub fn spawn_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    serve(listener, Some(TlsAcceptor::from(tls)), endpoints, shutdown)
}

fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut backoff = AcceptBackoff::default();
        while let Some(stream) =
            runtime::accept(&listener, &mut backoff, &shutdown, "admin server").await
        {
            let watcher = graceful.watcher();
            let endpoints = endpoints.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let served = match tls {
                    None => connection(stream, endpoints, watcher).await,
                    Some(acceptor) => match handshake(&acceptor, stream).await {
                        Ok(stream) => connection(stream, endpoints, watcher).await,
                        Err(err) => {
                            tracing::debug!(error = %err, "admin server: TLS handshake failed");
                            return;
                        }
                    },
                };
                if let Err(err) = served {
                    tracing::debug!(error = %err, "admin server: connection ended with an error");
                }
            });
        }
        graceful.shutdown().await;
    })
}

async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"))?
}

/// Serves one HTTP/1 connection with [`handle`] until it closes or shutdown drains it.
async fn connection<S>(
    stream: S,
    endpoints: Endpoints,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), hyper::Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request: Request<Incoming>| {
        let endpoints = endpoints.clone();
        async move { Ok::<_, Infallible>(handle(&endpoints, &request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_BUF_SIZE)
        .serve_connection(TokioIo::new(stream), service);
    watcher.watch(connection).await
}

/// Answers `request`: asks [`MetricsAuth`] first when the endpoint is guarded.
async fn handle<B>(endpoints: &Endpoints, request: &Request<B>) -> Response<Full<Bytes>> {
    let Endpoints::AuthorizedMetrics(_, auth) = endpoints else {
        return respond(endpoints, request);
    };
    let path = request.uri().path();
    if path != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    let decision = auth
        .check(
            request.headers().get(header::AUTHORIZATION),
            request.method(),
            path,
            Instant::now(),
        )
        .await;
    if let crate::metrics_auth::Decision::Failed(reason) = &decision {
        tracing::warn!(%reason, "metrics: the request could not be authorized");
    }
    if decision.status() != StatusCode::OK {
        return plain(decision.status(), &decision.message());
    }
    respond(endpoints, request)
}

/// The answer once any check is passed: [`handle`] guards [`Endpoints::AuthorizedMetrics`]
/// before calling this.
fn respond<B>(endpoints: &Endpoints, request: &Request<B>) -> Response<Full<Bytes>> {
    let method = request.method();
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
    }
    match (endpoints, request.uri().path()) {
        (Endpoints::Metrics(registry) | Endpoints::AuthorizedMetrics(registry, _), "/metrics") => {
            let accept = request
                .headers()
                .get(header::ACCEPT)
                .and_then(|value| value.to_str().ok());
            let format = exposition::Format::negotiate(accept);
            match exposition::encode(registry, format) {
                Ok(body) => Response::builder()
                    .header(header::CONTENT_TYPE, format.content_type())
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "")),
                Err(err) => plain(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("encoding metrics: {err}\n"),
                ),
            }
        }
        (Endpoints::Health(_), "/healthz") => plain(StatusCode::OK, "ok\n"),
        (Endpoints::Health(readiness), "/readyz") if readiness.is_ready() => {
            plain(StatusCode::OK, "ok\n")
        }
        (Endpoints::Health(readiness), "/readyz") => plain(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("not ready: {}\n", readiness.unready_parts().join(", ")),
        ),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests;
