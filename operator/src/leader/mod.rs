//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one reconciles (`--leader-elect`).
//!
//! This is client-go's algorithm (`tools/leaderelection`), reimplemented rather than taken from
//! a crate: `kube-lease-manager`, the only crate built on kube 5, has no renew deadline. When its
//! renewals fail (the API server unreachable from the leader) it keeps reporting leadership
//! while its lease runs out and another replica takes over, so two replicas would act at once.
//! Here:
//!
//! - a candidate reads the Lease and decides with [`decide::decide`]: a lease held by another
//!   is valid until `leaseDurationSeconds` after the candidate last saw it *change*, by its own
//!   monotonic clock (no clock-skew dependence); a free or run-out lease is taken with a write
//!   carrying the read's resourceVersion, so of two candidates only one wins;
//! - the leader renews every retry period and stops (the process exits with status 1) when no
//!   renewal succeeded within the renew deadline after the last successful one was *sent*,
//!   which is before any candidate can see the lease run out (fencing: renew deadline < lease
//!   duration);
//! - only the leader runs the controller, started after the lease is won, so its caches begin
//!   with a fresh list that includes every pod the previous leader created, and its
//!   expectations begin empty in a fresh process;
//! - on SIGTERM the controller stops first (in-flight reconciles finish), then the lease is
//!   released (holder "", duration 1 s, as `ReleaseOnCancel`), so a standby takes over at its
//!   next attempt rather than after the lease duration.

pub mod decide;
pub mod elector;
pub mod metrics;

use std::future::Future;
use std::path::Path;

use tokio_util::sync::CancellationToken;

pub use decide::Timing;
pub use elector::{ElectionConfig, ElectionError, Elector};
pub use metrics::MasterStatus;

/// Where a pod's ServiceAccount namespace is mounted.
pub const IN_CLUSTER_NAMESPACE_FILE: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// Runs `work` once this process holds the lease, renewing it meanwhile.
///
/// - `Ok(None)`: `shutdown` came before the lease was won; `work` never ran.
/// - `Ok(Some(output))`: `work` finished (it watches `shutdown` itself); the lease was then
///   released.
/// - `Err`: the lease was lost; `work` was dropped at once, mid-way if need be, since another
///   replica may act from the lease's expiry on. The caller should exit, as controller-runtime
///   does: a restarted process stands by with fresh state.
pub async fn lead<Fut: Future>(
    elector: &mut Elector,
    shutdown: &CancellationToken,
    work: impl FnOnce() -> Fut,
) -> Result<Option<Fut::Output>, ElectionError> {
    if !elector.acquire(shutdown).await? {
        return Ok(None);
    }
    let outcome = {
        let work = std::pin::pin!(work());
        tokio::select! {
            output = work => Ok(output),
            lost = elector.hold() => Err(lost),
        }
    };
    match outcome {
        Ok(output) => {
            elector.release().await;
            Ok(Some(output))
        }
        Err(lost) => Err(lost),
    }
}

/// Why the lease's namespace is unknown.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "--leader-election-namespace is required outside a cluster \
     (no ServiceAccount namespace at {IN_CLUSTER_NAMESPACE_FILE})"
)]
pub struct NoNamespace;

/// The lease's namespace: the flag's value, else the pod's own namespace (as controller-runtime
/// does); outside a cluster the flag is required.
pub fn namespace(flag: Option<&str>, in_cluster: Option<&str>) -> Result<String, NoNamespace> {
    [flag, in_cluster]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|namespace| !namespace.is_empty())
        .map(str::to_owned)
        .ok_or(NoNamespace)
}

/// The namespace mounted into a pod, if this runs in one.
pub fn in_cluster_namespace() -> Option<String> {
    std::fs::read_to_string(Path::new(IN_CLUSTER_NAMESPACE_FILE)).ok()
}

/// A unique identity for this process, `<hostname>_<random uuid>` as controller-runtime's:
/// the hostname (the pod's name in a cluster) tells people which replica leads, the uuid keeps
/// two processes on one host (or a restarted one) apart.
pub fn identity() -> std::io::Result<String> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    let uuid = procfs::sys::kernel::random::uuid().map_err(std::io::Error::other)?;
    Ok(format!("{}_{}", hostname.trim(), uuid.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_table() {
        let cases = [
            (Some("ops"), Some("podscaler\n"), Some("ops")),
            (None, Some("podscaler\n"), Some("podscaler")),
            (Some(""), Some("podscaler"), Some("podscaler")),
            (None, None, None),
            (Some(" "), Some(""), None),
        ];
        for (flag, file, want) in cases {
            assert_eq!(
                namespace(flag, file).ok().as_deref(),
                want,
                "{flag:?} {file:?}"
            );
        }
    }

    #[test]
    fn identities_differ_between_calls_and_name_the_host() {
        let (first, second) = (identity().expect("identity"), identity().expect("identity"));
        assert_ne!(first, second);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
        assert!(
            first.starts_with(&format!("{}_", hostname.trim())),
            "{first}"
        );
    }
}
