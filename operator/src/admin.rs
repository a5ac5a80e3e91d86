//! The small HTTP servers both binaries run beside their main work: `/metrics` on
//! `--metrics-bind-address` and `/healthz` + `/readyz` on `--health-probe-bind-address`.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// Whether the binary is ready to serve; `/readyz` answers 200 once [`Readiness::set_ready`] ran.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the binary ready.
    pub fn set_ready(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`Readiness::set_ready`] has run.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What an admin server answers.
#[derive(Clone)]
pub enum Endpoints {
    /// `GET /metrics`: the registry in OpenMetrics text format.
    Metrics(Arc<Registry>),
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

/// Serves `endpoints` on `listener` until `shutdown` is cancelled, then lets open requests finish.
pub fn spawn(
    listener: TcpListener,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "admin server: accept failed");
                    continue;
                }
            };
            let endpoints = endpoints.clone();
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&endpoints, request.method(), request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "admin server: connection ended with an error");
                }
            });
        }
        graceful.shutdown().await;
    })
}

fn respond(endpoints: &Endpoints, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET is served\n");
    }
    match (endpoints, path) {
        (Endpoints::Metrics(registry), "/metrics") => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => Response::builder()
                    .header(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)
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
        (Endpoints::Health(_), "/readyz") => plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
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
mod tests {
    use super::*;

    #[test]
    fn bind_address_parsing_table() {
        let cases: [(&str, Result<BindAddress, ()>); 7] = [
            (
                ":8080",
                Ok(BindAddress::Listen("0.0.0.0:8080".parse().expect("addr"))),
            ),
            (
                "127.0.0.1:9",
                Ok(BindAddress::Listen("127.0.0.1:9".parse().expect("addr"))),
            ),
            (
                "[::1]:8443",
                Ok(BindAddress::Listen("[::1]:8443".parse().expect("addr"))),
            ),
            ("0", Ok(BindAddress::Disabled)),
            (":http", Err(())),
            ("localhost", Err(())),
            (":70000", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(
                input.parse::<BindAddress>().map_err(|_| ()),
                want,
                "{input}"
            );
        }
    }

    #[test]
    fn health_endpoints_follow_readiness() {
        let readiness = Readiness::default();
        let health = Endpoints::Health(readiness.clone());
        assert_eq!(
            respond(&health, &Method::GET, "/healthz").status(),
            StatusCode::OK
        );
        assert_eq!(
            respond(&health, &Method::GET, "/readyz").status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        readiness.set_ready();
        assert_eq!(
            respond(&health, &Method::GET, "/readyz").status(),
            StatusCode::OK
        );
        assert_eq!(
            respond(&health, &Method::GET, "/metrics").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&health, &Method::POST, "/healthz").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn metrics_endpoint_encodes_the_registry() {
        use http_body_util::BodyExt;

        let mut registry = Registry::default();
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("demo_requests", "Demo requests", counter.clone());
        counter.inc();
        let metrics = Endpoints::Metrics(Arc::new(registry));
        let response = respond(&metrics, &Method::GET, "/metrics");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(OPENMETRICS_CONTENT_TYPE.as_bytes())
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(text.contains("demo_requests_total 1\n"), "{text}");
    }
}
