//! The serving certificate: `tls.crt` and `tls.key` read from the certificate directory, served
//! through a [`ResolvesServerCert`] whose key pair is swapped when the files change.
//!
//! cert-manager writes the certificate into a Secret; the kubelet projects a Secret volume as a
//! timestamped directory, a `..data` symlink to it, and `tls.crt` → `..data/tls.crt` links.
//! Rotation replaces the timestamped directory and renames `..data` atomically, so neither the
//! paths nor their modification times need to change. The reloader therefore compares file
//! *contents*, and reads both files through one resolution of `..data` so a swap between the
//! two reads cannot pair an old certificate with a new key.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, StoresServerSessions,
};
use rustls::sign::CertifiedKey;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use podscaler::runtime::error_chain;

use crate::metrics::Metrics;

/// File name of the certificate chain (PEM) in the certificate directory.
pub const CERT_FILE: &str = "tls.crt";
/// File name of the private key (PEM: PKCS#8, PKCS#1 or SEC1) in the certificate directory.
pub const KEY_FILE: &str = "tls.key";
/// The symlink a Kubernetes Secret volume swaps atomically on update.
const SECRET_VOLUME_DATA: &str = "..data";

/// Why a certificate could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// The file could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not valid PEM.
    #[error("{} is not valid PEM", .path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// The PEM error.
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{} holds no PEM \"CERTIFICATE\" block: it must contain the serving certificate, then its chain", .path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key.
    #[error("{} holds no PEM private key (\"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")", .path.display())]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not usable for TLS.
    #[error("{} holds a private key that cannot be used for TLS", .path.display())]
    UnusableKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The certificate cannot be parsed.
    #[error("{} holds a certificate that cannot be parsed", .path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls::Error,
    },
    /// The key does not belong to the certificate.
    #[error("the private key in {} does not belong to the certificate in {}", .key.display(), .cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why.
        source: rustls::Error,
    },
}

/// The certificate directory (`--cert-dir`).
#[derive(Clone, Debug)]
pub struct CertDir {
    dir: PathBuf,
}

/// The raw contents of `tls.crt` and `tls.key` at one moment.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl fmt::Debug for PemFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("PemFiles")
            .field("cert_bytes", &self.cert.len())
            .field("key_bytes", &self.key.len())
            .finish()
    }
}

impl CertDir {
    /// The directory holding `tls.crt` and `tls.key`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/tls.crt`.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// `<dir>/tls.key`.
    pub fn key_path(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// Reads both files. In a Secret volume both are read from the directory `..data` points
    /// to at this moment, so they always come from the same version of the Secret.
    pub fn read(&self) -> Result<PemFiles, CertError> {
        let base = std::fs::canonicalize(self.dir.join(SECRET_VOLUME_DATA))
            .ok()
            .filter(|resolved| resolved.is_dir())
            .unwrap_or_else(|| self.dir.clone());
        let read = |name: &str| {
            std::fs::read(base.join(name)).map_err(|source| CertError::Read {
                path: self.dir.join(name),
                source,
            })
        };
        Ok(PemFiles {
            cert: read(CERT_FILE)?,
            key: read(KEY_FILE)?,
        })
    }

    /// Parses `files` into a key pair rustls can serve, checking that the key belongs to the
    /// certificate.
    pub fn parse(
        &self,
        files: &PemFiles,
        provider: &CryptoProvider,
    ) -> Result<CertifiedKey, CertError> {
        let cert_path = self.cert_path();
        let key_path = self.key_path();
        let chain = CertificateDer::pem_slice_iter(&files.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|source| CertError::Pem {
                path: cert_path.clone(),
                source,
            })?;
        if chain.is_empty() {
            return Err(CertError::NoCertificate { path: cert_path });
        }
        let key = PrivateKeyDer::from_pem_slice(&files.key).map_err(|source| match source {
            pem::Error::NoItemsFound => CertError::NoKey {
                path: key_path.clone(),
            },
            source => CertError::Pem {
                path: key_path.clone(),
                source,
            },
        })?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|source| CertError::UnusableKey {
                path: key_path.clone(),
                source,
            })?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
                Ok(certified)
            }
            Err(source @ rustls::Error::InconsistentKeys(_)) => Err(CertError::Mismatch {
                cert: cert_path,
                key: key_path,
                source,
            }),
            Err(source) => Err(CertError::BadCertificate {
                path: cert_path,
                source,
            }),
        }
    }
}

/// Serves whichever key pair is current; [`Reloader`] replaces it. Keeps the TLS sessions made
/// with it, for resumption, and forgets them when the key pair is replaced.
#[derive(Debug)]
pub struct CertResolver {
    current: RwLock<Arc<CertifiedKey>>,
    sessions: Arc<SessionCache>,
}

impl CertResolver {
    /// A resolver serving `key`.
    pub fn new(key: CertifiedKey) -> Self {
        Self {
            current: RwLock::new(Arc::new(key)),
            sessions: Arc::new(SessionCache::new(SESSION_CACHE_SIZE)),
        }
    }

    /// The key pair new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Where the server keeps the sessions clients may resume.
    pub fn sessions(&self) -> Arc<SessionCache> {
        self.sessions.clone()
    }

    fn replace(&self, key: CertifiedKey) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        self.sessions.clear();
    }
}

/// Sessions kept for resumption; rustls' default size.
const SESSION_CACHE_SIZE: usize = 256;

/// The server's TLS session cache, emptied when the certificate is replaced: a resumed session
/// skips the certificate, so a client resuming one made before a rotation would go on trusting
/// the previous certificate. After a rotation, its resumption attempt falls back to a full
/// handshake with the new one. (Handshakes still in flight at the swap may store a few sessions
/// of the previous certificate: two TLS 1.3 tickets, or one TLS 1.2 session, each.)
#[derive(Debug)]
pub struct SessionCache {
    size: usize,
    sessions: RwLock<Arc<ServerSessionMemoryCache>>,
}

impl SessionCache {
    /// An empty cache of at most `size` sessions.
    pub fn new(size: usize) -> Self {
        Self {
            size,
            sessions: RwLock::new(ServerSessionMemoryCache::new(size)),
        }
    }

    /// Forgets every session.
    pub fn clear(&self) {
        *self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner) = ServerSessionMemoryCache::new(self.size);
    }

    fn sessions(&self) -> Arc<ServerSessionMemoryCache> {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl StoresServerSessions for SessionCache {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.sessions().put(key, value)
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sessions().get(key)
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.sessions().take(key)
    }

    fn can_cache(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What one look at the files found.
#[derive(Debug)]
pub enum Poll {
    /// Same contents as last time.
    Unchanged,
    /// New contents, now served.
    Reloaded,
    /// The files could not be read or served at this look; looked at again before reporting,
    /// since a Secret volume caught mid-swap looks like this for a moment.
    Unsettled,
    /// New contents that cannot be served, at two looks in a row; the previous key pair stays.
    Failed(CertError),
}

/// Watches the certificate directory and swaps new key pairs into its [`CertResolver`].
#[derive(Debug)]
pub struct Reloader {
    dir: CertDir,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    /// The contents last looked at, served or not: a bad file is reported once, not per poll.
    seen: PemFiles,
    /// The previous look failed: a failure now is reported, not retried.
    unsettled: bool,
    /// `seen` is what is served; false once files that cannot be served were reported, so
    /// looking at them again counts as a read error again (as controller-runtime's
    /// certwatcher counts each failed read).
    serving_seen: bool,
    metrics: Option<Metrics>,
}

impl Reloader {
    /// Loads the certificate at start. Any error is fatal to the caller and names the file.
    pub fn load(dir: CertDir, provider: Arc<CryptoProvider>) -> Result<Self, CertError> {
        let files = dir.read()?;
        let key = dir.parse(&files, &provider)?;
        Ok(Self {
            dir,
            provider,
            resolver: Arc::new(CertResolver::new(key)),
            seen: files,
            unsettled: false,
            serving_seen: true,
            metrics: None,
        })
    }

    /// Counts reloads and certificate reads in `metrics`, starting with the read that loaded
    /// the certificate (a `Reloader` exists only after one succeeded).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        metrics.observe_certificate_read(true);
        self.metrics = Some(metrics);
        self
    }

    /// The resolver to hand to rustls.
    pub fn resolver(&self) -> Arc<CertResolver> {
        self.resolver.clone()
    }

    /// Looks at the files once (blocking I/O: two small reads).
    ///
    /// The kubelet updates a Secret volume by writing a new directory, re-pointing `..data`
    /// and removing the old directory, so a look can catch the certificate of one generation
    /// with the key of the next, or a file that was just removed. A failure is therefore only
    /// reported when the next look fails too. Every look is one certificate read in the
    /// metrics, an error unless it found files that can be served.
    pub fn poll(&mut self) -> Poll {
        let outcome = self.look();
        if let Some(metrics) = &self.metrics {
            let served = match outcome {
                Poll::Unchanged => self.serving_seen,
                Poll::Reloaded => true,
                Poll::Unsettled | Poll::Failed(_) => false,
            };
            metrics.observe_certificate_read(served);
        }
        outcome
    }

    fn look(&mut self) -> Poll {
        let failure = match self.dir.read() {
            Err(error) => error,
            Ok(files) if files == self.seen => {
                self.unsettled = false;
                return Poll::Unchanged;
            }
            Ok(files) => match self.dir.parse(&files, &self.provider) {
                Ok(key) => {
                    self.resolver.replace(key);
                    self.seen = files;
                    self.serving_seen = true;
                    self.unsettled = false;
                    return Poll::Reloaded;
                }
                Err(error) if self.unsettled => {
                    // Remembered as seen: reported once, not at every poll.
                    self.seen = files;
                    self.serving_seen = false;
                    self.unsettled = false;
                    return Poll::Failed(error);
                }
                Err(error) => error,
            },
        };
        if self.unsettled {
            Poll::Failed(failure)
        } else {
            self.unsettled = true;
            Poll::Unsettled
        }
    }

    /// Polls every `interval` until `shutdown`, logging each change.
    pub fn spawn(mut self, interval: Duration, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut last_error: Option<String> = None;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                let outcome = match tokio::task::spawn_blocking(move || {
                    let outcome = self.poll();
                    (self, outcome)
                })
                .await
                {
                    Ok((reloader, outcome)) => {
                        self = reloader;
                        outcome
                    }
                    Err(error) => {
                        tracing::error!(%error, "certificate reload task failed; reloading stops");
                        return;
                    }
                };
                match outcome {
                    Poll::Unchanged => last_error = None,
                    Poll::Unsettled => {
                        tracing::debug!(
                            "certificate files unsettled; looking again at the next poll"
                        );
                    }
                    Poll::Reloaded => {
                        last_error = None;
                        tracing::info!(dir = %self.dir.path().display(), "serving certificate reloaded");
                        if let Some(metrics) = &self.metrics {
                            metrics.observe_certificate_reload(true);
                        }
                    }
                    Poll::Failed(error) => {
                        let message = error_chain(&error);
                        if last_error.as_deref() != Some(message.as_str()) {
                            tracing::error!(
                                error = %message,
                                "serving certificate not reloaded; still serving the previous one"
                            );
                            if let Some(metrics) = &self.metrics {
                                metrics.observe_certificate_reload(false);
                            }
                            last_error = Some(message);
                        }
                    }
                }
            }
        })
    }
}

/// The crypto provider used everywhere: ring.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearing_the_session_cache_forgets_every_session() {
        let cache = SessionCache::new(4);
        assert!(cache.put(b"one".to_vec(), b"session one".to_vec()));
        assert!(cache.put(b"two".to_vec(), b"session two".to_vec()));
        assert_eq!(cache.get(b"one"), Some(b"session one".to_vec()));
        cache.clear();
        assert_eq!(cache.get(b"one"), None);
        assert_eq!(cache.take(b"two"), None);
        // Still a working cache afterwards.
        assert!(cache.put(b"three".to_vec(), b"session three".to_vec()));
        assert_eq!(cache.take(b"three"), Some(b"session three".to_vec()));
        assert_eq!(cache.get(b"three"), None, "taken");
    }
}
