//! Unit tests of the pass's error handling and event text.

use super::report::list_names;
use super::*;

#[tokio::test]
async fn a_panicking_pass_fails_with_its_message() {
    let failed = catch_panic::<()>("ns/web".to_owned(), async {
        panic!("index out of bounds: {}", 3);
    })
    .await;
    match failed {
        Err(error @ Error::Panicked { .. }) => {
            assert_eq!(
                error.to_string(),
                "PodScaler ns/web: the reconcile panicked: index out of bounds: 3"
            );
            assert!(!error.is_terminal(), "a panic is retried");
        }
        other => panic!("not a caught panic: {other:?}"),
    }
    let passed = catch_panic("ns/web".to_owned(), async { Ok(Requeue::OnChange) }).await;
    assert!(matches!(passed, Ok(Requeue::OnChange)));
}

#[test]
fn only_a_missing_namespace_is_terminal() {
    assert!(Error::MissingNamespace("web".to_owned()).is_terminal());
    let refused = Error::Replicas {
        key: "ns/web".to_owned(),
        message: "exceeded quota".to_owned(),
    };
    assert!(!refused.is_terminal());
}

#[test]
fn event_names_are_summarised() {
    assert_eq!(list_names(&["a", "b"]), "a, b");
    let many: Vec<String> = (0..13).map(|i| format!("p{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        list_names(&many),
        "p0, p1, p2, p3, p4, p5, p6, p7, p8, p9 and 3 more"
    );
}
