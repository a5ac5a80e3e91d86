//! The AdmissionReview envelope and the answers outside it: what makes a body a reviewable
//! request (else an HTTP 4xx with a `metav1.Status`), and the bounded labels and excerpts taken
//! from client-supplied text.

use http::StatusCode;
use serde_json::Value;

use kube::core::admission::{META_API_VERSION_V1, META_KIND};

use super::Answer;

/// Longest excerpt of client-supplied text echoed in an error message.
const ECHO_LIMIT: usize = 100;

/// An HTTP-level refusal: `status` with a `metav1.Status` body carrying `message`.
pub fn reject(status: StatusCode, message: &str) -> Answer {
    let reason = match status {
        StatusCode::BAD_REQUEST => "BadRequest",
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::REQUEST_TIMEOUT => "Timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestEntityTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        _ => "InternalError",
    };
    let body = serde_json::json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status.as_u16(),
    });
    Answer {
        status,
        body: serde_json::to_vec(&body).unwrap_or_else(|_| message.as_bytes().to_vec()),
        decision: None,
    }
}

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

/// The operation as a metric label, from a bounded set.
pub(super) fn operation_label(request: &Value) -> &'static str {
    match request.get("operation").and_then(Value::as_str) {
        Some("CREATE") => "CREATE",
        Some("UPDATE") => "UPDATE",
        Some("DELETE") => "DELETE",
        Some("CONNECT") => "CONNECT",
        _ => "UNKNOWN",
    }
}

/// `namespace/name` of the object under review, as the operator's reconcile span names a
/// PodScaler (the name is empty on a CREATE that asks for a generated one).
pub(super) fn object_key(request: &Value) -> String {
    let field = |name| {
        request
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    format!("{}/{}", field("namespace"), field("name"))
}

/// A JSON value named in an error message, shortened.
fn describe(value: Option<&Value>) -> String {
    match value {
        None => "nothing".to_owned(),
        Some(value) => truncate(&value.to_string()),
    }
}

/// `text` cut to [`ECHO_LIMIT`] characters, so a client cannot make answers (or logs) large.
pub fn truncate(text: &str) -> String {
    match text.char_indices().nth(ECHO_LIMIT) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}
