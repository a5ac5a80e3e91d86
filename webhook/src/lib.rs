//! The PodScaler admission webhook: defaulting and validation of `scaling.example.com/v1`
//! PodScalers over TLS, with the serving certificate reloaded when cert-manager rotates it.
//!
//! The binary (`src/main.rs`) only parses flags and wires these modules together; tests start
//! the same server with [`start`] and an injected PodScaler store (any [`PodScalerIndex`], such
//! as a `kube::runtime::reflector::Store<PodScaler>` filled by hand).

pub mod admission;
pub mod cache;
pub mod cli;
pub mod metrics;
pub mod server;
pub mod tls;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use podscaler::validation::DEFAULT_MAX_COUNT;

pub use crate::admission::{PodScalerIndex, Webhook};
use crate::metrics::Metrics;
use crate::tls::{CertDir, CertError, CertResolver, Reloader};

/// Every knob of the webhook, one field per flag (see `cli.rs` for what each flag means); the
/// defaults are the flags' defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Port 0 picks a free port; see [`Running::local_addr`].
    pub bind: SocketAddr,
    /// Holds `tls.crt` and `tls.key`.
    pub cert_dir: PathBuf,
    pub cert_poll_interval: Duration,
    /// Offer `h2` in ALPN and serve HTTP/2 when the client picks it.
    pub http2: bool,
    /// How often an idle HTTP/2 connection is pinged.
    pub http2_keep_alive_interval: Duration,
    /// How long a ping may go unanswered before the HTTP/2 connection is closed.
    pub http2_keep_alive_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Counted from when the server starts waiting for the headers, so also the idle limit of a
    /// kept-alive HTTP/1.1 connection.
    pub read_header_timeout: Duration,
    pub read_body_timeout: Duration,
    pub max_request_bytes: usize,
    /// How long shutdown waits for in-flight requests before closing their connections.
    pub shutdown_timeout: Duration,
    /// The largest `spec.count` admitted, on a PodScaler or through its scale subresource.
    pub max_count: i32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bind: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 9443),
            cert_dir: PathBuf::from("/tmp/k8s-webhook-server/serving-certs"),
            cert_poll_interval: Duration::from_secs(10),
            http2: false,
            http2_keep_alive_interval: Duration::from_secs(30),
            http2_keep_alive_timeout: Duration::from_secs(10),
            tls_handshake_timeout: Duration::from_secs(10),
            read_header_timeout: Duration::from_secs(30),
            read_body_timeout: Duration::from_secs(10),
            max_request_bytes: server::DEFAULT_MAX_REQUEST_BYTES,
            shutdown_timeout: Duration::from_secs(25),
            max_count: DEFAULT_MAX_COUNT,
        }
    }
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("loading the serving certificate")]
    Certificate(#[from] CertError),
    #[error("configuring TLS")]
    Tls(#[from] rustls::Error),
    #[error("--bind-address/--port: cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started webhook server.
#[derive(Debug)]
pub struct Running {
    local_addr: SocketAddr,
    resolver: Arc<CertResolver>,
    server: JoinHandle<()>,
    reloader: JoinHandle<()>,
}

impl Running {
    /// The address the TLS listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The certificate resolver (what new handshakes are served).
    pub fn resolver(&self) -> &Arc<CertResolver> {
        &self.resolver
    }

    /// Waits until the server has stopped after its shutdown token was cancelled: the
    /// listener is closed first, then in-flight requests finish.
    pub async fn stopped(self) {
        if let Err(error) = self.server.await {
            tracing::error!(%error, "webhook server task failed");
        }
        if let Err(error) = self.reloader.await {
            tracing::error!(%error, "certificate reload task failed");
        }
    }
}

/// Loads the certificate, binds the listener and starts serving and reloading until
/// `shutdown`. When this returns `Ok`, the certificate is loaded and the listener is up.
/// Metrics are registered in `registry`.
pub async fn start(
    options: Options,
    index: Arc<dyn PodScalerIndex>,
    registry: &mut Registry,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let metrics = Metrics::register(registry, &Webhook::ALL.map(Webhook::path));
    let provider = tls::provider();
    let reloader = Reloader::load(CertDir::new(&options.cert_dir), provider.clone())?
        .with_metrics(metrics.clone());
    let resolver = reloader.resolver();
    let tls_config = tls::server_config(resolver.clone(), provider, options.http2)?;
    let listener = TcpListener::bind(options.bind)
        .await
        .map_err(|source| StartError::Bind {
            addr: options.bind,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: options.bind,
        source,
    })?;
    let app = Arc::new(server::App::new(options.clone(), index, metrics));
    let server = server::spawn(listener, Arc::new(tls_config), app, shutdown.clone());
    let reloader = reloader.spawn(options.cert_poll_interval, shutdown);
    tracing::info!(
        %local_addr,
        cert_dir = %options.cert_dir.display(),
        http2 = options.http2,
        "serving admission webhooks"
    );
    Ok(Running {
        local_addr,
        resolver,
        server,
        reloader,
    })
}
