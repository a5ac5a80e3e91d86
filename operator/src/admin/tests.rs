//! Tests of the admin server over real sockets: routes, health, the defensive limits.

use super::*;

#[test]
fn bind_address_parsing_table() {
    let cases: [(&str, Result<BindAddress, ()>); 7] = [
        (
            ":8080",
            Ok(BindAddress::Listen("0.0.0.0:8080".parse().expect("addr"))),
        ),
        (
            "127.0.0.1:9",
            Ok(BindAddress::Listen("127.0.0.1:9".parse().expect("addr"))),
        ),
        (
            "[::1]:8443",
            Ok(BindAddress::Listen("[::1]:8443".parse().expect("addr"))),
        ),
        ("0", Ok(BindAddress::Disabled)),
        (":http", Err(())),
        ("localhost", Err(())),
        (":70000", Err(())),
    ];
    for (input, want) in cases {
        assert_eq!(
            input.parse::<BindAddress>().map_err(|_| ()),
            want,
            "{input}"
        );
    }
}

fn request(method: Method, path: &str, accept: Option<&str>) -> Request<()> {
    let mut builder = Request::builder().method(method).uri(path);
    if let Some(accept) = accept {
        builder = builder.header(header::ACCEPT, accept);
    }
    builder.body(()).expect("a valid request")
}

#[test]
fn health_endpoints_follow_readiness() {
    let readiness = Readiness::default();
    let health = Endpoints::Health(readiness.clone());
    assert_eq!(
        respond(&health, &request(Method::GET, "/healthz", None)).status(),
        StatusCode::OK
    );
    assert_eq!(
        respond(&health, &request(Method::GET, "/readyz", None)).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    readiness.set_ready();
    assert_eq!(
        respond(&health, &request(Method::GET, "/readyz", None)).status(),
        StatusCode::OK
    );
    assert_eq!(
        respond(&health, &request(Method::GET, "/metrics", None)).status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        respond(&health, &request(Method::POST, "/healthz", None)).status(),
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[test]
fn readyz_needs_every_part_and_names_the_missing_ones() {
    let readiness = Readiness::default();
    let pods = readiness.part("pod cache");
    let scalers = readiness.part("podscaler cache");
    let health = Endpoints::Health(readiness.clone());
    let readyz = || {
        let response = respond(&health, &request(Method::GET, "/readyz", None));
        let status = response.status();
        let body =
            futures::executor::block_on(http_body_util::BodyExt::collect(response.into_body()))
                .expect("body")
                .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };
    assert_eq!(
        readyz(),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: startup, pod cache, podscaler cache\n".to_owned()
        )
    );
    readiness.set_ready();
    pods.set(true);
    assert_eq!(
        readyz(),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: podscaler cache\n".to_owned()
        )
    );
    scalers.set(true);
    assert_eq!(readyz(), (StatusCode::OK, "ok\n".to_owned()));
    // A part can turn unready again (a cache gone stale), and back.
    pods.clone().set(false);
    assert_eq!(
        readyz(),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: pod cache\n".to_owned()
        )
    );
    pods.set(true);
    assert!(readiness.is_ready());
}

#[tokio::test]
async fn metrics_endpoint_answers_in_the_format_asked_for() {
    use http_body_util::BodyExt;

    let mut registry = Registry::default();
    let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
    registry.register("demo_requests", "Demo requests", counter.clone());
    counter.inc();
    let metrics = Endpoints::Metrics(Arc::new(registry));
    for (accept, content_type, family) in [
        (
            None,
            "text/plain; version=0.0.4; charset=utf-8",
            "# TYPE demo_requests_total counter\n",
        ),
        (
            Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "# TYPE demo_requests counter\n",
        ),
    ] {
        let response = respond(&metrics, &request(Method::GET, "/metrics", accept));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(content_type.as_bytes()),
            "Accept: {accept:?}"
        );
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(text.contains("demo_requests_total 1\n"), "{text}");
        assert!(text.contains(family), "Accept: {accept:?}\n{text}");
    }
}

/// Allows the token `let-me-in`, as user `scraper`, and nothing else.
struct OneToken;

impl crate::metrics_auth::Reviewer for OneToken {
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> futures::future::BoxFuture<
        'a,
        Result<crate::metrics_auth::Authentication, crate::metrics_auth::ReviewError>,
    > {
        use crate::metrics_auth::{Authentication, UserInfo};
        let answer = if token == "let-me-in" {
            Authentication::Authenticated(UserInfo {
                username: "scraper".to_owned(),
                ..UserInfo::default()
            })
        } else {
            Authentication::Rejected
        };
        Box::pin(async move { Ok(answer) })
    }

    fn review_access<'a>(
        &'a self,
        _user: &'a crate::metrics_auth::UserInfo,
        access: &'a crate::metrics_auth::Access,
    ) -> futures::future::BoxFuture<'a, Result<bool, crate::metrics_auth::ReviewError>> {
        let allowed = access.verb == "get";
        Box::pin(async move { Ok(allowed) })
    }
}

fn guarded_registry() -> Endpoints {
    let mut registry = Registry::default();
    let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
    registry.register("demo_requests", "Demo requests", counter);
    Endpoints::AuthorizedMetrics(Arc::new(registry), Arc::new(MetricsAuth::new(OneToken)))
}

#[tokio::test]
async fn guarded_metrics_need_an_allowed_token() {
    let endpoints = guarded_registry();
    let with = |method: Method, path: &str, token: Option<&str>| {
        let mut builder = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        builder.body(()).expect("a valid request")
    };
    for (request, want) in [
        (
            with(Method::GET, "/metrics", None),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with(Method::GET, "/metrics", Some("guess")),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with(Method::HEAD, "/metrics", Some("let-me-in")),
            StatusCode::FORBIDDEN,
        ),
        (
            with(Method::GET, "/metrics", Some("let-me-in")),
            StatusCode::OK,
        ),
        (
            with(Method::GET, "/healthz", Some("let-me-in")),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let shown = format!("{} {}", request.method(), request.uri());
        assert_eq!(handle(&endpoints, &request).await.status(), want, "{shown}");
    }
}

/// The whole path a scraper takes: a TLS handshake with the generated certificate (trusted
/// through its CA, for `localhost`), then an authorized GET.
#[tokio::test]
async fn guarded_metrics_are_served_over_tls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let cert = metrics_tls::self_signed().expect("a certificate");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.chain[1].clone()).expect("the CA");
    let tls = metrics_tls::server_config(cert).expect("TLS");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let shutdown = CancellationToken::new();
    let server = spawn_tls(
        listener,
        Arc::new(tls),
        guarded_registry(),
        shutdown.clone(),
    );

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let get = |token: &'static str| {
        let client = Arc::new(client.clone());
        async move {
            let tcp = TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let mut tls = tokio_rustls::TlsConnector::from(client)
                .connect(name, tcp)
                .await
                .expect("handshake");
            let request = format!(
                "GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
            );
            tls.write_all(request.as_bytes()).await.expect("write");
            let mut response = String::new();
            tls.read_to_string(&mut response).await.expect("read");
            response
        }
    };
    let allowed = get("let-me-in").await;
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(allowed.contains("demo_requests_total 0"), "{allowed}");
    let refused = get("guess").await;
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    shutdown.cancel();
    server.await.expect("the server stops");
}
