//! The scale subresource (`podscalers/scale`), reviewed so that one count limit holds however
//! the count is changed.
//!
//! `kubectl scale`, a HorizontalPodAutoscaler and anything else that writes the scale
//! subresource send the API server an `autoscaling/v1` Scale, never a PodScaler: the Scale's
//! `spec.replicas` becomes the PodScaler's `spec.count` without the PodScaler object passing
//! through the `podscalers` rules. The validating webhook therefore also reviews
//! `podscalers/scale` UPDATE, applying the same bounds as to `spec.count` (0 to `--max-count`).
//! There is nothing to default in a Scale, so the mutating webhook lets it through unpatched.

use http::StatusCode;
use k8s_openapi::api::autoscaling::v1::Scale;
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use podscaler::crd::MAX_COUNT;
use podscaler::validation::{FieldError, SpecLimits, Verdict};
use serde_json::Value;

use super::decode::decode;
use super::response::{Denied, ReviewError, decide};

/// API group of the Scale object the scale subresource carries.
pub const GROUP: &str = "autoscaling";
pub const VERSION: &str = "v1";
pub const KIND: &str = "Scale";
/// The name of the subresource in an AdmissionRequest's `subResource`.
pub const SUBRESOURCE: &str = "scale";

/// The field of the Scale that carries the count.
const REPLICAS: &str = "spec.replicas";

/// Validates a scale update: the new replica count must be within `limits`; a violation the old
/// Scale had word for word (the count did not change) is a warning, as on PodScaler updates.
pub(super) fn validate(
    allowed: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    raw: &Value,
    limits: &SpecLimits,
) -> Result<AdmissionResponse, ReviewError> {
    if request.operation != Operation::Update {
        // The scale subresource only supports get, update and patch (an UPDATE in admission).
        return Ok(allowed);
    }
    let new = requested_replicas(raw, "object")?;
    // The old Scale only decides ratcheting (a violation it already had is a warning); without
    // a usable one the new count is judged on its own, which can only be stricter.
    let old = requested_replicas(raw, "oldObject").ok();
    let denied = Denied {
        group: GROUP,
        kind: KIND,
        name: &request.name,
    };
    Ok(decide(allowed, &denied, check_replicas(old, new, limits)))
}

/// The replica count the Scale in `AdmissionReview.request.<field>` asks for.
fn requested_replicas(raw: &Value, field: &str) -> Result<i32, ReviewError> {
    let value = match raw.get(field) {
        None | Some(Value::Null) => {
            return Err(ReviewError::bad_request(format!(
                "AdmissionReview.request.{field} is missing: scale UPDATE reviews must carry the \
                 {GROUP}/{VERSION} {KIND}"
            )));
        }
        Some(value) => value,
    };
    let scale: Scale = decode(value).map_err(|error| {
        ReviewError::bad_request(format!(
            "AdmissionReview.request.{field} is not a valid {GROUP}/{VERSION} {KIND}: {}",
            super::truncate(&error.to_string())
        ))
    })?;
    let spec = scale.spec.ok_or_else(|| {
        ReviewError::bad_request(format!(
            "AdmissionReview.request.{field} is a {KIND} without spec: a scale update must say \
             spec.replicas, the PodScaler's spec.count"
        ))
    })?;
    // Go encodes ScaleSpec.replicas with omitempty, so a Scale to 0 (`kubectl scale
    // --replicas=0`) arrives as `spec: {}`: absent means 0, not "unknown".
    Ok(spec.replicas.unwrap_or(0))
}

/// The verdict on a Scale asking for `new` replicas when it had `old`: the bounds of
/// `spec.count` (0 to `limits.max_count`), reported on the Scale's `spec.replicas`.
pub fn check_replicas(old: Option<i32>, new: i32, limits: &SpecLimits) -> Verdict {
    let mut verdict = Verdict::default();
    if let Some(error) = replicas_error(new, limits) {
        if old.and_then(|old| replicas_error(old, limits)).as_ref() == Some(&error) {
            verdict.warnings.push(error);
        } else {
            verdict.errors.push(error);
        }
    }
    verdict
}

fn replicas_error(replicas: i32, limits: &SpecLimits) -> Option<FieldError> {
    let message = if replicas < 0 {
        format!(
            "must be 0 or more (got {replicas}): spec.replicas of the Scale sets PodScaler \
             spec.count, the number of pods to keep"
        )
    } else if replicas > MAX_COUNT {
        // The CRD's schema refuses it too (and first), so raising --max-count would not help.
        format!(
            "must be at most {MAX_COUNT}, PodScaler's hard limit (got {replicas}): spec.replicas \
             of the Scale sets PodScaler spec.count; scale to {max} or fewer",
            max = limits.max_count
        )
    } else if replicas > limits.max_count {
        format!(
            "must be at most {max} (got {replicas}): spec.replicas of the Scale sets PodScaler \
             spec.count; scale to {max} or fewer, or ask the cluster administrator to raise the \
             webhook's --max-count",
            max = limits.max_count
        )
    } else {
        return None;
    };
    Some(FieldError {
        field: REPLICAS.to_owned(),
        message,
    })
}

/// The answer when a review on the scale subresource does not carry a Scale.
pub(super) fn wrong_kind(kind: &str) -> ReviewError {
    ReviewError {
        code: StatusCode::BAD_REQUEST,
        reason: "BadRequest",
        message: format!(
            "the scale subresource of a PodScaler carries an {GROUP}/{VERSION} {KIND}, not {}: \
             register podscalers/scale with matchPolicy Equivalent, or do not send it here",
            super::truncate(kind)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_count: i32) -> SpecLimits {
        SpecLimits { max_count }
    }

    #[test]
    fn counts_within_the_limits_are_allowed() {
        for replicas in [0, 1, 10] {
            assert_eq!(
                check_replicas(Some(3), replicas, &limits(10)),
                Verdict::default(),
                "{replicas}"
            );
        }
    }

    #[test]
    fn counts_beyond_the_limits_name_the_field_and_what_it_sets() {
        let verdict = check_replicas(Some(3), 11, &limits(10));
        assert_eq!(verdict.warnings, []);
        let [error] = verdict.errors.as_slice() else {
            panic!("one error expected: {verdict:?}");
        };
        assert_eq!(error.field, "spec.replicas");
        assert!(
            error.message.starts_with("must be at most 10 (got 11)"),
            "{error}"
        );
        assert!(error.message.contains("PodScaler spec.count"), "{error}");
        assert!(error.message.contains("--max-count"), "{error}");

        let verdict = check_replicas(Some(3), 100_000_000, &limits(10));
        let [error] = verdict.errors.as_slice() else {
            panic!("one error expected: {verdict:?}");
        };
        assert!(
            error
                .message
                .starts_with("must be at most 100000, PodScaler's hard limit"),
            "{error}"
        );
        assert!(!error.message.contains("--max-count"), "{error}");

        let verdict = check_replicas(None, -1, &limits(10));
        let [error] = verdict.errors.as_slice() else {
            panic!("one error expected: {verdict:?}");
        };
        assert!(
            error.message.starts_with("must be 0 or more (got -1)"),
            "{error}"
        );
    }

    #[test]
    fn an_unchanged_count_over_a_lowered_limit_is_a_warning() {
        // Stored under a higher --max-count; rewriting the same count must not be refused.
        let verdict = check_replicas(Some(50), 50, &limits(10));
        assert_eq!(verdict.errors, []);
        assert_eq!(verdict.warnings.len(), 1);
        // A different count over the limit is a new violation.
        let verdict = check_replicas(Some(50), 40, &limits(10));
        assert_eq!(verdict.errors.len(), 1);
    }
}
