//! The OpenAPI constraints and CEL rules that let the API server refuse, without the webhook,
//! every bad PodScaler that can be judged from the object alone.
//!
//! They mirror [`crate::validation`] rule for rule (the regular expressions and lengths are
//! that module's own constants), so the webhook and the CRD agree; the table in
//! [`crate::validation::agreement`] is checked against both. Overlap with other PodScalers
//! needs other objects and stays the webhook's alone.
//!
//! The API server refuses a CRD whose rules' *estimated* cost is too high (10 M per rule),
//! and estimates a map or list without a bound as large as a 3 MB request allows. Every map a
//! rule iterates therefore has `maxProperties` and every value it reads a `maxLength`.
//! Map keys cannot carry a `maxLength`; the estimator counts them as free, and the rules
//! bound their length themselves.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSON, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool, ValidationRule,
};

use super::{MAX_SELECTOR_LABELS, MAX_TEMPLATE_LABELS};
use crate::validation::{
    DNS1123_LABEL_FMT, DNS1123_LABEL_MAX_LENGTH, DNS1123_SUBDOMAIN_FMT,
    DNS1123_SUBDOMAIN_MAX_LENGTH, LABEL_VALUE_MAX_LENGTH, QUALIFIED_NAME_FMT,
    QUALIFIED_NAME_MAX_LENGTH,
};

/// Adds every rule to the schema of `spec` (as generated from [`crate::api::PodScalerSpec`]).
/// A part of the schema that is missing is left alone; the tests assert each rule landed.
pub(super) fn add_to_spec(spec: &mut JSONSchemaProps) {
    if let Some(selector) = property(spec, &["selector"]) {
        selector.max_properties = Some(as_i64(MAX_SELECTOR_LABELS));
        limit_values(selector, LABEL_VALUE_MAX_LENGTH);
        add_rules(selector, label_rules("spec.selector"));
    }
    if let Some(labels) = property(spec, &["template", "metadata", "labels"]) {
        labels.max_properties = Some(as_i64(MAX_TEMPLATE_LABELS));
        limit_values(labels, LABEL_VALUE_MAX_LENGTH);
        add_rules(labels, label_rules("spec.template.metadata.labels"));
    }
    // Needs both the selector and the template, so it sits on spec and points at the labels.
    add_rules(spec, vec![template_labels_match_selector()]);
    if let Some(template) = property(spec, &["template"]) {
        add_rules(
            template,
            vec![ValidationRule {
                rule: "has(self.spec)".to_owned(),
                field_path: Some(".spec".to_owned()),
                message: Some(
                    "spec.template.spec must be set, with at least one container: add \
                     spec.template.spec.containers, or remove spec.template to run the default \
                     nginx:latest container"
                        .to_owned(),
                ),
                ..ValidationRule::default()
            }],
        );
    }
    if let Some(containers) = property(spec, &["template", "spec", "containers"]) {
        add_rules(
            containers,
            vec![ValidationRule {
                rule: "size(self) > 0".to_owned(),
                message: Some(
                    "spec.template.spec.containers must contain at least one container: a pod \
                     without containers cannot be created; add a container, or remove \
                     spec.template to run the default nginx:latest container"
                        .to_owned(),
                ),
                ..ValidationRule::default()
            }],
        );
        if let Some(JSONSchemaPropsOrArray::Schema(container)) = containers.items.as_mut() {
            constrain_container(container);
        }
    }
    if let Some(restart_policy) = property(spec, &["template", "spec", "restartPolicy"]) {
        // Pods that exit stop counting and would be replaced forever.
        restart_policy.enum_ = Some(vec![JSON(serde_json::Value::from("Always"))]);
    }
}

/// Container names are DNS-1123 labels and an image is required, as for a pod; plain
/// OpenAPI, so the API server's messages name `spec.template.spec.containers[i].name`.
fn constrain_container(container: &mut JSONSchemaProps) {
    if let Some(name) = property(container, &["name"]) {
        name.max_length = Some(as_i64(DNS1123_LABEL_MAX_LENGTH));
        name.pattern = Some(format!("^{DNS1123_LABEL_FMT}$"));
    }
    if let Some(image) = property(container, &["image"]) {
        // Something other than whitespace, as the webhook requires.
        image.pattern = Some(r"\S".to_owned());
    }
    let required = container.required.get_or_insert_with(Vec::new);
    if !required.iter().any(|field| field == "image") {
        required.push("image".to_owned());
    }
}

/// Label keys and values of the map at `path`, checked as Kubernetes checks labels. The
/// messages name each offending entry the way the webhook does: `spec.selector["bad key"]`.
fn label_rules(path: &str) -> Vec<ValidationRule> {
    let key_ok = qualified_name("k");
    let value_ok = label_value("self[k]");
    vec![
        ValidationRule {
            rule: format!("self.all(k, {key_ok})"),
            // Shown should the message expression fail to evaluate.
            message: Some(format!(
                "{path} has a label key that is not a qualified name"
            )),
            message_expression: Some(first_offender(
                &format!("self.filter(k, !({key_ok}))"),
                &format!(
                    "'{path}[\"' + k + '\"]: not a valid label key: a name of at most \
                     {QUALIFIED_NAME_MAX_LENGTH} alphanumeric characters, \\'-\\', \\'_\\' \
                     or \\'.\\', starting and ending with an alphanumeric character, with an \
                     optional DNS subdomain prefix of at most {DNS1123_SUBDOMAIN_MAX_LENGTH} \
                     characters and \\'/\\' (e.g. \"app\" or \"example.com/app\")'"
                ),
            )),
            ..ValidationRule::default()
        },
        ValidationRule {
            rule: format!("self.all(k, {value_ok})"),
            message: Some(format!(
                "{path} has a value that is not a valid label value"
            )),
            message_expression: Some(first_offender(
                &format!("self.filter(k, !({value_ok}))"),
                &format!(
                    "'{path}[\"' + k + '\"]: \"' + self[k] + '\" is not a valid label \
                     value: empty, or at most {LABEL_VALUE_MAX_LENGTH} alphanumeric characters, \
                     \\'-\\', \\'_\\' or \\'.\\', starting and ending with an alphanumeric \
                     character (e.g. \"nginx\" or \"web-1\")'"
                ),
            )),
            ..ValidationRule::default()
        },
    ]
}

/// CEL: `message` (an expression over `k`) for the first key `offenders` lists. Only the
/// first: `join` over a computed list has an unbounded cost estimate, which the API server
/// refuses; the webhook lists them all.
fn first_offender(offenders: &str, message: &str) -> String {
    format!("{offenders}.map(k, {message})[0]")
}

/// Template labels, where set, must not contradict the selector: pods made from the template
/// would not match it and the operator would create pods forever. A missing selector label
/// is fine (the operator and the mutating webhook add it).
fn template_labels_match_selector() -> ValidationRule {
    const LABELS: &str = "self.template.metadata.labels";
    ValidationRule {
        rule: format!(
            "!has(self.template) || !has(self.template.metadata) || \
             !has({LABELS}) || self.selector.all(k, !(k in {LABELS}) || \
             {LABELS}[k] == self.selector[k])"
        ),
        field_path: Some(".template.metadata.labels".to_owned()),
        message: Some(
            "spec.template.metadata.labels contradicts spec.selector: set each selector label \
             to the selector's value or remove it so it is defaulted"
                .to_owned(),
        ),
        message_expression: Some(first_offender(
            &format!("self.selector.filter(k, k in {LABELS} && {LABELS}[k] != self.selector[k])"),
            &format!(
                "'spec.template.metadata.labels[\"' + k + '\"] must be \"' + \
                 self.selector[k] + '\" to match spec.selector (got \"' + {LABELS}[k] + \
                 '\"): pods created from this template would not match the selector and the \
                 operator would create pods forever; set it to the selector\\'s value or remove \
                 it so it is defaulted'"
            ),
        )),
        ..ValidationRule::default()
    }
}

/// CEL: whether `key` is a qualified name (Kubernetes' `IsQualifiedName`): an optional DNS
/// subdomain prefix of at most 253 characters and `/`, then a name of at most 63.
fn qualified_name(key: &str) -> String {
    // indexOf is -1 without a prefix, so `size - indexOf` is the name's length plus one.
    format!(
        "{key}.matches(r'^({DNS1123_SUBDOMAIN_FMT}/)?{QUALIFIED_NAME_FMT}$') && \
         {key}.indexOf('/') <= {DNS1123_SUBDOMAIN_MAX_LENGTH} && \
         size({key}) - {key}.indexOf('/') <= {name_plus_one}",
        name_plus_one = QUALIFIED_NAME_MAX_LENGTH + 1
    )
}

/// CEL: whether `value` is a label value (Kubernetes' `IsValidLabelValue`).
fn label_value(value: &str) -> String {
    format!(
        "size({value}) <= {LABEL_VALUE_MAX_LENGTH} && \
         {value}.matches(r'^({QUALIFIED_NAME_FMT})?$')"
    )
}

/// Bounds the length of every value of a string map, for the rules' cost estimate. A value
/// over it is reported by this constraint alone (`spec.selector.app: Too long`): the API
/// server skips CEL rules whose cost estimate relied on a bound the object breaks.
fn limit_values(map: &mut JSONSchemaProps, max_length: usize) {
    if let Some(JSONSchemaPropsOrBool::Schema(values)) = map.additional_properties.as_mut() {
        values.max_length = Some(as_i64(max_length));
    }
}

fn add_rules(schema: &mut JSONSchemaProps, rules: Vec<ValidationRule>) {
    schema
        .x_kubernetes_validations
        .get_or_insert_with(Vec::new)
        .extend(rules);
}

/// The schema of the property reached by following `path` through `properties`.
pub(super) fn property<'a>(
    schema: &'a mut JSONSchemaProps,
    path: &[&str],
) -> Option<&'a mut JSONSchemaProps> {
    path.iter().try_fold(schema, |schema, name| {
        schema.properties.as_mut().and_then(|p| p.get_mut(*name))
    })
}

fn as_i64(value: usize) -> i64 {
    // The limits are small constants; saturating keeps this total anyway.
    i64::try_from(value).unwrap_or(i64::MAX)
}
