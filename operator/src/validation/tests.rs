//! The PodScaler rules, table by table: spec rules, create (with overlap) and update
//! (ratcheting). Overlap alone is tested in `overlap.rs`, syntax in `syntax.rs`.

use super::*;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn container(name: &str, image: Option<&str>) -> Container {
    Container {
        name: name.to_owned(),
        image: image.map(str::to_owned),
        ..Container::default()
    }
}

fn template(pairs: &[(&str, &str)], containers: Vec<Container>) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(pairs)),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers,
            ..PodSpec::default()
        }),
    }
}

fn spec(count: i32, selector: &[(&str, &str)]) -> PodScalerSpec {
    PodScalerSpec {
        count,
        selector: labels(selector),
        template: None,
    }
}

fn with_template(mut spec: PodScalerSpec, template: PodTemplateSpec) -> PodScalerSpec {
    spec.template = Some(template);
    spec
}

fn fields(errors: &[FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

#[test]
fn spec_rules_table() {
    struct Case {
        name: &'static str,
        spec: PodScalerSpec,
        max_count: i32,
        want: Vec<(&'static str, &'static str)>,
    }
    let good = || template(&[("app", "web")], vec![container("web", Some("nginx"))]);
    let cases = vec![
        Case {
            name: "the seed sample",
            spec: spec(4, &[("app", "nginx")]),
            max_count: 1000,
            want: vec![],
        },
        Case {
            name: "zero pods",
            spec: spec(0, &[("app", "nginx")]),
            max_count: 1000,
            want: vec![],
        },
        Case {
            name: "count at the maximum",
            spec: spec(1000, &[("app", "nginx")]),
            max_count: 1000,
            want: vec![],
        },
        Case {
            name: "negative count",
            spec: spec(-1, &[("app", "nginx")]),
            max_count: 1000,
            want: vec![("spec.count", "must be 0 or more (got -1)")],
        },
        Case {
            name: "count above the maximum",
            spec: spec(1001, &[("app", "nginx")]),
            max_count: 1000,
            want: vec![("spec.count", "must be at most 1000 (got 1001)")],
        },
        Case {
            name: "configurable maximum",
            spec: spec(11, &[("app", "nginx")]),
            max_count: 10,
            want: vec![("spec.count", "must be at most 10 (got 11)")],
        },
        Case {
            name: "empty selector",
            spec: spec(1, &[]),
            max_count: 1000,
            want: vec![("spec.selector", "must contain at least one label")],
        },
        Case {
            name: "invalid key",
            spec: spec(1, &[("bad key", "x")]),
            max_count: 1000,
            want: vec![(
                "spec.selector[\"bad key\"]",
                "\"bad key\" is not a valid label key: name part must consist",
            )],
        },
        Case {
            name: "invalid value",
            spec: spec(1, &[("app.kubernetes.io/name", "-web")]),
            max_count: 1000,
            want: vec![(
                "spec.selector[\"app.kubernetes.io/name\"]",
                "\"-web\" is not a valid label value: a valid label must",
            )],
        },
        Case {
            name: "invalid key and value on one label: both reported",
            spec: spec(1, &[("a/b/c", "x y")]),
            max_count: 1000,
            want: vec![
                (
                    "spec.selector[\"a/b/c\"]",
                    "\"a/b/c\" is not a valid label key",
                ),
                (
                    "spec.selector[\"a/b/c\"]",
                    "\"x y\" is not a valid label value",
                ),
            ],
        },
        Case {
            name: "empty value is a valid label value",
            spec: spec(1, &[("app", "")]),
            max_count: 1000,
            want: vec![],
        },
        Case {
            name: "template with matching labels",
            spec: with_template(spec(1, &[("app", "web")]), good()),
            max_count: 1000,
            want: vec![],
        },
        Case {
            name: "template without the selector's labels is defaulted, not refused",
            spec: with_template(
                spec(1, &[("app", "web")]),
                template(&[], vec![container("web", Some("nginx"))]),
            ),
            max_count: 1000,
            want: vec![],
        },
        Case {
            name: "template label contradicting the selector",
            spec: with_template(
                spec(1, &[("app", "web")]),
                template(&[("app", "db")], vec![container("web", Some("nginx"))]),
            ),
            max_count: 1000,
            want: vec![(
                "spec.template.metadata.labels[\"app\"]",
                "must be \"web\" to match spec.selector (got \"db\")",
            )],
        },
        Case {
            name: "invalid extra template label",
            spec: with_template(
                spec(1, &[("app", "web")]),
                template(
                    &[("app", "web"), ("tier", "front end")],
                    vec![container("web", Some("nginx"))],
                ),
            ),
            max_count: 1000,
            want: vec![(
                "spec.template.metadata.labels[\"tier\"]",
                "\"front end\" is not a valid label value",
            )],
        },
        Case {
            name: "template with no containers",
            spec: with_template(spec(1, &[("app", "web")]), template(&[], vec![])),
            max_count: 1000,
            want: vec![(
                "spec.template.spec.containers",
                "must contain at least one container",
            )],
        },
        Case {
            name: "template with no pod spec",
            spec: with_template(
                spec(1, &[("app", "web")]),
                PodTemplateSpec {
                    metadata: None,
                    spec: None,
                },
            ),
            max_count: 1000,
            want: vec![(
                "spec.template.spec",
                "must be set, with at least one container",
            )],
        },
        Case {
            name: "container without image",
            spec: with_template(
                spec(1, &[("app", "web")]),
                template(
                    &[],
                    vec![container("web", None), container("side", Some(" "))],
                ),
            ),
            max_count: 1000,
            want: vec![
                ("spec.template.spec.containers[0].image", "must be set"),
                ("spec.template.spec.containers[1].image", "must be set"),
            ],
        },
        Case {
            name: "container names: invalid and duplicate",
            spec: with_template(
                spec(1, &[("app", "web")]),
                template(
                    &[],
                    vec![
                        container("Web", Some("nginx")),
                        container("side", Some("nginx")),
                        container("side", Some("nginx")),
                    ],
                ),
            ),
            max_count: 1000,
            want: vec![
                (
                    "spec.template.spec.containers[0].name",
                    "\"Web\" is not a valid container name",
                ),
                (
                    "spec.template.spec.containers[2]",
                    "name \"side\" is used by another container",
                ),
            ],
        },
        Case {
            name: "restartPolicy other than Always",
            spec: with_template(spec(1, &[("app", "web")]), {
                let mut t = good();
                if let Some(pod) = t.spec.as_mut() {
                    pod.restart_policy = Some("Never".into());
                }
                t
            }),
            max_count: 1000,
            want: vec![(
                "spec.template.spec.restartPolicy",
                "must be \"Always\" (got \"Never\")",
            )],
        },
        Case {
            name: "everything wrong at once: every violation reported",
            spec: with_template(
                spec(-5, &[("app", "web"), ("bad key", "v")]),
                template(&[("app", "db")], vec![]),
            ),
            max_count: 1000,
            want: vec![
                ("spec.count", "must be 0 or more"),
                (
                    "spec.selector[\"bad key\"]",
                    "\"bad key\" is not a valid label key",
                ),
                ("spec.template.metadata.labels[\"app\"]", "must be \"web\""),
                (
                    "spec.template.spec.containers",
                    "must contain at least one container",
                ),
            ],
        },
    ];
    for case in cases {
        let got = validate_spec(
            &case.spec,
            &SpecLimits {
                max_count: case.max_count,
            },
        );
        assert_eq!(got.len(), case.want.len(), "{}: got {got:#?}", case.name);
        for (got, (field, message)) in got.iter().zip(&case.want) {
            assert_eq!(got.field, *field, "{}", case.name);
            assert!(
                got.message.starts_with(message),
                "{}: {:?} should start with {message:?}",
                case.name,
                got.message
            );
        }
    }
}

#[test]
fn template_label_missing_from_defaulted_template_names_the_fix() {
    let spec = with_template(
        spec(1, &[("app", "web")]),
        template(&[("app", "db")], vec![container("web", Some("nginx"))]),
    );
    let errors = validate_spec(&spec, &SpecLimits::default());
    assert!(
        errors[0].message.contains("create pods forever"),
        "{errors:?}"
    );
    assert!(
        errors[0].message.contains("set it to \"web\""),
        "{errors:?}"
    );
}

#[test]
fn create_combines_spec_rules_and_overlap() {
    let other = labels(&[("app", "web")]);
    let peers = [Peer {
        name: "other",
        selector: &other,
    }];
    let verdict = validate_create(
        "new",
        &spec(-1, &[("app", "web")]),
        peers,
        &SpecLimits::default(),
    );
    assert_eq!(fields(&verdict.errors), ["spec.count", "spec.selector"]);
    assert_eq!(verdict.warnings, []);
    assert!(
        verdict.errors[0]
            .to_string()
            .starts_with("spec.count: must be 0 or more"),
        "{verdict:?}"
    );
    assert!(
        verdict.errors[1]
            .to_string()
            .starts_with("spec.selector: overlaps PodScaler \"other\""),
        "{verdict:?}"
    );

    let ok = validate_create(
        "new",
        &spec(1, &[("app", "db")]),
        peers,
        &SpecLimits::default(),
    );
    assert_eq!(ok, Verdict::default());
}

#[test]
fn update_table() {
    let other = labels(&[("app", "web")]);
    let peers = [Peer {
        name: "other",
        selector: &other,
    }];
    let tight = SpecLimits { max_count: 10 };
    struct Case {
        name: &'static str,
        old: PodScalerSpec,
        new: PodScalerSpec,
        errors: Vec<&'static str>,
        warnings: Vec<&'static str>,
    }
    let cases = vec![
        Case {
            name: "count change is fine",
            old: spec(1, &[("app", "db")]),
            new: spec(5, &[("app", "db")]),
            errors: vec![],
            warnings: vec![],
        },
        Case {
            name: "selector change is refused",
            old: spec(1, &[("app", "db")]),
            new: spec(1, &[("app", "cache")]),
            errors: vec!["spec.selector"],
            warnings: vec![],
        },
        Case {
            name: "selector change into an overlap: both reported",
            old: spec(1, &[("app", "db")]),
            new: spec(1, &[("app", "web")]),
            errors: vec!["spec.selector", "spec.selector"],
            warnings: vec![],
        },
        Case {
            name: "new violation is refused",
            old: spec(5, &[("app", "db")]),
            new: spec(50, &[("app", "db")]),
            errors: vec!["spec.count"],
            warnings: vec![],
        },
        Case {
            name: "unchanged old violation ratchets to a warning",
            old: spec(50, &[("app", "db")]),
            new: spec(50, &[("app", "db")]),
            errors: vec![],
            warnings: vec!["spec.count"],
        },
        Case {
            name: "changing an invalid value to another invalid value is refused",
            old: spec(50, &[("app", "db")]),
            new: spec(60, &[("app", "db")]),
            errors: vec!["spec.count"],
            warnings: vec![],
        },
        Case {
            name: "pre-existing overlap ratchets to a warning",
            old: spec(1, &[("app", "web"), ("x", "1")]),
            new: spec(2, &[("app", "web"), ("x", "1")]),
            errors: vec![],
            warnings: vec!["spec.selector"],
        },
    ];
    for case in cases {
        let verdict = validate_update("self", &case.old, &case.new, peers, &tight);
        assert_eq!(
            fields(&verdict.errors),
            case.errors,
            "{}: {verdict:#?}",
            case.name
        );
        assert_eq!(
            fields(&verdict.warnings),
            case.warnings,
            "{}: {verdict:#?}",
            case.name
        );
    }
}

#[test]
fn selector_change_message_names_both_selectors() {
    let error =
        validate_selector_unchanged(&spec(1, &[("app", "db")]), &spec(1, &[("app", "cache")]))
            .expect("changed");
    assert_eq!(error.field, "spec.selector");
    assert!(
        error
            .message
            .starts_with("is immutable (was \"app=db\", now \"app=cache\")"),
        "{error}"
    );
    assert!(error.message.contains("create a new PodScaler"), "{error}");
}
