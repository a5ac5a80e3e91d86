//! The serving certificate: read from `--cert-dir` ([`CertDir`]), served by a resolver whose key
//! pair is swapped when cert-manager rotates the files ([`CertResolver`], [`Reloader`]), and the
//! rustls configuration around it ([`server_config`]).

mod files;
mod reload;
mod resolver;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;

pub use self::files::{CERT_FILE, CertDir, CertError, KEY_FILE, PemFiles};
pub use self::reload::{Poll, Reloader};
pub use self::resolver::{CertResolver, SessionCache};

/// The crypto provider of every TLS configuration here: ring, as kube's client uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS 1.2 + 1.3 server configuration serving `resolver`'s certificate and keeping its
/// sessions. ALPN offers `http/1.1`, and `h2` only when `http2` is set.
pub fn server_config(
    resolver: Arc<CertResolver>,
    provider: Arc<CryptoProvider>,
    http2: bool,
) -> Result<ServerConfig, rustls::Error> {
    let sessions = resolver.sessions();
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.session_storage = sessions;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}
