//! Comparing the merge markers of the CRD's pod template with the API server's own: the
//! `x-kubernetes-list-type`, `-list-map-keys` and `-map-type` that `/openapi/v3/api/v1`
//! publishes for `io.k8s.api.core.v1.PodTemplateSpec`, upstream's source of truth.

use serde_json::Value;

/// The marker fields compared; `granular` maps need no marker and count as unmarked.
const MARKERS: [&str; 3] = [
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
];

/// Where the CRD's template schema `ours` and upstream's `theirs` (with `components` to
/// resolve its `$ref`s) disagree on a list's or map's markers, as `path: ours vs theirs`.
///
/// Lists below an atomic or set list are not compared: their parent is replaced or
/// appended whole, so no merge reaches them. Struct-level `x-kubernetes-map-type` (on an
/// object with properties) is not compared either; PodScaler does not add it.
pub fn disagreements(ours: &Value, theirs: &Value, components: &Value) -> Vec<String> {
    let mut out = Vec::new();
    compare(ours, theirs, components, "", &mut out);
    out
}

fn compare(ours: &Value, theirs: &Value, components: &Value, path: &str, out: &mut Vec<String>) {
    let is_collection = ours.get("items").is_some()
        || (ours.get("additionalProperties").is_some() && ours.get("properties").is_none());
    if is_collection {
        let (mine, upstream) = (markers(ours), markers(theirs));
        if mine != upstream {
            out.push(format!("{path}: {mine:?} vs upstream {upstream:?}"));
        }
    }
    let theirs = resolve(theirs, components);
    if let (Some(mine), Some(upstream)) = (ours.get("items"), theirs.get("items")) {
        let whole = matches!(
            markers(theirs).first().map(String::as_str),
            Some("atomic" | "set")
        );
        if !whole {
            compare(mine, upstream, components, &format!("{path}[]"), out);
        }
    }
    let Some(fields) = ours.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, mine) in fields {
        if let Some(upstream) = theirs.get("properties").and_then(|p| p.get(name)) {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            compare(mine, upstream, components, &child, out);
        }
    }
}

/// The markers of `schema` in [`MARKERS`] order, `granular` left out.
fn markers(schema: &Value) -> Vec<String> {
    MARKERS
        .iter()
        .filter_map(|marker| schema.get(*marker))
        .filter(|value| value.as_str() != Some("granular"))
        .map(Value::to_string)
        .map(|value| value.trim_matches('"').to_owned())
        .collect()
}

/// Follows `$ref` (directly or as the one entry of `allOf`, as the API server writes a
/// reference with a default) to the schema in `components`.
fn resolve<'a>(schema: &'a Value, components: &'a Value) -> &'a Value {
    let reference = schema.get("$ref").or_else(|| {
        schema
            .get("allOf")
            .and_then(Value::as_array)
            .filter(|all| all.len() == 1)
            .and_then(|all| all[0].get("$ref"))
    });
    reference
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix("#/components/schemas/"))
        .and_then(|name| components.get(name))
        .map_or(schema, |target| resolve(target, components))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn components() -> Value {
        json!({
            "Spec": {"properties": {
                "containers": {
                    "items": {"allOf": [{"$ref": "#/components/schemas/Container"}]},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                },
                "tolerations": {
                    "items": {"$ref": "#/components/schemas/Toleration"},
                    "x-kubernetes-list-type": "atomic",
                },
                "nodeSelector": {
                    "additionalProperties": {"type": "string"},
                    "x-kubernetes-map-type": "atomic",
                },
                "overhead": {
                    "additionalProperties": {"type": "string"},
                    "x-kubernetes-map-type": "granular",
                },
            }},
            "Container": {"properties": {
                "ports": {
                    "items": {"type": "object"},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["containerPort", "protocol"],
                },
            }},
            "Toleration": {"properties": {
                "values": {"items": {"type": "string"}, "x-kubernetes-list-type": "atomic"},
            }},
        })
    }

    fn theirs() -> Value {
        json!({"properties": {"spec": {"$ref": "#/components/schemas/Spec"}}})
    }

    fn ours(ports_keys: &[&str], node_selector: Option<&str>) -> Value {
        let mut node_selector_schema = json!({"additionalProperties": {"type": "string"}});
        if let Some(map_type) = node_selector {
            node_selector_schema["x-kubernetes-map-type"] = json!(map_type);
        }
        json!({"properties": {"spec": {"properties": {
            "containers": {
                "items": {"properties": {"ports": {
                    "items": {"type": "object"},
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ports_keys,
                }}},
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
            },
            "tolerations": {
                "items": {"properties": {"values": {"items": {"type": "string"}}}},
                "x-kubernetes-list-type": "atomic",
            },
            "nodeSelector": node_selector_schema,
            "overhead": {"additionalProperties": {"type": "string"}},
        }}}})
    }

    #[test]
    fn agreeing_markers_pass_through_refs_and_skip_below_atomic_lists() {
        let found = disagreements(
            &ours(&["containerPort", "protocol"], Some("atomic")),
            &theirs(),
            &components(),
        );
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn each_disagreement_is_named_by_path() {
        let found = disagreements(&ours(&["containerPort"], None), &theirs(), &components());
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("spec.containers[].ports:"),
            "{found:?}"
        );
        assert!(found[1].starts_with("spec.nodeSelector:"), "{found:?}");
    }
}
