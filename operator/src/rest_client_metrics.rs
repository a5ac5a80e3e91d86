//! client-go's API request metrics for the kube client both binaries use:
//! `rest_client_requests_total{code,method,host}` and
//! `rest_client_request_duration_seconds{verb,host}`, under client-go's names, labels and
//! buckets, so dashboards and alerts written for Go operators read them unchanged.
//!
//! What is counted: every HTTP request the client sends, one sample per attempt, as client-go
//! does. kube's own retry of 429/503/504 answers sits inside its boxed service stack, below any
//! layer added with [`ClientBuilder::with_layer`], so a layer there would only see the final
//! answer and hide every 429 of API Priority and Fairness. [`RestClientMetrics::client`]
//! therefore turns kube's retry off and puts the same policy
//! ([`RetryPolicy::server_retry`]) back *above* the counting layer.
//!
//! When: a sample is taken when the response headers arrive (or the request fails without a
//! response: `code="<error>"`, which includes a request given up by its caller before an
//! answer). A watch's response starts with its headers and then streams for minutes, so a watch
//! is counted once, when the API server accepted it, and its duration is the time to that
//! point. For every other request the duration is also the time to the response headers: the
//! body (a list's items) is read afterwards by the caller.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tower::buffer::Buffer;
use tower::retry::Retry;
use tower::util::Either;
use tower::{Layer, Service};

/// client-go's `rest_client_request_duration_seconds` buckets.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0,
];

/// The `code` of a request that got no HTTP response (connection refused, timeout, TLS or
/// credential failure, given up by the caller), as client-go spells it.
pub const NO_RESPONSE: &str = "<error>";

/// Requests waiting for the shared client stack. kube's own `Client` buffers 1024 in front of
/// it; this second buffer (see [`RestClientMetrics::client`]) only has to keep up with it.
const BUFFER_BOUND: usize = 1024;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    code: String,
    method: String,
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    verb: String,
    host: String,
}

/// Handles to the API request metrics. Cloning is cheap and shares the series.
#[derive(Clone, Debug)]
pub struct RestClientMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: Family<DurationLabels, Histogram, fn() -> Histogram>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

impl RestClientMetrics {
    /// Registers both metrics in `registry`. There are no series until the first request: the
    /// labels (host, codes) are not known before.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
        };
        // client-go's help texts, without the final period prometheus-client adds itself.
        registry.register(
            "rest_client_requests",
            "Number of HTTP requests, partitioned by status code, method, and host",
            metrics.requests.clone(),
        );
        registry.register(
            "rest_client_request_duration_seconds",
            "Request latency in seconds. Broken down by verb and host",
            metrics.duration.clone(),
        );
        metrics
    }

    /// The kube client for `config`, with every request it sends counted (see the module
    /// documentation for what that covers). Call it inside the tokio runtime: the buffer in
    /// front of kube's stack runs as a task.
    pub fn client(&self, mut config: Config) -> Result<Client, kube::Error> {
        let host = api_host(&config.cluster_url);
        // Put back above the count, so that each attempt is seen (see `instrument`).
        let retry = std::mem::replace(&mut config.default_retry, false);
        let metrics = self.clone();
        let layer = tower::layer::layer_fn(move |inner| {
            instrument(inner, metrics.layer(host.clone()), retry)
        });
        Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
    }

    /// A layer counting the requests that pass through it as requests to `host`.
    pub fn layer(&self, host: impl Into<Arc<str>>) -> RestClientLayer {
        RestClientLayer {
            metrics: self.clone(),
            host: host.into(),
        }
    }

    fn observe(&self, host: &str, method: &http::Method, code: &str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                code: code.to_owned(),
                method: method.as_str().to_owned(),
                host: host.to_owned(),
            })
            .inc();
        self.duration
            .get_or_create(&DurationLabels {
                verb: method.as_str().to_owned(),
                host: host.to_owned(),
            })
            .observe(seconds);
    }
}

/// client-go's `host` label: the API server's `host:port` as configured (the request URIs
/// seen by the layer hold only the path; kube adds the base URI further down).
fn api_host(cluster_url: &http::Uri) -> Arc<str> {
    cluster_url
        .authority()
        .map_or("", http::uri::Authority::as_str)
        .into()
}

/// The stack [`RestClientMetrics::client`] puts on top of kube's: `retry` (kube's
/// server-retry policy, when the config asked for retries) → `count` → a buffer → kube's own
/// stack. tower's `Retry` clones its inner service for each attempt, and kube's stack is a
/// boxed service that cannot be cloned: the buffer makes it shareable, at the cost of one
/// channel hop per request.
pub type Instrumented<S> = Either<Retry<RetryPolicy, Counted<BufferOf<S>>>, Counted<BufferOf<S>>>;

/// A buffer in front of the service `S`.
pub type BufferOf<S> = Buffer<Request<Body>, <S as Service<Request<Body>>>::Future>;

/// Builds [`Instrumented`] around `inner`.
pub fn instrument<S, B>(inner: S, count: RestClientLayer, retry: bool) -> Instrumented<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Send + 'static,
    S::Future: Send,
    S::Error: Into<tower::BoxError> + Send + Sync,
{
    let counted = count.layer(Buffer::new(inner, BUFFER_BOUND));
    if retry {
        Either::Left(Retry::new(RetryPolicy::server_retry(), counted))
    } else {
        Either::Right(counted)
    }
}

/// Counts the requests through the wrapped service (see [`Counted`]).
#[derive(Clone, Debug)]
pub struct RestClientLayer {
    metrics: RestClientMetrics,
    host: Arc<str>,
}

impl<S> Layer<S> for RestClientLayer {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            metrics: self.metrics.clone(),
            host: self.host.clone(),
        }
    }
}

/// A service whose requests are counted when their response headers arrive.
#[derive(Clone, Debug)]
pub struct Counted<S> {
    inner: S,
    metrics: RestClientMetrics,
    host: Arc<str>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Counted<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let mut attempt = Attempt {
            metrics: self.metrics.clone(),
            host: self.host.clone(),
            method: request.method().clone(),
            started: Instant::now(),
            recorded: false,
        };
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            attempt.record(result.as_ref().ok().map(Response::status));
            result
        })
    }
}

/// One request on its way; recorded exactly once, as [`NO_RESPONSE`] if it is dropped
/// before an answer.
struct Attempt {
    metrics: RestClientMetrics,
    host: Arc<str>,
    method: http::Method,
    started: Instant,
    recorded: bool,
}

impl Attempt {
    fn record(&mut self, status: Option<http::StatusCode>) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let code = status.map_or_else(|| NO_RESPONSE.to_owned(), |s| s.as_u16().to_string());
        self.metrics.observe(
            &self.host,
            &self.method,
            &code,
            self.started.elapsed().as_secs_f64(),
        );
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.record(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::future::BoxFuture;
    use http::StatusCode;
    use tower::ServiceExt;

    const HOST: &str = "10.96.0.1:443";

    fn encode(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
        out
    }

    fn request(method: http::Method) -> Request<Body> {
        Request::builder()
            .method(method)
            .uri("/api/v1/namespaces/ns/pods")
            .body(Body::empty())
            .expect("a valid request")
    }

    type Answer = Result<Response<String>, tower::BoxError>;

    /// A fake API server answering the statuses of `answers` in turn, then 200.
    fn server(
        answers: Vec<StatusCode>,
    ) -> impl Service<
        Request<Body>,
        Response = Response<String>,
        Error = tower::BoxError,
        Future = BoxFuture<'static, Answer>,
    > + Clone {
        let calls = Arc::new(AtomicUsize::new(0));
        tower::service_fn(move |_request: Request<Body>| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            let status = answers.get(call).copied().unwrap_or(StatusCode::OK);
            Box::pin(async move {
                Ok(Response::builder()
                    .status(status)
                    .body(String::new())
                    .expect("a valid response"))
            }) as BoxFuture<'static, Answer>
        })
    }

    #[tokio::test]
    async fn every_attempt_of_a_retried_request_is_counted_with_its_code() {
        let mut registry = Registry::default();
        let metrics = RestClientMetrics::register(&mut registry);
        let client = instrument(
            server(vec![StatusCode::TOO_MANY_REQUESTS]),
            metrics.layer(HOST),
            true,
        );
        let response = client
            .oneshot(request(http::Method::POST))
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::OK, "retried after the 429");
        let text = encode(&registry);
        for line in [
            "rest_client_requests_total{code=\"429\",method=\"POST\",host=\"10.96.0.1:443\"} 1\n",
            "rest_client_requests_total{code=\"200\",method=\"POST\",host=\"10.96.0.1:443\"} 1\n",
            "rest_client_request_duration_seconds_count{verb=\"POST\",host=\"10.96.0.1:443\"} 2\n",
            "rest_client_request_duration_seconds_bucket{le=\"60.0\",verb=\"POST\",host=\"10.96.0.1:443\"} 2\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        let doubled = crate::exposition::doubled_help_periods(&text);
        assert!(doubled.is_empty(), "{doubled:?}");
    }

    #[tokio::test]
    async fn without_retries_the_first_answer_is_final() {
        let mut registry = Registry::default();
        let metrics = RestClientMetrics::register(&mut registry);
        let client = instrument(
            server(vec![StatusCode::TOO_MANY_REQUESTS]),
            metrics.layer(HOST),
            false,
        );
        let response = client
            .oneshot(request(http::Method::GET))
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let text = encode(&registry);
        assert!(text.contains(
            "rest_client_requests_total{code=\"429\",method=\"GET\",host=\"10.96.0.1:443\"} 1\n"
        ));
        assert!(!text.contains("code=\"200\""), "{text}");
    }

    #[tokio::test]
    async fn a_request_is_counted_when_its_headers_arrive_before_its_body_is_read() {
        let mut registry = Registry::default();
        let metrics = RestClientMetrics::register(&mut registry);
        // A watch: the headers come at once, the body would stream on; it is never read here.
        let (body_tx, body) =
            futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
        let mut watch = Some(body);
        let service = tower::service_fn(move |_request: Request<Body>| {
            let body = watch.take().expect("one call");
            async move { Ok::<_, tower::BoxError>(Response::new(body)) }
        });
        let mut counted = metrics.layer(HOST).layer(service);
        let response = counted
            .ready()
            .await
            .expect("ready")
            .call(request(http::Method::GET))
            .await
            .expect("an answer");
        let text = encode(&registry);
        assert!(
            text.contains(
                "rest_client_requests_total{code=\"200\",method=\"GET\",host=\"10.96.0.1:443\"} 1\n"
            ),
            "{text}"
        );
        drop((response, body_tx));
        assert!(
            encode(&registry).contains("rest_client_request_duration_seconds_count{verb=\"GET\",host=\"10.96.0.1:443\"} 1\n"),
            "the end of the stream is not a second sample"
        );
    }

    #[tokio::test]
    async fn a_request_without_a_response_is_an_error_sample() {
        let mut registry = Registry::default();
        let metrics = RestClientMetrics::register(&mut registry);
        let refused = tower::service_fn(|_request: Request<Body>| async {
            Err::<Response<String>, tower::BoxError>("connection refused".into())
        });
        let result = metrics
            .layer(HOST)
            .layer(refused)
            .oneshot(request(http::Method::DELETE))
            .await;
        assert!(result.is_err());

        // Given up by the caller before any answer.
        let never = tower::service_fn(|_request: Request<Body>| {
            futures::future::pending::<Result<Response<String>, tower::BoxError>>()
        });
        let mut counted = metrics.layer(HOST).layer(never);
        drop(counted.call(request(http::Method::PATCH)));

        let text = encode(&registry);
        for line in [
            "rest_client_requests_total{code=\"<error>\",method=\"DELETE\",host=\"10.96.0.1:443\"} 1\n",
            "rest_client_requests_total{code=\"<error>\",method=\"PATCH\",host=\"10.96.0.1:443\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_host_is_the_api_servers_host_and_port() {
        let url: http::Uri = "https://10.96.0.1:443".parse().expect("a URL");
        assert_eq!(&*api_host(&url), "10.96.0.1:443");
        let url: http::Uri = "https://kubernetes.default.svc".parse().expect("a URL");
        assert_eq!(&*api_host(&url), "kubernetes.default.svc");
    }
}
