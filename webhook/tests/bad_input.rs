//! The bad-input table, over real TLS: every case gets an answer the API server can act on
//! (an AdmissionReview error when the UID is known, a 4xx otherwise), is counted in the
//! metrics, and nothing hangs.

mod support;

use http::{Request, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{Value, json};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a case must produce.
enum Want {
    /// HTTP status with a `metav1.Status` body whose message contains the text.
    Status(StatusCode, &'static str),
    /// HTTP 200 with an AdmissionReview error: echoed UID, status code, message fragment.
    Review(&'static str, u16, &'static str),
}

struct Case {
    name: &'static str,
    request: Request<Full<Bytes>>,
    want: Want,
    /// The `webhook` label it is counted under.
    label: &'static str,
}

fn body(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("json")
}

fn with_request(mut review: Value, field: &str, value: Value) -> Value {
    review["request"][field] = value;
    review
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_table() {
    let pki = Pki::new();
    let volume = SecretVolume::new("bad-input", &pki.leaf());
    let (store, _writer) = synced_store(&[]);
    let config = quick_options();
    let limit = config.max_request_bytes;
    let server = Server::start(volume.path(), store, config).await;
    let client_config = pki.client_config(&[b"http/1.1"]);

    let cases = vec![
        Case {
            name: "empty body",
            request: post(VALIDATE, "application/json", vec![]),
            want: Want::Status(StatusCode::BAD_REQUEST, "the request body is empty"),
            label: VALIDATE,
        },
        Case {
            name: "non-JSON",
            request: post(MUTATE, "application/json", b"<xml/>".to_vec()),
            want: Want::Status(StatusCode::BAD_REQUEST, "not valid JSON"),
            label: MUTATE,
        },
        Case {
            name: "JSON that is not an AdmissionReview",
            request: post(
                VALIDATE,
                "application/json",
                body(&json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})),
            ),
            want: Want::Status(
                StatusCode::BAD_REQUEST,
                "expected kind \"AdmissionReview\", got \"Pod\"",
            ),
            label: VALIDATE,
        },
        Case {
            name: "missing request",
            request: post(
                VALIDATE,
                "application/json",
                body(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})),
            ),
            want: Want::Status(
                StatusCode::BAD_REQUEST,
                "the AdmissionReview has no request",
            ),
            label: VALIDATE,
        },
        Case {
            name: "unknown AdmissionReview version",
            request: post(VALIDATE, "application/json", {
                let mut review = sample_review("uid-v1beta1");
                review["apiVersion"] = json!("admission.k8s.io/v1beta1");
                body(&review)
            }),
            want: Want::Status(
                StatusCode::BAD_REQUEST,
                "unsupported AdmissionReview apiVersion \"admission.k8s.io/v1beta1\"",
            ),
            label: VALIDATE,
        },
        Case {
            name: "wrong kind of object",
            request: post(
                VALIDATE,
                "application/json",
                body(&with_request(
                    sample_review("uid-wrong-kind"),
                    "kind",
                    json!({"group": "", "version": "v1", "kind": "Pod"}),
                )),
            ),
            want: Want::Review("uid-wrong-kind", 400, "not /v1 Pod"),
            label: VALIDATE,
        },
        Case {
            // The mutating webhook lets it through for the schema to report; validation
            // refuses it naming the field.
            name: "object that does not deserialize as a PodScaler",
            request: post(
                VALIDATE,
                "application/json",
                body(&review(
                    "uid-bad-object",
                    "CREATE",
                    Some(scaler_json("x", json!({"count": 1, "selector": ["app"]}))),
                    None,
                )),
            ),
            want: Want::Review(
                "uid-bad-object",
                422,
                "spec.selector: invalid type: sequence, expected a map",
            ),
            label: VALIDATE,
        },
        Case {
            name: "wrong method",
            request: Request::get(VALIDATE)
                .header("host", "localhost")
                .body(Full::new(Bytes::new()))
                .expect("request"),
            want: Want::Status(StatusCode::METHOD_NOT_ALLOWED, "method GET is not allowed"),
            label: VALIDATE,
        },
        Case {
            name: "wrong content type",
            request: post(VALIDATE, "text/plain", body(&sample_review("uid-ct"))),
            want: Want::Status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type \"text/plain\" is not supported",
            ),
            label: VALIDATE,
        },
        Case {
            name: "no content type",
            request: post(MUTATE, "", body(&sample_review("uid-no-ct"))),
            want: Want::Status(StatusCode::UNSUPPORTED_MEDIA_TYPE, "has no Content-Type"),
            label: MUTATE,
        },
        Case {
            name: "unknown path",
            request: post("/validate-apps-v1-deployment", "application/json", vec![]),
            want: Want::Status(StatusCode::NOT_FOUND, "no webhook is served at"),
            label: "unmatched",
        },
    ];

    let (mut client, _) = Client::connect(server.addr, client_config.clone())
        .await
        .expect("connect");
    for case in cases {
        let before_code = match case.want {
            Want::Status(status, _) => status.as_u16(),
            Want::Review(..) => 200,
        };
        let counted_before = server.requests(case.label, before_code);
        // A refused request may close the connection; each case gets a fresh one if needed.
        let reply = match client.send(case.request).await {
            Ok(reply) => reply,
            Err(error) => panic!("{}: no answer: {error}", case.name),
        };
        match case.want {
            Want::Status(status, fragment) => {
                assert_eq!(reply.status, status, "{}: {:?}", case.name, reply.body);
                let body = reply.json();
                assert_eq!(body["kind"], "Status", "{}", case.name);
                assert_eq!(body["code"], status.as_u16(), "{}", case.name);
                let message = body["message"].as_str().unwrap_or_default();
                assert!(message.contains(fragment), "{}: {message}", case.name);
                if status == StatusCode::METHOD_NOT_ALLOWED {
                    assert_eq!(
                        reply.headers.get("allow").map(|v| v.as_bytes()),
                        Some(b"POST".as_slice())
                    );
                }
            }
            Want::Review(uid, code, fragment) => {
                assert_eq!(reply.status, StatusCode::OK, "{}", case.name);
                let body = reply.json();
                let response = &body["response"];
                assert_eq!(response["uid"], uid, "{}: UID echoed", case.name);
                assert_eq!(response["allowed"], false, "{}", case.name);
                assert_eq!(response["status"]["code"], code, "{}", case.name);
                let message = response["status"]["message"].as_str().unwrap_or_default();
                assert!(message.contains(fragment), "{}: {message}", case.name);
            }
        }
        assert_eq!(
            server.requests(case.label, before_code),
            counted_before + 1.0,
            "{}: counted under webhook={} code={before_code}",
            case.name,
            case.label
        );
        // Reconnect after every case: some refusals close the connection on purpose.
        (client, _) = Client::connect(server.addr, client_config.clone())
            .await
            .expect("reconnect");
    }

    // Oversized, declared: refused from the headers alone, nothing read.
    let raw = format!(
        "POST {VALIDATE} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        limit + 1
    );
    let answer = raw_exchange(server.addr, client_config.clone(), raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("larger than the limit"), "{answer}");
    assert_eq!(server.requests(VALIDATE, 413), 1.0);

    // Oversized without a Content-Length (chunked): cut off at the limit while reading.
    let oversized = body(&{
        let mut review = sample_review("uid-big");
        review["request"]["object"]["metadata"]["annotations"] =
            json!({"padding": "x".repeat(limit)});
        review
    });
    let head = format!(
        "POST {VALIDATE} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n",
        oversized.len()
    );
    let mut raw = head.into_bytes();
    raw.extend_from_slice(&oversized);
    raw.extend_from_slice(b"\r\n0\r\n\r\n");
    let answer = raw_exchange(server.addr, client_config.clone(), &raw).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(server.requests(VALIDATE, 413), 2.0);

    // A body that stops arriving: 408 after --read-body-timeout, not a hang.
    let raw = format!(
        "POST {VALIDATE} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"kind\":"
    );
    let answer = raw_exchange_keep_open(&server, client_config.clone(), raw.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(server.requests(VALIDATE, 408), 1.0);

    // Malformed HTTP: hyper answers 400 and closes; counted as a protocol error.
    let answer = raw_exchange(
        server.addr,
        client_config.clone(),
        b"NOT HTTP AT ALL\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    eventually("the protocol error to be counted", || async {
        server.connection_errors("http_protocol") >= 1.0
    })
    .await;

    // A client that connects and sends nothing: the handshake times out and the server closes.
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(PATIENCE, tcp.read(&mut buf))
        .await
        .expect("the server closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    eventually("the handshake timeout to be counted", || async {
        server.connection_errors("tls_handshake_timeout") >= 1.0
    })
    .await;

    // A client that completes TLS and then sends nothing: closed after --read-header-timeout.
    let mut tls = connect(server.addr, client_config.clone())
        .await
        .expect("handshake");
    let read = tokio::time::timeout(PATIENCE, tls.read(&mut buf))
        .await
        .expect("the server closes an idle TLS connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    eventually("the header timeout to be counted", || async {
        server.connection_errors("header_read_timeout") >= 1.0
    })
    .await;

    // Not TLS at all.
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    // The server may answer with a TLS alert; then it closes.
    tokio::time::timeout(PATIENCE, async {
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await
    .expect("the server closes a plaintext connection");
    eventually("the failed handshake to be counted", || async {
        server.connection_errors("tls_handshake_failed") >= 1.0
    })
    .await;

    // After all that, the server still answers.
    let (mut client, _) = Client::connect(server.addr, client_config)
        .await
        .expect("connect");
    let reply = client
        .post_json(VALIDATE, &sample_review("uid-still-fine"))
        .await
        .expect("reply");
    assert_eq!(reply.json()["response"]["allowed"], true);
    assert_eq!(
        server.metric(&format!(
            "controller_runtime_webhook_requests_in_flight{{webhook=\"{VALIDATE}\"}}"
        )),
        0.0
    );
    server.stop().await;
}

/// Sends `bytes` and reads what the server answers before it closes the connection, while
/// the client keeps its side open (the client never finishes its body).
async fn raw_exchange_keep_open(
    server: &Server,
    config: std::sync::Arc<rustls::ClientConfig>,
    bytes: &[u8],
) -> String {
    let mut stream = connect(server.addr, config).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream.flush().await.expect("flush");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to a stalled body");
    String::from_utf8_lossy(&out).into_owned()
}
