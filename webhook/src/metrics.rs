//! The webhook's Prometheus metrics, named as controller-runtime names them so dashboards and
//! alerts written for Go webhooks work unchanged.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `webhook` label for requests to a path that serves no webhook. One fixed value, so that
/// clients probing arbitrary paths cannot create unbounded series.
pub const UNMATCHED_WEBHOOK: &str = "unmatched";

/// controller-runtime's webhook latency buckets (Prometheus' `DefBuckets`).
const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    webhook: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    webhook: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    webhook: String,
    operation: String,
    allowed: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

/// Why a connection ended before it produced a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionError {
    /// The client did not finish the TLS handshake in time (e.g. it sent nothing).
    HandshakeTimeout,
    /// The TLS handshake failed (wrong protocol version, not TLS at all, …).
    HandshakeFailed,
    /// The client did not send complete request headers in time.
    HeaderTimeout,
    /// The client broke the HTTP protocol (malformed request, reset stream, …).
    Protocol,
}

impl ConnectionError {
    fn label(self) -> &'static str {
        match self {
            Self::HandshakeTimeout => "tls_handshake_timeout",
            Self::HandshakeFailed => "tls_handshake_failed",
            Self::HeaderTimeout => "header_read_timeout",
            Self::Protocol => "http_protocol",
        }
    }
}

/// Handles to every webhook metric. Cloning is cheap and shares the series.
#[derive(Clone, Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    in_flight: Family<WebhookLabels, Gauge>,
    latency: Family<WebhookLabels, Histogram, fn() -> Histogram>,
    decisions: Family<DecisionLabels, Counter>,
    connection_errors: Family<ReasonLabels, Counter>,
    certificate_reloads: Family<ResultLabels, Counter>,
    certificate_reads: Counter,
    certificate_read_errors: Counter,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    /// Creates the metrics and registers them in `registry`. The series of `webhooks` (the
    /// served paths) are created at zero so rates and ratios exist before the first request.
    pub fn register(registry: &mut Registry, webhooks: &[&str]) -> Self {
        let metrics = Self {
            requests: Family::default(),
            in_flight: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            decisions: Family::default(),
            connection_errors: Family::default(),
            certificate_reloads: Family::default(),
            certificate_reads: Counter::default(),
            certificate_read_errors: Counter::default(),
        };
        registry.register(
            "controller_runtime_webhook_requests",
            "Total number of admission requests by HTTP status code",
            metrics.requests.clone(),
        );
        registry.register(
            "controller_runtime_webhook_requests_in_flight",
            "Current number of admission requests being served",
            metrics.in_flight.clone(),
        );
        registry.register(
            "controller_runtime_webhook_latency_seconds",
            "Histogram of the latency of processing admission requests",
            metrics.latency.clone(),
        );
        registry.register(
            "podscaler_admission_decisions",
            "Admission reviews answered, by webhook, operation and whether they were allowed",
            metrics.decisions.clone(),
        );
        registry.register(
            "podscaler_webhook_connection_errors",
            "Connections to the webhook server that ended without a request, by reason",
            metrics.connection_errors.clone(),
        );
        registry.register(
            "podscaler_webhook_certificate_reloads",
            "Serving certificate reloads after the files changed, by result (success, error)",
            metrics.certificate_reloads.clone(),
        );
        // controller-runtime's certwatcher counters: every look at the certificate files.
        registry.register(
            "certwatcher_read_certificate",
            "Total number of certificate reads",
            metrics.certificate_reads.clone(),
        );
        registry.register(
            "certwatcher_read_certificate_errors",
            "Total number of certificate read errors",
            metrics.certificate_read_errors.clone(),
        );
        for webhook in webhooks {
            let labels = WebhookLabels {
                webhook: (*webhook).to_owned(),
            };
            drop(metrics.in_flight.get_or_create(&labels));
            drop(metrics.latency.get_or_create(&labels));
            // The codes controller-runtime's `InstrumentedHook` creates at zero for each path.
            for code in ["200", "500"] {
                drop(metrics.requests.get_or_create(&RequestLabels {
                    webhook: labels.webhook.clone(),
                    code: code.to_owned(),
                }));
            }
        }
        for result in ["success", "error"] {
            drop(metrics.certificate_reloads.get_or_create(&ResultLabels {
                result: result.to_owned(),
            }));
        }
        metrics
    }

    /// Marks a request to `webhook` in flight until the returned guard is dropped.
    pub fn in_flight(&self, webhook: &str) -> InFlight {
        let gauge = self
            .in_flight
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_owned(),
            })
            .clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// Records a finished request: its HTTP status code and how long it took.
    pub fn observe_request(&self, webhook: &str, code: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                webhook: webhook.to_owned(),
                code: code.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&WebhookLabels {
                webhook: webhook.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Records an answered AdmissionReview. `operation` must come from a bounded set.
    pub fn observe_decision(&self, webhook: &str, operation: &str, allowed: bool) {
        self.decisions
            .get_or_create(&DecisionLabels {
                webhook: webhook.to_owned(),
                operation: operation.to_owned(),
                allowed: allowed.to_string(),
            })
            .inc();
    }

    /// Records a connection that ended without a request.
    pub fn observe_connection_error(&self, error: ConnectionError) {
        self.connection_errors
            .get_or_create(&ReasonLabels {
                reason: error.label().to_owned(),
            })
            .inc();
    }

    /// Records one read of the certificate files; `served` tells whether what was read can be
    /// served (a file that is missing, or holds a certificate or key that cannot be used, is a
    /// read error).
    pub fn observe_certificate_read(&self, served: bool) {
        self.certificate_reads.inc();
        if !served {
            self.certificate_read_errors.inc();
        }
    }

    /// Records a certificate reload attempt.
    pub fn observe_certificate_reload(&self, success: bool) {
        let result = if success { "success" } else { "error" };
        self.certificate_reloads
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }
}

/// Decrements the in-flight gauge when dropped, however the request ends.
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    #[test]
    fn request_codes_200_and_500_exist_at_zero_per_path() {
        let mut registry = Registry::default();
        let _metrics = Metrics::register(&mut registry, &["/validate-x", "/mutate-x"]);
        let text = encode(&registry);
        for line in [
            "controller_runtime_webhook_requests_total{webhook=\"/validate-x\",code=\"200\"} 0\n",
            "controller_runtime_webhook_requests_total{webhook=\"/validate-x\",code=\"500\"} 0\n",
            "controller_runtime_webhook_requests_total{webhook=\"/mutate-x\",code=\"200\"} 0\n",
            "controller_runtime_webhook_requests_total{webhook=\"/mutate-x\",code=\"500\"} 0\n",
            "certwatcher_read_certificate_total 0\n",
            "certwatcher_read_certificate_errors_total 0\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn names_and_labels_match_controller_runtime() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry, &["/validate-x"]);
        {
            let _guard = metrics.in_flight("/validate-x");
            let text = encode(&registry);
            assert!(
                text.contains(
                    "controller_runtime_webhook_requests_in_flight{webhook=\"/validate-x\"} 1\n"
                ),
                "{text}"
            );
        }
        metrics.observe_request("/validate-x", 200, Duration::from_millis(3));
        metrics.observe_decision("/validate-x", "CREATE", false);
        metrics.observe_connection_error(ConnectionError::HandshakeTimeout);
        metrics.observe_certificate_reload(true);
        metrics.observe_certificate_read(true);
        metrics.observe_certificate_read(false);
        let text = encode(&registry);
        for line in [
            "controller_runtime_webhook_requests_in_flight{webhook=\"/validate-x\"} 0\n",
            "controller_runtime_webhook_requests_total{webhook=\"/validate-x\",code=\"200\"} 1\n",
            "controller_runtime_webhook_latency_seconds_bucket{le=\"0.005\",webhook=\"/validate-x\"} 1\n",
            "controller_runtime_webhook_latency_seconds_bucket{le=\"10.0\",webhook=\"/validate-x\"} 1\n",
            "controller_runtime_webhook_latency_seconds_count{webhook=\"/validate-x\"} 1\n",
            "podscaler_admission_decisions_total{webhook=\"/validate-x\",operation=\"CREATE\",allowed=\"false\"} 1\n",
            "podscaler_webhook_connection_errors_total{reason=\"tls_handshake_timeout\"} 1\n",
            "podscaler_webhook_certificate_reloads_total{result=\"success\"} 1\n",
            "podscaler_webhook_certificate_reloads_total{result=\"error\"} 0\n",
            "certwatcher_read_certificate_total 2\n",
            "certwatcher_read_certificate_errors_total 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        // prometheus-client ends every registered help text with a period of its own.
        let doubled: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("# HELP ") && line.ends_with(".."))
            .collect();
        assert!(doubled.is_empty(), "{doubled:?}");
    }
}
