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

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::admission::{PodScalerIndex, Webhook};
use crate::metrics::Metrics;
use crate::tls::{CertDir, CertError, CertResolver, Reloader};

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address of the TLS listener (port 0 picks a free port; see [`Running::local_addr`]).
    pub bind: SocketAddr,
    /// Directory holding `tls.crt` and `tls.key`.
    pub cert_dir: PathBuf,
    /// How often the certificate files are compared with the served ones.
    pub cert_poll_interval: Duration,
    /// Server behaviour and limits.
    pub server: server::Config,
}

/// Why the webhook could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The serving certificate could not be loaded.
    #[error("loading the serving certificate")]
    Certificate(#[from] CertError),
    /// rustls refused the configuration.
    #[error("configuring TLS")]
    Tls(#[from] rustls::Error),
    /// The listener could not be bound.
    #[error("--bind-address/--port: cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
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
    let tls_config = tls::server_config(resolver.clone(), provider, options.server.http2)?;
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
    let app = Arc::new(server::App::new(options.server, index, metrics));
    let server = server::spawn(listener, Arc::new(tls_config), app, shutdown.clone());
    let reloader = reloader.spawn(options.cert_poll_interval, shutdown);
    tracing::info!(
        %local_addr,
        cert_dir = %options.cert_dir.display(),
        http2 = options.server.http2,
        "serving admission webhooks"
    );
    Ok(Running {
        local_addr,
        resolver,
        server,
        reloader,
    })
}
