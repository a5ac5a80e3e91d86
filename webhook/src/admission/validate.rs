//! The validating webhook on a PodScaler CREATE or UPDATE: both objects decoded, the other
//! PodScalers of the namespace looked up, and the rules of `podscaler::validation` applied.

use http::StatusCode;
use kube::api::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use podscaler::api::PodScaler;
use podscaler::validation::{self, FieldError, Peer, SpecLimits, Verdict};
use serde_json::Value;

use super::response::{Denied, ReviewError, decide};
use super::{ObjectError, PodScalerIndex, decode, podscaler, truncate};

/// The validating webhook on a PodScaler CREATE or UPDATE: decodes both objects, then
/// [`validate`]s.
pub(super) fn validate_review(
    allowed: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    raw: &Value,
    index: &dyn PodScalerIndex,
    limits: &SpecLimits,
) -> Result<AdmissionResponse, ReviewError> {
    let object = match podscaler(raw, "object") {
        Ok(object) => object,
        Err(ObjectError::Undecodable(error)) => return Ok(undecodable(allowed, request, error)),
        Err(error) => return Err(error.into_review_error("object")),
    };
    let old = match request.operation {
        Operation::Update => match podscaler(raw, "oldObject") {
            Ok(old) => Some(old),
            // The stored object, written before a rule or a type changed: the user cannot fix
            // it in this request, and refusing would lock the object (every update, the
            // removal of a finalizer too, would fail). The new object is judged alone; the
            // CRD's own rules still compare it with the stored one (the selector's
            // immutability).
            Err(ObjectError::Undecodable(error)) => {
                tracing::warn!(
                    error = %error,
                    "the stored PodScaler does not decode; judging the update on its new object alone"
                );
                None
            }
            Err(error) => return Err(error.into_review_error("oldObject")),
        },
        _ => None,
    };
    validate(allowed, request, &object, old.as_ref(), index, limits)
}

/// The validating webhook's answer to a PodScaler it cannot decode: denied as invalid, naming
/// the field, like a violation of a rule.
fn undecodable(
    allowed: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    error: decode::DecodeError,
) -> AdmissionResponse {
    let name = request.name.clone();
    let field = if error.field.is_empty() {
        "(root)".to_owned()
    } else {
        error.field
    };
    let verdict = Verdict {
        errors: vec![FieldError {
            field,
            message: truncate(&error.message),
        }],
        warnings: Vec::new(),
    };
    decide(allowed, &Denied::podscaler(&name), verdict)
}

fn validate(
    allowed: AdmissionResponse,
    request: &AdmissionRequest<DynamicObject>,
    object: &PodScaler,
    old: Option<&PodScaler>,
    index: &dyn PodScalerIndex,
    limits: &SpecLimits,
) -> Result<AdmissionResponse, ReviewError> {
    let name = if request.name.is_empty() {
        object.metadata.name.clone().unwrap_or_default()
    } else {
        request.name.clone()
    };
    let namespace = request
        .namespace
        .clone()
        .or_else(|| object.metadata.namespace.clone())
        .unwrap_or_default();
    let others = index.selectors_in(&namespace).ok_or_else(|| ReviewError {
        code: StatusCode::SERVICE_UNAVAILABLE,
        reason: "ServiceUnavailable",
        message: "the webhook has not finished loading the cluster's PodScalers, so it cannot \
                  check for overlapping selectors yet; retry in a few seconds"
            .to_owned(),
    })?;
    let peers: Vec<Peer<'_>> = others
        .iter()
        .map(|(name, selector)| Peer { name, selector })
        .collect();
    let verdict = match old {
        None => validation::validate_create(&name, &object.spec, peers.iter().copied(), limits),
        Some(old) => validation::validate_update(
            &name,
            &old.spec,
            &object.spec,
            peers.iter().copied(),
            limits,
        ),
    };
    Ok(decide(allowed, &Denied::podscaler(&name), verdict))
}
