//! The webhook's command line. Every flag also reads a `PODSCALER_WEBHOOK_*` environment
//! variable (the log flags read `LOG_FORMAT` / `LOG_LEVEL`, as the operator's do).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use podscaler::admin::BindAddress;
use podscaler::crd::MAX_COUNT;
use podscaler::runtime::parse_duration;
use podscaler::telemetry::LogArgs;
use podscaler::validation::DEFAULT_MAX_COUNT;

use crate::Options;
use crate::server::DEFAULT_MAX_REQUEST_BYTES;

/// PodScaler admission webhook: defaults and validates scaling.example.com/v1 PodScalers.
#[derive(Parser, Clone, Debug)]
#[command(name = "podscaler-webhook", version)]
pub struct Cli {
    /// Port of the HTTPS listener the API server calls.
    #[arg(long, env = "PODSCALER_WEBHOOK_PORT", default_value_t = 9443)]
    pub port: u16,

    /// Address the HTTPS listener binds ("0.0.0.0" for every interface, "127.0.0.1" for tests).
    #[arg(long, env = "PODSCALER_WEBHOOK_BIND_ADDRESS", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_address: IpAddr,

    /// Directory holding tls.crt and tls.key (PEM), e.g. a mounted cert-manager Secret.
    #[arg(
        long,
        env = "PODSCALER_WEBHOOK_CERT_DIR",
        default_value = "/tmp/k8s-webhook-server/serving-certs"
    )]
    pub cert_dir: PathBuf,

    /// How often tls.crt and tls.key are re-read to pick up a rotated certificate.
    #[arg(long, env = "PODSCALER_WEBHOOK_CERT_POLL_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub cert_poll_interval: Duration,

    /// Largest spec.count accepted, however it is set (kubectl apply or edit, kubectl scale, an
    /// HPA). At most 100000, the CRD's hard schema maximum: the API server refuses a larger
    /// count before the webhook is asked, so a higher --max-count would promise what it cannot
    /// allow, and the webhook refuses to start with one.
    #[arg(long, env = "PODSCALER_WEBHOOK_MAX_COUNT", default_value_t = DEFAULT_MAX_COUNT,
          value_parser = clap::value_parser!(i32).range(0..=i64::from(MAX_COUNT)))]
    pub max_count: i32,

    /// Serve HTTP/2 as well as HTTP/1.1 (off by default: HTTP/2 rapid-reset advisories).
    #[arg(long, env = "PODSCALER_WEBHOOK_HTTP2")]
    pub http2: bool,

    /// With --http2: how often an HTTP/2 connection is pinged, so a dead peer is noticed and
    /// the connection closed rather than held.
    #[arg(long, env = "PODSCALER_WEBHOOK_HTTP2_KEEP_ALIVE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub http2_keep_alive_interval: Duration,

    /// With --http2: how long a keep-alive ping may go unanswered before the connection closes.
    #[arg(long, env = "PODSCALER_WEBHOOK_HTTP2_KEEP_ALIVE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub http2_keep_alive_timeout: Duration,

    /// Address of the Prometheus /metrics endpoint (":8080", "127.0.0.1:8080"; "0" disables).
    #[arg(
        long,
        env = "PODSCALER_WEBHOOK_METRICS_BIND_ADDRESS",
        default_value = ":8080"
    )]
    pub metrics_bind_address: BindAddress,

    /// Serve /metrics over HTTPS, only to callers whose bearer token the API server accepts
    /// (TokenReview) and whose RBAC allows `get` on the /metrics URL (SubjectAccessReview).
    /// `--metrics-secure` or `--metrics-secure=true|false`, as with a Go operator.
    #[arg(long, env = "PODSCALER_WEBHOOK_METRICS_SECURE", default_value_t = false,
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub metrics_secure: bool,

    /// Directory holding tls.crt and tls.key for the --metrics-secure listener. Default: a
    /// certificate generated in memory at start (not the admission certificate: that one is
    /// issued for the webhook Service's name).
    #[arg(long, env = "PODSCALER_WEBHOOK_METRICS_CERT_DIR")]
    pub metrics_cert_dir: Option<PathBuf>,

    /// Address of the /healthz and /readyz endpoints ("0" disables).
    #[arg(
        long,
        env = "PODSCALER_WEBHOOK_HEALTH_PROBE_BIND_ADDRESS",
        default_value = ":8081"
    )]
    pub health_probe_bind_address: BindAddress,

    /// Time allowed for a client's TLS handshake.
    #[arg(long, env = "PODSCALER_WEBHOOK_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub tls_handshake_timeout: Duration,

    /// Time allowed for a request's headers; also how long an idle kept-alive HTTP/1.1
    /// connection stays open (HTTP/2 connections are kept by --http2-keep-alive-*).
    #[arg(long, env = "PODSCALER_WEBHOOK_READ_HEADER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub read_header_timeout: Duration,

    /// Time allowed for a request's body.
    #[arg(long, env = "PODSCALER_WEBHOOK_READ_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub read_body_timeout: Duration,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "PODSCALER_WEBHOOK_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(long, env = "PODSCALER_WEBHOOK_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    #[command(flatten)]
    pub log: LogArgs,
}

impl Cli {
    /// The server options these flags describe.
    pub fn options(&self) -> Options {
        Options {
            bind: SocketAddr::new(self.bind_address, self.port),
            cert_dir: self.cert_dir.clone(),
            cert_poll_interval: self.cert_poll_interval,
            http2: self.http2,
            http2_keep_alive_interval: self.http2_keep_alive_interval,
            http2_keep_alive_timeout: self.http2_keep_alive_timeout,
            tls_handshake_timeout: self.tls_handshake_timeout,
            read_header_timeout: self.read_header_timeout,
            read_body_timeout: self.read_body_timeout,
            max_request_bytes: self.max_request_bytes,
            shutdown_timeout: self.shutdown_timeout,
            max_count: self.max_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_documentation() {
        let cli = Cli::try_parse_from(["podscaler-webhook"]).expect("defaults parse");
        let options = cli.options();
        assert_eq!(options.bind, "0.0.0.0:9443".parse().expect("addr"));
        assert_eq!(
            options.cert_dir,
            PathBuf::from("/tmp/k8s-webhook-server/serving-certs")
        );
        assert_eq!(options.cert_poll_interval, Duration::from_secs(10));
        assert!(!options.http2);
        assert_eq!(options.max_count, 1000);
        assert_eq!(options.http2_keep_alive_interval, Duration::from_secs(30));
        assert_eq!(options.http2_keep_alive_timeout, Duration::from_secs(10));
        // The library's defaults are the flags' (tests start the server with them).
        assert_eq!(options, Options::default());
        assert_eq!(cli.metrics_bind_address, ":8080".parse().expect("addr"));
        assert_eq!(
            cli.health_probe_bind_address,
            ":8081".parse().expect("addr")
        );
        assert!(!cli.metrics_secure, "local runs serve plain HTTP");
        assert_eq!(cli.metrics_cert_dir, None);
    }

    #[test]
    fn metrics_secure_is_written_as_a_go_bool_flag() {
        for (arguments, want) in [
            (&["--metrics-secure"][..], true),
            (&["--metrics-secure=false"][..], false),
            (&["--metrics-secure", "--metrics-cert-dir=/certs"][..], true),
        ] {
            let cli = Cli::try_parse_from(
                std::iter::once("podscaler-webhook").chain(arguments.iter().copied()),
            )
            .expect("parses");
            assert_eq!(cli.metrics_secure, want, "{arguments:?}");
        }
    }

    #[test]
    fn flags_are_parsed() {
        let cli = Cli::try_parse_from([
            "podscaler-webhook",
            "--port=0",
            "--bind-address=127.0.0.1",
            "--cert-dir=/certs",
            "--cert-poll-interval=250ms",
            "--max-count=5",
            "--http2",
            "--metrics-bind-address=0",
            "--health-probe-bind-address=127.0.0.1:9",
            "--read-header-timeout=1m",
            "--http2-keep-alive-timeout=5s",
            "--max-request-bytes=1024",
        ])
        .expect("parses");
        let options = cli.options();
        assert_eq!(options.bind, "127.0.0.1:0".parse().expect("addr"));
        assert_eq!(options.cert_poll_interval, Duration::from_millis(250));
        assert_eq!(options.max_count, 5);
        assert!(options.http2);
        assert_eq!(options.read_header_timeout, Duration::from_secs(60));
        assert_eq!(
            options.http2_keep_alive_interval,
            Duration::from_secs(30),
            "its own flag"
        );
        assert_eq!(options.http2_keep_alive_timeout, Duration::from_secs(5));
        assert_eq!(options.max_request_bytes, 1024);
        assert_eq!(cli.metrics_bind_address, BindAddress::Disabled);
    }

    #[test]
    fn max_count_may_reach_the_crd_limit_but_not_pass_it() {
        let at_limit = format!("--max-count={MAX_COUNT}");
        let cli = Cli::try_parse_from(["podscaler-webhook", at_limit.as_str()]).expect("parses");
        assert_eq!(cli.options().max_count, MAX_COUNT);
        let over = format!("--max-count={}", MAX_COUNT + 1);
        let error = Cli::try_parse_from(["podscaler-webhook", over.as_str()])
            .expect_err("over the CRD's maximum")
            .to_string();
        assert!(error.contains("0..=100000"), "{error}");
        // The flag's help states the limit; it is written out there, so keep it in step.
        let help = <Cli as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        assert!(help.contains(&format!("At most {MAX_COUNT}")), "{help}");
    }

    #[test]
    fn bad_flags_are_refused_with_the_flag_named() {
        for (flag, value) in [
            ("--max-count", "-1"),
            ("--max-count", "100001"),
            ("--port", "70000"),
            ("--cert-poll-interval", "0s"),
            ("--cert-poll-interval", "soon"),
            ("--read-body-timeout", "-1s"),
            ("--http2-keep-alive-interval", "0s"),
            ("--bind-address", "localhost"),
            ("--metrics-bind-address", "nowhere"),
        ] {
            let argument = format!("{flag}={value}");
            let error = Cli::try_parse_from(["podscaler-webhook", argument.as_str()])
                .expect_err("must be refused")
                .to_string();
            assert!(error.contains(flag), "{flag}={value}: {error}");
        }
    }
}
