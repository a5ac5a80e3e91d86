//! The CustomResourceDefinition as installed: generated from [`crate::api`], then shaped for
//! the people and tools that read it:
//!
//! - the embedded pod template loses its upstream field descriptions. They are Kubernetes'
//!   own (`kubectl explain pod.spec` shows them) and make up most of the schema: with them the
//!   CRD is ~550 KB, too large for client-side `kubectl apply` (its last-applied annotation is
//!   capped at 256 KiB). PodScaler's own fields keep theirs, reflowed by [`descriptions`];
//! - the template's metadata offers only labels and annotations, what pods get from it;
//! - the template's lists and maps carry upstream's merge markers ([`merge_markers`]);
//! - the schema rules of [`schema_rules`] are added, with the hard limits they enforce.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::api::PodScaler;

mod descriptions;
mod merge_markers;
mod schema_rules;

pub use descriptions::reflow;

/// The largest `spec.count` the API server accepts, however the count is set (`kubectl apply`,
/// `kubectl scale`, an HPA) and whether or not the webhook runs: the CRD's schema `maximum`.
///
/// Kubernetes supports at most 150,000 pods in a whole cluster ("Considerations for large
/// clusters"), so no single PodScaler can need more than this; a count above it is a typo or
/// an accident (`--replicas=100000000`). The webhook's configurable `--max-count` (default
/// [`crate::validation::DEFAULT_MAX_COUNT`]) is the everyday limit and can only be lower.
pub const MAX_COUNT: i32 = 100_000;

/// The most labels `spec.selector` may name (schema `maxProperties`). Selectors name a few
/// labels (a Deployment's usually one to three); the bound keeps the CEL rules that check each
/// label key inside the API server's cost budget.
pub const MAX_SELECTOR_LABELS: usize = 16;

/// The most labels `spec.template.metadata.labels` may carry (schema `maxProperties`): the
/// selector's and 48 more. Pods have no such limit of their own; the bound exists for the
/// cost budget of the CEL rules that check each template label.
pub const MAX_TEMPLATE_LABELS: usize = 64;

/// The ObjectMeta fields a pod template offers: the ones the operator copies onto its pods
/// ([`crate::reconcile::new_pod`]). The rest (name, uid, managedFields, timestamps...) is the
/// API server's or the operator's to set on each pod, as for a Deployment's template.
pub const TEMPLATE_METADATA_FIELDS: [&str; 2] = ["annotations", "labels"];

/// The PodScaler CRD exactly as `crd-gen` prints it and the chart installs it.
pub fn custom_resource_definition() -> CustomResourceDefinition {
    let mut crd = PodScaler::crd();
    for version in &mut crd.spec.versions {
        let root = version
            .schema
            .as_mut()
            .and_then(|validation| validation.open_api_v3_schema.as_mut());
        let Some(root) = root else { continue };
        if let Some(spec) = schema_rules::property(root, &["spec"]) {
            shape_spec(spec);
        }
        descriptions::reflow_all(root);
    }
    crd
}

fn shape_spec(spec: &mut JSONSchemaProps) {
    if let Some(template) = schema_rules::property(spec, &["template"]) {
        for child in children(template) {
            descriptions::strip_all(child);
        }
        embedded_metadata(template);
        merge_markers::add_to_template(template);
    }
    schema_rules::add_to_spec(spec);
}

/// Narrows the template's full ObjectMeta schema to [`TEMPLATE_METADATA_FIELDS`], as
/// controller-gen does for an embedded ObjectMeta, and says what each is for.
fn embedded_metadata(template: &mut JSONSchemaProps) {
    let Some(metadata) = schema_rules::property(template, &["metadata"]) else {
        return;
    };
    metadata.description = Some(
        "Labels and annotations of the pods. The pods' other metadata (name, owner, ...) is \
         set by the operator and the API server."
            .to_owned(),
    );
    let Some(fields) = metadata.properties.as_mut() else {
        return;
    };
    fields.retain(|name, _| TEMPLATE_METADATA_FIELDS.contains(&name.as_str()));
    if let Some(labels) = fields.get_mut("labels") {
        labels.description = Some(format!(
            "Labels of the pods. The selector's labels are added; a label the selector also \
             names must have its value. At most {MAX_TEMPLATE_LABELS}."
        ));
    }
    if let Some(annotations) = fields.get_mut("annotations") {
        annotations.description = Some("Annotations of the pods, copied as they are.".to_owned());
    }
}

fn children(schema: &mut JSONSchemaProps) -> Vec<&mut JSONSchemaProps> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };
    let mut out: Vec<&mut JSONSchemaProps> = Vec::new();
    if let Some(properties) = schema.properties.as_mut() {
        out.extend(properties.values_mut());
    }
    match schema.items.as_mut() {
        Some(JSONSchemaPropsOrArray::Schema(item)) => out.push(item),
        Some(JSONSchemaPropsOrArray::Schemas(items)) => out.extend(items.iter_mut()),
        None => {}
    }
    if let Some(JSONSchemaPropsOrBool::Schema(extra)) = schema.additional_properties.as_mut() {
        out.push(extra);
    }
    for group in [
        schema.all_of.as_mut(),
        schema.any_of.as_mut(),
        schema.one_of.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        out.extend(group.iter_mut());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
        JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
    };

    fn spec_schema(crd: &CustomResourceDefinition) -> &JSONSchemaProps {
        crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .and_then(|root| root.properties.as_ref())
            .and_then(|root| root.get("spec"))
            .expect("spec schema")
    }

    fn count_descriptions(schema: &JSONSchemaProps) -> usize {
        let mut copy = schema.clone();
        let own = usize::from(copy.description.is_some());
        own + children(&mut copy)
            .into_iter()
            .map(|child| count_descriptions(child))
            .sum::<usize>()
    }

    #[test]
    fn own_fields_keep_descriptions_and_the_template_keeps_only_its_own() {
        let crd = custom_resource_definition();
        let spec = spec_schema(&crd);
        let properties = spec.properties.as_ref().expect("spec properties");
        for field in ["count", "selector", "template"] {
            assert!(
                properties[field].description.is_some(),
                "spec.{field} lost its description"
            );
        }
        let template = properties["template"]
            .properties
            .as_ref()
            .expect("template");
        assert_eq!(count_descriptions(&template["spec"]), 0);
        assert_eq!(
            count_descriptions(&template["metadata"]),
            1 + TEMPLATE_METADATA_FIELDS.len(),
            "the metadata's own descriptions, written for PodScaler"
        );
        assert!(
            count_descriptions(&spec_schema(&PodScaler::crd()).clone()) > 100,
            "the untrimmed schema carries upstream descriptions"
        );
    }

    #[test]
    fn fits_in_a_client_side_apply_annotation() {
        let json = serde_json::to_string(&custom_resource_definition()).expect("serialize");
        assert!(json.len() < 256 * 1024, "CRD is {} bytes", json.len());
    }

    #[test]
    fn scale_subresource_and_cel_rules_are_declared() {
        let crd = custom_resource_definition();
        let version = &crd.spec.versions[0];
        let scale = version
            .subresources
            .as_ref()
            .and_then(|s| s.scale.as_ref())
            .expect("scale subresource");
        assert_eq!(scale.spec_replicas_path, ".spec.count");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let selector = &spec_schema(&crd).properties.as_ref().expect("props")["selector"];
        let rules: Vec<&str> = selector
            .x_kubernetes_validations
            .iter()
            .flatten()
            .map(|rule| rule.rule.as_str())
            .collect();
        assert_eq!(rules[..2], ["size(self) > 0", "self == oldSelf"]);
        assert_eq!(rules.len(), 4, "plus the key and value rules: {rules:?}");
    }

    fn property<'a>(crd: &'a mut CustomResourceDefinition, path: &[&str]) -> &'a JSONSchemaProps {
        let spec = crd.spec.versions[0]
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| schema_rules::property(root, &["spec"]))
            .expect("spec schema");
        schema_rules::property(spec, path)
            .unwrap_or_else(|| panic!("no schema at spec.{}", path.join(".")))
    }

    #[test]
    fn the_hard_limits_are_in_the_schema_and_its_descriptions() {
        let mut crd = custom_resource_definition();
        let count = property(&mut crd, &["count"]).clone();
        assert_eq!(count.minimum, Some(0.0));
        assert_eq!(count.maximum, Some(f64::from(MAX_COUNT)));
        assert!(
            count
                .description
                .as_deref()
                .is_some_and(|d| d.contains(&MAX_COUNT.to_string())),
            "{count:?}"
        );
        let selector = property(&mut crd, &["selector"]).clone();
        assert_eq!(selector.max_properties, Some(MAX_SELECTOR_LABELS as i64));
        assert!(
            selector
                .description
                .as_deref()
                .is_some_and(|d| d.contains(&format!("at most {MAX_SELECTOR_LABELS}"))),
            "{selector:?}"
        );
        let labels = property(&mut crd, &["template", "metadata", "labels"]).clone();
        assert_eq!(labels.max_properties, Some(MAX_TEMPLATE_LABELS as i64));
        for map in [&selector, &labels] {
            let Some(JSONSchemaPropsOrBool::Schema(values)) = &map.additional_properties else {
                panic!("not a string map: {map:?}");
            };
            assert_eq!(
                values.max_length,
                Some(63),
                "values bound for the CEL cost estimate"
            );
        }
    }

    #[test]
    fn template_rules_are_declared_where_they_apply() {
        let mut crd = custom_resource_definition();
        let rules = |schema: &JSONSchemaProps| -> Vec<String> {
            schema
                .x_kubernetes_validations
                .iter()
                .flatten()
                .map(|rule| rule.rule.clone())
                .collect()
        };
        let spec_rules = rules(property(&mut crd, &[]));
        assert!(
            spec_rules
                .iter()
                .any(|rule| rule.contains("self.selector.all(k")),
            "{spec_rules:?}"
        );
        assert_eq!(rules(property(&mut crd, &["template"])), ["has(self.spec)"]);
        assert_eq!(
            rules(property(&mut crd, &["template", "spec", "containers"])),
            ["size(self) > 0"]
        );
        assert_eq!(
            rules(property(&mut crd, &["template", "metadata", "labels"])).len(),
            2
        );
        let container = property(&mut crd, &["template", "spec", "containers"]).clone();
        assert_eq!(
            container.x_kubernetes_list_type.as_deref(),
            Some("map"),
            "one container per name, as upstream's PodSpec"
        );
        let Some(JSONSchemaPropsOrArray::Schema(container)) = container.items else {
            panic!("containers is not a list of one schema");
        };
        assert!(
            container
                .required
                .iter()
                .flatten()
                .any(|field| field == "image")
        );
        let policy = property(&mut crd, &["template", "spec", "restartPolicy"]);
        assert_eq!(
            policy.enum_.as_ref().map(Vec::len),
            Some(1),
            "restartPolicy: Always only"
        );
    }

    #[test]
    fn template_metadata_offers_only_what_pods_get() {
        let mut crd = custom_resource_definition();
        let metadata = property(&mut crd, &["template", "metadata"]).clone();
        let fields: Vec<&str> = metadata
            .properties
            .iter()
            .flatten()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(fields, TEMPLATE_METADATA_FIELDS);
        assert!(metadata.description.is_some(), "kubectl explain says why");
    }

    #[test]
    fn wide_columns_and_the_all_category() {
        let crd = custom_resource_definition();
        assert_eq!(
            crd.spec.names.categories.as_deref(),
            Some(&["all".to_owned()][..])
        );
        let wide: Vec<(&str, &str)> = crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|column| column.priority == Some(1))
            .map(|column| (column.name.as_str(), column.json_path.as_str()))
            .collect();
        assert_eq!(
            wide,
            [
                ("Available", ".status.availableReplicas"),
                (
                    "Contended",
                    ".status.conditions[?(@.type==\"Contended\")].status"
                ),
                ("Image", ".spec.template.spec.containers[0].image"),
                ("Selector", ".status.selector"),
            ]
        );
    }

    fn all_descriptions(schema: &JSONSchemaProps, out: &mut Vec<String>) {
        let mut copy = schema.clone();
        out.extend(copy.description.clone());
        for child in children(&mut copy) {
            all_descriptions(child, out);
        }
    }

    #[test]
    fn descriptions_are_reflowed() {
        let crd = custom_resource_definition();
        let root = crd.spec.versions[0]
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .expect("root schema");
        let mut descriptions = Vec::new();
        all_descriptions(root, &mut descriptions);
        assert!(descriptions.len() > 10, "{descriptions:?}");
        for description in &descriptions {
            assert_eq!(&reflow(description), description);
        }
        let count = spec_schema(&crd).properties.as_ref().expect("props")["count"].clone();
        let count = count.description.expect("count description");
        assert!(
            !count.contains('\n'),
            "spec.count is one paragraph: {count:?}"
        );
    }
}
