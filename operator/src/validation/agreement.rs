//! One table of PodScaler specs, each with the fields a checker must refuse (or none), that
//! both checkers are held to: the webhook's rules ([`crate::validation::validate_spec`], by
//! this module's unit test) and the CRD's schema and CEL rules (by the e2e suite, which applies
//! every row to a real API server with and without the webhook).
//!
//! Rows cover every rule that needs no other object. Counts stay at or below the webhook's
//! default `--max-count` or above the CRD's hard maximum: in between only the webhook refuses,
//! by design (the CRD's limit is the floor, the webhook's the everyday one).

use serde_json::{Value, json};

use crate::crd::{MAX_COUNT, MAX_SELECTOR_LABELS, MAX_TEMPLATE_LABELS};
use crate::validation::DEFAULT_MAX_COUNT;

/// One row: a spec and what both checkers must say about it.
#[derive(Clone, Debug)]
pub struct Case {
    /// What the row is about.
    pub name: &'static str,
    /// `spec` as a user writes it (JSON, so it can be applied as it stands).
    pub spec: Value,
    /// The fields a refusal must name, as the webhook names them (`spec.selector["app"]`);
    /// empty when the spec must be accepted.
    pub refused: Vec<String>,
}

impl Case {
    /// The row as a whole PodScaler object named `name`.
    pub fn object(&self, name: &str) -> Value {
        json!({
            "apiVersion": "scaling.example.com/v1",
            "kind": "PodScaler",
            "metadata": {"name": name},
            "spec": self.spec,
        })
    }

    /// Whether both checkers must accept the row.
    pub fn is_accepted(&self) -> bool {
        self.refused.is_empty()
    }
}

fn accepted(name: &'static str, spec: Value) -> Case {
    Case {
        name,
        spec,
        refused: Vec::new(),
    }
}

fn refused(name: &'static str, spec: Value, fields: &[&str]) -> Case {
    Case {
        name,
        spec,
        refused: fields.iter().map(|field| (*field).to_owned()).collect(),
    }
}

/// `spec` with `count: 1` and `selector`.
fn selecting(selector: Value) -> Value {
    json!({"count": 1, "selector": selector})
}

/// `spec` selecting `app=web` with `template`.
fn templated(template: Value) -> Value {
    json!({"count": 1, "selector": {"app": "web"}, "template": template})
}

/// A template with `labels` and one valid container.
fn template_with_labels(labels: Value) -> Value {
    json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
    })
}

/// `n` distinct valid labels, `l0=v` … .
fn many_labels(n: usize) -> Value {
    Value::Object((0..n).map(|i| (format!("l{i}"), json!("v"))).collect())
}

/// A DNS subdomain of exactly `length` characters (labels of 63 joined by dots).
fn subdomain(length: usize) -> String {
    let mut out = String::new();
    while out.len() < length {
        if !out.is_empty() {
            out.push('.');
        }
        let room = (length - out.len()).min(63);
        out.push_str(&"a".repeat(room));
    }
    // A trailing dot would make it invalid for the wrong reason.
    debug_assert!(!out.ends_with('.'));
    out
}

/// The table. Row order is the order the e2e suite applies them in.
pub fn cases() -> Vec<Case> {
    let longest_key = format!("{}/{}", subdomain(253), "n".repeat(63));
    let long_name = "n".repeat(64);
    let long_prefix_key = format!("{}/app", subdomain(254));
    let mut with_many_template_labels = many_labels(MAX_TEMPLATE_LABELS);
    if let Some(labels) = with_many_template_labels.as_object_mut() {
        labels.insert("app".to_owned(), json!("web"));
    }
    vec![
        // Accepted.
        accepted(
            "the seed's sample",
            json!({"count": 4, "selector": {"app": "nginx"}}),
        ),
        accepted("count 0", json!({"count": 0, "selector": {"app": "web"}})),
        accepted(
            "count at the webhook's default limit",
            json!({"count": DEFAULT_MAX_COUNT, "selector": {"app": "web"}}),
        ),
        accepted(
            "prefixed key",
            selecting(json!({"app.kubernetes.io/name": "web"})),
        ),
        accepted(
            "longest key: 253-character prefix, 63-character name",
            selecting(json!({ longest_key: "web" })),
        ),
        accepted("empty value", selecting(json!({"app": ""}))),
        accepted(
            "63-character value",
            selecting(json!({"app": "v".repeat(63)})),
        ),
        accepted(
            "as many selector labels as allowed",
            selecting(many_labels(MAX_SELECTOR_LABELS)),
        ),
        accepted(
            "template with the selector's labels",
            templated(template_with_labels(json!({"app": "web", "tier": "front"}))),
        ),
        accepted(
            "template without labels (defaulted)",
            templated(json!({"spec": {"containers": [{"name": "web", "image": "nginx"}]}})),
        ),
        accepted(
            "template with restartPolicy Always",
            templated(json!({"spec": {
                "restartPolicy": "Always",
                "containers": [{"name": "web", "image": "nginx"}],
            }})),
        ),
        // Refused: count.
        refused(
            "negative count",
            json!({"count": -1, "selector": {"app": "web"}}),
            &["spec.count"],
        ),
        refused(
            "count above the CRD's hard limit",
            json!({"count": MAX_COUNT + 1, "selector": {"app": "web"}}),
            &["spec.count"],
        ),
        // Refused: selector.
        refused("empty selector", selecting(json!({})), &["spec.selector"]),
        refused(
            "one selector label too many",
            selecting(many_labels(MAX_SELECTOR_LABELS + 1)),
            &["spec.selector"],
        ),
        refused(
            "key with a space",
            selecting(json!({"bad key": "x"})),
            &["spec.selector[\"bad key\"]"],
        ),
        refused(
            "key with two slashes",
            selecting(json!({"a/b/c": "x"})),
            &["spec.selector[\"a/b/c\"]"],
        ),
        refused(
            "key with an empty prefix",
            selecting(json!({"/app": "x"})),
            &["spec.selector[\"/app\"]"],
        ),
        refused(
            "key with an upper-case prefix",
            selecting(json!({"Example.com/app": "x"})),
            &["spec.selector[\"Example.com/app\"]"],
        ),
        refused(
            "key ending in a dash",
            selecting(json!({"app-": "x"})),
            &["spec.selector[\"app-\"]"],
        ),
        refused(
            "key whose name is 64 characters",
            selecting(json!({ long_name.clone(): "x" })),
            &[&format!("spec.selector[\"{long_name}\"]")],
        ),
        refused(
            "key whose prefix is 254 characters",
            selecting(json!({ long_prefix_key.clone(): "x" })),
            &[&format!("spec.selector[\"{long_prefix_key}\"]")],
        ),
        refused(
            "value starting with a dash",
            selecting(json!({"app": "-web"})),
            &["spec.selector[\"app\"]"],
        ),
        refused(
            "64-character value",
            selecting(json!({"app": "v".repeat(64)})),
            &["spec.selector[\"app\"]"],
        ),
        refused(
            "bad key and bad value on one label",
            selecting(json!({"a/b/c": "x y"})),
            &["spec.selector[\"a/b/c\"]"],
        ),
        // Refused: template.
        refused(
            "template label contradicting the selector",
            templated(template_with_labels(json!({"app": "db"}))),
            &["spec.template.metadata.labels[\"app\"]"],
        ),
        refused(
            "template label with a bad value",
            templated(template_with_labels(json!({"tier": "front end"}))),
            &["spec.template.metadata.labels[\"tier\"]"],
        ),
        refused(
            "template label with a bad key",
            templated(template_with_labels(json!({"bad key": "x"}))),
            &["spec.template.metadata.labels[\"bad key\"]"],
        ),
        refused(
            "one template label too many",
            templated(template_with_labels(with_many_template_labels)),
            &["spec.template.metadata.labels"],
        ),
        refused(
            "template without a pod spec",
            templated(json!({"metadata": {"labels": {"app": "web"}}})),
            &["spec.template.spec"],
        ),
        refused(
            "template without containers",
            templated(json!({"spec": {"containers": []}})),
            &["spec.template.spec.containers"],
        ),
        refused(
            "container without an image",
            templated(json!({"spec": {"containers": [{"name": "web"}]}})),
            &["spec.template.spec.containers[0].image"],
        ),
        refused(
            "container with a blank image",
            templated(json!({"spec": {"containers": [
                {"name": "web", "image": "nginx"},
                {"name": "side", "image": " "},
            ]}})),
            &["spec.template.spec.containers[1].image"],
        ),
        refused(
            "container name with upper case",
            templated(json!({"spec": {"containers": [{"name": "Web", "image": "nginx"}]}})),
            &["spec.template.spec.containers[0].name"],
        ),
        refused(
            "two containers with one name",
            templated(json!({"spec": {"containers": [
                {"name": "web", "image": "nginx"},
                {"name": "web", "image": "busybox"},
            ]}})),
            &["spec.template.spec.containers[1]"],
        ),
        refused(
            "restartPolicy other than Always",
            templated(json!({"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "web", "image": "nginx"}],
            }})),
            &["spec.template.spec.restartPolicy"],
        ),
        refused(
            "everything wrong at once",
            json!({
                "count": -5,
                "selector": {"app": "web", "bad key": "v"},
                "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": []}},
            }),
            &[
                "spec.count",
                "spec.selector[\"bad key\"]",
                "spec.template.metadata.labels[\"app\"]",
                "spec.template.spec.containers",
            ],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::PodScalerSpec;
    use crate::validation::{SpecLimits, validate_spec};

    #[test]
    fn the_webhook_rules_refuse_exactly_the_fields_in_the_table() {
        for case in cases() {
            let spec: PodScalerSpec = match serde_json::from_value(case.spec.clone()) {
                Ok(spec) => spec,
                Err(error) => panic!("{}: the row is not a PodScalerSpec: {error}", case.name),
            };
            let got: BTreeSet<String> = validate_spec(&spec, &SpecLimits::default())
                .into_iter()
                .map(|error| error.field)
                .collect();
            let want: BTreeSet<String> = case.refused.iter().cloned().collect();
            assert_eq!(got, want, "{}", case.name);
        }
    }

    #[test]
    fn counts_avoid_the_range_only_the_webhook_refuses() {
        for case in cases() {
            let count = case.spec["count"].as_i64().unwrap_or_default();
            assert!(
                count <= i64::from(DEFAULT_MAX_COUNT) || count > i64::from(MAX_COUNT),
                "{}: count {count} is refused by the webhook's default limit only",
                case.name
            );
        }
    }

    #[test]
    fn every_kind_of_answer_is_in_the_table() {
        let cases = cases();
        assert!(cases.iter().any(Case::is_accepted));
        let fields: BTreeSet<&str> = cases
            .iter()
            .flat_map(|case| case.refused.iter().map(String::as_str))
            .collect();
        for field in [
            "spec.count",
            "spec.selector",
            "spec.template.metadata.labels",
            "spec.template.spec",
            "spec.template.spec.containers",
            "spec.template.spec.restartPolicy",
        ] {
            assert!(fields.contains(field), "no row refuses {field}");
        }
        let names: BTreeSet<&str> = cases.iter().map(|case| case.name).collect();
        assert_eq!(names.len(), cases.len(), "row names are unique");
    }

    #[test]
    fn generated_lengths_are_what_the_rows_claim() {
        assert_eq!(subdomain(253).len(), 253);
        assert_eq!(subdomain(254).len(), 254);
        assert!(crate::validation::syntax::dns1123_subdomain_errors(&subdomain(253)).is_empty());
    }
}
