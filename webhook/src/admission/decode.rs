//! Typed decoding of the objects in a review, with errors that name the field.
//!
//! serde on its own says `invalid type: string "four", expected i32` and leaves the user to guess
//! where; `serde_path_to_error` tracks the path, which is written the way Kubernetes writes field
//! paths (`spec.count`, `spec.template.spec.containers[0].name`), so the error reads like the API
//! server's own schema errors.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Why a JSON value is not a `T`: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// The offending field from the object's root (`spec.count`); empty for the root itself.
    pub field: String,
    /// serde's description of the problem (`invalid type: string "four", expected i32`, or
    /// `required value` for a missing field).
    pub message: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Decodes `value` as a `T`, naming the field that does not fit.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        // The root's path prints as "."; Kubernetes names fields without a leading dot.
        let path = match error.path().to_string() {
            root if root == "." => String::new(),
            path => path,
        };
        describe(path, &error.into_inner().to_string())
    })
}

/// A missing field is reported by serde at its parent (`spec: missing field `count``); the user
/// is better served by the field itself (`spec.count: required value`), as the API server says
/// it. serde_json's error has no structured kind for this, so its stable wording is matched.
fn describe(path: String, message: &str) -> DecodeError {
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'));
    match missing {
        Some(name) if path.is_empty() => DecodeError {
            field: name.to_owned(),
            message: "required value".to_owned(),
        },
        Some(name) => DecodeError {
            field: format!("{path}.{name}"),
            message: "required value".to_owned(),
        },
        None => DecodeError {
            field: path,
            message: message.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podscaler::api::PodScaler;
    use serde_json::json;

    fn podscaler(spec: Value) -> Value {
        json!({
            "apiVersion": "scaling.example.com/v1",
            "kind": "PodScaler",
            "metadata": {"name": "x"},
            "spec": spec,
        })
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (
                json!({"count": "four", "selector": {"app": "a"}}),
                "spec.count",
                "invalid type: string \"four\", expected i32",
            ),
            (
                json!({"count": 1.5, "selector": {"app": "a"}}),
                "spec.count",
                "invalid type: floating point `1.5`, expected i32",
            ),
            (
                json!({"count": 3_000_000_000_i64, "selector": {"app": "a"}}),
                "spec.count",
                "invalid value: integer `3000000000`, expected i32",
            ),
            (
                json!({"selector": {"app": "a"}}),
                "spec.count",
                "required value",
            ),
            (json!({"count": 1}), "spec.selector", "required value"),
            (
                json!({"count": 1, "selector": ["app"]}),
                "spec.selector",
                "invalid type: sequence, expected a map",
            ),
            (
                json!({"count": 1, "selector": {"app": 7}}),
                "spec.selector.app",
                "invalid type: integer `7`, expected a string",
            ),
            (
                json!({"count": 1, "selector": {"app": "a"},
                       "template": {"spec": {"containers": [{"name": 5}]}}}),
                "spec.template.spec.containers[0].name",
                "invalid type: integer `5`, expected a string",
            ),
        ];
        for (spec, field, message) in cases {
            let error = decode::<PodScaler>(&podscaler(spec.clone())).expect_err("must fail");
            assert_eq!(
                error,
                DecodeError {
                    field: field.to_owned(),
                    message: message.to_owned()
                },
                "{spec}"
            );
            assert_eq!(error.to_string(), format!("{field}: {message}"));
        }
    }

    #[test]
    fn a_missing_top_level_field_is_named_without_a_dot() {
        let error = decode::<PodScaler>(&json!({"metadata": {}})).expect_err("no spec");
        assert_eq!(error.to_string(), "spec: required value");
        let error = decode::<PodScaler>(&json!("a string")).expect_err("not an object");
        assert_eq!(error.field, "");
        assert!(
            error.to_string().starts_with("invalid type: string"),
            "{error}"
        );
    }

    #[test]
    fn a_valid_object_decodes() {
        let scaler: PodScaler = decode(&podscaler(
            json!({"count": 4, "selector": {"app": "nginx"}}),
        ))
        .expect("valid");
        assert_eq!(scaler.spec.count, 4);
    }
}
