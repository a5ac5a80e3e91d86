//! The `admission.k8s.io/v1` AdmissionReview envelope: what must hold before there is a request
//! to review, each failure a message for a 400 answer (there is no UID to answer with).

use kube::core::admission::{META_API_VERSION_V1, META_KIND};
use serde_json::Value;

use super::truncate;

/// Checks the AdmissionReview envelope and returns its `request` and UID; the error is the
/// message of a 400 answer.
pub(super) fn envelope(body: &[u8]) -> Result<(Value, String), String> {
    const EXPECTED: &str = "send an admission.k8s.io/v1 AdmissionReview as JSON";
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(format!("the request body is empty: {EXPECTED}"));
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| format!("the request body is not valid JSON ({error}): {EXPECTED}"))?;
    let Value::Object(mut review) = value else {
        return Err(format!(
            "the request body is JSON but not an object: {EXPECTED}"
        ));
    };
    match review.get("kind") {
        Some(Value::String(kind)) if kind == META_KIND => {}
        kind => {
            return Err(format!(
                "expected kind \"AdmissionReview\", got {}: {EXPECTED}",
                describe(kind)
            ));
        }
    }
    match review.get("apiVersion") {
        Some(Value::String(version)) if version == META_API_VERSION_V1 => {}
        version => {
            return Err(format!(
                "unsupported AdmissionReview apiVersion {}: this webhook speaks {META_API_VERSION_V1} \
                 only; set admissionReviewVersions: [\"v1\"] in the webhook configuration",
                describe(version)
            ));
        }
    }
    let request = match review.remove("request") {
        Some(request @ Value::Object(_)) => request,
        None | Some(Value::Null) => {
            return Err(
                "the AdmissionReview has no request: the API server sends one in \
                 AdmissionReview.request"
                    .to_owned(),
            );
        }
        Some(other) => {
            return Err(format!(
                "AdmissionReview.request must be an object, got {}",
                describe(Some(&other))
            ));
        }
    };
    match request.get("uid") {
        Some(Value::String(uid)) if !uid.is_empty() => {
            let uid = uid.clone();
            Ok((request, uid))
        }
        _ => Err(
            "AdmissionReview.request.uid is missing or empty: the response could not be \
             matched to the request"
                .to_owned(),
        ),
    }
}

/// A JSON value named in an error message, shortened.
fn describe(value: Option<&Value>) -> String {
    match value {
        None => "nothing".to_owned(),
        Some(value) => truncate(&value.to_string()),
    }
}
