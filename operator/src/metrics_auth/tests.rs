//! Tests of the metrics endpoint's authentication and authorisation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

const SCRAPER: &str = "system:serviceaccount:monitoring:prometheus";

/// Accepts `good-token` (as SCRAPER) and `stranger-token`; allows only SCRAPER; fails
/// every review of `broken-token`. Counts the calls.
#[derive(Clone, Default)]
struct FakeReviewer {
    token_reviews: Arc<AtomicUsize>,
    access_reviews: Arc<AtomicUsize>,
}

impl Reviewer for FakeReviewer {
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Authentication, ReviewError>> {
        self.token_reviews.fetch_add(1, Ordering::SeqCst);
        let answer = match token {
            "good-token" => Ok(Authentication::Authenticated(user(SCRAPER))),
            "stranger-token" => Ok(Authentication::Authenticated(user("stranger"))),
            "broken-token" => Err(ReviewError::NoStatus {
                kind: "TokenReview",
            }),
            _ => Ok(Authentication::Rejected),
        };
        Box::pin(async move { answer })
    }

    fn review_access<'a>(
        &'a self,
        user: &'a UserInfo,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<bool, ReviewError>> {
        self.access_reviews.fetch_add(1, Ordering::SeqCst);
        let allowed = user.username == SCRAPER && access.verb == "get";
        Box::pin(async move { Ok(allowed) })
    }
}

impl FakeReviewer {
    fn calls(&self) -> (usize, usize) {
        (
            self.token_reviews.load(Ordering::SeqCst),
            self.access_reviews.load(Ordering::SeqCst),
        )
    }
}

fn user(name: &str) -> UserInfo {
    UserInfo {
        username: name.to_owned(),
        groups: vec!["system:serviceaccounts".to_owned()],
        ..UserInfo::default()
    }
}

fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value")
}

#[test]
fn bearer_tokens_are_read_as_kubernetes_reads_them() {
    let cases: [(&str, Option<&str>); 7] = [
        ("Bearer abc", Some("abc")),
        ("bearer abc", Some("abc")),
        ("  BEARER abc  ", Some("abc")),
        ("Bearer abc def", Some("abc")),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("abc", None),
    ];
    for (header, want) in cases {
        let value = HeaderValue::from_static(header);
        assert_eq!(bearer_token(Some(&value)), want, "{header:?}");
    }
    assert_eq!(bearer_token(None), None);
}

#[tokio::test]
async fn each_refusal_has_its_status() {
    let auth = MetricsAuth::new(FakeReviewer::default());
    let now = Instant::now();
    let check = |header: Option<HeaderValue>, method: Method| {
        let auth = &auth;
        async move { auth.check(header.as_ref(), &method, "/metrics", now).await }
    };
    let cases = [
        (None, Method::GET, StatusCode::UNAUTHORIZED),
        (
            Some(bearer("made-up")),
            Method::GET,
            StatusCode::UNAUTHORIZED,
        ),
        (
            Some(bearer("stranger-token")),
            Method::GET,
            StatusCode::FORBIDDEN,
        ),
        (
            Some(bearer("good-token")),
            Method::HEAD,
            StatusCode::FORBIDDEN,
        ),
        (
            Some(bearer("broken-token")),
            Method::GET,
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        (Some(bearer("good-token")), Method::GET, StatusCode::OK),
    ];
    for (header, method, want) in cases {
        let shown = format!("{header:?} {method}");
        assert_eq!(check(header, method).await.status(), want, "{shown}");
    }
    assert_eq!(
        check(Some(bearer("stranger-token")), Method::GET).await,
        Decision::Forbidden {
            user: "stranger".to_owned()
        }
    );
}

#[tokio::test]
async fn answers_are_reused_until_they_expire() {
    let reviewer = FakeReviewer::default();
    let auth = MetricsAuth::new(reviewer.clone());
    let start = Instant::now();
    let good = bearer("good-token");
    let at = |seconds: u64| start + Duration::from_secs(seconds);
    assert_eq!(
        auth.check(Some(&good), &Method::GET, "/metrics", at(0))
            .await,
        Decision::Allowed
    );
    assert_eq!(
        auth.check(Some(&good), &Method::GET, "/metrics", at(59))
            .await,
        Decision::Allowed
    );
    assert_eq!(reviewer.calls(), (1, 1), "both answers cached");
    assert_eq!(
        auth.check(Some(&good), &Method::GET, "/metrics", at(60))
            .await,
        Decision::Allowed
    );
    assert_eq!(
        reviewer.calls(),
        (2, 1),
        "the token is reviewed again after 1 min"
    );
    assert_eq!(
        auth.check(Some(&good), &Method::GET, "/metrics", at(300))
            .await,
        Decision::Allowed
    );
    assert_eq!(
        reviewer.calls(),
        (3, 2),
        "the allow decision is asked again after 5 min"
    );

    // A denial is kept 30 s only, and failures are not kept at all.
    let stranger = bearer("stranger-token");
    let denied = |seconds| auth.check(Some(&stranger), &Method::GET, "/metrics", at(seconds));
    denied(0).await;
    denied(29).await;
    assert_eq!(reviewer.calls(), (4, 3));
    denied(30).await;
    assert_eq!(reviewer.calls(), (4, 4));
    let broken = bearer("broken-token");
    for _ in 0..2 {
        auth.check(Some(&broken), &Method::GET, "/metrics", at(0))
            .await;
    }
    assert_eq!(reviewer.calls(), (6, 4));
    // No token: no review at all.
    auth.check(None, &Method::GET, "/metrics", at(0)).await;
    assert_eq!(reviewer.calls(), (6, 4));
}

/// The figure in the module docs: one scraper, a scrape every 15 s for an hour.
#[tokio::test]
async fn an_hour_of_scrapes_costs_72_reviews() {
    let reviewer = FakeReviewer::default();
    let auth = MetricsAuth::new(reviewer.clone());
    let start = Instant::now();
    let good = bearer("good-token");
    for scrape in 0..240 {
        let now = start + Duration::from_secs(15 * scrape);
        assert_eq!(
            auth.check(Some(&good), &Method::GET, "/metrics", now).await,
            Decision::Allowed
        );
    }
    assert_eq!(reviewer.calls(), (60, 12));
}

#[test]
fn a_full_cache_drops_expired_entries_then_the_soonest_to_expire() {
    let start = Instant::now();
    let mut cache = TtlCache::new(2);
    cache.insert("a", 1, Duration::from_secs(10), start);
    cache.insert("b", 2, Duration::from_secs(20), start);
    cache.insert("c", 3, Duration::from_secs(30), start);
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get(&"a", start), None, "the soonest to expire went");
    assert_eq!(cache.get(&"b", start), Some(2));
    let later = start + Duration::from_secs(25);
    cache.insert("d", 4, Duration::from_secs(30), later);
    assert_eq!(cache.get(&"b", later), None, "expired");
    assert_eq!(cache.get(&"c", later), Some(3));
    assert_eq!(cache.get(&"d", later), Some(4));
}

#[test]
fn review_statuses_are_read_strictly() {
    use k8s_openapi::api::authentication::v1::UserInfo as ApiUser;
    let authenticated = TokenReviewStatus {
        authenticated: Some(true),
        user: Some(ApiUser {
            username: Some(SCRAPER.to_owned()),
            uid: Some("u-1".to_owned()),
            groups: Some(vec!["system:serviceaccounts".to_owned()]),
            extra: None,
        }),
        ..TokenReviewStatus::default()
    };
    let Ok(Authentication::Authenticated(user)) = authentication_from(Some(authenticated)) else {
        panic!("authenticated");
    };
    assert_eq!(
        (user.username.as_str(), user.uid.as_str()),
        (SCRAPER, "u-1")
    );
    let rejected = TokenReviewStatus {
        authenticated: Some(false),
        error: Some("token expired".to_owned()),
        ..TokenReviewStatus::default()
    };
    assert!(matches!(
        authentication_from(Some(rejected)),
        Ok(Authentication::Rejected)
    ));
    assert!(authentication_from(None).is_err());

    let sar = |allowed, denied, error: Option<&str>| SubjectAccessReviewStatus {
        allowed,
        denied,
        evaluation_error: error.map(str::to_owned),
        reason: None,
    };
    assert!(matches!(
        decision_from(Some(sar(true, None, None))),
        Ok(true)
    ));
    assert!(matches!(
        decision_from(Some(sar(false, None, None))),
        Ok(false)
    ));
    assert!(matches!(
        decision_from(Some(sar(false, Some(true), None))),
        Ok(false)
    ));
    assert!(matches!(
        decision_from(Some(sar(false, None, Some("webhook down")))),
        Ok(false)
    ));
    assert!(decision_from(None).is_err());
}

#[test]
fn the_access_review_names_the_path_and_verb() {
    let review = access_review(&user(SCRAPER), &Access::of(&Method::GET, "/metrics"));
    let attributes = review.spec.non_resource_attributes.expect("non-resource");
    assert_eq!(attributes.path.as_deref(), Some("/metrics"));
    assert_eq!(attributes.verb.as_deref(), Some("get"));
    assert_eq!(review.spec.user.as_deref(), Some(SCRAPER));
    assert_eq!(review.spec.uid, None);
    assert!(review.spec.resource_attributes.is_none());
}
