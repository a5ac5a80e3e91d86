use super::*;
use podscaler::api::apply_defaults;
use serde_json::json;

/// `(namespace, name, selector)` of a PodScaler in a [`Fixed`] index.
type Entry = (
    &'static str,
    &'static str,
    Vec<(&'static str, &'static str)>,
);

/// An index holding fixed PodScalers, or one that has not synced.
struct Fixed(Option<Vec<Entry>>);

impl PodScalerIndex for Fixed {
    fn selectors_in(&self, namespace: &str) -> Option<Vec<(String, BTreeMap<String, String>)>> {
        self.0.as_ref().map(|all| {
            all.iter()
                .filter(|(ns, _, _)| *ns == namespace)
                .map(|(_, name, selector)| {
                    (
                        (*name).to_owned(),
                        selector
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                            .collect(),
                    )
                })
                .collect()
        })
    }
}

fn empty() -> Fixed {
    Fixed(Some(vec![]))
}

fn scaler(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "scaling.example.com/v1",
        "kind": "PodScaler",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    })
}

fn review(operation: &str, object: Option<Value>, old: Option<Value>, dry_run: bool) -> Value {
    let name = object
        .as_ref()
        .or(old.as_ref())
        .and_then(|o| o["metadata"]["name"].as_str())
        .unwrap_or("example")
        .to_owned();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "scaling.example.com", "version": "v1", "kind": "PodScaler"},
            "resource": {"group": "scaling.example.com", "version": "v1", "resource": "podscalers"},
            "name": name,
            "namespace": "default",
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": old,
            "dryRun": dry_run,
        }
    })
}

fn create(spec: Value) -> Value {
    review("CREATE", Some(scaler("example", spec)), None, false)
}

fn call(webhook: Webhook, body: &Value, index: &Fixed) -> (Answer, Value) {
    let bytes = serde_json::to_vec(body).expect("encode");
    let answer = answer(webhook, &bytes, index, &SpecLimits::default());
    let parsed = serde_json::from_slice(&answer.body).expect("answers are JSON");
    (answer, parsed)
}

/// The response's JSON patch. kube encodes the `[]byte` field as an array of numbers, which the
/// API server's decoder accepts like Go's usual base64 string.
fn patch_of(review: &Value) -> Option<json_patch::Patch> {
    let bytes: Vec<u8> = review["response"]["patch"]
        .as_array()?
        .iter()
        .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()).expect("byte"))
        .collect();
    Some(serde_json::from_slice(&bytes).expect("patch is JSON"))
}

#[test]
fn envelope_errors_are_http_400_with_a_status_body() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty body", vec![], "the request body is empty"),
        ("whitespace only", b" \n\t".to_vec(), "the request body is empty"),
        ("not JSON", b"hello".to_vec(), "the request body is not valid JSON"),
        ("truncated JSON", b"{\"kind\":".to_vec(), "the request body is not valid JSON"),
        ("invalid UTF-8", vec![b'"', 0xff, b'"'], "the request body is not valid JSON"),
        ("JSON array", b"[1,2]".to_vec(), "JSON but not an object"),
        ("JSON string", b"\"AdmissionReview\"".to_vec(), "JSON but not an object"),
        (
            "not an AdmissionReview",
            br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec(),
            "expected kind \"AdmissionReview\", got \"Pod\"",
        ),
        ("no kind", br#"{"request":{}}"#.to_vec(), "got nothing"),
        (
            "unknown version",
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}"#.to_vec(),
            "unsupported AdmissionReview apiVersion \"admission.k8s.io/v1beta1\"",
        ),
        (
            "future version",
            br#"{"apiVersion":"admission.k8s.io/v2","kind":"AdmissionReview"}"#.to_vec(),
            "set admissionReviewVersions: [\"v1\"]",
        ),
        (
            "missing request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            "the AdmissionReview has no request",
        ),
        (
            "null request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}"#.to_vec(),
            "the AdmissionReview has no request",
        ),
        (
            "request not an object",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":7}"#.to_vec(),
            "AdmissionReview.request must be an object, got 7",
        ),
        (
            "no uid",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE"}}"#.to_vec(),
            "request.uid is missing",
        ),
        (
            "uid not a string",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":5}}"#.to_vec(),
            "request.uid is missing",
        ),
    ];
    for (name, body, want) in cases {
        for webhook in Webhook::ALL {
            let answer = answer(webhook, &body, &empty(), &SpecLimits::default());
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{name}");
            assert_eq!(answer.decision, None, "{name}");
            let status: Value = serde_json::from_slice(&answer.body).expect("Status is JSON");
            assert_eq!(status["kind"], "Status", "{name}");
            assert_eq!(status["code"], 400, "{name}");
            assert_eq!(status["reason"], "BadRequest", "{name}");
            let message = status["message"].as_str().expect("message");
            assert!(message.contains(want), "{name}: {message:?} lacks {want:?}");
        }
    }
}

#[test]
fn request_errors_with_a_uid_are_admission_review_errors() {
    let wrong_kind = {
        let mut r = create(json!({"count": 1, "selector": {"app": "a"}}));
        r["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
        r
    };
    let bad_operation = {
        let mut r = create(json!({"count": 1, "selector": {"app": "a"}}));
        r["request"]["operation"] = json!("EXPLODE");
        r
    };
    let cases: Vec<(&str, Value, u16, &str, &str)> = vec![
        (
            "wrong kind",
            wrong_kind,
            400,
            "not apps/v1 Deployment",
            "CREATE",
        ),
        (
            "unknown operation",
            bad_operation,
            400,
            "is not an admission.k8s.io/v1 AdmissionRequest",
            "UNKNOWN",
        ),
        (
            "missing object",
            review("CREATE", None, None, false),
            400,
            "AdmissionReview.request.object is missing",
            "CREATE",
        ),
    ];
    for (name, body, code, want, operation) in cases {
        for webhook in Webhook::ALL {
            let (answer, review) = call(webhook, &body, &empty());
            assert_eq!(answer.status, StatusCode::OK, "{name}");
            assert_eq!(
                answer.decision,
                Some(Decision {
                    operation,
                    allowed: false
                }),
                "{name}"
            );
            let response = &review["response"];
            assert_eq!(review["apiVersion"], "admission.k8s.io/v1", "{name}");
            assert_eq!(review["kind"], "AdmissionReview", "{name}");
            assert_eq!(
                response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002",
                "{name}"
            );
            assert_eq!(response["allowed"], false, "{name}");
            assert_eq!(response["status"]["code"], code, "{name}");
            let message = response["status"]["message"].as_str().expect("message");
            assert!(message.contains(want), "{name}: {message:?} lacks {want:?}");
        }
    }
}

#[test]
fn update_without_old_object_is_an_error_for_validation() {
    let body = review(
        "UPDATE",
        Some(scaler(
            "example",
            json!({"count": 1, "selector": {"app": "a"}}),
        )),
        None,
        false,
    );
    let (_, review) = call(Webhook::Validate, &body, &empty());
    assert_eq!(review["response"]["allowed"], false);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("request.oldObject is missing")),
        "{review}"
    );
}

#[test]
fn validation_table() {
    let others = || {
        Fixed(Some(vec![
            ("default", "web", vec![("app", "web")]),
            ("default", "example", vec![("app", "mine")]),
            ("other-ns", "db", vec![("app", "db")]),
        ]))
    };
    let sample = || scaler("example", json!({"count": 4, "selector": {"app": "nginx"}}));
    struct Case {
        name: &'static str,
        body: Value,
        index: Fixed,
        allowed: bool,
        code: Option<u16>,
        causes: Vec<(&'static str, &'static str)>,
        warnings: usize,
    }
    let cases = vec![
        Case {
            name: "the seed sample",
            body: review("CREATE", Some(sample()), None, false),
            index: others(),
            allowed: true,
            code: None,
            causes: vec![],
            warnings: 0,
        },
        Case {
            name: "dry-run is answered the same way",
            body: review("CREATE", Some(sample()), None, true),
            index: others(),
            allowed: true,
            code: None,
            causes: vec![],
            warnings: 0,
        },
        Case {
            name: "negative count and bad label at once",
            body: create(json!({"count": -1, "selector": {"app.kubernetes.io/name": "-x"}})),
            index: empty(),
            allowed: false,
            code: Some(422),
            causes: vec![
                ("spec.count", "must be 0 or more (got -1)"),
                (
                    "spec.selector[\"app.kubernetes.io/name\"]",
                    "\"-x\" is not a valid label value",
                ),
            ],
            warnings: 0,
        },
        Case {
            name: "dry-run is denied the same way",
            body: review(
                "CREATE",
                Some(scaler(
                    "example",
                    json!({"count": -1, "selector": {"app": "a"}}),
                )),
                None,
                true,
            ),
            index: empty(),
            allowed: false,
            code: Some(422),
            causes: vec![("spec.count", "must be 0 or more")],
            warnings: 0,
        },
        Case {
            name: "count above --max-count",
            body: create(json!({"count": 1001, "selector": {"app": "a"}})),
            index: empty(),
            allowed: false,
            code: Some(422),
            causes: vec![("spec.count", "must be at most 1000 (got 1001)")],
            warnings: 0,
        },
        Case {
            name: "empty selector",
            body: create(json!({"count": 1, "selector": {}})),
            index: empty(),
            allowed: false,
            code: Some(422),
            causes: vec![("spec.selector", "must contain at least one label")],
            warnings: 0,
        },
        Case {
            name: "template with no containers",
            body: create(json!({"count": 1, "selector": {"app": "a"},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": []}}})),
            index: empty(),
            allowed: false,
            code: Some(422),
            causes: vec![(
                "spec.template.spec.containers",
                "must contain at least one container",
            )],
            warnings: 0,
        },
        Case {
            name: "template labels contradict the selector",
            body: create(json!({"count": 1, "selector": {"app": "a"},
                "template": {"metadata": {"labels": {"app": "b"}},
                             "spec": {"containers": [{"name": "c", "image": "nginx"}]}}})),
            index: empty(),
            allowed: false,
            code: Some(422),
            causes: vec![(
                "spec.template.metadata.labels[\"app\"]",
                "must be \"a\" to match spec.selector (got \"b\")",
            )],
            warnings: 0,
        },
        Case {
            name: "overlap names the other PodScaler",
            body: create(json!({"count": 1, "selector": {"app": "web", "tier": "front"}})),
            index: others(),
            allowed: false,
            code: Some(422),
            causes: vec![("spec.selector", "overlaps PodScaler \"web\"")],
            warnings: 0,
        },
        Case {
            name: "same selector in another namespace is fine",
            body: create(json!({"count": 1, "selector": {"app": "db"}})),
            index: others(),
            allowed: true,
            code: None,
            causes: vec![],
            warnings: 0,
        },
        Case {
            name: "the object itself is not an overlap on UPDATE",
            body: review(
                "UPDATE",
                Some(scaler(
                    "example",
                    json!({"count": 2, "selector": {"app": "mine"}}),
                )),
                Some(scaler(
                    "example",
                    json!({"count": 1, "selector": {"app": "mine"}}),
                )),
                false,
            ),
            index: others(),
            allowed: true,
            code: None,
            causes: vec![],
            warnings: 0,
        },
        Case {
            name: "selector change on UPDATE",
            body: review(
                "UPDATE",
                Some(scaler(
                    "example",
                    json!({"count": 1, "selector": {"app": "other"}}),
                )),
                Some(scaler(
                    "example",
                    json!({"count": 1, "selector": {"app": "mine"}}),
                )),
                false,
            ),
            index: others(),
            allowed: false,
            code: Some(422),
            causes: vec![(
                "spec.selector",
                "is immutable (was \"app=mine\", now \"app=other\")",
            )],
            warnings: 0,
        },
        Case {
            name: "unchanged old violation is a warning on UPDATE",
            body: review(
                "UPDATE",
                Some(scaler(
                    "example",
                    json!({"count": 5000, "selector": {"app": "mine"}}),
                )),
                Some(scaler(
                    "example",
                    json!({"count": 5000, "selector": {"app": "mine"}}),
                )),
                false,
            ),
            index: others(),
            allowed: true,
            code: None,
            causes: vec![],
            warnings: 1,
        },
        Case {
            name: "DELETE is allowed without looking",
            body: review("DELETE", None, Some(sample()), false),
            index: Fixed(None),
            allowed: true,
            code: None,
            causes: vec![],
            warnings: 0,
        },
        Case {
            name: "subresources are allowed",
            body: {
                let mut r = create(json!({"count": -1, "selector": {}}));
                r["request"]["subResource"] = json!("status");
                r
            },
            index: Fixed(None),
            allowed: true,
            code: None,
            causes: vec![],
            warnings: 0,
        },
        Case {
            name: "cache not synced: retryable error, never an unchecked allow",
            body: review("CREATE", Some(sample()), None, false),
            index: Fixed(None),
            allowed: false,
            code: Some(503),
            causes: vec![],
            warnings: 0,
        },
    ];
    for case in cases {
        let (answer, review) = call(Webhook::Validate, &case.body, &case.index);
        let response = &review["response"];
        assert_eq!(answer.status, StatusCode::OK, "{}", case.name);
        assert_eq!(
            response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002",
            "{}",
            case.name
        );
        assert_eq!(response["allowed"], case.allowed, "{}: {review}", case.name);
        assert_eq!(
            answer.decision.map(|d| d.allowed),
            Some(case.allowed),
            "{}",
            case.name
        );
        assert!(response.get("patch").is_none(), "{}", case.name);
        assert_eq!(
            response["status"]["code"].as_u64(),
            case.code.map(u64::from),
            "{}: {review}",
            case.name
        );
        let causes = response["status"]["details"]["causes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(causes.len(), case.causes.len(), "{}: {review}", case.name);
        let message = response["status"]["message"].as_str().unwrap_or_default();
        for (cause, (field, text)) in causes.iter().zip(&case.causes) {
            assert_eq!(cause["field"], *field, "{}", case.name);
            let got = cause["message"].as_str().unwrap_or_default();
            assert!(got.starts_with(text), "{}: {got:?}", case.name);
            assert!(
                message.contains(&format!("{field}: {text}")),
                "{}: the message repeats each cause: {message}",
                case.name
            );
        }
        if !case.causes.is_empty() {
            assert_eq!(response["status"]["reason"], "Invalid", "{}", case.name);
            assert_eq!(
                response["status"]["details"]["kind"], "PodScaler",
                "{}",
                case.name
            );
            assert!(
                message.starts_with("PodScaler.scaling.example.com \"example\" is invalid: "),
                "{}: {message}",
                case.name
            );
        }
        let warnings = response["warnings"].as_array().map_or(0, Vec::len);
        assert_eq!(warnings, case.warnings, "{}: {review}", case.name);
    }
}

#[test]
fn max_count_is_configurable() {
    let body = serde_json::to_vec(&create(json!({"count": 11, "selector": {"app": "a"}})))
        .expect("encode");
    let tight = SpecLimits { max_count: 10 };
    let answer = answer(Webhook::Validate, &body, &empty(), &tight);
    let review: Value = serde_json::from_slice(&answer.body).expect("json");
    assert_eq!(review["response"]["allowed"], false);
    assert!(
        review["response"]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("must be at most 10 (got 11)")),
        "{review}"
    );
}

#[test]
fn defaulting_patch_table() {
    let container = json!([{"name": "app", "image": "busybox"}]);
    struct Case {
        name: &'static str,
        spec: Value,
        /// `(op, path)` of every operation, in order.
        ops: Vec<(&'static str, &'static str)>,
    }
    let cases = vec![
        Case {
            name: "no template: the default template with the selector's labels",
            spec: json!({"count": 4, "selector": {"app": "nginx"}}),
            ops: vec![("add", "/spec/template")],
        },
        Case {
            name: "null template is treated as absent",
            spec: json!({"count": 4, "selector": {"app": "nginx"}, "template": null}),
            ops: vec![("add", "/spec/template")],
        },
        Case {
            name: "template without metadata",
            spec: json!({"count": 1, "selector": {"app": "a"}, "template": {"spec": {"containers": container}}}),
            ops: vec![("add", "/spec/template/metadata")],
        },
        Case {
            name: "template without labels",
            spec: json!({"count": 1, "selector": {"app": "a"},
                "template": {"metadata": {"annotations": {"x": "y"}}, "spec": {"containers": container}}}),
            ops: vec![("add", "/spec/template/metadata/labels")],
        },
        Case {
            name: "one selector label missing; a key with '/' is escaped",
            spec: json!({"count": 1, "selector": {"app": "a", "example.com/tier": "web"},
                "template": {"metadata": {"labels": {"app": "a", "extra": "kept"}}, "spec": {"containers": container}}}),
            ops: vec![("add", "/spec/template/metadata/labels/example.com~1tier")],
        },
        Case {
            name: "already defaulted: no patch",
            spec: json!({"count": 1, "selector": {"app": "a"},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": container}}}),
            ops: vec![],
        },
        Case {
            name: "contradicting label is left for validation: no patch",
            spec: json!({"count": 1, "selector": {"app": "a"},
                "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": container}}}),
            ops: vec![],
        },
    ];
    for case in cases {
        for dry_run in [false, true] {
            let mut object = scaler("example", case.spec.clone());
            // Fields the typed model drops or normalises must not show up in the patch.
            object["metadata"]["creationTimestamp"] = Value::Null;
            object["metadata"]["managedFields"] = json!([{"manager": "kubectl"}]);
            let body = review("CREATE", Some(object.clone()), None, dry_run);
            let (answer, review) = call(Webhook::Mutate, &body, &empty());
            let response = &review["response"];
            assert_eq!(answer.status, StatusCode::OK, "{}", case.name);
            assert_eq!(response["allowed"], true, "{}", case.name);
            assert_eq!(
                answer.decision,
                Some(Decision {
                    operation: "CREATE",
                    allowed: true
                }),
                "{}",
                case.name
            );
            let patch = patch_of(&review);
            let ops: Vec<(String, String)> = patch
                .as_ref()
                .map(|p| {
                    let value = serde_json::to_value(p).expect("patch");
                    value
                        .as_array()
                        .expect("ops")
                        .iter()
                        .map(|op| {
                            (
                                op["op"].as_str().unwrap_or_default().to_owned(),
                                op["path"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let want: Vec<(String, String)> = case
                .ops
                .iter()
                .map(|(op, path)| ((*op).to_owned(), (*path).to_owned()))
                .collect();
            assert_eq!(ops, want, "{}", case.name);
            if ops.is_empty() {
                assert!(response.get("patchType").is_none(), "{}", case.name);
                continue;
            }
            assert_eq!(response["patchType"], "JSONPatch", "{}", case.name);

            // The patch applies to the object as sent, and yields the library's defaults.
            let mut patched = object.clone();
            json_patch::patch(&mut patched, &patch.expect("patch")).expect("patch applies");
            let patched_scaler: PodScaler =
                serde_json::from_value(patched.clone()).expect("still a PodScaler");
            let mut want_spec: PodScaler = serde_json::from_value(object).expect("PodScaler");
            apply_defaults(&mut want_spec.spec);
            assert_eq!(patched_scaler.spec, want_spec.spec, "{}", case.name);
            assert_eq!(
                patched["metadata"]["creationTimestamp"],
                Value::Null,
                "{}: untouched",
                case.name
            );

            // Idempotent: the defaulted object needs no further patch.
            let again = review_for_update(patched);
            let (_, second) = call(Webhook::Mutate, &again, &empty());
            assert!(patch_of(&second).is_none(), "{}: {second}", case.name);
        }
    }
}

fn review_for_update(object: Value) -> Value {
    review("UPDATE", Some(object.clone()), Some(object), false)
}

#[test]
fn default_template_patch_content() {
    let (_, review) = call(
        Webhook::Mutate,
        &create(json!({"count": 4, "selector": {"app": "nginx"}})),
        &empty(),
    );
    let patch = serde_json::to_value(patch_of(&review).expect("patch")).expect("json");
    assert_eq!(
        patch,
        json!([{
            "op": "add",
            "path": "/spec/template",
            "value": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:latest"}]}
            }
        }])
    );
}

#[test]
fn mutation_does_not_validate() {
    // An invalid object is defaulted; refusing it is the validating webhook's job.
    let (_, review) = call(
        Webhook::Mutate,
        &create(json!({"count": -3, "selector": {"app": "a"}})),
        &Fixed(None),
    );
    assert_eq!(review["response"]["allowed"], true);
    assert!(patch_of(&review).is_some());
}

#[test]
fn echoed_text_is_truncated() {
    let long_kind = "K".repeat(10_000);
    let body = format!(r#"{{"apiVersion":"admission.k8s.io/v1","kind":"{long_kind}"}}"#);
    let answer = answer(
        Webhook::Validate,
        body.as_bytes(),
        &empty(),
        &SpecLimits::default(),
    );
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.body.len() < 1_000, "{}", answer.body.len());
    assert_eq!(truncate("short"), "short");
    assert_eq!(truncate(&"é".repeat(200)).chars().count(), 101);
}

#[test]
fn paths_round_trip() {
    for webhook in Webhook::ALL {
        assert_eq!(Webhook::from_path(webhook.path()), Some(webhook));
    }
    assert_eq!(Webhook::from_path("/mutate"), None);
    assert_eq!(Webhook::from_path(""), None);
}

fn call_with(webhook: Webhook, body: &Value, index: &Fixed, max_count: i32) -> (Answer, Value) {
    let bytes = serde_json::to_vec(body).expect("encode");
    let answer = answer(webhook, &bytes, index, &SpecLimits { max_count });
    let parsed = serde_json::from_slice(&answer.body).expect("answers are JSON");
    (answer, parsed)
}

fn causes(review: &Value) -> Vec<(String, String)> {
    review["response"]["status"]["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|cause| {
            (
                cause["field"].as_str().unwrap_or_default().to_owned(),
                cause["message"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn undecodable_objects_pass_mutation_unpatched_and_validation_names_the_field() {
    let no_spec = review(
        "CREATE",
        Some(
            json!({"apiVersion": "scaling.example.com/v1", "kind": "PodScaler", "metadata": {"name": "x"}}),
        ),
        None,
        false,
    );
    let cases = [
        (
            "string count",
            create(json!({"count": "four", "selector": {"app": "a"}})),
            "spec.count",
            "invalid type: string \"four\", expected i32",
        ),
        (
            "fractional count",
            create(json!({"count": 1.5, "selector": {"app": "a"}})),
            "spec.count",
            "invalid type: floating point `1.5`, expected i32",
        ),
        (
            "missing count",
            create(json!({"selector": {"app": "a"}})),
            "spec.count",
            "required value",
        ),
        (
            "missing selector",
            create(json!({"count": 1})),
            "spec.selector",
            "required value",
        ),
        (
            "selector that is a list",
            create(json!({"count": 1, "selector": ["app"]})),
            "spec.selector",
            "invalid type: sequence, expected a map",
        ),
        ("missing spec", no_spec, "spec", "required value"),
    ];
    for (name, body, field, message) in cases {
        // Mutating admission runs before the schema: let the schema name the field.
        let (answer, mutated) = call(Webhook::Mutate, &body, &empty());
        assert_eq!(answer.status, StatusCode::OK, "{name}");
        assert_eq!(mutated["response"]["allowed"], true, "{name}: {mutated}");
        assert_eq!(patch_of(&mutated), None, "{name}: patched");

        // Validation names the field, as a 422 Invalid with a cause kubectl prints.
        let (answer, validated) = call(Webhook::Validate, &body, &empty());
        assert_eq!(
            answer.decision,
            Some(Decision {
                operation: "CREATE",
                allowed: false
            }),
            "{name}"
        );
        let response = &validated["response"];
        assert_eq!(response["status"]["code"], 422, "{name}: {validated}");
        assert_eq!(response["status"]["reason"], "Invalid", "{name}");
        assert_eq!(
            causes(&validated),
            [(field.to_owned(), message.to_owned())],
            "{name}"
        );
        let text = response["status"]["message"].as_str().expect("message");
        assert!(
            text.contains(&format!("{field}: {message}")),
            "{name}: {text}"
        );
    }
}

#[test]
fn an_undecodable_old_object_does_not_lock_the_object() {
    let stored = Some(scaler(
        "example",
        json!({"count": "one", "selector": {"app": "a"}}),
    ));
    let valid = review(
        "UPDATE",
        Some(scaler(
            "example",
            json!({"count": 1, "selector": {"app": "a"}}),
        )),
        stored.clone(),
        false,
    );
    let (_, review_of_valid) = call(Webhook::Validate, &valid, &empty());
    assert_eq!(
        review_of_valid["response"]["allowed"], true,
        "a valid new object is admitted: {review_of_valid}"
    );
    let invalid = review(
        "UPDATE",
        Some(scaler(
            "example",
            json!({"count": -1, "selector": {"app": "a"}}),
        )),
        stored,
        false,
    );
    let (_, review_of_invalid) = call(Webhook::Validate, &invalid, &empty());
    assert_eq!(review_of_invalid["response"]["allowed"], false);
    assert_eq!(review_of_invalid["response"]["status"]["code"], 422);
}

#[test]
fn an_invalid_selector_is_not_also_reported_as_overlapping() {
    let index = Fixed(Some(vec![
        ("default", "web", vec![("app", "web")]),
        ("default", "db", vec![("tier", "db")]),
    ]));
    for (selector, field) in [
        (json!({"bad key": "x"}), "spec.selector[\"bad key\"]"),
        (json!({"app": "web!"}), "spec.selector[\"app\"]"),
    ] {
        let (_, review) = call(
            Webhook::Validate,
            &create(json!({"count": 1, "selector": selector})),
            &index,
        );
        let fields: Vec<String> = causes(&review).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, [field], "{review}");
    }
    // A valid selector is still compared with every other PodScaler.
    let (_, review) = call(
        Webhook::Validate,
        &create(json!({"count": 1, "selector": {"app": "web", "tier": "db"}})),
        &index,
    );
    let messages: Vec<String> = causes(&review).into_iter().map(|(_, m)| m).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].starts_with("overlaps PodScaler \"db\""),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with("overlaps PodScaler \"web\""),
        "{messages:?}"
    );
}

/// A review of the scale subresource as the API server sends it (matchPolicy Equivalent):
/// an autoscaling/v1 Scale, old and new.
fn scale_review(old: Option<Value>, new: Option<Value>) -> Value {
    let scale = |spec: Value| {
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": spec,
            "status": {"replicas": 3, "selector": "app=web"},
        })
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "5c1f1a2e-0d5e-4a8e-9c59-7f0c3c8a9b10",
            "kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "resource": {"group": "scaling.example.com", "version": "v1", "resource": "podscalers"},
            "subResource": "scale",
            "requestKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "name": "web",
            "namespace": "default",
            "operation": "UPDATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:horizontal-pod-autoscaler"},
            "object": new.map(scale),
            "oldObject": old.map(scale),
        }
    })
}

#[test]
fn scale_updates_get_the_count_limit() {
    let body = scale_review(Some(json!({"replicas": 3})), Some(json!({"replicas": 11})));
    let (answer, review) = call_with(Webhook::Validate, &body, &empty(), 10);
    assert_eq!(
        answer.decision,
        Some(Decision {
            operation: "UPDATE",
            allowed: false
        })
    );
    let response = &review["response"];
    assert_eq!(response["status"]["code"], 422);
    assert_eq!(response["status"]["details"]["kind"], "Scale");
    let message = response["status"]["message"].as_str().expect("message");
    assert!(
        message.starts_with("Scale.autoscaling \"web\" is invalid: spec.replicas: must be at most 10 (got 11): spec.replicas of the Scale sets PodScaler spec.count"),
        "{message}"
    );
    let fields: Vec<String> = causes(&review).into_iter().map(|(f, _)| f).collect();
    assert_eq!(fields, ["spec.replicas"]);

    let negative = scale_review(Some(json!({"replicas": 3})), Some(json!({"replicas": -1})));
    let (_, review) = call_with(Webhook::Validate, &negative, &empty(), 10);
    assert_eq!(review["response"]["allowed"], false);

    // Within bounds; a Scale to 0 has no replicas field (Go's omitempty).
    for spec in [json!({"replicas": 10}), json!({"replicas": 0}), json!({})] {
        let body = scale_review(Some(json!({"replicas": 3})), Some(spec.clone()));
        let (_, review) = call_with(Webhook::Validate, &body, &empty(), 10);
        assert_eq!(review["response"]["allowed"], true, "{spec}: {review}");
    }
}

#[test]
fn scale_updates_are_not_mutated() {
    let body = scale_review(Some(json!({"replicas": 3})), Some(json!({"replicas": 11})));
    let (answer, review) = call_with(Webhook::Mutate, &body, &empty(), 10);
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(review["response"]["allowed"], true);
    assert_eq!(patch_of(&review), None);
}

#[test]
fn unusable_scale_reviews_get_a_clear_refusal() {
    let mut podscaler_on_scale = scale_review(None, None);
    podscaler_on_scale["request"]["kind"] =
        json!({"group": "scaling.example.com", "version": "v1", "kind": "PodScaler"});
    podscaler_on_scale["request"]["object"] =
        scaler("web", json!({"count": 1, "selector": {"app": "web"}}));
    let cases = [
        (
            "missing object",
            scale_review(Some(json!({"replicas": 3})), None),
            "AdmissionReview.request.object is missing",
        ),
        (
            "Scale without spec",
            {
                let mut body = scale_review(None, Some(json!({})));
                if let Some(object) = body["request"]["object"].as_object_mut() {
                    object.remove("spec");
                }
                body
            },
            "is a Scale without spec",
        ),
        (
            "replicas that are not a number",
            scale_review(None, Some(json!({"replicas": "many"}))),
            "is not a valid autoscaling/v1 Scale: spec.replicas: invalid type: string \"many\"",
        ),
        (
            "an object that is not a Scale",
            {
                let mut body = scale_review(None, Some(json!({"replicas": 1})));
                body["request"]["object"]["kind"] = json!("Deployment");
                body
            },
            "is not a valid autoscaling/v1 Scale",
        ),
        (
            "a PodScaler kind on the scale subresource",
            podscaler_on_scale,
            "the scale subresource of a PodScaler carries an autoscaling/v1 Scale, not scaling.example.com/v1 PodScaler",
        ),
    ];
    for (name, body, want) in cases {
        let (answer, review) = call(Webhook::Validate, &body, &empty());
        assert_eq!(answer.status, StatusCode::OK, "{name}");
        let response = &review["response"];
        assert_eq!(response["allowed"], false, "{name}: {review}");
        assert_eq!(response["status"]["code"], 400, "{name}: {review}");
        let message = response["status"]["message"].as_str().expect("message");
        assert!(message.contains(want), "{name}: {message:?} lacks {want:?}");
    }
}

#[test]
fn status_updates_are_allowed_unreviewed() {
    let mut body = review(
        "UPDATE",
        Some(scaler(
            "example",
            json!({"count": 5000, "selector": {"app": "a"}}),
        )),
        Some(scaler(
            "example",
            json!({"count": 5000, "selector": {"app": "a"}}),
        )),
        false,
    );
    body["request"]["subResource"] = json!("status");
    for webhook in Webhook::ALL {
        let (_, review) = call(webhook, &body, &Fixed(None));
        assert_eq!(review["response"]["allowed"], true, "{review}");
        assert_eq!(patch_of(&review), None);
    }
}
