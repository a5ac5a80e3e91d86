//! The TLS configuration of the `/metrics` listener with `--metrics-secure`.
//!
//! As controller-runtime's metrics server: `tls.crt` and `tls.key` from `--metrics-cert-dir`
//! when one is given, otherwise a certificate generated in memory at start (a CA and a
//! `localhost` / `127.0.0.1` leaf signed by it, nothing written to disk). Scrapers of the
//! generated certificate cannot verify it (Prometheus: `insecureSkipVerify`); the token check
//! ([`crate::metrics_auth`]) is what keeps the page private. One difference: a cert dir that is
//! given but lacks the files is an error here, where controller-runtime silently falls back
//! to a generated certificate. The files are read once at start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The certificate chain file in `--metrics-cert-dir` (controller-runtime's `CertName`).
pub const CERT_FILE: &str = "tls.crt";
/// The private key file in `--metrics-cert-dir` (controller-runtime's `KeyName`).
pub const KEY_FILE: &str = "tls.key";

/// Why the metrics listener's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricsTlsError {
    /// A file in the cert dir could not be read.
    #[error("--metrics-cert-dir: cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file in the cert dir is not the PEM it should be.
    #[error("--metrics-cert-dir: {} holds no usable PEM {what}", .path.display())]
    Pem {
        path: PathBuf,
        /// `certificate` or `private key`.
        what: &'static str,
        source: rustls::pki_types::pem::Error,
    },
    /// The in-memory certificate could not be generated.
    #[error("generating the metrics serving certificate")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the certificate, the key or the protocol versions.
    #[error("configuring TLS for the metrics listener")]
    Tls(#[from] rustls::Error),
}

/// A certificate chain (leaf first) and its key.
pub struct ServingCert {
    /// Leaf, then the certificates that sign it.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("ServingCert")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

/// The serving certificate: from `cert_dir` when given, generated otherwise.
pub fn serving_cert(cert_dir: Option<&Path>) -> Result<ServingCert, MetricsTlsError> {
    match cert_dir {
        Some(dir) => read_cert_dir(dir),
        None => self_signed(),
    }
}

/// Reads `tls.crt` (the chain) and `tls.key` from `dir`.
pub fn read_cert_dir(dir: &Path) -> Result<ServingCert, MetricsTlsError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read(&path)
            .map(|bytes| (path.clone(), bytes))
            .map_err(|source| MetricsTlsError::Read { path, source })
    };
    let (cert_path, cert_pem) = read(CERT_FILE)?;
    let (key_path, key_pem) = read(KEY_FILE)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|chain| {
            if chain.is_empty() {
                Err(rustls::pki_types::pem::Error::NoItemsFound)
            } else {
                Ok(chain)
            }
        })
        .map_err(|source| MetricsTlsError::Pem {
            path: cert_path,
            what: "certificate",
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| MetricsTlsError::Pem {
        path: key_path,
        what: "private key",
        source,
    })?;
    Ok(ServingCert { chain, key })
}

/// What client-go's `GenerateSelfSignedCertKey("localhost", [127.0.0.1])` makes, which
/// controller-runtime serves when it has no files: a CA and a leaf for `localhost` and
/// `127.0.0.1` signed by it, the chain being leaf then CA. Keys are ECDSA P-256 rather than
/// RSA-2048 (quicker to generate; every TLS client supports them).
pub fn self_signed() -> Result<ServingCert, MetricsTlsError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, format!("localhost-ca@{stamp}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate()?;
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, format!("localhost@{stamp}"));
    leaf.subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok(ServingCert {
        chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
        key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()).into(),
    })
}

/// A TLS 1.2/1.3 server configuration (ring provider) serving `cert`, HTTP/1.1 only:
/// kubebuilder's scaffold turns HTTP/2 off on the metrics server too (the rapid-reset
/// advisories), and scrapers do not need it.
pub fn server_config(cert: ServingCert) -> Result<ServerConfig, MetricsTlsError> {
    let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(cert.chain, cert.key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_certificate_is_served_and_chains_to_its_ca() {
        let cert = self_signed().expect("generated");
        assert_eq!(cert.chain.len(), 2, "leaf then CA");
        assert_ne!(cert.chain[0], cert.chain[1]);
        let config = server_config(cert).expect("rustls accepts the key pair");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        // Two starts serve two different certificates: nothing is shared or stored.
        assert_ne!(
            self_signed().expect("generated").chain[0],
            self_signed().expect("generated").chain[0]
        );
    }

    #[test]
    fn a_cert_dir_is_read_and_its_problems_name_the_file() {
        let dir =
            std::env::temp_dir().join(format!("podscaler-metrics-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch dir");
        let missing = read_cert_dir(&dir).expect_err("no files yet");
        assert!(missing.to_string().contains("tls.crt"), "{missing}");

        let key = KeyPair::generate().expect("key");
        let params = CertificateParams::new(vec!["podscaler".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        std::fs::write(dir.join(CERT_FILE), cert.pem()).expect("write cert");
        std::fs::write(dir.join(KEY_FILE), "not a key\n").expect("write key");
        let bad_key = read_cert_dir(&dir).expect_err("no key");
        assert!(bad_key.to_string().contains("tls.key"), "{bad_key}");

        std::fs::write(dir.join(KEY_FILE), key.serialize_pem()).expect("write key");
        let served = serving_cert(Some(&dir)).expect("read");
        assert_eq!(served.chain, vec![cert.der().clone()]);
        server_config(served).expect("rustls accepts the pair");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
}
