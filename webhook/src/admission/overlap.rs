//! Which other PodScalers a selector is compared with for overlap.
//!
//! Two equality selectors overlap unless they share a key with different values, so a selector
//! whose keys no other PodScaler uses (a mistyped key, `"app name": web`) "overlaps" every
//! other PodScaler in the namespace. Reporting that buries the one error that matters (the
//! syntax) under one line per PodScaler, none of them true of the selector the user meant. A
//! selector that is not valid syntax is therefore compared with nobody: its syntax error is
//! the whole answer, and the overlap is checked once it is fixed.

use std::collections::BTreeMap;

use podscaler::validation::{Peer, label_key_errors, label_value_errors};

/// The PodScalers `selector` must be compared with: all of `others`, or none when the selector
/// is not valid label syntax (or empty, which is an error of its own).
pub fn overlap_candidates<'a>(
    selector: &BTreeMap<String, String>,
    others: &'a [(String, BTreeMap<String, String>)],
) -> Vec<Peer<'a>> {
    if !is_well_formed(selector) {
        return Vec::new();
    }
    others
        .iter()
        .map(|(name, selector)| Peer { name, selector })
        .collect()
}

/// Whether `selector` names at least one label and every key and value is valid label syntax.
pub fn is_well_formed(selector: &BTreeMap<String, String>) -> bool {
    !selector.is_empty()
        && selector.iter().all(|(key, value)| {
            label_key_errors(key).is_empty() && label_value_errors(value).is_empty()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn others() -> Vec<(String, BTreeMap<String, String>)> {
        vec![
            ("web".to_owned(), labels(&[("app", "web")])),
            ("db".to_owned(), labels(&[("tier", "db")])),
        ]
    }

    fn names<'a>(peers: &[Peer<'a>]) -> Vec<&'a str> {
        peers.iter().map(|peer| peer.name).collect()
    }

    #[test]
    fn a_valid_selector_is_compared_with_everyone() {
        let others = others();
        let selector = labels(&[("app", "api")]);
        assert_eq!(
            names(&overlap_candidates(&selector, &others)),
            ["web", "db"]
        );
    }

    #[test]
    fn an_invalid_selector_is_compared_with_nobody() {
        let others = others();
        for selector in [
            labels(&[("bad key", "x")]),
            labels(&[("app", "web!")]),
            labels(&[("app", "api"), ("-leading", "x")]),
            labels(&[("app", &"v".repeat(64))]),
            labels(&[]),
        ] {
            assert!(
                overlap_candidates(&selector, &others).is_empty(),
                "{selector:?}"
            );
        }
    }

    #[test]
    fn an_invalid_selector_then_reports_its_syntax_only() {
        // Through the shared validation: without the candidates filter, `{"bad key": x}` would
        // also be reported as overlapping both "web" and "db".
        let others = others();
        let spec: podscaler::api::PodScalerSpec =
            serde_json::from_value(serde_json::json!({"count": 1, "selector": {"bad key": "x"}}))
                .expect("a spec");
        let verdict = podscaler::validation::validate_create(
            "new",
            &spec,
            overlap_candidates(&spec.selector, &others),
            &podscaler::validation::Limits::default(),
        );
        let fields: Vec<&str> = verdict.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["spec.selector[\"bad key\"]"], "{verdict:?}");
    }
}
