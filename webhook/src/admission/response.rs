//! Building answers: HTTP-level refusals (`metav1.Status`), review errors (an AdmissionReview
//! answering the UID with an error status), and a [`Verdict`] as allowed or denied `Invalid`
//! with one cause per field, as the API server words an invalid object.

use http::StatusCode;
use kube::core::Status;
use kube::core::admission::AdmissionResponse;
use kube::core::response::{StatusCause, StatusDetails};
use podscaler::api::GROUP;
use podscaler::validation::{FieldError, Verdict};

use super::{Answer, KIND};

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

/// A request that cannot be admitted for reasons other than the object's content.
#[derive(Debug)]
pub(super) struct ReviewError {
    pub(super) code: StatusCode,
    pub(super) reason: &'static str,
    pub(super) message: String,
}

impl ReviewError {
    pub(super) fn bad_request(message: String) -> Self {
        Self {
            code: StatusCode::BAD_REQUEST,
            reason: "BadRequest",
            message,
        }
    }

    pub(super) fn into_response(self, uid: String) -> AdmissionResponse {
        let mut response = AdmissionResponse::invalid(&self.message);
        response.uid = uid;
        response.result = Status::failure(&self.message, self.reason).with_code(self.code.as_u16());
        response
    }
}

/// The object a denial is about, named as the API server names an invalid object
/// (`PodScaler.scaling.example.com "web" is invalid: …`; kubectl prints `The PodScaler "web"
/// is invalid:` and then every cause).
pub(super) struct Denied<'a> {
    pub(super) group: &'static str,
    pub(super) kind: &'static str,
    pub(super) name: &'a str,
}

impl<'a> Denied<'a> {
    pub(super) fn podscaler(name: &'a str) -> Self {
        Self {
            group: GROUP,
            kind: KIND,
            name,
        }
    }
}

/// The response for `verdict` on `denied`: allowed (with any warnings), or denied as
/// `Invalid` with one cause per error.
pub(super) fn decide(
    mut response: AdmissionResponse,
    denied: &Denied<'_>,
    verdict: Verdict,
) -> AdmissionResponse {
    if !verdict.warnings.is_empty() {
        response.warnings = Some(
            verdict
                .warnings
                .iter()
                .map(|warning| format!("{warning} (allowed because this update did not change it)"))
                .collect(),
        );
    }
    if verdict.errors.is_empty() {
        return response;
    }
    let message = format!(
        "{}.{} {:?} is invalid: {}",
        denied.kind,
        denied.group,
        denied.name,
        verdict
            .errors
            .iter()
            .map(FieldError::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    let causes = verdict
        .errors
        .into_iter()
        .map(|error| StatusCause {
            reason: "FieldValueInvalid".to_owned(),
            message: error.message,
            field: error.field,
        })
        .collect();
    let mut response = response.deny(&message);
    response.result = Status::failure(&message, "Invalid")
        .with_code(StatusCode::UNPROCESSABLE_ENTITY.as_u16())
        .with_details(StatusDetails {
            name: denied.name.to_owned(),
            group: denied.group.to_owned(),
            kind: denied.kind.to_owned(),
            uid: String::new(),
            causes,
            retry_after_seconds: 0,
        });
    response
}
