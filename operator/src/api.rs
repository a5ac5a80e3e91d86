//! The `PodScaler` custom resource (`scaling.example.com/v1`) and its defaulting.
//!
//! This module is shared by the operator, the admission webhook and `crd-gen`: the CRD schema,
//! the CEL rules the API server enforces without a webhook, and [`apply_defaults`] all live here
//! so every binary agrees on what a PodScaler means.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of the PodScaler resource.
pub const GROUP: &str = "scaling.example.com";
/// Name of the container in the default pod template.
pub const DEFAULT_CONTAINER_NAME: &str = "nginx";
/// Image of the container in the default pod template (the seed operator's choice).
pub const DEFAULT_IMAGE: &str = "nginx:latest";

/// Desired state of a PodScaler.
// The repeated `type_` inside the separate `printcolumn(...)` groups trips clippy's
// duplicated_attributes lint, which does not see the groups; it is a false positive.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "scaling.example.com",
    version = "v1",
    kind = "PodScaler",
    namespaced,
    shortname = "psc",
    status = "PodScalerStatus",
    derive = "PartialEq",
    doc = "PodScaler keeps exactly spec.count active pods matching spec.selector in its namespace. \
           It counts every matching pod, whoever created it, creates missing pods from spec.template \
           and deletes extra pods (its own first).",
    scale(
        spec_replicas_path = ".spec.count",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".spec.count",
        description = "Number of active pods requested"
    ),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Active pods matching the selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Matching pods that are ready"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    // Priority 1: shown by `kubectl get -o wide` only, after Age, as Deployments do.
    printcolumn(
        name = "Available",
        type_ = "integer",
        json_path = ".status.availableReplicas",
        description = "Matching pods that are available",
        priority = "1"
    ),
    printcolumn(
        name = "Contended",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Contended\")].status",
        description = "Whether another controller manages matching pods",
        priority = "1"
    ),
    // The API server prints only the first match of a column's path, so this is the first
    // container's image; it is empty while spec.template is absent (pods run nginx:latest).
    printcolumn(
        name = "Image",
        type_ = "string",
        json_path = ".spec.template.spec.containers[0].image",
        description = "Image of the pods' first container",
        priority = "1"
    ),
    printcolumn(
        name = "Selector",
        type_ = "string",
        json_path = ".status.selector",
        description = "Labels the counted pods carry",
        priority = "1"
    ),
    // `kubectl get all` lists PodScalers with the Deployments and ReplicaSets they resemble.
    category = "all"
)]
#[serde(rename_all = "camelCase")]
pub struct PodScalerSpec {
    /// Number of active pods (not terminating, not Succeeded or Failed) that must match the
    /// selector. Pods created by other controllers count too. At most 100000 (the CRD's hard
    /// limit); the admission webhook's --max-count (default 1000) is usually lower.
    #[schemars(range(min = 0, max = crate::crd::MAX_COUNT))]
    pub count: i32,

    /// Labels a pod must carry (all of them, with these values) to be counted. Must name at least
    /// one label and at most 16, each a valid Kubernetes label; cannot change after creation;
    /// pods created by this PodScaler carry them.
    #[x_kube(
        validation = Rule::new("size(self) > 0").message("spec.selector must contain at least one label"),
        validation = Rule::new("self == oldSelf").message("spec.selector is immutable: create a new PodScaler to select different pods")
    )]
    pub selector: BTreeMap<String, String>,

    /// Template for the pods this PodScaler creates. When absent, pods run a single container
    /// `nginx` with image `nginx:latest`. The selector's labels are always added to the
    /// template's labels; a template label may not contradict the selector. When set, it needs
    /// at least one container, each with a name and an image, and restartPolicy Always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
}

/// Observed state of a PodScaler, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodScalerStatus {
    /// The metadata.generation this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Active pods matching the selector, whoever created them.
    #[serde(default)]
    pub replicas: i32,

    /// Matching active pods whose Ready condition is True.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Matching active pods that are available (ready; PodScaler has no minReadySeconds).
    #[serde(default)]
    pub available_replicas: i32,

    /// Matching active pods controlled by another controller (a ReplicaSet, say). They count
    /// toward spec.count; a non-zero value means two controllers manage the same pods.
    #[serde(default)]
    pub foreign_replicas: i32,

    /// The selector in string form (`app=nginx,tier=web`), for the scale subresource.
    #[serde(default)]
    pub selector: String,

    /// Latest observations: `Ready` (converged and ready), `ReplicaFailure` (a create or delete
    /// failed, with the API server's message) and `Contended` (another controller manages
    /// matching pods).
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The pod template used when `spec.template` is absent.
pub fn default_template() -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: None,
        spec: Some(PodSpec {
            containers: vec![Container {
                name: DEFAULT_CONTAINER_NAME.to_owned(),
                image: Some(DEFAULT_IMAGE.to_owned()),
                ..Container::default()
            }],
            ..PodSpec::default()
        }),
    }
}

/// Fills in what a PodScaler leaves out: the default template when there is none, and every
/// selector label missing from the template's labels. A template label that contradicts the
/// selector is left alone for validation to reject. Idempotent.
pub fn apply_defaults(spec: &mut PodScalerSpec) {
    let template = spec.template.get_or_insert_with(default_template);
    let labels = template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    for (key, value) in &spec.selector {
        labels.entry(key.clone()).or_insert_with(|| value.clone());
    }
}

/// The template pods are created from: `spec.template` after [`apply_defaults`].
pub fn effective_template(spec: &PodScalerSpec) -> PodTemplateSpec {
    let mut defaulted = spec.clone();
    apply_defaults(&mut defaulted);
    defaulted.template.unwrap_or_else(default_template)
}

/// The selector in Kubernetes' string form, `k1=v1,k2=v2`, keys sorted.
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `labels` carries every selector label with the selector's value.
pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: Option<&BTreeMap<String, String>>,
) -> bool {
    match labels {
        Some(labels) => selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value)),
        None => selector.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(selector: &[(&str, &str)], template: Option<PodTemplateSpec>) -> PodScalerSpec {
        PodScalerSpec {
            count: 1,
            selector: labels(selector),
            template,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn template_labels(spec: &PodScalerSpec) -> BTreeMap<String, String> {
        spec.template
            .as_ref()
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default()
    }

    fn template_with_labels(pairs: &[(&str, &str)]) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(labels(pairs)),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("busybox".into()),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        }
    }

    #[test]
    fn seed_sample_deserializes_as_written() {
        let sample = serde_json::json!({
            "apiVersion": "scaling.example.com/v1",
            "kind": "PodScaler",
            "metadata": {"name": "example-podscaler"},
            "spec": {"count": 4, "selector": {"app": "nginx"}}
        });
        let scaler: PodScaler = serde_json::from_value(sample).expect("seed sample is valid");
        assert_eq!(scaler.spec.count, 4);
        assert_eq!(scaler.spec.selector, labels(&[("app", "nginx")]));
        assert_eq!(scaler.spec.template, None);
    }

    #[test]
    fn defaulting_table() {
        struct Case {
            name: &'static str,
            input: PodScalerSpec,
            image: &'static str,
            labels: &'static [(&'static str, &'static str)],
        }
        let cases = [
            Case {
                name: "no template: nginx:latest with the selector's labels",
                input: spec(&[("app", "nginx")], None),
                image: DEFAULT_IMAGE,
                labels: &[("app", "nginx")],
            },
            Case {
                name: "template without labels gets the selector's",
                input: spec(&[("app", "web")], Some(template_with_labels(&[]))),
                image: "busybox",
                labels: &[("app", "web")],
            },
            Case {
                name: "extra template labels are kept",
                input: spec(
                    &[("app", "web")],
                    Some(template_with_labels(&[("tier", "front")])),
                ),
                image: "busybox",
                labels: &[("app", "web"), ("tier", "front")],
            },
            Case {
                name: "contradicting template label is left for validation",
                input: spec(
                    &[("app", "web")],
                    Some(template_with_labels(&[("app", "db")])),
                ),
                image: "busybox",
                labels: &[("app", "db")],
            },
            Case {
                name: "template with no metadata at all",
                input: spec(
                    &[("a", "1"), ("b", "2")],
                    Some(PodTemplateSpec {
                        metadata: None,
                        spec: template_with_labels(&[]).spec,
                    }),
                ),
                image: "busybox",
                labels: &[("a", "1"), ("b", "2")],
            },
        ];
        for case in cases {
            let mut defaulted = case.input.clone();
            apply_defaults(&mut defaulted);
            assert_eq!(
                template_labels(&defaulted),
                labels(case.labels),
                "{}",
                case.name
            );
            let image = defaulted
                .template
                .as_ref()
                .and_then(|t| t.spec.as_ref())
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone());
            assert_eq!(image.as_deref(), Some(case.image), "{}", case.name);

            let mut twice = defaulted.clone();
            apply_defaults(&mut twice);
            assert_eq!(twice, defaulted, "{}: defaulting is idempotent", case.name);
            assert_eq!(
                effective_template(&case.input),
                defaulted.template.clone().expect("defaulted template"),
                "{}: effective_template agrees with apply_defaults",
                case.name
            );
        }
    }

    #[test]
    fn selector_string_is_sorted_and_comma_separated() {
        assert_eq!(
            selector_string(&labels(&[("tier", "web"), ("app", "nginx")])),
            "app=nginx,tier=web"
        );
        assert_eq!(selector_string(&BTreeMap::new()), "");
    }

    #[test]
    fn selector_matching_table() {
        let selector = labels(&[("app", "nginx"), ("tier", "web")]);
        type Case = (&'static str, Option<BTreeMap<String, String>>, bool);
        let cases: [Case; 5] = [
            ("exact", Some(selector.clone()), true),
            (
                "superset",
                Some(labels(&[("app", "nginx"), ("tier", "web"), ("x", "y")])),
                true,
            ),
            ("missing key", Some(labels(&[("app", "nginx")])), false),
            (
                "wrong value",
                Some(labels(&[("app", "nginx"), ("tier", "db")])),
                false,
            ),
            ("no labels", None, false),
        ];
        for (name, pod_labels, want) in cases {
            assert_eq!(
                selector_matches(&selector, pod_labels.as_ref()),
                want,
                "{name}"
            );
        }
    }
}
