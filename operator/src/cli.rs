//! The operator's command line (every flag also reads an environment variable).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::admin::BindAddress;
use crate::controller::Scope;
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

/// Parses a Go-style duration such as `15s`, `1m30s` or `500ms`; negative durations are refused.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let parsed: k8s_openapi::jiff::SignedDuration = value
        .parse()
        .map_err(|_| format!("{value:?} is not a duration: write it like 15s, 1m30s or 500ms"))?;
    Duration::try_from(parsed).map_err(|_| format!("{value:?} is negative"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_parsing_table() {
        let cases: [(&str, Option<Duration>); 7] = [
            ("15s", Some(Duration::from_secs(15))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("500ms", Some(Duration::from_millis(500))),
            ("5m", Some(Duration::from_secs(300))),
            ("15", None),
            ("-1s", None),
            ("soon", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_duration(input).ok(), want, "{input}");
        }
    }

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
