//! The mutating webhook: defaulting as a JSON patch.

use http::StatusCode;
use kube::core::admission::AdmissionResponse;
use podscaler::api::{PodScaler, apply_defaults};

use super::response::ReviewError;

/// Defaulting as a JSON patch: the library's [`apply_defaults`], diffed. Both sides of the
/// diff are serialized from the typed spec, so the patch holds exactly what defaulting
/// changed (never a re-formatting of the request), and it is empty when nothing needed
/// defaulting.
pub(super) fn mutate(
    allowed: AdmissionResponse,
    object: &PodScaler,
) -> Result<AdmissionResponse, ReviewError> {
    let patch = defaulting_patch(object).map_err(|error| ReviewError {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "InternalError",
        message: format!("computing the defaulting patch failed: {error}"),
    })?;
    if patch.0.is_empty() {
        return Ok(allowed);
    }
    allowed.with_patch(patch).map_err(|error| ReviewError {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        reason: "InternalError",
        message: format!("encoding the defaulting patch failed: {error}"),
    })
}

/// The JSON patch (paths from the object's root) that applies [`apply_defaults`] to `object`.
pub fn defaulting_patch(object: &PodScaler) -> Result<json_patch::Patch, serde_json::Error> {
    let mut defaulted = object.spec.clone();
    apply_defaults(&mut defaulted);
    let before = serde_json::json!({ "spec": serde_json::to_value(&object.spec)? });
    let after = serde_json::json!({ "spec": serde_json::to_value(&defaulted)? });
    Ok(json_patch::diff(&before, &after))
}
