//! Reconcile passes against a mocked API server (tower-test): what is sent, and when not.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use podscaler::api::{PodScaler, PodScalerSpec, PodScalerStatus};
use podscaler::cache::pods::{PodCache, pod_cache};
use podscaler::contention::Fights;
use podscaler::expectations::{self, Expectations};
use podscaler::metrics::Metrics;
use podscaler::reconcile::{self, Context, Settings};
use podscaler::status;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

const NAMESPACE: &str = "shop";
const SCALER_UID: &str = "scaler-uid";

#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    body: Value,
}

/// How the fake API server answers pod creations.
#[derive(Clone, Copy)]
enum Creates {
    Succeed,
    ExceedQuota,
    /// Refuses (quota) only the create answered `n`-th, counting from 1.
    RefuseNth(u32),
}

struct FakeApi {
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

type Responder = tower_test::mock::SendResponse<Response<Body>>;

impl FakeApi {
    /// Answers every request as it arrives.
    fn start(creates: Creates) -> (Client, Self) {
        Self::start_holding_creates(creates, Vec::new())
    }

    /// Answers pod creations in groups of `groups[0]`, `groups[1]` … : the creates of a group
    /// get no answer until all of them have arrived, and are then answered last to first. A
    /// client that waits for some answers before it sends the rest of a group never gets
    /// any. Creates after the last group, and all other requests, are answered at once.
    fn start_holding_creates(creates: Creates, groups: Vec<usize>) -> (Client, Self) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&requests);
        let task = tokio::spawn(async move {
            let mut created = 0;
            let mut groups = groups.into_iter();
            let mut group = groups.next();
            let mut held: Vec<(Recorded, Responder)> = Vec::new();
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body.collect_bytes().await.expect("request body");
                let recorded = Recorded {
                    method: parts.method,
                    path: parts.uri.path().to_owned(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let Some(size) = group.filter(|_| is_pod_create(&recorded)) else {
                    reply(&log, recorded, send, creates, &mut created);
                    continue;
                };
                held.push((recorded, send));
                if held.len() == size {
                    for (recorded, send) in held.drain(..).rev() {
                        reply(&log, recorded, send, creates, &mut created);
                    }
                    group = groups.next();
                }
            }
        });
        (Client::new(service, NAMESPACE), Self { requests, task })
    }

    /// Waits until every client is dropped, then returns what was sent.
    async fn finish(self) -> Vec<Recorded> {
        self.task.await.expect("fake api task");
        Arc::try_unwrap(self.requests)
            .expect("sole owner")
            .into_inner()
            .expect("log")
    }
}

fn is_pod_create(request: &Recorded) -> bool {
    request.method == Method::POST && request.path == format!("/api/v1/namespaces/{NAMESPACE}/pods")
}

/// Answers `request` (see [`answer`]) and logs it.
fn reply(
    log: &Mutex<Vec<Recorded>>,
    request: Recorded,
    send: Responder,
    creates: Creates,
    created: &mut u32,
) {
    let (status, reply) = answer(
        &request.method,
        &request.path,
        &request.body,
        creates,
        created,
    );
    log.lock().expect("log").push(request);
    let response = Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(&reply).expect("json")))
        .expect("response");
    send.send_response(response);
}

fn quota_refusal() -> (StatusCode, Value) {
    (
        StatusCode::FORBIDDEN,
        json!({
            "kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Forbidden", "code": 403,
            "message": "pods \"web-x\" is forbidden: exceeded quota: two-pods, requested: pods=1, used: pods=2, limited: pods=2"
        }),
    )
}

fn answer(
    method: &Method,
    path: &str,
    body: &Value,
    creates: Creates,
    created: &mut u32,
) -> (StatusCode, Value) {
    let pods = format!("/api/v1/namespaces/{NAMESPACE}/pods");
    match (method.as_str(), path) {
        ("POST", p) if p == pods => {
            *created += 1;
            match creates {
                Creates::ExceedQuota => quota_refusal(),
                Creates::RefuseNth(n) if *created == n => quota_refusal(),
                Creates::Succeed | Creates::RefuseNth(_) => {
                    let mut pod = body.clone();
                    pod["metadata"]["name"] = json!(format!("web-{created:05}"));
                    pod["metadata"]["uid"] = json!(format!("new-uid-{created}"));
                    (StatusCode::CREATED, pod)
                }
            }
        }
        ("DELETE", p) if p.starts_with(&pods) => (
            StatusCode::OK,
            json!({"kind": "Pod", "apiVersion": "v1", "metadata": {}}),
        ),
        ("POST", p) if p.ends_with("/events") => (StatusCode::CREATED, body.clone()),
        ("PATCH", p) if p.ends_with("/status") => {
            let mut scaler = serde_json::to_value(scaler(1)).expect("json");
            scaler["status"] = body["status"].clone();
            scaler["metadata"]["resourceVersion"] = json!(WRITTEN_VERSION);
            (StatusCode::OK, scaler)
        }
        _ => (
            StatusCode::NOT_FOUND,
            json!({"kind": "Status", "code": 404, "message": "unexpected request"}),
        ),
    }
}

/// The resourceVersion the fake API gives a PodScaler whose status it patched.
const WRITTEN_VERSION: &str = "4711";

fn scaler(count: i32) -> PodScaler {
    let mut scaler = PodScaler::new(
        "web",
        PodScalerSpec {
            count,
            selector: BTreeMap::from([("app".to_owned(), "nginx".to_owned())]),
            template: None,
        },
    );
    scaler.metadata.namespace = Some(NAMESPACE.to_owned());
    scaler.metadata.uid = Some(SCALER_UID.to_owned());
    scaler.metadata.generation = Some(2);
    scaler
}

fn pod(name: &str, labels: &[(&str, &str)], controller: Option<(&str, &str, &str)>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NAMESPACE.to_owned()),
            uid: Some(format!("uid-{name}")),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            ),
            owner_references: controller.map(|(kind, owner, uid)| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: kind.into(),
                    name: owner.into(),
                    uid: uid.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            ..PodStatus::default()
        }),
    }
}

fn own(name: &str) -> Pod {
    pod(
        name,
        &[("app", "nginx")],
        Some(("PodScaler", "web", SCALER_UID)),
    )
}

fn store(pods: Vec<Pod>) -> PodCache {
    let (reader, mut writer) = pod_cache();
    for pod in pods {
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    reader
}

fn context(client: Client, pods: PodCache) -> (Arc<Context>, Registry) {
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry, 1);
    let ctx = Context::new(
        client,
        pods,
        metrics,
        Expectations::new(expectations::DEFAULT_TIMEOUT),
        Fights::default(),
        Settings {
            requeue_after: Duration::from_secs(15),
        },
    );
    (Arc::new(ctx), registry)
}

fn sent<'a>(requests: &'a [Recorded], method: Method, suffix: &str) -> Vec<&'a Recorded> {
    requests
        .iter()
        .filter(|r| r.method == method && r.path.ends_with(suffix))
        .collect()
}

fn patched_status(requests: &[Recorded]) -> Vec<PodScalerStatus> {
    sent(requests, Method::PATCH, "/status")
        .into_iter()
        .map(|r| serde_json::from_value(r.body["status"].clone()).expect("status"))
        .collect()
}

fn events(requests: &[Recorded]) -> Vec<(String, String)> {
    sent(requests, Method::POST, "/events")
        .into_iter()
        .map(|r| {
            (
                r.body["reason"].as_str().unwrap_or_default().to_owned(),
                r.body["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn condition<'a>(
    status: &'a PodScalerStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {status:?}"))
}

#[tokio::test]
async fn creates_the_missing_pods_then_waits_for_the_cache() {
    let mut terminating = own("old");
    terminating.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let pods = store(vec![
        own("a"),
        terminating,
        pod("other-app", &[("app", "db")], None),
        pod("elsewhere", &[("app", "nginx")], None).tap_namespace("other-ns"),
    ]);
    let (client, api) = FakeApi::start(Creates::Succeed);
    let (ctx, _registry) = context(client, pods);

    let action = reconcile::reconcile(Arc::new(scaler(3)), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    assert_eq!(action, Action::requeue(Duration::from_secs(15)));
    // The cache has not seen the two new pods: a second pass must not create them again.
    let again = reconcile::reconcile(Arc::new(scaler(3)), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    assert_eq!(again, Action::requeue(Duration::from_secs(15)));
    drop(ctx);
    let requests = api.finish().await;

    let creates = sent(&requests, Method::POST, "/pods");
    assert_eq!(
        creates.len(),
        2,
        "only the missing pods, once: {requests:#?}"
    );
    for create in creates {
        let meta = &create.body["metadata"];
        assert_eq!(meta["generateName"], "web-");
        assert_eq!(meta["labels"]["app"], "nginx");
        assert_eq!(meta["ownerReferences"][0]["kind"], "PodScaler");
        assert_eq!(meta["ownerReferences"][0]["uid"], SCALER_UID);
        assert_eq!(meta["ownerReferences"][0]["controller"], true);
        assert_eq!(meta["ownerReferences"][0]["blockOwnerDeletion"], true);
        assert_eq!(
            create.body["spec"]["containers"][0]["image"],
            "nginx:latest"
        );
    }
    assert_eq!(
        events(&requests),
        [(
            "SuccessfulCreate".to_owned(),
            "Created 2 pod(s): web-00001, web-00002".to_owned()
        )]
    );
    let statuses = patched_status(&requests);
    assert_eq!(
        statuses.len(),
        2,
        "first pass and the waiting pass differ in their Ready message"
    );
    assert_eq!(
        statuses[0].replicas, 1,
        "only the active matching pod in this namespace counts"
    );
    assert_eq!(statuses[0].observed_generation, Some(2));
    assert_eq!(statuses[0].selector, "app=nginx");
    assert_eq!(
        condition(&statuses[0], status::READY).reason,
        status::reason::SCALING_UP
    );
    assert!(
        condition(&statuses[1], status::READY)
            .message
            .contains("waiting to observe its earlier pod creations"),
        "{:?}",
        statuses[1]
    );
}

#[tokio::test]
async fn deletes_surplus_pods_its_own_first() {
    let pods = store(vec![
        own("a"),
        own("b"),
        pod(
            "rs-1",
            &[("app", "nginx")],
            Some(("ReplicaSet", "nginx-1", "rs-uid")),
        ),
    ]);
    let (client, api) = FakeApi::start(Creates::Succeed);
    let (ctx, _registry) = context(client, pods);
    reconcile::reconcile(Arc::new(scaler(1)), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    drop(ctx);
    let requests = api.finish().await;

    let deletes = sent(&requests, Method::DELETE, "");
    let mut deleted: Vec<&str> = deletes
        .iter()
        .map(|r| r.path.rsplit('/').next().unwrap_or_default())
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, ["a", "b"]);
    for delete in deletes {
        let name = delete.path.rsplit('/').next().unwrap_or_default();
        assert_eq!(
            delete.body["preconditions"]["uid"],
            format!("uid-{name}"),
            "deletes are preconditioned on the UID"
        );
    }
    assert!(sent(&requests, Method::POST, "/pods").is_empty());
    let reasons: Vec<String> = events(&requests)
        .into_iter()
        .map(|(reason, _)| reason)
        .collect();
    assert_eq!(
        reasons,
        ["SuccessfulDelete", status::reason::SHARED_SELECTOR]
    );
    let statuses = patched_status(&requests);
    assert_eq!(statuses[0].foreign_replicas, 1);
    assert_eq!(
        condition(&statuses[0], status::CONTENDED).reason,
        status::reason::SHARED_SELECTOR
    );
}

#[tokio::test]
async fn status_is_written_only_when_it_changed() {
    let pods = || store(vec![own("a"), own("b")]);
    let (client, api) = FakeApi::start(Creates::Succeed);
    let (ctx, _registry) = context(client, pods());
    reconcile::reconcile(Arc::new(scaler(2)), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    // The watch event of that write is recognised as the operator's own, and no other is.
    let mut echo = scaler(2);
    echo.metadata.resource_version = Some(WRITTEN_VERSION.to_owned());
    assert!(ctx.is_own_status_write(&echo));
    echo.metadata.resource_version = Some("4712".to_owned());
    assert!(!ctx.is_own_status_write(&echo), "a later change by anyone");
    drop(ctx);
    let first = api.finish().await;
    let written = patched_status(&first);
    assert_eq!(written.len(), 1);

    let mut current = scaler(2);
    current.status = Some(written[0].clone());
    let (client, api) = FakeApi::start(Creates::Succeed);
    let (ctx, _registry) = context(client, pods());
    reconcile::reconcile(Arc::new(current), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    drop(ctx);
    let second = api.finish().await;
    assert!(
        second.is_empty(),
        "a converged PodScaler with an up-to-date status sends nothing: {second:#?}"
    );
}

/// A pass woken by a pod event can start before the watch shows the operator's previous status
/// write: its cached PodScaler still carries the status before that write. When the new status
/// equals that older one, it must still be written, or the previous write stands (its own
/// watch event wakes nothing).
#[tokio::test]
async fn a_status_equal_only_to_an_outdated_cached_one_is_written() {
    let (client, api) = FakeApi::start(Creates::Succeed);
    let (ctx, _registry) = context(client, store(vec![own("a"), own("b")]));
    reconcile::reconcile(Arc::new(scaler(2)), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    drop(ctx);
    let converged = patched_status(&api.finish().await)
        .pop()
        .expect("a status write");

    let (pods, mut writer) = pod_cache();
    for pod in [own("a"), own("b"), own("c")] {
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    let (client, api) = FakeApi::start(Creates::Succeed);
    let (ctx, _registry) = context(client, pods);
    let mut cached = scaler(2);
    cached.status = Some(converged.clone());
    let cached = Arc::new(cached);
    // A third pod: one is deleted and "3 pods exist" is written.
    reconcile::reconcile(Arc::clone(&cached), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    // The deletion is observed; the cached PodScaler still shows the converged status.
    for gone in ["a", "b", "c"] {
        writer.apply_watcher_event(&watcher::Event::Delete(own(gone)));
    }
    for pod in [own("d"), own("e")] {
        writer.apply_watcher_event(&watcher::Event::Apply(pod));
    }
    reconcile::reconcile(cached, Arc::clone(&ctx))
        .await
        .expect("reconcile");
    drop(ctx);
    let written = patched_status(&api.finish().await);
    assert_eq!(written.len(), 2, "both passes write: {written:#?}");
    assert_eq!(written[0].replicas, 3);
    assert_eq!(written[1].replicas, 2);
}

#[tokio::test]
async fn a_refused_create_stops_the_pass_and_is_reported() {
    let (client, api) = FakeApi::start(Creates::ExceedQuota);
    let (ctx, registry) = context(client, store(vec![]));
    let result = reconcile::reconcile(Arc::new(scaler(5)), Arc::clone(&ctx)).await;
    let error = result
        .expect_err("a failed create is a failed reconcile")
        .to_string();
    assert!(error.contains("exceeded quota"), "{error}");
    drop(ctx);
    let requests = api.finish().await;

    assert_eq!(
        sent(&requests, Method::POST, "/pods").len(),
        1,
        "slow start stops after the first failed batch"
    );
    let events = events(&requests);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "FailedCreate");
    assert!(
        events[0].1.contains("exceeded quota: two-pods"),
        "{}",
        events[0].1
    );
    let statuses = patched_status(&requests);
    let failure = condition(&statuses[0], status::REPLICA_FAILURE);
    assert_eq!(
        (failure.status.as_str(), failure.reason.as_str()),
        ("True", status::reason::FAILED_CREATE)
    );
    assert!(
        failure.message.contains("exceeded quota: two-pods") && !failure.message.contains("web-x"),
        "the condition names the quota, not the refused pod: {}",
        failure.message
    );

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    assert!(
        text.contains("controller_runtime_reconcile_errors_total{controller=\"podscaler\"} 1\n"),
        "{text}"
    );
}

/// A guard for the passes against a fake that holds its answers: a pass that would wait
/// forever fails instead. The clock is paused in these tests, so the guard fires as soon as
/// nothing can make progress, not after real seconds.
const STUCK: Duration = Duration::from_secs(60);

#[tokio::test(start_paused = true)]
async fn each_slow_start_batch_is_issued_whole() {
    const COUNT: usize = 300;
    let batches = podscaler::plan::slow_start_batches(COUNT);
    assert!(
        batches.iter().any(|&size| size > 100),
        "the batches must be large enough to show a cap: {batches:?}"
    );
    let (client, api) = FakeApi::start_holding_creates(Creates::Succeed, batches);
    let (ctx, _registry) = context(client, store(vec![]));
    let pass = reconcile::reconcile(Arc::new(scaler(COUNT as i32)), Arc::clone(&ctx));
    tokio::time::timeout(STUCK, pass)
        .await
        .expect("every create of a batch is sent before any is answered")
        .expect("reconcile");
    drop(ctx);
    let requests = api.finish().await;
    assert_eq!(sent(&requests, Method::POST, "/pods").len(), COUNT);
    let created = events(&requests);
    assert!(
        created[0]
            .1
            .starts_with(&format!("Created {COUNT} pod(s): ")),
        "{created:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_in_a_batch_stops_slow_start_after_that_batch() {
    // Batches of 1, 2, 4 …: the 5th create falls in the third batch, creates 4 to 7.
    let (client, api) = FakeApi::start_holding_creates(Creates::RefuseNth(5), vec![1, 2, 4, 8, 16]);
    let (ctx, _registry) = context(client, store(vec![]));
    let pass = reconcile::reconcile(Arc::new(scaler(20)), Arc::clone(&ctx));
    let error = tokio::time::timeout(STUCK, pass)
        .await
        .expect("the batch with the refusal is answered whole")
        .expect_err("a refused create fails the pass");
    assert!(error.to_string().contains("exceeded quota"), "{error}");

    // Expectations hold every create that succeeded, the refused batch's too: the next pass
    // waits for the cache to show the six pods instead of creating them again.
    let mut changed = scaler(20);
    changed.metadata.generation = Some(3);
    let pass = reconcile::reconcile(Arc::new(changed), Arc::clone(&ctx));
    tokio::time::timeout(STUCK, pass)
        .await
        .expect("a pass waiting for the cache sends no create")
        .expect("reconcile");
    drop(ctx);
    let requests = api.finish().await;

    assert_eq!(
        sent(&requests, Method::POST, "/pods").len(),
        7,
        "the batch with the refusal is the last: {requests:#?}"
    );
    let reasons: Vec<(String, String)> = events(&requests);
    assert_eq!(reasons[0].0, "SuccessfulCreate");
    assert!(
        reasons[0].1.starts_with("Created 6 pod(s): "),
        "{reasons:?}"
    );
    assert_eq!(reasons[1].0, "FailedCreate");
    let statuses = patched_status(&requests);
    assert!(
        condition(statuses.last().expect("a status"), status::READY)
            .message
            .contains("waiting to observe its earlier pod creations"),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_deleted_podscaler_leaves_no_metric_series() {
    let (client, api) = FakeApi::start(Creates::Succeed);
    let (ctx, registry) = context(client, store(vec![own("a")]));
    reconcile::reconcile(Arc::new(scaler(1)), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    let encode = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    };
    assert!(encode().contains("podscaler_desired_pods{namespace=\"shop\",name=\"web\"} 1\n"));

    // Being deleted (a finalizer holds it): forgotten at once, nothing sent.
    let mut deleting = scaler(1);
    deleting.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let action = reconcile::reconcile(Arc::new(deleting), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    assert_eq!(action, Action::await_change());
    assert!(
        !encode().contains("name=\"web\""),
        "series left behind:\n{}",
        encode()
    );

    // Gone from the cache (the controller reports ObjectNotFound): forgotten too.
    reconcile::reconcile(Arc::new(scaler(1)), Arc::clone(&ctx))
        .await
        .expect("reconcile");
    assert!(encode().contains("name=\"web\""));
    ctx.forget(NAMESPACE, "web");
    assert!(!encode().contains("name=\"web\""));
    drop(ctx);
    let requests = api.finish().await;
    assert!(sent(&requests, Method::POST, "/pods").is_empty());
}

trait TapNamespace {
    fn tap_namespace(self, namespace: &str) -> Self;
}

impl TapNamespace for Pod {
    fn tap_namespace(mut self, namespace: &str) -> Self {
        self.metadata.namespace = Some(namespace.to_owned());
        self
    }
}
