//! `tls.crt` and `tls.key` in the certificate directory: read together, parsed into a key pair
//! rustls can serve, and every failure naming the file.
//!
//! cert-manager writes the certificate into a Secret; the kubelet projects a Secret volume as a
//! timestamped directory, a `..data` symlink to it, and `tls.crt` → `..data/tls.crt` links.
//! Rotation replaces the timestamped directory and renames `..data` atomically, so neither the
//! paths nor their modification times need to change. [`CertDir::read`] therefore returns the
//! *contents* (compared by the reloader), and reads both files through one resolution of
//! `..data` so a swap between the two reads cannot pair an old certificate with a new key.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// File name of the certificate chain (PEM) in the certificate directory.
pub const CERT_FILE: &str = "tls.crt";
/// File name of the private key (PEM: PKCS#8, PKCS#1 or SEC1) in the certificate directory.
pub const KEY_FILE: &str = "tls.key";
/// The symlink a Kubernetes Secret volume swaps atomically on update.
const SECRET_VOLUME_DATA: &str = "..data";

/// Why a certificate could not be loaded. Every variant names the file, so the message says
/// which Secret key to fix.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{} is not valid PEM", .path.display())]
    Pem { path: PathBuf, source: pem::Error },
    #[error("{} holds no PEM \"CERTIFICATE\" block: it must contain the serving certificate, then its chain", .path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key (\"PRIVATE KEY\", \"RSA PRIVATE KEY\" or \"EC PRIVATE KEY\")", .path.display())]
    NoKey { path: PathBuf },
    #[error("{} holds a private key that cannot be used for TLS", .path.display())]
    UnusableKey {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("{} holds a certificate that cannot be parsed", .path.display())]
    BadCertificate {
        path: PathBuf,
        source: rustls::Error,
    },
    #[error("the private key in {} does not belong to the certificate in {}", .key.display(), .cert.display())]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
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
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

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
