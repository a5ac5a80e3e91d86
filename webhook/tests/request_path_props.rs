//! Properties of the request path, on the pure entry point `admission::answer` (what the server
//! calls with every request body): whatever the body, and whichever webhook, cluster cache and
//! `--max-count`, nothing panics, and the answer is one the API server can act on:
//!
//! - a body that is an `admission.k8s.io/v1` AdmissionReview whose `request.uid` is a
//!   non-empty string gets HTTP 200 and an AdmissionReview whose `response.uid` echoes it (a
//!   denial carries a 4xx/5xx `Failure` status with a message);
//! - any other body gets a 4xx with a `metav1.Status` body (there is no UID to answer).
//!
//! Answers are deterministic, and a defaulting patch applies to the object it was computed
//! for and leaves nothing more to default.
//!
//! Bodies are (a) arbitrary bytes, including corrupted AdmissionReviews, and (b) arbitrary
//! JSON shaped like an AdmissionReview: random apiVersion/kind, random or missing request,
//! uid, operation, kind and objects, including PodScaler-like objects with random count,
//! selector and template values, and reviews of the scale subresource with Scale-like objects.

use std::collections::BTreeMap;

use http::StatusCode;
use podscaler::validation::SpecLimits;
use podscaler_webhook::admission::{self, Answer, PodScalerIndex, Webhook};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Map, Value, json};

const CASES: u32 = 256;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: CASES,
        // Failures are reported with their shrunk input; nothing is written to the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A PodScaler cache: `None` until synced, then name and selector of every PodScaler (in any
/// namespace, so the overlap check runs whatever namespace the request names).
struct Cache(Option<Vec<(String, BTreeMap<String, String>)>>);

impl PodScalerIndex for Cache {
    fn selectors_in(&self, _namespace: &str) -> Option<Vec<(String, BTreeMap<String, String>)>> {
        self.0.clone()
    }
}

fn caches() -> [Cache; 3] {
    let selector = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    [
        Cache(None),
        Cache(Some(Vec::new())),
        Cache(Some(vec![
            ("web".to_owned(), selector(&[("app", "web")])),
            (
                "other".to_owned(),
                selector(&[("app", "nginx"), ("tier", "x")]),
            ),
        ])),
    ]
}

fn spec_limits() -> [SpecLimits; 2] {
    [SpecLimits::default(), SpecLimits { max_count: 3 }]
}

// ---------------------------------------------------------------------------------------------
// Generators. Each returns a boxed strategy: unboxed, the nested strategy types make value
// trees too large for a test thread's stack in debug builds.

/// Strings: mostly name-like, sometimes anything (any Unicode, control characters, long).
fn text() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-z0-9]([-a-z0-9]{0,10}[a-z0-9])?",
        2 => "[A-Za-z0-9._/ -]{0,20}",
        1 => "[a-z]{60,70}",
        2 => any::<String>(),
        1 => "\\PC{0,80}",
    ]
    .boxed()
}

fn label_key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "(app|tier|name|example\\.com/app)",
        2 => "([a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?\\.){0,3}[a-z]{1,5}/[A-Za-z0-9][-A-Za-z0-9_.]{0,70}",
        2 => "[A-Za-z0-9._/-]{0,70}",
        1 => text(),
    ]
    .boxed()
}

fn label_value() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "(web|nginx|x|backend)",
        2 => "[A-Za-z0-9._-]{0,70}",
        1 => text(),
    ]
    .boxed()
}

/// Any JSON value, a few levels deep.
fn arb_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // NaN and infinities become null
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
    .boxed()
}

/// `Some(value)`: the field is set; `None`: the field is absent.
type Field = Option<Value>;

/// An object holding the fields that are set.
fn object(fields: Vec<(&str, Field)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(name, value)| value.map(|value| (name.to_owned(), value)))
            .collect::<Map<String, Value>>(),
    )
}

/// A field of an object's content: usually `likely`, sometimes absent, null or any JSON.
fn field(likely: BoxedStrategy<Value>) -> BoxedStrategy<Field> {
    prop_oneof![
        16 => likely.prop_map(Some),
        1 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => arb_json().prop_map(Some),
    ]
    .boxed()
}

/// One of `likely` (mostly the first), or any string.
fn one_of(likely: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        6 => Just(Value::from(likely[0])),
        2 => prop::sample::select(likely).prop_map(Value::from),
        1 => text().prop_map(Value::String),
    ]
    .boxed()
}

fn labels() -> BoxedStrategy<Value> {
    prop::collection::btree_map(label_key(), label_value(), 0..4)
        .prop_map(|map| Value::Object(map.into_iter().map(|(k, v)| (k, v.into())).collect()))
        .boxed()
}

fn count() -> BoxedStrategy<Value> {
    prop_oneof![
        12 => (-3i64..8).prop_map(Value::from),
        1 => any::<i32>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => text().prop_map(Value::String),
    ]
    .boxed()
}

fn container() -> BoxedStrategy<Value> {
    (
        field(one_of(&["nginx", "app", "sidecar", "", "Bad_Name"])),
        field(one_of(&["nginx:1.27", "busybox", "", " "])),
    )
        .prop_map(|(name, image)| object(vec![("name", name), ("image", image)]))
        .boxed()
}

/// A pod template, valid or not.
fn template() -> BoxedStrategy<Value> {
    let metadata = field(
        field(labels())
            .prop_map(|labels| object(vec![("labels", labels)]))
            .boxed(),
    );
    let spec = field(
        (
            field(
                prop::collection::vec(container(), 0..3)
                    .prop_map(Value::Array)
                    .boxed(),
            ),
            proptest::option::weighted(0.3, field(one_of(&["Always", "Never", "OnFailure"]))),
        )
            .prop_map(|(containers, restart)| {
                object(vec![
                    ("containers", containers),
                    ("restartPolicy", restart.flatten()),
                ])
            })
            .boxed(),
    );
    (metadata, spec)
        .prop_map(|(metadata, spec)| object(vec![("metadata", metadata), ("spec", spec)]))
        .boxed()
}

/// Something that looks like a PodScaler, with random count, selector and template.
fn podscaler_like() -> BoxedStrategy<Value> {
    let spec = (
        field(count()),
        field(labels()),
        prop_oneof![
            3 => Just(None),
            3 => template().prop_map(Some),
            1 => Just(Some(Value::Null)),
            1 => arb_json().prop_map(Some),
        ],
    )
        .prop_map(|(count, selector, template)| {
            object(vec![
                ("count", count),
                ("selector", selector),
                ("template", template),
            ])
        })
        .boxed();
    let metadata = (
        field(one_of(&["example", "web", "other"])),
        field(one_of(&["default", "kube-system"])),
    )
        .prop_map(|(name, namespace)| object(vec![("name", name), ("namespace", namespace)]))
        .boxed();
    (
        field(one_of(&["scaling.example.com/v1"])),
        field(one_of(&["PodScaler"])),
        field(metadata),
        field(spec),
    )
        .prop_map(|(api_version, kind, metadata, spec)| {
            object(vec![
                ("apiVersion", api_version),
                ("kind", kind),
                ("metadata", metadata),
                ("spec", spec),
            ])
        })
        .boxed()
}

/// Something that looks like the autoscaling/v1 Scale of a PodScaler's scale subresource.
fn scale_like() -> BoxedStrategy<Value> {
    (
        field(one_of(&["autoscaling/v1"])),
        field(one_of(&["Scale"])),
        field(
            field(count())
                .prop_map(|replicas| object(vec![("replicas", replicas)]))
                .boxed(),
        ),
    )
        .prop_map(|(api_version, kind, spec)| {
            object(vec![
                ("apiVersion", api_version),
                ("kind", kind),
                (
                    "metadata",
                    Some(json!({"name": "example", "namespace": "default"})),
                ),
                ("spec", spec),
            ])
        })
        .boxed()
}

/// A scale-subresource review as the API server sends it (matchPolicy Equivalent), with random
/// operation and Scales.
fn well_formed_scale_review() -> BoxedStrategy<Value> {
    (
        uid(),
        prop_oneof![4 => Just("UPDATE"), 1 => Just("CREATE")],
        scale_like(),
        scale_like(),
    )
        .prop_map(|(uid, operation, object, old)| {
            json!({
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": uid,
                    "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
                    "resource": {"group": "scaling.example.com", "version": "v1", "resource": "podscalers"},
                    "subResource": "scale",
                    "name": "example",
                    "namespace": "default",
                    "operation": operation,
                    "userInfo": {"username": "kubernetes-admin"},
                    "object": object,
                    "oldObject": old,
                },
            })
        })
        .boxed()
}

fn uid() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => "[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}".prop_map(Value::from),
        1 => any::<String>().prop_filter("non-empty", |s| !s.is_empty()).prop_map(Value::from),
    ]
    .boxed()
}

/// An AdmissionReview for a PodScaler as the API server sends it, with random contents: uid,
/// operation, names, sub-resource, and PodScaler-like objects (valid or not).
fn well_formed_review() -> BoxedStrategy<Value> {
    let request = (
        uid(),
        prop_oneof![
            4 => Just("CREATE"),
            4 => Just("UPDATE"),
            1 => Just("DELETE"),
            1 => Just("CONNECT"),
        ],
        proptest::option::weighted(0.1, prop::sample::select(&["status", "scale", ""][..])),
        text(),
        text(),
        podscaler_like(),
        podscaler_like(),
        any::<bool>(),
    )
        .prop_map(
            |(uid, operation, sub_resource, name, namespace, object, old, dry_run)| {
                let (object, old) = match operation {
                    "CREATE" => (object, Value::Null),
                    "UPDATE" => (object, old),
                    "DELETE" => (Value::Null, old),
                    _ => (object, Value::Null),
                };
                let mut request = json!({
                    "uid": uid,
                    "kind": {"group": "scaling.example.com", "version": "v1", "kind": "PodScaler"},
                    "resource": {"group": "scaling.example.com", "version": "v1", "resource": "podscalers"},
                    "name": name,
                    "namespace": namespace,
                    "operation": operation,
                    "userInfo": {"username": "kubernetes-admin"},
                    "object": object,
                    "oldObject": old,
                    "dryRun": dry_run,
                });
                if let Some(sub_resource) = sub_resource {
                    request["subResource"] = sub_resource.into();
                }
                json!({
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": request,
                })
            },
        );
    request.boxed()
}

/// Where a mutation of a well-formed review applies (JSON pointers; "" is the whole review).
const MUTABLE: &[&str] = &[
    "",
    "/apiVersion",
    "/kind",
    "/request",
    "/request/uid",
    "/request/kind",
    "/request/kind/group",
    "/request/kind/kind",
    "/request/resource",
    "/request/subResource",
    "/request/name",
    "/request/namespace",
    "/request/operation",
    "/request/userInfo",
    "/request/object",
    "/request/oldObject",
    "/request/dryRun",
    "/request/object/apiVersion",
    "/request/object/kind",
    "/request/object/metadata",
    "/request/object/spec",
    "/request/object/spec/count",
    "/request/object/spec/selector",
    "/request/object/spec/template",
    "/request/oldObject/spec/selector",
    "/request/object/spec/replicas",
];

/// What a mutation does at its place.
#[derive(Clone, Debug)]
enum Mutation {
    Remove,
    Set(Value),
}

fn mutation() -> BoxedStrategy<(&'static str, Mutation)> {
    (
        prop::sample::select(MUTABLE),
        prop_oneof![
            1 => Just(Mutation::Remove),
            1 => prop_oneof![
                Just(Value::from("admission.k8s.io/v1beta1")),
                Just(Value::from("")),
                Just(Value::from("create")),
                text().prop_map(Value::String),
            ]
            .prop_map(Mutation::Set),
            2 => arb_json().prop_map(Mutation::Set),
        ],
    )
        .boxed()
}

fn apply(review: &mut Value, (path, mutation): (&str, Mutation)) {
    if path.is_empty() {
        if let Mutation::Set(value) = mutation {
            *review = value;
        }
        return;
    }
    let (parent, name) = path.rsplit_once('/').expect("a pointer");
    let Some(Value::Object(parent)) = review.pointer_mut(parent) else {
        return; // an earlier mutation removed or replaced the parent
    };
    match mutation {
        Mutation::Remove => {
            parent.remove(name);
        }
        Mutation::Set(value) => {
            parent.insert(name.to_owned(), value);
        }
    }
}

/// JSON shaped like an AdmissionReview: a well-formed one with up to three random changes
/// (fields removed, or set to other strings or any JSON), so the envelope is intact often
/// enough to reach validation and defaulting.
fn review() -> BoxedStrategy<Value> {
    (
        prop_oneof![4 => well_formed_review(), 1 => well_formed_scale_review()],
        prop_oneof![
            2 => Just(Vec::new()),
            3 => prop::collection::vec(mutation(), 1..4),
        ],
    )
        .prop_map(|(mut review, mutations)| {
            for mutation in mutations {
                apply(&mut review, mutation);
            }
            review
        })
        .boxed()
}

/// Arbitrary bytes: random, whitespace, any JSON document, or a serialized review with a few
/// bytes overwritten, cut short or with garbage appended.
fn bytes() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..512),
        1 => "[ \t\r\n]{0,8}".prop_map(String::into_bytes),
        1 => arb_json().prop_map(|value| serde_json::to_vec(&value).expect("encode")),
        3 => (
            review(),
            prop::collection::vec((any::<Index>(), any::<u8>()), 0..4),
            any::<Index>(),
            prop::collection::vec(any::<u8>(), 0..4),
            0u8..3,
        )
            .prop_map(|(review, edits, cut, tail, how)| {
                let mut bytes = serde_json::to_vec(&review).expect("encode");
                for (at, byte) in edits {
                    if !bytes.is_empty() {
                        let at = at.index(bytes.len());
                        bytes[at] = byte;
                    }
                }
                match how {
                    0 => bytes.truncate(cut.index(bytes.len() + 1)),
                    1 => bytes.extend_from_slice(&tail),
                    _ => {}
                }
                bytes
            }),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// The oracle.

/// The UID the answer must echo: that of a v1 AdmissionReview whose `request.uid` is a
/// non-empty string; `None` when the body is anything else.
fn expected_uid(body: &[u8]) -> Option<String> {
    let review: Value = serde_json::from_slice(body).ok()?;
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview")
        || review.get("apiVersion").and_then(Value::as_str) != Some("admission.k8s.io/v1")
    {
        return None;
    }
    match review.get("request")?.get("uid")? {
        Value::String(uid) if !uid.is_empty() => Some(uid.clone()),
        _ => None,
    }
}

/// The operation label the decision must carry.
fn expected_operation(body: &[u8]) -> &'static str {
    let review: Value = serde_json::from_slice(body).expect("a review with a uid is JSON");
    match review["request"]["operation"].as_str() {
        Some("CREATE") => "CREATE",
        Some("UPDATE") => "UPDATE",
        Some("DELETE") => "DELETE",
        Some("CONNECT") => "CONNECT",
        _ => "UNKNOWN",
    }
}

/// Checks one answer to `body` and returns its parsed body.
fn check(body: &[u8], answer: &Answer) -> Result<Value, TestCaseError> {
    let reply: Value = serde_json::from_slice(&answer.body).map_err(|error| {
        TestCaseError::fail(format!(
            "the answer is not JSON ({error}): {:?}",
            String::from_utf8_lossy(&answer.body)
        ))
    })?;
    match expected_uid(body) {
        Some(uid) => {
            prop_assert_eq!(answer.status, StatusCode::OK, "{}", reply);
            prop_assert_eq!(&reply["apiVersion"], "admission.k8s.io/v1", "{}", reply);
            prop_assert_eq!(&reply["kind"], "AdmissionReview", "{}", reply);
            let response = &reply["response"];
            prop_assert_eq!(response["uid"].as_str(), Some(uid.as_str()), "{}", reply);
            let allowed = response["allowed"].as_bool();
            prop_assert!(allowed.is_some(), "response.allowed is a bool: {}", reply);
            let decision = answer.decision;
            prop_assert!(decision.is_some(), "a decision is recorded");
            let decision = decision.expect("checked");
            prop_assert_eq!(Some(decision.allowed), allowed);
            prop_assert_eq!(decision.operation, expected_operation(body));
            if allowed == Some(false) {
                let status = &response["status"];
                prop_assert_eq!(&status["status"], "Failure", "{}", reply);
                let code = status["code"].as_u64().unwrap_or_default();
                prop_assert!((400..600).contains(&code), "denial code: {}", reply);
                let message = status["message"].as_str().unwrap_or_default();
                prop_assert!(!message.is_empty(), "denial message: {}", reply);
                prop_assert!(
                    response.get("patch").is_none(),
                    "denied with a patch: {}",
                    reply
                );
            }
        }
        None => {
            prop_assert!(
                answer.status.is_client_error(),
                "expected a 4xx, got {}: {}",
                answer.status,
                reply
            );
            prop_assert_eq!(&reply["kind"], "Status", "{}", reply);
            prop_assert_eq!(&reply["apiVersion"], "v1", "{}", reply);
            prop_assert_eq!(&reply["status"], "Failure", "{}", reply);
            prop_assert_eq!(
                reply["code"].as_u64(),
                Some(u64::from(answer.status.as_u16())),
                "{}",
                reply
            );
            prop_assert!(reply["reason"].is_string(), "{}", reply);
            let message = reply["message"].as_str().unwrap_or_default();
            prop_assert!(!message.is_empty(), "{}", reply);
            prop_assert!(answer.decision.is_none(), "no decision without a review");
        }
    }
    Ok(reply)
}

/// A defaulting patch applies to the object it was computed for, and the patched object needs
/// no more defaulting.
fn check_patch(body: &[u8], reply: &Value) -> Result<(), TestCaseError> {
    let response = &reply["response"];
    let Some(bytes) = response.get("patch") else {
        return Ok(());
    };
    prop_assert_eq!(&response["patchType"], "JSONPatch", "{}", reply);
    let bytes: Vec<u8> = serde_json::from_value(bytes.clone())
        .map_err(|error| TestCaseError::fail(format!("patch is not bytes ({error}): {reply}")))?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|error| {
        TestCaseError::fail(format!(
            "patch is not a JSON patch ({error}): {}",
            String::from_utf8_lossy(&bytes)
        ))
    })?;
    prop_assert!(!patch.0.is_empty(), "an empty patch is left out: {}", reply);
    let mut review: Value = serde_json::from_slice(body).expect("a review with a uid is JSON");
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, &patch.0).map_err(|error| {
        TestCaseError::fail(format!(
            "the patch does not apply to the object ({error}): {object} / {}",
            String::from_utf8_lossy(&bytes)
        ))
    })?;
    review["request"]["object"] = object;
    let again = serde_json::to_vec(&review).expect("encode");
    let cache = Cache(Some(Vec::new()));
    let answer = admission::answer(Webhook::Mutate, &again, &cache, &SpecLimits::default());
    let reply = check(&again, &answer)?;
    prop_assert_eq!(
        reply["response"]["allowed"].as_bool(),
        Some(true),
        "{}",
        reply
    );
    prop_assert!(
        reply["response"].get("patch").is_none(),
        "defaulting the patched object patches again: {}",
        reply
    );
    Ok(())
}

/// Answers `body` with every webhook, cache and `--max-count`, checking each answer.
fn answer_everywhere(body: &[u8]) -> Result<(), TestCaseError> {
    for webhook in Webhook::ALL {
        for cache in &caches() {
            for limits in &spec_limits() {
                let answer = admission::answer(webhook, body, cache, limits);
                let reply = check(body, &answer)?;
                prop_assert_eq!(
                    &admission::answer(webhook, body, cache, limits),
                    &answer,
                    "answers are deterministic"
                );
                if webhook == Webhook::Mutate {
                    check_patch(body, &reply)?;
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_bytes_get_an_actionable_answer(body in bytes()) {
        answer_everywhere(&body)?;
    }

    #[test]
    fn admission_review_shaped_json_gets_an_actionable_answer(review in review()) {
        let body = serde_json::to_vec(&review).expect("encode");
        answer_everywhere(&body)?;
    }
}

/// The generators reach the interesting outcomes, so the properties above are not vacuous:
/// allowed reviews, denials (invalid objects, unsynced cache, bad requests), defaulting
/// patches, and 400s without a UID; and the arbitrary bytes include intact reviews as well as
/// bodies that are not JSON, JSON that is not a review, and reviews without a usable UID.
#[test]
fn generated_reviews_cover_every_kind_of_answer() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = review();
    let mut seen = BTreeMap::<&str, usize>::new();
    let synced = Cache(Some(Vec::new()));
    for _ in 0..CASES {
        let review = strategy.new_tree(&mut runner).expect("generate").current();
        let body = serde_json::to_vec(&review).expect("encode");
        for (webhook, cache) in [
            (Webhook::Validate, &synced),
            (Webhook::Validate, &Cache(None)),
        ] {
            let answer = admission::answer(webhook, &body, cache, &SpecLimits::default());
            let reply: Value = serde_json::from_slice(&answer.body).expect("JSON");
            let kind = if answer.status != StatusCode::OK {
                "no uid: 4xx"
            } else if reply["response"]["allowed"] == true {
                "allowed"
            } else {
                match reply["response"]["status"]["code"].as_u64() {
                    Some(422) => "denied: invalid",
                    Some(503) => "denied: cache not synced",
                    Some(400) => "denied: bad request",
                    _ => "denied: other",
                }
            };
            *seen.entry(kind).or_default() += 1;
        }
        let answer = admission::answer(Webhook::Mutate, &body, &synced, &SpecLimits::default());
        let reply: Value = serde_json::from_slice(&answer.body).expect("JSON");
        if reply["response"].get("patch").is_some() {
            *seen.entry("patched").or_default() += 1;
        }
    }
    let bodies = bytes();
    for _ in 0..CASES {
        let body = bodies.new_tree(&mut runner).expect("generate").current();
        let kind = match serde_json::from_slice::<Value>(&body) {
            Err(_) => "bytes: not JSON",
            Ok(_) if expected_uid(&body).is_some() => "bytes: review with a uid",
            Ok(_) => "bytes: JSON without a uid",
        };
        *seen.entry(kind).or_default() += 1;
    }
    for kind in [
        "bytes: not JSON",
        "bytes: review with a uid",
        "bytes: JSON without a uid",
        "no uid: 4xx",
        "allowed",
        "denied: invalid",
        "denied: cache not synced",
        "denied: bad request",
        "patched",
    ] {
        assert!(
            seen.get(kind).copied().unwrap_or_default() >= 5,
            "{kind} is rarely generated: {seen:?}"
        );
    }
}
