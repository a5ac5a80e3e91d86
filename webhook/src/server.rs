//! The HTTPS server: TLS handshake, HTTP/1.1 (HTTP/2 only when enabled), limits and routes.
//!
//! Every stage that waits on the client is bounded: the TLS handshake, the request headers
//! (also the idle time of a kept-alive connection) and the body each have a timeout, and the
//! body a size limit. Every request is answered and counted; connections that end before a
//! request are counted by reason.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use podscaler::runtime::{self, AcceptBackoff};

use podscaler::validation::SpecLimits;

use crate::Options;
use crate::admission::{self, Answer, MUTATE_PATH, PodScalerIndex, VALIDATE_PATH, Webhook};
use crate::metrics::{ConnectionError, Metrics, UNMATCHED_WEBHOOK};

/// controller-runtime's request size limit (7 MiB): an AdmissionReview carries the object and
/// the old object, each up to etcd's 1.5 MiB, plus metadata.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 7 * 1024 * 1024;

/// How much of an oversized body is read and discarded before answering 413.
const DRAIN_BYTES: usize = 256 * 1024;
/// HTTP/2 streams one connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 100;
/// Largest HTTP/2 header block accepted.
const MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;

/// Everything a request needs: the options, the PodScaler index and the metrics.
pub struct App {
    options: Options,
    spec_limits: SpecLimits,
    index: Arc<dyn PodScalerIndex>,
    metrics: Metrics,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("options", &self.options)
            .finish()
    }
}

impl App {
    pub fn new(options: Options, index: Arc<dyn PodScalerIndex>, metrics: Metrics) -> Self {
        Self {
            spec_limits: SpecLimits {
                max_count: options.max_count,
            },
            options,
            index,
            metrics,
        }
    }

    /// Answers one request and records it in the metrics. Never fails: every problem becomes
    /// an answer.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let started = Instant::now();
        let webhook = Webhook::from_path(request.uri().path());
        let label = webhook.map_or(UNMATCHED_WEBHOOK, Webhook::path);
        let in_flight = self.metrics.in_flight(label);
        let answer = self.answer(webhook, request).await;
        if let Some(decision) = answer.decision {
            self.metrics
                .observe_decision(label, decision.operation, decision.allowed);
        }
        self.metrics
            .observe_request(label, answer.status.as_u16(), started.elapsed());
        drop(in_flight);
        if answer.status != StatusCode::OK {
            tracing::debug!(
                webhook = label,
                status = answer.status.as_u16(),
                "request refused"
            );
        }
        into_response(answer)
    }

    async fn answer<B>(&self, webhook: Option<Webhook>, request: Request<B>) -> Answer
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn StdError + Send + Sync>>,
    {
        let options = &self.options;
        let Some(webhook) = webhook else {
            return admission::reject(
                StatusCode::NOT_FOUND,
                &format!(
                    "no webhook is served at {:?}: use {MUTATE_PATH} or {VALIDATE_PATH}",
                    admission::truncate(request.uri().path())
                ),
            );
        };
        if request.method() != Method::POST {
            return admission::reject(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!(
                    "method {} is not allowed: admission reviews are POSTed",
                    admission::truncate(request.method().as_str())
                ),
            );
        }
        if let Err(message) = check_content_type(request.headers().get(header::CONTENT_TYPE)) {
            return admission::reject(StatusCode::UNSUPPORTED_MEDIA_TYPE, &message);
        }
        let too_large = || {
            admission::reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the request body is larger than the limit of {} bytes (--max-request-bytes)",
                    options.max_request_bytes
                ),
            )
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > options.max_request_bytes as u64) {
            return too_large();
        }
        let read = read_body(request.into_body(), options.max_request_bytes);
        let body = match tokio::time::timeout(options.read_body_timeout, read).await {
            Ok(Ok(body)) => body,
            Ok(Err(BodyError::TooLarge)) => return too_large(),
            Ok(Err(BodyError::Read(error))) => {
                return admission::reject(
                    StatusCode::BAD_REQUEST,
                    &format!("reading the request body failed: {error}"),
                );
            }
            Err(_) => {
                return admission::reject(
                    StatusCode::REQUEST_TIMEOUT,
                    &format!(
                        "the request body did not arrive within {:?} (--read-body-timeout)",
                        options.read_body_timeout
                    ),
                );
            }
        };
        admission::answer(webhook, &body, self.index.as_ref(), &self.spec_limits)
    }
}

enum BodyError {
    TooLarge,
    Read(Box<dyn StdError + Send + Sync>),
}

/// Reads at most `limit` bytes of `body`. Past the limit, up to [`DRAIN_BYTES`] more are read
/// and discarded (as Go's net/http does) so a moderately oversized request ends cleanly and
/// the client reads the 413 rather than a connection reset; beyond that the connection closes.
async fn read_body<B>(body: B, limit: usize) -> Result<Bytes, BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut body = std::pin::pin!(body);
    let mut collected = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| BodyError::Read(error.into()))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        total = total.saturating_add(data.len());
        if total > limit {
            if total > limit.saturating_add(DRAIN_BYTES) {
                break;
            }
            collected = Vec::new();
            continue;
        }
        collected.extend_from_slice(&data);
    }
    if total > limit {
        Err(BodyError::TooLarge)
    } else {
        Ok(Bytes::from(collected))
    }
}

/// Accepts `application/json`, with parameters (`; charset=utf-8`), in any letter case.
fn check_content_type(value: Option<&HeaderValue>) -> Result<(), String> {
    let Some(value) = value else {
        return Err(
            "the request has no Content-Type: send the AdmissionReview as application/json"
                .to_owned(),
        );
    };
    let text = value.to_str().unwrap_or_default();
    let media_type = text.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(format!(
            "Content-Type {:?} is not supported: send the AdmissionReview as application/json",
            admission::truncate(text)
        ))
    }
}

fn into_response(answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = answer.status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if answer.status == StatusCode::METHOD_NOT_ALLOWED {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// Serves HTTPS on `listener` until `shutdown`, then stops accepting and lets open requests
/// finish (for at most [`Options::shutdown_timeout`]).
pub fn spawn(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Arc<App>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        let graceful = GracefulShutdown::new();
        let mut backoff = AcceptBackoff::default();
        while let Some(stream) =
            runtime::accept(&listener, &mut backoff, &shutdown, "webhook server").await
        {
            let watcher = graceful.watcher();
            tokio::spawn(serve_connection(
                stream,
                acceptor.clone(),
                app.clone(),
                watcher,
            ));
        }
        drop(listener);
        let open = graceful.count();
        if open > 0 {
            tracing::info!(
                connections = open,
                "waiting for in-flight admission requests"
            );
        }
        let deadline = app.options.shutdown_timeout;
        if tokio::time::timeout(deadline, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(?deadline, "connections still open at the shutdown deadline");
        }
    })
}

async fn serve_connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    app: Arc<App>,
    watcher: Watcher,
) {
    let options = &app.options;
    let stream =
        match tokio::time::timeout(options.tls_handshake_timeout, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                app.metrics
                    .observe_connection_error(ConnectionError::HandshakeFailed);
                return;
            }
            Err(_) => {
                tracing::debug!("TLS handshake timed out");
                app.metrics
                    .observe_connection_error(ConnectionError::HandshakeTimeout);
                return;
            }
        };
    let http2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let service = {
        let app = app.clone();
        service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(request).await) }
        })
    };
    let io = TokioIo::new(stream);
    let result = if http2 {
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEADER_LIST_SIZE)
            .keep_alive_interval(Some(options.http2_keep_alive_interval))
            .keep_alive_timeout(options.http2_keep_alive_timeout);
        watcher.watch(builder.serve_connection(io, service)).await
    } else {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(options.read_header_timeout);
        watcher.watch(builder.serve_connection(io, service)).await
    };
    if let Err(error) = result {
        let kind = if error.is_timeout() {
            ConnectionError::HeaderTimeout
        } else {
            ConnectionError::Protocol
        };
        tracing::debug!(%error, ?kind, "connection ended with an error");
        app.metrics.observe_connection_error(kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_table() {
        let cases = [
            (Some("application/json"), true),
            (Some("application/json; charset=utf-8"), true),
            (Some("Application/JSON"), true),
            (Some("text/plain"), false),
            (Some("application/jsonx"), false),
            (Some("application/yaml"), false),
            (Some(""), false),
            (None, false),
        ];
        for (value, ok) in cases {
            let header = value.map(|v| HeaderValue::from_str(v).expect("header"));
            assert_eq!(check_content_type(header.as_ref()).is_ok(), ok, "{value:?}");
        }
    }
}
