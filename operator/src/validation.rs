//! Validation of PodScaler specs: every rule that needs no cluster.
//!
//! The CRD carries the same rules as OpenAPI constraints and CEL (`crate::crd`, built from this
//! module's patterns and lengths), so the API server refuses the same specs when the webhook
//! is absent; [`agreement`] is the table both are tested against. Only the overlap check needs
//! other objects and exists here alone.
//!
//! The admission webhook runs these on CREATE and UPDATE; the operator can run
//! [`validate_spec`] to refuse to act on an object that got past a webhook that was not
//! installed yet. Each rule reports a [`FieldError`] naming the field (in the form Kubernetes
//! uses, map keys quoted: `spec.selector["app.kubernetes.io/name"]`) and a message that says
//! how to fix it. All violations are reported at once.
//!
//! Label keys and values are checked exactly as Kubernetes checks labels
//! (`k8s.io/apimachinery/pkg/util/validation`: `IsQualifiedName`, `IsValidLabelValue`), with
//! Kubernetes' own wording, so a selector accepted here is accepted by the API server on the
//! pods the operator creates.
//!
//! On UPDATE the rules ratchet, as the API server does for CRD schemas: a violation the old
//! object already had, in a field the update did not change, is returned as a warning rather
//! than an error. Metadata-only updates (labels, annotations, finalizers) of an object created
//! before a rule existed, or under a higher `--max-count`, therefore still go through.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::api::{PodScalerSpec, apply_defaults, selector_string};
use crate::crd::{MAX_COUNT, MAX_SELECTOR_LABELS, MAX_TEMPLATE_LABELS};

pub mod agreement;

/// The `--max-count` default: the largest `spec.count` accepted. At most
/// [`crate::crd::MAX_COUNT`], the CRD's hard limit, which `--max-count` cannot exceed.
pub const DEFAULT_MAX_COUNT: i32 = 1000;

// The webhook's default must fit under the CRD's hard limit, or its default would be a lie.
const _: () = assert!(DEFAULT_MAX_COUNT <= MAX_COUNT);

pub(crate) const QUALIFIED_NAME_MAX_LENGTH: usize = 63;
pub(crate) const LABEL_VALUE_MAX_LENGTH: usize = 63;
pub(crate) const DNS1123_SUBDOMAIN_MAX_LENGTH: usize = 253;
pub(crate) const DNS1123_LABEL_MAX_LENGTH: usize = 63;

pub(crate) const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
pub(crate) const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
pub(crate) const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
pub(crate) const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";

/// One violation: the field it is about and what to do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldError {
    /// The field, as Kubernetes names fields: `spec.count`, `spec.selector["app"]`,
    /// `spec.template.spec.containers[0].image`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A PodScaler that must not be admitted, with every reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", join(.errors))]
pub struct Invalid {
    /// Every violation, in rule order.
    pub errors: Vec<FieldError>,
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Configurable bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest `spec.count` accepted (`--max-count`).
    pub max_count: i32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_count: DEFAULT_MAX_COUNT,
        }
    }
}

/// Another PodScaler in the same namespace, as far as overlap is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    /// Its `metadata.name`.
    pub name: &'a str,
    /// Its `spec.selector`.
    pub selector: &'a BTreeMap<String, String>,
}

/// The outcome of validating one admission: errors deny it, warnings are shown to the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Violations that deny the request.
    pub errors: Vec<FieldError>,
    /// Violations tolerated because the update did not introduce them (ratcheting).
    pub warnings: Vec<FieldError>,
}

impl Verdict {
    /// Whether the request may be admitted.
    pub fn is_allowed(&self) -> bool {
        self.errors.is_empty()
    }

    /// `Ok(warnings)` when admitted, otherwise every error.
    pub fn into_result(self) -> Result<Vec<FieldError>, Invalid> {
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(Invalid {
                errors: self.errors,
            })
        }
    }
}

/// Validates a PodScaler being created: [`validate_spec`] plus overlap with `peers` (the other
/// PodScalers of its namespace; a peer named `name` is the object itself and is skipped).
pub fn validate_create<'a>(
    name: &str,
    spec: &PodScalerSpec,
    peers: impl IntoIterator<Item = Peer<'a>>,
    limits: &Limits,
) -> Verdict {
    let mut errors = validate_spec(spec, limits);
    errors.extend(validate_no_overlap(name, &spec.selector, peers));
    Verdict {
        errors,
        warnings: Vec::new(),
    }
}

/// Validates an update from `old` to `new`: the selector must not change, and the rules of
/// [`validate_create`] apply with ratcheting (a violation `old` already had, word for word, is
/// a warning; so is an overlap `old` already had with the same peer).
pub fn validate_update<'a>(
    name: &str,
    old: &PodScalerSpec,
    new: &PodScalerSpec,
    peers: impl IntoIterator<Item = Peer<'a>> + Clone,
    limits: &Limits,
) -> Verdict {
    let mut verdict = Verdict::default();
    if let Some(changed) = validate_selector_unchanged(old, new) {
        verdict.errors.push(changed);
    }
    let before = validate_create(name, old, peers.clone(), limits).errors;
    for error in validate_create(name, new, peers, limits).errors {
        if before.contains(&error) {
            verdict.warnings.push(error);
        } else {
            verdict.errors.push(error);
        }
    }
    verdict
}

/// Every rule on a single spec: count bounds, selector syntax, and a template the operator
/// can create matching pods from. Templates are checked as the operator will use them, after
/// [`apply_defaults`]: a missing selector label is filled in, a contradicting one is an error.
pub fn validate_spec(spec: &PodScalerSpec, limits: &Limits) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_count(spec.count, limits, &mut errors);
    validate_selector(&spec.selector, &mut errors);
    if spec.template.is_some() {
        let mut defaulted = spec.clone();
        apply_defaults(&mut defaulted);
        if let Some(template) = &defaulted.template {
            validate_template(template, &spec.selector, &mut errors);
        }
    }
    errors
}

fn validate_count(count: i32, limits: &Limits, errors: &mut Vec<FieldError>) {
    if count < 0 {
        errors.push(FieldError::new(
            "spec.count",
            format!(
                "must be 0 or more (got {count}): set spec.count to the number of pods to keep"
            ),
        ));
    } else if count > MAX_COUNT {
        // Raising --max-count would not help: the CRD's schema refuses it too.
        errors.push(FieldError::new(
            "spec.count",
            format!(
                "must be at most {MAX_COUNT}, PodScaler's hard limit (got {count}): lower \
                 spec.count"
            ),
        ));
    } else if count > limits.max_count {
        errors.push(FieldError::new(
            "spec.count",
            format!(
                "must be at most {max} (got {count}): lower spec.count, or ask the cluster \
                 administrator to raise the webhook's --max-count",
                max = limits.max_count
            ),
        ));
    }
}

fn validate_selector(selector: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    if selector.is_empty() {
        errors.push(FieldError::new(
            "spec.selector",
            "must contain at least one label: an empty selector would match every pod in the \
             namespace; add the labels of the pods to keep, e.g. {app: nginx}",
        ));
        return;
    }
    if selector.len() > MAX_SELECTOR_LABELS {
        errors.push(FieldError::new(
            "spec.selector",
            format!(
                "must name at most {MAX_SELECTOR_LABELS} labels (got {}): select the pods by \
                 fewer labels",
                selector.len()
            ),
        ));
    }
    validate_labels("spec.selector", selector, errors);
}

fn validate_labels(path: &str, labels: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    for (key, value) in labels {
        let field = format!("{path}[{key:?}]");
        let key_errors = label_key_errors(key);
        if !key_errors.is_empty() {
            errors.push(FieldError::new(
                field.clone(),
                format!(
                    "{key:?} is not a valid label key: {}; use a key such as \"app\" or \
                     \"example.com/app\"",
                    key_errors.join(", ")
                ),
            ));
        }
        let value_errors = label_value_errors(value);
        if !value_errors.is_empty() {
            errors.push(FieldError::new(
                field,
                format!(
                    "{value:?} is not a valid label value: {}; use a value such as \"nginx\" or \
                     \"web-1\"",
                    value_errors.join(", ")
                ),
            ));
        }
    }
}

fn validate_template(
    template: &PodTemplateSpec,
    selector: &BTreeMap<String, String>,
    errors: &mut Vec<FieldError>,
) {
    let labels = template
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.labels.clone())
        .unwrap_or_default();
    for (key, want) in selector {
        match labels.get(key) {
            Some(got) if got == want => {}
            got => errors.push(FieldError::new(
                format!("spec.template.metadata.labels[{key:?}]"),
                format!(
                    "must be {want:?} to match spec.selector (got {}): pods created from this \
                     template would not match the selector and the operator would create pods \
                     forever; set it to {want:?} or remove it so it is defaulted",
                    got.map_or_else(|| "nothing".to_owned(), |got| format!("{got:?}"))
                ),
            )),
        }
    }
    if labels.len() > MAX_TEMPLATE_LABELS {
        errors.push(FieldError::new(
            "spec.template.metadata.labels",
            format!(
                "must have at most {MAX_TEMPLATE_LABELS} labels, the selector's included (got \
                 {}): remove some",
                labels.len()
            ),
        ));
    }
    let extra: BTreeMap<String, String> = labels
        .into_iter()
        .filter(|(key, _)| !selector.contains_key(key))
        .collect();
    validate_labels("spec.template.metadata.labels", &extra, errors);

    let Some(pod) = &template.spec else {
        errors.push(FieldError::new(
            "spec.template.spec",
            "must be set, with at least one container: add spec.template.spec.containers, or \
             remove spec.template to run the default nginx:latest container",
        ));
        return;
    };
    if pod.containers.is_empty() {
        errors.push(FieldError::new(
            "spec.template.spec.containers",
            "must contain at least one container: a pod without containers cannot be created; \
             add a container, or remove spec.template to run the default nginx:latest container",
        ));
    }
    let mut seen = Vec::with_capacity(pod.containers.len());
    for (index, container) in pod.containers.iter().enumerate() {
        let path = format!("spec.template.spec.containers[{index}]");
        let name_errors = dns1123_label_errors(&container.name);
        if !name_errors.is_empty() {
            errors.push(FieldError::new(
                format!("{path}.name"),
                format!(
                    "{:?} is not a valid container name: {}; use a name such as \"app\"",
                    container.name,
                    name_errors.join(", ")
                ),
            ));
        } else if seen.contains(&container.name.as_str()) {
            // The element, not its name: the CRD's list-map keyed by name reports the
            // duplicate there too (`containers[2]: Duplicate value`).
            errors.push(FieldError::new(
                path.clone(),
                format!(
                    "name {:?} is used by another container of this template: give each \
                     container its own name",
                    container.name
                ),
            ));
        }
        seen.push(container.name.as_str());
        if container
            .image
            .as_deref()
            .is_none_or(|image| image.trim().is_empty())
        {
            errors.push(FieldError::new(
                format!("{path}.image"),
                "must be set: the API server refuses pods whose containers have no image; set \
                 the image to run, e.g. nginx:1.27",
            ));
        }
    }
    if let Some(policy) = pod.restart_policy.as_deref()
        && policy != "Always"
    {
        errors.push(FieldError::new(
            "spec.template.spec.restartPolicy",
            format!(
                "must be \"Always\" (got {policy:?}): pods that exit stop counting and the \
                 operator would replace them forever; remove restartPolicy or set it to \
                 \"Always\""
            ),
        ));
    }
}

/// The selector must not change on UPDATE: pods selected under the old selector would be
/// orphaned and new ones created.
pub fn validate_selector_unchanged(old: &PodScalerSpec, new: &PodScalerSpec) -> Option<FieldError> {
    (old.selector != new.selector).then(|| {
        FieldError::new(
            "spec.selector",
            format!(
                "is immutable (was {:?}, now {:?}): create a new PodScaler to select different \
                 pods, then delete this one",
                selector_string(&old.selector),
                selector_string(&new.selector)
            ),
        )
    })
}

/// One error per peer whose selector overlaps `selector` (a pod could match both, and the two
/// PodScalers would fight over it). The peer named `name` is the object itself and is skipped.
///
/// An empty or syntactically invalid selector is compared with nobody. Two equality selectors
/// overlap unless they share a key with different values, so a mistyped key no other
/// PodScaler uses (`"app name": web`) would "overlap" every PodScaler in the namespace; that
/// list would bury the one error that matters, the syntax, which is reported on its own.
pub fn validate_no_overlap<'a>(
    name: &str,
    selector: &BTreeMap<String, String>,
    peers: impl IntoIterator<Item = Peer<'a>>,
) -> Vec<FieldError> {
    if !is_well_formed(selector) {
        return Vec::new();
    }
    let mut overlapping: Vec<Peer<'a>> = peers
        .into_iter()
        .filter(|peer| peer.name != name && selectors_overlap(selector, peer.selector))
        .collect();
    overlapping.sort_by(|a, b| a.name.cmp(b.name));
    overlapping
        .into_iter()
        .map(|peer| {
            let mut both = selector.clone();
            both.extend(peer.selector.iter().map(|(k, v)| (k.clone(), v.clone())));
            FieldError::new(
                "spec.selector",
                format!(
                    "overlaps PodScaler {peer:?} (selector {theirs:?}): a pod labelled {both:?} \
                     would match both and they would fight over it; give this PodScaler a label \
                     that {peer:?} also selects, with a different value",
                    peer = peer.name,
                    theirs = selector_string(peer.selector),
                    both = selector_string(&both),
                ),
            )
        })
        .collect()
}

/// Whether two equality selectors can match the same pod: they overlap unless some key they
/// share has different values (a pod carrying the union of both label sets matches both).
/// An empty selector matches every pod and so overlaps everything.
pub fn selectors_overlap(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.iter()
        .all(|(key, value)| b.get(key).is_none_or(|other| other == value))
}

/// Why `key` is not a valid label key (Kubernetes' `IsQualifiedName`); empty when it is.
pub fn label_key_errors(key: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_owned());
            } else {
                errors.extend(
                    dns1123_subdomain_errors(prefix)
                        .into_iter()
                        .map(|error| format!("prefix part {error}")),
                );
            }
            *name
        }
        _ => {
            errors.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')",
                regex_error(
                    QUALIFIED_NAME_ERR,
                    QUALIFIED_NAME_FMT,
                    &["MyName", "my.name", "123-abc"]
                )
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > QUALIFIED_NAME_MAX_LENGTH {
        errors.push(format!(
            "name part {}",
            max_len_error(QUALIFIED_NAME_MAX_LENGTH)
        ));
    }
    if !is_qualified_name_part(name) {
        errors.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errors
}

/// Why `value` is not a valid label value (Kubernetes' `IsValidLabelValue`); empty when it is.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > LABEL_VALUE_MAX_LENGTH {
        errors.push(max_len_error(LABEL_VALUE_MAX_LENGTH));
    }
    if !(value.is_empty() || is_qualified_name_part(value)) {
        errors.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errors
}

/// Why `value` is not a DNS-1123 subdomain (Kubernetes' `IsDNS1123Subdomain`); empty when it is.
pub fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(is_dns1123_label) {
        errors.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errors
}

/// Why `value` is not a DNS-1123 label (Kubernetes' `IsDNS1123Label`); empty when it is.
pub fn dns1123_label_errors(value: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if value.len() > DNS1123_LABEL_MAX_LENGTH {
        errors.push(max_len_error(DNS1123_LABEL_MAX_LENGTH));
    }
    if !is_dns1123_label(value) {
        errors.push(regex_error(
            DNS1123_LABEL_ERR,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errors
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, anchored.
fn is_qualified_name_part(value: &str) -> bool {
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, anchored.
fn is_dns1123_label(value: &str) -> bool {
    let lower_alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = value.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            lower_alnum(first)
                && lower_alnum(last)
                && bytes.iter().all(|b| lower_alnum(b) || *b == b'-')
        }
        _ => false,
    }
}

/// Whether `selector` names at least one label and every key and value is valid label syntax.
fn is_well_formed(selector: &BTreeMap<String, String>) -> bool {
    !selector.is_empty()
        && selector.iter().all(|(key, value)| {
            label_key_errors(key).is_empty() && label_value_errors(value).is_empty()
        })
}

fn max_len_error(length: usize) -> String {
    format!("must be no more than {length} characters")
}

fn regex_error(message: &str, format: &str, examples: &[&str]) -> String {
    let mut out = message.to_owned();
    if !examples.is_empty() {
        out.push_str(" (e.g. ");
        let quoted: Vec<String> = examples.iter().map(|e| format!("'{e}'")).collect();
        out.push_str(&quoted.join(",  or "));
        out.push_str(", regex used for validation is '");
        out.push_str(format);
        out.push_str("')");
    }
    out
}

#[cfg(test)]
mod tests {
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
    fn label_key_table() {
        let long63 = "a".repeat(63);
        let long64 = "a".repeat(64);
        let prefix253 = format!("{}.{}", "a".repeat(63), "b".repeat(189));
        let prefix254 = format!("{}.{}", "a".repeat(63), "b".repeat(190));
        let cases: Vec<(String, Vec<&str>)> = vec![
            ("app".into(), vec![]),
            ("App_Name-1.x".into(), vec![]),
            ("a".into(), vec![]),
            ("1".into(), vec![]),
            ("app.kubernetes.io/name".into(), vec![]),
            ("example.com/MyName".into(), vec![]),
            (long63.clone(), vec![]),
            (format!("{prefix253}/x"), vec![]),
            (
                "".into(),
                vec!["name part must be non-empty", "name part must consist"],
            ),
            (long64, vec!["name part must be no more than 63 characters"]),
            ("-app".into(), vec!["name part must consist"]),
            ("app-".into(), vec!["name part must consist"]),
            ("app name".into(), vec!["name part must consist"]),
            ("app!".into(), vec!["name part must consist"]),
            ("ünïcode".into(), vec!["name part must consist"]),
            ("/app".into(), vec!["prefix part must be non-empty"]),
            (
                "example.com/".into(),
                vec!["name part must be non-empty", "name part must consist"],
            ),
            (
                "Example.com/app".into(),
                vec!["prefix part a lowercase RFC 1123 subdomain"],
            ),
            (
                "example_com/app".into(),
                vec!["prefix part a lowercase RFC 1123 subdomain"],
            ),
            (
                "example..com/app".into(),
                vec!["prefix part a lowercase RFC 1123 subdomain"],
            ),
            (
                format!("{prefix254}/x"),
                vec!["prefix part must be no more than 253 characters"],
            ),
            ("a/b/c".into(), vec!["a qualified name must consist"]),
        ];
        for (key, want) in cases {
            let got = label_key_errors(&key);
            assert_eq!(got.len(), want.len(), "{key:?}: {got:?}");
            for (got, want) in got.iter().zip(&want) {
                assert!(
                    got.starts_with(want),
                    "{key:?}: {got:?} should start with {want:?}"
                );
            }
        }
    }

    #[test]
    fn label_key_messages_are_kubernetes_wording() {
        assert_eq!(
            label_key_errors("-x"),
            vec![
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must \
                 start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or \
                 '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                    .to_owned()
            ]
        );
    }

    #[test]
    fn label_value_table() {
        let cases: Vec<(String, Vec<&str>)> = vec![
            ("".into(), vec![]),
            ("nginx".into(), vec![]),
            ("My_Value-1.2".into(), vec![]),
            ("a".repeat(63), vec![]),
            ("a".repeat(64), vec!["must be no more than 63 characters"]),
            (
                format!("{}-", "a".repeat(64)),
                vec!["must be no more than 63 characters", "a valid label must"],
            ),
            ("-nginx".into(), vec!["a valid label must"]),
            ("nginx.".into(), vec!["a valid label must"]),
            ("a/b".into(), vec!["a valid label must"]),
            ("has space".into(), vec!["a valid label must"]),
        ];
        for (value, want) in cases {
            let got = label_value_errors(&value);
            assert_eq!(got.len(), want.len(), "{value:?}: {got:?}");
            for (got, want) in got.iter().zip(&want) {
                assert!(got.starts_with(want), "{value:?}: {got:?}");
            }
        }
    }

    #[test]
    fn dns_label_table() {
        let cases = [
            ("app", true),
            ("a-1", true),
            ("1a", true),
            ("", false),
            ("App", false),
            ("a_b", false),
            ("-a", false),
            ("a.b", false),
        ];
        for (value, ok) in cases {
            assert_eq!(dns1123_label_errors(value).is_empty(), ok, "{value:?}");
        }
        assert_eq!(
            dns1123_label_errors(&"a".repeat(64)),
            vec!["must be no more than 63 characters".to_owned()]
        );
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
                &Limits {
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
        let errors = validate_spec(&spec, &Limits::default());
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
    fn overlap_table() {
        let cases = [
            (vec![("app", "a")], vec![("app", "a")], true),
            (vec![("app", "a")], vec![("app", "b")], false),
            (vec![("app", "a")], vec![("tier", "web")], true),
            (
                vec![("app", "a"), ("tier", "web")],
                vec![("app", "a")],
                true,
            ),
            (
                vec![("app", "a"), ("tier", "web")],
                vec![("app", "a"), ("tier", "db")],
                false,
            ),
            (
                vec![("app", "a"), ("x", "1")],
                vec![("tier", "db"), ("y", "2")],
                true,
            ),
            (vec![], vec![("app", "a")], true),
            (vec![], vec![], true),
        ];
        for (a, b, want) in cases {
            let (a, b) = (labels(&a), labels(&b));
            assert_eq!(selectors_overlap(&a, &b), want, "{a:?} vs {b:?}");
            assert_eq!(selectors_overlap(&b, &a), want, "symmetric: {b:?} vs {a:?}");
        }
    }

    #[test]
    fn overlap_errors_name_each_peer_and_skip_self() {
        let web = labels(&[("app", "web")]);
        let web_front = labels(&[("app", "web"), ("tier", "front")]);
        let db = labels(&[("app", "db")]);
        let peers = [
            Peer {
                name: "zeta",
                selector: &web_front,
            },
            Peer {
                name: "self",
                selector: &web,
            },
            Peer {
                name: "db",
                selector: &db,
            },
            Peer {
                name: "alpha",
                selector: &web,
            },
        ];
        let errors = validate_no_overlap("self", &web, peers);
        assert_eq!(fields(&errors), ["spec.selector", "spec.selector"]);
        assert!(
            errors[0]
                .message
                .starts_with("overlaps PodScaler \"alpha\" (selector \"app=web\")"),
            "{errors:?}"
        );
        assert!(
            errors[1].message.starts_with("overlaps PodScaler \"zeta\""),
            "{errors:?}"
        );
        assert!(
            errors[1]
                .message
                .contains("a pod labelled \"app=web,tier=front\" would match both"),
            "{errors:?}"
        );
        assert!(validate_no_overlap("x", &BTreeMap::new(), peers).is_empty());
        for invalid in [
            labels(&[("bad key", "x")]),
            labels(&[("app", "web!")]),
            labels(&[("app", "api"), ("-leading", "x")]),
            labels(&[("app", &"v".repeat(64))]),
        ] {
            assert!(
                validate_no_overlap("x", &invalid, peers).is_empty(),
                "an invalid selector reports its syntax only: {invalid:?}"
            );
        }
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
            &Limits::default(),
        );
        assert_eq!(fields(&verdict.errors), ["spec.count", "spec.selector"]);
        assert!(!verdict.is_allowed());
        let err = verdict.into_result().expect_err("denied");
        assert!(
            err.to_string().starts_with("spec.count: must be 0 or more"),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("; spec.selector: overlaps PodScaler \"other\""),
            "{err}"
        );

        let ok = validate_create("new", &spec(1, &[("app", "db")]), peers, &Limits::default());
        assert_eq!(ok.into_result(), Ok(vec![]));
    }

    #[test]
    fn update_table() {
        let other = labels(&[("app", "web")]);
        let peers = [Peer {
            name: "other",
            selector: &other,
        }];
        let tight = Limits { max_count: 10 };
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
}
