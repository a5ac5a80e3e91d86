//! Admission over real TLS on 127.0.0.1: allowed, denied with messages, patch content,
//! overlap against an injected store, metrics, HTTP/2 only when enabled.

mod support;

use podscaler_webhook::Options;
use serde_json::{Value, json};
use support::*;

fn patch_ops(reply: &Value) -> Value {
    let bytes: Vec<u8> = reply["response"]["patch"]
        .as_array()
        .expect("a patch")
        .iter()
        .map(|b| u8::try_from(b.as_u64().expect("byte")).expect("byte"))
        .collect();
    serde_json::from_slice(&bytes).expect("patch is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_over_tls() {
    let pki = Pki::new();
    let volume = SecretVolume::new("admission", &pki.leaf());
    let (store, _writer) = synced_store(&[
        podscaler("default", "web", &[("app", "web")]),
        podscaler("default", "example-podscaler", &[("app", "nginx")]),
    ]);
    let server = Server::start(volume.path(), store, Options::default()).await;
    let (mut client, _) = Client::connect(server.addr, pki.client_config(&[b"http/1.1"]))
        .await
        .expect("connect");

    // Allowed: the seed sample (the same-named PodScaler in the store is the object itself).
    let reply = client
        .post_json(VALIDATE, &sample_review("uid-allowed"))
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.headers.get("content-type").map(|v| v.as_bytes()),
        Some(b"application/json".as_slice())
    );
    let body = reply.json();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], "uid-allowed");
    assert_eq!(body["response"]["allowed"], true);

    // Denied, every violation named with its field.
    let invalid = review(
        "uid-denied",
        "CREATE",
        Some(scaler_json(
            "bad",
            json!({"count": -1, "selector": {"app": "web", "bad key": "v"}}),
        )),
        None,
    );
    let body = client
        .post_json(VALIDATE, &invalid)
        .await
        .expect("reply")
        .json();
    let response = &body["response"];
    assert_eq!(response["uid"], "uid-denied");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(response["status"]["reason"], "Invalid");
    let message = response["status"]["message"].as_str().expect("message");
    for fragment in [
        "PodScaler.scaling.example.com \"bad\" is invalid: ",
        "spec.count: must be 0 or more (got -1)",
        "spec.selector[\"bad key\"]: \"bad key\" is not a valid label key",
    ] {
        assert!(
            message.contains(fragment),
            "{fragment:?} missing from {message}"
        );
    }
    let fields: Vec<&str> = response["status"]["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .map(|c| c["field"].as_str().expect("field"))
        .collect();
    // Not also "overlaps PodScaler \"web\"": the selector's syntax is its whole problem.
    assert_eq!(fields, ["spec.count", "spec.selector[\"bad key\"]"]);

    // Selector change on UPDATE.
    let update = review(
        "uid-update",
        "UPDATE",
        Some(scaler_json(
            "example-podscaler",
            json!({"count": 4, "selector": {"app": "apache"}}),
        )),
        Some(scaler_json(
            "example-podscaler",
            json!({"count": 4, "selector": {"app": "nginx"}}),
        )),
    );
    let body = client
        .post_json(VALIDATE, &update)
        .await
        .expect("reply")
        .json();
    assert_eq!(body["response"]["allowed"], false);
    assert!(
        body["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("spec.selector: is immutable")),
        "{body}"
    );

    // Mutating: the default template, as a JSON patch.
    let body = client
        .post_json(MUTATE, &sample_review("uid-mutate"))
        .await
        .expect("reply")
        .json();
    assert_eq!(body["response"]["uid"], "uid-mutate");
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    assert_eq!(
        patch_ops(&body),
        json!([{
            "op": "add",
            "path": "/spec/template",
            "value": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}
            }
        }])
    );

    // Nothing to default: no patch at all.
    let defaulted = review(
        "uid-nothing",
        "CREATE",
        Some(scaler_json(
            "full",
            json!({"count": 1, "selector": {"app": "x"}, "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {"containers": [{"name": "x", "image": "busybox"}]}}}),
        )),
        None,
    );
    let body = client
        .post_json(MUTATE, &defaulted)
        .await
        .expect("reply")
        .json();
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none(), "{body}");

    // Counted as controller-runtime counts them, plus the decisions.
    assert_eq!(server.requests(VALIDATE, 200), 3.0);
    assert_eq!(server.requests(MUTATE, 200), 2.0);
    assert_eq!(
        server.metric(&format!(
            "podscaler_admission_decisions_total{{webhook=\"{VALIDATE}\",operation=\"CREATE\",allowed=\"false\"}}"
        )),
        1.0
    );
    assert_eq!(
        server.metric(&format!(
            "podscaler_admission_decisions_total{{webhook=\"{VALIDATE}\",operation=\"UPDATE\",allowed=\"false\"}}"
        )),
        1.0
    );
    assert_eq!(
        server.metric(&format!(
            "controller_runtime_webhook_latency_seconds_count{{webhook=\"{MUTATE}\"}}"
        )),
        2.0
    );
    assert_eq!(
        server.metric(&format!(
            "controller_runtime_webhook_requests_in_flight{{webhook=\"{VALIDATE}\"}}"
        )),
        0.0
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_follows_the_store() {
    let pki = Pki::new();
    let volume = SecretVolume::new("overlap", &pki.leaf());
    let (store, mut writer) = synced_store(&[]);
    let server = Server::start(volume.path(), store, Options::default()).await;
    let (mut client, _) = Client::connect(server.addr, pki.client_config(&[]))
        .await
        .expect("connect");

    let candidate = review(
        "uid-1",
        "CREATE",
        Some(scaler_json(
            "second",
            json!({"count": 1, "selector": {"tier": "web"}}),
        )),
        None,
    );
    let body = client
        .post_json(VALIDATE, &candidate)
        .await
        .expect("reply")
        .json();
    assert_eq!(body["response"]["allowed"], true, "{body}");

    // Another PodScaler appears in the watched cache: the same request now overlaps it.
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(podscaler(
        "default",
        "first",
        &[("app", "nginx")],
    )));
    let body = client
        .post_json(VALIDATE, &candidate)
        .await
        .expect("reply")
        .json();
    assert_eq!(body["response"]["allowed"], false, "{body}");
    let message = body["response"]["status"]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.contains(
            "spec.selector: overlaps PodScaler \"first\" (selector \"app=nginx\"): a pod labelled \"app=nginx,tier=web\" would match both"
        ),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsynced_cache_is_a_retryable_error() {
    let pki = Pki::new();
    let volume = SecretVolume::new("unsynced", &pki.leaf());
    let (store, _writer) = podscaler_webhook::cache::store();
    let server = Server::start(volume.path(), store, Options::default()).await;
    let (mut client, _) = Client::connect(server.addr, pki.client_config(&[]))
        .await
        .expect("connect");
    let body = client
        .post_json(VALIDATE, &sample_review("uid-early"))
        .await
        .expect("reply")
        .json();
    assert_eq!(body["response"]["uid"], "uid-early");
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(body["response"]["status"]["code"], 503);
    // Defaulting needs no cache.
    let body = client
        .post_json(MUTATE, &sample_review("uid-early-mutate"))
        .await
        .expect("reply")
        .json();
    assert_eq!(body["response"]["allowed"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_only_when_enabled() {
    let pki = Pki::new();
    let volume = SecretVolume::new("http2", &pki.leaf());
    let both: &[&[u8]] = &[b"h2", b"http/1.1"];

    let (store, _writer) = synced_store(&[]);
    let server = Server::start(volume.path(), store, Options::default()).await;
    let (mut client, _) = Client::connect(server.addr, pki.client_config(both))
        .await
        .expect("connect");
    assert!(!client.is_http2(), "HTTP/2 is off by default");
    let reply = client
        .post_json(VALIDATE, &sample_review("uid-h1"))
        .await
        .expect("reply");
    assert_eq!(reply.status, 200);
    // A client that insists on h2 is refused at the handshake.
    assert!(
        connect(server.addr, pki.client_config(&[b"h2"]))
            .await
            .is_err(),
        "h2-only client must not connect"
    );
    server.stop().await;

    let (store, _writer) = synced_store(&[]);
    let config = Options {
        http2: true,
        ..Options::default()
    };
    let server = Server::start(volume.path(), store, config).await;
    let (mut client, _) = Client::connect(server.addr, pki.client_config(both))
        .await
        .expect("connect");
    assert!(client.is_http2(), "HTTP/2 negotiated when enabled");
    let body = client
        .post_json(VALIDATE, &sample_review("uid-h2"))
        .await
        .expect("reply")
        .json();
    assert_eq!(body["response"]["uid"], "uid-h2");
    assert_eq!(body["response"]["allowed"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_versions_are_1_2_and_1_3_only() {
    let pki = Pki::new();
    let volume = SecretVolume::new("versions", &pki.leaf());
    let (store, _writer) = synced_store(&[]);
    let server = Server::start(volume.path(), store, Options::default()).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let stream = connect(
            server.addr,
            pki.client_config_with_versions(&[], &[version]),
        )
        .await
        .expect("handshake");
        assert_eq!(
            stream.get_ref().1.protocol_version(),
            Some(version.version),
            "{version:?}"
        );
    }
    server.stop().await;
}
