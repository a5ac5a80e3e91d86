//! The CustomResourceDefinition as installed: generated from [`crate::api`], with the embedded
//! pod template's upstream field descriptions removed.
//!
//! Those descriptions are Kubernetes' own (`kubectl explain pod.spec` shows them) and make up
//! most of the schema: with them the CRD is ~550 KB, too large for client-side `kubectl apply`
//! (its last-applied annotation is capped at 256 KiB). PodScaler's own fields keep theirs.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use kube::CustomResourceExt;

use crate::api::PodScaler;

/// The PodScaler CRD exactly as `crd-gen` prints it and the chart installs it.
pub fn custom_resource_definition() -> CustomResourceDefinition {
    let mut crd = PodScaler::crd();
    for version in &mut crd.spec.versions {
        let template = version
            .schema
            .as_mut()
            .and_then(|validation| validation.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|root| root.get_mut("spec"))
            .and_then(|spec| spec.properties.as_mut())
            .and_then(|spec| spec.get_mut("template"));
        if let Some(template) = template {
            for child in children(template) {
                strip_descriptions(child);
            }
        }
    }
    crd
}

fn strip_descriptions(schema: &mut JSONSchemaProps) {
    schema.description = None;
    for child in children(schema) {
        strip_descriptions(child);
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
        assert_eq!(count_descriptions(&properties["template"]), 1);
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
        assert_eq!(rules, ["size(self) > 0", "self == oldSelf"]);
    }
}
