//! A port of the Kubernetes name and label syntax checks
//! (`k8s.io/apimachinery/pkg/util/validation`: `IsQualifiedName`, `IsValidLabelValue`,
//! `IsDNS1123Subdomain`, `IsDNS1123Label`), with Kubernetes' own wording and regular
//! expressions, so a selector accepted here is accepted by the API server on the pods the
//! operator creates.
//!
//! The lengths and patterns are also written into the CRD's schema (`crate::crd`), so the API
//! server refuses the same values when the webhook is absent. Nothing here knows PodScaler: its
//! rules are in [`super`].

use std::collections::BTreeMap;

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

/// Whether every key and value of `labels` is valid label syntax (an equality selector, or a
/// set of labels, as Kubernetes' `ValidateLabels` accepts it).
pub fn are_valid_labels(labels: &BTreeMap<String, String>) -> bool {
    labels.iter().all(|(key, value)| {
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
}
