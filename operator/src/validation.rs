//! The PodScaler rules: every check of a PodScaler spec that needs no cluster, and the overlap
//! check against the other PodScalers of its namespace, which the caller lists.
//!
//! The admission webhook runs these on CREATE and UPDATE; the operator does not run them
//! itself, so a PodScaler admitted while the webhook was not installed is held only to the
//! CRD's schema. That schema carries the same rules as OpenAPI constraints and CEL
//! (`crate::crd`, built from the patterns and lengths of [`syntax`]), so the API server refuses
//! the same specs when the webhook is absent; [`agreement`] is the table both are tested
//! against. Only the overlap check needs other objects and exists here alone.
//!
//! Each rule reports a [`FieldError`] naming the field (in the form Kubernetes uses, map keys
//! quoted: `spec.selector["app.kubernetes.io/name"]`) and a message that says how to fix it.
//! All violations are reported at once. Label keys and values are checked by [`syntax`], a port
//! of Kubernetes' own checks.
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
mod overlap;
pub mod syntax;

pub use self::overlap::{Peer, selectors_overlap, validate_no_overlap};

use self::syntax::{dns1123_label_errors, label_key_errors, label_value_errors};
// The CRD's schema is built from the same lengths and patterns (`crate::crd::schema_rules`).
pub(crate) use self::syntax::{
    DNS1123_LABEL_FMT, DNS1123_LABEL_MAX_LENGTH, DNS1123_SUBDOMAIN_FMT,
    DNS1123_SUBDOMAIN_MAX_LENGTH, LABEL_VALUE_MAX_LENGTH, QUALIFIED_NAME_FMT,
    QUALIFIED_NAME_MAX_LENGTH,
};

/// The `--max-count` default: the largest `spec.count` accepted. At most
/// [`crate::crd::MAX_COUNT`], the CRD's hard limit, which `--max-count` cannot exceed.
pub const DEFAULT_MAX_COUNT: i32 = 1000;

// The webhook's default must fit under the CRD's hard limit, or its default would be a lie.
const _: () = assert!(DEFAULT_MAX_COUNT <= MAX_COUNT);

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

/// The bounds of a spec an administrator sets (the webhook's `--max-count`), as opposed to the
/// CRD's fixed ones (`crate::crd::MAX_COUNT`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecLimits {
    /// The largest `spec.count` accepted.
    pub max_count: i32,
}

impl Default for SpecLimits {
    fn default() -> Self {
        Self {
            max_count: DEFAULT_MAX_COUNT,
        }
    }
}

/// The outcome of validating one admission: errors deny it, warnings are shown to the user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Violations that deny the request.
    pub errors: Vec<FieldError>,
    /// Violations tolerated because the update did not introduce them (ratcheting).
    pub warnings: Vec<FieldError>,
}

/// Validates a PodScaler being created: [`validate_spec`] plus overlap with `peers` (the other
/// PodScalers of its namespace; a peer named `name` is the object itself and is skipped).
pub fn validate_create<'a>(
    name: &str,
    spec: &PodScalerSpec,
    peers: impl IntoIterator<Item = Peer<'a>>,
    limits: &SpecLimits,
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
    limits: &SpecLimits,
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
pub fn validate_spec(spec: &PodScalerSpec, limits: &SpecLimits) -> Vec<FieldError> {
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

fn validate_count(count: i32, limits: &SpecLimits, errors: &mut Vec<FieldError>) {
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

#[cfg(test)]
mod tests;
