//! Tests of the elector's lease handling.

//! The elector against a scripted API server, on tokio's paused clock: the times below are
//! virtual and exact, so the fencing and waiting rules are checked deterministically.

use super::*;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use prometheus_client::registry::Registry;
use serde_json::json;
use tower_test::mock::{Handle, SendResponse};

type Server = Handle<Request<Body>, Response<Body>>;

fn elector() -> (Elector, Server, Registry) {
    let (service, server) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let mut registry = Registry::default();
    let status = MasterStatus::register(&mut registry, "lease");
    let config = ElectionConfig {
        lease_name: "lease".to_owned(),
        namespace: "ns".to_owned(),
        identity: "me".to_owned(),
        timing: Timing::default(),
    };
    (
        Elector::new(Client::new(service, "ns"), config, status),
        server,
        registry,
    )
}

fn reply(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("a response")
}

fn failure(code: u16, reason: &str) -> Response<Body> {
    let status = StatusCode::from_u16(code).expect("a status code");
    reply(
        status,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                    "reason": reason, "message": reason}),
    )
}

fn lease(holder: &str, resource_version: &str, transitions: i32) -> serde_json::Value {
    json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": "lease", "namespace": "ns", "resourceVersion": resource_version},
               "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                        "acquireTime": "2026-01-01T00:00:00.000000Z",
                        "renewTime": "2026-01-01T00:00:00.000000Z",
                        "leaseTransitions": transitions}})
}

async fn next(server: &mut Server) -> (Method, serde_json::Value, SendResponse<Response<Body>>) {
    let (request, send) = server.next_request().await.expect("a request");
    let method = request.method().clone();
    let bytes = request
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (method, body, send)
}

fn page(registry: &Registry) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry).expect("encode");
    out
}

/// Answers the first acquire: no Lease yet, so it is created. Returns when it was stored.
async fn created(server: &mut Server) -> Instant {
    let (method, _, send) = next(server).await;
    assert_eq!(method, Method::GET);
    send.send_response(failure(404, "NotFound"));
    let (method, mut body, send) = next(server).await;
    assert_eq!(method, Method::POST);
    assert_eq!(body["spec"]["holderIdentity"], "me");
    assert_eq!(body["spec"]["leaseTransitions"], 0);
    body["metadata"]["resourceVersion"] = json!("1");
    send.send_response(reply(StatusCode::CREATED, &body));
    Instant::now()
}

#[tokio::test(start_paused = true)]
async fn a_leader_that_cannot_renew_stops_before_its_lease_can_run_out() {
    let (mut elector, mut server, registry) = elector();
    let shutdown = CancellationToken::new();
    let (acquired, stored) = tokio::join!(elector.acquire(&shutdown), created(&mut server));
    assert!(acquired.expect("no RBAC error"));
    assert!(page(&registry).contains("leader_election_master_status{name=\"lease\"} 1\n"));

    // Every renewal from now on fails (the API server unreachable from this replica).
    let refuse = async {
        let mut attempts = 0;
        loop {
            let (method, _, send) = next(&mut server).await;
            assert!(method == Method::PUT || method == Method::GET, "{method}");
            send.send_response(failure(503, "ServiceUnavailable"));
            attempts += 1;
            if attempts > 100 {
                panic!("still renewing after 100 refusals");
            }
        }
    };
    let lost = tokio::select! {
        lost = elector.hold() => lost,
        () = refuse => unreachable!(),
    };
    assert!(matches!(lost, ElectionError::Lost(_)), "{lost}");
    let stopped_after = Instant::now() - stored;
    // A candidate that saw the created Lease may take it 15 s after seeing it, and saw it
    // no earlier than it was stored.
    assert!(
        stopped_after < Timing::default().lease_duration,
        "stopped {stopped_after:?} after the last write"
    );
    assert!(page(&registry).contains("leader_election_master_status{name=\"lease\"} 0\n"));
}

#[tokio::test(start_paused = true)]
async fn a_standby_takes_an_unrenewed_lease_only_after_the_lease_duration() {
    let (mut elector, mut server, _registry) = elector();
    let shutdown = CancellationToken::new();
    let api = async {
        let first_read = Instant::now();
        loop {
            let (method, body, send) = next(&mut server).await;
            match method {
                // The same record each time: its holder stopped renewing.
                Method::GET => send.send_response(reply(StatusCode::OK, &lease("other", "5", 3))),
                Method::PUT => {
                    assert_eq!(
                        body["metadata"]["resourceVersion"], "5",
                        "guarded by the read"
                    );
                    assert_eq!(body["spec"]["holderIdentity"], "me");
                    assert_eq!(body["spec"]["leaseTransitions"], 4);
                    send.send_response(reply(StatusCode::OK, &body));
                    return Instant::now() - first_read;
                }
                other => panic!("unexpected {other}"),
            }
        }
    };
    let (acquired, waited) = tokio::join!(elector.acquire(&shutdown), api);
    assert!(acquired.expect("no RBAC error"));
    assert!(
        waited >= Timing::default().lease_duration,
        "took over after {waited:?}"
    );
    assert!(elector.is_leader());
}

#[tokio::test(start_paused = true)]
async fn a_release_frees_the_lease_for_the_next_leader() {
    let (mut elector, mut server, registry) = elector();
    let shutdown = CancellationToken::new();
    let (acquired, _) = tokio::join!(elector.acquire(&shutdown), created(&mut server));
    assert!(acquired.expect("no RBAC error"));
    let api = async {
        let (method, _, send) = next(&mut server).await;
        assert_eq!(method, Method::GET);
        send.send_response(reply(StatusCode::OK, &lease("me", "7", 2)));
        let (method, body, send) = next(&mut server).await;
        assert_eq!(method, Method::PUT);
        send.send_response(reply(StatusCode::OK, &body));
        body
    };
    let ((), written) = tokio::join!(elector.release(), api);
    assert_eq!(written["metadata"]["resourceVersion"], "7");
    assert_eq!(written["spec"]["holderIdentity"], "");
    assert_eq!(written["spec"]["leaseDurationSeconds"], 1);
    assert_eq!(
        written["spec"]["leaseTransitions"], 2,
        "a release is no transition"
    );
    assert!(page(&registry).contains("leader_election_master_status{name=\"lease\"} 0\n"));
}

#[tokio::test]
async fn a_forbidden_lease_stops_the_candidate_with_the_grant_to_add() {
    let (mut elector, mut server, _registry) = elector();
    let shutdown = CancellationToken::new();
    let api = async {
        let (_, _, send) = next(&mut server).await;
        send.send_response(failure(403, "Forbidden"));
    };
    let (acquired, ()) = tokio::join!(elector.acquire(&shutdown), api);
    let error = acquired.expect_err("RBAC refused").to_string();
    assert!(
        error.contains("grant get, create and update on leases"),
        "{error}"
    );
}
