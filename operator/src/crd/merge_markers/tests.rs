//! Tests of the list-merge markers written into the CRD schema.

use super::*;

fn derived() -> Derived {
    let crd = crate::crd::custom_resource_definition();
    let template = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|root| root.properties.as_ref()?.get("spec"))
        .and_then(|spec| spec.properties.as_ref()?.get("template"))
        .cloned()
        .expect("template schema");
    derive(&template)
}

fn map(keys: &[&str]) -> Strategy {
    Strategy::ListMap(keys.iter().map(|key| (*key).to_owned()).collect())
}

/// Upstream's markers (`k8s.io/api/core/v1/types.go`, as `kubectl explain --recursive`
/// and the API server's `/openapi/v3/api/v1` show them), for the fields a PodScaler
/// template uses most and that the issue names.
#[test]
fn upstream_markers_are_derived() {
    let markers = by_path(&derived());
    let expected = [
        ("spec.containers", map(&["name"])),
        ("spec.initContainers", map(&["name"])),
        ("spec.ephemeralContainers", map(&["name"])),
        (
            "spec.containers[].ports",
            map(&["containerPort", "protocol"]),
        ),
        (
            "spec.initContainers[].ports",
            map(&["containerPort", "protocol"]),
        ),
        ("spec.containers[].env", map(&["name"])),
        ("spec.containers[].volumeMounts", map(&["mountPath"])),
        ("spec.containers[].volumeDevices", map(&["devicePath"])),
        ("spec.containers[].command", Strategy::ListAtomic),
        ("spec.containers[].args", Strategy::ListAtomic),
        ("spec.containers[].envFrom", Strategy::ListAtomic),
        ("spec.volumes", map(&["name"])),
        ("spec.imagePullSecrets", map(&["name"])),
        ("spec.hostAliases", map(&["ip"])),
        ("spec.schedulingGates", map(&["name"])),
        ("spec.resourceClaims", map(&["name"])),
        (
            "spec.topologySpreadConstraints",
            map(&["topologyKey", "whenUnsatisfiable"]),
        ),
        ("spec.tolerations", Strategy::ListAtomic),
        ("spec.readinessGates", Strategy::ListAtomic),
        (
            "spec.securityContext.supplementalGroups",
            Strategy::ListAtomic,
        ),
        ("spec.nodeSelector", Strategy::MapAtomic),
    ];
    for (path, strategy) in expected {
        assert_eq!(markers.get(path), Some(&strategy), "{path}");
    }
}

#[test]
fn granular_maps_get_no_marker() {
    let markers = by_path(&derived());
    for path in [
        "metadata.labels",
        "metadata.annotations",
        "spec.containers[].resources.limits",
        "spec.overhead",
    ] {
        assert_eq!(markers.get(path), None, "{path} is granular upstream");
    }
}

#[test]
fn every_list_and_map_is_decided() {
    assert_eq!(derived().undecided, Vec::<String>::new());
}

/// The API server refuses a map list whose key is neither required nor defaulted.
#[test]
fn optional_keys_carry_upstream_defaults() {
    let crd = crate::crd::custom_resource_definition();
    let mut root = crd.spec.versions[0]
        .schema
        .clone()
        .and_then(|s| s.open_api_v3_schema)
        .expect("root schema");
    let template = at_path(
        &mut root,
        &[Step::Field("spec".into()), Step::Field("template".into())],
    )
    .expect("template schema");
    let ports = at_path(
        template,
        &[
            Step::Field("spec".into()),
            Step::Field("containers".into()),
            Step::Item,
            Step::Field("ports".into()),
            Step::Item,
            Step::Field("protocol".into()),
        ],
    )
    .expect("ports[].protocol");
    assert_eq!(ports.default, Some(JSON(json!("TCP"))));
    for (path, strategy) in derive(template).markers {
        let Strategy::ListMap(keys) = strategy else {
            continue;
        };
        let mut item_path = path.clone();
        item_path.push(Step::Item);
        let item = at_path(template, &item_path).expect("list items").clone();
        for key in keys {
            let required = item.required.iter().flatten().any(|field| *field == key);
            let defaulted = item
                .properties
                .as_ref()
                .and_then(|fields| fields.get(&key))
                .is_some_and(|field| field.default.is_some());
            assert!(required || defaulted, "{}: key {key}", display(&path));
        }
    }
}

#[test]
fn display_names_fields_and_items() {
    let path = [
        Step::Field("spec".into()),
        Step::Field("containers".into()),
        Step::Item,
        Step::Field("ports".into()),
    ];
    assert_eq!(display(&path), "spec.containers[].ports");
}
