//! `x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` on the
//! embedded pod template, as upstream's PodSpec declares them. With them server-side apply
//! merges `containers`, `env`, `ports`, `volumes`... entry by entry (two managers can each own
//! one container) and replaces atomic lists (`command`, `tolerations`) whole.
//!
//! k8s-openapi's schemars schemas leave these markers out, but its `DeepMerge` impls, generated
//! from the same upstream OpenAPI document, encode them: `list::map` with a key field,
//! `list::atomic`, `list::set`, `map::atomic`. That code is the source of truth used here, so
//! the markers follow k8s-openapi upgrades without a table of every field: each list and map
//! in the schema is *probed* by building two small `PodTemplateSpec`s that differ only there,
//! merging them with `DeepMerge`, and reading which strategy the result shows. Only what
//! `DeepMerge` cannot say is a table: the further keys of the two lists keyed by two fields
//! ([`FURTHER_KEYS`]) and the defaults of optional keys ([`KEY_DEFAULTS`]). The e2e scenario
//! `r05` compares the result with the API server's own `/openapi/v3/api/v1`.
//!
//! A list below an atomic or set list is not probed (its parent is replaced or appended
//! whole, so no merge reaches it, and server-side apply would not look inside either).
//! Struct-level `x-kubernetes-map-type: atomic` (upstream `+structType=atomic`, e.g. on
//! `LocalObjectReference`) is not encoded by `DeepMerge` and is not added.

use k8s_openapi::DeepMerge;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    JSON, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::{Map, Value, json};

/// How a list or map merges, as server-side apply needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Strategy {
    /// `x-kubernetes-list-type: atomic`: replaced as a whole.
    ListAtomic,
    /// `x-kubernetes-list-type: set`: scalars, each owned separately.
    ListSet,
    /// `x-kubernetes-list-type: map` with these `x-kubernetes-list-map-keys`.
    ListMap(Vec<String>),
    /// `x-kubernetes-map-type: atomic` (`granular`, the default, needs no marker).
    MapAtomic,
}

/// One step from the template's schema to a list or map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// A property of an object.
    Field(String),
    /// The items of a list.
    Item,
}

/// A list or map of the template, by the steps that reach it from `spec.template`.
pub(super) type Path = Vec<Step>;

/// What probing the template's schema found.
#[derive(Debug, Default)]
pub(super) struct Derived {
    /// Every list and map that needs a marker, with it.
    pub markers: Vec<(Path, Strategy)>,
    /// Lists and maps whose strategy could not be told (a probe object that does not decode,
    /// or a map list whose key the API server would refuse): left unmarked.
    pub undecided: Vec<String>,
}

/// List-map keys that `DeepMerge` does not compare: it matches entries by the strategic-merge
/// key alone, while upstream's `+listMapKey` markers name more. Upstream `types.go`:
/// `Container.Ports` has `+listMapKey=containerPort` and `+listMapKey=protocol` (so port 53
/// may be listed for TCP and UDP), `PodSpec.TopologySpreadConstraints` has `topologyKey` and
/// `whenUnsatisfiable`. Each entry: the list's field name, the key `DeepMerge` compares, the
/// keys that follow it.
const FURTHER_KEYS: &[(&str, &str, &[&str])] = &[
    ("ports", "containerPort", &["protocol"]),
    (
        "topologySpreadConstraints",
        "topologyKey",
        &["whenUnsatisfiable"],
    ),
];

/// Upstream defaults of list-map keys that are optional. The API server refuses a map key
/// that is neither required nor defaulted, so these go into the schema with the marker.
/// Both are upstream's own (`kubectl explain pod.spec.containers.ports.protocol`: defaults to
/// "TCP"; `LocalObjectReference.name` carries `+default=""`).
const KEY_DEFAULTS: &[(&str, &str)] = &[("protocol", "TCP"), ("name", "")];

/// Adds the markers [`derive`] finds to the template's schema. What stays undecided is left
/// unmarked (as before markers existed); a unit test holds that list empty.
pub(super) fn add_to_template(template: &mut JSONSchemaProps) {
    for (path, strategy) in derive(template).markers {
        if let Some(schema) = at_path(template, &path) {
            mark(schema, &strategy);
        }
    }
}

/// The strategy of every list and map of `template` (the schema of a `PodTemplateSpec`).
pub(super) fn derive(template: &JSONSchemaProps) -> Derived {
    let mut derived = Derived::default();
    walk(template, template, &mut Vec::new(), &mut derived);
    derived
}

/// `spec.containers[].ports`: a path as `kubectl explain` would name it under the template.
pub(super) fn display(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Field(name) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(name);
            }
            Step::Item => out.push_str("[]"),
        }
    }
    out
}

fn walk(root: &JSONSchemaProps, schema: &JSONSchemaProps, path: &mut Path, out: &mut Derived) {
    if let Some(item) = list_items(schema) {
        match probe_list(root, path, item) {
            Some(Strategy::ListMap(mut keys)) => {
                keys.extend(further_keys(path, &keys));
                if keys_required_or_defaulted(item, &keys) {
                    out.markers.push((path.clone(), Strategy::ListMap(keys)));
                } else {
                    out.undecided.push(display(path));
                }
                path.push(Step::Item);
                walk(root, item, path, out);
                path.pop();
            }
            Some(strategy) => out.markers.push((path.clone(), strategy)),
            None => out.undecided.push(display(path)),
        }
        return;
    }
    if let Some(values) = map_values(schema) {
        match probe_map(root, path, values) {
            Some(true) => out.markers.push((path.clone(), Strategy::MapAtomic)),
            Some(false) => {}
            None => out.undecided.push(display(path)),
        }
        return;
    }
    for (name, child) in schema.properties.iter().flatten() {
        path.push(Step::Field(name.clone()));
        walk(root, child, path, out);
        path.pop();
    }
}

/// The strategy of the list at `path`: merging `[x]` with `[]` empties only an atomic list;
/// merging `[x]` with `[x changed in one field]` keeps one entry when that field is no key.
fn probe_list(root: &JSONSchemaProps, path: &[Step], item: &JSONSchemaProps) -> Option<Strategy> {
    let sample = minimal(item)?;
    let emptied = merged(root, path, json!([sample]), json!([]))?;
    if entries(&emptied) == 0 {
        return Some(Strategy::ListAtomic);
    }
    let Some(fields) = item.properties.as_ref() else {
        return Some(Strategy::ListSet);
    };
    let mut keys = Vec::new();
    for (name, field) in fields {
        let Some(changed) = distinct(field) else {
            continue;
        };
        let mut other = sample.clone();
        other.as_object_mut()?.insert(name.clone(), changed);
        let result = merged(root, path, json!([sample]), json!([other]))?;
        if entries(&result) == 2 {
            keys.push(name.clone());
        }
    }
    (!keys.is_empty()).then_some(Strategy::ListMap(keys))
}

/// Whether the string-keyed map at `path` is atomic: merging `{a}` with `{b}` keeps only `b`.
fn probe_map(root: &JSONSchemaProps, path: &[Step], values: &JSONSchemaProps) -> Option<bool> {
    let value = minimal(values)?;
    let result = merged(
        root,
        path,
        json!({ "a": value.clone() }),
        json!({ "b": value }),
    )?;
    Some(result.get("a").is_none())
}

/// `current` and `other` placed at `path` in otherwise minimal templates, merged with
/// k8s-openapi's `DeepMerge`; the value at `path` afterwards.
fn merged(root: &JSONSchemaProps, path: &[Step], current: Value, other: Value) -> Option<Value> {
    let decode = |leaf| instance(root, path, leaf).and_then(|doc| serde_json::from_value(doc).ok());
    let mut current: PodTemplateSpec = decode(current)?;
    let other: PodTemplateSpec = decode(other)?;
    current.merge_from(other);
    let mut value = serde_json::to_value(current).ok()?;
    for step in path {
        value = match step {
            Step::Field(name) => value.get_mut(name.as_str()).map(Value::take),
            Step::Item => value.get_mut(0).map(Value::take),
        }
        // An emptied optional list may be left out altogether.
        .unwrap_or(Value::Null);
    }
    Some(value)
}

fn entries(value: &Value) -> usize {
    value.as_array().map_or(0, Vec::len)
}

/// A minimal object of `schema` with `leaf` at `path` (one entry in each list on the way).
fn instance(schema: &JSONSchemaProps, path: &[Step], leaf: Value) -> Option<Value> {
    let Some((step, rest)) = path.split_first() else {
        return Some(leaf);
    };
    match step {
        Step::Field(name) => {
            let child = schema.properties.as_ref()?.get(name)?;
            let mut object = minimal(schema)?;
            object
                .as_object_mut()?
                .insert(name.clone(), instance(child, rest, leaf)?);
            Some(object)
        }
        Step::Item => Some(Value::Array(vec![instance(
            list_items(schema)?,
            rest,
            leaf,
        )?])),
    }
}

/// The smallest value `schema` accepts: required fields only, zero values, first enum value.
fn minimal(schema: &JSONSchemaProps) -> Option<Value> {
    if schema.x_kubernetes_int_or_string == Some(true) {
        // A string decodes as both IntOrString and Quantity.
        return Some(json!("0"));
    }
    if let Some(JSON(first)) = schema.enum_.iter().flatten().next() {
        return Some(first.clone());
    }
    match schema.type_.as_deref()? {
        "string" => Some(json!("")),
        "integer" | "number" => Some(json!(0)),
        "boolean" => Some(json!(false)),
        "array" => Some(json!([])),
        "object" => {
            let mut object = Map::new();
            for name in schema.required.iter().flatten() {
                let field = schema.properties.as_ref()?.get(name)?;
                object.insert(name.clone(), minimal(field)?);
            }
            Some(Value::Object(object))
        }
        _ => None,
    }
}

/// A value of the scalar `schema` other than [`minimal`]'s; `None` for non-scalars.
fn distinct(schema: &JSONSchemaProps) -> Option<Value> {
    if schema.x_kubernetes_int_or_string == Some(true) {
        return Some(json!("1"));
    }
    if let Some(values) = schema.enum_.as_ref() {
        return values.get(1).map(|JSON(value)| value.clone());
    }
    match schema.type_.as_deref()? {
        "string" => Some(json!("probe")),
        "integer" | "number" => Some(json!(1)),
        "boolean" => Some(json!(true)),
        _ => None,
    }
}

/// The keys of [`FURTHER_KEYS`] that follow the probed `keys` of the list at `path`.
fn further_keys(path: &[Step], keys: &[String]) -> Vec<String> {
    let Some(Step::Field(list)) = path.last() else {
        return Vec::new();
    };
    FURTHER_KEYS
        .iter()
        .filter(|(name, first, _)| name == list && keys.iter().any(|key| key == first))
        .flat_map(|(_, _, further)| further.iter().map(|key| (*key).to_owned()))
        .filter(|key| !keys.contains(key))
        .collect()
}

/// Whether every key of a map list is required or has a known upstream default: the API
/// server refuses the marker otherwise.
fn keys_required_or_defaulted(item: &JSONSchemaProps, keys: &[String]) -> bool {
    let required = item.required.as_deref().unwrap_or_default();
    keys.iter()
        .filter(|key| !required.contains(key))
        .all(|key| default_for(key).is_some())
}

fn default_for(key: &str) -> Option<&'static str> {
    KEY_DEFAULTS
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, value)| *value)
}

fn mark(schema: &mut JSONSchemaProps, strategy: &Strategy) {
    match strategy {
        Strategy::ListAtomic => schema.x_kubernetes_list_type = Some("atomic".to_owned()),
        Strategy::ListSet => schema.x_kubernetes_list_type = Some("set".to_owned()),
        Strategy::MapAtomic => schema.x_kubernetes_map_type = Some("atomic".to_owned()),
        Strategy::ListMap(keys) => {
            schema.x_kubernetes_list_type = Some("map".to_owned());
            schema.x_kubernetes_list_map_keys = Some(keys.clone());
            if let Some(JSONSchemaPropsOrArray::Schema(item)) = schema.items.as_mut() {
                default_keys(item, keys);
            }
        }
    }
}

fn default_keys(item: &mut JSONSchemaProps, keys: &[String]) {
    let required = item.required.clone().unwrap_or_default();
    let Some(fields) = item.properties.as_mut() else {
        return;
    };
    for key in keys.iter().filter(|key| !required.contains(key)) {
        if let (Some(field), Some(value)) = (fields.get_mut(key), default_for(key)) {
            field.default.get_or_insert_with(|| JSON(json!(value)));
        }
    }
}

fn list_items(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(item) => Some(item),
        JSONSchemaPropsOrArray::Schemas(_) => None,
    }
}

/// The value schema of a string-keyed map (an object of `additionalProperties` only).
fn map_values(schema: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match schema.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(values) if schema.properties.is_none() => Some(values),
        _ => None,
    }
}

fn at_path<'a>(schema: &'a mut JSONSchemaProps, path: &[Step]) -> Option<&'a mut JSONSchemaProps> {
    path.iter().try_fold(schema, |schema, step| match step {
        Step::Field(name) => schema.properties.as_mut()?.get_mut(name),
        Step::Item => match schema.items.as_mut()? {
            JSONSchemaPropsOrArray::Schema(item) => Some(item.as_mut()),
            JSONSchemaPropsOrArray::Schemas(_) => None,
        },
    })
}

/// The markers as `path → strategy`, for the tests and for reading what was derived.
#[cfg(test)]
pub(super) fn by_path(derived: &Derived) -> std::collections::BTreeMap<String, Strategy> {
    derived
        .markers
        .iter()
        .map(|(path, strategy)| (display(path), strategy.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
