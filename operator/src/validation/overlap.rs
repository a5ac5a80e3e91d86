//! The overlap check: whether a PodScaler's selector could match the pods of another
//! PodScaler of its namespace, which would make the two fight over them. The only rule that
//! needs other objects; the caller lists them (the webhook from its watched cache).

use std::collections::BTreeMap;

use super::FieldError;
use super::syntax::are_valid_labels;
use crate::api::selector_string;

/// Another PodScaler in the same namespace, as far as overlap is concerned.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    pub name: &'a str,
    pub selector: &'a BTreeMap<String, String>,
}

/// One error per peer whose selector overlaps `selector` (a pod could match both, and the two
/// PodScalers would fight over it). The peer named `name` is the object itself and is skipped.
///
/// An empty or syntactically invalid selector is compared with nobody. Two equality selectors
/// overlap unless they share a key with different values, so a mistyped key no other
/// PodScaler uses (`"app name": web`) would "overlap" every PodScaler in the namespace; that
/// list would bury the one error that matters, the syntax, which is reported on its own.
pub fn validate_no_overlap<'a>(
    name: &str,
    selector: &BTreeMap<String, String>,
    peers: impl IntoIterator<Item = Peer<'a>>,
) -> Vec<FieldError> {
    if !is_well_formed(selector) {
        return Vec::new();
    }
    let mut overlapping: Vec<Peer<'a>> = peers
        .into_iter()
        .filter(|peer| peer.name != name && selectors_overlap(selector, peer.selector))
        .collect();
    overlapping.sort_by(|a, b| a.name.cmp(b.name));
    overlapping
        .into_iter()
        .map(|peer| {
            let mut both = selector.clone();
            both.extend(peer.selector.iter().map(|(k, v)| (k.clone(), v.clone())));
            FieldError::new(
                "spec.selector",
                format!(
                    "overlaps PodScaler {peer:?} (selector {theirs:?}): a pod labelled {both:?} \
                     would match both and they would fight over it; give this PodScaler a label \
                     that {peer:?} also selects, with a different value",
                    peer = peer.name,
                    theirs = selector_string(peer.selector),
                    both = selector_string(&both),
                ),
            )
        })
        .collect()
}

/// Whether two equality selectors can match the same pod: they overlap unless some key they
/// share has different values (a pod carrying the union of both label sets matches both).
/// An empty selector matches every pod and so overlaps everything.
pub fn selectors_overlap(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    a.iter()
        .all(|(key, value)| b.get(key).is_none_or(|other| other == value))
}

/// Whether `selector` names at least one label and every key and value is valid label syntax.
fn is_well_formed(selector: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && are_valid_labels(selector)
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

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn overlap_table() {
        let cases = [
            (vec![("app", "a")], vec![("app", "a")], true),
            (vec![("app", "a")], vec![("app", "b")], false),
            (vec![("app", "a")], vec![("tier", "web")], true),
            (
                vec![("app", "a"), ("tier", "web")],
                vec![("app", "a")],
                true,
            ),
            (
                vec![("app", "a"), ("tier", "web")],
                vec![("app", "a"), ("tier", "db")],
                false,
            ),
            (
                vec![("app", "a"), ("x", "1")],
                vec![("tier", "db"), ("y", "2")],
                true,
            ),
            (vec![], vec![("app", "a")], true),
            (vec![], vec![], true),
        ];
        for (a, b, want) in cases {
            let (a, b) = (labels(&a), labels(&b));
            assert_eq!(selectors_overlap(&a, &b), want, "{a:?} vs {b:?}");
            assert_eq!(selectors_overlap(&b, &a), want, "symmetric: {b:?} vs {a:?}");
        }
    }

    #[test]
    fn overlap_errors_name_each_peer_and_skip_self() {
        let web = labels(&[("app", "web")]);
        let web_front = labels(&[("app", "web"), ("tier", "front")]);
        let db = labels(&[("app", "db")]);
        let peers = [
            Peer {
                name: "zeta",
                selector: &web_front,
            },
            Peer {
                name: "self",
                selector: &web,
            },
            Peer {
                name: "db",
                selector: &db,
            },
            Peer {
                name: "alpha",
                selector: &web,
            },
        ];
        let errors = validate_no_overlap("self", &web, peers);
        assert_eq!(fields(&errors), ["spec.selector", "spec.selector"]);
        assert!(
            errors[0]
                .message
                .starts_with("overlaps PodScaler \"alpha\" (selector \"app=web\")"),
            "{errors:?}"
        );
        assert!(
            errors[1].message.starts_with("overlaps PodScaler \"zeta\""),
            "{errors:?}"
        );
        assert!(
            errors[1]
                .message
                .contains("a pod labelled \"app=web,tier=front\" would match both"),
            "{errors:?}"
        );
        assert!(validate_no_overlap("x", &BTreeMap::new(), peers).is_empty());
        for invalid in [
            labels(&[("bad key", "x")]),
            labels(&[("app", "web!")]),
            labels(&[("app", "api"), ("-leading", "x")]),
            labels(&[("app", &"v".repeat(64))]),
        ] {
            assert!(
                validate_no_overlap("x", &invalid, peers).is_empty(),
                "an invalid selector reports its syntax only: {invalid:?}"
            );
        }
    }
}
