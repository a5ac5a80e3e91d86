//! The operator's command line (every flag also reads an environment variable).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::admin::BindAddress;
use crate::controller::Scope;
use crate::runtime::parse_duration;
use crate::telemetry::LogArgs;

/// PodScaler operator: keeps exactly spec.count active pods matching spec.selector.
#[derive(Parser, Clone, Debug)]
#[command(name = "podscaler-operator", version)]
pub struct OperatorArgs {
    /// Only manage PodScalers (and watch pods) in this namespace. Default: all namespaces.
    #[arg(long, env = "PODSCALER_NAMESPACE")]
    pub namespace: Option<String>,

    /// How often each PodScaler is reconciled when nothing changes (Go-style duration).
    #[arg(long, env = "PODSCALER_REQUEUE_AFTER", default_value = "15s", value_parser = parse_duration)]
    pub requeue_after: Duration,

    /// How many PodScalers are reconciled at once (one PodScaler never twice at once).
    #[arg(long, env = "PODSCALER_MAX_CONCURRENT_RECONCILES", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_reconciles: u16,

    /// How long creations and deletions may go unobserved before the cache is trusted anyway.
    #[arg(long, env = "PODSCALER_EXPECTATIONS_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub expectations_timeout: Duration,

    /// Address of the Prometheus /metrics endpoint (":8080", "127.0.0.1:8080"; "0" disables).
    #[arg(long, env = "PODSCALER_METRICS_BIND_ADDRESS", default_value = ":8080")]
    pub metrics_bind_address: BindAddress,

    /// Serve /metrics over HTTPS, only to callers whose bearer token the API server accepts
    /// (TokenReview) and whose RBAC allows `get` on the /metrics URL (SubjectAccessReview).
    /// `--metrics-secure` or `--metrics-secure=true|false`, as with a Go operator.
    #[arg(long, env = "PODSCALER_METRICS_SECURE", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub metrics_secure: bool,

    /// Directory holding tls.crt and tls.key for the --metrics-secure listener. Default: a
    /// certificate generated in memory at start.
    #[arg(long, env = "PODSCALER_METRICS_CERT_DIR")]
    pub metrics_cert_dir: Option<PathBuf>,

    /// Address of the /healthz and /readyz endpoints ("0" disables).
    #[arg(
        long,
        env = "PODSCALER_HEALTH_PROBE_BIND_ADDRESS",
        default_value = ":8081"
    )]
    pub health_probe_bind_address: BindAddress,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
}

/// Leader election: of several replicas, only the one holding a Lease reconciles.
#[derive(clap::Args, Clone, Debug)]
pub struct LeaderElectionArgs {
    /// Hold a coordination.k8s.io Lease and reconcile only while holding it, so that replicas
    /// can run side by side (the others stand by, serving health and metrics).
    #[arg(long, env = "PODSCALER_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Name of the Lease (and the `name` label of leader_election_master_status).
    #[arg(
        long,
        env = "PODSCALER_LEADER_ELECTION_ID",
        default_value = "podscaler-operator-leader"
    )]
    pub leader_election_id: String,

    /// Namespace of the Lease. Default: the pod's own namespace; required outside a cluster.
    #[arg(long, env = "PODSCALER_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// How long standbys wait, after the Lease last changed, before taking it over.
    #[arg(long, env = "PODSCALER_LEADER_ELECTION_LEASE_DURATION", default_value = "15s",
          value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// The leader stops when it has not renewed the Lease for this long (shorter than the
    /// lease duration, so it stops before another replica can take over).
    #[arg(long, env = "PODSCALER_LEADER_ELECTION_RENEW_DEADLINE", default_value = "10s",
          value_parser = parse_duration)]
    pub leader_election_renew_deadline: Duration,

    /// How often the leader renews the Lease and standbys try to take it.
    #[arg(long, env = "PODSCALER_LEADER_ELECTION_RETRY_PERIOD", default_value = "2s",
          value_parser = parse_duration)]
    pub leader_election_retry_period: Duration,
}

impl LeaderElectionArgs {
    /// The lease timing the flags give (validated where it is used).
    pub fn timing(&self) -> crate::leader::Timing {
        crate::leader::Timing {
            lease_duration: self.leader_election_lease_duration,
            renew_deadline: self.leader_election_renew_deadline,
            retry_period: self.leader_election_retry_period,
        }
    }
}

impl OperatorArgs {
    /// The namespaces to manage.
    pub fn scope(&self) -> Scope {
        match &self.namespace {
            Some(namespace) if !namespace.is_empty() => Scope::Namespace(namespace.clone()),
            _ => Scope::Cluster,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let args = OperatorArgs::try_parse_from(["podscaler-operator"]).expect("defaults parse");
        assert_eq!(args.requeue_after, Duration::from_secs(15));
        assert_eq!(args.max_concurrent_reconciles, 4);
        assert_eq!(args.metrics_bind_address, ":8080".parse().expect("addr"));
        assert_eq!(
            args.health_probe_bind_address,
            ":8081".parse().expect("addr")
        );
        assert!(matches!(args.scope(), Scope::Cluster));
        assert!(!args.metrics_secure, "local runs serve plain HTTP");
        assert_eq!(args.metrics_cert_dir, None);
        let election = &args.leader_election;
        assert!(!election.leader_elect, "off for local runs");
        assert_eq!(election.leader_election_id, "podscaler-operator-leader");
        assert_eq!(election.leader_election_namespace, None);
        assert_eq!(election.timing(), crate::leader::Timing::default());
    }

    #[test]
    fn metrics_secure_is_written_as_a_go_bool_flag() {
        for (arguments, want) in [
            (&["--metrics-secure"][..], true),
            (&["--metrics-secure=true"][..], true),
            (&["--metrics-secure=false"][..], false),
            (&["--metrics-secure", "--metrics-cert-dir=/certs"][..], true),
        ] {
            let args = OperatorArgs::try_parse_from(
                std::iter::once("podscaler-operator").chain(arguments.iter().copied()),
            )
            .expect("parses");
            assert_eq!(args.metrics_secure, want, "{arguments:?}");
        }
        let args = OperatorArgs::try_parse_from([
            "podscaler-operator",
            "--metrics-secure",
            "--metrics-cert-dir=/certs",
        ])
        .expect("parses");
        assert_eq!(args.metrics_cert_dir, Some(PathBuf::from("/certs")));
    }

    #[test]
    fn leader_election_flags_parse() {
        let args = OperatorArgs::try_parse_from([
            "podscaler-operator",
            "--leader-elect",
            "--leader-election-id=ps",
            "--leader-election-namespace=ops",
            "--leader-election-lease-duration=30s",
            "--leader-election-renew-deadline=20s",
            "--leader-election-retry-period=500ms",
        ])
        .expect("valid flags");
        let election = &args.leader_election;
        assert!(election.leader_elect);
        assert_eq!(election.leader_election_id, "ps");
        assert_eq!(election.leader_election_namespace.as_deref(), Some("ops"));
        assert_eq!(
            election.timing(),
            crate::leader::Timing {
                lease_duration: Duration::from_secs(30),
                renew_deadline: Duration::from_secs(20),
                retry_period: Duration::from_millis(500),
            }
        );
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        for (flag, value) in [
            ("--requeue-after", "-5s"),
            ("--max-concurrent-reconciles", "0"),
            ("--metrics-bind-address", "nowhere"),
            ("--metrics-secure", "yes please"),
        ] {
            let argument = format!("{flag}={value}");
            let error = OperatorArgs::try_parse_from(["podscaler-operator", argument.as_str()])
                .expect_err("must be refused")
                .to_string();
            assert!(error.contains(flag), "{error}");
        }
    }
}
