//! Who may read `/metrics` when it is served with `--metrics-secure`: the check
//! controller-runtime's `filters.WithAuthenticationAndAuthorization` makes, delegated to the
//! API server.
//!
//! Each request's bearer token is sent in a `TokenReview` (no audiences: the API server's own);
//! the user it names is checked with a `SubjectAccessReview` for the non-resource URL path and
//! the lower-cased HTTP method (`get /metrics`), which the chart's metrics-reader ClusterRole
//! grants. Both answers are cached as controller-runtime caches them (tokens 1 min, allowed
//! 5 min, denied 30 s), so a scraper every 15 s costs 60 TokenReviews + 12 SubjectAccessReviews
//! an hour per binary instead of 480 (see the test `an_hour_of_scrapes_costs_72_reviews`).
//!
//! The decisions ([`bearer_token`], [`TtlCache`], [`Decision`]) are pure; the API calls are
//! behind [`Reviewer`], whose kube implementation is [`KubeReviewer`].

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{HeaderValue, Method, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use kube::api::{Api, PostParams};

use crate::runtime::error_chain;

/// The identity a `TokenReview` vouched for; everything a `SubjectAccessReview` needs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UserInfo {
    /// `system:serviceaccount:<namespace>:<name>` for a ServiceAccount token.
    pub username: String,
    /// The user's UID (a ServiceAccount's UID), or empty.
    pub uid: String,
    /// Groups the user is in (`system:serviceaccounts`, …).
    pub groups: Vec<String>,
    /// Extra attributes the authenticator attached (a bound token's pod name, …).
    pub extra: BTreeMap<String, Vec<String>>,
}

/// What a `TokenReview` said about a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// The token is valid and belongs to this user.
    Authenticated(UserInfo),
    /// The API server does not accept the token (unknown, expired, revoked, wrong audience).
    Rejected,
}

/// The request a [`Reviewer`] authorizes: a verb on a non-resource URL path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Access {
    /// The URL path, `/metrics`.
    pub path: String,
    /// The lower-cased HTTP method, `get`.
    pub verb: String,
}

impl Access {
    /// The access a request with `method` to `path` asks for, named as RBAC names it.
    pub fn of(method: &Method, path: &str) -> Self {
        Self {
            path: path.to_owned(),
            verb: method.as_str().to_ascii_lowercase(),
        }
    }
}

/// Why a review could not be made; answered with 500 and never cached.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// The API server refused or failed the review (often: RBAC does not let this binary
    /// create tokenreviews or subjectaccessreviews).
    #[error("creating a {kind}")]
    Api {
        /// `TokenReview` or `SubjectAccessReview`.
        kind: &'static str,
        /// The client's error.
        source: kube::Error,
    },
    /// The API server did not answer in time.
    #[error("the {kind} was not answered within {timeout:?}")]
    Timeout {
        /// `TokenReview` or `SubjectAccessReview`.
        kind: &'static str,
        /// How long was waited.
        timeout: Duration,
    },
    /// The API server answered without a status.
    #[error("the {kind} came back without a status")]
    NoStatus {
        /// `TokenReview` or `SubjectAccessReview`.
        kind: &'static str,
    },
}

/// The API calls behind the check: one `TokenReview`, one `SubjectAccessReview`. A trait so
/// the cache can be tested against a fake that counts calls.
pub trait Reviewer: Send + Sync {
    /// Asks who `token` belongs to.
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Authentication, ReviewError>>;

    /// Asks whether `user` may make `access`.
    fn review_access<'a>(
        &'a self,
        user: &'a UserInfo,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<bool, ReviewError>>;
}

/// The outcome of the check for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Serve the page.
    Allowed,
    /// No usable bearer token, or one the API server rejects: 401.
    Unauthenticated,
    /// The user is known but not allowed: 403.
    Forbidden {
        /// Who asked.
        user: String,
    },
    /// A review could not be made: 500.
    Failed(String),
}

impl Decision {
    /// The status code to answer with.
    ///
    /// controller-runtime answers 500 for a token the API server rejects (its union
    /// authenticator turns "invalid bearer token" into an error). This answers 401, as the API
    /// server itself does for a bad token: an expired or revoked token is the client's problem,
    /// Prometheus shows a 401 as a credentials error, and 500 stays for what the operator of the
    /// binary must fix (the reviews themselves failing).
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Allowed => StatusCode::OK,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The body of a refusal: controller-runtime's wording. Review failures are not detailed
    /// to an unauthenticated caller; they are logged.
    pub fn message(&self) -> String {
        match self {
            Self::Allowed => String::new(),
            Self::Unauthenticated => "Unauthorized\n".to_owned(),
            Self::Forbidden { user } => format!("Authorization denied for user {user}\n"),
            Self::Failed(_) => "Authentication or authorization failed\n".to_owned(),
        }
    }
}

/// The bearer token of an `Authorization` header, as Kubernetes' bearertoken authenticator
/// reads it: scheme `Bearer` in any case, then the token up to the next space; `None` when
/// there is no header, another scheme, or an empty token.
pub fn bearer_token(authorization: Option<&HeaderValue>) -> Option<&str> {
    let value = authorization?.to_str().ok()?.trim();
    let mut parts = value.splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// How long review answers are reused: controller-runtime's defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheTtls {
    /// A `TokenReview` answer, accepted or rejected (`CacheTTL: 1m`).
    pub token: Duration,
    /// A `SubjectAccessReview` that allowed (`AllowCacheTTL: 5m`).
    pub allowed: Duration,
    /// A `SubjectAccessReview` that did not (`DenyCacheTTL: 30s`).
    pub denied: Duration,
}

impl Default for CacheTtls {
    fn default() -> Self {
        Self {
            token: Duration::from_secs(60),
            allowed: Duration::from_secs(5 * 60),
            denied: Duration::from_secs(30),
        }
    }
}

/// Entries each cache holds at most: far more scrapers than any cluster has, and a bound on
/// the memory a caller sending a new made-up token per request can take.
const CACHE_CAPACITY: usize = 4096;

/// A map whose entries expire; time is passed in, so expiry is tested without waiting.
#[derive(Debug)]
pub struct TtlCache<K, V> {
    entries: HashMap<K, (V, Instant)>,
    capacity: usize,
}

impl<K: Clone + Eq + Hash, V: Clone> TtlCache<K, V> {
    /// An empty cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The value stored for `key` if it has not expired at `now`.
    pub fn get(&mut self, key: &K, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((value, expires)) if now < *expires => Some(value.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` for `key` until `now + ttl`. When full, expired entries go first, then
    /// the one closest to expiring.
    pub fn insert(&mut self, key: K, value: V, ttl: Duration, now: Instant) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            self.entries.retain(|_, (_, expires)| now < *expires);
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&key) {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(key, _)| key.clone());
            if let Some(soonest) = soonest {
                self.entries.remove(&soonest);
            }
        }
        self.entries.insert(key, (value, now + ttl));
    }

    /// How many entries are stored (expired ones included until they are looked at).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The `/metrics` guard: [`Reviewer`] answers behind two caches.
pub struct MetricsAuth {
    reviewer: Box<dyn Reviewer>,
    ttls: CacheTtls,
    tokens: Mutex<TtlCache<String, Authentication>>,
    decisions: Mutex<TtlCache<(UserInfo, Access), bool>>,
}

impl std::fmt::Debug for MetricsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the cached tokens.
        f.debug_struct("MetricsAuth")
            .field("ttls", &self.ttls)
            .finish_non_exhaustive()
    }
}

impl MetricsAuth {
    /// A guard asking `reviewer`, caching for controller-runtime's durations.
    pub fn new(reviewer: impl Reviewer + 'static) -> Self {
        Self::with_ttls(reviewer, CacheTtls::default())
    }

    /// A guard asking `reviewer`, caching for `ttls`.
    pub fn with_ttls(reviewer: impl Reviewer + 'static, ttls: CacheTtls) -> Self {
        Self {
            reviewer: Box::new(reviewer),
            ttls,
            tokens: Mutex::new(TtlCache::new(CACHE_CAPACITY)),
            decisions: Mutex::new(TtlCache::new(CACHE_CAPACITY)),
        }
    }

    /// Decides a request with this `Authorization` header, `method` and `path`, at `now`.
    pub async fn check(
        &self,
        authorization: Option<&HeaderValue>,
        method: &Method,
        path: &str,
        now: Instant,
    ) -> Decision {
        let Some(token) = bearer_token(authorization) else {
            return Decision::Unauthenticated;
        };
        let user = match self.authenticate(token, now).await {
            Ok(Authentication::Authenticated(user)) => user,
            Ok(Authentication::Rejected) => return Decision::Unauthenticated,
            Err(error) => return Decision::Failed(error_chain(&error)),
        };
        match self.authorize(user, Access::of(method, path), now).await {
            Ok((_, true)) => Decision::Allowed,
            Ok((user, false)) => Decision::Forbidden {
                user: user.username,
            },
            Err(error) => Decision::Failed(error_chain(&error)),
        }
    }

    async fn authenticate(&self, token: &str, now: Instant) -> Result<Authentication, ReviewError> {
        if let Some(cached) = lock(&self.tokens).get(&token.to_owned(), now) {
            return Ok(cached);
        }
        let reviewed = self.reviewer.review_token(token).await?;
        lock(&self.tokens).insert(token.to_owned(), reviewed.clone(), self.ttls.token, now);
        Ok(reviewed)
    }

    async fn authorize(
        &self,
        user: UserInfo,
        access: Access,
        now: Instant,
    ) -> Result<(UserInfo, bool), ReviewError> {
        let key = (user, access);
        if let Some(allowed) = lock(&self.decisions).get(&key, now) {
            return Ok((key.0, allowed));
        }
        let allowed = self.reviewer.review_access(&key.0, &key.1).await?;
        let ttl = if allowed {
            self.ttls.allowed
        } else {
            self.ttls.denied
        };
        let user = key.0.clone();
        lock(&self.decisions).insert(key, allowed, ttl, now);
        Ok((user, allowed))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A cache is consistent after every single call: a panic elsewhere cannot corrupt it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a `TokenReview`'s status says.
pub fn authentication_from(
    status: Option<TokenReviewStatus>,
) -> Result<Authentication, ReviewError> {
    let status = status.ok_or(ReviewError::NoStatus {
        kind: "TokenReview",
    })?;
    match (status.authenticated, status.user) {
        (Some(true), Some(user)) => Ok(Authentication::Authenticated(UserInfo {
            username: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        })),
        _ => Ok(Authentication::Rejected),
    }
}

/// What a `SubjectAccessReview`'s status says: only `allowed` allows. A denial and "no
/// opinion" (not allowed, perhaps with an `evaluationError`) both refuse, as in
/// controller-runtime, where anything but `DecisionAllow` is a 403.
pub fn decision_from(status: Option<SubjectAccessReviewStatus>) -> Result<bool, ReviewError> {
    status
        .map(|status| status.allowed)
        .ok_or(ReviewError::NoStatus {
            kind: "SubjectAccessReview",
        })
}

/// The `SubjectAccessReview` asking whether `user` may make `access`.
pub fn access_review(user: &UserInfo, access: &Access) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.username.clone()),
            uid: (!user.uid.is_empty()).then(|| user.uid.clone()),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            non_resource_attributes: Some(NonResourceAttributes {
                path: Some(access.path.clone()),
                verb: Some(access.verb.clone()),
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// How long one review may take: controller-runtime's `TokenAccessReviewTimeout`.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// [`Reviewer`] through the API server, as the binary's own identity: it needs `create` on
/// `tokenreviews.authentication.k8s.io` and `subjectaccessreviews.authorization.k8s.io`.
#[derive(Clone)]
pub struct KubeReviewer {
    tokens: Api<TokenReview>,
    access: Api<SubjectAccessReview>,
}

impl KubeReviewer {
    /// Reviews through `client`.
    pub fn new(client: kube::Client) -> Self {
        Self {
            tokens: Api::all(client.clone()),
            access: Api::all(client),
        }
    }
}

async fn within<T>(
    kind: &'static str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, ReviewError> {
    tokio::time::timeout(REVIEW_TIMEOUT, call)
        .await
        .map_err(|_| ReviewError::Timeout {
            kind,
            timeout: REVIEW_TIMEOUT,
        })?
        .map_err(|source| ReviewError::Api { kind, source })
}

impl Reviewer for KubeReviewer {
    fn review_token<'a>(
        &'a self,
        token: &'a str,
    ) -> BoxFuture<'a, Result<Authentication, ReviewError>> {
        Box::pin(async move {
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_owned()),
                    audiences: None,
                },
                ..TokenReview::default()
            };
            let reviewed = within(
                "TokenReview",
                self.tokens.create(&PostParams::default(), &review),
            )
            .await?;
            authentication_from(reviewed.status)
        })
    }

    fn review_access<'a>(
        &'a self,
        user: &'a UserInfo,
        access: &'a Access,
    ) -> BoxFuture<'a, Result<bool, ReviewError>> {
        Box::pin(async move {
            let review = access_review(user, access);
            let reviewed = within(
                "SubjectAccessReview",
                self.access.create(&PostParams::default(), &review),
            )
            .await?;
            decision_from(reviewed.status)
        })
    }
}

#[cfg(test)]
mod tests;
