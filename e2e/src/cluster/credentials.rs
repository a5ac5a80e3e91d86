//! The control plane's credentials on disk: the certificates and keys its components are
//! started with, and kubeconfigs (the admin's, a test user's) with a client for them.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use crate::certs::{self, Authority};

/// Where [`write_credentials`] put each file.
pub(crate) struct Credentials {
    pub ca_cert: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// The service-account token signing key pair.
    pub sa_private: PathBuf,
    pub sa_public: PathBuf,
}

/// Issues the API server's serving certificate (for its in-cluster names, the `kubernetes`
/// Service IP and `apiserver_address`), the admin's client certificate and the service-account
/// key pair, and writes them with the CA to `<root>/pki`.
pub(crate) fn write_credentials(
    root: &Path,
    authority: &Authority,
    apiserver_address: IpAddr,
) -> anyhow::Result<Credentials> {
    let pki = root.join("pki");
    std::fs::create_dir_all(&pki).context("creating the pki directory")?;
    let write = |name: &str, contents: &str| -> anyhow::Result<PathBuf> {
        let path = pki.join(name);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let apiserver = authority.serving(
        "kube-apiserver",
        &[
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ],
        &[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), apiserver_address],
    )?;
    let admin = authority.client("e2e-admin", &["system:masters"])?;
    let (sa_private, sa_public) = certs::service_account_key()?;
    Ok(Credentials {
        ca_cert: write("ca.crt", authority.cert_pem())?,
        apiserver_cert: write("apiserver.crt", &apiserver.cert_pem)?,
        apiserver_key: write("apiserver.key", &apiserver.key_pem)?,
        admin_cert: write("admin.crt", &admin.cert_pem)?,
        admin_key: write("admin.key", &admin.key_pem)?,
        sa_private: write("sa.key", &sa_private)?,
        sa_public: write("sa.pub", &sa_public)?,
    })
}

/// Writes a kubeconfig for `server` that trusts `ca` and signs in with a client certificate.
pub(crate) fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> anyhow::Result<()> {
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": ca}}],
        "users": [{"name": "e2e-admin", "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e-admin", "namespace": "default"}}],
        "current-context": "e2e",
    });
    let yaml = serde_saphyr::to_string(&kubeconfig).context("serializing the kubeconfig")?;
    std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))
}

/// Issues user `name` in `groups` a client certificate and writes a kubeconfig for it to
/// `<users_dir>/<name>/kubeconfig`; returns that path.
pub(crate) fn write_user_kubeconfig(
    authority: &Authority,
    users_dir: &Path,
    server: &str,
    name: &str,
    groups: &[&str],
) -> anyhow::Result<PathBuf> {
    let issued = authority.client(name, groups)?;
    let dir = users_dir.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let (ca, cert, key) = (
        dir.join("ca.crt"),
        dir.join("user.crt"),
        dir.join("user.key"),
    );
    std::fs::write(&ca, authority.cert_pem()).context("writing the CA")?;
    std::fs::write(&cert, &issued.cert_pem).context("writing the user certificate")?;
    std::fs::write(&key, &issued.key_pem).context("writing the user key")?;
    let kubeconfig = dir.join("kubeconfig");
    write_kubeconfig(&kubeconfig, server, &ca, &cert, &key)?;
    Ok(kubeconfig)
}

/// A kube client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path) -> anyhow::Result<Client> {
    let parsed = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default())
        .await
        .context("loading the kubeconfig")?;
    Client::try_from(config).context("building a client")
}
